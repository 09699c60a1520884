"""Image metrics as torch functions that run on the tensors' own device.

These are the on-device counterparts of :mod:`dipkit.metrics.reference` (numpy /
scikit-image). They are used inside the fit loop, where copying the image to the host
every iteration would force a device synchronisation.

Conventions
-----------
* Tensors are batches ``[B, C, H, W]``; every function returns one value per batch item,
  a tensor of shape ``[B]`` with dtype ``float64`` on the input's device. Nothing is
  copied to the host (no ``.item()``, no numpy).
* Argument order is ``(pred, target)``, as in torch losses. (The numpy reference takes
  ``(clean, pred)``, as scikit-image does; both metrics are symmetric in their two images
  except for the role of ``data_range``, which is given explicitly here.)
* ``psnr`` equals ``skimage.metrics.peak_signal_noise_ratio(target_hwc, pred_hwc,
  data_range=data_range)``: the difference is formed in the input dtype, squared, and
  averaged with float64 accumulation, as scikit-image does.
* ``ssim`` equals ``skimage.metrics.structural_similarity(target_hwc, pred_hwc,
  channel_axis=-1, data_range=data_range)`` with scikit-image's defaults: 7x7 uniform
  window, sample covariance (``NP / (NP - 1)``), ``K1 = 0.01``, ``K2 = 0.03``, the SSIM
  map cropped by ``(win_size - 1) // 2`` pixels on each side before averaging, and the
  result averaged over channels. It is computed in float64 whatever the input dtype.

Why no padding is needed for SSIM: scikit-image filters with ``mode='reflect'`` and then
discards a ``(win_size - 1) // 2`` border, so every kept pixel's window lies inside the
image. A *valid* (unpadded) window average gives exactly the kept pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["mse", "psnr", "ssim"]


def _check_pair(pred: torch.Tensor, target: torch.Tensor, ndim: int | None = None) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"shapes differ: pred {tuple(pred.shape)} vs target {tuple(target.shape)}")
    if ndim is not None and pred.dim() != ndim:
        raise ValueError(f"expected a batch [B, C, H, W], got shape {tuple(pred.shape)}")
    if pred.dim() < 2:
        raise ValueError(f"expected a batch [B, ...], got shape {tuple(pred.shape)}")
    if pred.device != target.device:
        raise ValueError(f"devices differ: pred on {pred.device}, target on {target.device}")


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per batch item, accumulated in float64.

    :param torch.Tensor pred: ``[B, ...]`` estimate.
    :param torch.Tensor target: ``[B, ...]`` reference, same shape and device.
    :return: ``[B]`` float64 tensor on the input device.

    The difference and its square are formed in the promoted input dtype (as
    ``skimage.metrics.mean_squared_error`` does for float32 input); only the sum is
    accumulated in float64.
    """
    _check_pair(pred, target)
    diff = pred - target
    dims = tuple(range(1, diff.dim()))
    return torch.mean(diff * diff, dim=dims, dtype=torch.float64)


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, per batch item.

    :param torch.Tensor pred: ``[B, C, H, W]`` estimate.
    :param torch.Tensor target: ``[B, C, H, W]`` reference, same shape and device.
    :param float data_range: peak value (1 for images in ``[0, 1]``).
    :return: ``[B]`` float64 tensor, ``10 * log10(data_range**2 / mse)``; ``inf`` where the
        images are identical.

    Matches ``skimage.metrics.peak_signal_noise_ratio(target_hwc, pred_hwc,
    data_range=data_range)`` (to about 1e-12 dB in float64).
    """
    err = mse(pred, target)
    return 10.0 * torch.log10(float(data_range) ** 2 / err)


def ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    *,
    win_size: int = 7,
    k1: float = 0.01,
    k2: float = 0.03,
    use_sample_covariance: bool = True,
) -> torch.Tensor:
    """Mean structural similarity per batch item, scikit-image's definition.

    :param torch.Tensor pred: ``[B, C, H, W]`` estimate.
    :param torch.Tensor target: ``[B, C, H, W]`` reference, same shape and device.
    :param float data_range: dynamic range ``R`` in ``C1 = (k1 R)^2``, ``C2 = (k2 R)^2``.
        1.0 is the standard choice for images in ``[0, 1]``; the paper's code effectively
        used 2.0 (scikit-image 0.19 inferred it for float images).
    :param int win_size: odd side of the uniform window (scikit-image default 7).
    :param float k1: scikit-image default 0.01.
    :param float k2: scikit-image default 0.03.
    :param bool use_sample_covariance: normalise covariances by ``NP - 1`` (default, as
        scikit-image) instead of ``NP``, with ``NP = win_size**2``.
    :return: ``[B]`` float64 tensor: for each item, the mean over channels of the
        per-channel mean SSIM over the map cropped by ``(win_size - 1) // 2`` pixels.

    Equals ``skimage.metrics.structural_similarity(target_hwc, pred_hwc, channel_axis=-1,
    data_range=data_range)`` for float64 input to about 1e-12. The computation is done in
    float64 on the input device with one window-average (``avg_pool2d``) call.
    """
    _check_pair(pred, target, ndim=4)
    if win_size < 1 or win_size % 2 != 1:
        raise ValueError(f"win_size must be odd and positive, got {win_size}")
    _, c, h, w = pred.shape
    if h < win_size or w < win_size:
        raise ValueError(f"image of {h}x{w} pixels is smaller than the {win_size}x{win_size} SSIM window")
    x = pred.to(torch.float64)
    y = target.to(torch.float64)
    # [B, 5C, H, W] -> window means [B, 5C, H - win + 1, W - win + 1] (valid region only)
    stats = F.avg_pool2d(torch.cat((x, y, x * x, y * y, x * y), dim=1), win_size, stride=1)
    ux, uy, uxx, uyy, uxy = torch.split(stats, c, dim=1)
    n_px = win_size * win_size
    cov_norm = n_px / (n_px - 1) if use_sample_covariance else 1.0
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1 = (k1 * float(data_range)) ** 2
    c2 = (k2 * float(data_range)) ** 2
    a1 = 2 * ux * uy + c1
    a2 = 2 * vxy + c2
    b1 = ux * ux + uy * uy + c1
    b2 = vx + vy + c2
    s_map = (a1 * a2) / (b1 * b2)  # [B, C, H - win + 1, W - win + 1]
    return s_map.mean(dim=(2, 3)).mean(dim=1)
