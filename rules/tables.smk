# Stage: aggregate per-job Parquet files into result tables.

# The early-stopping study's per-fit rows (docs/early-stopping.md): Table 3's early_stopping column.
EARLY_STOPPING_STUDY = f"{workflow.basedir}/docs/early-stopping/fits.csv"


rule noisy_baseline_table:
    input:
        noisy_metric_files(),
    output:
        parquet="results/noisy_baseline.parquet",
        csv=report(
            "results/tables/noisy_baseline.csv",
            caption="report/noisy_baseline.rst",
            category="Tables",
            labels={"table": "noisy baseline"},
        ),
        md="results/tables/noisy_baseline.md",
    log:
        "results/logs/tables/noisy_baseline.log",
    benchmark:
        "results/benchmarks/noisy_baseline_table.tsv"
    localrule: True
    conda:
        "../envs/dipkit.yaml"
    params:
        dataset_order=list(DATASETS),
        version=STAGE_VERSIONS["noisy_baseline_table"],
    script:
        "../workflow_scripts/noisy_baseline_table.py"


rule table2:
    input:
        "results/fits.parquet",
    output:
        csv=report(
            "results/tables/table2.csv",
            caption="report/table.rst",
            category="Tables",
            labels={"table": "table2"},
        ),
        md="results/tables/table2.md",
    log:
        "results/logs/tables/table2.log",
    benchmark:
        "results/benchmarks/table2.tsv"
    localrule: True
    conda:
        "../envs/dipkit.yaml"
    params:
        dataset_order=list(DATASETS),
        method_order=list(METHODS),
        version=STAGE_VERSIONS["table2"],
    script:
        "../workflow_scripts/table2.py"


rule paper_table:
    input:
        fits="results/fits.parquet",
        study=lambda wc: EARLY_STOPPING_STUDY if wc.table == "table3" else [],
    output:
        csv=report(
            "results/tables/{table}.csv",
            caption="report/paper_table.rst",
            category="Tables",
            labels={"table": "{table}"},
        ),
        md="results/tables/{table}.md",
    log:
        "results/logs/tables/{table}.log",
    benchmark:
        "results/benchmarks/paper_table/{table}.tsv"
    localrule: True
    conda:
        "../envs/dipkit.yaml"
    params:
        dataset_order=list(DATASETS),
        method_order=list(METHODS),
        version=STAGE_VERSIONS["paper_tables"],
    script:
        "../workflow_scripts/paper_table.py"
