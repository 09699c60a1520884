"""The width classes and the labelled rows the classifier learns from.

Which rows of the feature tables carry a Texture-DIP width label (:func:`labels_for`), which
columns are features (:func:`feature_columns`), and the checked ``(X, y)`` arrays, label-set
indicators and row groups (rows of one image with several labels) that the model
(:mod:`dipkit.classifier.model`) and the cross-validation
(:mod:`dipkit.classifier.cross_validation`) train and score on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from dipkit.features import META_COLUMNS
from dipkit.methods.widths import texture_labels

CLASSES: tuple[int, ...] = (32, 64, 128)
"""The width classes, in the order of every score column and matrix."""
LABEL_DATASETS: tuple[str, ...] = ("Set9", "Set12", "CBSD68")
"""Datasets whose images carry Texture-DIP labels."""
MULTILABEL_MODES: tuple[str, ...] = ("first", "drop", "duplicate")
"""What :func:`labels_for` does with an image of several labels."""


def feature_columns(df: pd.DataFrame) -> list[str]:
    """The feature columns of a feature table: all but :data:`dipkit.features.META_COLUMNS`."""
    return [c for c in df.columns if c not in META_COLUMNS]


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


def label_indicator(y) -> np.ndarray:
    """``[n, 3]`` boolean indicator of the widths (columns in :data:`CLASSES` order) of labels
    ``y`` (``[n]`` widths), or ``y`` itself as bool when it already is ``[n, 3]``."""
    ya = np.asarray(y)
    if ya.ndim == 2:
        return ya.astype(bool)
    return np.stack([ya == c for c in CLASSES], axis=1)


def training_arrays(X, y) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Checked training data: ``X`` as float64 ``[n, features]``, ``y`` as int64 ``[n]`` widths,
    and the feature names (``X``'s columns, or ``x0, x1, ...`` for an array).

    :raises ValueError: row counts differ, non-finite features, or labels outside :data:`CLASSES`.
    """
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


def row_groups(y, groups=None) -> np.ndarray | None:
    """Group number of every row (rows of one image share one), or ``None`` when every row is
    its own image: from ``groups`` when given, else from a repeated index of the Series ``y``
    (:func:`labels_for` with ``multilabel="duplicate"``)."""
    if groups is not None:
        return pd.factorize(pd.Index(groups))[0]
    if isinstance(y, pd.Series) and y.index.has_duplicates:
        return pd.factorize(y.index)[0]
    return None
