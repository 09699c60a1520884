"""Publish a reproduction run of Table 2: ``results/fits.parquet`` -> ``docs/reproduced/table2.csv``
and ``docs/reproduced/table2.md`` (see docs/reproduction.md).

    python benchmarks/publish_table2.py --config configs/paper_table2_ours.yaml \\
        --fits results/fits.parquet --out docs/reproduced

``--fits`` may also be a ``results/fits`` folder (a run cut short before its aggregation). The
config gives the seed, the methods and the number of images each dataset should have; measured
reasons for cells off the paper are read from ``<out>/reasons.yaml`` (``dataset/noise/method:
text``) when it exists. Torch-free.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv=None) -> None:
    import yaml

    from dipkit.config import plan_datasets
    from dipkit.reproduced import write_table2

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(REPO / "configs/paper_table2_ours.yaml"), help="the run's config")
    p.add_argument("--fits", default="results/fits.parquet", help="fits.parquet, or a results/fits folder")
    p.add_argument("--out", default=str(REPO / "docs/reproduced"), help="folder for table2.csv and table2.md")
    p.add_argument("--date", default=None, help="the run's date (default: when the fits were written)")
    p.add_argument("--reasons", default=None, help="YAML of measured reasons (default: <out>/reasons.yaml)")
    p.add_argument("--command", default="", help="the command that made the run, shown on the page")
    args = p.parse_args(argv)
    config = yaml.safe_load(Path(args.config).read_text())
    reasons_path = Path(args.reasons) if args.reasons else Path(args.out) / "reasons.yaml"
    reasons = yaml.safe_load(reasons_path.read_text()) if reasons_path.is_file() else {}
    plans = plan_datasets(config)
    cells = write_table2(
        args.fits,
        args.out,
        seed=int(config.get("seed", 0)),
        date=args.date,
        reasons=reasons or {},
        expected_images={name: len(plan.images) for name, plan in plans.items()},
        methods=list(config.get("methods") or {}) or None,
        command=args.command,
    )
    print(cells.to_string(index=False))
    print(f"wrote {Path(args.out) / 'table2.csv'} and {Path(args.out) / 'table2.md'}")


if __name__ == "__main__":
    main()
