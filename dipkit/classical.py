"""Classical (non-learnt) denoisers run by the fit stage beside the DIP methods.

Each takes a noisy ``[H, W, C]`` float image in ``[0, 1]`` and the noise setting and returns
the estimate; :func:`run_classical` wraps it with the same result fields as a DIP fit
(a single "iteration", no trajectory).
"""

from __future__ import annotations

import time

import numpy as np

from dipkit.metrics.reference import PAPER_SSIM_DATA_RANGE, psnr, ssim
from dipkit.noise import NoiseSpec


def noise_sigma(noisy: np.ndarray, noise_id: str) -> tuple[float, str]:
    """Noise standard deviation for a classical denoiser (on the [0, 1] scale) and how it was got.

    Gaussian: the true sigma / 255 (``oracle``). Otherwise scikit-image's wavelet estimate,
    averaged over channels (``estimated``).
    """
    spec = NoiseSpec.parse(noise_id)
    if spec.kind == "gaussian":
        return spec.level / 255.0, "oracle"
    from skimage.restoration import estimate_sigma

    return float(np.mean(estimate_sigma(noisy, channel_axis=-1, average_sigmas=False))), "estimated"


def bm3d_denoise(noisy: np.ndarray, sigma: float) -> np.ndarray:
    """BM3D (grayscale) or CBM3D (RGB) of an ``[H, W, C]`` image; returns ``[H, W, C]`` float32."""
    import bm3d

    z = np.asarray(noisy, dtype=np.float64)
    if z.shape[2] == 1:
        out = bm3d.bm3d(z[:, :, 0], sigma_psd=sigma)[:, :, None]
    elif z.shape[2] == 3:
        out = bm3d.bm3d_rgb(z, sigma_psd=sigma)
    else:
        raise ValueError(f"BM3D needs 1 or 3 channels, got {z.shape[2]}")
    return np.clip(out, 0, 1).astype(np.float32)


DENOISERS = {"bm3d": bm3d_denoise}


def run_classical(name: str, clean: np.ndarray | None, noisy: np.ndarray, noise_id: str) -> dict:
    """Denoise with classical method ``name``; return the output and its scores.

    :return: dict with ``output`` ``[H, W, C]``, ``psnr_input``, ``psnr_last``, ``ssim_last``,
        ``ssim_last_paper``, ``wall_time_s``, ``sigma`` and ``sigma_source``.
    """
    if name not in DENOISERS:
        raise ValueError(f"unknown classical denoiser {name!r}; known: {sorted(DENOISERS)}")
    sigma, source = noise_sigma(noisy, noise_id)
    start = time.perf_counter()
    out = DENOISERS[name](noisy, sigma)
    wall = time.perf_counter() - start
    nan = float("nan")
    return {
        "output": out,
        "psnr_input": psnr(clean, noisy) if clean is not None else nan,
        "psnr_last": psnr(clean, out) if clean is not None else nan,
        "ssim_last": ssim(clean, out) if clean is not None else nan,
        "ssim_last_paper": ssim(clean, out, data_range=PAPER_SSIM_DATA_RANGE) if clean is not None else nan,
        "wall_time_s": wall,
        "sigma": sigma,
        "sigma_source": source,
    }
