"""Algorithm versions of the pipeline stages.

Snakemake does not see edits to ``dipkit``'s code. Each rule therefore passes the version
of its stage as a ``param``: bump a number here when a change alters that stage's results
(and only then), and Snakemake reruns exactly that stage and everything downstream.
Refactors that leave results bit-identical keep the number. See README, *Reruns*.

This module must stay free of heavy imports: the Snakefile imports it.
"""

STAGE_VERSIONS: dict[str, int] = {
    "download": 1,
    "prepare": 1,
    "noise": 1,
    "score_noisy": 1,
    "noisy_baseline_table": 1,
    # 2: perturbation rounded as z + noise * std (the paper's order)
    # 3: on CPU, hand-written BatchNorm / upsampling kernels and fused Adam (3fbc208)
    # 4: on CPU, channels-last layout (fit.cpu_layout) and fused Adam instead
    "fit": 4,
    # 2: fits.parquet gains batch_size (rows written before get 1)
    # 3: fits.parquet gains the early-stopping columns (rows written before get nulls)
    "aggregate_fits": 3,
    # 2: the notes say which output psnr and psnr_peak score
    "table2": 2,
    "texture_features": 1,
    "classifier": 1,
    "relabel": 1,
    # 2: the figure at 150 dpi without a Software tag (dipkit.figures.save_figure)
    "experiment": 2,
    # 2: Table 3's restoration_s_512 / restoration_sizes became restoration_s / restoration_size
    #    (the sizes timed); Tables 4 and 5 say which output psnr and psnr_peak score
    # 3: Table 3's early_stopping from the early-stopping study (study_drop_db, study_fits)
    "paper_tables": 3,
    "isnas_search": 1,
    # 2: at 150 dpi without a Software tag (dipkit.figures.save_figure); the gallery's title
    #    clear of its labels
    "figures": 2,
}
