"""The reproduction config (configs/paper_table2_ours.yaml) and the publishing of its numbers
(dipkit.reproduced, benchmarks/publish_table2.py), from a tiny real CPU pipeline run of that
config; and fit.cuda_graphs in the pipeline (read by the jobs, not a fit parameter)."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import yaml
from conftest import REPO, run_snakemake
from test_workflow import job_counts

from dipkit.reproduced import CSV_COLUMNS

PAPER_CONFIG = REPO / "configs/paper_table2_ours.yaml"


def _tiny(config: dict, mirror, **fit) -> dict:
    """The paper config on a few images for a few iterations, offline."""
    tiny = {**config, "mirror_dir": str(mirror)}
    tiny["datasets"] = {
        "Set12": {"images": ["01", "02"], "gaussian": [25, 50]},
        "Set9": {"images": ["image_House256rgb"], "gaussian": [25]},
    }
    tiny["fit"] = {**config["fit"], "iterations": 3, "ssim_every": 1, **fit}
    return tiny


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory, mirror):
    work = tmp_path_factory.mktemp("paper")
    cfg = work / "tiny_paper.yaml"
    cfg.write_text(yaml.safe_dump(_tiny(yaml.safe_load(PAPER_CONFIG.read_text()), mirror), sort_keys=False))
    run_snakemake(work, "--configfile", str(cfg), "--cores", "2", "--resources", "gpu=2")
    return work, cfg


def test_paper_config_plans_only_the_ours_column(tmp_path):
    """Run from a folder without config.yaml, the config plans Table 2's Ours column alone:
    178 fits of `ours` in batches, no classifier, relabelling or experiments."""
    proc = run_snakemake(tmp_path, "--configfile", str(PAPER_CONFIG), "-n", "-q", "rules")
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts["fit_from_batch"] == 178 and counts["fit_batch"] == 40
    assert "fit" not in counts and "experiment_fit" not in counts and "texture_features" not in counts
    assert counts["add_noise"] == 6 and counts["download_dataset"] == 3
    config = yaml.safe_load(PAPER_CONFIG.read_text())
    assert list(config["methods"]) == ["ours"] and config["experiments"] == {}
    assert not config["classifier"]["enabled"] and not config["relabel"]["enabled"]


def test_pipeline_table_sits_beside_the_paper(paper_run):
    work, _ = paper_run
    t2 = pd.read_csv(work / "results/tables/table2.csv")
    assert set(t2.method) == {"ours"} and len(t2) == 3
    row = t2[(t2.dataset == "Set12") & (t2.sigma == 25)].iloc[0]
    assert row.paper_psnr == 28.14 and row.images == 2
    assert "24.59" in (work / "results/tables/table2.md").read_text()  # the paper's Set12 sigma-50 cell


def _publish(work, out, *extra, config=None):
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks/publish_table2.py"),
            "--config",
            str(config or work / "tiny_paper.yaml"),
            "--out",
            str(out),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=work,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return pd.read_csv(out / "table2.csv"), (out / "table2.md").read_text()


def test_publish_writes_the_csv_and_the_page(paper_run, tmp_path):
    work, _ = paper_run
    out = tmp_path / "reproduced"
    out.mkdir()
    (out / "reasons.yaml").write_text("Set12/gaussian50/ours: 3 iterations only (a test run)\n")
    # the full config: its datasets have more images than the tiny run fitted (partial cells)
    cells, page = _publish(
        work, out, "--date", "2026-01-02", "--command", "snakemake --cores all", config=PAPER_CONFIG
    )
    assert list(cells.columns) == CSV_COLUMNS
    assert list(zip(cells.dataset, cells.noise)) == [
        ("Set12", "gaussian25"),
        ("Set9", "gaussian25"),
        ("Set12", "gaussian50"),
    ]
    fits = pd.read_parquet(work / "results/fits.parquet")
    mine = fits[(fits.dataset == "Set12") & (fits.noise == "gaussian50")]
    row = cells[(cells.dataset == "Set12") & (cells.noise == "gaussian50")].iloc[0]
    assert row.images == 2 and row.psnr == pytest.approx(mine.psnr_last.mean(), abs=5e-4)
    assert row.ssim_paper == pytest.approx(mine.ssim_paper_last.mean(), abs=1e-6)
    assert (row.paper_psnr, row.paper_ssim) == (24.59, 0.805)
    assert (cells.device == "cpu").all() and (cells.date == "2026-01-02").all()
    assert (cells.iterations == 3).all() and (cells.seed == 0).all()

    assert page.startswith("# Table 2, reproduced") and "Measured on cpu on 2026-01-02" in page
    assert "| Set12 | 50 | ours | 2 of 12 |" in page and "| Set9 | 25 | ours | 1 of 9 |" in page
    assert "## Spread across images" in page and "Made with `snakemake --cores all`." in page
    # three iterations are far from the paper: every cell is listed, with its lowest images
    assert page.count("### ") == 3 and "Lowest images: " in page
    assert "Reason: 3 iterations only (a test run)" in page
    assert page.count("Reason: *not measured yet*") == 2


def test_publish_from_the_fit_folder_of_a_run_cut_short(paper_run, tmp_path):
    work, _ = paper_run
    a, _ = _publish(
        work, tmp_path / "a", "--fits", str(work / "results/fits.parquet"), "--date", "2026-01-02"
    )
    b, _ = _publish(work, tmp_path / "b", "--fits", str(work / "results/fits"), "--date", "2026-01-02")
    pd.testing.assert_frame_equal(a, b)


def test_cuda_graphs_setting_reruns_nothing(paper_run, tmp_path):
    work, cfg = paper_run
    changed = yaml.safe_load(cfg.read_text())
    changed["fit"]["cuda_graphs"] = "off"
    other = tmp_path / "off.yaml"
    # unquoted, as a user would write it (YAML reads a boolean)
    other.write_text(
        yaml.safe_dump(changed, sort_keys=False).replace("cuda_graphs: 'off'", "cuda_graphs: off")
    )
    assert yaml.safe_load(other.read_text())["fit"]["cuda_graphs"] is False
    proc = run_snakemake(work, "--configfile", str(other), "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_cuda_graphs_on_fails_a_cpu_fit_job_with_one_line(tmp_path, mirror):
    config = _tiny(yaml.safe_load(PAPER_CONFIG.read_text()), mirror, cuda_graphs="on", batch=1)
    config["datasets"] = {"Set12": {"images": ["01"], "gaussian": [25]}}
    cfg = tmp_path / "on.yaml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = run_snakemake(tmp_path, "--configfile", str(cfg), "--cores", "1", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "fit.cuda_graphs is 'on' but CUDA graphs need a CUDA device and this fit runs on cpu" in out
    assert not (tmp_path / "results/fits/Set12/gaussian25/ours/01.parquet").exists()
