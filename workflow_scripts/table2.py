"""Rule table2: Table 2 (Gaussian noise) from all fits, beside the paper's numbers."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from dipkit.script_context import script_context
from dipkit.tables import write_table2

with script_context(snakemake):
    write_table2(
        snakemake.input[0],
        snakemake.output.csv,
        snakemake.output.md,
        snakemake.params.dataset_order,
        snakemake.params.method_order,
    )
