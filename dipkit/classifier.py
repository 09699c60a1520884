"""Width classifier: predict the hourglass width (32/64/128) of an image from its texture.

Sec. 3.3/4.4 and Fig. 11a of *The Devil is in the Upsampling* (Liu et al., ICCV 2023): GLCM
and radial-PSD texture features, a decision tree (CART) for feature selection, three SVMs
(one-vs-rest over the widths {32, 64, 128}), 5-fold cross-validation repeated 10 times and a
micro-average ROC AUC of **0.86** on Set9 + Set12 + CBSD68. The authors never released the
classifier code, so this module is the reference implementation of that description. Its
choices, and where they go beyond the paper:

Labels (:func:`labels_for`)
    The released Texture-DIP labels (:func:`dipkit.methods.widths.texture_labels`), keyed by
    ``(dataset, image id)``; only images of ``label_datasets`` (Set9, Set12, CBSD68) are
    labelled, and a ``labels=`` mapping can replace the table (tests, other label sets).
    ``NoRepeat`` (default, the variant the authors used for Table 2) has exactly one label
    for each of its 86 images. ``wRepeat`` gives 22 images two labels; ``multilabel`` says
    what to do with them: ``"first"`` keeps the smaller width (the cheaper network),
    ``"drop"`` leaves the image out, ``"duplicate"`` (the default) keeps one row per label.
    Duplicated rows of one image always fall into the same outer (and inner) fold, so no
    image is scored by a model that saw it; for training, the copies act as identical points
    with different labels (the SVMs learn the image as ambiguous); for evaluation the copies
    are collapsed to one image whose *label set* is used: in the one-vs-rest ROC the image is
    a positive of every class in its set, and a prediction counts as correct when it is in
    the set (the confusion matrix then books it under the predicted width).

Features
    Every column of the feature tables except ``dataset, image, height, width, channels``
    (:data:`dipkit.features.META_COLUMNS`): image size and colour are dataset properties,
    not texture (all Set12 images are gray, and labelled 32 or 64 only).

Feature ranking (:func:`rank_features`)
    CART (``DecisionTreeClassifier(class_weight="balanced")``, fixed ``random_state``)
    Gini importances, averaged over the trees fitted on the training part of every fold of a
    repeated stratified 5-fold split of *all* labelled images (a single tree on 86 images is
    unstable). This ranking is descriptive only (``feature_ranking.csv``, and whether the
    paper's three GLCM features are among the top picks); the cross-validated model never
    uses it -- its selection happens inside each training fold (below), so no test image
    influences which features are used to score it.

Model (:func:`make_pipeline`)
    ``GridSearchCV(Pipeline([select, StandardScaler, OneVsRestClassifier(SVC)]))``:

    * ``select``: :class:`TreeImportanceSelector`, the top-``k`` features by the importance
      of CART trees fitted on the training fold only (averaged over ``n_trees`` bootstrap
      trees; ties broken by column order);
    * ``StandardScaler`` then one ``SVC(class_weight="balanced")`` per width (one-vs-rest);
      the class scores are the three SVMs' decision values (signed distances in margin
      units), as in scikit-learn's multi-class ROC example. Platt probabilities
      (``SVC(probability=True)``) are not used: deprecated in scikit-learn 1.9, slower (an
      internal 5-fold CV per SVM) and, on 86 images, they pushed the argmax towards the
      majority width;
    * hyper-parameters from a small grid -- ``k`` in {10, 20, 40}; RBF kernel (``gamma =
      "scale"``) or linear; ``C`` in {0.1, 1, 10}: 18 candidates -- chosen by an inner
      stratified 3-fold search maximising the micro-average ROC AUC (the paper's metric).

    The defaults were picked on the real data (86 NoRepeat images, 5x10 CV, all selection
    inside the folds): alternatives (single tree, other ``k`` grids, linear or RBF only,
    macro-AUC inner scoring) all landed within one standard deviation (about 0.03) of each
    other. ``class_weight=None`` or ``calibration="sigmoid"`` give scores that carry the
    class priors; they raise the micro-average AUC to about the paper's 0.86 but leave the
    macro-average unchanged and make the argmax predict the majority width (64) for almost
    every image, so they are options, not defaults.

Cross-validation (:func:`cross_validate`)
    ``RepeatedStratifiedKFold(5, 10)``. Every repeat gives an out-of-fold (OOF) score for
    every image; the micro-average AUC (all one-vs-rest decisions pooled) and macro-average
    AUC (mean of the per-class AUCs) are computed per repeat and reported as mean and
    standard deviation over repeats. ROC curves are the per-repeat curves averaged
    vertically on a common false-positive-rate grid. The predicted width of an image is the
    argmax of its OOF scores averaged over the repeats (every model that scored an image
    was trained without it); the confusion matrix and ``accuracy`` use that prediction.
    ``accuracy_per_repeat`` and ``balanced_accuracy`` are given too, and the majority-class
    rate as a baseline (64 is two thirds of NoRepeat).

Unlabelled images (:func:`fit_full`, :func:`predict_widths`)
    PolyU, user datasets and labelled datasets' images without a label are never used for
    training; they are scored by the model refitted (with its own inner search) on all
    labelled images.

Determinism
    Every random choice (folds, bootstrap trees, calibration folds) is seeded from ``seed`` through
    :func:`dipkit.seeding.derive_seed`, and scikit-learn runs with ``n_jobs=1``, so equal
    inputs give equal outputs. The module imports neither torch nor snakemake.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_selection import SelectorMixin
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import (
    GridSearchCV,
    RepeatedStratifiedKFold,
    StratifiedGroupKFold,
    StratifiedKFold,
)
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.validation import check_is_fitted, check_X_y

from dipkit.seeding import derive_seed

CLASSES: tuple[int, ...] = (32, 64, 128)
"""The width classes, in the order of every score column and matrix."""
PAPER_MICRO_AUC: float = 0.86
"""Micro-average ROC AUC reported in the paper (Fig. 11a, 5-fold CV repeated 10 times)."""
LABEL_DATASETS: tuple[str, ...] = ("Set9", "Set12", "CBSD68")
"""Datasets whose images carry Texture-DIP labels."""
MULTILABEL_MODES: tuple[str, ...] = ("first", "drop", "duplicate")

DEFAULT_K: tuple[int, ...] = (10, 20, 40)
DEFAULT_KERNELS: tuple[str, ...] = ("rbf", "linear")
DEFAULT_C: tuple[float, ...] = (0.1, 1.0, 10.0)
DEFAULT_GAMMA: tuple[str | float, ...] = ("scale",)


def _rs(seed: int, *parts: object) -> int:
    """A scikit-learn ``random_state`` (< 2**32) derived from ``seed`` and ``parts``."""
    return derive_seed(seed, "classifier", *parts) % (2**32)


def _feature_columns(df: pd.DataFrame) -> list[str]:
    from dipkit.features import META_COLUMNS

    return [c for c in df.columns if c not in META_COLUMNS]


# --------------------------------------------------------------------------------------------
# labels


def labels_for(
    features_df: pd.DataFrame,
    variant: str = "NoRepeat",
    multilabel: str = "duplicate",
    labels: Mapping[tuple[str, str], Sequence[int] | int] | None = None,
    label_datasets: Sequence[str] | None = LABEL_DATASETS,
) -> pd.Series:
    """Width labels of the rows of a feature table that have one.

    :param features_df: table with ``dataset`` and ``image`` columns.
    :param variant: ``"NoRepeat"`` or ``"wRepeat"`` (Texture-DIP label variant).
    :param multilabel: for images with several labels: ``"first"`` (smallest width),
        ``"drop"`` (leave the image out) or ``"duplicate"`` (one row per label; the index
        then repeats). NoRepeat has one label per image, so this changes nothing there.
    :param labels: ``{(dataset, image): width or widths}`` to use instead of the released
        table (``texture_labels()[variant]``).
    :param label_datasets: only rows of these datasets are labelled (``None``: any).
    :return: int64 Series named ``width``, indexed by ``features_df``'s index labels.
    """
    if multilabel not in MULTILABEL_MODES:
        raise ValueError(f"multilabel must be one of {MULTILABEL_MODES}, got {multilabel!r}")
    if labels is None:
        from dipkit.methods.widths import texture_labels

        table = texture_labels()
        if variant not in table:
            raise ValueError(f"unknown label variant {variant!r}; known: {sorted(table)}")
        labels = table[variant]
    index, values = [], []
    for idx, dataset, image in zip(features_df.index, features_df["dataset"], features_df["image"]):
        if label_datasets is not None and dataset not in label_datasets:
            continue
        widths = labels.get((str(dataset), str(image)))
        if widths is None:
            continue
        widths = sorted({int(w) for w in (widths if isinstance(widths, (tuple, list, set)) else [widths])})
        bad = [w for w in widths if w not in CLASSES]
        if bad:
            raise ValueError(f"({dataset}, {image}): width label(s) {bad} not in {CLASSES}")
        if len(widths) > 1 and multilabel == "drop":
            continue
        if len(widths) > 1 and multilabel == "first":
            widths = widths[:1]
        for w in widths:
            index.append(idx)
            values.append(w)
    return pd.Series(values, index=pd.Index(index, name=features_df.index.name), name="width", dtype="int64")


# --------------------------------------------------------------------------------------------
# feature ranking and selection


def _tree(seed_state: int, max_depth: int | None = None) -> DecisionTreeClassifier:
    return DecisionTreeClassifier(random_state=seed_state, class_weight="balanced", max_depth=max_depth)


def rank_features(
    X: pd.DataFrame, y: Sequence[int], seed: int = 0, n_splits: int = 5, n_repeats: int = 10
) -> pd.DataFrame:
    """CART importance ranking of all features over all labelled images (descriptive).

    Gini importances of ``DecisionTreeClassifier(class_weight="balanced")`` fitted on the
    training part of every fold of ``RepeatedStratifiedKFold(n_splits, n_repeats)``,
    averaged; ``full_tree_importance`` is the single tree fitted on all images (what the
    paper's "a decision tree" most likely was).

    :return: columns ``feature, importance, importance_std, full_tree_importance, rank``
        sorted by rank (1 = most important; ties keep the column order).
    """
    names = list(X.columns) if isinstance(X, pd.DataFrame) else [f"x{i}" for i in range(np.shape(X)[1])]
    Xa = np.asarray(X, dtype=np.float64)
    ya = np.asarray(y)
    imps = []
    splitter = RepeatedStratifiedKFold(n_splits=n_splits, n_repeats=n_repeats, random_state=_rs(seed, "rank"))
    for i, (train, _) in enumerate(splitter.split(Xa, ya)):
        imps.append(_tree(_rs(seed, "rank-tree", i)).fit(Xa[train], ya[train]).feature_importances_)
    imps = np.array(imps)
    full = _tree(_rs(seed, "rank-full")).fit(Xa, ya).feature_importances_
    df = pd.DataFrame(
        {
            "feature": names,
            "importance": imps.mean(axis=0),
            "importance_std": imps.std(axis=0),
            "full_tree_importance": full,
        }
    )
    order = np.lexsort((np.arange(len(df)), -df["importance"].to_numpy()))
    df = df.iloc[order].reset_index(drop=True)
    df["rank"] = np.arange(1, len(df) + 1)
    return df


def select_features(ranking: pd.DataFrame, k: int | None = None, threshold: float | None = None) -> list[str]:
    """Features of a :func:`rank_features` table: the top ``k`` and/or those with
    ``importance >= threshold`` (both given: both conditions); neither: all with importance > 0."""
    df = ranking.sort_values("rank")
    if threshold is not None:
        df = df[df["importance"] >= threshold]
    if k is not None:
        df = df.head(k)
    if k is None and threshold is None:
        df = df[df["importance"] > 0]
    return list(df["feature"])


def paper_feature_ranks(ranking: pd.DataFrame, top: int = 10) -> dict:
    """Where the paper's three GLCM features (:data:`dipkit.features.PAPER_FEATURES`) rank.

    :return: ``{"top": top, "features": {name: {"rank", "importance", "in_top"}},
        "all_in_top": bool, "n_in_top": int}``.
    """
    from dipkit.features import PAPER_FEATURES

    by_name = ranking.set_index("feature")
    feats = {}
    for name in PAPER_FEATURES:
        if name in by_name.index:
            rank = int(by_name.at[name, "rank"])
            feats[name] = {
                "rank": rank,
                "importance": float(by_name.at[name, "importance"]),
                "in_top": rank <= top,
            }
        else:
            feats[name] = {"rank": None, "importance": None, "in_top": False}
    n_in = sum(v["in_top"] for v in feats.values())
    return {"top": top, "features": feats, "n_in_top": n_in, "all_in_top": n_in == len(PAPER_FEATURES)}


_IMPORTANCE_CACHE: OrderedDict = OrderedDict()
_IMPORTANCE_CACHE_SIZE = 256


def _tree_importances(
    X: np.ndarray, y: np.ndarray, n_trees: int, max_depth: int | None, seed: int
) -> np.ndarray:
    """Mean CART importances (memoised: a grid search refits the selector on the same
    training rows for every candidate, and the trees do not depend on ``k``)."""
    key = (
        hashlib.sha256(np.ascontiguousarray(X).tobytes()).hexdigest(),
        hashlib.sha256(np.ascontiguousarray(y).tobytes()).hexdigest(),
        X.shape,
        y.shape,
        str(y.dtype),
        n_trees,
        max_depth,
        seed,
    )
    hit = _IMPORTANCE_CACHE.get(key)
    if hit is not None:
        _IMPORTANCE_CACHE.move_to_end(key)
        return hit.copy()
    n, p = X.shape
    rng = np.random.default_rng(seed)
    imps = np.zeros(p)
    for t in range(n_trees):
        rows = np.arange(n) if n_trees == 1 else rng.integers(0, n, n)
        tree = _tree((seed + t) % (2**32), max_depth)
        imps += tree.fit(X[rows], y[rows]).feature_importances_
    imps /= n_trees
    _IMPORTANCE_CACHE[key] = imps
    if len(_IMPORTANCE_CACHE) > _IMPORTANCE_CACHE_SIZE:
        _IMPORTANCE_CACHE.popitem(last=False)
    return imps.copy()


class TreeImportanceSelector(SelectorMixin, BaseEstimator):
    """Keep the ``k`` features most important to CART trees fitted on the training data.

    A pipeline step, so the selection is refitted inside every (outer and inner) training
    fold. ``n_trees == 1``: one tree on all rows; more: the mean importance of trees fitted
    on bootstrap samples (a more stable ranking). Ties (e.g. features no tree used) keep
    the column order.
    """

    def __init__(self, k: int = 10, n_trees: int = 1, max_depth: int | None = None, random_state: int = 0):
        self.k = k
        self.n_trees = n_trees
        self.max_depth = max_depth
        self.random_state = random_state

    def fit(self, X, y):
        X, y = check_X_y(X, y, multi_output=True)
        n, p = X.shape
        self.n_features_in_ = p
        self.importances_ = _tree_importances(X, y, int(self.n_trees), self.max_depth, int(self.random_state))
        order = np.lexsort((np.arange(p), -self.importances_))
        self.support_ = np.zeros(p, dtype=bool)
        self.support_[order[: min(int(self.k), p)]] = True
        return self

    def _get_support_mask(self):
        check_is_fitted(self, "support_")
        return self.support_


# --------------------------------------------------------------------------------------------
# model


def class_scores(model, X) -> np.ndarray:
    """``[n, 3]`` class scores of a fitted model (columns in :data:`CLASSES` order)."""
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
    Y = _indicator(y)
    keep = Y.any(axis=0) & ~Y.all(axis=0)
    if not keep.any():
        return float("nan")
    return float(roc_auc_score(Y[:, keep].ravel(), s[:, keep].ravel()))


def _macro_auc_scorer(estimator, X, y) -> float:
    s = class_scores(estimator, X)
    Y = _indicator(y)
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
    :return: an unfitted ``GridSearchCV`` (``refit=True``, ``n_jobs=1``).
    """
    ks = [int(k)] if np.isscalar(k) else [int(v) for v in k]
    svc = SVC(class_weight=class_weight)
    prefix = "svm__estimator__"
    if calibration == "sigmoid":
        cal_cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=_rs(seed, "calibration"))
        svc = CalibratedClassifierCV(svc, method="sigmoid", cv=cal_cv, ensemble=False)
        prefix = "svm__estimator__estimator__"
    elif calibration is not None:
        raise ValueError(f"calibration must be None or 'sigmoid', got {calibration!r}")
    pipe = Pipeline(
        [
            ("select", TreeImportanceSelector(k=ks[0], n_trees=n_trees, random_state=_rs(seed, "select"))),
            ("scale", StandardScaler()),
            ("svm", OneVsRestClassifier(svc, n_jobs=1)),
        ]
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
        n_splits=inner_splits, shuffle=True, random_state=_rs(seed, "inner")
    )
    scorers = {"micro": _micro_auc_scorer, "macro": _macro_auc_scorer}
    if scoring not in scorers:
        raise ValueError(f"scoring must be one of {sorted(scorers)}, got {scoring!r}")
    return GridSearchCV(
        pipe, grid, scoring=scorers[scoring], cv=inner, refit=True, n_jobs=1, error_score="raise"
    )


