"""Rule prepare_dataset: check and centre-crop a dataset's images into one stack."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from dipkit.images import prepare_dataset
from dipkit.manifest import files_from_entries
from dipkit.script_context import script_context

with script_context(snakemake) as log:
    dataset = snakemake.wildcards.dataset
    files = files_from_entries(dataset, snakemake.params.files, list(snakemake.input.get("files", [])))
    shapes = prepare_dataset(
        files,
        snakemake.input.get("raw"),
        snakemake.output[0],
        crop_multiple=snakemake.params.crop_multiple,
    )
    log.info("prepared %d arrays for %s", len(shapes), dataset)
