"""How long `snakemake -n` takes to plan the default config (the whole paper).

Prints the wall time and the CPU time (user + system, which a shared machine's load disturbs
less) of each of ``--repeats`` dry runs and their medians, with the number of planned jobs,
the machine and the date. ``--against DIR`` times another checkout of the workflow too,
alternating the two run by run (each with its own ``config.yaml`` unless ``--configfile`` is
given), prints the ratio of the medians, and checks that both plan the same jobs (rule and
outputs of every job, from a separate untimed dry run).

``--snakemake DIR`` times this checkout once more with the ``snakemake`` package found in
``DIR`` (put first on ``PYTHONPATH``), alternating with the installed one: a patched copy of
Snakemake, to measure a change to Snakemake itself on this workflow (same ratio and job-set
check; see docs/running.md#dry-run-cost).

``--calls`` also counts the Python function calls of one dry run per checkout (cProfile), a
measure of the planning work that a shared machine's load does not disturb.

Usage: ``python benchmarks/dag_cost.py [--repeats 3] [--configfile FILE] [--against DIR]
[--snakemake DIR] [--csv FILE] [--calls]``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _snakemake_args(repo: Path, work: str, configfile: str) -> list[str]:
    """``-m snakemake`` and a dry run of ``repo``'s Snakefile in ``work`` with ``configfile``."""
    return ["-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", work, "--configfile", configfile, "-n"]


def _env(snakemake_dir: Path | None) -> dict[str, str] | None:
    """The environment of a dry run with the ``snakemake`` package of ``snakemake_dir`` (None:
    the installed one)."""
    if snakemake_dir is None:
        return None
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(snakemake_dir), os.environ.get("PYTHONPATH")])),
    }


def dry_run(
    repo: Path, work: str, configfile: str, *extra: str, snakemake_dir: Path | None = None
) -> tuple[float, float, str]:
    """One ``snakemake -n`` of ``repo``'s Snakefile: (wall s, CPU s of the process, output)."""
    before = os.times()
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *_snakemake_args(repo, work, configfile), *extra],
        capture_output=True,
        text=True,
        check=False,
        env=_env(snakemake_dir),
    )
    if proc.returncode:
        raise SystemExit(f"dry run of {repo} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    wall = time.perf_counter() - start
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return wall, cpu, proc.stdout + proc.stderr


def function_calls(repo: Path, work: str, configfile: str, snakemake_dir: Path | None = None) -> int:
    """Python function calls of one ``snakemake -n -q rules`` (cProfile)."""
    import pstats

    with tempfile.TemporaryDirectory() as tmp:
        prof = f"{tmp}/dry.prof"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "cProfile",
                "-o",
                prof,
                *_snakemake_args(repo, work, configfile),
                "-q",
                "rules",
            ],
            capture_output=True,
            text=True,
            check=True,
            env=_env(snakemake_dir),
        )
        return pstats.Stats(prof).total_calls


