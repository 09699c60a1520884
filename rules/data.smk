# Stage 1: download the built-in datasets (sha256-verified) and prepare every dataset
# (check and centre-crop its images into one stack).


rule download_dataset:
    output:
        directory("results/downloads/{dataset}"),
    log:
        "results/logs/download/{dataset}.log",
    benchmark:
        "results/benchmarks/download_dataset/{dataset}.tsv"
    wildcard_constraints:
        dataset=_alternatives(BUILTIN),
    localrule: True
    conda:
        "../envs/dipkit.yaml"
    params:
        files=manifest_of,
        version=STAGE_VERSIONS["download"],
    script:
        "../workflow_scripts/download.py"


rule prepare_dataset:
    input:
        unpack(dataset_sources),
    output:
        "results/prepared/{dataset}.npz",
    log:
        "results/logs/prepare/{dataset}.log",
    benchmark:
        "results/benchmarks/prepare_dataset/{dataset}.tsv"
    wildcard_constraints:
        dataset=_alternatives(DATASETS),
    conda:
        "../envs/dipkit.yaml"
    resources:
        **fixed_cost(mem_mb=3000, runtime=15),
    params:
        files=files_of,
        crop_multiple=config["crop_multiple"],
        version=STAGE_VERSIONS["prepare"],
    script:
        "../workflow_scripts/prepare.py"
