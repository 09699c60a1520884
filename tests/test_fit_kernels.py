"""dipkit's CPU kernels (bilinear x2 backward, train-mode BatchNorm) against PyTorch's, in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dipkit.fit import FitSettings, fit, make_input
from dipkit.fit.kernels import batch_norm_train, cpu_kernels, upsample_bilinear2x_adjoint
from dipkit.models import build_model

f64 = torch.float64


@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (1, 2, 1, 5), (1, 4, 3, 2), (2, 3, 7, 9), (1, 16, 16, 16)])
def test_upsample_adjoint_is_the_gradient_of_bilinear_x2(shape):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, dtype=f64, generator=gen, requires_grad=True)
    y = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    g = torch.randn(y.shape, dtype=f64, generator=gen)
    (expected,) = torch.autograd.grad(y, x, g)
    torch.testing.assert_close(upsample_bilinear2x_adjoint(g), expected, rtol=0, atol=1e-13)


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", [(1, 3, 1, 2), (1, 5, 8, 6), (1, 16, 32, 32)])
def test_batch_norm_train_matches_pytorch(shape, affine):
    gen = torch.Generator().manual_seed(1)
    x = (torch.randn(shape, dtype=f64, generator=gen) * 3 + 2).requires_grad_()
    c = shape[1]
    w = (torch.rand(c, dtype=f64, generator=gen) + 0.5).requires_grad_() if affine else None
    b = torch.randn(c, dtype=f64, generator=gen).requires_grad_() if affine else None
    inputs = [x] + ([w, b] if affine else [])
    expected = F.batch_norm(x, None, None, w, b, training=True, eps=1e-5)
    ours = batch_norm_train(x, w, b, eps=1e-5)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-12)
    g = torch.randn(expected.shape, dtype=f64, generator=gen)
    for a, e in zip(torch.autograd.grad(ours, inputs, g), torch.autograd.grad(expected, inputs, g)):
        torch.testing.assert_close(a, e, rtol=0, atol=1e-11)
    assert torch.autograd.gradcheck(lambda *t: batch_norm_train(*t), (x[:, :2, :3, :3].detach().clone().requires_grad_(),
                                                                      None, None))


def test_batch_norm_train_rejects_other_shapes():
    with pytest.raises(ValueError, match=r"\[1, C, H, W\]"):
        batch_norm_train(torch.zeros(2, 3, 4, 4), None, None)


def _grad_name(t: torch.Tensor) -> str:
    return type(t.grad_fn).__name__


def test_cpu_kernels_route_only_the_calls_they_implement():
    x = torch.rand(1, 4, 6, 5, requires_grad=True)
    up = nn.Upsample(scale_factor=2, mode="bilinear")
    up_size = nn.Upsample(size=(12, 10), mode="bilinear")
    bn = nn.BatchNorm2d(4, track_running_stats=False)
    with cpu_kernels():
        assert _grad_name(up(x)) == "_UpsampleBilinear2xBackward"
        assert _grad_name(up_size(x)) == "_UpsampleBilinear2xBackward"
        assert _grad_name(bn(x)) == "_BatchNormTrainBackward"
        # everything else falls through to PyTorch
        assert "UpsampleBilinear2D" in _grad_name(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)(x))
        assert "UpsampleBilinear2D" in _grad_name(nn.Upsample(size=(13, 10), mode="bilinear")(x))
        assert "UpsampleNearest" in _grad_name(nn.Upsample(scale_factor=2)(x))
        assert "BatchNorm" in _grad_name(nn.BatchNorm2d(4)(x)) and "Train" not in _grad_name(nn.BatchNorm2d(4)(x))
        assert "Train" not in _grad_name(bn(torch.rand(2, 4, 6, 5, requires_grad=True)))
        assert "Train" not in _grad_name(bn(x.transpose(2, 3)))  # not contiguous
        bn.eval()  # without running statistics eval mode still normalises with the batch's own
        assert _grad_name(bn(x)) == "_BatchNormTrainBackward"
        # the forward of the upsampling is PyTorch's own kernel, bit for bit
        assert torch.equal(up(x), F.interpolate(x, scale_factor=2, mode="bilinear"))
    # outside the block, PyTorch's kernels
    assert "UpsampleBilinear2D" in _grad_name(up(x))
    with cpu_kernels(enabled=False):
        assert "UpsampleBilinear2D" in _grad_name(up(x))


@pytest.mark.parametrize(
    "arch,opts",
    [("hourglass", {"levels": 2, "width": 8}), ("conv_decoder_after", {"width": 8})],
)
def test_engine_with_and_without_cpu_kernels_agree_in_float64(arch, opts):
    torch.manual_seed(3)
    net = build_model(arch, 3, (32, 32), **opts).to(f64)
    twin = build_model(arch, 3, (32, 32), **opts).to(f64)
    twin.load_state_dict(net.state_dict())
    z = make_input(net.in_channels, net.input_size, 1, 0.1, f64)
    gen = torch.Generator().manual_seed(4)
    clean = torch.rand(1, 3, 32, 32, dtype=f64, generator=gen)
    noisy = (clean + 0.1 * torch.randn(clean.shape, dtype=f64, generator=gen)).clamp(0, 1)
    settings = FitSettings(iterations=8, ssim_every=4)
    fast = fit(net, z, noisy, clean, settings, seed=2)
    plain = fit(twin, z, noisy, clean, FitSettings(iterations=8, ssim_every=4, cpu_kernels=False), seed=2)
    for key in ("loss", "psnr_raw", "psnr_ema"):
        torch.testing.assert_close(torch.from_numpy(fast.trajectory[key]), torch.from_numpy(plain.trajectory[key]),
                                   rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(fast.output, plain.output, rtol=0, atol=1e-6)
    for p, q in zip(net.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-9)
