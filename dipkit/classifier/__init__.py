"""Width classifier: predict the hourglass width (32/64/128) of an image from its texture.

Sec. 3.3/4.4 and Fig. 11a of *The Devil is in the Upsampling* (Liu et al., ICCV 2023): GLCM
and radial-PSD texture features, a decision tree (CART) for feature selection, three SVMs
(one-vs-rest over the widths {32, 64, 128}), 5-fold cross-validation repeated 10 times and a
micro-average ROC AUC of **0.86** on Set9 + Set12 + CBSD68. The authors never released the
classifier code, so this package is the reference implementation of that description. Its
modules, one concept each, with their choices and where they go beyond the paper:

Labels (:mod:`.labels`: :func:`~.labels.labels_for`)
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

Features (:func:`.labels.feature_columns`)
    Every column of the feature tables except ``dataset, image, height, width, channels``
    (:data:`dipkit.features.META_COLUMNS`): image size and colour are dataset properties,
    not texture (all Set12 images are gray, and labelled 32 or 64 only).

Feature ranking and selection (:mod:`.selection`)
    :func:`~.selection.rank_features`: CART (``DecisionTreeClassifier(class_weight=
    "balanced")``, fixed ``random_state``) Gini importances, averaged over the trees fitted on
    the training part of every fold of a repeated stratified 5-fold split of *all* labelled
    images (a single tree on 86 images is unstable). This ranking is descriptive only
    (``feature_ranking.csv``, and whether the paper's three GLCM features are among the top
    picks); the cross-validated model never uses it -- its selection
    (:class:`~.selection.TreeImportanceSelector`) happens inside each training fold, so no
    test image influences which features are used to score it.

Model (:mod:`.model`: :func:`~.model.make_pipeline`)
    ``GridSearchCV(Pipeline([select, StandardScaler, OneVsRestClassifier(SVC)]))``:

    * ``select``: :class:`~.selection.TreeImportanceSelector`, the top-``k`` features by the
      importance of CART trees fitted on the training fold only (averaged over ``n_trees``
      bootstrap trees; ties broken by column order);
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

Cross-validation (:mod:`.cross_validation`: :func:`~.cross_validation.cross_validate`)
    ``RepeatedStratifiedKFold(5, 10)``. Every repeat gives an out-of-fold (OOF) score for
    every image; the micro-average AUC (all one-vs-rest decisions pooled) and macro-average
    AUC (mean of the per-class AUCs) are computed per repeat and reported as mean and
    standard deviation over repeats (:class:`~.cross_validation.CVResult`). ROC curves are
    the per-repeat curves averaged vertically on a common false-positive-rate grid
    (plotted by :mod:`.plots`). The predicted width of an image is the argmax of its OOF
    scores averaged over the repeats (every model that scored an image was trained without
    it); the confusion matrix and ``accuracy`` use that prediction. ``accuracy_per_repeat``
    and ``balanced_accuracy`` are given too, and the majority-class rate as a baseline (64 is
    two thirds of NoRepeat).

Unlabelled images (:func:`.model.fit_full`, :func:`.model.predict_widths`)
    PolyU, user datasets and labelled datasets' images without a label are never used for
    training; they are scored by the model refitted (with its own inner search) on all
    labelled images.

The stage (:mod:`.stage`: :func:`~.stage.run_classifier`)
    Ranks, cross-validates, fits on all labelled images, predicts the rest and writes each
    output to the path the ``classifier`` rule names (:class:`~.stage.ClassifierOutputs`).

Determinism
    Every random choice (folds, bootstrap trees, calibration folds) is seeded from ``seed``
    through :func:`dipkit.seeding.random_state`, and scikit-learn runs with ``n_jobs=1``, so
    equal inputs give equal outputs. The package imports neither torch nor snakemake.
"""
