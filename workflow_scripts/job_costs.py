"""Rule job_costs: every job's benchmark record, per job (Parquet) and per rule (table)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from dipkit.job_costs import run_job_costs
from dipkit.script_context import script_context

with script_context(snakemake):
    run_job_costs(
        snakemake.params.folder,
        snakemake.output.parquet,
        snakemake.output.csv,
        snakemake.output.md,
        snakemake.params.rule_order,
    )
