# Stage 3: one fit per (dataset, noise, method, image), and their aggregation. With
# fit.batch > 1 the methods in BATCHED are fitted several images per job instead
# (fit_batch) and each fit is copied out to the same per-fit files (fit_from_batch).


rule fit:
    input:
        **FIT_WIDTH_INPUT,
        prepared="results/prepared/{dataset}.npz",
        noisy="results/noisy/{dataset}/{noise}.npz",
    output:
        row="results/fits/{dataset}/{noise}/{method}/{image}.parquet",
        trajectory="results/fits/{dataset}/{noise}/{method}/{image}.trajectory.parquet",
        image="results/fits/{dataset}/{noise}/{method}/{image}.png",
    log:
        "results/logs/fit/{dataset}/{noise}/{method}/{image}.log",
    benchmark:
        "results/benchmarks/fit/{dataset}/{noise}/{method}/{image}.tsv"
    wildcard_constraints:
        method=_alternatives([m for m in FITTED if m not in BATCHED]),
    conda:
        "../envs/dipkit.yaml"
    threads: FIT_THREADS
    resources:
        **FIT_GPU,
        **estimated_cost("fit"),
    params:
        spec=fit_spec_of,
        seed=config["seed"],
        version=STAGE_VERSIONS["fit"],
    script:
        "../workflow_scripts/fit.py"


rule fit_batch:
    input:
        prepared="results/prepared/{dataset}.npz",
        noisy="results/noisy/{dataset}/{noise}.npz",
    output:
        directory("results/fit_batches/{dataset}/{noise}/{method}/batch{batch}"),
    log:
        "results/logs/fit_batch/{dataset}/{noise}/{method}/batch{batch}.log",
    benchmark:
        "results/benchmarks/fit_batch/{dataset}/{noise}/{method}/batch{batch}.tsv"
    wildcard_constraints:
        method=_alternatives(BATCHED),
        batch=r"[1-9][0-9]*",
    conda:
        "../envs/dipkit.yaml"
    threads: FIT_THREADS
    resources:
        **JOB_GPU,
        **estimated_cost("fit_batch"),
    params:
        images=batch_images_of,
        specs=batch_specs_of,
        seed=config["seed"],
        version=STAGE_VERSIONS["fit"],
    script:
        "../workflow_scripts/fit_batch.py"


rule fit_from_batch:
    input:
        batch_of_fit,
    output:
        row="results/fits/{dataset}/{noise}/{method}/{image}.parquet",
        trajectory="results/fits/{dataset}/{noise}/{method}/{image}.trajectory.parquet",
        image="results/fits/{dataset}/{noise}/{method}/{image}.png",
    log:
        "results/logs/fit_from_batch/{dataset}/{noise}/{method}/{image}.log",
    benchmark:
        "results/benchmarks/fit_from_batch/{dataset}/{noise}/{method}/{image}.tsv"
    wildcard_constraints:
        method=_alternatives(BATCHED),
    localrule: True
    conda:
        "../envs/dipkit.yaml"
    script:
        "../workflow_scripts/fit_from_batch.py"


rule isnas_search:
    input:
        "results/noisy/{dataset}/{noise}.npz",
    output:
        "results/isnas/{dataset}/{noise}/{method}/{image}.json",
    log:
        "results/logs/isnas_search/{dataset}/{noise}/{method}/{image}.log",
    benchmark:
        "results/benchmarks/isnas_search/{dataset}/{noise}/{method}/{image}.tsv"
    wildcard_constraints:
        method=_alternatives(SEARCHED),
    conda:
        "../envs/dipkit.yaml"
    threads: FIT_THREADS
    resources:
        **JOB_GPU,
        **estimated_cost("isnas_search"),
    params:
        spec=fit_spec_of,
        seed=config["seed"],
        version=STAGE_VERSIONS["isnas_search"],
    script:
        "../workflow_scripts/isnas_search.py"


rule isnas_fit:
    input:
        prepared="results/prepared/{dataset}.npz",
        noisy="results/noisy/{dataset}/{noise}.npz",
        search="results/isnas/{dataset}/{noise}/{method}/{image}.json",
    output:
        row="results/fits/{dataset}/{noise}/{method}/{image}.parquet",
        trajectory="results/fits/{dataset}/{noise}/{method}/{image}.trajectory.parquet",
        image="results/fits/{dataset}/{noise}/{method}/{image}.png",
    log:
        "results/logs/isnas_fit/{dataset}/{noise}/{method}/{image}.log",
    benchmark:
        "results/benchmarks/isnas_fit/{dataset}/{noise}/{method}/{image}.tsv"
    wildcard_constraints:
        method=_alternatives(SEARCHED),
    conda:
        "../envs/dipkit.yaml"
    threads: FIT_THREADS
    resources:
        **JOB_GPU,
        **estimated_cost("isnas_fit"),
    params:
        spec=fit_spec_of,
        seed=config["seed"],
        version=STAGE_VERSIONS["fit"],
    script:
        "../workflow_scripts/fit.py"


rule aggregate_fits:
    input:
        rows=fit_rows("parquet"),
        trajectories=fit_rows("trajectory.parquet"),
    output:
        fits="results/fits.parquet",
        trajectories="results/trajectories.parquet",
    log:
        "results/logs/aggregate_fits.log",
    benchmark:
        "results/benchmarks/aggregate_fits.tsv"
    localrule: True
    conda:
        "../envs/dipkit.yaml"
    params:
        version=STAGE_VERSIONS["aggregate_fits"],
    script:
        "../workflow_scripts/aggregate_fits.py"
