"""Rules fit, experiment_fit and isnas_fit: one method on one noisy image -> row, trajectory
and denoised PNG. With a ``search`` input (isnas_fit) the searched top-k architectures are
fitted and the output closest to their mean is kept."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from dipkit.benchmark import run_fit_job, run_isnas_select_job
from dipkit.workflow import script_context

with script_context(snakemake):
    wc = snakemake.wildcards
    files = (snakemake.input.prepared, snakemake.input.noisy)
    job = (wc.dataset, wc.image, wc.noise, snakemake.params.spec, snakemake.params.seed)
    outputs = (snakemake.output.row, snakemake.output.trajectory, snakemake.output.image)
    options = dict(
        fit_version=snakemake.params.version,
        device=snakemake.config["fit"]["device"],
        threads=snakemake.threads,
        fits_per_gpu=snakemake.config["fit"]["fits_per_gpu"],
    )
    if "search" in snakemake.input.keys():
        run_isnas_select_job(*files, snakemake.input.search, *job, *outputs, **options)
    else:
        run_fit_job(*files, *job, *outputs, width_file=snakemake.input.get("width"), **options)
