"""Rule paper_table: Tables 3-6 from all fits, beside the paper's numbers."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from dipkit.script_context import script_context
from dipkit.tables import write_paper_table

with script_context(snakemake):
    write_paper_table(
        snakemake.wildcards.table,
        snakemake.input.fits,
        snakemake.output.csv,
        snakemake.output.md,
        snakemake.params.dataset_order,
        snakemake.params.method_order,
        study_path=snakemake.input.get("study") or None,
    )
