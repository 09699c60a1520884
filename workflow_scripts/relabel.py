"""Rule relabel: width labels from our own fixed-width fits vs the released labels."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from dipkit.relabel import write_relabel
from dipkit.script_context import script_context

with script_context(snakemake):
    out = snakemake.output
    write_relabel(
        list(snakemake.input),
        snakemake.params.method_widths,
        snakemake.params.tolerance_db,
        out.labels,
        out.csv,
        out.md,
    )
