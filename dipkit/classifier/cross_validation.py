"""Repeated stratified cross-validation of the width classifier, and its result.

:func:`cross_validate` scores every labelled image out of fold in every repeat (rows of one
image with several labels share folds); :class:`CVResult` holds those scores and derives the
metrics of ``cv_metrics.json``: micro-/macro-average and per-class ROC AUC per repeat, mean
ROC curves, out-of-fold predictions, accuracy and the confusion matrix.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedGroupKFold

from dipkit.classifier.labels import CLASSES, row_groups, training_arrays
from dipkit.classifier.model import class_scores, fit_search, make_pipeline, pipeline_settings
from dipkit.features import PAPER_FEATURES
from dipkit.seeding import derive_seed, random_state

PAPER_MICRO_AUC: float = 0.86
"""Micro-average ROC AUC reported in the paper (Fig. 11a, 5-fold CV repeated 10 times)."""

_FPR_GRID = np.linspace(0.0, 1.0, 201)


def _mean_curve(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    tprs = []
    for fpr, tpr in curves:
        t = np.interp(_FPR_GRID, fpr, tpr)
        t[0] = 0.0
        tprs.append(t)
    mean = np.mean(tprs, axis=0)
    mean[-1] = 1.0
    return _FPR_GRID.copy(), mean


@dataclass
class CVResult:
    """Out-of-fold scores of a repeated cross-validation, and the metrics derived from them.

    ``scores[r, i, c]`` is the score of class ``CLASSES[c]`` for image ``ids[i]`` in repeat
    ``r``, from the model of the fold that held the image out. ``y_true`` is the ``[n, 3]``
    label-set indicator (one ``True`` per row unless images have several labels).
    """

    ids: list
    y_true: np.ndarray
    scores: np.ndarray
    feature_names: list[str]
    fold_params: list[dict]
    fold_features: list[list[str]]
    settings: dict
    elapsed_s: float = 0.0
    classes: tuple[int, ...] = CLASSES
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def n_repeats(self) -> int:
        return self.scores.shape[0]

    def _present(self) -> np.ndarray:
        return self.y_true.any(axis=0) & ~self.y_true.all(axis=0)

    def micro_auc_per_repeat(self) -> np.ndarray:
        keep = self._present()
        Y = self.y_true[:, keep]
        return np.array([roc_auc_score(Y.ravel(), s[:, keep].ravel()) for s in self.scores])

    def class_auc_per_repeat(self) -> np.ndarray:
        """``[repeats, 3]``; NaN for a class without positives (or negatives)."""
        out = np.full((self.n_repeats, len(self.classes)), np.nan)
        for c in np.where(self._present())[0]:
            out[:, c] = [roc_auc_score(self.y_true[:, c], s[:, c]) for s in self.scores]
        return out

    def macro_auc_per_repeat(self) -> np.ndarray:
        return np.nanmean(self.class_auc_per_repeat(), axis=1)

    def mean_scores(self) -> np.ndarray:
        return self.scores.mean(axis=0)

    def predicted(self) -> np.ndarray:
        """OOF predicted width per image: argmax of the scores averaged over repeats."""
        return np.asarray(self.classes)[np.argmax(self.mean_scores(), axis=1)]

    def _correct(self, pred_idx: np.ndarray) -> np.ndarray:
        return self.y_true[np.arange(len(pred_idx)), pred_idx]

    def accuracy(self) -> float:
        return float(self._correct(np.argmax(self.mean_scores(), axis=1)).mean())

    def accuracy_per_repeat(self) -> np.ndarray:
        return np.array([self._correct(np.argmax(s, axis=1)).mean() for s in self.scores])

    def _booked_true(self) -> np.ndarray:
        pred = np.argmax(self.mean_scores(), axis=1)
        first = np.argmax(self.y_true, axis=1)
        return np.where(self._correct(pred), pred, first)

    def confusion_matrix(self) -> np.ndarray:
        """``[true, predicted]`` counts over images (rows/columns in :data:`CLASSES` order)."""
        pred = np.argmax(self.mean_scores(), axis=1)
        true = self._booked_true()
        m = np.zeros((len(self.classes), len(self.classes)), dtype=np.int64)
        np.add.at(m, (true, pred), 1)
        return m

    def balanced_accuracy(self) -> float:
        m = self.confusion_matrix()
        rows = m.sum(axis=1)
        return float(np.mean([m[i, i] / rows[i] for i in range(len(rows)) if rows[i] > 0]))

    def roc_curves(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Mean (over repeats) ROC curves: keys ``"32"``, ``"64"``, ``"128"``, ``"micro"``, ``"macro"``."""
        if "roc" in self._cache:
            return self._cache["roc"]
        keep = np.where(self._present())[0]
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        per_class: dict[int, list] = {c: [] for c in keep}
        micro, macro = [], []
        for s in self.scores:
            for c in keep:
                fpr, tpr, _ = roc_curve(self.y_true[:, c], s[:, c])
                per_class[c].append((fpr, tpr))
            fpr, tpr, _ = roc_curve(self.y_true[:, keep].ravel(), s[:, keep].ravel())
            micro.append((fpr, tpr))
            # macro: mean of the class curves on a common grid (as scikit-learn's example)
            macro.append(_mean_curve([per_class[c][-1] for c in keep]))
        for c in keep:
            out[str(self.classes[c])] = _mean_curve(per_class[c])
        out["micro"] = _mean_curve(micro)
        out["macro"] = _mean_curve(macro)
        self._cache["roc"] = out
        return out

    def most_common_params(self) -> dict:
        counts = Counter(json.dumps(p, sort_keys=True) for p in self.fold_params)
        best, n = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        return {"params": json.loads(best), "folds": n, "of": len(self.fold_params)}

    def selection_frequency(self) -> pd.Series:
        """Fraction of outer folds whose selector kept each feature (sorted, most often first)."""
        counts = Counter(f for feats in self.fold_features for f in feats)
        s = pd.Series(
            {f: counts.get(f, 0) / len(self.fold_features) for f in self.feature_names}, dtype=float
        )
        order = np.lexsort((np.arange(len(s)), -s.to_numpy()))
        return s.iloc[order]

    def to_json(self) -> dict:
        """Metrics as a JSON-ready dict (``results/classifier/cv_metrics.json``)."""
        micro = self.micro_auc_per_repeat()
        macro = self.macro_auc_per_repeat()
        cls_auc = self.class_auc_per_repeat()
        acc_r = self.accuracy_per_repeat()
        counts = self.y_true.sum(axis=0)
        freq = self.selection_frequency()
        k_values = Counter(int(p.get("select__k", 0)) for p in self.fold_params)

        def f(v):
            return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

        return {
            "classes": list(self.classes),
            "n_images": len(self.ids),
            "n_images_per_class": {str(c): int(n) for c, n in zip(self.classes, counts)},
            "n_multilabel_images": int((self.y_true.sum(axis=1) > 1).sum()),
            "n_features": len(self.feature_names),
            "micro_auc": {
                "mean": f(micro.mean()),
                "std": f(micro.std()),
                "per_repeat": [f(v) for v in micro],
            },
            "macro_auc": {
                "mean": f(macro.mean()),
                "std": f(macro.std()),
                "per_repeat": [f(v) for v in macro],
            },
            "class_auc": {
                str(c): {
                    "mean": f(np.nanmean(cls_auc[:, i])) if not np.isnan(cls_auc[:, i]).all() else None,
                    "std": f(np.nanstd(cls_auc[:, i])) if not np.isnan(cls_auc[:, i]).all() else None,
                }
                for i, c in enumerate(self.classes)
            },
            "paper_micro_auc": PAPER_MICRO_AUC,
            "accuracy": self.accuracy(),
            "accuracy_note": "argmax of the out-of-fold scores averaged over repeats",
            "accuracy_per_repeat": {"mean": f(acc_r.mean()), "std": f(acc_r.std())},
            "balanced_accuracy": self.balanced_accuracy(),
            "majority_class_rate": f(counts.max() / max(1, len(self.ids))),
            "confusion_matrix": {
                "order": list(self.classes),
                "rows": "true width",
                "columns": "predicted width",
                "matrix": self.confusion_matrix().tolist(),
            },
            "selected_features": {
                "note": "fraction of the outer folds whose in-fold tree selection kept the feature",
                "k_chosen": {str(k): n for k, n in sorted(k_values.items())},
                "top": [{"feature": n, "frequency": float(v)} for n, v in freq.head(20).items() if v > 0],
                "paper_features": {n: float(freq.get(n, 0.0)) for n in PAPER_FEATURES},
            },
            "hyperparameters": self.most_common_params(),
            "settings": dict(self.settings),
        }


