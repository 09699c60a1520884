"""Rule fit_batch: one method on several noisy images of one dataset and noise setting,
fitted at once in this process -> a folder with each fit's row, trajectory and PNG."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from dipkit.benchmark import run_fit_batch_job
from dipkit.workflow import script_context

with script_context(snakemake):
    wc = snakemake.wildcards
    run_fit_batch_job(
        snakemake.input.prepared,
        snakemake.input.noisy,
        wc.dataset,
        wc.noise,
        snakemake.params.images,
        snakemake.params.specs,
        snakemake.params.seed,
        snakemake.output[0],
        fit_version=snakemake.params.version,
        device=snakemake.config["fit"]["device"],
        threads=snakemake.threads,
        fits_per_gpu=snakemake.config["fit"]["fits_per_gpu"],
    )
