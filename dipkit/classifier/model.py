"""The width classifier's model: in-fold tree selection -> scaler -> one-vs-rest SVMs, tuned by
an inner grid search (:func:`make_pipeline`); its class scores, and the model fitted on all
labelled images that predicts the widths of the others (:func:`fit_full`,
:func:`predict_widths`).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import sklearn
from sklearn.calibration import CalibratedClassifierCV
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold, StratifiedKFold
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from dipkit.classifier.labels import CLASSES, label_indicator, row_groups, training_arrays
from dipkit.classifier.selection import ImportanceMemo, TreeImportanceSelector
from dipkit.seeding import random_state

DEFAULT_K: tuple[int, ...] = (10, 20, 40)
DEFAULT_KERNELS: tuple[str, ...] = ("rbf", "linear")
DEFAULT_C: tuple[float, ...] = (0.1, 1.0, 10.0)
DEFAULT_GAMMA: tuple[str | float, ...] = ("scale",)


def class_scores(model, X) -> np.ndarray:
    """``[n, 3]`` class scores of a fitted model for ``X`` ``[n, features]`` (columns in
    :data:`~dipkit.classifier.labels.CLASSES` order)."""
    est = model.best_estimator_ if hasattr(model, "best_estimator_") else model
    proba = isinstance(est.named_steps["svm"].estimator, CalibratedClassifierCV)
    scores = np.asarray(est.predict_proba(X) if proba else est.decision_function(X), dtype=np.float64)
    classes = [int(c) for c in est.classes_]
    if scores.ndim == 1:  # two classes in the training data: one decision value for classes[1]
        scores = np.stack([-scores, scores], axis=1)
    if classes == list(CLASSES):
        return scores
    # a width absent from the training rows (tiny folds) scores below everything else
    floor = 0.0 if proba else (float(scores.min()) if scores.size else 0.0) - 1.0
    out = np.full((len(scores), len(CLASSES)), floor)
    for j, c in enumerate(classes):
        out[:, CLASSES.index(c)] = scores[:, j]
    return out


def _micro_auc_scorer(estimator, X, y) -> float:
    s = class_scores(estimator, X)
    Y = label_indicator(y)
    keep = Y.any(axis=0) & ~Y.all(axis=0)
    if not keep.any():
        return float("nan")
    return float(roc_auc_score(Y[:, keep].ravel(), s[:, keep].ravel()))


def _macro_auc_scorer(estimator, X, y) -> float:
    s = class_scores(estimator, X)
    Y = label_indicator(y)
    aucs = [roc_auc_score(Y[:, c], s[:, c]) for c in range(Y.shape[1]) if 0 < Y[:, c].sum() < len(Y)]
    return float(np.mean(aucs)) if aucs else float("nan")


def make_pipeline(
    k: int | Sequence[int] = DEFAULT_K,
    kernels: Sequence[str] = DEFAULT_KERNELS,
    C: Sequence[float] = DEFAULT_C,
    gamma: Sequence[str | float] = DEFAULT_GAMMA,
    n_trees: int = 10,
    calibration: str | None = None,
    scoring: str = "micro",
    class_weight: str | None = "balanced",
    inner_splits: int = 3,
    seed: int = 0,
    grouped: bool = False,
) -> GridSearchCV:
    """The width classifier: tree feature selection -> scaler -> one-vs-rest SVMs, tuned by an inner CV.

    :param k: number(s) of features the tree selection keeps (a grid when several).
    :param kernels: SVM kernels tried (``"rbf"``, ``"linear"``).
    :param C: SVM ``C`` values tried.
    :param gamma: RBF ``gamma`` values tried (``"scale"`` = ``1 / (k * var)``, which adapts to
        the standardised features).
    :param n_trees: CART trees (on bootstrap samples) whose importances the selector
        averages; 1 = a single tree on the training fold, as the paper.
    :param calibration: ``None``: class scores are the SVM decision values; ``"sigmoid"``:
        each SVM is wrapped in ``CalibratedClassifierCV(method="sigmoid", cv=3,
        ensemble=False)`` (Platt scaling fitted on the training fold) and the scores are the
        probabilities normalised over the classes.
    :param inner_splits: folds of the inner stratified search.
    :param scoring: inner-search criterion, ``"micro"`` (the paper's metric) or ``"macro"``
        average ROC AUC.
    :param class_weight: the SVMs' ``class_weight`` (``"balanced"``; ``None`` lets the
        majority width dominate).
    :param seed: seeds the selector, the calibration folds and the inner folds.
    :param grouped: the data holds repeated rows of one image (``multilabel="duplicate"``):
        the inner search then splits by group (pass ``groups=`` to ``fit``).
    :return: an unfitted ``GridSearchCV`` (``refit=True``, ``n_jobs=1``); its selectors share
        one :class:`~dipkit.classifier.selection.ImportanceMemo`.
    """
    ks = [int(k)] if np.isscalar(k) else [int(v) for v in k]
    svc = SVC(class_weight=class_weight)
    prefix = "svm__estimator__"
    if calibration == "sigmoid":
        cal_cv = StratifiedKFold(
            n_splits=3, shuffle=True, random_state=random_state(seed, "classifier", "calibration")
        )
        svc = CalibratedClassifierCV(svc, method="sigmoid", cv=cal_cv, ensemble=False)
        prefix = "svm__estimator__estimator__"
    elif calibration is not None:
        raise ValueError(f"calibration must be None or 'sigmoid', got {calibration!r}")
    select = TreeImportanceSelector(
        k=ks[0],
        n_trees=n_trees,
        random_state=random_state(seed, "classifier", "select"),
        memo=ImportanceMemo(),
    )
    pipe = Pipeline(
        [("select", select), ("scale", StandardScaler()), ("svm", OneVsRestClassifier(svc, n_jobs=1))]
    )
    grid = []
    for kernel in kernels:
        g = {"select__k": ks, prefix + "kernel": [kernel], prefix + "C": list(C)}
        if kernel == "rbf":
            g[prefix + "gamma"] = list(gamma)
        elif kernel != "linear":
            raise ValueError(f"unsupported kernel {kernel!r} (use 'rbf' or 'linear')")
        grid.append(g)
    inner = (StratifiedGroupKFold if grouped else StratifiedKFold)(
        n_splits=inner_splits, shuffle=True, random_state=random_state(seed, "classifier", "inner")
    )
    scorers = {"micro": _micro_auc_scorer, "macro": _macro_auc_scorer}
    if scoring not in scorers:
        raise ValueError(f"scoring must be one of {sorted(scorers)}, got {scoring!r}")
    return GridSearchCV(
        pipe, grid, scoring=scorers[scoring], cv=inner, refit=True, n_jobs=1, error_score="raise"
    )


def pipeline_settings(options: Mapping) -> dict:
    """Effective :func:`make_pipeline` options (defaults filled in), JSON-ready.

    :raises TypeError: an option :func:`make_pipeline` does not take.
    """
    params = inspect.signature(make_pipeline).parameters
    unknown = sorted(set(options) - set(params) - {"seed", "grouped"})
    if unknown:
        raise TypeError(f"unknown pipeline option(s) {unknown}")
    out = {}
    for name, p in params.items():
        if name in ("seed", "grouped"):
            continue
        v = options.get(name, p.default)
        out[name] = list(v) if isinstance(v, (tuple, list)) else v
    return out


def fit_search(model: GridSearchCV, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None) -> GridSearchCV:
    """Fit a :func:`make_pipeline` search on checked arrays
    (:func:`~dipkit.classifier.labels.training_arrays`): ``X`` ``[n, features]``, ``y`` ``[n]``,
    ``groups`` ``[n]`` (rows of one image share a group) or ``None``."""
    # inputs are validated once by training_arrays; skipping scikit-learn's per-call parameter
    # and finiteness checks roughly halves the time of the thousands of small fits
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        if groups is None:
            return model.fit(X, y)
        return model.fit(X, y, groups=groups)


def fit_full(X, y, seed: int = 0, groups=None, **pipeline_options) -> GridSearchCV:
    """The :func:`make_pipeline` model fitted (inner search included) on all labelled images.

    :param X: features ``[n, features]`` (DataFrame: its columns are remembered and
        :func:`predict_widths` reorders by name).
    :param y: ``[n]`` widths; a Series with a repeated index (``multilabel="duplicate"``) is grouped.
    """
    Xa, ya, names = training_arrays(X, y)
    g = row_groups(y, groups)
    model = make_pipeline(seed=seed, grouped=g is not None, **pipeline_options)
    fit_search(model, Xa, ya, g)
    model.feature_names_ = names
    return model


def predict_scores(model, X) -> np.ndarray:
    """``[n, 3]`` class scores of a :func:`fit_full` model for feature rows ``X`` ``[n, features]``."""
    if isinstance(X, pd.DataFrame) and hasattr(model, "feature_names_"):
        missing = [c for c in model.feature_names_ if c not in X.columns]
        if missing:
            raise ValueError(f"feature table lacks {len(missing)} model feature(s), e.g. {missing[:5]}")
        X = X[model.feature_names_]
    return class_scores(model, np.asarray(X, dtype=np.float64))


def predict_widths(model, X) -> np.ndarray:
    """Predicted width (argmax class score) for each row of ``X``, as an int64 ``[n]`` array."""
    s = predict_scores(model, X)
    return np.asarray(CLASSES, dtype=np.int64)[np.argmax(s, axis=1)]
