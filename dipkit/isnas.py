"""ISNAS-DIP (Arican, Kara et al., CVPR 2022): image-specific, training-free architecture search
over the NAS-DIP search space; the "ISNAS" baseline of Table 2.

Clean re-implementation of the selection logic of ``ozgurkara99/ISNAS-DIP`` at ``8f529248``
(``random_search.py``, ``isnasdip.sh``, ``utils/funcs.py``, ``utils/masks.py``,
``utils/selection.py``, ``utils/model_utils.py``, ``utils/denoising_utils.py``). No upstream
code is used. The DIP training of the shortlisted models is *not* here: it is an ordinary
``nas_dip`` fit with :data:`ISNAS_DEFAULTS` (done by the fit jobs).

Procedure (denoising, ``isnasdip.sh``: ``random_search.py <img> --sigma 25 --num_iter 1200
--num_models 5000 --save_out_at 1000,1100,1200 --small --check``)
-----------------------------------------------------------------------------------------------

1. **Sample** 5000 architectures of the NAS-DIP space: a cell index uniform in ``0..320`` and a
   5x5 skip matrix of independent fair bits (upstream reads them from a pre-generated
   ``models_generated.lst``). Here :func:`dipkit.models.sample_nas_architecture`, which redraws
   cells that cannot be built; upstream instead *drops* models that fail to build or to run
   (``try/except`` -> ``ERRORS.txt``), so ``--num_models 5000`` yields slightly fewer scored
   models. :func:`search` draws candidate ``i`` from ``numpy.random.default_rng(derive_seed(
   seed, "isnas", "arch", i))`` and records (not ranks) candidates whose build or forward fails.
2. **Score** each *untrained* network (``utils/model_utils.create_model``: width 128, 5 levels,
   skip width 4, bilinear/stride, reflection padding, LeakyReLU, sigmoid; PyTorch default init):
   **one** initialisation and **one** input ``z = 0.1 * U[0, 1)`` shaped exactly like the image
   (``du.get_noise_like(img, sigma=1/10, noise_fmt='uniform')``, so ``in_channels`` = the
   image's channel count, full resolution); ``out = net(z)`` under ``no_grad``; nothing is
   averaged. The output is compared with the **noisy** image by every metric below (upstream
   computes all three and runs steps 3-5 once per metric; :func:`search` computes all three too
   and ranks by ``metric``).
3. **Shortlist**: sort ascending by the metric, keep the first 15 (``iloc[:15]``).
4. **Train** each shortlisted model with DIP: 1200 iterations, Adam lr 0.01, ``reg_noise_std``
   1/30 (sigma 25), EMA weight 0.99, the input of step 2's kind (a fresh draw), MSE to the noisy
   image; the output kept is the EMA output of the **last** iteration (``htr['last_out_sm']``).
   With ``--small`` (used for denoising) the 15 trainings run on the true and noisy images
   resized so that their **shorter side is 64** (:func:`small_size`, :func:`resize_image`).
5. **Select** (``utils/selection.closest_to_average``): the metric-weighted average of the 15
   outputs, with weight ``(max(m) - m_i) / (max(m) - min(m))`` (the best-scored model gets 1,
   the worst 0), then the model with the highest PSNR (= lowest MSE) to that average
   (:func:`select_output`). The chosen architecture is then retrained for 1200 iterations at full
   resolution and its last EMA output is the result.

Metrics (``utils/funcs.py``; images ``[C, H, W]`` upstream, ``[H, W, C]`` here)
------------------------------------------------------------------------------

``psd(x) = fftshift(|fft2(x, norm='forward')|**2)`` per channel over ``(H, W)``;
``db(p) = 10 * ln(p)`` (**natural** log, as upstream; real dB would only rescale the MSE by
``(ln 10)**2``, same ranking); ``strip`` keeps the PSD values (all channels) in the ring
``0.05 <= r < 0.1`` with ``r**2 = (j/W - 1/2)**2 + (i/H - 1/2)**2`` on the *shifted* spectrum
(``circular_strip_mask(size, outer=0.2, inner=0.1)`` diameters, strict ``<`` on both circles,
XOR); ``hist`` is ``numpy.histogram(values, bins=100, density=True)`` over the values' own
``[min, max]`` (``range=None``), zeros kept; ``emd`` is ``scipy.stats.wasserstein_distance``
applied to the two 100-vectors of *densities* taken as samples with equal weights (it equals
``mean(|sort(a) - sort(b)|)``, computed directly here).

* ``'psd db strip mse'`` = ``mean((db(psd(noisy))[strip] - db(psd(out))[strip])**2)``;
* ``'psd strip hist emd'`` = ``emd(hist(psd(noisy)[strip]), hist(psd(out)[strip]))``;
* ``'random mse'`` = ``mean((a - b)**2)`` with ``a, b`` i.i.d. ``N(0, 1)`` arrays shaped like the
  noisy image and the output: a *random-ranking control*. Upstream draws ``a`` once per run
  (cached for the noisy image) and a fresh ``b`` per model from ``np.random``; :func:`search`
  draws ``a`` from ``derive_seed(seed, "isnas", "random mse")`` and ``b`` per candidate.

The channel-axis roll of upstream's all-axes ``fftshift`` and the channel order of its masked
arrays do not change any of these values (the same permutation applies to both images), so
the PSD here shifts only ``(H, W)``.

**Default metric.** Upstream has none: ``random_search.py`` evaluates ``'psd db strip mse'``,
``'psd strip hist emd'`` and ``'random mse'`` and produces one ISNAS-DIP result per metric.
:data:`DEFAULT_METRIC` is ``'psd db strip mse'``, the first of its ``similarity_metrics`` list
(an assumption of dipkit, not an upstream setting; the FD paper does not say which
metric its ISNAS-DIP numbers used).

Deviations
----------
* Invalid cells are redrawn (uniform over buildable architectures) instead of dropped;
  duplicate architectures are not removed (nor are they upstream).
* RNG: per-candidate seeds from :func:`dipkit.seeding.derive_seed` (network init, then the
  input, from one ``torch.manual_seed`` inside a forked RNG) instead of upstream's global
  unseeded streams.
* :func:`select_output` with all scores equal uses equal weights (upstream divides by zero and
  would average NaNs); ties in the distance go to the first output (``idxmax``).
* Upstream's final retraining reuses the Python variable ``model`` (the *last shortlisted,
  already trained* network) instead of rebuilding the selected one; here the selected
  architecture is meant to be rebuilt and trained from scratch (the evident intent).
* ``small``: :func:`resize_image` follows ``imu.resize`` (PIL, 8-bit quantisation, PIL's default
  ``resize`` filter, bicubic) when Pillow is available, else a float bicubic ``torch``
  interpolation (no quantisation).

Arrays: images are ``numpy`` ``[H, W, C]`` (or ``[H, W]``) floats in ``[0, 1]``; torch tensors
``[1, C, H, W]`` / ``[C, H, W]`` are accepted by :func:`psd_metric` and converted.
``import dipkit.isnas`` only imports numpy (and the torch-free :mod:`dipkit.nas_search_space`);
torch and the models are imported by :func:`search`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .nas_search_space import sample_nas_architecture
from .seeding import derive_seed

__all__ = [
    "DEFAULT_METRIC",
    "ISNAS_DEFAULTS",
    "METRICS",
    "db",
    "density_histogram",
    "emd_1d",
    "psd",
    "psd_metric",
    "rank_candidates",
    "resize_image",
    "search",
    "select_output",
    "small_size",
    "strip_mask",
    "weighted_average",
]

#: the metrics ``random_search.py`` evaluates (``similarity_metrics + other_metrics``)
METRICS: tuple[str, ...] = ("psd db strip mse", "psd strip hist emd", "random mse")
#: metric used to rank when none is given (see the module docstring: upstream has no default)
DEFAULT_METRIC = "psd db strip mse"

#: ISNAS-DIP denoising settings (``isnasdip.sh`` and ``random_search.py`` defaults, sigma = 25)
ISNAS_DEFAULTS: dict[str, Any] = {
    "n_samples": 5000,  # --num_models 5000
    "top_k": 15,  # iloc[:15]
    "iterations": 1200,  # --num_iter 1200 (each of the 15 trainings and the final retraining)
    "lr": 0.01,  # --lr, Adam, default betas
    "reg_noise_std": 1.0 / 30.0,  # --reg_noise_std (sigma 25)
    "exp_weight": 0.99,  # --exp_weight, EMA of the output
    "input_noise": "uniform",  # du.get_noise_like(..., noise_fmt='uniform')
    "input_scale": 0.1,  # sigma=1/10: z ~ U[0, 0.1)
    "in_channels": "image",  # the input noise has the image's shape (channel count)
    "metric": DEFAULT_METRIC,
    "metrics": METRICS,
    "small": True,  # --small: shortlisted models train on the image resized to shorter side 64
    "small_side": 64,
    "selection": "closest_to_metric_weighted_average",  # utils/selection.closest_to_average
    "output": "last_ema",  # htr['last_out_sm']
    # --save_out_at (final retraining); upstream's 0-based loop never reaches 1200
    "save_out_at": (1000, 1100, 1200),
    # build_model("nas_dip", ...) options of utils/model_utils.create_model (its
    # num_channels_skip=[4]*5 and upsample_mode='bilinear' are accepted but unused by cross_skip.skip)
    "model": {
        "width": 128,
        "levels": 5,
        "kernel_down": 3,
        "kernel_up": 3,
        "act": "LeakyReLU",
        "pad": "reflection",
        "downsample": "stride",
        "need_sigmoid": True,
        "need_bias": True,
    },
}

_HIST_BINS = 100
_STRIP_OUTER = 0.2  # diameter ratios of utils/masks.circular_strip_mask as used by UsefullMaps
_STRIP_INNER = 0.1


# --------------------------------------------------------------------------------- helpers


def _as_hwc(x: Any) -> np.ndarray:
    """``[H, W, C]`` float64 copy of a numpy image (``[H, W]`` -> ``[H, W, 1]``) or of a torch
    tensor ``[1, C, H, W]`` / ``[C, H, W]``."""
    if hasattr(x, "detach"):  # torch tensor, channels first
        t = x.detach().cpu().double().numpy()
        if t.ndim == 4:
            if t.shape[0] != 1:
                raise ValueError(f"expected a batch of one image, got shape {t.shape}")
            t = t[0]
        if t.ndim != 3:
            raise ValueError(f"expected a tensor [1, C, H, W] or [C, H, W], got shape {t.shape}")
        return np.moveaxis(t, 0, -1)
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3:
        raise ValueError(f"expected an image [H, W] or [H, W, C], got shape {a.shape}")
    return a


def psd(image: Any) -> np.ndarray:
    """Power spectral density ``fftshift(|fft2(x, norm='forward')|**2)`` of each channel of an
    ``[H, W, C]`` image (upstream ``funcs.psd``), returned ``[H, W, C]``, DC at
    ``(H // 2, W // 2)``."""
    x = _as_hwc(image)
    f = np.fft.fft2(x, axes=(0, 1), norm="forward")
    return np.fft.fftshift(np.abs(f) ** 2, axes=(0, 1))


def db(arr: np.ndarray) -> np.ndarray:
    """``10 * ln(arr)``: upstream ``funcs.db`` uses the natural logarithm."""
    with np.errstate(divide="ignore"):
        return 10.0 * np.log(arr)


def strip_mask(size: tuple[int, int], outer: float = _STRIP_OUTER, inner: float = _STRIP_INNER) -> np.ndarray:
    """Boolean ``[H, W]`` ring of the shifted spectrum: ``(j/W - 1/2)**2 + (i/H - 1/2)**2`` below
    ``(outer/2)**2`` but not below ``(inner/2)**2`` (``circular_strip_mask``)."""
    h, w = int(size[0]), int(size[1])
    yy, xx = np.meshgrid(np.arange(h) / h - 0.5, np.arange(w) / w - 0.5, indexing="ij")
    r2 = xx**2 + yy**2
    return np.logical_xor(r2 < (outer / 2) ** 2, r2 < (inner / 2) ** 2)


def density_histogram(values: np.ndarray, bins: int = _HIST_BINS) -> np.ndarray:
    """``numpy.histogram(values, bins, density=True)`` over the values' own range (upstream
    ``funcs.histogram`` with ``HIST_DENSITY=True, HIST_RANGE=None, discard_zeros=False``)."""
    hist, _ = np.histogram(np.ravel(values), bins=bins, density=True)
    return hist


def emd_1d(a: np.ndarray, b: np.ndarray) -> float:
    """1-D earth mover's distance between the empirical distributions of the samples ``a`` and
    ``b`` (equal weights), = ``scipy.stats.wasserstein_distance(a, b)``. Closed form for equal
    sizes, ``mean(|sort(a) - sort(b)|)``; otherwise the CDF integral."""
    a = np.sort(np.ravel(np.asarray(a, dtype=np.float64)))
    b = np.sort(np.ravel(np.asarray(b, dtype=np.float64)))
    if a.size == 0 or b.size == 0:
        raise ValueError("emd_1d needs non-empty inputs")
    if a.size == b.size:
        return float(np.mean(np.abs(a - b)))
    allv = np.sort(np.concatenate([a, b]))
    deltas = np.diff(allv)
    ca = np.searchsorted(a, allv[:-1], side="right") / a.size
    cb = np.searchsorted(b, allv[:-1], side="right") / b.size
    return float(np.sum(np.abs(ca - cb) * deltas))


def _check_metric(metric: str) -> str:
    m = " ".join(str(metric).split())
    if m not in METRICS:
        raise ValueError(f"unknown ISNAS-DIP metric {metric!r}; allowed: {', '.join(METRICS)}")
    return m


class _Reference:
    """The noisy image's transforms, computed once (upstream's ``Cache``)."""

    def __init__(self, noisy: Any, random_rng: np.random.Generator | None = None) -> None:
        self.image = _as_hwc(noisy)
        self.size = self.image.shape[:2]
        self.mask = strip_mask(self.size)
        if not self.mask.any():
            raise ValueError(f"image {self.size} too small: the PSD strip is empty")
        p = psd(self.image)
        self.strip = p[self.mask]  # [n, C]
        self.db_strip = db(self.strip)
        self.hist = density_histogram(self.strip)
        self._random_rng = random_rng
        self._random: np.ndarray | None = None

    def random(self) -> np.ndarray:
        if self._random is None:
            rng = self._random_rng if self._random_rng is not None else np.random.default_rng()
            self._random = rng.standard_normal(self.image.shape)
        return self._random

    def score(self, out: Any, metric: str, rng: np.random.Generator | None = None) -> float:
        metric = _check_metric(metric)
        o = _as_hwc(out)
        if metric == "random mse":
            rng = rng if rng is not None else np.random.default_rng()
            b = rng.standard_normal(o.shape)
            a = self.random()
            if a.shape != b.shape:
                raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
            return float(np.mean((a - b) ** 2))
        if o.shape[:2] != tuple(self.size):
            raise ValueError(f"output size {o.shape[:2]} differs from the image size {self.size}")
        p_strip = psd(o)[self.mask]
        if metric == "psd db strip mse":
            if p_strip.shape != self.strip.shape:
                raise ValueError(f"channel mismatch: {o.shape} vs {self.image.shape}")
            with np.errstate(invalid="ignore", over="ignore"):
                return float(np.mean((self.db_strip - db(p_strip)) ** 2))
        # 'psd strip hist emd'
        return emd_1d(self.hist, density_histogram(p_strip))


def psd_metric(
    output: Any,
    noisy: Any,
    metric: str = DEFAULT_METRIC,
    *,
    rng: np.random.Generator | int | None = None,
) -> float:
    """ISNAS-DIP's training-free score of a network output against the noisy image (lower =
    better, as upstream sorts ascending). See the module docstring for the definitions.

    :param output: the network output, numpy ``[H, W, C]`` / ``[H, W]`` in ``[0, 1]`` (or a
        torch tensor ``[1, C, H, W]`` / ``[C, H, W]``).
    :param noisy: the noisy image, same layout and size (any channel count for the histogram
        metric; the same channel count for ``'psd db strip mse'``).
    :param metric: ``'psd db strip mse'`` (default), ``'psd strip hist emd'`` or ``'random mse'``.
    :param rng: only for ``'random mse'``: a Generator or seed; the noisy image's Gaussian array
        is drawn first, then the output's. ``None``: fresh entropy.
    :return: the score as a Python float (``inf``/``nan`` possible for a degenerate output
        whose strip PSD has zeros under ``'psd db strip mse'``).
    """
    metric = _check_metric(metric)
    if metric == "random mse" and not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    ref = _Reference(noisy, random_rng=rng if metric == "random mse" else None)
    return ref.score(output, metric, rng=rng if metric == "random mse" else None)


# ---------------------------------------------------------------------------------- search


def _sort_key(value: Any) -> tuple[int, float]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (1, 0.0)
    return (0, float(value))


def rank_candidates(
    candidates: Sequence[Mapping[str, Any]], metric: str = DEFAULT_METRIC, top_k: int = 15
) -> list[str]:
    """Tokens of the ``top_k`` best candidates by ``metric``: ascending, ties in sampling order
    (stable sort; upstream's pandas ``sort_values`` is not guaranteed stable). Failed candidates
    and NaN scores are never ranked; ``inf`` sorts as a large value, as in pandas."""
    metric = _check_metric(metric)
    ok = [c for c in candidates if c.get("error") is None and c.get("scores", {}).get(metric) is not None]
    ok = sorted(ok, key=lambda c: _sort_key(c["scores"][metric]))
    ok = [c for c in ok if not (isinstance(c["scores"][metric], float) and math.isnan(c["scores"][metric]))]
    return [c["token"] for c in ok[: max(int(top_k), 0)]]


def search(
    noisy: np.ndarray,
    n_samples: int = ISNAS_DEFAULTS["n_samples"],
    top_k: int = ISNAS_DEFAULTS["top_k"],
    seed: int = 0,
    metric: str = DEFAULT_METRIC,
    device: str = "cpu",
    in_channels: int | None = None,
    *,
    model_options: Mapping[str, Any] | None = None,
    input_scale: float = ISNAS_DEFAULTS["input_scale"],
    progress: Any = None,
) -> dict:
    """ISNAS-DIP steps 1-3: sample ``n_samples`` architectures, score each untrained network on
    ``noisy`` with all of :data:`METRICS`, shortlist the ``top_k`` best by ``metric``.

    Candidate ``i`` (0-based): architecture from ``default_rng(derive_seed(seed, "isnas",
    "arch", i))`` via :func:`~dipkit.models.sample_nas_architecture` (width from
    ``model_options``, default 128); then, inside ``torch.random.fork_rng`` seeded with
    ``derive_seed(seed, "isnas", "net", i)``, the network is built (default init) and the input
    ``input_scale * torch.rand(1, in_channels, H, W)`` drawn (CPU, then moved to ``device``);
    ``out = net(z)`` in ``no_grad`` (BatchNorm in train mode, as upstream). Deterministic on
    CPU for a given seed; global RNG states are left unchanged. Candidate ``i`` does not depend
    on ``n_samples``.

    :param noisy: noisy image ``[H, W, C]`` (or ``[H, W]``) in ``[0, 1]``; ``H, W`` multiples of
        32 and at least 64 for the default 5 levels.
    :param in_channels: input-code channels; ``None`` = the image's channel count (upstream).
    :param model_options: extra ``build_model('nas_dip', ...)`` options (e.g. ``width`` for
        tests); defaults are upstream's (:data:`ISNAS_DEFAULTS` ``['model']``, equal to the
        ``nas_dip`` preset; ``in_channels`` is set by the argument of that name).
    :param progress: optional callable ``progress(i, candidate_dict)`` after each candidate.
    :return: ``{"candidates": [...], "top": [tokens], "seconds": float, "metric": str,
        "metrics": [...], "n_samples": int, "top_k": int, "seed": int, "device": str,
        "in_channels": int, "image_size": [H, W], "seconds_per_candidate": float}``. Each
        candidate: ``index`` (i), ``token``, ``model_index``, ``num_skips``, ``score`` (by
        ``metric``), ``scores`` (all metrics), ``params``, ``seconds``, ``error`` (``None`` or
        the message of a failed build/forward; such candidates have ``score None`` and are
        never shortlisted).
    """
    import torch

    from .models import build_model, count_parameters

    metric = _check_metric(metric)
    n_samples, top_k, seed = int(n_samples), int(top_k), int(seed)
    if n_samples < 0 or top_k < 0:
        raise ValueError("n_samples and top_k must be non-negative")
    img = _as_hwc(noisy)
    h, w, c = img.shape
    cin = c if in_channels is None else int(in_channels)
    opts = dict(model_options or {})
    width = int(opts.get("width", ISNAS_DEFAULTS["model"]["width"]))
    levels = int(opts.get("levels", ISNAS_DEFAULTS["model"]["levels"]))
    ref = _Reference(img, random_rng=np.random.default_rng(derive_seed(seed, "isnas", "random mse")))
    dev = torch.device(device)

    candidates: list[dict] = []
    t_all = time.perf_counter()
    for i in range(n_samples):
        t0 = time.perf_counter()
        arch = sample_nas_architecture(
            np.random.default_rng(derive_seed(seed, "isnas", "arch", i)), levels=levels, width=width
        )
        cand: dict[str, Any] = {
            "index": i,
            "token": arch.token,
            "model_index": arch.model_index,
            "num_skips": arch.num_skips,
            "score": None,
            "scores": dict.fromkeys(METRICS),
            "params": None,
            "seconds": None,
            "error": None,
        }
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed(seed, "isnas", "net", i))
                net = build_model("nas_dip", c, (h, w), genotype=arch, in_channels=cin, **opts)
                z = input_scale * torch.rand(1, cin, h, w)
            cand["params"] = int(count_parameters(net))
            net = net.to(dev)
            with torch.no_grad():
                out = net(z.to(dev))
            out_np = out.detach().cpu().double().numpy()[0].transpose(1, 2, 0)
            del net, out, z
            rr = np.random.default_rng(derive_seed(seed, "isnas", "random mse", i))
            for m in METRICS:
                v = ref.score(out_np, m, rng=rr if m == "random mse" else None)
                cand["scores"][m] = v
            cand["score"] = cand["scores"][metric]
        except Exception as exc:
            cand["error"] = f"{type(exc).__name__}: {exc}"
        cand["seconds"] = time.perf_counter() - t0
        candidates.append(cand)
        if progress is not None:
            progress(i, cand)
    seconds = time.perf_counter() - t_all
    return {
        "candidates": candidates,
        "top": rank_candidates(candidates, metric, top_k),
        "seconds": seconds,
        "seconds_per_candidate": seconds / n_samples if n_samples else 0.0,
        "metric": metric,
        "metrics": list(METRICS),
        "n_samples": n_samples,
        "top_k": top_k,
        "seed": seed,
        "device": str(dev),
        "in_channels": cin,
        "image_size": [h, w],
    }


