"""dipkit.job_costs on benchmark files written by Snakemake's own writer (a real run's table is
checked in tests/test_workflow_resources.py)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from snakemake.benchmark import BenchmarkRecord, write_benchmark_records

from dipkit.columns import JOB_COST_TABLE, JOB_COSTS
from dipkit.job_costs import read_benchmark, read_benchmarks, run_job_costs, summarize


def _record(seconds: float, rss: float | None = None, cpu: float = 0.0) -> BenchmarkRecord:
    rec = BenchmarkRecord(running_time=seconds)
    if rss is not None:  # sampled while the job ran
        rec.data_collected = True
        rec.max_rss, rec.max_vms, rec.max_uss, rec.max_pss = rss, 2 * rss, rss, rss
        rec.io_in, rec.io_out, rec.cpu_time = 1.5, 0.25, cpu
    return rec


def _write(path, *records):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_benchmark_records(list(records), str(path), False)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "benchmarks"
    _write(root / "fit/Set12/gaussian25/ours/01.tsv", _record(30.0, 900.0, 28.0))
    _write(root / "fit/Set12/gaussian25/ours/02.tsv", _record(50.0, 1100.0, 47.5))
    _write(root / "fit/Set12/gaussian25/bm3d/01.tsv", _record(0.3))  # ended before the first sample
    _write(root / "prepare_dataset/Set12.tsv", _record(4.0, 300.0, 3.0))
    _write(root / "aggregate_fits.tsv", _record(2.0, 250.0, 1.5))
    _write(root / "table2.tsv", _record(1.0), _record(3.0, 200.0, 2.0))  # repeat(): two records
    return root


def test_one_record(folder):
    row = read_benchmark(folder / "fit/Set12/gaussian25/ours/02.tsv")
    assert row == {"wall_s": 50.0, "max_rss_mb": 1100.0, "cpu_s": 47.5, "io_in_mb": 1.5, "io_out_mb": 0.25}
    fast = read_benchmark(folder / "fit/Set12/gaussian25/bm3d/01.tsv")
    assert fast["wall_s"] == 0.3 and fast["max_rss_mb"] is None and fast["cpu_s"] is None
    repeated = read_benchmark(folder / "table2.tsv")
    assert repeated["wall_s"] == 2.0 and repeated["max_rss_mb"] == 200.0


def test_a_file_that_is_no_benchmark_is_named(tmp_path):
    bad = tmp_path / "x.tsv"
    bad.write_text("a\tb\n1\t2\n")
    with pytest.raises(ValueError, match=r"x\.tsv: not a Snakemake benchmark file"):
        read_benchmark(bad)


def test_rows_per_job_and_rule(folder):
    rows = read_benchmarks(folder)
    assert [(r["rule"], r["job"]) for r in rows] == [
        ("aggregate_fits", ""),
        ("fit", "Set12/gaussian25/bm3d/01"),
        ("fit", "Set12/gaussian25/ours/01"),
        ("fit", "Set12/gaussian25/ours/02"),
        ("prepare_dataset", "Set12"),
        ("table2", ""),
    ]
    table = summarize(rows, rule_order=["prepare_dataset", "fit", "table2"])
    assert [r["rule"] for r in table] == ["prepare_dataset", "fit", "table2", "aggregate_fits", "total"]
    fit = table[1]
    assert fit["jobs"] == 3 and fit["wall_s_total"] == pytest.approx(80.3)
    assert fit["wall_s_mean"] == pytest.approx(80.3 / 3) and fit["wall_s_max"] == 50.0
    assert fit["max_rss_mb"] == 1100.0 and fit["cpu_s_total"] == pytest.approx(75.5)
    total = table[-1]
    assert total["jobs"] == 6 and total["wall_s_total"] == pytest.approx(80.3 + 4 + 2 + 2)
    assert summarize([]) == [] and read_benchmarks(folder / "missing") == []


def test_written_tables(folder, tmp_path):
    out = tmp_path / "out"
    run_job_costs(str(folder), str(out / "costs.parquet"), str(out / "costs.csv"), str(out / "costs.md"))
    per_job = pd.read_parquet(out / "costs.parquet")
    assert list(per_job.columns) == [c.name for c in JOB_COSTS] and len(per_job) == 6
    assert math.isnan(per_job.set_index("job").loc["Set12/gaussian25/bm3d/01", "max_rss_mb"])
    per_rule = pd.read_csv(out / "costs.csv")
    assert list(per_rule.columns) == [c.name for c in JOB_COST_TABLE]
    assert per_rule["rule"].tolist()[-1] == "total"
    md = (out / "costs.md").read_text()
    assert md.startswith("# What the run cost, per rule")
    assert "| fit | 3 | 80.3 | 26.8 | 50.0 | 1100 | 75.5 |" in md


def test_a_run_without_records_writes_empty_tables(tmp_path):
    """Results from before the benchmark: lines have no records; the table is empty, not an error."""
    out = tmp_path / "out"
    paths = [str(out / name) for name in ("c.parquet", "c.csv", "c.md")]
    assert run_job_costs(str(tmp_path / "none"), *paths) == []
    assert len(pd.read_parquet(out / "c.parquet")) == 0
    assert list(pd.read_csv(out / "c.csv").columns) == [c.name for c in JOB_COST_TABLE]
