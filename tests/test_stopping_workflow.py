"""Early stopping in the pipeline, with the real ``snakemake``: every fit records every rule's stop
and score in fits.parquet, ``fit.early_stop`` picks the PNG, and configs that never mention it
keep their fits; Table 3 reads the study's measurements."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import REPO, run_snakemake, run_tiny
from PIL import Image
from test_workflow import job_counts

from dipkit.columns import FIT_ROWS, STOP_RULES, arrow_schema

ITER = 30
CONFIG = {
    "seed": 2,
    "datasets": {"Set12": {"images": ["01"], "gaussian": [25]}},
    "methods": {"ours": {}, "bm3d": {}},
    # a large tau makes the discrepancy rule fire within the few iterations of a test
    "fit": {
        "iterations": ITER,
        "early_stop": "discrepancy",
        "stopping": {"wmv_window": 5, "wmv_patience": 8, "discrepancy_tau": 40.0},
    },
}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, mirror):
    work = tmp_path_factory.mktemp("stopping")
    cfg = run_tiny(work, CONFIG, mirror)
    return work, cfg


def test_fits_record_every_rule(fitted):
    work, _ = fitted
    fits = pq.read_table(work / "results/fits.parquet")
    assert fits.schema.names == [c.name for c in FIT_ROWS]
    df = fits.to_pandas().set_index("method")
    ours, bm3d = df.loc["ours"], df.loc["bm3d"]
    assert ours.early_stop == "discrepancy" and ours.stop_sigma == 25.0  # the Gaussian noise level
    assert 1 <= ours.discrepancy_stop_iteration == ours.discrepancy_iteration < ITER
    for rule in STOP_RULES:
        assert 1 <= ours[f"{rule}_iteration"] <= ITER
        assert math.isfinite(ours[f"{rule}_psnr"]) and 0 < ours[f"{rule}_ssim"] <= 1
    # the PNG is the rule's output, not the last iteration's
    from dipkit.images import to_float
    from dipkit.io import load_from_stack

    clean = to_float(load_from_stack(str(work / "results/prepared/Set12.npz"), "clean/01"))
    png = np.asarray(Image.open(work / "results/fits/Set12/gaussian25/ours/01.png"), np.float64)
    png = png[:, :, None] / 255
    psnr_png = 10 * math.log10(1 / float(((png - clean) ** 2).mean()))
    assert psnr_png == pytest.approx(ours.discrepancy_psnr, abs=0.05)
    assert abs(psnr_png - ours.psnr_last) > 0.1
    # a classical method has no rules
    assert bm3d.early_stop == "off" and math.isnan(bm3d.stop_sigma)
    assert all(bm3d[[f"{r}_iteration", f"{r}_psnr"]].isna().all() for r in STOP_RULES)


def test_the_rule_setting_reruns_the_dip_fits_only(fitted, tmp_path):
    work, cfg = fitted
    changed = yaml.safe_load(cfg.read_text())
    changed["fit"]["early_stop"] = "wmv"
    other = tmp_path / "config.yaml"
    other.write_text(yaml.safe_dump(changed))
    proc = run_snakemake(work, "--configfile", str(other), "-n")
    counts = job_counts(proc.stdout)
    assert counts["fit"] == 1 and "score_noisy" not in counts  # ours refits, BM3D does not


def test_configs_without_early_stopping_keep_their_params():
    """A config that never sets fit.early_stop or fit.stopping plans the same fit params as before
    the rules existed (no key added), so its fits are not rerun."""
    from dipkit.methods import FIT_DEFAULTS, fit_spec, get_method

    spec = fit_spec(get_method("ours"), "Set12", "01", "gaussian25", {"iterations": 10})
    assert "early_stop" not in spec and "stopping" not in spec
    spec = fit_spec(
        get_method("ours"),
        "Set12",
        "01",
        "gaussian25",
        {"early_stop": "off", "stopping": dict(FIT_DEFAULTS["stopping"])},
    )
    assert "early_stop" not in spec and "stopping" not in spec
    spec = fit_spec(get_method("ours"), "Set12", "01", "gaussian25", {"stopping": {"wmv_patience": 7}})
    assert spec["stopping"]["wmv_patience"] == 7 and spec["stopping"]["wmv_window"] == 100


def test_rows_written_before_the_rules_existed_are_upgraded(tmp_path):
    from dipkit.io import write_parquet
    from dipkit.tables import concat_parquet

    schema = arrow_schema(FIT_ROWS)
    row = {c.name: None for c in FIT_ROWS} | {
        "dataset": "Set9",
        "image": "a",
        "batch_size": 1,
        "early_stop": "wmv",
        "wmv_psnr": 30.0,
    }
    new = pa.Table.from_pylist([row], schema=schema)
    stop_cols = [
        c.name
        for c in FIT_ROWS
        if c.name == "early_stop"
        or c.name == "stop_sigma"
        or c.name.startswith(tuple(f"{r}_" for r in STOP_RULES))
    ]
    old = new.drop_columns([*stop_cols, "batch_size"]).set_column(1, "image", pa.array(["b"]))
    write_parquet(tmp_path / "old.parquet", old)
    write_parquet(tmp_path / "new.parquet", new)
    both = concat_parquet([tmp_path / "old.parquet", tmp_path / "new.parquet"], tmp_path / "all.parquet")
    assert both.schema.equals(schema)
    assert both.column("early_stop").to_pylist() == ["off", "wmv"]
    assert both.column("wmv_psnr").to_pylist() == [None, 30.0]
    assert both.column("batch_size").to_pylist() == [1, 1]


def test_table3_reads_the_study(tmp_path):
    import pandas as pd

    from dipkit.tables import table3

    base = {
        "height": 256,
        "width_px": 256,
        "width_source": "fixed",
        "search_s": 0.0,
        "wall_time_s": 1.0,
        "iterations": 10,
        "device": "cpu",
    }
    fits = pd.DataFrame(
        [
            {**base, "method": "ours", "psnr_peak": 30.0, "psnr_last": 29.9},
            {**base, "method": "nas_dip", "psnr_peak": 30.0, "psnr_last": 28.0},
        ]
    )
    study = pd.DataFrame({"method": ["ours", "ours"], "psnr_peak": [30.0, 29.0], "psnr_last": [28.5, 28.5]})
    t3 = table3(fits, study=study).set_index("method")
    assert t3.loc["ours", "study_drop_db"] == pytest.approx(1.0) and t3.loc["ours", "study_fits"] == 2
    assert t3.loc["ours", "early_stopping"] == "yes" and t3.loc["ours", "early_stopping_from"] == "study"
    assert t3.loc["nas_dip", "early_stopping"] == "yes"
    assert t3.loc["nas_dip", "early_stopping_from"] == "this run"
    committed = pd.read_csv(REPO / "docs/early-stopping/fits.csv")  # the file the pipeline reads
    assert {"method", "psnr_peak", "psnr_last"} <= set(committed.columns)
