"""The real ``snakemake`` on tiny configs: downloads over loopback HTTP, through to the table."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import REPO, run_snakemake

from dipkit.columns import NOISY_METRICS
from dipkit.images import to_float
from dipkit.io import load_stack
from dipkit.manifest import builtin_datasets
from dipkit.noise import NoiseSpec, add_noise, noise_seed

TINY = {
    "seed": 7,
    "download": {"timeout": 10, "attempts": 2, "backoff": 0},
    "datasets": {
        "Set9": {"images": ["image_House256rgb"], "gaussian": [25], "poisson": [0.1]},
        "Set12": {"max_images": 2, "gaussian": [25, 50]},
        "CBSD68": {"images": ["101085", "103070"], "gaussian": [25]},  # portrait, landscape
        "PolyU": {"max_images": 2, "real": True},
    },
}

OUTPUTS = [
    "results/tables/noisy_baseline.csv",
    "results/tables/noisy_baseline.md",
    "results/noisy_baseline.parquet",
    "results/prepared/CBSD68.npz",
    "results/noisy/Set9/gaussian25.npz",
    "results/noisy/Set9/poisson0.1.npz",
    "results/noisy/PolyU/real.npz",
    "results/metrics/noisy/Set12/gaussian50.parquet",
]


def write_config(path, **overrides):
    cfg = {**TINY, **overrides}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def job_counts(stdout: str) -> dict[str, int]:
    """Parse the 'Job stats' table of a dry run into {rule: count}."""
    counts, in_table = {}, False
    for line in stdout.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            in_table = True
            continue
        if in_table:
            if len(parts) == 2 and parts[1].isdigit():
                if parts[0] != "total":
                    counts[parts[0]] = int(parts[1])
            elif parts and not set(line.strip()) <= {"-", " "}:
                break
    return counts


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, mirror):
    """One complete tiny run, datasets downloaded from a loopback HTTP server."""
    import functools
    import threading

    from conftest import _QuietHandler, _Server

    srv = _Server(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(mirror)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    work = tmp_path_factory.mktemp("tiny")
    cfg = write_config(work / "config.yaml", mirror_url=url)
    try:
        proc = run_snakemake(work, "--configfile", str(cfg), "--cores", "2")
    finally:
        srv.shutdown()
        srv.server_close()
    return work, cfg, proc


def test_tiny_run_produces_the_table(tiny_run):
    work, _, _ = tiny_run
    table = pd.read_csv(work / "results/tables/noisy_baseline.csv")
    assert list(zip(table.dataset, table.noise)) == [
        ("Set9", "gaussian25"),
        ("Set9", "poisson0.1"),
        ("Set12", "gaussian25"),
        ("Set12", "gaussian50"),
        ("CBSD68", "gaussian25"),
        ("PolyU", "real"),
    ]
    assert table.images.tolist() == [1, 1, 2, 2, 2, 2]
    g25 = table.set_index(["dataset", "noise"]).psnr_mean
    # sigma 25 on [0,1] clipped images: ~20.2-20.8 dB; sigma 50 ~6 dB lower
    assert 19.5 < g25["Set9", "gaussian25"] < 21.5
    assert 5 < g25["Set12", "gaussian25"] - g25["Set12", "gaussian50"] < 7
    assert 30 < g25["PolyU", "real"] < 45
    md = (work / "results/tables/noisy_baseline.md").read_text()
    assert md.startswith("# Noisy baseline") and "| PolyU | real | 2 |" in md

    rows = pq.read_table(work / "results/noisy_baseline.parquet")
    assert rows.schema.names == [c.name for c in NOISY_METRICS]
    assert rows.num_rows == 10
    df = rows.to_pandas()
    assert set(df[df.dataset == "CBSD68"][["height", "width"]].itertuples(index=False, name=None)) == {
        (480, 320),
        (320, 480),
    }
    assert (df[df.dataset == "Set12"].channels == 1).all() and (df[df.dataset != "Set12"].channels == 3).all()
    assert df[df.noise == "real"].seed.isna().all() and df[df.noise != "real"].seed.notna().all()
    assert (df.ssim < df.ssim_paper).all()


def test_noisy_images_follow_the_documented_formula(tiny_run):
    work, _, _ = tiny_run
    prepared = load_stack(work / "results/prepared/Set9.npz")
    noisy = load_stack(work / "results/noisy/Set9/gaussian25.npz")
    clean = to_float(prepared["clean/image_House256rgb"])
    expected = add_noise(
        clean, NoiseSpec("gaussian", 25), noise_seed(7, "Set9", "image_House256rgb", "gaussian25")
    )
    assert noisy["image_House256rgb"].dtype == np.float32
    np.testing.assert_array_equal(noisy["image_House256rgb"], expected)
    polyu = load_stack(work / "results/prepared/PolyU.npz")
    assert sorted(polyu) == sorted(
        f"{role}/{img}"
        for img in ["Canon5D2_5_160_3200_chair_11", "Canon5D2_5_160_3200_chair_14"]
        for role in ("clean", "noisy")
    )


def test_second_run_gives_identical_bytes(tiny_run, mirror, tmp_path):
    work, _, _ = tiny_run
    cfg = write_config(tmp_path / "config.yaml", mirror_dir=str(mirror))
    run_snakemake(tmp_path, "--configfile", str(cfg), "--cores", "2")
    for rel in OUTPUTS:
        assert (tmp_path / rel).read_bytes() == (work / rel).read_bytes(), rel


def test_switching_source_or_redownloading_reruns_nothing(tiny_run, mirror):
    work, cfg, _ = tiny_run
    # the first run downloaded over HTTP; now offline from the mirror folder: nothing to do
    proc = run_snakemake(work, "--configfile", str(cfg), "--config", f"mirror_dir={mirror}", "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr
    # downloading again touches nothing downstream (consumers use ancient())
    proc = run_snakemake(
        work,
        "--configfile",
        str(cfg),
        "--config",
        f"mirror_dir={mirror}",
        "-n",
        "--forcerun",
        "download_dataset",
    )
    assert job_counts(proc.stdout + proc.stderr) == {"download_dataset": 4}


def test_params_change_reruns_only_downstream(tiny_run):
    work, cfg, _ = tiny_run
    proc = run_snakemake(work, "--configfile", str(cfg), "--config", "seed=8", "-n")
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts == {
        "add_noise": 5,
        "score_noisy": 5,
        "noisy_baseline_table": 1,
        "job_costs": 1,
        "all": 1,
    }, counts


def test_corrupted_served_file_fails_cleanly(mirror, tmp_path, http_serve):
    served = tmp_path / "served" / "Set9"
    served.mkdir(parents=True)
    f = next(f for f in builtin_datasets()["Set9"] if f.image == "image_House256rgb")
    data = bytearray((mirror / "Set9" / f.file).read_bytes())
    data[500] ^= 0x55
    (served / f.file).write_bytes(bytes(data))
    url = http_serve(tmp_path / "served")
    work = tmp_path / "work"
    work.mkdir()
    cfg = work / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "mirror_url": url,
                "download": {"timeout": 5, "attempts": 1, "backoff": 0},
                "datasets": {"Set9": {"images": ["image_House256rgb"], "gaussian": [25]}},
            }
        )
    )
    proc = run_snakemake(work, "--configfile", str(cfg), "--cores", "1", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    import hashlib

    actual = hashlib.sha256(bytes(data)).hexdigest()
    assert f"sha256 mismatch for Set9/{f.file}" in out and f"expected {f.sha256}, got {actual}" in out
    leftovers = [p for p in (work / "results").rglob("*") if "logs" not in p.parts and p.is_file()]
    assert leftovers == []
    assert not (work / "results/downloads/Set9").exists()


def test_user_dataset_runs_through(tmp_path):
    """User folders run through the whole benchmark like the built-in sets: a plain folder
    (synthetic noise) and a real-noise folder of clean/ and noisy/ pairs, fitted, tabled and
    drawn."""
    from conftest import synthetic_image

    from dipkit.images import save_png as save

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(2):
        save(folder / f"shot {i}.png", synthetic_image(70, 100, 3, seed=i))
    pairs = tmp_path / "pairs"
    (pairs / "clean").mkdir(parents=True)
    (pairs / "noisy").mkdir()
    clean = synthetic_image(64, 64, 3, seed=5)
    save(pairs / "clean" / "a.png", clean)
    save(pairs / "noisy" / "a.png", clean + np.random.default_rng(0).normal(0, 0.05, clean.shape))
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "datasets": {
                    "mine": {"path": str(folder), "gaussian": [15]},
                    "phone": {"path": str(pairs), "real": True},
                },
                "methods": {"ours": {"width": 8}, "bm3d": {}},
                "fit": {"iterations": 3},
            }
        )
    )
    run_snakemake(tmp_path, "--configfile", str(cfg), "--cores", "2")
    df = pd.read_parquet(tmp_path / "results/noisy_baseline.parquet")
    mine = df[df.dataset == "mine"]
    assert sorted(mine.image) == ["shot_0", "shot_1"] and set(zip(mine.height, mine.width)) == {(64, 96)}
    fits = pd.read_parquet(tmp_path / "results/fits.parquet")
    assert sorted(zip(fits.dataset, fits.noise, fits.method)) == sorted(
        [("mine", "gaussian15", m) for m in ("ours", "ours", "bm3d", "bm3d")]
        + [("phone", "real", "ours"), ("phone", "real", "bm3d")]
    )
    assert "mine" in (tmp_path / "results/tables/table2.md").read_text()
    assert "phone" in (tmp_path / "results/tables/table5.md").read_text()
    for name in ("psnr_curves_mine_gaussian15", "gallery_mine_gaussian15", "gallery_phone_real"):
        assert (tmp_path / f"results/figures/{name}.png").exists()


def test_default_config_plans_the_full_job_set(tmp_path):
    start = time.perf_counter()
    proc = run_snakemake(tmp_path, "--configfile", str(REPO / "config.yaml"), "-n")
    elapsed = time.perf_counter() - start
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts == {
        "download_dataset": 4,
        "prepare_dataset": 4,
        "add_noise": 10,
        "score_noisy": 10,
        "noisy_baseline_table": 1,
        # Table 2 (Set9, Set12, CBSD68 x sigma 25, 50), Table 4 (Set9 x 3 zeta), Table 5 (PolyU)
        "fit": (9 * 5 + 12 * 2 + 68 * 2 + 100) * 7 + (9 + 12 + 68) * 3,  # 6 DIP methods + BM3D; relabel
        "isnas_search": 305,  # ISNAS-DIP: one search and one top-k fit job per image and noise
        "isnas_fit": 305,
        "aggregate_fits": 1,
        "table2": 1,
        "paper_table": 4,
        "texture_features": 3,
        "classifier": 1,
        "relabel": 1,
        # experiments: Fig. 3 (10 arms x 1 image), Fig. 4 (8 x 2), Fig. 5 (48 x 2 images x 2 sigma),
        # Fig. 6 (10 x 2), Fig. 12 (2 x 2); Fig. 2 has no fits
        "experiment_fit": 10 + 16 + 192 + 20 + 4,
        "experiment": 6,
        "experiment_figure": 6,  # copies under results/figures/
        "psnr_curves": 10,  # one per dataset x noise with fits
        "gallery": 10,
        "roc_figure": 1,
        "job_costs": 1,  # what every job cost, from their benchmark records
        "all": 1,
    }, counts
    print(f"dry run of the default config: {elapsed:.1f} s")


def test_lint_is_clean(tmp_path):
    proc = run_snakemake(tmp_path, "--configfile", str(REPO / "config.yaml"), "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_snakefmt_is_clean():
    import subprocess

    exe = shutil.which("snakefmt")
    assert exe, "snakefmt is a test dependency: pip install -e '.[test]'"
    proc = subprocess.run([exe, "--check", "Snakefile", "rules"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
