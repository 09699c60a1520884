"""CUDA graphs in the fit loop (dipkit.fit.cuda_graphs): when a fit's step is captured, the
fallback with its reason, the step hooks, and -- on a CUDA device -- graph fits against eager
fits (float64: equal to rounding; float32: the same PSNR statistics)."""

from __future__ import annotations

import logging
import statistics

import numpy as np
import pytest
import torch
from torch import nn

from dipkit.fit import FitSettings, fit, make_input
from dipkit.fit.batched import fit_batch
from dipkit.fit.cuda_graphs import WARMUP_ITERATIONS, eager_reason
from dipkit.models import build_model
from tests.conftest import synthetic_image

CUDA = torch.cuda.is_available()
cuda_only = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")


def _problem(seed=0, size=32, width=8, dtype=torch.float64, device="cpu", net_seed=None):
    torch.manual_seed(100 + (seed if net_seed is None else net_seed))
    net = build_model("hourglass", 3, (size, size), levels=2, width=width).to(device, dtype)
    z = make_input(net.in_channels, net.input_size, 7 + seed, 0.1, dtype, device)
    clean_np = synthetic_image(size, size, 3, seed=seed)
    noisy_np = np.clip(clean_np + np.random.default_rng(seed).normal(0, 25 / 255, clean_np.shape), 0, 1)

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None].to(device, dtype)

    return net, z, t(noisy_np), t(clean_np)


def _twin(net):
    twin = build_model("hourglass", 3, net.input_size, levels=2, width=net.in_channels)
    twin.load_state_dict(net.state_dict())
    p = next(net.parameters())
    return twin.to(p.device, p.dtype)


# --------------------------------------------------------------------------- CPU


def test_settings_refuse_unknown_modes():
    assert FitSettings().cuda_graphs == "auto"
    with pytest.raises(ValueError, match="cuda_graphs must be one of auto, on, off"):
        FitSettings(cuda_graphs="yes")


def test_eager_reasons():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert eager_reason("auto", cuda, iterations=3000) is None
    assert eager_reason("on", cuda, iterations=3000) is None
    assert eager_reason("off", cuda, iterations=3000) == "fit.cuda_graphs is off"
    assert "this fit runs on cpu" in eager_reason("auto", cpu, iterations=3000)
    assert "backtracking" in eager_reason("auto", cuda, iterations=3000, backtracking=True)
    assert "compile" in eager_reason("auto", cuda, iterations=3000, compile="default")
    assert "autocast" in eager_reason("auto", cuda, iterations=3000, autocast="bf16")
    assert "warm-up" in eager_reason("auto", cuda, iterations=WARMUP_ITERATIONS)
    assert "warm-up" in eager_reason("on", cuda, iterations=2)  # too short: eager, no error
    for kw in ({}, {"backtracking": True}, {"autocast": "bf16"}):
        device = cpu if not kw else cuda
        with pytest.raises(ValueError, match=r"fit.cuda_graphs is 'on' but .*; set fit.cuda_graphs to auto"):
            eager_reason("on", device, iterations=3000, **kw)


def test_cpu_fit_runs_eagerly_and_logs_why_once(caplog):
    import dipkit.fit.cuda_graphs as cg

    cg._logged.discard("CUDA graphs need a CUDA device and this fit runs on cpu")
    with caplog.at_level(logging.INFO, logger="dipkit.fit"):
        for _ in range(2):
            r = fit(*_problem(), FitSettings(iterations=5), seed=1)
            assert r.cuda_graph is False
    lines = [rec.getMessage() for rec in caplog.records if "eager fit steps" in rec.getMessage()]
    assert lines == ["eager fit steps: CUDA graphs need a CUDA device and this fit runs on cpu"]


