"""Rule fit_from_batch: one fit's row, trajectory and PNG, copied out of its fit_batch folder."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from dipkit.io import copy_file
from dipkit.script_context import script_context

with script_context(snakemake):
    folder, image = Path(snakemake.input[0]), snakemake.wildcards.image
    copy_file(folder / f"{image}.parquet", snakemake.output.row)
    copy_file(folder / f"{image}.trajectory.parquet", snakemake.output.trajectory)
    copy_file(folder / f"{image}.png", snakemake.output.image)
