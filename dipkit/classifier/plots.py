"""The width classifier's figures: the ROC curves of a cross-validation (Fig. 11a)."""

from __future__ import annotations

import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dipkit.classifier.cross_validation import CVResult
from dipkit.figures import save_figure


def plot_roc(cv_result: CVResult, path: str | os.PathLike, title: str | None = None) -> None:
    """Fig. 11a-style ROC plot (per-class one-vs-rest, micro- and macro-average, each with its
    AUC mean and standard deviation over the repeats) of a cross-validation, written atomically
    to ``path`` as PNG."""
    curves = cv_result.roc_curves()
    cls_auc = cv_result.class_auc_per_repeat()
    micro, macro = cv_result.micro_auc_per_repeat(), cv_result.macro_auc_per_repeat()
    fig = Figure(figsize=(6.0, 5.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(
        *curves["micro"],
        color="deeppink",
        linestyle=":",
        linewidth=3,
        label=f"micro-average ROC (AUC = {micro.mean():.2f} ± {micro.std():.2f})",
    )
    ax.plot(
        *curves["macro"],
        color="navy",
        linestyle=":",
        linewidth=3,
        label=f"macro-average ROC (AUC = {macro.mean():.2f} ± {macro.std():.2f})",
    )
    colors = {"32": "tab:cyan", "64": "tab:orange", "128": "tab:green"}
    for i, c in enumerate(cv_result.classes):
        key = str(c)
        if key not in curves:
            continue
        a = cls_auc[:, i]
        ax.plot(
            *curves[key],
            color=colors.get(key),
            linewidth=2,
            label=f"width {c} vs rest (AUC = {np.nanmean(a):.2f} ± {np.nanstd(a):.2f})",
        )
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1, label="chance")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("False positive rate")
    ax.set_ylabel("True positive rate")
    s = cv_result.settings
    ax.set_title(
        title
        or f"Width classifier ROC ({s.get('n_splits')}-fold CV x {s.get('n_repeats')}, "
        f"{len(cv_result.ids)} images)",
        fontsize=10,
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, trim=False)
