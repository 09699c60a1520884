"""Rule prepare_dataset: check and centre-crop a dataset's images into one stack."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from dipkit.images import prepare_dataset
from dipkit.manifest import DatasetFile
from dipkit.workflow import script_context

with script_context(snakemake) as log:
    dataset = snakemake.wildcards.dataset
    user_files = list(snakemake.input.get("files", []))
    files = [
        DatasetFile(dataset=dataset, path=user_files[i] if user_files else None, **entry)
        for i, entry in enumerate(snakemake.params.files)
    ]
    shapes = prepare_dataset(
        files,
        snakemake.input.get("raw"),
        snakemake.output[0],
        crop_multiple=snakemake.params.crop_multiple,
    )
    log.info("prepared %d arrays for %s", len(shapes), dataset)
