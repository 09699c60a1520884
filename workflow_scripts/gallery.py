"""Rule gallery: clean / noisy / denoised crops of a few images per method."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from dipkit.figures import gallery_from_files
from dipkit.script_context import script_context

with script_context(snakemake):
    wc = snakemake.wildcards
    plan = snakemake.params.gallery
    crop = snakemake.params.crop
    gallery_from_files(
        snakemake.input.prepared,
        snakemake.input.noisy,
        plan["images"],
        dict(zip(plan["methods"], plan["grid"])),
        snakemake.output[0],
        title=f"{wc.dataset}, {wc.noise}: central {crop}-pixel crops, PSNR vs clean",
        crop=crop,
    )