def _indicator(y) -> np.ndarray:
    ya = np.asarray(y)
    if ya.ndim == 2:
        return ya.astype(bool)
    return np.stack([ya == c for c in CLASSES], axis=1)


def _fit(model: GridSearchCV, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None) -> GridSearchCV:
    # inputs are validated once by _as_arrays; skipping scikit-learn's per-call parameter
    # and finiteness checks roughly halves the time of the thousands of small fits
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        if groups is None:
            return model.fit(X, y)
        return model.fit(X, y, groups=groups)


def _as_arrays(X, y):
    names = list(X.columns) if isinstance(X, pd.DataFrame) else [f"x{i}" for i in range(np.shape(X)[1])]
    Xa = np.asarray(X, dtype=np.float64)
    ya = np.asarray(y).astype(np.int64)
    if Xa.ndim != 2 or len(Xa) != len(ya):
        raise ValueError(f"X ({Xa.shape}) and y ({ya.shape}) must have one row per labelled image")
    if not np.isfinite(Xa).all():
        bad = [names[j] for j in np.where(~np.isfinite(Xa).all(axis=0))[0]]
        raise ValueError(f"non-finite feature values in {bad[:10]}")
    unknown = sorted(set(ya.tolist()) - set(CLASSES))
    if unknown:
        raise ValueError(f"labels {unknown} are not widths {CLASSES}")
    return Xa, ya, names