def planned_jobs(output: str) -> list[str]:
    """``rule: outputs`` of every job in a (not quiet) dry run's log, sorted."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        m = re.match(r"(?:local)?rule (\w+):", block)
        if m:
            out = re.search(r"^\s+output: (.*)$", block, re.MULTILINE)
            jobs.append(f"{m.group(1)}: {out.group(1) if out else ''}")
    return sorted(jobs)


def _label(repo: Path, csv: Path | None = None) -> str:
    """A checkout's name for the CSV: its git commit (``+`` when files other than ``csv`` have
    changed), else its folder."""
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    if head.returncode or not head.stdout.strip():
        return repo.name
    status = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    mine = csv.resolve() if csv else None
    dirty = [line for line in status if mine is None or (repo / line[3:]).resolve() != mine]
    return head.stdout.strip() + ("+" if dirty else "")


def _config(args, repo: Path) -> str:
    return args.configfile or str(repo / "config.yaml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--configfile", default=None, help="default: each checkout's config.yaml")
    parser.add_argument("--against", type=Path, default=None, help="another checkout to time alternately")
    parser.add_argument(
        "--snakemake",
        type=Path,
        default=None,
        help="a folder holding a (patched) snakemake package: time this checkout with it too",
    )
    parser.add_argument("--csv", type=Path, default=None, help="also write every run to this CSV file")
    parser.add_argument(
        "--calls",
        action="store_true",
        help="also count the Python function calls of one dry run per checkout (cProfile): "
        "a measure of the planning work that a shared machine's load does not disturb",
    )
    args = parser.parse_args()
    if args.snakemake and not (args.snakemake / "snakemake" / "__init__.py").is_file():
        parser.error(f"--snakemake {args.snakemake}: no snakemake package (snakemake/__init__.py) there")
    # name -> (checkout, folder of the snakemake package or None for the installed one)
    variants: dict[str, tuple[Path, Path | None]] = {"this checkout": (REPO, None)}
    if args.against:
        variants["--against"] = (args.against.resolve(), None)
    if args.snakemake:
        variants["--snakemake"] = (REPO, args.snakemake.resolve())
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    jobs: dict[str, int | None] = {}
    with tempfile.TemporaryDirectory() as work:
        for _ in range(args.repeats):
            for name, (repo, sm) in variants.items():
                wall, cpu, out = dry_run(repo, work, _config(args, repo), "-q", "rules", snakemake_dir=sm)
                times[name].append((wall, cpu))
                m = re.search(r"^total\s+(\d+)", out, re.MULTILINE)
                jobs[name] = int(m.group(1)) if m else None
        plans = {
            name: planned_jobs(dry_run(repo, work, _config(args, repo), snakemake_dir=sm)[2])
            for name, (repo, sm) in variants.items()
        }
        calls = {}
        if args.calls:
            calls = {
                name: function_calls(repo, work, _config(args, repo), sm)
                for name, (repo, sm) in variants.items()
            }
    machine = platform.processor() or platform.machine()
    print(
        f"machine: {machine}, {os.cpu_count()} CPUs, {platform.system()}, "
        f"Python {platform.python_version()}; {_dt.date.today()}"
    )
    medians = {}
    for name, runs in times.items():
        print(f"{name}: planned jobs: {jobs[name]}")
        medians[name] = (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
        print(
            f"{name}: dry runs (wall s): "
            + ", ".join(f"{w:.2f}" for w, _ in runs)
            + "; CPU s: "
            + ", ".join(f"{c:.2f}" for _, c in runs)
        )
        print(f"{name}: median: {medians[name][0]:.2f} s wall, {medians[name][1]:.2f} s CPU")
        if name in calls:
            print(f"{name}: Python function calls of one dry run: {calls[name]:,}")
    if args.csv:
        lines = ["date,machine,checkout,planned_jobs,run,wall_s,cpu_s"]
        where = f"{_dt.date.today()},{machine} {os.cpu_count()} CPUs"

        def label(name: str) -> str:
            repo, sm = variants[name]
            return _label(repo, args.csv) + (f" with snakemake from {sm.name}" if sm else "")

        lines += [
            f"{where},{label(name)},{jobs[name]},{i + 1},{w:.2f},{c:.2f}"
            for name, runs in times.items()
            for i, (w, c) in enumerate(runs)
        ]
        args.csv.write_text("\n".join(lines) + "\n")
    for other in [name for name in variants if name != "this checkout"]:
        (w0, c0), (w1, c1) = medians["this checkout"], medians[other]
        print(f"this checkout / {other}: {w0 / w1:.2f}x wall, {c0 / c1:.2f}x CPU")
        if calls:
            print(f"this checkout / {other}: {calls['this checkout'] / calls[other]:.3f}x calls")
        mine, theirs = set(plans["this checkout"]), set(plans[other])
        same = "yes" if mine == theirs else "no"
        print(f"same job set ({other}): {same} ({len(mine)} jobs here, {len(theirs)} there)")
        for job in sorted(mine - theirs)[:20]:
            print(f"  only here: {job}")
        for job in sorted(theirs - mine)[:20]:
            print(f"  only there: {job}")


if __name__ == "__main__":
    main()
