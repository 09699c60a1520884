"""Rerun policy for code edits, with the real snakemake on copies of the repository: editing
dipkit or a workflow script without bumping a stage version reruns nothing (the profiles leave
out Snakemake's ``code`` trigger); bumping it reruns that stage and what depends on it; results
made by the code from before issue 18 moved it are up to date for the code after."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml
from conftest import REPO
from test_workflow import job_counts

CONFIG = {
    "seed": 1,
    "datasets": {"Set12": {"images": ["01"], "gaussian": [25]}},
}

#: What the workflow needs of a checkout (not .git, .venv, results, tests; docs/ for the
#: early-stopping study that Table 3 reads).
WORKFLOW_FILES = (
    "Snakefile",
    "config.yaml",
    "rules",
    "workflow_scripts",
    "dipkit",
    "schemas",
    "profiles",
    "envs",
    "docs",
)

#: ``main`` before issue 18 moved the fit code (dipkit/benchmark.py -> runner.py and fit_jobs.py,
#: schemas.py -> columns.py, workflow.py -> script_context.py, evaluation.py -> noisy_baseline.py):
#: every workflow script changed.
BEFORE_THE_MOVES = "d974b10d6c73a7fad295c187db833d6c6660f14f"


def _copy_workflow(dest):
    """The workflow files of this checkout, copied with fresh modification times (as a ``git pull``
    leaves them)."""
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(
                src,
                dest / name,
                copy_function=shutil.copy,
                ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
            )
        else:
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest / name)
    return dest


def _checkout(commit, dest):
    """The tree of ``commit`` (``git archive``), or a skip when this clone lacks it."""
    proc = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", commit],
        capture_output=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(
            f"commit {commit[:12]} is not in this clone (a shallow clone? git fetch --unshallow): "
            + proc.stderr.decode(errors="replace").strip()
        )
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        tar.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    return dest


def _snakemake(repo, work, *args):
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(repo / "Snakefile"),
        "-d",
        str(work),
        "--configfile",
        str(work / "config.yaml"),
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_code_edits_rerun_only_through_stage_versions(tmp_path, mirror):
    repo = _copy_workflow(tmp_path / "repo")
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.yaml").write_text(yaml.safe_dump({**CONFIG, "mirror_dir": str(mirror)}, sort_keys=False))
    _snakemake(repo, work, "--cores", "2")

    noise = repo / "dipkit/noise.py"
    noise.write_text(noise.read_text() + "\n# a refactor that changes no result\n")
    script = repo / "workflow_scripts/add_noise.py"
    script.write_text(script.read_text() + "\n# a refactor that changes no result\n")
    assert "Nothing to be done" in _snakemake(repo, work, "-n")

    versions = repo / "dipkit/_versions.py"
    text = versions.read_text()
    assert '"noise": 1,' in text
    versions.write_text(text.replace('"noise": 1,', '"noise": 2,'))
    out = _snakemake(repo, work, "-n")
    assert job_counts(out) == {
        "add_noise": 1,
        "score_noisy": 1,
        "noisy_baseline_table": 1,
        "job_costs": 1,
        "all": 1,
    }
    assert "Params have changed since last execution" in out


#: A run through most rules, cheap on a CPU: batched fits, an experiment's fit, a study without
#: fits, the tables and figures, the noisy baseline and the job costs.
MOVES_CONFIG = {
    "seed": 3,
    "datasets": {"Set12": {"images": ["01", "02"], "gaussian": [25]}},
    "methods": {"ours": {}},
    "fit": {"iterations": 3, "ssim_every": 1, "batch": 2},
    "experiments": {
        "depth_width_skips": {
            "images": ["Set12/01"],
            "crop": 64,
            "iterations": 3,
            "noise": ["gaussian25"],
            "options": {"depths": [1], "widths": [8], "skips": [False]},
        },
        "spectral_density": {"images": ["Set12/01"]},
    },
}


def test_results_of_the_code_before_the_moves_are_up_to_date(tmp_path, mirror):
    """Results made by the workflow before issue 18 renamed its modules and rewrote every workflow
    script: the workflow after reruns no fit, only the figures whose stage versions it bumped,
    because its profile leaves out the ``code`` trigger; without the profile
    (``--workflow-profile none``) every scripted job would rerun."""
    repo = _checkout(BEFORE_THE_MOVES, tmp_path / "repo")
    assert (repo / "dipkit/benchmark.py").is_file()
    study = "docs/early-stopping/fits.csv"  # Table 3 reads the early-stopping study
    study_grew = (repo / study).read_bytes() != (REPO / study).read_bytes()
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.yaml").write_text(
        yaml.safe_dump({**MOVES_CONFIG, "mirror_dir": str(mirror)}, sort_keys=False)
    )
    _snakemake(repo, work, "--cores", "2", "--resources", "gpu=2")

    shutil.rmtree(repo)  # the checkout updated in place, its files newer than every result (a git pull)
    _copy_workflow(repo)
    assert not (repo / "dipkit/benchmark.py").exists()
    out = _snakemake(repo, work, "-n")
    # only what the figure stages' version bumps ask (one figure-saving helper, the gallery's
    # layout): the figures and the experiments' summaries, from the fits as they are
    # and Table 3 again if the study it reads has new fits since (Snakemake compares the
    # checksum of a small input that is newer than the outputs: an unchanged study reruns nothing)
    assert job_counts(out) == {
        "experiment": 2,
        "experiment_figure": 2,
        "gallery": 1,
        "psnr_curves": 1,
        "job_costs": 1,
        "all": 1,
        **({"paper_table": 1} if study_grew else {}),
    }, out

    # Without the profile Snakemake's code trigger reruns every job whose script is newer than its
    # outputs. (The download's script is made old here: Snakemake skips the jobs below a job that
    # reruns when they read its output as ancient(), as every consumer of the downloads does.)
    os.utime(repo / "workflow_scripts/download.py", (0, 0))
    out = _snakemake(repo, work, "-n", "--workflow-profile", "none")
    assert "Code has changed since last execution" in out
    assert {
        "prepare_dataset",
        "add_noise",
        "score_noisy",
        "fit_batch",
        "fit_from_batch",
        "experiment_fit",
        "aggregate_fits",
        "paper_table",
        "table2",
    } <= set(job_counts(out))
