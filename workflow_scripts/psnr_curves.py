"""Rule psnr_curves: PSNR-vs-iteration curves of every method on one dataset and noise."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

import pandas as pd

from dipkit.figures import plot_psnr_curves
from dipkit.script_context import script_context

with script_context(snakemake):
    wc = snakemake.wildcards
    columns = ["dataset", "image", "noise", "method", "iteration", "psnr_ema"]
    table = pd.read_parquet(snakemake.input[0], columns=columns)
    plot_psnr_curves(table, wc.dataset, wc.noise, snakemake.output[0], snakemake.params.method_order)
