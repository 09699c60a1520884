"""Rule fit: one method on one noisy image -> row, trajectory and denoised PNG."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from dipkit.benchmark import run_fit_job
from dipkit.workflow import script_context

with script_context(snakemake):
    wc = snakemake.wildcards
    run_fit_job(
        snakemake.input.prepared,
        snakemake.input.noisy,
        wc.dataset,
        wc.image,
        wc.noise,
        snakemake.params.spec,
        snakemake.params.seed,
        snakemake.output.row,
        snakemake.output.trajectory,
        snakemake.output.image,
        fit_version=snakemake.params.version,
        device=snakemake.config["fit"]["device"],
        threads=snakemake.threads,
        fits_per_gpu=snakemake.config["fit"]["fits_per_gpu"],
        width_file=snakemake.input.get("width"),
    )
