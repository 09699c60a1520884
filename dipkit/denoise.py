"""The paper's method as a tool: denoise one image of any size (``dipkit denoise``).

Steps: estimate the noise level (unless given); predict the hourglass width from the
image's texture with the SVM width classifier trained on the released Texture-DIP labels
(trained once from the shipped feature table and cached; no download needed); pad the
image to the network's multiple; fit; crop back to the original size.

The classifier learned texture from *clean* images, so the width is predicted from a lightly
denoised copy (total-variation denoising with a weight proportional to the noise level),
not from the noisy pixels, whose noise would read as fine texture.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dipkit.images import ImageError

log = logging.getLogger(__name__)

#: Features of the labelled clean images (Set9, Set12, CBSD68), from :func:`reference_features`.
REFERENCE_FEATURES = Path(__file__).parent / "data" / "texture_features.csv"
#: Bumped when the cached classifier must be retrained.
CLASSIFIER_CACHE_VERSION = 2  # 2: the pickled classes moved into the dipkit.classifier package
#: Smallest side accepted (texture features and noise estimation need a few pixels).
MIN_SIDE = 8
#: The early-stopping rule ``dipkit denoise`` uses by default (chosen from the study in
#: ``docs/early-stopping.md``); ``--iterations`` is then a cap.
DEFAULT_EARLY_STOP = "whiteness"
#: How often (iterations) the fit checks whether the rule has fired (one host sync each).
EARLY_STOP_POLL = 25


def estimate_sigma(img: np.ndarray) -> float:
    """Gaussian noise level of a float ``[H, W, C]`` image in ``[0, 1]``, on the 0-255 scale.

    Donoho's robust estimator on the finest diagonal Haar detail coefficients
    (``median(|HH|) / 0.6745``), averaged over channels; numpy only.
    """
    a = np.asarray(img, np.float64)
    h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
    a = a[:h, :w]
    hh = (a[0::2, 0::2] - a[0::2, 1::2] - a[1::2, 0::2] + a[1::2, 1::2]) / 2.0
    sigmas = [np.median(np.abs(hh[:, :, c])) / 0.6745 for c in range(hh.shape[2])]
    return float(np.mean(sigmas)) * 255.0


def reference_features(datasets_dir: str | os.PathLike, out_path: str | os.PathLike | None = None):
    """Texture features of every labelled clean image, from a folder ``<dir>/<dataset>/<file>``
    (e.g. the offline mirror); writes :data:`REFERENCE_FEATURES` when ``out_path`` is given."""
    import pandas as pd

    from dipkit.classifier.labels import LABEL_DATASETS
    from dipkit.features import features_from_files
    from dipkit.io import write_text
    from dipkit.manifest import builtin_datasets

    frames = []
    for name in LABEL_DATASETS:
        files = [f for f in builtin_datasets()[name] if f.role == "clean"]
        frames.append(features_from_files(files, Path(datasets_dir) / name, None))
    df = pd.concat(frames, ignore_index=True)
    if out_path is not None:
        write_text(out_path, df.to_csv(index=False, float_format="%.17g", lineterminator="\n"))
    return df


def _cache_dir() -> Path:
    root = os.environ.get("DIPKIT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "dipkit"
    )
    return Path(root)


def width_classifier(cache_dir: str | os.PathLike | None = None):
    """The width classifier fitted on all released NoRepeat labels, from the cache or trained now.

    The cache file's name holds a hash of the feature table, the scikit-learn version and
    :data:`CLASSIFIER_CACHE_VERSION`, so a change of any retrains it.
    """
    import pandas as pd
    import sklearn

    from dipkit.classifier.labels import feature_columns, labels_for
    from dipkit.classifier.model import fit_full
    from dipkit.io import atomic_path

    data = REFERENCE_FEATURES.read_bytes()
    key = hashlib.sha256(data + f"|{sklearn.__version__}|{CLASSIFIER_CACHE_VERSION}".encode()).hexdigest()[
        :16
    ]
    path = Path(cache_dir or _cache_dir()) / f"width_classifier-{key}.pkl"
    if path.exists():
        try:
            with open(path, "rb") as fh:
                return pickle.load(fh)
        except Exception as err:  # a damaged cache is rebuilt, never trusted
            log.warning("ignoring unreadable classifier cache %s (%s)", path, err)
    df = pd.read_csv(REFERENCE_FEATURES, dtype={"dataset": str, "image": str})
    y = labels_for(df)
    model = fit_full(df.loc[y.index, feature_columns(df)], y, seed=0)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        pickle.dump(model, fh)
    return model


def predict_width(noisy: np.ndarray, sigma: float, cache_dir=None) -> tuple[int, dict[int, float]]:
    """Width (32, 64 or 128) for a noisy float ``[H, W, C]`` image with noise level ``sigma``
    (0-255), and the class scores."""
    import pandas as pd
    from skimage.restoration import denoise_tv_chambolle

    from dipkit.classifier.labels import CLASSES
    from dipkit.classifier.model import predict_scores
    from dipkit.features import image_features

    smooth = denoise_tv_chambolle(
        np.asarray(noisy, np.float64), weight=max(sigma, 1.0) / 255.0 * 2.0, channel_axis=-1
    )
    feats = image_features(np.clip(smooth, 0, 1))
    scores = predict_scores(width_classifier(cache_dir), pd.DataFrame([feats]))[0]
    return int(CLASSES[int(np.argmax(scores))]), {int(c): float(s) for c, s in zip(CLASSES, scores)}


def _pad_to(img: np.ndarray, multiple: int, smallest: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Mirror-pad ``[H, W, C]`` at the bottom and right to sides that are multiples of
    ``multiple`` and at least ``smallest``; returns the padded image and the original (H, W)."""
    h, w = img.shape[:2]
    th = max(smallest, -(-h // multiple) * multiple)
    tw = max(smallest, -(-w // multiple) * multiple)
    out = img
    while out.shape[0] < th or out.shape[1] < tw:  # "symmetric" pads at most one size per pass
        ph, pw = min(th - out.shape[0], out.shape[0]), min(tw - out.shape[1], out.shape[1])
        out = np.pad(out, ((0, ph), (0, pw), (0, 0)), mode="symmetric")
    return out, (h, w)


def denoising_methods() -> list[str]:
    """The registered methods :func:`denoise` runs: DIP networks fitted by :mod:`dipkit.fit`."""
    from dipkit.methods import METHODS

    return [name for name, m in METHODS.items() if m.kind == "dip"]


def method_problem(method: str, width: int | None = None) -> tuple[str, str] | None:
    """What is wrong with running :func:`denoise` with ``method`` (and ``width``): ``(argument,
    message)``, e.g. ``("method", "unknown method; choose one of ours, dip, ...")``, or None."""
    from dipkit.methods import METHODS

    choices = ", ".join(denoising_methods())
    if method not in METHODS:
        return "method", f"unknown method; choose one of {choices}"
    if METHODS[method].kind != "dip":
        kind = METHODS[method].kind
        return "method", f"a {kind} method, not a DIP network dipkit fits; choose one of {choices}"
    if width is not None and "width" not in METHODS[method].arch_options:
        takes = ", ".join(m for m in denoising_methods() if "width" in METHODS[m].arch_options)
        return "width", f"method {method} has no width option (methods with one: {takes})"
    return None


@contextlib.contextmanager
def _explain_out_of_memory(img: np.ndarray, method: str, width: int | None, device):
    """Turn running out of memory on the GPU or the CPU into one
    :class:`~dipkit.fit.FitOutOfMemoryError` line naming the image size, method, width and device,
    and what to try."""
    from dipkit.fit import FitOutOfMemoryError
    from dipkit.fit.device import is_out_of_memory, out_of_memory_detail

    try:
        yield
    except Exception as err:
        if not (isinstance(err, FitOutOfMemoryError) or is_out_of_memory(err)):
            raise
        detail = getattr(err, "detail", None) or out_of_memory_detail(err)
        tries = ["a smaller --width (32 needs the least memory)"] if width and int(width) > 32 else []
        tries.append("a smaller image (crop or downscale it)")
        on_gpu = device.type == "cuda"
        tries.append("a GPU with more memory" if on_gpu else "more memory (a larger machine, or a GPU)")
        exc = FitOutOfMemoryError(
            f"out of memory denoising a {img.shape[1]}x{img.shape[0]} image with method {method}"
            + (f" at width {width}" if width else "")
            + f" on {device} ({detail}); try {', '.join(tries[:-1])} or {tries[-1]}"
        )
        exc.detail = detail
        raise exc from None


def denoise(
    noisy: np.ndarray,
    *,
    method: str = "ours",
    width: int | None = None,
    sigma: float | None = None,
    iterations: int | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: Callable[[int, float | None], None] | None = None,
    cache_dir=None,
    early_stop: str = DEFAULT_EARLY_STOP,
    clean: np.ndarray | None = None,
    stop_params=None,
    full_length: bool = False,
) -> dict:
    """Denoise one image with a DIP method (default: the paper's 2-level hourglass).

    :param noisy: float ``[H, W, C]`` image in ``[0, 1]``, C = 1 or 3, any size of at least
        one pixel (padded to the network's multiple, cropped back afterwards).
    :param method: a registered method fitted by the engine (``ours``, ``dip``, ``deep_decoder``, ...).
    :param width: network width; ``None`` predicts it from texture (methods with a width).
    :param sigma: noise level on the 0-255 scale; ``None`` estimates it. It selects the input
        perturbation (1/30 up to 25, 1/20 above, as the paper's code) and the smoothing of
        the width prediction.
    :param iterations: Adam steps (default: the method's, 3000); with ``early_stop`` a cap.
    :param early_stop: a rule of :mod:`dipkit.fit.stopping` that ends the fit and picks the
        output (default :data:`DEFAULT_EARLY_STOP`), or ``"off"`` to run every iteration and
        return the paper's final output.
    :param clean: the ground truth ``[H, W, C]``, for studies only: the fit is unchanged, and
        the returned ``fit`` carries PSNR/SSIM trajectories and every rule's scores.
    :param stop_params: :class:`dipkit.fit.stopping.StopParams` (default: the defaults).
    :param full_length: run every iteration even after the rule fired (studies: the oracle
        peak needs the whole trajectory). The returned output is the same: a rule's state is
        frozen once it fires.
    :return: dict with ``output`` (float32 ``[H, W, C]``), ``width``, ``width_source``,
        ``sigma``, ``sigma_source``, ``device``, ``seconds``, ``iterations`` (the cap),
        ``iterations_run``, ``method``, ``early_stop``, ``stop`` (the rule's
        :class:`~dipkit.fit.stopping.StopRecord`, None when off) and ``fit`` (the
        :class:`~dipkit.fit.FitResult`, outputs at the padded size).
    """
    from dipkit.architectures import size_rule
    from dipkit.fit import select_device
    from dipkit.methods import fit_spec, get_method
    from dipkit.runner import run_fit

    img = np.asarray(noisy, np.float32)
    if img.ndim != 3 or img.shape[2] not in (1, 3):
        raise ImageError(f"expected an [H, W, C] image with 1 or 3 channels, got shape {img.shape}")
    if min(img.shape[:2]) < MIN_SIDE:
        raise ImageError(
            f"image of {img.shape[1]}x{img.shape[0]} pixels is too small (at least {MIN_SIDE}x{MIN_SIDE})"
        )
    problem = method_problem(method, width)
    if problem:
        raise ValueError(f"{problem[0]} {({'method': method, 'width': width})[problem[0]]!r}: {problem[1]}")
    if sigma is None:
        sigma, sigma_source = estimate_sigma(img), "estimated"
        if not sigma > 0:
            raise ValueError(
                "the estimated noise level is 0 (the image looks noise-free or flat); give it with --sigma"
            )
    else:
        sigma, sigma_source = float(sigma), "given"
        if not 0 < sigma < float("inf"):
            raise ValueError(f"sigma must be a finite number > 0 on the 0-255 scale, got {sigma}")
    dev = select_device(device)  # a bad device name fails here, before any work
    base = get_method(method)
    overrides: dict = {}
    width_source = None
    if "width" in base.arch_options:
        if width is None:
            with _explain_out_of_memory(img, method, None, dev):
                width, scores = predict_width(img, sigma, cache_dir)
            width_source = "predicted (" + ", ".join(f"{c}: {s:.2f}" for c, s in scores.items()) + ")"
        else:
            width_source = "given"
        overrides["width"] = int(width)
    m = get_method(method, overrides)
    noise_id = f"gaussian{max(1, round(sigma))}"
    spec = fit_spec(m, "custom", "image", noise_id, {"iterations": iterations, "early_stop": early_stop})
    rule = size_rule(m.architecture, m.arch_options)
    multiple, smallest = rule if rule else (32, 64)
    padded, (h, w) = _pad_to(img, multiple, smallest)
    truth = None if clean is None else _pad_to(np.asarray(clean, np.float32), multiple, smallest)[0]
    poll = 0 if early_stop == "off" or full_length else EARLY_STOP_POLL
    started = time.perf_counter()
    with _explain_out_of_memory(img, method, overrides.get("width"), dev):
        result, _, dev = run_fit(
            truth,
            padded,
            spec,
            seed,
            str(dev),
            progress,
            noise_sigma=sigma,
            poll=poll,
            stop_params=stop_params,
        )
    out = result.output[0].numpy().transpose(1, 2, 0)[:h, :w]
    return {
        "output": np.ascontiguousarray(out, dtype=np.float32),
        "method": method,
        "width": spec["arch_options"].get("width"),
        "width_source": width_source,
        "sigma": sigma,
        "sigma_source": sigma_source,
        "iterations": spec["iterations"],
        "iterations_run": result.iterations,
        "early_stop": early_stop,
        "stop": None if early_stop == "off" else result.stops[early_stop],
        "device": result.device,
        "seconds": time.perf_counter() - started,
        "fit": result,
    }
