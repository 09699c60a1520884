"""Batched fits (dipkit.fit.batched) equal separate fits: float64, CPU, plus CUDA where present."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dipkit.fit import FitDivergedError, FitResult, FitSettings, fit, make_input
from dipkit.fit.batched import fit_batch
from dipkit.models import build_model
from tests.conftest import synthetic_image


def _case(j, device, dtype=torch.float64, size=32):
    torch.manual_seed(100 + j)
    net = build_model("hourglass", 3, (size, size), levels=2, width=8).to(device, dtype)
    z = make_input(net.in_channels, net.input_size, 7 + j, 0.1, dtype, device)
    clean_np = synthetic_image(size, size, 3, seed=j)
    noisy_np = np.clip(clean_np + np.random.default_rng(j).normal(0, 25 / 255, clean_np.shape), 0, 1)

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None].to(device, dtype)

    return net, z, t(noisy_np), t(clean_np)


def test_batched_fits_equal_separate_fits_in_float64(device):
    settings = FitSettings(iterations=5, ssim_every=2, reg_noise_std=1 / 30, exp_weight=0.99)
    cases = [_case(j, device) for j in range(3)]
    twins = []
    for net, *_ in cases:
        twin = build_model("hourglass", 3, (32, 32), levels=2, width=8).to(device, torch.float64)
        twin.load_state_dict(net.state_dict())
        twins.append(twin)
    batch = fit_batch(
        [c[0] for c in cases],
        [c[1] for c in cases],
        [c[2] for c in cases],
        [c[3] for c in cases],
        settings,
        seeds=[11, 12, 13],
    )
    for j, (_, z, noisy, clean) in enumerate(cases):
        alone = fit(twins[j], z, noisy, clean, settings, seed=11 + j)
        got = batch[j]
        assert isinstance(got, FitResult) and got.seed == 11 + j and got.iterations == 5
        np.testing.assert_allclose(got.trajectory["loss"], alone.trajectory["loss"], rtol=1e-9)
        for key in ("psnr_ema", "psnr_raw", "psnr_noisy"):
            np.testing.assert_allclose(got.trajectory[key], alone.trajectory[key], atol=1e-7, err_msg=key)
        np.testing.assert_array_equal(got.trajectory["iteration"], alone.trajectory["iteration"])
        np.testing.assert_array_equal(got.ssim_trajectory["iteration"], [2, 4, 5])
        np.testing.assert_allclose(got.ssim_trajectory["ssim"], alone.ssim_trajectory["ssim"], atol=1e-8)
        np.testing.assert_allclose(got.output.numpy(), alone.output.numpy(), atol=1e-6)
        for key in ("psnr_last", "ssim_last", "ssim_last_paper", "psnr_peak", "psnr_peak_raw", "psnr_input"):
            assert getattr(got, key) == pytest.approx(getattr(alone, key), abs=1e-5), key
        assert got.psnr_peak_iteration == alone.psnr_peak_iteration


def test_batched_fit_refuses_backtracking():
    net, z, noisy, clean = _case(0, "cpu")
    with pytest.raises(ValueError, match="backtracking"):
        fit_batch([net], [z], [noisy], [clean], FitSettings(iterations=1, backtracking=True), seeds=[1])


def test_batched_fit_rejects_mismatched_inputs():
    net, z, noisy, clean = _case(0, "cpu")
    with pytest.raises(ValueError, match="equally many"):
        fit_batch([net], [z, z], [noisy], [clean], FitSettings(iterations=1), seeds=[1])


def test_batched_fits_without_ground_truth_equal_separate_fits():
    settings = FitSettings(iterations=4, ssim_every=2, reg_noise_std=1 / 30, exp_weight=0.99)
    cases = [_case(j, "cpu") for j in range(2)]
    twins = []
    for net, *_ in cases:
        twin = build_model("hourglass", 3, (32, 32), levels=2, width=8).to("cpu", torch.float64)
        twin.load_state_dict(net.state_dict())
        twins.append(twin)
    calls = []
    batch = fit_batch(
        [c[0] for c in cases],
        [c[1] for c in cases],
        [c[2] for c in cases],
        None,
        settings,
        seeds=[3, 4],
        progress=lambda i, loss: calls.append((i, loss)),
    )
    assert [i for i, _ in calls] == [1, 2, 3, 4] and all(loss > 0 for _, loss in calls)
    for j, (_, z, noisy, _) in enumerate(cases):
        alone = fit(twins[j], z, noisy, None, settings, seed=3 + j)
        got = batch[j]
        np.testing.assert_allclose(got.trajectory["loss"], alone.trajectory["loss"], rtol=1e-9)
        np.testing.assert_allclose(got.trajectory["psnr_noisy"], alone.trajectory["psnr_noisy"], atol=1e-7)
        assert (
            np.isnan(got.trajectory["psnr_ema"]).all() and np.isnan(got.psnr_last) and np.isnan(got.psnr_peak)
        )
        assert len(got.ssim_trajectory["iteration"]) == len(alone.ssim_trajectory["iteration"]) == 0
        np.testing.assert_allclose(got.output.numpy(), alone.output.numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="ground truth for every fit"):
        fit_batch(
            [c[0] for c in cases],
            [c[1] for c in cases],
            [c[2] for c in cases],
            [cases[0][3], None],
            settings,
            seeds=[3, 4],
        )


@pytest.mark.parametrize("check_every", [0, 1])
def test_batched_fit_names_the_diverged_fit_and_its_first_bad_iteration(check_every):
    """A NaN in fit 1's target makes its loss NaN from the first iteration: the error names fit 1
    and iteration 1, whether the loss is watched during the fit or checked at its end."""
    cases = [_case(j, "cpu") for j in range(2)]
    cases[1][2][0, 0, 0, 0] = float("nan")
    settings = FitSettings(iterations=5, divergence_check_every=check_every)
    with pytest.raises(FitDivergedError, match=r"fit 1 of the batch diverged: .* at iteration 1 of") as info:
        fit_batch(*([c[i] for c in cases] for i in range(4)), settings, seeds=[1, 2])
    assert info.value.iteration == 1
