"""Figures of the report: PSNR-vs-iteration curves and a gallery of crops, per dataset and noise;
and :func:`save_figure`, which writes every figure dipkit makes (these, the experiments' and
the classifier's ROC)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from dipkit.io import atomic_path

#: Side of the square crops in the gallery (the centre of each image).
GALLERY_CROP = 96

#: Resolution of every PNG figure, dots per inch.
FIGURE_DPI = 150


def save_figure(fig, path: str | os.PathLike, *, trim: bool = True) -> None:
    """Write a matplotlib figure as a PNG (atomically) at :data:`FIGURE_DPI`, and close it.

    The PNG carries no ``Software`` tag, so its bytes depend on the drawing only.

    :param trim: crop the page to what is drawn (``bbox_inches="tight"``); False keeps the
        figure's own size (a figure laid out by ``tight_layout``).
    """
    extra = {"bbox_inches": "tight"} if trim else {}
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=FIGURE_DPI, metadata={"Software": None}, **extra)
    if fig.canvas.manager is not None:  # a pyplot figure: pyplot lets it go
        import matplotlib.pyplot as plt

        plt.close(fig)


def plot_psnr_curves(
    trajectories,
    dataset: str,
    noise: str,
    out_png: str | os.PathLike,
    method_order: Sequence[str] | None = None,
) -> dict:
    """PSNR of the smoothed output against the iteration, one line per method: the mean over
    the dataset's images, with a band from the lowest to the highest image.

    :param trajectories: the ``trajectories.parquet`` table (any subset of datasets/noises).
    :return: ``{method: number of images}`` plotted.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = trajectories[(trajectories["dataset"] == dataset) & (trajectories["noise"] == noise)]
    if df.empty:
        raise ValueError(f"no trajectories for dataset {dataset!r}, noise {noise!r}")
    methods = [m for m in (method_order or []) if m in set(df["method"])]
    methods += sorted(set(df["method"]) - set(methods))
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    counts = {}
    for method in methods:
        wide = df[df["method"] == method].pivot_table(index="iteration", columns="image", values="psnr_ema")
        counts[method] = wide.shape[1]
        mean = wide.mean(axis=1)
        line = ax.plot(mean.index, mean.values, lw=1.4, label=f"{method} ({wide.shape[1]} img)")[0]
        if wide.shape[1] > 1:
            ax.fill_between(
                wide.index, wide.min(axis=1), wide.max(axis=1), color=line.get_color(), alpha=0.18, lw=0
            )
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iteration")
    ax.set_ylabel("PSNR of the smoothed output (dB)")
    ax.set_title(f"{dataset}, {noise}: mean over images, band = min-max")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, out_png)
    return counts


def plot_gallery(
    clean: Mapping[str, np.ndarray],
    noisy: Mapping[str, np.ndarray],
    outputs: Mapping[str, Mapping[str, np.ndarray]],
    out_png: str | os.PathLike,
    title: str = "",
    crop: int = GALLERY_CROP,
) -> None:
    """Rows = images, columns = clean, noisy and each method's result: central crops.

    :param clean: ``{image: float [H, W, C] in [0, 1]}``.
    :param noisy: same keys.
    :param outputs: ``{method: {image: float [H, W, C]}}``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dipkit.metrics.reference import psnr

    images = list(clean)
    methods = list(outputs)
    cols = 2 + len(methods)
    # constrained layout keeps the title clear of the panels' labels, one row or many
    fig, axes = plt.subplots(
        len(images), cols, figsize=(1.9 * cols, 2.05 * len(images)), squeeze=False, layout="constrained"
    )

    def centre(a):
        h, w = a.shape[:2]
        s = min(crop, h, w)
        t, left = (h - s) // 2, (w - s) // 2
        a = np.clip(a[t : t + s, left : left + s], 0, 1)
        return a[:, :, 0] if a.shape[2] == 1 else a

    for r, image in enumerate(images):
        panels = [("clean", clean[image], None), ("noisy", noisy[image], psnr(clean[image], noisy[image]))]
        panels += [(m, outputs[m][image], psnr(clean[image], outputs[m][image])) for m in methods]
        for c, (label, arr, score) in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(centre(arr), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(label if score is None else f"{label}\n{score:.2f} dB", fontsize=8)
            if c == 0:
                ax.set_ylabel(image, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    save_figure(fig, out_png)


def gallery_from_files(
    prepared_npz: str,
    noisy_npz: str,
    images: Sequence[str],
    outputs: Mapping[str, Sequence[str]],
    out_png: str | os.PathLike,
    title: str = "",
    crop: int = GALLERY_CROP,
) -> None:
    """:func:`plot_gallery` from the pipeline's files: the prepared and noisy stacks and, per
    method, the fits' PNGs in the order of ``images``."""
    from PIL import Image

    from dipkit.images import to_float
    from dipkit.io import load_from_stack

    clean = {i: to_float(load_from_stack(prepared_npz, f"clean/{i}")) for i in images}
    noisy = {i: load_from_stack(noisy_npz, i).astype(np.float32) for i in images}

    def read(path):
        arr = np.asarray(Image.open(path), dtype=np.float32) / 255.0
        return arr[:, :, None] if arr.ndim == 2 else arr

    results = {m: {i: read(p) for i, p in zip(images, paths)} for m, paths in outputs.items()}
    plot_gallery(clean, noisy, results, out_png, title=title, crop=crop)
