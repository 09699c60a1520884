"""What a run cost: Snakemake's benchmark records of every job, per job and per rule.

Every rule but ``all`` and ``job_costs`` declares ``benchmark:
results/benchmarks/<rule>/<wildcards>.tsv`` (or ``results/benchmarks/<rule>.tsv``), and
Snakemake writes one TSV per job with its wall time and, sampled while it runs (after half a
second, then every 30 s), its peak resident memory, CPU time and I/O. :func:`read_benchmarks`
turns a folder of them into one row per job (:data:`dipkit.columns.JOB_COSTS`);
:func:`summarize` makes the per-rule table of the report (:data:`dipkit.columns.JOB_COST_TABLE`).

The table covers the benchmark files present: the last run of every job whose output is in
``results/`` (a job that reruns overwrites its record; records of jobs dropped from the config
stay until ``results/benchmarks`` is cleaned). Fit rows hold the fit's own exact figures
(``wall_time_s``, ``peak_memory_bytes``); these are the whole jobs' (interpreter start,
imports, reading and writing included).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

#: columns of a Snakemake benchmark TSV this module reads, and the names it gives them
_FIELDS = {
    "s": "wall_s",
    "max_rss": "max_rss_mb",
    "cpu_time": "cpu_s",
    "io_in": "io_in_mb",
    "io_out": "io_out_mb",
}


def _number(text: str | None) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):  # "NA" or "-": not sampled (a job faster than the first sample)
        return None
    return value if math.isfinite(value) else None


def read_benchmark(path: str | Path) -> dict:
    """One benchmark TSV -> ``{wall_s, max_rss_mb, cpu_s, io_in_mb, io_out_mb}``.

    A ``repeat(...)`` benchmark has several rows: the mean wall and CPU time, the largest
    memory and I/O.

    :raises ValueError: when the file is not a Snakemake benchmark TSV (names the file).
    """
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows or "s" not in rows[0]:
        raise ValueError(f"{path}: not a Snakemake benchmark file (expected a TSV with an 's' column)")
    out = {}
    for field, name in _FIELDS.items():
        values = [v for v in (_number(r.get(field)) for r in rows) if v is not None]
        if not values:
            out[name] = None
        elif field in ("s", "cpu_time"):
            out[name] = sum(values) / len(values)
        else:
            out[name] = max(values)
    return out


def read_benchmarks(folder: str | Path) -> list[dict]:
    """Every job's record under ``folder`` (:data:`dipkit.columns.JOB_COSTS` rows), sorted by
    rule and job; the rule is the first path component, the job the rest without ``.tsv``."""
    root = Path(folder)
    rows = []
    for path in sorted(root.rglob("*.tsv")) if root.is_dir() else []:
        parts = path.relative_to(root).with_suffix("").parts
        rule, job = (parts[0], "/".join(parts[1:])) if len(parts) > 1 else (parts[0], "")
        rows.append({"rule": rule, "job": job, **read_benchmark(path)})
    return rows


def _total(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _largest(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def summarize(rows: Sequence[dict], rule_order: Sequence[str] = ()) -> list[dict]:
    """Per rule (:data:`dipkit.columns.JOB_COST_TABLE`): jobs, total / mean / longest wall
    time, largest peak memory of one job, total CPU time; then a ``total`` row over all rules.

    :param rule_order: rules listed first, in this order (others follow by name).
    """
    by_rule: dict[str, list[dict]] = {}
    for row in rows:
        by_rule.setdefault(row["rule"], []).append(row)
    order = [r for r in rule_order if r in by_rule] + sorted(set(by_rule) - set(rule_order))

    def line(name: str, jobs: list[dict]) -> dict:
        walls = [j["wall_s"] for j in jobs]
        total = _total(walls)
        return {
            "rule": name,
            "jobs": len(jobs),
            "wall_s_total": total,
            "wall_s_mean": None if total is None else total / len([w for w in walls if w is not None]),
            "wall_s_max": _largest(walls),
            "max_rss_mb": _largest([j["max_rss_mb"] for j in jobs]),
            "cpu_s_total": _total([j["cpu_s"] for j in jobs]),
        }

    table = [line(name, by_rule[name]) for name in order]
    if table:
        table.append(line("total", list(rows)))
    return table


def run_job_costs(
    folder: str, out_parquet: str, out_csv: str, out_md: str, rule_order: Sequence[str] = ()
) -> list[dict]:
    """The *job_costs* rule: read ``folder``, write the per-job Parquet and the per-rule table."""
    import pandas as pd

    from dipkit.columns import JOB_COST_TABLE, JOB_COSTS, make_table
    from dipkit.io import write_parquet
    from dipkit.tables import write_table

    rows = read_benchmarks(folder)
    write_parquet(out_parquet, make_table(rows, JOB_COSTS))
    summary = summarize(rows, rule_order)
    df = pd.DataFrame(summary, columns=[c.name for c in JOB_COST_TABLE])
    notes = (
        "Wall time and CPU time in seconds, memory in MB: each job's benchmark record "
        "(results/benchmarks/), whole jobs including interpreter start-up and I/O. "
        "max_rss_mb is the largest peak of one job, sampled (after 0.5 s, then every 30 s)."
    )
    digits = {"wall_s_total": 1, "wall_s_mean": 1, "wall_s_max": 1, "max_rss_mb": 0, "cpu_s_total": 1}
    write_table(df, out_csv, out_md, "What the run cost, per rule", notes, digits=digits)
    return summary