def _default_groups(y, groups):
    if groups is not None:
        return pd.factorize(pd.Index(groups))[0]
    if isinstance(y, pd.Series) and y.index.has_duplicates:
        return pd.factorize(y.index)[0]
    return None


def fit_full(X, y, seed: int = 0, groups=None, **pipeline_options) -> GridSearchCV:
    """The :func:`make_pipeline` model fitted (inner search included) on all labelled images.

    :param X: features (DataFrame: its columns are remembered and :func:`predict_widths`
        reorders by name).
    :param y: widths; a Series with a repeated index (``multilabel="duplicate"``) is grouped.
    """
    Xa, ya, names = _as_arrays(X, y)
    g = _default_groups(y, groups)
    model = make_pipeline(seed=seed, grouped=g is not None, **pipeline_options)
    _fit(model, Xa, ya, g)
    model.feature_names_ = names
    return model


def predict_scores(model, X) -> np.ndarray:
    """``[n, 3]`` class scores of a :func:`fit_full` model for feature rows ``X``."""
    if isinstance(X, pd.DataFrame) and hasattr(model, "feature_names_"):
        missing = [c for c in model.feature_names_ if c not in X.columns]
        if missing:
            raise ValueError(f"feature table lacks {len(missing)} model feature(s), e.g. {missing[:5]}")
        X = X[model.feature_names_]
    return class_scores(model, np.asarray(X, dtype=np.float64))


