"""The optimised engine against the paper-like reference loop (issue 8: no loss of fidelity).

DIP in float32 is chaotic (any change of summation order sends runs apart within a few
steps), so the two loops are compared in float64, where they must agree to rounding.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from dipkit.fit import FitSettings, fit, make_input
from dipkit.fit.device import tune_host_allocator
from dipkit.fit.reference import reference_fit
from dipkit.models import build_model
from tests.conftest import REPO, synthetic_image


def _setup(arch: str, opts: dict, size: int, dtype=torch.float64, device="cpu", channels=3):
    torch.manual_seed(11)
    net = build_model(arch, channels, (size, size), **opts).to(device, dtype)
    z = make_input(net.in_channels, net.input_size, 5, 0.1, dtype, device)
    clean_np = synthetic_image(size, size, channels, seed=2)
    rng = np.random.default_rng(3)
    noisy_np = np.clip(clean_np + rng.normal(0, 25 / 255, clean_np.shape), 0, 1)

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None].to(device, dtype)

    return net, z, t(noisy_np), t(clean_np)


@pytest.mark.parametrize(
    "arch,opts,channels,size",
    [
        ("hourglass", {"levels": 2, "width": 8}, 3, 32),
        ("conv_decoder_after", {"width": 8}, 3, 64),
        # 128^2: a 4x4 input code (at 32^2 it is 1x1, its first BatchNorm sees four equal
        # values and the gradients are rounding noise)
        ("deep_decoder", {"width": 8}, 1, 128),
    ],
)
def test_engine_matches_reference_loop_float64(arch, opts, channels, size):
    """The engine -- with its CPU kernels and fused Adam -- against the reference loop
    with PyTorch's kernels."""
    n = 6
    settings = FitSettings(iterations=n, ssim_every=2, reg_noise_std=1 / 30, exp_weight=0.99)
    net, z, noisy, clean = _setup(arch, opts, size, channels=channels)
    twin = build_model(arch, channels, (size, size), **opts).to(dtype=torch.float64)
    twin.load_state_dict(net.state_dict())

    ours = fit(net, z, noisy, clean, settings, seed=9)
    ref = reference_fit(twin, z, noisy, clean, settings, seed=9, print_every=1)

    tr = ours.trajectory
    np.testing.assert_allclose(tr["loss"], ref["loss"], rtol=1e-10)
    for key in ("psnr_raw", "psnr_ema"):
        np.testing.assert_allclose(tr[key], ref[key], rtol=0, atol=1e-8, err_msg=key)
    its = ours.ssim_trajectory["iteration"]
    assert list(its) == [2, 4, 6]
    np.testing.assert_allclose(ours.ssim_trajectory["ssim"], ref["ssim"][its - 1], rtol=0, atol=1e-10)
    np.testing.assert_allclose(ours.output.double().numpy(), ref["output"].numpy(), rtol=0, atol=1e-6)
    # the parameters after the last step agree too
    for p, q in zip(net.parameters(), twin.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=0, atol=1e-9)


def test_reference_loop_float32_scores_like_scikit_image():
    """The reference's per-iteration scores are scikit-image's, on the host copy."""
    settings = FitSettings(iterations=3, exp_weight=0.0, reg_noise_std=0.0)
    net, z, noisy, clean = _setup("hourglass", {"levels": 2, "width": 8}, 32, dtype=torch.float32)
    ref = reference_fit(net, z, noisy, clean, settings, seed=1, print_every=1)
    assert ref["loss"].shape == (3,) and np.isfinite(ref["psnr_raw"]).all()
    assert ref["wall_time_s"] > 0 and ref["peak_memory_bytes"] > 0
    # exp_weight 0: the smoothed output is the raw output
    np.testing.assert_array_equal(ref["psnr_raw"], ref["psnr_ema"])
    # by default the raw output is scored on the paper's print iterations only (0, 100, ...)
    ref = reference_fit(net, z, noisy, clean, settings, seed=1)
    assert np.isfinite(ref["psnr_raw"][0]) and np.isnan(ref["psnr_raw"][1:]).all()
    assert np.isfinite(ref["ssim"]).all()


_CHILD = r"""
import json, sys, torch, numpy as np
sys.path.insert(0, sys.argv[1])
from dipkit.fit import FitSettings, fit, make_input
from dipkit.fit.device import tune_host_allocator
from dipkit.models import build_model
torch.set_num_threads(1)
torch.manual_seed(0)
net = build_model("hourglass", 3, (32, 32), levels=2, width=8)
z = make_input(net.in_channels, net.input_size, 1)
g = torch.Generator().manual_seed(2)
noisy = torch.rand(1, 3, 32, 32, generator=g)
r = fit(net, z, noisy, None, FitSettings(iterations=5), seed=3)
print(json.dumps({"state": tune_host_allocator(), "loss": r.trajectory["loss"].tolist(),
                  "out": r.output.numpy().tobytes().hex()}))
"""


def test_allocator_tuning_leaves_results_bit_identical(tmp_path):
    """The glibc tuning changes where memory comes from, never a number."""
    runs = {}
    for label, extra in (("tuned", {}), ("default", {"DIPKIT_NO_ALLOCATOR_TUNING": "1"})):
        env = {k: v for k, v in os.environ.items() if k != "DIPKIT_NO_ALLOCATOR_TUNING"}
        env.update(extra)
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, str(REPO)], env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        runs[label] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert runs["default"]["state"] == "disabled"
    assert runs["tuned"]["state"] in ("tuned", "unavailable")
    if sys.platform.startswith("linux"):
        assert runs["tuned"]["state"] == "tuned"
    assert runs["tuned"]["loss"] == runs["default"]["loss"]
    assert runs["tuned"]["out"] == runs["default"]["out"]


def test_tune_host_allocator_is_idempotent():
    first = tune_host_allocator()
    assert tune_host_allocator() == first


@pytest.mark.parametrize("key,value", [("autocast", "fp16"), ("compile", "fast")])
def test_speed_settings_are_validated(key, value):
    with pytest.raises(ValueError, match=key):
        FitSettings(**{key: value})


def test_bf16_autocast_runs_and_returns_the_image_dtype(device):
    """bf16 autocast is an option (on CPU slow but correct in shape and dtype)."""
    net, z, noisy, clean = _setup(
        "hourglass", {"levels": 2, "width": 8}, 32, dtype=torch.float32, device=device
    )
    r = fit(net, z, noisy, clean, FitSettings(iterations=3, autocast="bf16"), seed=1)
    assert r.output.dtype == torch.float32 and np.isfinite(r.trajectory["loss"]).all()
    assert (
        abs(
            r.psnr_last
            - fit(
                *_setup("hourglass", {"levels": 2, "width": 8}, 32, device=device, dtype=torch.float32),
                FitSettings(iterations=3),
                seed=1,
            ).psnr_last
        )
        < 3.0
    )
