"""The ``classifier`` stage: rank the features, cross-validate, fit on all labelled images,
predict the widths of the others, and write every output to the path the rule names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from dipkit.classifier.cross_validation import cross_validate
from dipkit.classifier.labels import CLASSES, LABEL_DATASETS, feature_columns, labels_for
from dipkit.classifier.model import fit_full, predict_widths
from dipkit.classifier.plots import plot_roc
from dipkit.classifier.selection import paper_feature_ranks, rank_features
from dipkit.io import write_text


@dataclass(frozen=True)
class ClassifierOutputs:
    """Where :func:`run_classifier` writes (each file atomically).

    :ivar metrics: ``cv_metrics.json``: :meth:`~dipkit.classifier.cross_validation.CVResult.to_json`
        plus the settings, the feature ranking's top and the full model's hyper-parameters.
    :ivar roc: ``roc.png`` (:func:`~dipkit.classifier.plots.plot_roc`).
    :ivar confusion: ``confusion_matrix.csv``, true (rows) by predicted (columns) width.
    :ivar ranking: ``feature_ranking.csv`` (:func:`~dipkit.classifier.selection.rank_features`).
    :ivar widths: ``predicted_widths.csv``: ``dataset, image, width, source``.
    """

    metrics: str | os.PathLike
    roc: str | os.PathLike
    confusion: str | os.PathLike
    ranking: str | os.PathLike
    widths: str | os.PathLike


def load_feature_tables(feature_paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """The per-dataset feature tables (:func:`dipkit.features.dataset_features`), concatenated
    in order.

    :raises ValueError: no table, tables with different columns, or an image in two tables.
    """
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
    outputs: ClassifierOutputs,
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

    Writes the files of ``outputs`` once everything is computed. ``predicted_widths.csv``
    (``dataset, image, width, source``) holds ``oof`` for labelled images -- their out-of-fold
    prediction -- and ``full_model`` for the others, scored by the model fitted on all
    labelled images.

    :param feature_paths: per-dataset Parquet tables of :func:`dipkit.features.dataset_features`,
        concatenated in this order (which is also the row order of ``predicted_widths.csv``).
    :param outputs: the path of every output file.
    :param labels: ``{(dataset, image): widths}`` replacing the released Texture-DIP labels.
    :param multilabel: see :func:`~dipkit.classifier.labels.labels_for`; with ``"duplicate"``
        an image with several labels enters the (descriptive) feature ranking once, with its
        smallest width.
    :param pipeline_options: passed to :func:`~dipkit.classifier.model.make_pipeline` (via
        :func:`~dipkit.classifier.cross_validation.cross_validate` and
        :func:`~dipkit.classifier.model.fit_full`).
    :return: the ``cv_metrics.json`` content.
    """
    df = load_feature_tables(feature_paths)
    feats = feature_columns(df)
    y = labels_for(df, variant=variant, multilabel=multilabel, labels=labels, label_datasets=label_datasets)
    if y.empty:
        raise ValueError("no labelled images among the feature tables")
    missing = [c for c in CLASSES if c not in set(y)]
    if missing:
        raise ValueError(f"no labelled image of width(s) {missing}; cannot train the one-vs-rest classifier")
    X = df.loc[y.index, feats]

    first = ~y.index.duplicated()
    ranking = rank_features(X[first], y[first], seed=seed)

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
    cm = pd.DataFrame(
        cv.confusion_matrix(), index=[str(c) for c in CLASSES], columns=[str(c) for c in CLASSES]
    )
    cm.index.name = "true\\predicted"

    pred = pd.Series(index=df.index, dtype="Int64")
    source = pd.Series(index=df.index, dtype=object)
    pred.loc[cv.ids] = cv.predicted()
    source.loc[cv.ids] = "oof"
    rest = df.index[source.isna()]
    metrics["n_unlabelled_predicted"] = len(rest)
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

    write_text(outputs.ranking, ranking.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    plot_roc(cv, outputs.roc)
    write_text(outputs.confusion, cm.to_csv(lineterminator="\n"))
    write_text(outputs.widths, table.to_csv(index=False, lineterminator="\n"))
    write_text(outputs.metrics, json.dumps(metrics, indent=2) + "\n")
    return metrics
