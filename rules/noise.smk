# Stage 2: noisy images (seeded per image) and how noisy they are.


rule add_noise:
    input:
        "results/prepared/{dataset}.npz",
    output:
        "results/noisy/{dataset}/{noise}.npz",
    log:
        "results/logs/add_noise/{dataset}/{noise}.log",
    benchmark:
        "results/benchmarks/add_noise/{dataset}/{noise}.tsv"
    conda:
        "../envs/dipkit.yaml"
    resources:
        **fixed_cost(mem_mb=3000, runtime=10),
    params:
        images=images_of,
        seed=noise_seed_of,
        version=STAGE_VERSIONS["noise"],
    script:
        "../workflow_scripts/add_noise.py"


rule score_noisy:
    input:
        prepared="results/prepared/{dataset}.npz",
        noisy="results/noisy/{dataset}/{noise}.npz",
    output:
        "results/metrics/noisy/{dataset}/{noise}.parquet",
    log:
        "results/logs/score_noisy/{dataset}/{noise}.log",
    benchmark:
        "results/benchmarks/score_noisy/{dataset}/{noise}.tsv"
    conda:
        "../envs/dipkit.yaml"
    resources:
        **fixed_cost(mem_mb=3000, runtime=15),
    params:
        images=images_of,
        seed=noise_seed_of,
        version=STAGE_VERSIONS["score_noisy"],
    script:
        "../workflow_scripts/score_noisy.py"
