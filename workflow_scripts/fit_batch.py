"""Rule fit_batch: one method on several noisy images of one dataset and noise setting,
fitted at once in this process -> a folder with each fit's row, trajectory and PNG."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from dipkit.fit_jobs import FitBatchJob, Runtime, run_fit_batch_job
from dipkit.script_context import script_context

with script_context(snakemake):
    run_fit_batch_job(FitBatchJob.from_rule(snakemake), Runtime.from_rule(snakemake))
