# Stage: the paper's Section-3 studies (experiments:), fitted by the same engine as Table 2.


rule experiment_fit:
    input:
        prepared="results/prepared/{dataset}.npz",
        noisy="results/noisy/{dataset}/{noise}.npz",
    output:
        row="results/experiments/{experiment}/fits/{dataset}/{noise}/{arm}/{image}.parquet",
        trajectory="results/experiments/{experiment}/fits/{dataset}/{noise}/{arm}/{image}.trajectory.parquet",
        image="results/experiments/{experiment}/fits/{dataset}/{noise}/{arm}/{image}.png",
    log:
        "results/logs/experiments/{experiment}/{dataset}/{noise}/{arm}/{image}.log",
    benchmark:
        "results/benchmarks/experiment_fit/{experiment}/{dataset}/{noise}/{arm}/{image}.tsv"
    conda:
        "../envs/dipkit.yaml"
    threads: FIT_THREADS
    resources:
        **JOB_GPU,
        **estimated_cost("experiment_fit"),
    params:
        spec=experiment_spec_of,
        seed=config["seed"],
        version=STAGE_VERSIONS["fit"],
    script:
        "../workflow_scripts/fit.py"


rule experiment:
    input:
        unpack(experiment_inputs),
    output:
        rows="results/experiments/{experiment}/fits.parquet",
        trajectories="results/experiments/{experiment}/trajectories.parquet",
        figure="results/experiments/{experiment}/figure.png",
        table_csv="results/experiments/{experiment}/table.csv",
        table_md="results/experiments/{experiment}/table.md",
    log:
        "results/logs/experiments/{experiment}.log",
    benchmark:
        "results/benchmarks/experiment/{experiment}.tsv"
    localrule: True
    conda:
        "../envs/dipkit.yaml"
    params:
        cfg=experiment_config_of,
        version=STAGE_VERSIONS["experiment"],
    script:
        "../workflow_scripts/experiment.py"
