"""The fit fan-out with the real ``snakemake``: 2 images x 2 methods x 1 sigma -> Table 2."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import run_snakemake, run_tiny
from PIL import Image
from test_workflow import job_counts

from dipkit.columns import FIT_ROWS, TRAJECTORY

ITER = 20
CONFIG = {
    "seed": 3,
    "datasets": {"Set12": {"images": ["01", "02"], "gaussian": [25]}},
    "methods": {"ours": {}, "conv_decoder_ours": {}},
    "fit": {"iterations": ITER, "ssim_every": 5},
}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, mirror):
    work = tmp_path_factory.mktemp("fits")
    cfg = run_tiny(work, CONFIG, mirror)
    return work, cfg


def test_fits_table_and_trajectories(fitted):
    work, _ = fitted
    fits = pq.read_table(work / "results/fits.parquet")
    assert fits.schema.names == [c.name for c in FIT_ROWS]
    df = fits.to_pandas()
    assert sorted(zip(df.method, df.image)) == [
        ("conv_decoder_ours", "01"),
        ("conv_decoder_ours", "02"),
        ("ours", "01"),
        ("ours", "02"),
    ]
    ours = df[df.method == "ours"]
    # Set12 01 and 02 carry the released width label 32; grayscale -> 1 output channel
    assert (ours.width == 32).all() and (ours.width_source == "labels:NoRepeat").all()
    assert (ours.params == 58_273).all() and (df.channels == 1).all()
    assert (df.iterations == ITER).all() and (df.device == "cpu").all()
    assert df.psnr_peak_iteration.between(1, ITER).all() and (df.psnr_input < 25).all()
    traj = pq.read_table(work / "results/trajectories.parquet")
    assert traj.schema.names == [c.name for c in TRAJECTORY] and traj.num_rows == 4 * ITER
    t = traj.to_pandas()
    one = t[(t.method == "ours") & (t.image == "01")]
    assert one.iteration.tolist() == list(range(1, ITER + 1))
    assert one.ssim_ema.notna().sum() == ITER // 5 and one.loss.iloc[-1] < one.loss.iloc[0]
    png = Image.open(work / "results/fits/Set12/gaussian25/ours/01.png")
    assert png.size == (256, 256) and png.mode == "L"


def test_table2_renders_beside_the_paper(fitted):
    work, _ = fitted
    t2 = pd.read_csv(work / "results/tables/table2.csv")
    assert t2[["dataset", "sigma", "method", "images"]].values.tolist() == [
        ["Set12", 25, "ours", 2],
        ["Set12", 25, "conv_decoder_ours", 2],
    ]
    ours = t2.iloc[0]
    assert ours.paper_psnr == 28.14 and ours.paper_ssim == 0.884
    assert ours.d_psnr == pytest.approx(ours.psnr - 28.14)
    assert pd.isna(t2.iloc[1].paper_psnr)  # CD "after" is not in the paper's Table 2
    md = (work / "results/tables/table2.md").read_text()
    assert md.startswith("# Table 2") and "| Set12 | 25 | ours | 2 |" in md and "28.14" in md


def test_changing_one_method_reruns_only_its_fits(fitted, tmp_path):
    work, _ = fitted
    cfg = tmp_path / "changed.yaml"
    changed = {**CONFIG, "methods": {"ours": {"lr": 0.02}, "conv_decoder_ours": {}}}
    cfg.write_text(yaml.safe_dump(changed, sort_keys=False))
    proc = run_snakemake(work, "--configfile", str(cfg), "-n")
    counts = job_counts(proc.stdout + proc.stderr)
    # Table 3 too; the figures of the one (dataset, noise): its gallery and PSNR curves
    assert counts == {
        "fit": 2,
        "aggregate_fits": 1,
        "table2": 1,
        "paper_table": 1,
        "gallery": 1,
        "psnr_curves": 1,
        "job_costs": 1,
        "all": 1,
    }
    assert "method=ours" in proc.stdout + proc.stderr
    assert "method=conv_decoder_ours" not in proc.stdout + proc.stderr


def test_adding_a_noise_level_runs_only_the_new_fits(fitted, tmp_path):
    work, _ = fitted
    cfg = tmp_path / "more_noise.yaml"
    more = {**CONFIG, "datasets": {"Set12": {"images": ["01", "02"], "gaussian": [25, 50]}}}
    cfg.write_text(yaml.safe_dump(more, sort_keys=False))
    proc = run_snakemake(work, "--configfile", str(cfg), "-n")
    out = proc.stdout + proc.stderr
    assert job_counts(out) == {
        "add_noise": 1,
        "score_noisy": 1,
        "noisy_baseline_table": 1,
        "fit": 4,  # 2 images x 2 methods at sigma 50; the sigma 25 fits stay
        "aggregate_fits": 1,
        "table2": 1,
        "paper_table": 1,
        "gallery": 1,  # the new (dataset, noise); the sigma-25 gallery's fits stay
        "psnr_curves": 2,  # every curve reads trajectories.parquet, which changes
        "job_costs": 1,
        "all": 1,
    }
    assert out.count("noise=gaussian50, method=") == 4 and "noise=gaussian25, method=" not in out
