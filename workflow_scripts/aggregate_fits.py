"""Rule aggregate_fits: every fit's row and trajectory in two Parquet files."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from dipkit.script_context import script_context
from dipkit.tables import concat_parquet

with script_context(snakemake):
    concat_parquet(list(snakemake.input.rows), snakemake.output.fits)
    concat_parquet(list(snakemake.input.trajectories), snakemake.output.trajectories)
