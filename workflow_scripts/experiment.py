"""Rule experiment: an experiment's fits concatenated, its figure and its table."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from dipkit.experiments import run_summary
from dipkit.script_context import script_context

with script_context(snakemake):
    out = snakemake.output
    run_summary(
        snakemake.wildcards.experiment,
        snakemake.params.cfg,
        list(snakemake.input.rows),
        list(snakemake.input.trajectories),
        {Path(p).stem: p for p in snakemake.input.prepared},
        {
            "rows": out.rows,
            "trajectories": out.trajectories,
            "figure": out.figure,
            "table_csv": out.table_csv,
            "table_md": out.table_md,
        },
    )
