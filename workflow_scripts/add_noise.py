"""Rule add_noise: the noisy version of every image of a dataset, seeded per image."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from dipkit.noise import NoiseSpec, make_noisy_stack
from dipkit.script_context import script_context

with script_context(snakemake):
    make_noisy_stack(
        snakemake.input[0],
        snakemake.output[0],
        snakemake.wildcards.dataset,
        snakemake.params.images,
        NoiseSpec.parse(snakemake.wildcards.noise),
        snakemake.params.seed,
    )
