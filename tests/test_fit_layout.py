"""CPU fits in channels-last (``FitSettings.cpu_layout``): same functions as NCHW, other rounding."""

from __future__ import annotations

import pytest
import torch

from dipkit.fit import FitSettings, fit, make_input
from dipkit.fit.engine import resolve_cpu_layout
from dipkit.models import build_model

f64 = torch.float64


def _problem(arch, opts, size, dtype=f64):
    torch.manual_seed(3)
    net = build_model(arch, 3, (size, size), **opts).to(dtype)
    z = make_input(net.in_channels, net.input_size, 1, 0.1, dtype)
    gen = torch.Generator().manual_seed(4)
    clean = torch.rand(1, 3, size, size, dtype=dtype, generator=gen)
    noisy = (clean + 0.1 * torch.randn(clean.shape, dtype=dtype, generator=gen)).clamp(0, 1)
    return net, z, noisy, clean


@pytest.mark.parametrize(
    "arch,opts,size",
    [
        ("hourglass", {"levels": 2, "width": 8}, 32),
        ("conv_decoder_after", {"width": 8}, 64),
        ("deep_decoder", {"width": 8}, 128),
    ],
)
def test_channels_last_and_nchw_fits_agree_in_float64(arch, opts, size):
    net, z, noisy, clean = _problem(arch, opts, size)
    twin = build_model(arch, 3, (size, size), **opts).to(f64)
    twin.load_state_dict(net.state_dict())
    # no perturbation: the two layouts draw their noise in different memory orders
    settings = dict(iterations=8, ssim_every=4, reg_noise_std=0.0)
    cl = fit(net, z, noisy, clean, FitSettings(cpu_layout="channels_last", **settings), seed=2)
    nchw = fit(twin, z, noisy, clean, FitSettings(cpu_layout="nchw", **settings), seed=2)
    for key in ("loss", "psnr_raw", "psnr_ema"):
        torch.testing.assert_close(
            torch.from_numpy(cl.trajectory[key]), torch.from_numpy(nchw.trajectory[key]), rtol=1e-9, atol=1e-9
        )
    torch.testing.assert_close(cl.output, nchw.output, rtol=0, atol=1e-6)
    for p, q in zip(net.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-9)


def test_channels_last_fit_leaves_the_network_and_output_in_the_default_layout():
    net, z, noisy, clean = _problem("hourglass", {"levels": 2, "width": 8}, 32, torch.float32)
    params = list(net.parameters())
    r = fit(net, z, noisy, clean, FitSettings(iterations=3, cpu_layout="channels_last"), seed=1)
    assert [p is q for p, q in zip(net.parameters(), params)] == [True] * len(params)
    assert all(p.is_contiguous() for p in net.parameters())
    assert r.output.is_contiguous() and r.output.shape == noisy.shape


def test_channels_last_fits_repeat_bit_for_bit():
    def run():
        net, z, noisy, clean = _problem("hourglass", {"levels": 2, "width": 8}, 32, torch.float32)
        return fit(net, z, noisy, clean, FitSettings(iterations=5, cpu_layout="channels_last"), seed=7)

    a, b = run(), run()
    assert torch.equal(a.output, b.output)
    assert (a.trajectory["loss"] == b.trajectory["loss"]).all()


def test_auto_layout_is_channels_last_except_with_fir_upsamplers():
    plain = build_model("hourglass", 3, (32, 32), levels=2, width=8)
    fir = build_model("hourglass", 3, (32, 32), levels=2, width=8, upsample="L-60")
    assert resolve_cpu_layout(plain) == "channels_last"
    assert resolve_cpu_layout(fir) == "nchw"
    assert resolve_cpu_layout(fir, "channels_last") == "channels_last"
    assert resolve_cpu_layout(plain, "nchw") == "nchw"


def test_bad_cpu_layout_is_refused():
    with pytest.raises(ValueError, match="cpu_layout must be one of auto, channels_last, nchw"):
        FitSettings(cpu_layout="nhwc")
