"""Rules fit, experiment_fit and isnas_fit: one method on one noisy image -> row, trajectory
and denoised PNG. With a ``search`` input (isnas_fit) the searched top-k architectures are
fitted and the output closest to their mean is kept."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from dipkit.fit_jobs import FitJob, IsnasFitJob, Runtime, run_fit_job, run_isnas_fit_job
from dipkit.script_context import script_context

with script_context(snakemake):
    if "search" in snakemake.input.keys():  # noqa: SIM118 -- `in` on a Namedlist tests its values
        run_isnas_fit_job(IsnasFitJob.from_rule(snakemake), Runtime.from_rule(snakemake))
    else:
        run_fit_job(FitJob.from_rule(snakemake), Runtime.from_rule(snakemake))
