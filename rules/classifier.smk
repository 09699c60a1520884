# Stage: texture features of every image, and the SVM width classifier (paper Sec. 4, Fig. 11).


rule texture_features:
    input:
        unpack(dataset_sources),
    output:
        "results/features/{dataset}.parquet",
    log:
        "results/logs/texture_features/{dataset}.log",
    benchmark:
        "results/benchmarks/texture_features/{dataset}.tsv"
    conda:
        "../envs/dipkit.yaml"
    resources:
        **fixed_cost(mem_mb=3000, runtime=30),
    params:
        files=feature_files_of,
        crop_multiple=config["crop_multiple"],
        psd_bins=CLASSIFIER["psd_bins"],
        version=STAGE_VERSIONS["texture_features"],
    script:
        "../workflow_scripts/texture_features.py"


rule classifier:
    input:
        expand("results/features/{dataset}.parquet", dataset=FEATURE_DATASETS),
    output:
        metrics="results/classifier/cv_metrics.json",
        roc="results/classifier/roc.png",
        confusion="results/classifier/confusion_matrix.csv",
        ranking="results/classifier/feature_ranking.csv",
        widths="results/classifier/predicted_widths.csv",
        width_files=predicted_width_files(),
    log:
        "results/logs/classifier.log",
    benchmark:
        "results/benchmarks/classifier.tsv"
    conda:
        "../envs/dipkit.yaml"
    resources:
        **fixed_cost(mem_mb=4000, runtime=60),
    params:
        labels=CLASSIFIER["labels"],
        datasets=CLASSIFIER["datasets"],
        splits=CLASSIFIER["splits"],
        repeats=CLASSIFIER["repeats"],
        calibration=CLASSIFIER["calibration"],
        width_images=predicted_width_images(),
        seed=config["seed"],
        version=STAGE_VERSIONS["classifier"],
    script:
        "../workflow_scripts/classifier.py"


rule relabel:
    input:
        fit_rows("parquet", methods=list(RELABEL)),
    output:
        labels="results/classifier/regenerated_labels.csv",
        csv=report(
            "results/tables/label_agreement.csv",
            caption="report/label_agreement.rst",
            category="Tables",
            labels={"table": "label agreement"},
        ),
        md="results/tables/label_agreement.md",
    log:
        "results/logs/relabel.log",
    benchmark:
        "results/benchmarks/relabel.tsv"
    localrule: True
    conda:
        "../envs/dipkit.yaml"
    params:
        method_widths=RELABEL,
        tolerance_db=config["relabel"]["tolerance_db"],
        version=STAGE_VERSIONS["relabel"],
    script:
        "../workflow_scripts/relabel.py"
