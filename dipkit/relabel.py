"""Width labels regenerated from our own fits, compared with the released Texture-DIP labels.

The paper's "optimal" width of an image is the width (32, 64 or 128) of the 2-level
hourglass that denoises it best. The ``relabel`` stage fits the fixed-width variants
(``ours_w32``, ``ours_w64``, ``ours_w128``) and labels each image with the width of the best
last-iteration PSNR; widths within ``tolerance_db`` of the best are co-labels, as an image
of the released wRepeat set may carry two labels. The agreement table says how often the
best width equals the released NoRepeat label, and how often it is among the released
wRepeat labels.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from dipkit.methods.widths import texture_labels
from dipkit.tables import concat_parquet, write_table


def regenerate_labels(
    fits: pd.DataFrame, method_widths: Mapping[str, int], tolerance_db: float = 0.1
) -> pd.DataFrame:
    """One row per (dataset, image, noise): PSNR per width, best width, co-labels, released labels.

    :param fits: fit rows (``results/fits.parquet`` schema) of the fixed-width variants.
    :param method_widths: ``{method name: width}`` of those variants.
    """
    df = fits[fits.method.isin(list(method_widths))].copy()
    if df.empty:
        raise ValueError(f"no fits of the relabelling methods {sorted(method_widths)}")
    df["w"] = df.method.map(method_widths)
    wide = df.pivot_table(
        index=["dataset", "image", "noise"], columns="w", values="psnr_last", aggfunc="first"
    )
    widths = sorted(method_widths.values())
    missing = [w for w in widths if w not in wide.columns]
    if missing:
        raise ValueError(f"no fits at widths {missing}")
    labels = texture_labels()
    rows = []
    for (dataset, image, noise), psnr in wide.iterrows():
        if psnr[widths].isna().any():
            continue
        best = int(psnr[widths].idxmax())
        co = [w for w in widths if psnr[best] - psnr[w] <= tolerance_db]
        released = labels["NoRepeat"].get((dataset, image))
        released_rep = labels["wRepeat"].get((dataset, image), ())
        rows.append(
            {
                "dataset": dataset,
                "image": image,
                "noise": noise,
                **{f"psnr_w{w}": float(psnr[w]) for w in widths},
                "best_width": best,
                "labels": ";".join(map(str, co)),
                "released_norepeat": None if released is None else int(released[0]),
                "released_wrepeat": ";".join(map(str, released_rep)),
                "agrees_norepeat": None if released is None else bool(released[0] == best),
                "best_in_wrepeat": bool(best in released_rep) if released_rep else None,
                "overlaps_released": bool(set(co) & set(released_rep or released or ()))
                if (released_rep or released)
                else None,
            }
        )
    return pd.DataFrame(rows)


def agreement_table(labels: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and noise: images, agreement of our best width with the released labels."""
    out = []
    for (dataset, noise), g in labels.groupby(["dataset", "noise"], sort=False):
        lab = g[g.released_norepeat.notna()]
        rep = g[g.released_wrepeat != ""]
        out.append(
            {
                "dataset": dataset,
                "noise": noise,
                "images": len(g),
                "with_released_label": len(lab),
                "agree_norepeat": float(lab.agrees_norepeat.astype(bool).mean())
                if len(lab)
                else float("nan"),
                "best_in_wrepeat": float(rep.best_in_wrepeat.astype(bool).mean())
                if len(rep)
                else float("nan"),
                "overlap_with_released": float(g.overlaps_released.dropna().astype(bool).mean())
                if g.overlaps_released.notna().any()
                else float("nan"),
                **{f"best_w{w}": int((g.best_width == w).sum()) for w in sorted(g.best_width.unique())},
            }
        )
    return pd.DataFrame(out).fillna({c: 0 for c in pd.DataFrame(out).columns if c.startswith("best_w")})


AGREEMENT_NOTES = """
Width labels regenerated from our fits of the 2-level hourglass at each width (best
last-iteration PSNR; co-labels within the tolerance), against the released Texture-DIP labels.
`agree_norepeat`: fraction of images whose best width equals the released NoRepeat label;
`best_in_wrepeat`: fraction whose best width is among the released wRepeat labels;
`overlap_with_released`: fraction whose co-labels share a width with the released ones;
`best_w*`: how many images each width wins. Per-image rows: `results/classifier/regenerated_labels.csv`.
"""


def write_relabel(row_paths, method_widths, tolerance_db, labels_csv, table_csv, table_md) -> pd.DataFrame:
    """The *relabel* stage."""
    from dipkit.io import write_text

    fits = concat_parquet(list(row_paths)).to_pandas()
    labels = regenerate_labels(fits, method_widths, tolerance_db)
    write_text(labels_csv, labels.to_csv(index=False, float_format="%.4f", lineterminator="\n"))
    table = agreement_table(labels)
    write_table(
        table,
        table_csv,
        table_md,
        "Regenerated width labels vs the released ones",
        AGREEMENT_NOTES,
        {"agree_norepeat": 3, "best_in_wrepeat": 3, "overlap_with_released": 3},
    )
    return table