def cross_validate(
    X,
    y,
    n_splits: int = 5,
    n_repeats: int = 10,
    seed: int = 0,
    groups=None,
    **pipeline_options,
) -> CVResult:
    """Repeated stratified k-fold cross-validation of :func:`~dipkit.classifier.model.make_pipeline`.

    :param X: ``[n, features]`` (DataFrame or array), one row per labelled row of ``y``.
    :param y: widths (32/64/128), row-aligned with ``X``. A Series whose index repeats
        (:func:`~dipkit.classifier.labels.labels_for` with ``multilabel="duplicate"``) marks rows
        of one image; so does ``groups``. Grouped rows share folds (``StratifiedGroupKFold`` per
        repeat instead of ``RepeatedStratifiedKFold``) and are evaluated as one image with a
        label set.
    :param pipeline_options: passed to :func:`~dipkit.classifier.model.make_pipeline` (``k``,
        ``kernels``, ``C``, ``gamma``, ``n_trees``, ``calibration``, ``scoring``, ``class_weight``,
        ``inner_splits``).
    """
    t0 = time.perf_counter()
    Xa, ya, names = training_arrays(X, y)
    g = row_groups(y, groups)
    n = len(ya)
    if g is None:
        splitter = RepeatedStratifiedKFold(
            n_splits=n_splits, n_repeats=n_repeats, random_state=random_state(seed, "classifier", "outer")
        )
        splits = list(splitter.split(Xa, ya))
        group_of = np.arange(n)
    else:
        group_of = g
        splits = []
        for r in range(n_repeats):
            sgk = StratifiedGroupKFold(
                n_splits=n_splits, shuffle=True, random_state=random_state(seed, "classifier", "outer", r)
            )
            splits.extend(sgk.split(Xa, ya, g))
    n_groups = int(group_of.max()) + 1
    row_scores = np.full((n_repeats, n, len(CLASSES)), np.nan)
    fold_params, fold_features = [], []
    for i, (train, test) in enumerate(splits):
        r = i // n_splits
        model = make_pipeline(seed=derive_seed(seed, "fold", i), grouped=g is not None, **pipeline_options)
        fit_search(model, Xa[train], ya[train], None if g is None else g[train])
        row_scores[r, test] = class_scores(model, Xa[test])
        fold_params.append(
            {k: (v if isinstance(v, (str, int)) else float(v)) for k, v in model.best_params_.items()}
        )
        support = model.best_estimator_.named_steps["select"].get_support()
        fold_features.append([names[j] for j in np.where(support)[0]])
    if np.isnan(row_scores).any():
        raise RuntimeError("some rows received no out-of-fold score")
    # collapse rows to images (groups): label sets, mean scores of the (identical) copies
    y_true = np.zeros((n_groups, len(CLASSES)), dtype=bool)
    y_true[group_of, np.searchsorted(CLASSES, ya)] = True
    scores = np.zeros((n_repeats, n_groups, len(CLASSES)))
    np.add.at(scores, (slice(None), group_of), row_scores)
    scores /= np.bincount(group_of, minlength=n_groups)[None, :, None]
    first_row = np.array([np.where(group_of == k)[0][0] for k in range(n_groups)])
    index = (
        list(y.index)
        if isinstance(y, pd.Series)
        else (list(X.index) if isinstance(X, pd.DataFrame) else None)
    )
    ids = [index[j] for j in first_row] if index is not None else first_row.tolist()
    settings = {
        "n_splits": n_splits,
        "n_repeats": n_repeats,
        "seed": seed,
        "grouped": g is not None,
        **pipeline_settings(pipeline_options),
    }
    return CVResult(
        ids=ids,
        y_true=y_true,
        scores=scores,
        feature_names=names,
        fold_params=fold_params,
        fold_features=fold_features,
        settings=settings,
        elapsed_s=time.perf_counter() - t0,
    )