def test_on_refuses_a_cpu_fit_with_its_reason():
    with pytest.raises(ValueError, match=r"fit.cuda_graphs is 'on' but CUDA graphs need a CUDA device"):
        fit(*_problem(), FitSettings(iterations=5, cuda_graphs="on"), seed=1)
    net, z, noisy, clean = _problem()
    with pytest.raises(ValueError, match="cuda_graphs is 'on'"):
        fit_batch([net], [z], [noisy], [clean], FitSettings(iterations=5, cuda_graphs="on"), seeds=[1])


class _LossSum:
    """A step hook in the shape issue 19's monitors take: device tensors updated in place."""

    def __init__(self, device, k=None):
        shape = () if k is None else (k,)
        self.total = torch.zeros(shape, dtype=torch.float64, device=device)
        self.last_iteration = torch.full((), -1, dtype=torch.int64, device=device)
        self.calls = 0

    def __call__(self, t):
        self.calls += 1
        self.total.add_(t.loss.to(torch.float64))
        self.last_iteration.copy_(t.iteration)
        assert t.output.shape == t.average.shape


def test_step_hooks_see_every_iteration_and_change_nothing(device):
    s = FitSettings(iterations=9, ssim_every=3)
    net, z, noisy, clean = _problem(device=device)
    twin = _twin(net)
    hook = _LossSum(device)
    a = fit(net, z, noisy, clean, s, seed=4, step_hooks=[hook])
    b = fit(twin, z, noisy, clean, s, seed=4)
    assert int(hook.last_iteration) == 8
    assert float(hook.total) == pytest.approx(a.trajectory["loss"].sum(), rel=1e-12)
    # in a graph fit the hook runs once per eager iteration and once at the capture
    assert hook.calls == (WARMUP_ITERATIONS + 1 if a.cuda_graph else 9)
    if device.type == "cpu":  # the hook reads; the fit is bit-for-bit the same
        assert np.array_equal(a.trajectory["loss"], b.trajectory["loss"]) and torch.equal(a.output, b.output)
    else:
        np.testing.assert_allclose(a.trajectory["loss"], b.trajectory["loss"], rtol=1e-9)


def test_batched_step_hooks_see_each_fit(device):
    cases = [_problem(j, device=device) for j in range(2)]
    hook = _LossSum(device, k=2)
    rs = fit_batch(
        *[[c[i] for c in cases] for i in range(4)], FitSettings(iterations=6), seeds=[1, 2], step_hooks=[hook]
    )
    for j, r in enumerate(rs):
        assert float(hook.total[j]) == pytest.approx(r.trajectory["loss"].sum(), rel=1e-12)
    assert int(hook.last_iteration) == 5


# --------------------------------------------------------------------------- CUDA


def _compare_float64(graph, eager, params=None):
    assert graph.cuda_graph and not eager.cuda_graph
    for key in ("loss", "psnr_raw", "psnr_ema", "psnr_noisy"):
        np.testing.assert_allclose(
            graph.trajectory[key], eager.trajectory[key], rtol=1e-9, atol=1e-9, err_msg=key
        )
    np.testing.assert_array_equal(graph.ssim_trajectory["iteration"], eager.ssim_trajectory["iteration"])
    np.testing.assert_allclose(graph.ssim_trajectory["ssim"], eager.ssim_trajectory["ssim"], atol=1e-9)
    np.testing.assert_allclose(graph.output.numpy(), eager.output.numpy(), atol=1e-6)
    if params is not None:
        for p, q in params:
            torch.testing.assert_close(p, q, rtol=0, atol=1e-9)


@pytest.mark.gpu
@cuda_only
@pytest.mark.parametrize("width", [8, 32])
def test_cuda_graph_fit_equals_eager_fit_in_float64(width):
    """Same weights, same seed: the graph fit (3 eager warm-up iterations, then replays) and
    the eager fit agree to rounding -- so the replays drew the eager fit's perturbations."""
    s = {"iterations": 12, "ssim_every": 4, "reg_noise_std": 1 / 30}
    net, z, noisy, clean = _problem(size=64, width=width, device="cuda")
    twin = _twin(net)
    graph = fit(net, z, noisy, clean, FitSettings(cuda_graphs="on", **s), seed=5)
    eager = fit(twin, z, noisy, clean, FitSettings(cuda_graphs="off", **s), seed=5)
    _compare_float64(graph, eager, zip(net.parameters(), twin.parameters()))


