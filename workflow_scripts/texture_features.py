"""Rule texture_features: GLCM and radial-PSD features of every clean image of a dataset."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from dipkit.features import features_from_files
from dipkit.manifest import files_from_entries
from dipkit.script_context import script_context

with script_context(snakemake):
    dataset = snakemake.wildcards.dataset
    files = files_from_entries(dataset, snakemake.params.files, list(snakemake.input.get("files", [])))
    features_from_files(
        files,
        snakemake.input.get("raw"),
        snakemake.output[0],
        crop_multiple=snakemake.params.crop_multiple,
        psd_bins=snakemake.params.psd_bins,
    )