# ------------------------------------------------------------------------------- selection


def small_size(h: int, w: int, side: int = ISNAS_DEFAULTS["small_side"]) -> tuple[int, int]:
    """``--small`` size: scale so that the shorter side is ``side`` (64), truncating like
    upstream's ``(size / size.min() * 64).astype(int32)``."""
    m = min(int(h), int(w))
    return int(int(h) / m * side), int(int(w) / m * side)


def resize_image(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an ``[H, W, C]`` / ``[H, W]`` image in ``[0, 1]`` to ``size = (h, w)`` like upstream's
    ``imu.resize``: through an 8-bit PIL image (``x * 255`` clipped, truncated to ``uint8``) and
    PIL's default ``resize`` filter (bicubic), back to float32 ``/ 255``. Without Pillow: float
    bicubic ``torch.nn.functional.interpolate`` (``align_corners=False``), clipped to [0, 1]."""
    a = np.asarray(img, dtype=np.float64)
    squeeze = a.ndim == 2
    a = a[:, :, None] if squeeze else a
    h, w = int(size[0]), int(size[1])
    if a.shape[:2] == (h, w):
        out = a.astype(np.float32)
    else:
        try:
            from PIL import Image

            u8 = (a * 255).clip(0, 255).astype(np.uint8)
            c = u8.shape[2]
            if c == 1:
                res = np.asarray(Image.fromarray(u8[:, :, 0], mode="L").resize((w, h)))[:, :, None]
            elif c == 3:
                res = np.asarray(Image.fromarray(u8, mode="RGB").resize((w, h)))
            else:
                res = np.stack(
                    [np.asarray(Image.fromarray(u8[:, :, k], mode="L").resize((w, h))) for k in range(c)], -1
                )
            out = res.astype(np.float32) / 255.0
        except ImportError:  # pragma: no cover - Pillow is a dependency of dipkit
            import torch
            import torch.nn.functional as F

            t = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None]
            r = F.interpolate(t, size=(h, w), mode="bicubic", align_corners=False)
            out = r[0].numpy().transpose(1, 2, 0).clip(0, 1).astype(np.float32)
    return out[:, :, 0] if squeeze else out


def _weights(scores: Sequence[float] | None, n: int) -> np.ndarray:
    if scores is None:
        return np.ones(n)
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (n,):
        raise ValueError(f"need one score per output ({n}), got {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    lo, hi = s.min(), s.max()
    if hi == lo:
        return np.ones(n)  # upstream: 0/0
    return (hi - s) / (hi - lo)


def weighted_average(outputs: Sequence[np.ndarray], scores: Sequence[float] | None = None) -> np.ndarray:
    """Average of ``outputs``; with ``scores`` (lower = better) upstream's metric weighting
    ``(max - s_i) / (max - min)`` (``selection.average_output``)."""
    arrs = np.stack([np.asarray(o, dtype=np.float64) for o in outputs], 0)
    wts = _weights(scores, len(outputs))
    return np.tensordot(wts, arrs, axes=1) / wts.sum()


def select_output(
    outputs: Sequence[np.ndarray],
    small: bool = False,
    scores: Sequence[float] | None = None,
) -> int:
    """Index of the output closest in MSE (= highest PSNR, upstream's ``closest_to``) to the
    average of all outputs (ISNAS-DIP step 5).

    :param outputs: the shortlisted models' final (EMA) outputs, ``[H, W, C]`` / ``[H, W]``, all
        the same shape.
    :param small: ``--small``'s resized averaging: upstream trains the shortlist on the image
        resized to shorter side 64, so the outputs compared are small; here, outputs larger than
        :func:`small_size` are first resized with :func:`resize_image` (outputs already at that
        size are used as they are).
    :param scores: the models' metric values (lower = better). Upstream weights the average by
        them (best 1, worst 0); ``None`` = plain mean.
    :return: the index into ``outputs`` (first one on ties).
    """
    outs = [np.asarray(o, dtype=np.float64) for o in outputs]
    if not outs:
        raise ValueError("select_output needs at least one output")
    shape = outs[0].shape
    if any(o.shape != shape for o in outs):
        raise ValueError("all outputs must have the same shape")
    if small:
        size = small_size(shape[0], shape[1])
        outs = [np.asarray(resize_image(o, size), dtype=np.float64) for o in outs]
    avg = weighted_average(outs, scores)
    mses = [float(np.mean((o - avg) ** 2)) for o in outs]
    return int(np.argmin(mses))