@pytest.mark.gpu
@cuda_only
def test_cuda_graph_batched_fits_equal_eager_ones_in_float64():
    s = {"iterations": 10, "ssim_every": 5, "reg_noise_std": 1 / 30}
    cases = [_problem(j, size=64, device="cuda") for j in range(3)]
    twins = [_twin(c[0]) for c in cases]
    alone = _twin(cases[1][0])
    args = [[c[i] for c in cases] for i in range(1, 4)]
    graph = fit_batch([c[0] for c in cases], *args, FitSettings(cuda_graphs="on", **s), seeds=[3, 4, 5])
    eager = fit_batch(twins, *args, FitSettings(cuda_graphs="off", **s), seeds=[3, 4, 5])
    for g, e in zip(graph, eager):
        _compare_float64(g, e)
    # and each equals its single fit (the batch's K registered generators stay apart)
    single = fit(alone, cases[1][1], cases[1][2], cases[1][3], FitSettings(cuda_graphs="on", **s), seed=4)
    np.testing.assert_allclose(graph[1].trajectory["loss"], single.trajectory["loss"], rtol=1e-9)


@pytest.mark.gpu
@cuda_only
def test_cuda_graph_float32_fits_have_eager_psnr_statistics():
    """float32 DIP is chaotic, so compare statistics: 6 seeds x 300 iterations each way."""
    psnr = {"on": [], "off": []}
    for seed in range(6):
        for mode, values in psnr.items():
            net, z, noisy, clean = _problem(seed, size=64, width=16, dtype=torch.float32, device="cuda")
            r = fit(net, z, noisy, clean, FitSettings(iterations=300, cuda_graphs=mode), seed=seed)
            assert r.cuda_graph is (mode == "on")
            values.append(r.psnr_last)
    diffs = [a - b for a, b in zip(psnr["on"], psnr["off"])]
    assert abs(statistics.mean(diffs)) < 0.3, (psnr, diffs)
    assert max(abs(d) for d in diffs) < 1.5, (psnr, diffs)


class _HostReadingNet(nn.Module):
    """A network that reads a value on the host in its forward pass: not capturable."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x):
        scale = float(x.abs().max())  # a host sync
        return torch.sigmoid(self.conv(x) / max(scale, 1.0))


@pytest.mark.gpu
@cuda_only
def test_cuda_step_that_syncs_falls_back_or_refuses():
    _, _, noisy, clean = _problem(size=32, dtype=torch.float32, device="cuda")
    z = make_input(8, 32, 3, device="cuda")
    r = fit(_HostReadingNet().cuda(), z, noisy, clean, FitSettings(iterations=8), seed=1)
    assert r.cuda_graph is False and np.isfinite(r.trajectory["loss"]).all()
    with pytest.raises(ValueError, match="synchronises with the host"):
        fit(_HostReadingNet().cuda(), z, noisy, clean, FitSettings(iterations=8, cuda_graphs="on"), seed=1)


@pytest.mark.gpu
@cuda_only
def test_cuda_graph_fit_reports_progress_and_ssim():
    calls = []
    net, z, noisy, clean = _problem(size=32, dtype=torch.float32, device="cuda")
    r = fit(
        net,
        z,
        noisy,
        clean,
        FitSettings(iterations=40, ssim_every=10),
        seed=2,
        progress=lambda i, loss: calls.append((i, loss)),
    )
    assert r.cuda_graph and [c[0] for c in calls] == list(range(1, 41))
    np.testing.assert_allclose([c[1] for c in calls], r.trajectory["loss"], rtol=1e-6)
    assert np.isfinite(r.ssim_trajectory["ssim"]).all() and len(r.ssim_trajectory["ssim"]) == 4
