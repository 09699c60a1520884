"""``benchmarks/dag_cost.py`` runs end to end on the tiny config (no timing is asserted): it
times this checkout against another checkout and against a Snakemake package from a folder,
writes every run to its CSV, and checks that the plans agree."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import snakemake

from tests.conftest import REPO

SCRIPT = REPO / "benchmarks" / "dag_cost.py"
TINY = REPO / "tests" / "configs" / "tiny.yaml"


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--configfile", str(TINY), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
    )


def test_dag_cost_compares_checkouts_and_snakemake_packages(tmp_path):
    # the installed Snakemake, reached through a folder of its own: what --snakemake is given
    # for a patched copy
    packages = tmp_path / "snakemake_copy"
    packages.mkdir()
    (packages / "snakemake").symlink_to(Path(snakemake.__file__).parent)
    table = tmp_path / "runs.csv"
    args = ["--repeats", "1", "--against", str(REPO), "--snakemake", str(packages), "--csv", str(table)]
    proc = _run(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for name in ("this checkout", "--against", "--snakemake"):
        assert f"{name}: planned jobs: 28" in out  # tests/configs/tiny.yaml
    assert "same job set (--against): yes (28 jobs here, 28 there)" in out
    assert "same job set (--snakemake): yes (28 jobs here, 28 there)" in out
    assert "this checkout / --snakemake:" in out
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 3
    assert rows[2]["checkout"].endswith("with snakemake from snakemake_copy")
    assert all(float(r["wall_s"]) > 0 and r["planned_jobs"] == "28" for r in rows)


def test_dag_cost_rejects_a_folder_without_snakemake(tmp_path):
    proc = _run("--snakemake", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2
    assert f"--snakemake {tmp_path}: no snakemake package" in proc.stderr
