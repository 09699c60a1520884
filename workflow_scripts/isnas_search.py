"""Rule isnas_search: rank sampled NAS-DIP architectures for one noisy image (ISNAS-DIP)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from dipkit.fit_jobs import IsnasSearchJob, Runtime, run_isnas_search_job
from dipkit.script_context import script_context

with script_context(snakemake):
    run_isnas_search_job(IsnasSearchJob.from_rule(snakemake), Runtime.from_rule(snakemake))
