"""Rule noisy_baseline_table: all noisy-image scores, and their dataset x noise summary."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from dipkit.noisy_baseline import write_noisy_baseline
from dipkit.script_context import script_context

with script_context(snakemake):
    write_noisy_baseline(
        list(snakemake.input),
        snakemake.output.parquet,
        snakemake.output.csv,
        snakemake.output.md,
        snakemake.params.dataset_order,
    )
