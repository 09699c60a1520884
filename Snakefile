# dipkit: a reproducible benchmark of Deep Image Prior denoising architectures,
# after "The Devil is in the Upsampling" (Liu et al., ICCV 2023).
#
#   snakemake --cores all                                  # the paper's benchmark
#   snakemake --cores all --config mirror_dir=DIR          # offline, datasets from DIR
#
# See README.md for the stages, outputs and rerun policy.

from snakemake.utils import min_version

min_version("9.0")


# config.yaml is the default configuration. A config file given on the command line
# (--configfile FILE ...) replaces it instead of being merged into it, so a small config
# plans only its own jobs; name config.yaml first to extend it: --configfile config.yaml FILE.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "rules/report/workflow.rst"


# load rules
# -----------------------------------------------------
include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/noise.smk"
include: "rules/fit.smk"
include: "rules/classifier.smk"
include: "rules/experiments.smk"
include: "rules/tables.smk"
include: "rules/report.smk"


# target rules
# -----------------------------------------------------
rule all:
    default_target: True
    input:
        final_outputs(),
        rules.job_costs.output,
