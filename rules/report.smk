# Stage: figures for the report (`snakemake --report results/report.html`), also kept as
# PNG files under results/figures/.


rule psnr_curves:
    input:
        "results/trajectories.parquet",
    output:
        report(
            "results/figures/psnr_curves_{dataset}_{noise}.png",
            caption="report/psnr_curves.rst",
            category="Figures",
            subcategory="PSNR vs iteration",
            labels={"dataset": "{dataset}", "noise": "{noise}"},
        ),
    log:
        "results/logs/figures/psnr_curves_{dataset}_{noise}.log",
    benchmark:
        "results/benchmarks/psnr_curves/{dataset}_{noise}.tsv"
    localrule: True
    conda:
        "../envs/dipkit.yaml"
    params:
        method_order=list(METHODS),
        version=STAGE_VERSIONS["figures"],
    script:
        "../workflow_scripts/psnr_curves.py"


rule gallery:
    input:
        prepared="results/prepared/{dataset}.npz",
        noisy="results/noisy/{dataset}/{noise}.npz",
        fits=gallery_inputs,
    output:
        report(
            "results/figures/gallery_{dataset}_{noise}.png",
            caption="report/gallery.rst",
            category="Figures",
            subcategory="Gallery",
            labels={"dataset": "{dataset}", "noise": "{noise}"},
        ),
    log:
        "results/logs/figures/gallery_{dataset}_{noise}.log",
    benchmark:
        "results/benchmarks/gallery/{dataset}_{noise}.tsv"
    localrule: True
    conda:
        "../envs/dipkit.yaml"
    params:
        gallery=gallery_params,
        crop=GALLERY_CROP,
        version=STAGE_VERSIONS["figures"],
    script:
        "../workflow_scripts/gallery.py"


rule roc_figure:
    input:
        "results/classifier/roc.png",
    output:
        report(
            "results/figures/roc.png",
            caption="report/roc.rst",
            category="Width classifier",
            labels={"figure": "ROC"},
        ),
    log:
        "results/logs/figures/roc.log",
    benchmark:
        "results/benchmarks/roc_figure.tsv"
    localrule: True
    conda:
        "../envs/dipkit.yaml"
    shell:
        "cp {input} {output} 2> {log}"


rule experiment_figure:
    input:
        "results/experiments/{experiment}/figure.png",
    output:
        report(
            "results/figures/experiment_{experiment}.png",
            caption="report/experiment.rst",
            category="Section-3 experiments",
            labels={"experiment": "{experiment}"},
        ),
    log:
        "results/logs/figures/experiment_{experiment}.log",
    benchmark:
        "results/benchmarks/experiment_figure/{experiment}.tsv"
    localrule: True
    conda:
        "../envs/dipkit.yaml"
    shell:
        "cp {input} {output} 2> {log}"


rule job_costs:
    input:
        final_outputs(),
    output:
        parquet="results/job_costs.parquet",
        csv=report(
            "results/tables/job_costs.csv",
            caption="report/job_costs.rst",
            category="Tables",
            labels={"table": "job costs"},
        ),
        md="results/tables/job_costs.md",
    log:
        "results/logs/job_costs.log",
    localrule: True
    conda:
        "../envs/dipkit.yaml"
    params:
        folder="results/benchmarks",
        rule_order=[r.name for r in workflow.rules],
    script:
        "../workflow_scripts/job_costs.py"
