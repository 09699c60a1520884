"""Rule classifier: cross-validate the SVM width classifier; predicted widths per image."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from dipkit.classifier.stage import ClassifierOutputs, run_classifier
from dipkit.methods.widths import write_width_files
from dipkit.script_context import script_context

with script_context(snakemake):
    out = snakemake.output
    run_classifier(
        list(snakemake.input),
        ClassifierOutputs(
            metrics=out.metrics,
            roc=out.roc,
            confusion=out.confusion,
            ranking=out.ranking,
            widths=out.widths,
        ),
        variant=snakemake.params.labels,
        n_splits=snakemake.params.splits,
        n_repeats=snakemake.params.repeats,
        seed=snakemake.params.seed,
        label_datasets=tuple(snakemake.params.datasets),
        calibration=snakemake.params.calibration,
    )
    targets = [(d, i, path) for (d, i), path in zip(snakemake.params.width_images, out.width_files)]
    write_width_files(out.widths, targets)
