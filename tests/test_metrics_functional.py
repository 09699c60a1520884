"""dipkit.metrics.functional agrees with scikit-image (float64) and stays on the device."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from dipkit.metrics.functional import mse, psnr, ssim


def _pair(rng: np.random.Generator, b: int, c: int, h: int, w: int, dtype=np.float64):
    """A structured clean batch (gradients + a disc + texture) and a noisy estimate."""
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    clean = np.empty((b, c, h, w))
    for i in range(b):
        for ch in range(c):
            cx, cy, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.3)
            disc = ((xx - cx) ** 2 + (yy - cy) ** 2 < r**2).astype(float)
            a = rng.uniform(0, 1, 3)
            clean[i, ch] = np.clip(
                0.3 * (a[0] * xx + a[1] * yy) + 0.4 * disc + 0.1 * rng.random((h, w)), 0, 1
            )
    pred = np.clip(clean + rng.uniform(0.02, 0.2) * rng.standard_normal(clean.shape), 0, 1)
    return clean.astype(dtype), pred.astype(dtype)


def _hwc(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(1, 2, 0))


CASES = [(2, 1, 32, 32), (3, 3, 32, 32), (1, 3, 23, 41), (2, 1, 7, 9), (1, 3, 64, 48)]


@pytest.mark.parametrize("shape", CASES)
@pytest.mark.parametrize("data_range", [1.0, 2.0])
def test_psnr_matches_skimage_float64(shape, data_range):
    rng = np.random.default_rng(zlib.crc32(repr((shape, data_range, "psnr")).encode()))
    clean, pred = _pair(rng, *shape)
    got = psnr(torch.from_numpy(pred), torch.from_numpy(clean), data_range=data_range)
    assert got.shape == (shape[0],) and got.dtype == torch.float64
    for i in range(shape[0]):
        ref = peak_signal_noise_ratio(_hwc(clean[i]), _hwc(pred[i]), data_range=data_range)
        assert abs(got[i].item() - ref) < 1e-9


@pytest.mark.parametrize("shape", CASES)
@pytest.mark.parametrize("data_range", [1.0, 2.0])
def test_ssim_matches_skimage_float64(shape, data_range):
    rng = np.random.default_rng(zlib.crc32(repr((shape, data_range, "ssim")).encode()))
    clean, pred = _pair(rng, *shape)
    got = ssim(torch.from_numpy(pred), torch.from_numpy(clean), data_range=data_range)
    assert got.shape == (shape[0],) and got.dtype == torch.float64
    for i in range(shape[0]):
        ref = structural_similarity(_hwc(clean[i]), _hwc(pred[i]), channel_axis=-1, data_range=data_range)
        assert abs(got[i].item() - ref) < 1e-9, (got[i].item(), ref)


def test_float32_inputs_follow_skimage_float32():
    rng = np.random.default_rng(7)
    clean, pred = _pair(rng, 1, 3, 40, 40, dtype=np.float32)
    p = psnr(torch.from_numpy(pred), torch.from_numpy(clean)).item()
    assert abs(p - peak_signal_noise_ratio(_hwc(clean[0]), _hwc(pred[0]), data_range=1)) < 1e-6
    # SSIM is computed in float64 here; scikit-image stays in float32, so allow its rounding
    s = ssim(torch.from_numpy(pred), torch.from_numpy(clean)).item()
    ref64 = structural_similarity(
        _hwc(clean[0]).astype(np.float64),
        _hwc(pred[0]).astype(np.float64),
        channel_axis=-1,
        data_range=1,
    )
    assert abs(s - ref64) < 1e-9
    ref32 = structural_similarity(_hwc(clean[0]), _hwc(pred[0]), channel_axis=-1, data_range=1)
    assert abs(s - ref32) < 1e-4


def test_identical_images_and_mse():
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    assert torch.isinf(psnr(x, x)).all()
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64), atol=1e-12)
    y = x + 0.1
    assert torch.allclose(mse(y, x), torch.full((2,), 0.01, dtype=torch.float64))
    assert torch.allclose(psnr(y, x), torch.full((2,), 20.0, dtype=torch.float64))


def test_no_host_transfer():
    """On the meta device every host read (.item(), numpy) would fail."""
    x = torch.empty(2, 3, 32, 32, device="meta")
    assert psnr(x, x).shape == (2,) and psnr(x, x).device.type == "meta"
    assert ssim(x, x, data_range=2.0).shape == (2,) and ssim(x, x).device.type == "meta"


def test_input_checks():
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(x, x[..., :8])
    with pytest.raises(ValueError, match="smaller than"):
        ssim(torch.rand(1, 1, 6, 20), torch.rand(1, 1, 6, 20))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        ssim(x[0], x[0])
    with pytest.raises(ValueError, match="odd"):
        ssim(x, x, win_size=4)
