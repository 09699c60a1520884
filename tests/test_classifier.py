"""Width classifier: labels, feature ranking, in-fold selection, repeated CV, outputs."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
from conftest import synthetic_image
from sklearn.base import clone

from dipkit.classifier.cross_validation import cross_validate
from dipkit.classifier.labels import CLASSES, labels_for
from dipkit.classifier.model import fit_full, predict_scores, predict_widths
from dipkit.classifier.plots import plot_roc
from dipkit.classifier.selection import (
    ImportanceMemo,
    TreeImportanceSelector,
    paper_feature_ranks,
    rank_features,
    select_features,
)
from dipkit.classifier.stage import ClassifierOutputs, run_classifier
from dipkit.features import META_COLUMNS, PAPER_FEATURES, image_features
from dipkit.io import write_parquet

FAST = dict(k=(5, 10), kernels=("rbf", "linear"), C=(0.1, 1.0))


def _texture_image(cls: int, seed: int, size: int = 48) -> np.ndarray:
    """Class 0 smooth, 1 medium, 2 fine texture (noise + stripes of rising frequency)."""
    rng = np.random.default_rng(seed)
    img = synthetic_image(size, size, 1, seed=seed).astype(np.float64)
    sigma = (0.01, 0.05, 0.12)[cls] * rng.uniform(0.7, 1.3)
    freq = (0.04, 0.12, 0.3)[cls] * rng.uniform(0.85, 1.15)
    x = np.arange(size)[None, :, None]
    img = img + 0.1 * np.sin(2 * np.pi * freq * x + rng.uniform(0, 6.3))
    img = img + sigma * rng.standard_normal(img.shape)
    return np.clip(img, 0, 1)


@pytest.fixture(scope="module")
def synthetic_table() -> pd.DataFrame:
    """45 images, 15 per class; dataset 'Toy', image ids t00..t44, widths 32/64/128 by class."""
    rows = []
    for i in range(45):
        cls = i % 3
        feats = image_features(_texture_image(cls, seed=100 + i), psd_bins=16)
        rows.append(
            {
                "dataset": "Toy",
                "image": f"t{i:02d}",
                "height": 48,
                "width": 48,
                "channels": 1,
                "_width": CLASSES[cls],
                **feats,
            }
        )
    return pd.DataFrame(rows)


def _xy(table):
    X = table.drop(columns=[*META_COLUMNS, "_width"])
    y = pd.Series(table["_width"].to_numpy(), index=table.index, name="width")
    return X, y


def test_labels_for_uses_the_released_table():
    df = pd.DataFrame(
        {
            "dataset": ["Set12", "CBSD68", "CBSD68", "PolyU", "Mine", "Set9"],
            "image": ["01", "16077", "3096", "x", "01", "kodim01"],
        },
        index=[10, 11, 12, 13, 14, 15],
    )
    y = labels_for(df)
    assert y.to_dict() == {10: 32, 11: 128, 12: 32, 15: 128}
    assert y.dtype == np.int64 and y.name == "width"
    # wRepeat: CBSD68 16077 is labelled 64 and 128
    assert labels_for(df, "wRepeat", multilabel="first").loc[11] == 64
    assert 11 not in labels_for(df, "wRepeat", multilabel="drop").index
    dup = labels_for(df, "wRepeat", multilabel="duplicate")
    assert dup.loc[11].tolist() == [64, 128] and dup.index.has_duplicates
    # injected labels; only rows of the label datasets count
    custom = labels_for(df, labels={("Mine", "01"): 64, ("PolyU", "x"): (32,)}, label_datasets=None)
    assert custom.to_dict() == {13: 32, 14: 64}
    assert labels_for(df, labels={("Mine", "01"): 64}).empty
    with pytest.raises(ValueError):
        labels_for(df, multilabel="vote")
    with pytest.raises(ValueError):
        labels_for(df, labels={("Set12", "01"): 48})


def test_rank_and_select_features():
    rng = np.random.default_rng(0)
    y = np.repeat(CLASSES, 12)
    X = pd.DataFrame(rng.standard_normal((36, 8)), columns=[f"f{i}" for i in range(8)])
    X["signal"] = np.log2(y) + 0.1 * rng.standard_normal(36)
    ranking = rank_features(X, y, seed=1, n_repeats=2)
    assert list(ranking.columns) == [
        "feature",
        "importance",
        "importance_std",
        "full_tree_importance",
        "rank",
    ]
    assert ranking["rank"].tolist() == list(range(1, 10))
    assert ranking.iloc[0]["feature"] == "signal"
    assert ranking["importance"].sum() == pytest.approx(1.0)
    pd.testing.assert_frame_equal(ranking, rank_features(X, y, seed=1, n_repeats=2))
    assert select_features(ranking, k=1) == ["signal"]
    assert select_features(ranking, threshold=0.5) == ["signal"]
    assert set(select_features(ranking)) == set(ranking.loc[ranking["importance"] > 0, "feature"])
    info = paper_feature_ranks(ranking)
    assert set(info["features"]) == set(PAPER_FEATURES) and info["n_in_top"] == 0
    assert info["features"][PAPER_FEATURES[0]]["rank"] is None


def test_tree_selector_keeps_top_k_by_training_importance():
    rng = np.random.default_rng(1)
    y = np.repeat(CLASSES, 10)
    X = rng.standard_normal((30, 6))
    X[:, 4] = np.log2(y)
    sel = TreeImportanceSelector(k=2, random_state=0).fit(X, y)
    assert sel.get_support().sum() == 2 and sel.get_support()[4]
    assert sel.transform(X).shape == (30, 2)
    bag = TreeImportanceSelector(k=1, n_trees=5, random_state=0).fit(X, y)
    assert bag.get_support(indices=True).tolist() == [4]


def test_importance_memo_serves_one_search(synthetic_table):
    X, y = _xy(synthetic_table)
    Xa, ya = X.to_numpy(np.float64), y.to_numpy()
    memo = ImportanceMemo()
    shared = TreeImportanceSelector(k=3, n_trees=4, random_state=5, memo=memo).fit(Xa, ya)
    plain = TreeImportanceSelector(k=3, n_trees=4, random_state=5).fit(Xa, ya)
    np.testing.assert_array_equal(shared.importances_, plain.importances_)
    assert len(memo) == 1 and clone(shared).memo is memo  # the clones of a grid search share it
    # the trees are fitted once per training fold (3 inner folds + the refit), not per candidate (8)
    model = fit_full(X, y, seed=0, inner_splits=3, **FAST)
    search_memo = model.estimator.named_steps["select"].memo
    assert len(search_memo) == 4 and model.best_estimator_.named_steps["select"].memo is search_memo
    again = pickle.loads(pickle.dumps(model))  # the cached denoise model pickles without it
    assert len(again.best_estimator_.named_steps["select"].memo) == 0
    np.testing.assert_array_equal(predict_scores(again, X), predict_scores(model, X))


def test_cross_validate_end_to_end(synthetic_table, tmp_path):
    X, y = _xy(synthetic_table)
    cv = cross_validate(X, y, n_splits=3, n_repeats=2, seed=0, **FAST)
    assert cv.scores.shape == (2, 45, 3) and np.isfinite(cv.scores).all()
    assert cv.ids == list(X.index)
    micro, macro = cv.micro_auc_per_repeat(), cv.macro_auc_per_repeat()
    assert micro.shape == (2,) and micro.mean() > 0.85 and macro.mean() > 0.85
    pred = cv.predicted()
    assert pred.shape == (45,) and set(pred) <= set(CLASSES)
    m = cv.confusion_matrix()
    assert m.sum() == 45 and m.sum(axis=1).tolist() == [15, 15, 15]
    assert cv.accuracy() == pytest.approx(np.trace(m) / 45)
    assert len(cv.fold_params) == len(cv.fold_features) == 6
    assert all(len(f) in (5, 10) for f in cv.fold_features)

    j = cv.to_json()
    for key in (
        "micro_auc",
        "macro_auc",
        "class_auc",
        "accuracy",
        "confusion_matrix",
        "n_images",
        "n_features",
        "selected_features",
        "hyperparameters",
        "settings",
        "paper_micro_auc",
        "balanced_accuracy",
    ):
        assert key in j
    assert j["paper_micro_auc"] == 0.86
    assert len(j["micro_auc"]["per_repeat"]) == 2
    assert j["confusion_matrix"]["order"] == [32, 64, 128]
    assert j["n_images"] == 45 and j["n_features"] == X.shape[1]
    assert j["settings"]["n_splits"] == 3 and j["settings"]["n_repeats"] == 2
    json.dumps(j)  # serialisable

    curves = cv.roc_curves()
    assert set(curves) == {"32", "64", "128", "micro", "macro"}
    for fpr, tpr in curves.values():
        assert (
            fpr[0] == 0 and fpr[-1] == 1 and tpr[0] == 0 and tpr[-1] == 1 and np.all(np.diff(tpr) >= -1e-12)
        )
    png = tmp_path / "roc.png"
    plot_roc(cv, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    # deterministic given the seed
    again = cross_validate(X, y, n_splits=3, n_repeats=2, seed=0, **FAST)
    np.testing.assert_array_equal(again.scores, cv.scores)


def test_selection_happens_inside_the_folds():
    # pure noise: 150 features, random labels. Selecting the features on all images first would
    # find some that fit the labels by chance and give an optimistic AUC; in-fold selection does not.
    rng = np.random.default_rng(7)
    X = rng.standard_normal((45, 150))
    y = np.tile(CLASSES, 15)
    cv = cross_validate(X, y, n_splits=3, n_repeats=2, seed=0, k=(5,), kernels=("linear",), C=(1.0,))
    assert cv.micro_auc_per_repeat().mean() < 0.68
    leaky = rank_features(pd.DataFrame(X), y, seed=0, n_repeats=1)
    top = [int(c) for c in select_features(leaky, k=5)]
    leaky_cv = cross_validate(
        X[:, top], y, n_splits=3, n_repeats=2, seed=0, k=(5,), kernels=("linear",), C=(1.0,)
    )
    assert leaky_cv.micro_auc_per_repeat().mean() > cv.micro_auc_per_repeat().mean()


def test_duplicated_labels_share_folds_and_count_as_label_sets(synthetic_table):
    X, y = _xy(synthetic_table.iloc[:30])
    # images 0 and 1 get a second label: rows repeat, as labels_for(multilabel="duplicate") gives
    extra = pd.Series([64, 128], index=[0, 1], name="width")
    y2 = pd.concat([y, extra]).sort_index(kind="stable")
    X2 = X.loc[y2.index]
    cv = cross_validate(X2, y2, n_splits=3, n_repeats=1, seed=0, **FAST)
    assert cv.scores.shape == (1, 30, 3)
    assert cv.ids == list(range(30))
    assert cv.y_true[0].tolist() == [True, True, False] and cv.y_true[1].tolist() == [False, True, True]
    assert cv.to_json()["n_multilabel_images"] == 2
    assert cv.settings["grouped"] is True
    assert cv.confusion_matrix().sum() == 30


def test_fit_full_and_predict_widths(synthetic_table):
    X, y = _xy(synthetic_table)
    model = fit_full(X.iloc[:36], y.iloc[:36], seed=0, **FAST)
    assert model.feature_names_ == list(X.columns)
    shuffled = X.iloc[36:, ::-1]  # columns are matched by name
    pred = predict_widths(model, shuffled)
    assert pred.dtype == np.int64 and pred.shape == (9,)
    assert (pred == y.iloc[36:].to_numpy()).mean() >= 0.6
    assert predict_scores(model, X.iloc[36:]).shape == (9, 3)
    with pytest.raises(ValueError):
        predict_widths(model, X.iloc[36:, :5])


def test_run_classifier_writes_every_output(synthetic_table, tmp_path):
    table = synthetic_table
    labels = {("Toy", img): int(w) for img, w in zip(table["image"], table["_width"])}
    labels.pop(("Toy", "t44"))  # a labelled dataset's image without a label
    toy = table.drop(columns="_width")
    paths = [tmp_path / "Toy.parquet", tmp_path / "User.parquet"]
    write_parquet(paths[0], toy.iloc[:40])
    user = toy.iloc[40:].assign(dataset="User")
    write_parquet(paths[1], user)
    labels[("User", "t40")] = 32  # ignored: User is no label dataset

    def outputs(root):
        # the caller names every file (the rule passes its outputs); none is chosen by the code
        return ClassifierOutputs(
            metrics=root / "m" / "metrics.json",
            roc=root / "fig" / "curves.png",
            confusion=root / "cm.csv",
            ranking=root / "rank.csv",
            widths=root / "w" / "widths.csv",
        )

    def run(root):
        return run_classifier(
            paths,
            outputs(root),
            n_splits=3,
            n_repeats=1,
            seed=3,
            labels=labels,
            label_datasets=("Toy",),
            **FAST,
        )

    a = outputs(tmp_path / "a")
    metrics = run(tmp_path / "a")
    written = sorted(str(p.relative_to(tmp_path / "a")) for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert written == ["cm.csv", "fig/curves.png", "m/metrics.json", "rank.csv", "w/widths.csv"]
    on_disk = json.loads(a.metrics.read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    assert on_disk["n_images"] == 40 and on_disk["n_unlabelled_predicted"] == 5
    assert on_disk["settings"]["labels"] == "custom" and on_disk["settings"]["variant"] == "NoRepeat"
    assert set(on_disk["feature_ranking"]["paper_features"]["features"]) == set(PAPER_FEATURES)
    assert a.roc.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pred = pd.read_csv(a.widths, dtype={"image": str})
    assert list(pred.columns) == ["dataset", "image", "width", "source"]
    assert len(pred) == 45 and set(pred["width"]) <= set(CLASSES)
    assert pred["source"].tolist() == ["oof"] * 40 + ["full_model"] * 5
    assert pred.loc[pred["source"] == "full_model", "image"].tolist() == ["t40", "t41", "t42", "t43", "t44"]
    cm = pd.read_csv(a.confusion, index_col=0)
    assert list(cm.columns) == ["32", "64", "128"] and int(cm.values.sum()) == 40
    ranking = pd.read_csv(a.ranking)
    assert len(ranking) == toy.shape[1] - len(META_COLUMNS)
    # deterministic given the seed
    run(tmp_path / "b")
    b = outputs(tmp_path / "b")
    for name in ("metrics", "widths", "confusion", "ranking"):
        assert getattr(b, name).read_bytes() == getattr(a, name).read_bytes()


def test_run_classifier_needs_every_width(synthetic_table, tmp_path):
    toy = synthetic_table.drop(columns="_width")
    write_parquet(tmp_path / "t.parquet", toy)
    with pytest.raises(ValueError, match="width"):
        run_classifier(
            [tmp_path / "t.parquet"],
            ClassifierOutputs(*(tmp_path / n for n in ("m.json", "r.png", "c.csv", "k.csv", "w.csv"))),
            labels={("Toy", "t00"): 32},
            label_datasets=("Toy",),
        )
    assert list(tmp_path.iterdir()) == [tmp_path / "t.parquet"]  # nothing written


@pytest.mark.parametrize(
    "options",
    [dict(calibration="sigmoid"), dict(class_weight=None, scoring="macro"), dict(n_trees=1)],
    ids=["calibrated", "unweighted-macro", "single-tree"],
)
def test_pipeline_options(synthetic_table, options):
    X, y = _xy(synthetic_table)
    cv = cross_validate(
        X, y, n_splits=3, n_repeats=1, seed=0, k=(5,), kernels=("linear",), C=(1.0,), **options
    )
    assert cv.micro_auc_per_repeat()[0] > 0.85
    for name, value in options.items():
        assert cv.settings[name] == value
    if options.get("calibration"):
        assert np.all((cv.scores >= 0) & (cv.scores <= 1))
        np.testing.assert_allclose(cv.scores.sum(axis=2), 1.0)
    with pytest.raises(TypeError):
        cross_validate(X, y, n_repeats=1, bogus=1)


def test_tiny_classes_missing_from_training_folds(synthetic_table):
    # two images of width 128 and a 2-fold split: inner training folds lack the class
    X, y = _xy(synthetic_table)
    keep = list(y[y != 128].index[:20]) + list(y[y == 128].index[:2])
    with pytest.warns(UserWarning):
        cv = cross_validate(X.loc[keep], y.loc[keep], n_splits=2, n_repeats=1, seed=0, **FAST)
    assert np.isfinite(cv.scores).all() and cv.scores.shape == (1, 22, 3)
    assert np.isfinite(cv.micro_auc_per_repeat()).all()
