# Helpers shared by all stages -- config validation, the dataset plan, wildcard
# constraints and input/param functions. No rules here.

import re
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# dipkit from this checkout (torch-free modules only: this file runs on every invocation)
sys.path.insert(0, workflow.basedir)

from dipkit._versions import STAGE_VERSIONS
from dipkit.config import ConfigError, plan_datasets, plan_methods
from dipkit.manifest import IMAGE_ID_PATTERN
from dipkit.methods import fit_spec
from dipkit.noise import NOISE_ID_PATTERN

validate(config, schema="../schemas/config.schema.yaml")

try:
    METHODS = plan_methods(config)
    DATASETS = plan_datasets(config)
except ConfigError as err:
    raise WorkflowError(f"invalid config: {err}") from None

BUILTIN = [name for name, plan in DATASETS.items() if plan.builtin]


def _alternatives(names):
    return "|".join(re.escape(n) for n in names) or "(?!)"


wildcard_constraints:
    dataset=_alternatives(DATASETS),
    noise=NOISE_ID_PATTERN,
    image=IMAGE_ID_PATTERN,
    method=_alternatives(METHODS),


# --- params: what defines a result (never paths, mirrors or devices) ---------------


def manifest_of(wildcards):
    """Identity of a built-in dataset's files: name and sha256 (not the source URL)."""
    return [[f.file, f.sha256] for f in DATASETS[wildcards.dataset].files]


def files_of(wildcards):
    """What the prepare stage reads: one entry per file of the dataset plan."""
    plan = DATASETS[wildcards.dataset]
    return [{"image": f.image, "role": f.role, "file": f.file, "channels": f.channels} for f in plan.files]


def images_of(wildcards):
    return list(DATASETS[wildcards.dataset].images)


def noise_seed_of(wildcards):
    """The config seed, for synthetic noise only: real noise does not depend on it."""
    return None if wildcards.noise == "real" else config["seed"]


def fit_spec_of(wildcards):
    """Everything that defines a fit except its seed (see dipkit.methods.spec)."""
    return fit_spec(
        METHODS[wildcards.method],
        wildcards.dataset,
        wildcards.image,
        wildcards.noise,
        config["fit"],
    )


# --- inputs ---------------------------------------------------------------------------


def prepare_inputs(wildcards):
    """Downloaded folder of a built-in dataset, or the files of a user dataset."""
    plan = DATASETS[wildcards.dataset]
    if plan.builtin:
        # ancient: downloading again (same checksums) must not rerun anything downstream
        return {"raw": ancient(f"results/downloads/{plan.name}")}
    return {"files": [f.path for f in plan.files]}


def noisy_metric_files():
    return [
        f"results/metrics/noisy/{name}/{noise}.parquet"
        for name, plan in DATASETS.items()
        for noise in plan.noise_ids
    ]


def fit_rows(kind="parquet"):
    """Every fit of the plan: dataset x noise x method x image."""
    return [
        f"results/fits/{name}/{noise}/{method}/{image}.{kind}"
        for name, plan in DATASETS.items()
        for noise in plan.noise_ids
        for method in plan.methods
        for image in plan.images
    ]


def has_gaussian_fits():
    return any(plan.methods and any(n.kind == "gaussian" for n in plan.noise) for plan in DATASETS.values())


# --- targets --------------------------------------------------------------------------


def final_outputs():
    targets = [
        "results/tables/noisy_baseline.csv",
        "results/tables/noisy_baseline.md",
    ]
    if any(plan.methods for plan in DATASETS.values()):
        targets += ["results/fits.parquet", "results/trajectories.parquet"]
    if has_gaussian_fits():
        targets += ["results/tables/table2.csv", "results/tables/table2.md"]
    return targets