def predict_widths(model, X) -> np.ndarray:
    """Predicted width (argmax class score) for each row of ``X``, as an int64 array."""
    s = predict_scores(model, X)
    return np.asarray(CLASSES, dtype=np.int64)[np.argmax(s, axis=1)]


# --------------------------------------------------------------------------------------------
# cross-validation


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
        from dipkit.features import PAPER_FEATURES

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
            "n_images": int(len(self.ids)),
            "n_images_per_class": {str(c): int(n) for c, n in zip(self.classes, counts)},
            "n_multilabel_images": int((self.y_true.sum(axis=1) > 1).sum()),
            "n_features": int(len(self.feature_names)),
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


def _pipeline_settings(options: Mapping) -> dict:
    """Effective :func:`make_pipeline` options (defaults filled in), JSON-ready."""
    import inspect

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


def cross_validate(
    X,
    y,
    n_splits: int = 5,
    n_repeats: int = 10,
    seed: int = 0,
    groups=None,
    **pipeline_options,
) -> CVResult:
    """Repeated stratified k-fold cross-validation of :func:`make_pipeline`.

    :param X: ``[n, features]`` (DataFrame or array), one row per labelled row of ``y``.
    :param y: widths (32/64/128), row-aligned with ``X``. A Series whose index repeats
        (``labels_for(..., multilabel="duplicate")``) marks rows of one image; so does
        ``groups``. Grouped rows share folds (``StratifiedGroupKFold`` per repeat instead of
        ``RepeatedStratifiedKFold``) and are evaluated as one image with a label set.
    :param pipeline_options: passed to :func:`make_pipeline` (``k``, ``kernels``, ``C``,
        ``gamma``, ``n_trees``, ``scores``, ``inner_splits``).
    """
    t0 = time.perf_counter()
    Xa, ya, names = _as_arrays(X, y)
    g = _default_groups(y, groups)
    n = len(ya)
    if g is None:
        splitter = RepeatedStratifiedKFold(
            n_splits=n_splits, n_repeats=n_repeats, random_state=_rs(seed, "outer")
        )
        splits = list(splitter.split(Xa, ya))
        group_of = np.arange(n)
    else:
        group_of = g
        splits = []
        for r in range(n_repeats):
            sgk = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=_rs(seed, "outer", r))
            splits.extend(sgk.split(Xa, ya, g))
    n_groups = int(group_of.max()) + 1
    row_scores = np.full((n_repeats, n, len(CLASSES)), np.nan)
    fold_params, fold_features = [], []
    for i, (train, test) in enumerate(splits):
        r = i // n_splits
        model = make_pipeline(seed=derive_seed(seed, "fold", i), grouped=g is not None, **pipeline_options)
        _fit(model, Xa[train], ya[train], None if g is None else g[train])
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
        **_pipeline_settings(pipeline_options),
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


