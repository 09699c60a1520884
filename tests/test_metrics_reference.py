import numpy as np
import pytest
from conftest import synthetic_image

from dipkit.metrics import PAPER_SSIM_DATA_RANGE, psnr, ssim


def test_psnr_known_value():
    clean = np.zeros((10, 10, 1))
    pred = clean + 0.1  # MSE 0.01 -> 20 dB
    assert psnr(clean, pred) == pytest.approx(20.0)
    assert psnr(clean, pred, data_range=2.0) == pytest.approx(20.0 + 20 * np.log10(2))


def test_ssim_conventions():
    clean = synthetic_image(64, 64, 3)
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 0.1, clean.shape), 0, 1)
    s1, s2 = ssim(clean, noisy), ssim(clean, noisy, data_range=PAPER_SSIM_DATA_RANGE)
    assert 0 < s1 < s2 < 1  # a larger data_range shrinks the constants' denominator effect
    assert ssim(clean, clean) == pytest.approx(1.0)
    # colour SSIM is the mean of the per-channel SSIMs
    per = [ssim(clean[..., c : c + 1], noisy[..., c : c + 1]) for c in range(3)]
    assert s1 == pytest.approx(np.mean(per))


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(np.zeros((4, 4, 3)), np.zeros((4, 4, 1)))
