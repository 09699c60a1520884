"""Texture features of an image: GLCM (Haralick) statistics and a radial power spectrum.

These are the inputs of the width classifier (:mod:`dipkit.classifier`), after Sec. 3.3
("Image scoring") and Sec. 4.4 of *The Devil is in the Upsampling* (Liu et al., ICCV 2023).
The authors released no feature or classifier code except the PSD helper
``utils/common_utils.py:get_psd`` (+ ``utils/radialProfile.py``), so the choices below are
ours; every place where we deliberately differ from the paper or its code is marked
**[differs]**.

Gray conversion
    RGB images become luma ``0.2989 R + 0.5870 G + 0.1140 B`` (ITU-R 601, the constants of
    the paper's ``get_psd``); grayscale images (``C == 1``, Set12) are used as they are.
    Inputs are float ``[H, W, C]`` images in ``[0, 1]`` (integer stacks are converted with
    :func:`dipkit.images.to_float` first); a 2-D array is taken as already gray.

GLCM features (:func:`glcm_features`)
    The gray image is quantised to ``LEVELS = 256`` levels (``round(gray * 255)`` as
    ``uint8``, which recovers the exact pixel values of 8-bit grayscale images).
    ``skimage.feature.graycomatrix`` is computed for distances ``DISTANCES = (1, 2, 4)``
    pixels and angles 0, 45, 90, 135 degrees with ``symmetric=True, normed=True``, and
    ``skimage.feature.graycoprops`` gives, for every (distance, angle) pair, each property
    of ``GLCM_PROPS``: contrast, dissimilarity, homogeneity, ASM, energy, correlation and,
    where the installed scikit-image supports them (>= 0.25; checked at run time), mean,
    variance and entropy (``std`` is left out: it is ``sqrt(variance)``). That is
    9 x 3 x 4 = 108 features named ``glcm_<prop>_d<distance>_a<angle in degrees>`` with the
    property in lower case, e.g. ``glcm_correlation_d1_a0`` or ``glcm_asm_d4_a135``.
    A constant image has an undefined correlation; scikit-image returns 1 for it.
    The paper reports that a decision tree picked *correlation at 0°, homogeneity at 45° and
    contrast at 0°*; the GLCM distance, levels and flags are not given (``[UNVERIFIED]``).
    We take them to be distance 1: :data:`PAPER_FEATURES`.

Radial power spectrum (:func:`radial_psd`)
    Follows ``get_psd``: ``PSD = |fft2(gray, norm='forward')|^2`` in ``10 * ln`` units (the
    paper's ``db()`` uses the natural log), azimuthally averaged, i.e.
    ``S(r) = 1/(2 pi) * integral S(r, theta) d theta`` of the log power. Our differences:

    * **[differs] true centre and a normalised radius.** The radius of every FFT coefficient
      is its radial frequency ``r = sqrt(fx^2 + fy^2)`` in cycles/pixel, where ``fx, fy`` are
      the exact ``numpy.fft.fftfreq`` frequencies of the *W* columns and *H* rows. That is
      centred on the DC term of any image (the paper's code put the centre at
      ``((W-1)/2, (W-1)/2)`` for both axes, off-centre for non-square images such as the
      480x320 CBSD68 crops) and makes a 256x256 and a 480x320 image share one frequency axis
      (the paper's integer-pixel radius bins mean different frequencies for different sizes).
    * **[differs] fixed length.** The ring means are taken over ``bins`` equal-width rings
      covering ``(0, 0.5]`` cycles/pixel (up to Nyquist; the corners of the spectrum beyond
      0.5 are not used, and the DC term -- the squared image mean, no texture -- is left
      out). Bin ``k`` covers ``(k, k+1] * 0.5 / bins`` and is reported at its centre
      (:func:`psd_frequencies`). A ring holding no coefficient (only for small images, whose
      frequency step ``1/min(H, W)`` exceeds the bin width) is linearly interpolated from its
      neighbours. The paper's code gave 179 values for 256x256, 360 for 512x512 and 356/337
      for 320x480/480x320 arrays, so it could not feed one classifier without a reduction
      the paper does not describe.
    * **[differs] size-independent level.** We use the periodogram ``H*W*|fft2(gray,
      norm='forward')|^2`` (= ``|fft2(gray)|^2 / (H*W)``), whose level for white noise of
      variance ``s^2`` is ``s^2`` at every image size; the paper's ``norm='forward'`` level
      falls by ``10 ln(H*W)`` with image size. A floor of ``1e-12`` keeps the log finite for
      a constant image.
    * **[differs] no min-max normalisation** by default (the paper's code normalises the 2-D
      log spectrum and then the 1-D profile to [0, 1]); the absolute level carries the
      amount of high-frequency energy, which is what the width depends on, and the
      classifier standardises each feature anyway. ``radial_psd(..., normalize=True)`` gives
      the paper's double min-max normalisation.

    No window is applied (as in the paper), so the edge discontinuity of a non-periodic image
    adds some power along the axes.

Spectral slope (:func:`psd_slope`)
    The exponent ``beta`` of ``P(f) ~ f^beta``: the least-squares slope of ``ln P`` against
    ``ln f`` over the 64-bin profile's bins whose centres lie in ``PSD_SLOPE_BAND = (0.02,
    0.25)`` cycles/pixel (the mid band: above the few lowest rings, which hold only a handful
    of coefficients, and below the top octave, where noise and JPEG/demosaicking artefacts of
    the source images dominate). White noise gives about 0, natural images about -2, smooth
    images much less. Not in the paper; a one-number texture summary.

Per-image and per-dataset tables
    :func:`image_features` returns the GLCM features, then ``psd_000 .. psd_<bins-1>``, then
    ``psd_slope`` (always in this order). :func:`dataset_features` computes them for every
    image of a prepared stack (``clean/<image>`` keys, see :mod:`dipkit.images`), and
    :func:`features_from_files` for image files read and centre-cropped as the prepare stage
    does; both write a Parquet table with columns ``dataset, image, height, width,
    channels`` and then the features as float64, one row per image in the order given.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from functools import cache

import numpy as np
import pandas as pd

DISTANCES: tuple[int, ...] = (1, 2, 4)
"""GLCM pixel offsets."""
ANGLES_DEG: tuple[int, ...] = (0, 45, 90, 135)
"""GLCM directions in degrees (0 = to the right, 90 = upwards, scikit-image's convention)."""
LEVELS: int = 256
"""Gray levels of the quantised image (and the GLCM size)."""
PSD_BINS: int = 64
"""Default length of the radial PSD vector."""
PSD_SLOPE_BAND: tuple[float, float] = (0.02, 0.25)
"""Frequency band (cycles/pixel) over which :func:`psd_slope` is fitted."""
PSD_FLOOR: float = 1e-12
"""Floor added to the periodogram before taking the log."""
LUMA: tuple[float, float, float] = (0.2989, 0.5870, 0.1140)
"""RGB -> gray weights (those of the paper's ``get_psd``)."""

_BASE_PROPS = ("contrast", "dissimilarity", "homogeneity", "ASM", "energy", "correlation")
_EXTRA_PROPS = ("mean", "variance", "entropy")

PAPER_FEATURES: tuple[str, ...] = (
    "glcm_correlation_d1_a0",
    "glcm_homogeneity_d1_a45",
    "glcm_contrast_d1_a0",
)
"""The three GLCM features the paper's decision tree selected (at GLCM distance 1)."""

META_COLUMNS: tuple[str, ...] = ("dataset", "image", "height", "width", "channels")
"""Leading, non-feature columns of a :func:`dataset_features` table."""


@cache
def _supported_props() -> tuple[str, ...]:
    from skimage.feature import graycoprops

    probe = np.ones((2, 2, 1, 1), dtype=np.float64)
    props = list(_BASE_PROPS)
    for prop in _EXTRA_PROPS:
        try:
            graycoprops(probe, prop)
        except ValueError:  # older scikit-image: property not implemented
            continue
        props.append(prop)
    return tuple(props)


def glcm_props() -> tuple[str, ...]:
    """The ``graycoprops`` properties computed here (depends on the scikit-image version)."""
    return _supported_props()


def glcm_feature_names(distances: Sequence[int] = DISTANCES) -> list[str]:
    """Names of :func:`glcm_features`, in their order: property, then distance, then angle."""
    return [
        f"glcm_{prop.lower()}_d{d}_a{a}" for prop in _supported_props() for d in distances for a in ANGLES_DEG
    ]


def psd_feature_names(bins: int = PSD_BINS) -> list[str]:
    """``psd_000 .. psd_<bins-1>``."""
    width = max(3, len(str(bins - 1)))
    return [f"psd_{k:0{width}d}" for k in range(bins)]


def feature_names(psd_bins: int = PSD_BINS) -> list[str]:
    """Names of :func:`image_features`, in their order."""
    return [*glcm_feature_names(), *psd_feature_names(psd_bins), "psd_slope"]


def to_gray(img: np.ndarray) -> np.ndarray:
    """``[H, W, C]`` (or ``[H, W]``) image -> float64 ``[H, W]`` gray image.

    RGB uses :data:`LUMA`; one channel is returned as it is. Integer images are scaled to
    ``[0, 1]`` first (:func:`dipkit.images.to_float`).
    """
    arr = np.asarray(img)
    if not np.issubdtype(arr.dtype, np.floating):
        from dipkit.images import to_float

        arr = to_float(arr)
    arr = arr.astype(np.float64, copy=False)
    if arr.ndim == 2:
        return arr
    if arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise ValueError(f"expected an [H, W, C] image with C = 1 or 3, got shape {arr.shape}")
    if arr.shape[2] == 1:
        return arr[:, :, 0]
    r, g, b = LUMA
    return r * arr[:, :, 0] + g * arr[:, :, 1] + b * arr[:, :, 2]


def quantize(gray: np.ndarray, levels: int = LEVELS) -> np.ndarray:
    """Float gray image in ``[0, 1]`` -> ``uint8`` levels ``0 .. levels-1`` (rounded, clipped)."""
    if not 2 <= levels <= 256:
        raise ValueError(f"levels must be in 2..256, got {levels}")
    q = np.rint(np.clip(gray, 0.0, 1.0) * (levels - 1))
    return q.astype(np.uint8)


def glcm_features(
    img: np.ndarray, distances: Sequence[int] = DISTANCES, levels: int = LEVELS
) -> dict[str, float]:
    """GLCM (Haralick) features of an image, ``{name: value}`` in :func:`glcm_feature_names` order.

    :param img: float ``[H, W, C]`` image in ``[0, 1]`` (C = 1 or 3), or a 2-D gray image.
    :param distances: GLCM pixel offsets.
    :param levels: gray levels after quantisation (at most 256).
    """
    from skimage.feature import graycomatrix, graycoprops

    q = quantize(to_gray(img), levels)
    angles = [math.radians(a) for a in ANGLES_DEG]
    glcm = graycomatrix(
        q, distances=list(distances), angles=angles, levels=levels, symmetric=True, normed=True
    )
    out: dict[str, float] = {}
    for prop in _supported_props():
        values = graycoprops(glcm, prop)  # [n_distances, n_angles]
        for i, d in enumerate(distances):
            for j, a in enumerate(ANGLES_DEG):
                out[f"glcm_{prop.lower()}_d{d}_a{a}"] = float(values[i, j])
    return out


def psd_frequencies(bins: int = PSD_BINS) -> np.ndarray:
    """Centre frequency (cycles/pixel) of each :func:`radial_psd` bin: ``(k + 0.5) * 0.5 / bins``."""
    return (np.arange(bins) + 0.5) * (0.5 / bins)


def _log_periodogram(gray: np.ndarray) -> np.ndarray:
    h, w = gray.shape
    spec = np.fft.fft2(gray, norm="forward")
    power = (spec.real**2 + spec.imag**2) * (h * w)
    return 10.0 * np.log(power + PSD_FLOOR)


def radial_psd(img: np.ndarray, bins: int = PSD_BINS, normalize: bool = False) -> np.ndarray:
    """Azimuthally averaged log power spectrum on a fixed radial-frequency axis.

    See the module docstring for the definition and how it differs from the paper's
    ``get_psd``. Transposing an image leaves the result unchanged (up to rounding).

    :param img: float ``[H, W, C]`` image in ``[0, 1]``, or a 2-D gray image.
    :param bins: number of equal-width rings over ``(0, 0.5]`` cycles/pixel
        (centres: :func:`psd_frequencies`).
    :param normalize: apply the paper's min-max normalisation to [0, 1] (of the 2-D log
        spectrum, then of the profile). Off by default.
    :return: float64 vector of length ``bins``, in ``10 * ln(power)`` units.
    """
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    gray = to_gray(img)
    h, w = gray.shape
    logp = _log_periodogram(gray)
    if normalize:
        lo, hi = logp.min(), logp.max()
        logp = (logp - lo) / (hi - lo) if hi > lo else np.zeros_like(logp)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    r = np.sqrt(fy**2 + fx**2).ravel()
    vals = logp.ravel()
    keep = (r > 0) & (r <= 0.5)
    # ring k holds (k, k+1] * 0.5 / bins; ceil(...) - 1 maps r exactly on an edge to the lower ring
    idx = np.clip(np.ceil(r[keep] * (2 * bins)).astype(np.int64) - 1, 0, bins - 1)
    counts = np.bincount(idx, minlength=bins)
    sums = np.bincount(idx, weights=vals[keep], minlength=bins)
    centres = psd_frequencies(bins)
    filled = counts > 0
    if not filled.any():
        raise ValueError(f"image of {w}x{h} pixels is too small for a power spectrum")
    profile = np.empty(bins, dtype=np.float64)
    profile[filled] = sums[filled] / counts[filled]
    if not filled.all():
        profile[~filled] = np.interp(centres[~filled], centres[filled], profile[filled])
    if normalize:
        lo, hi = profile.min(), profile.max()
        profile = (profile - lo) / (hi - lo) if hi > lo else np.zeros_like(profile)
    return profile


def _slope_from_profile(profile: np.ndarray, band: tuple[float, float] = PSD_SLOPE_BAND) -> float:
    f = psd_frequencies(len(profile))
    sel = (f >= band[0]) & (f <= band[1])
    if sel.sum() < 2:
        raise ValueError(f"fewer than two PSD bins in the band {band}")
    # profile is 10 * ln(P): the exponent of P ~ f^beta is d ln P / d ln f
    slope = np.polyfit(np.log(f[sel]), profile[sel] / 10.0, 1)[0]
    return float(slope)


def psd_slope(img: np.ndarray, band: tuple[float, float] = PSD_SLOPE_BAND) -> float:
    """Spectral exponent ``beta`` (``P ~ f^beta``) fitted over ``band`` cycles/pixel.

    Fitted on the 64-bin :func:`radial_psd` profile (independent of the feature vector's
    bin count). About 0 for white noise, about -2 for natural images, lower for smooth ones.
    """
    return _slope_from_profile(radial_psd(img, bins=PSD_BINS), band)


def image_features(img: np.ndarray, psd_bins: int = PSD_BINS) -> dict[str, float]:
    """All features of one image: GLCM, ``psd_000..``, ``psd_slope`` (:func:`feature_names` order)."""
    out = glcm_features(img)
    profile = radial_psd(img, bins=psd_bins)
    out.update(zip(psd_feature_names(psd_bins), (float(v) for v in profile)))
    slope_profile = profile if psd_bins == PSD_BINS else radial_psd(img, bins=PSD_BINS)
    out["psd_slope"] = _slope_from_profile(slope_profile)
    return out


def _feature_table(items: Iterable[tuple[str, str, np.ndarray]], psd_bins: int) -> pd.DataFrame:
    """Rows of ``(dataset, image, integer [H, W, C] array)`` -> the feature table."""
    names = feature_names(psd_bins)
    meta: dict[str, list] = {c: [] for c in META_COLUMNS}
    values = []
    for dataset, image, arr in items:
        if arr.ndim == 2:
            arr = arr[:, :, None]
        feats = image_features(arr, psd_bins=psd_bins)
        values.append([feats[n] for n in names])
        for col, val in zip(META_COLUMNS, (str(dataset), str(image), *arr.shape[:3])):
            meta[col].append(val)
    df = pd.DataFrame(
        {
            col: pd.Series(vals, dtype=str if col in ("dataset", "image") else "int64")
            for col, vals in meta.items()
        }
    )
    feats_df = pd.DataFrame(
        np.array(values, dtype=np.float64).reshape(len(values), len(names)), columns=names
    )
    return pd.concat([df, feats_df], axis=1)


def dataset_features(
    prepared_path: str | os.PathLike,
    dataset: str,
    images: Sequence[str] | None,
    out_path: str | os.PathLike | None,
    psd_bins: int = PSD_BINS,
) -> pd.DataFrame:
    """Features of every image of a prepared stack, one row per image, written as Parquet.

    :param prepared_path: ``.npz`` stack from the prepare stage (keys ``clean/<image>``).
    :param dataset: dataset name, stored in the ``dataset`` column.
    :param images: image ids, in the row order wanted; ``None`` takes every ``clean/`` key
        of the stack in sorted order.
    :param out_path: Parquet file to write (atomically); ``None`` writes nothing.
    :param psd_bins: length of the radial PSD part.
    :return: the table: ``dataset, image, height, width, channels`` then the features
        (float64, :func:`feature_names` order).
    """
    from dipkit.io import load_from_stack, write_parquet

    if images is None:
        with np.load(prepared_path, allow_pickle=False) as data:
            images = sorted(k.split("/", 1)[1] for k in data.files if k.startswith("clean/"))
    items = ((dataset, image, load_from_stack(prepared_path, f"clean/{image}")) for image in images)
    df = _feature_table(items, psd_bins)
    if out_path is not None:
        write_parquet(out_path, df)
    return df


def features_from_files(
    files: Sequence,
    source_dir: str | os.PathLike | None,
    out_path: str | os.PathLike | None,
    crop_multiple: int = 32,
    psd_bins: int = PSD_BINS,
) -> pd.DataFrame:
    """Like :func:`dataset_features`, reading the image files themselves.

    Each clean file is read and centre-cropped exactly as the prepare stage does
    (:func:`dipkit.images.read_image`, :func:`dipkit.images.crop_to_multiple`), so the features
    match those of the prepared stack; ``noisy`` files are skipped.

    :param files: :class:`dipkit.manifest.DatasetFile` entries, in the row order wanted.
    :param source_dir: folder holding the downloaded files (``<source_dir>/<file>``); files
        with their own ``path`` (user datasets) ignore it.
    :param out_path: Parquet file to write (atomically); ``None`` writes nothing.
    """
    from pathlib import Path

    from dipkit.images import ImageError, crop_to_multiple, read_image
    from dipkit.io import write_parquet

    def items():
        for f in files:
            if f.role != "clean":
                continue
            path = Path(f.path) if f.path else Path(source_dir) / f.file
            img = read_image(path, f.channels)
            try:
                img = crop_to_multiple(img, crop_multiple)
            except ImageError as err:
                raise ImageError(f"{path}: {err}") from None
            yield f.dataset, f.image, img

    df = _feature_table(items(), psd_bins)
    if out_path is not None:
        write_parquet(out_path, df)
    return df
