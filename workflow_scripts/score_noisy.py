"""Rule score_noisy: PSNR/SSIM of each noisy image against its clean image."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from dipkit.noisy_baseline import score_noisy
from dipkit.script_context import script_context

with script_context(snakemake):
    score_noisy(
        snakemake.input.prepared,
        snakemake.input.noisy,
        snakemake.output[0],
        snakemake.wildcards.dataset,
        snakemake.params.images,
        snakemake.wildcards.noise,
        snakemake.params.seed,
    )
