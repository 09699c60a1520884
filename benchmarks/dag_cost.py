"""How long `snakemake -n` takes to plan the default config (the whole paper).

Prints the wall time of each of ``--repeats`` dry runs and their median, with the number
of planned jobs and the machine. Usage: ``python benchmarks/dag_cost.py [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--configfile", default=str(REPO / "config.yaml"))
    args = parser.parse_args()
    times, jobs = [], None
    with tempfile.TemporaryDirectory() as work:
        for _ in range(args.repeats):
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", work,
                 "--configfile", args.configfile, "-n", "-q", "rules"],
                capture_output=True, text=True, check=True,
            )
            times.append(time.perf_counter() - start)
            m = re.search(r"^total\s+(\d+)", proc.stdout + proc.stderr, re.M)
            jobs = int(m.group(1)) if m else None
    print(f"machine: {platform.processor() or platform.machine()}, {platform.system()}, Python {platform.python_version()}")
    print(f"planned jobs: {jobs}")
    print("dry runs (s): " + ", ".join(f"{t:.2f}" for t in times))
    print(f"median: {statistics.median(times):.2f} s")


if __name__ == "__main__":
    main()
