"""Feature ranking and selection by CART (decision tree) importances.

:func:`rank_features` is the descriptive ranking over all labelled images
(``feature_ranking.csv``); :class:`TreeImportanceSelector` is the pipeline step that selects
features inside every training fold, so no test image influences the selection.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.model_selection import RepeatedStratifiedKFold
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.validation import check_is_fitted, check_X_y

from dipkit.features import PAPER_FEATURES
from dipkit.seeding import random_state


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

    :param X: ``[n, features]`` (DataFrame: its columns name the features).
    :param y: ``[n]`` widths.
    :return: columns ``feature, importance, importance_std, full_tree_importance, rank``
        sorted by rank (1 = most important; ties keep the column order).
    """
    names = list(X.columns) if isinstance(X, pd.DataFrame) else [f"x{i}" for i in range(np.shape(X)[1])]
    Xa = np.asarray(X, dtype=np.float64)
    ya = np.asarray(y)
    imps = []
    splitter = RepeatedStratifiedKFold(
        n_splits=n_splits, n_repeats=n_repeats, random_state=random_state(seed, "classifier", "rank")
    )
    for i, (train, _) in enumerate(splitter.split(Xa, ya)):
        tree = _tree(random_state(seed, "classifier", "rank-tree", i))
        imps.append(tree.fit(Xa[train], ya[train]).feature_importances_)
    imps = np.array(imps)
    full = _tree(random_state(seed, "classifier", "rank-full")).fit(Xa, ya).feature_importances_
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


def tree_importances(
    X: np.ndarray, y: np.ndarray, n_trees: int, max_depth: int | None, seed: int
) -> np.ndarray:
    """``[features]`` mean Gini importances of ``n_trees`` CART trees on ``X`` ``[n, features]``
    and ``y`` ``[n]``: one tree on all rows when ``n_trees == 1``, else trees on bootstrap
    samples drawn with ``seed``."""
    n, p = X.shape
    rng = np.random.default_rng(seed)
    imps = np.zeros(p)
    for t in range(n_trees):
        rows = np.arange(n) if n_trees == 1 else rng.integers(0, n, n)
        tree = _tree((seed + t) % (2**32), max_depth)
        imps += tree.fit(X[rows], y[rows]).feature_importances_
    imps /= n_trees
    return imps


class ImportanceMemo:
    """The tree importances one model search has computed, by training rows and tree settings.

    A grid search refits the selector on the same training rows for every candidate (18 with
    the default grid) and the trees do not depend on ``k``, so
    :func:`~dipkit.classifier.model.make_pipeline` gives each pipeline one memo and the trees
    are fitted once per training fold. The memo lives as long as its pipeline: the clones
    ``GridSearchCV`` makes share it (``copy.deepcopy`` returns the memo itself), and it pickles
    empty. Results are the same without it; on the 86 NoRepeat images a cross-validation takes
    2.4x to 2.9x as long without it.
    """

    def __init__(self) -> None:
        self._values: dict[tuple, np.ndarray] = {}

    def __deepcopy__(self, memo: dict) -> ImportanceMemo:
        return self

    def __reduce__(self):
        return (ImportanceMemo, ())

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"ImportanceMemo({len(self._values)} entries)"

    def importances(
        self, X: np.ndarray, y: np.ndarray, n_trees: int, max_depth: int | None, seed: int
    ) -> np.ndarray:
        """:func:`tree_importances`, computed once per distinct arguments (a copy is returned)."""
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
        if key not in self._values:
            self._values[key] = tree_importances(X, y, n_trees, max_depth, seed)
        return self._values[key].copy()


class TreeImportanceSelector(SelectorMixin, BaseEstimator):
    """Keep the ``k`` features most important to CART trees fitted on the training data.

    A pipeline step, so the selection is refitted inside every (outer and inner) training
    fold. ``n_trees == 1``: one tree on all rows; more: the mean importance of trees fitted
    on bootstrap samples (a more stable ranking). Ties (e.g. features no tree used) keep
    the column order. ``memo``: an :class:`ImportanceMemo` shared by the selectors of one
    search (``None``: compute every time; same result).
    """

    def __init__(
        self,
        k: int = 10,
        n_trees: int = 1,
        max_depth: int | None = None,
        random_state: int = 0,
        memo: ImportanceMemo | None = None,
    ):
        self.k = k
        self.n_trees = n_trees
        self.max_depth = max_depth
        self.random_state = random_state
        self.memo = memo

    def fit(self, X, y):
        """Rank the columns of ``X`` ``[n, features]`` for the widths ``y`` ``[n]``; keep the top ``k``."""
        X, y = check_X_y(X, y, multi_output=True)
        p = X.shape[1]
        self.n_features_in_ = p
        args = (X, y, int(self.n_trees), self.max_depth, int(self.random_state))
        self.importances_ = tree_importances(*args) if self.memo is None else self.memo.importances(*args)
        order = np.lexsort((np.arange(p), -self.importances_))
        self.support_ = np.zeros(p, dtype=bool)
        self.support_[order[: min(int(self.k), p)]] = True
        return self

    def _get_support_mask(self):
        check_is_fitted(self, "support_")
        return self.support_
