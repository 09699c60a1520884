"""Batched fits in the pipeline (config ``fit.batch``), with the real ``snakemake``: in float64
they give the rows, trajectories and images of one fit per job, and they rerun like them."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import run_snakemake, synthetic_image
from PIL import Image
from test_workflow import job_counts

ITER = 6
RUNTIME_COLUMNS = ["wall_time_s", "seconds_per_iteration", "peak_memory_bytes", "batch_size"]


def _config(tmp_path, mirror, batch: int) -> dict:
    from dipkit.images import save_png

    folder = tmp_path.parent / "photos"  # shared by both runs
    if not folder.exists():
        folder.mkdir()
        # the planner cannot know a user dataset's sizes: batch 1 gets 64x96 and 64x64
        for i, (h, w) in enumerate([(64, 96), (64, 64), (64, 96)]):
            save_png(folder / f"shot{i}.png", synthetic_image(h, w, 3, seed=i))
    return {
        "seed": 5,
        "mirror_dir": str(mirror),
        "datasets": {
            "Set12": {"images": ["01", "02", "03"], "gaussian": [25]},
            "mine": {"path": str(folder), "gaussian": [15]},
        },
        "methods": {"ours": {}, "bm3d": {"noise": ["gaussian15"]}},  # bm3d on the user folder only
        "fit": {"iterations": ITER, "ssim_every": 2, "dtype": "float64", "batch": batch},
    }


def _run(work, config):
    cfg = work / "config.yaml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    planned = job_counts(run_snakemake(work, "--configfile", str(cfg), "-n").stdout)
    run_snakemake(work, "--configfile", str(cfg), "--cores", "2", "--resources", "gpu=2")
    return cfg, planned


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mirror):
    base = tmp_path_factory.mktemp("batched")
    out = {}
    for batch in (2, 1):
        work = base / f"batch{batch}"
        work.mkdir()
        out[batch] = (work, *_run(work, _config(work, mirror, batch)))
    return out


def test_batches_are_planned_per_method_spec_and_size(runs):
    _, _, planned = runs[2]
    # ours on Set12: 01 and 02 carry width label 32, 03 another -> [01, 02], [03];
    # on the user folder: [shot0, shot1], [shot2]; bm3d (classical) always one fit per job
    assert planned["fit_batch"] == 4 and planned["fit_from_batch"] == 6 and planned["fit"] == 3
    _, _, alone = runs[1]
    assert "fit_batch" not in alone and alone["fit"] == 9


def test_batched_rows_equal_one_fit_per_job_in_float64(runs):
    batched = pd.read_parquet(runs[2][0] / "results/fits.parquet")
    alone = pd.read_parquet(runs[1][0] / "results/fits.parquet")
    key = ["dataset", "noise", "method", "image"]
    batched, alone = (
        batched.sort_values(key).reset_index(drop=True),
        alone.sort_values(key).reset_index(drop=True),
    )
    assert list(batched.columns) == list(alone.columns)
    ours = batched[batched.method == "ours"].set_index(["dataset", "image"]).batch_size.to_dict()
    # shot0 (64x96) and shot1 (64x64) share a planned batch but not a size: fitted apart
    assert ours == {
        ("Set12", "01"): 2,
        ("Set12", "02"): 2,
        ("Set12", "03"): 1,
        ("mine", "shot0"): 1,
        ("mine", "shot1"): 1,
        ("mine", "shot2"): 1,
    }
    assert (alone.batch_size == 1).all() and (batched[batched.method == "bm3d"].batch_size == 1).all()
    for col in batched.columns.drop(RUNTIME_COLUMNS):
        if pd.api.types.is_float_dtype(batched[col]):
            np.testing.assert_allclose(batched[col], alone[col], rtol=1e-6, err_msg=col)
        else:
            assert batched[col].tolist() == alone[col].tolist(), col
    t2 = pd.read_parquet(runs[2][0] / "results/trajectories.parquet").sort_values(key + ["iteration"])
    t1 = pd.read_parquet(runs[1][0] / "results/trajectories.parquet").sort_values(key + ["iteration"])
    assert len(t2) == len(t1) == 6 * ITER
    for col in ("loss", "psnr_raw", "psnr_ema", "psnr_noisy", "ssim_ema"):
        np.testing.assert_allclose(t2[col].astype(float), t1[col].astype(float), rtol=1e-6, err_msg=col)
    for d, i in [("Set12", "01"), ("mine", "shot1")]:
        a, b = (
            np.asarray(
                Image.open(r[0] / f"results/fits/{d}/gaussian{25 if d == 'Set12' else 15}/ours/{i}.png"),
                dtype=int,
            )
            for r in (runs[2], runs[1])
        )
        assert np.abs(a - b).max() <= 1  # float64 outputs, rounded to 8 bits


def test_batched_fits_rerun_like_single_ones(runs):
    work, cfg, _ = runs[2]
    again = run_snakemake(work, "--configfile", str(cfg), "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
    # a lost per-fit file is copied out of its batch again, nothing is refitted
    png = work / "results/fits/Set12/gaussian25/ours/02.png"
    before = png.read_bytes()
    png.unlink()
    target = str(png.relative_to(work))
    counts = job_counts(run_snakemake(work, "--configfile", str(cfg), "-n", target).stdout)
    assert counts == {"fit_from_batch": 1}
    run_snakemake(work, "--configfile", str(cfg), "--cores", "1", target)
    assert png.read_bytes() == before
    # a method's setting refits its batches (and only those), through fit_batch
    changed = yaml.safe_load(cfg.read_text())
    changed["methods"]["ours"] = {"lr": 0.02}
    cfg2 = work / "changed.yaml"
    cfg2.write_text(yaml.safe_dump(changed))
    counts = job_counts(run_snakemake(work, "--configfile", str(cfg2), "-n").stdout)
    assert counts["fit_batch"] == 4 and counts["fit_from_batch"] == 6 and "fit" not in counts
    # switching batching off refits the batched methods one per job
    changed["methods"]["ours"], changed["fit"]["batch"] = {}, 1
    cfg2.write_text(yaml.safe_dump(changed))
    counts = job_counts(run_snakemake(work, "--configfile", str(cfg2), "-n").stdout)
    assert counts["fit"] == 6 and "fit_batch" not in counts


def test_batch_refuses_settings_it_lacks(tmp_path, mirror):
    config = _config(tmp_path, mirror, 4)
    config["fit"]["autocast"] = "bf16"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    proc = run_snakemake(tmp_path, "--configfile", str(cfg), "-n", check=False)
    assert proc.returncode != 0
    assert (
        "config key fit.batch: batched fits (fit.batch: 4) have no fit.autocast" in proc.stdout + proc.stderr
    )


def test_batch_job_refuses_bad_requests(tmp_path):
    from dipkit.fit_jobs import FitBatchJob, Runtime, run_fit_batch_job
    from dipkit.methods import fit_spec, get_method

    ours = fit_spec(get_method("ours"), "Set12", "01", "gaussian25")
    bm3d = fit_spec(get_method("bm3d"), "Set12", "01", "gaussian25")
    job = FitBatchJob(
        "prepared.npz",
        "noisy.npz",
        "Set12",
        "gaussian25",
        images=("01", "02"),
        specs=(ours,),
        config_seed=1,
        fit_version=4,
        out_dir=str(tmp_path / "out"),
    )
    with pytest.raises(ValueError, match="one spec per image, got 2 images and 1 specs"):
        run_fit_batch_job(job, Runtime())
    with pytest.raises(ValueError, match=r"method bm3d \(classical\) cannot run in a batch"):
        run_fit_batch_job(replace(job, images=("01",), specs=(bm3d,)), Runtime())
    assert not (tmp_path / "out").exists()
