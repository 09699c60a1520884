# Stage: aggregate per-job Parquet files into result tables.


rule noisy_baseline_table:
    input:
        noisy_metric_files(),
    output:
        parquet="results/noisy_baseline.parquet",
        csv="results/tables/noisy_baseline.csv",
        md="results/tables/noisy_baseline.md",
    log:
        "results/logs/tables/noisy_baseline.log",
    localrule: True
    conda:
        "../envs/dipkit.yaml"
    params:
        dataset_order=list(DATASETS),
        version=STAGE_VERSIONS["noisy_baseline_table"],
    script:
        "../workflow_scripts/noisy_baseline_table.py"
