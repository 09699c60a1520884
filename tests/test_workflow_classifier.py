"""Texture features, the width classifier, predicted widths and relabelling with the real snakemake."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import run_tiny

CONFIG = {
    "seed": 1,
    "datasets": {"Set12": {"images": ["01", "09"], "gaussian": [25]}},
    "methods": {"ours_pred": {"base": "ours", "width": "predicted"}},
    "fit": {"iterations": 10},
    "classifier": {"enabled": True, "datasets": ["Set9", "Set12"], "splits": 2, "repeats": 2},
    "relabel": {"enabled": True, "widths": [32, 64]},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory, mirror):
    work = tmp_path_factory.mktemp("classifier")
    run_tiny(work, CONFIG, mirror)
    return work


def test_classifier_outputs(run):
    metrics = json.loads((run / "results/classifier/cv_metrics.json").read_text())
    assert 0 <= metrics["micro_auc"]["mean"] <= 1 and metrics["n_images"] == 21  # Set9 + Set12, all labelled
    assert (run / "results/classifier/roc.png").stat().st_size > 1000
    # the report's copy, and the report itself with the ROC and the label-agreement table
    assert (run / "results/figures/roc.png").read_bytes() == (run / "results/classifier/roc.png").read_bytes()
    from conftest import run_snakemake

    run_snakemake(run, "--configfile", str(run / "config.yaml"), "--report", "results/report.html")
    html = (run / "results/report.html").read_text()
    assert "roc.png" in html and "label_agreement.csv" in html and "micro-average AUC of 0.86" in html
    features = pd.read_parquet(run / "results/features/Set9.parquet")
    assert len(features) == 9 and "glcm_correlation_d1_a0" in features.columns


def test_fits_use_the_predicted_widths(run):
    pred = pd.read_csv(run / "results/classifier/predicted_widths.csv").set_index(["dataset", "image"])
    fits = pd.read_parquet(run / "results/fits.parquet")
    ours = fits[fits.method == "ours_pred"].set_index("image")
    assert sorted(ours.index) == ["01", "09"] and (ours.width_source == "predicted").all()
    for image in ("01", "09"):
        assert pred.loc[("Set12", image), "source"] == "oof"  # never trained on its own label
        width = int((run / f"results/classifier/widths/Set12/{image}.txt").read_text())
        assert ours.loc[image, "width"] == width == pred.loc[("Set12", image), "width"]


def test_relabel_table(run):
    labels = pd.read_csv(run / "results/classifier/regenerated_labels.csv")
    assert sorted(labels.image.astype(str).str.zfill(2)) == ["01", "09"] and set(labels.best_width) <= {
        32,
        64,
    }
    md = (run / "results/tables/label_agreement.md").read_text()
    assert "| Set12 | gaussian25 | 2 |" in md
