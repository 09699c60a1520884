"""``benchmarks/fit_speed.py`` runs end to end on tiny settings (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "benchmarks" / "fit_speed.py"


def _run(tmp_path, *args: str) -> tuple[str, dict]:
    out = tmp_path / "rows.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--device", "cpu", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def test_per_fit_mode_times_reference_and_engine(tmp_path):
    stdout, data = _run(
        tmp_path,
        "per-fit",
        "--sizes",
        "32",
        "--methods",
        "ours32",
        "deep_decoder",
        "--iterations",
        "2",
        "--ref-iterations",
        "2",
        "--warmup",
        "1",
        "--rounds",
        "1",
        "--threads",
        "1",
    )
    assert "Device: " in stdout and "| ours32 | 32² |" in stdout and "| deep_decoder | 32² |" in stdout
    rows = {r["method"]: r for r in data["rows"]}
    assert set(rows) == {"ours32", "deep_decoder"}
    for r in rows.values():
        assert r["ref_s_per_it"] > 0 and r["engine_s_per_it"] > 0 and r["speedup"] > 0
        assert r["speedup_per_round"] == [pytest.approx(r["speedup"])]  # one round
        assert r["ref_peak"] > 0 and r["engine_peak"] > 0 and 0 < r["ssim_share"] < 1
    assert rows["ours32"]["params"] == 58_339  # the paper's count for width 32, RGB


@pytest.mark.parametrize("loop", ["engine", "reference"])
def test_throughput_mode_runs_both_layouts(tmp_path, loop):
    stdout, data = _run(
        tmp_path,
        "throughput",
        "--method",
        "ours32",
        "--size",
        "32",
        "--iterations",
        "3",
        "--warmup",
        "1",
        "--layouts",
        "1x2",
        "2x1",
        "--loop",
        loop,
    )
    assert f"{loop} loop" in stdout
    rows = data["rows"]
    assert [r["layout"] for r in rows] == ["1x2", "2x1"]
    assert rows[0]["ratio"] == 1.0 and all(r["fits_per_hour"] > 0 for r in rows)


def test_batched_mode_runs(tmp_path):
    stdout, data = _run(
        tmp_path,
        "batched",
        "--method",
        "ours32",
        "--size",
        "32",
        "--iterations",
        "3",
        "--warmup",
        "1",
        "--batches",
        "2",
        "--threads",
        "1",
    )
    assert "| batched, 2 fits |" in stdout
    assert [r["fits"] for r in data["rows"]] == [1, 2] and all(r["fits_per_hour"] > 0 for r in data["rows"])


def test_throughput_mode_with_batched_processes(tmp_path):
    stdout, data = _run(
        tmp_path,
        "throughput",
        "--method",
        "ours32",
        "--size",
        "32",
        "--iterations",
        "3",
        "--warmup",
        "1",
        "--layouts",
        "1x1",
        "2x1",
        "--batch",
        "2",
    )
    assert "batched (2 fits per process) loop" in stdout
    rows = data["rows"]
    assert [(r["layout"], r["processes"], r["batch"]) for r in rows] == [
        ("1x1, one fit per process", 1, 1),
        ("1x1, 2 fits per process", 1, 2),
        ("2x1, 2 fits per process", 2, 2),
    ]
    assert rows[0]["ratio"] == 1.0 and all(r["fits_per_hour"] > 0 for r in rows)


def test_cuda_graph_rows_beside_eager_ones(tmp_path):
    """--cuda-graphs adds the captured step's rows (on a CPU ``auto`` runs eagerly: not captured)."""
    stdout, data = _run(
        tmp_path,
        "per-fit",
        "--cuda-graphs",
        "--sizes",
        "32",
        "--methods",
        "ours32",
        "--iterations",
        "2",
        "--ref-iterations",
        "1",
        "--warmup",
        "1",
        "--rounds",
        "1",
        "--threads",
        "1",
    )
    assert "| ours32 | 32² |" in stdout and "graph vs eager" in stdout
    (row,) = data["rows"]
    assert row["graph_s_per_it"] > 0 and row["graph_speedup"] > 0 and row["captured"] is False
    stdout, data = _run(
        tmp_path,
        "full",
        "--cuda-graphs",
        "--methods",
        "ours32",
        "--size",
        "32",
        "--iterations",
        "2",
        "--warmup",
        "1",
    )
    assert [r["loop"] for r in data["rows"]] == [
        "engine",
        "graph",
    ] and "| ours32 | 32² | 2 | eager |" in stdout
