"""Rerun policy for code edits, with the real snakemake on a copy of the repository:
editing dipkit without bumping a stage version reruns nothing; bumping it reruns that stage
and what depends on it."""

from __future__ import annotations

import shutil
import subprocess
import sys

import yaml

from conftest import REPO
from test_workflow import job_counts

CONFIG = {
    "seed": 1,
    "datasets": {"Set12": {"images": ["01"], "gaussian": [25]}},
}


def _snakemake(repo, work, *args):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(work),
           "--configfile", str(work / "config.yaml"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_code_edits_rerun_only_through_stage_versions(tmp_path, mirror):
    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns(".git", "results", ".snakemake", "__pycache__"))
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.yaml").write_text(yaml.safe_dump({**CONFIG, "mirror_dir": str(mirror)}, sort_keys=False))
    _snakemake(repo, work, "--cores", "2")

    noise = repo / "dipkit/noise.py"
    noise.write_text(noise.read_text() + "\n# a refactor that changes no result\n")
    assert "Nothing to be done" in _snakemake(repo, work, "-n")

    versions = repo / "dipkit/_versions.py"
    text = versions.read_text()
    assert '"noise": 1,' in text
    versions.write_text(text.replace('"noise": 1,', '"noise": 2,'))
    out = _snakemake(repo, work, "-n")
    assert job_counts(out) == {"add_noise": 1, "score_noisy": 1, "noisy_baseline_table": 1, "job_costs": 1, "all": 1}
    assert "Params have changed since last execution" in out