# --------------------------------------------------------------------------------------------
# outputs


def plot_roc(cv_result: CVResult, path: str | os.PathLike, title: str | None = None) -> None:
    """Fig. 11a-style ROC plot (per-class one-vs-rest, micro- and macro-average), PNG, atomic."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from dipkit.io import atomic_path

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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=150, metadata={"Software": None})


def _load_features(feature_paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    frames = [pd.read_parquet(p) for p in feature_paths]
    if not frames:
        raise ValueError("no feature tables given")
    cols = list(frames[0].columns)
    for p, f in zip(feature_paths, frames):
        if list(f.columns) != cols:
            raise ValueError(f"{p}: feature columns differ from {feature_paths[0]}")
    df = pd.concat(frames, ignore_index=True)
    dup = df.duplicated(["dataset", "image"])
    if dup.any():
        raise ValueError(
            f"duplicate images in the feature tables: {df.loc[dup, ['dataset', 'image']].values[:5].tolist()}"
        )
    return df


def run_classifier(
    feature_paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    variant: str = "NoRepeat",
    n_splits: int = 5,
    n_repeats: int = 10,
    seed: int = 0,
    label_datasets: Sequence[str] = LABEL_DATASETS,
    labels: Mapping[tuple[str, str], Sequence[int] | int] | None = None,
    multilabel: str = "duplicate",
    **pipeline_options,
) -> dict:
    """The classifier stage: rank, cross-validate, fit on all labelled images, predict the rest.

    Writes (atomically) into ``out_dir``: ``feature_ranking.csv``, ``cv_metrics.json``,
    ``roc.png``, ``confusion_matrix.csv`` and ``predicted_widths.csv`` (``dataset, image,
    width, source``: ``oof`` for labelled images -- their out-of-fold prediction -- and
    ``full_model`` for the others, scored by the model fitted on all labelled images).

    :param feature_paths: per-dataset Parquet tables of :func:`dipkit.features.dataset_features`,
        concatenated in this order (which is also the row order of ``predicted_widths.csv``).
    :param labels: ``{(dataset, image): widths}`` replacing the released Texture-DIP labels.
    :param multilabel: see :func:`labels_for`; with ``"duplicate"`` an image with several
        labels enters the (descriptive) feature ranking once, with its smallest width.
    :param pipeline_options: passed to :func:`make_pipeline` (via :func:`cross_validate`
        and :func:`fit_full`).
    :return: the ``cv_metrics.json`` content.
    """
    from dipkit.io import write_text

    out = Path(out_dir)
    df = _load_features(feature_paths)
    feats = _feature_columns(df)
    y = labels_for(df, variant=variant, multilabel=multilabel, labels=labels, label_datasets=label_datasets)
    if y.empty:
        raise ValueError("no labelled images among the feature tables")
    missing = [c for c in CLASSES if c not in set(y)]
    if missing:
        raise ValueError(f"no labelled image of width(s) {missing}; cannot train the one-vs-rest classifier")
    X = df.loc[y.index, feats]

    first = ~y.index.duplicated()
    ranking = rank_features(X[first], y[first], seed=seed)
    write_text(
        out / "feature_ranking.csv", ranking.to_csv(index=False, float_format="%.6g", lineterminator="\n")
    )

    cv = cross_validate(X, y, n_splits=n_splits, n_repeats=n_repeats, seed=seed, **pipeline_options)
    metrics = cv.to_json()
    metrics["settings"].update(
        {
            "variant": variant,
            "multilabel": multilabel,
            "label_datasets": list(label_datasets),
            "labels": "custom" if labels is not None else "texture_dip",
        }
    )
    metrics["feature_ranking"] = {
        "top": [
            {"feature": r.feature, "importance": float(r.importance), "rank": int(r.rank)}
            for r in ranking.head(20).itertuples()
        ],
        "paper_features": paper_feature_ranks(ranking, top=10),
    }
    plot_roc(cv, out / "roc.png")
    cm = pd.DataFrame(
        cv.confusion_matrix(), index=[str(c) for c in CLASSES], columns=[str(c) for c in CLASSES]
    )
    cm.index.name = "true\\predicted"
    write_text(out / "confusion_matrix.csv", cm.to_csv(lineterminator="\n"))

    pred = pd.Series(index=df.index, dtype="Int64")
    source = pd.Series(index=df.index, dtype=object)
    oof = cv.predicted()
    pred.loc[cv.ids] = oof
    source.loc[cv.ids] = "oof"
    rest = df.index[source.isna()]
    metrics["n_unlabelled_predicted"] = int(len(rest))
    if len(rest):
        model = fit_full(X, y, seed=seed, **pipeline_options)
        pred.loc[rest] = predict_widths(model, df.loc[rest, feats])
        source.loc[rest] = "full_model"
        metrics["full_model_hyperparameters"] = {
            k: (v if isinstance(v, (str, int)) else float(v)) for k, v in model.best_params_.items()
        }
    table = pd.DataFrame(
        {"dataset": df["dataset"], "image": df["image"], "width": pred.astype("int64"), "source": source}
    )
    write_text(out / "predicted_widths.csv", table.to_csv(index=False, lineterminator="\n"))
    write_text(out / "cv_metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics
