"""Rule download_dataset: fetch a built-in dataset, sha256-verified, all or nothing."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from dipkit.download import download_dataset
from dipkit.manifest import builtin_datasets
from dipkit.script_context import script_context

with script_context(snakemake) as log:
    wanted = {name for name, _ in snakemake.params.files}
    files = [f for f in builtin_datasets()[snakemake.wildcards.dataset] if f.file in wanted]
    cfg = snakemake.config
    download_dataset(
        files,
        snakemake.output[0],
        mirror_dir=cfg.get("mirror_dir"),
        mirror_url=cfg.get("mirror_url"),
        timeout=cfg["download"]["timeout"],
        attempts=cfg["download"]["attempts"],
        backoff=cfg["download"]["backoff"],
    )
