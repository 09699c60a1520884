import pandas as pd
import pytest

from dipkit.relabel import agreement_table, regenerate_labels

WIDTHS = {"ours_w32": 32, "ours_w64": 64, "ours_w128": 128}


def _fits(psnrs):
    rows = []
    for (dataset, image), values in psnrs.items():
        for (method, _), p in zip(WIDTHS.items(), values):
            rows.append(
                {"dataset": dataset, "image": image, "noise": "gaussian25", "method": method, "psnr_last": p}
            )
    return pd.DataFrame(rows)


def test_best_width_co_labels_and_agreement():
    fits = _fits(
        {
            ("Set9", "image_House256rgb"): (32.0, 31.5, 31.0),  # released NoRepeat 32 -> agrees
            ("Set9", "kodim01"): (25.0, 25.95, 26.0),  # released 128; 64 within 0.1 dB -> co-label
            ("Set12", "08"): (28.0, 27.0, 26.0),  # released 64 -> disagrees
            ("PolyU", "Canon5D2_5_160_3200_chair_11"): (30.0, 30.0, 29.0),  # no released label
        }
    )
    labels = regenerate_labels(fits, WIDTHS, tolerance_db=0.1).set_index("image")
    assert (
        labels.loc["image_House256rgb", "best_width"] == 32
        and labels.loc["image_House256rgb", "agrees_norepeat"]
    )
    assert labels.loc["kodim01", "best_width"] == 128 and labels.loc["kodim01", "labels"] == "64;128"
    assert not labels.loc["08", "agrees_norepeat"]
    chair = labels.loc["Canon5D2_5_160_3200_chair_11"]
    assert chair.labels == "32;64" and pd.isna(chair.released_norepeat)
    table = agreement_table(labels.reset_index()).set_index("dataset")
    assert table.loc["Set9", "agree_norepeat"] == 1.0 and table.loc["Set12", "agree_norepeat"] == 0.0
    assert table.loc["Set9", "images"] == 2 and table.loc["Set9", "best_w128"] == 1


def test_missing_width_is_an_error():
    fits = _fits({("Set9", "kodim01"): (25.0, 26.0, 27.0)})
    with pytest.raises(ValueError, match="no fits of the relabelling methods"):
        regenerate_labels(fits.iloc[0:0], WIDTHS)
    with pytest.raises(ValueError, match=r"no fits at widths \[128\]"):
        regenerate_labels(fits[fits.method != "ours_w128"], WIDTHS)
