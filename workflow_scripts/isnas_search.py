"""Rule isnas_search: rank sampled NAS-DIP architectures for one noisy image (ISNAS-DIP)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from dipkit.benchmark import run_isnas_search_job
from dipkit.workflow import script_context

with script_context(snakemake):
    wc = snakemake.wildcards
    run_isnas_search_job(
        snakemake.input[0],
        wc.dataset,
        wc.image,
        wc.noise,
        snakemake.params.spec,
        snakemake.params.seed,
        snakemake.output[0],
        device=snakemake.config["fit"]["device"],
        threads=snakemake.threads,
    )
