"""The fit engine (dipkit.fit) on a tiny stand-in network; CPU, plus CUDA where present."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import nn

from dipkit.fit import (
    FitDivergedError,
    FitResult,
    FitSettings,
    describe_device,
    fit,
    make_input,
    select_device,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
C_IN = 4


class TinyNet(nn.Module):
    """conv3 -> BN -> ReLU -> conv1 -> sigmoid, the shape of a DIP network in miniature.

    ``bad_calls`` maps a forward-call index (0-based) to what to return instead of the
    real output: ``"nan"`` or ``"far"`` (output far from everything, still a function of the
    parameters so backward works). ``seen`` records a copy of the parameters at each call.
    """

    def __init__(self, c_in: int = C_IN, c_out: int = 3, width: int = 8, record: bool = False):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, c_out, 1),
            nn.Sigmoid(),
        )
        self.calls = 0
        self.bad_calls: dict[int, str] = {}
        self.record = record
        self.seen: list[list[torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.record:
            self.seen.append([p.detach().clone() for p in self.parameters()])
        out = self.body(x)
        kind = self.bad_calls.get(self.calls)
        self.calls += 1
        if kind == "nan":
            out = out * float("nan")
        elif kind == "far":
            out = out * 0.0 + 5.0
        return out


def make_net(seed: int = 0, dtype=torch.float32, device="cpu", **kw) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet(**kw).to(device=device, dtype=dtype)


def make_images(size: int = 32, channels: int = 3, sigma: float = 0.1, dtype=torch.float32, device="cpu"):
    """Clean image (smooth gradients + discs) and its noisy version, ``[1, C, H, W]``."""
    yy, xx = torch.meshgrid(
        torch.linspace(0, 1, size, dtype=torch.float64),
        torch.linspace(0, 1, size, dtype=torch.float64),
        indexing="ij",
    )
    chans = []
    for c in range(channels):
        disc = (((xx - 0.3 - 0.2 * c) ** 2 + (yy - 0.6) ** 2) < 0.05).double()
        chans.append(0.2 + 0.4 * (xx * (c + 1) / channels + yy) / 2 + 0.35 * disc)
    clean = torch.stack(chans)[None].clamp(0, 1)
    gen = torch.Generator().manual_seed(1234)
    noisy = (clean + sigma * torch.randn(clean.shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    return clean.to(device=device, dtype=dtype), noisy.to(device=device, dtype=dtype)


def run(
    settings: FitSettings,
    seed: int = 5,
    dtype=torch.float32,
    device="cpu",
    net=None,
    with_clean=True,
    progress=None,
    net_seed: int = 0,
) -> FitResult:
    clean, noisy = make_images(dtype=dtype, device=device)
    net = net if net is not None else make_net(net_seed, dtype, device)
    z = make_input(C_IN, 32, seed=11, dtype=dtype, device=device)
    return fit(net, z, noisy, clean if with_clean else None, settings, seed, progress=progress)


# --------------------------------------------------------------------------- inputs, devices


def test_make_input_is_seeded_and_scaled():
    a = make_input(5, (12, 20), seed=3)
    b = make_input(5, (12, 20), seed=3)
    c = make_input(5, (12, 20), seed=4)
    assert a.shape == (1, 5, 12, 20) and a.dtype == torch.float32 and a.device.type == "cpu"
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0.0 and float(a.max()) < 0.1 + 1e-7 and float(a.max()) > 0.09
    d = make_input(5, (12, 20), seed=3, scale=1.0, dtype=torch.float64)
    assert torch.equal(a, (d * 0.1).float())  # float32 code = rounding of the float64 one
    assert make_input(2, 8, seed=0).shape == (1, 2, 8, 8)
    with pytest.raises(ValueError):
        make_input(2, (1, 2, 3), seed=0)


@pytest.mark.parametrize("device", DEVICES)
def test_make_input_same_on_every_device(device):
    cpu = make_input(3, 16, seed=9)
    dev = make_input(3, 16, seed=9, device=device)
    assert torch.equal(cpu, dev.cpu())


def test_select_device():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device(" CPU ") == torch.device("cpu")
    auto = select_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert select_device() == auto
    for bad in ("gpu", "cuda:x", "mps", "", "cuda:-1"):
        with pytest.raises(ValueError):
            select_device(bad)
    if not torch.cuda.is_available():
        for want in ("cuda", "cuda:0"):
            with pytest.raises(ValueError, match="not available"):
                select_device(want)
    else:
        assert select_device("cuda:0") == torch.device("cuda", 0)
        with pytest.raises(ValueError):
            select_device(f"cuda:{torch.cuda.device_count()}")
    assert describe_device(torch.device("cpu")) == "cpu"


def test_settings_validation_and_defaults():
    s = FitSettings()
    assert (s.iterations, s.lr, s.exp_weight, s.reg_noise_std) == (3000, 0.01, 0.99, 1 / 30)
    assert s.backtracking is False and s.ssim_every == 100 and s.divergence_check_every == 1
    assert s.to_dict()["iterations"] == 3000
    for bad in (
        {"iterations": 0},
        {"lr": 0.0},
        {"exp_weight": 1.0},
        {"reg_noise_std": -1.0},
        {"ssim_every": -1},
        {"divergence_check_every": -2},
        {"iterations": 2.5},
    ):
        with pytest.raises(ValueError):
            FitSettings(**bad)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.lr = 1.0  # frozen


def test_input_validation():
    clean, noisy = make_images()
    z = make_input(C_IN, 32, seed=0)
    net = make_net()
    with pytest.raises(ValueError, match="shapes differ"):
        fit(net, z, noisy, clean[..., :16], FitSettings(iterations=1), 0)
    with pytest.raises(ValueError, match="must match"):
        fit(net, z.double(), noisy, clean, FitSettings(iterations=1), 0)
    with pytest.raises(ValueError, match="net output"):
        fit(make_net(c_out=1), z, noisy, clean, FitSettings(iterations=1), 0)


# --------------------------------------------------------------------------- the loop


@pytest.mark.parametrize("device", DEVICES)
def test_fit_learns_and_records(device):
    calls = []
    s = FitSettings(iterations=45, ssim_every=10)
    res = run(s, device=device, progress=lambda it, loss: calls.append((it, loss)))
    tr = res.trajectory
    assert set(tr) == {"iteration", "loss", "psnr_raw", "psnr_ema", "psnr_noisy"}
    for v in tr.values():
        assert isinstance(v, np.ndarray) and v.shape == (45,)
    assert np.array_equal(tr["iteration"], np.arange(1, 46))
    assert np.isfinite(tr["loss"]).all() and np.isfinite(tr["psnr_ema"]).all()
    assert tr["loss"][-5:].mean() < 0.9 * tr["loss"][:3].mean()  # it learns
    # the EMA starts at the first output
    assert tr["psnr_ema"][0] == tr["psnr_raw"][0]
    assert np.array_equal(res.ssim_trajectory["iteration"], [10, 20, 30, 40, 45])
    assert res.ssim_trajectory["ssim"].shape == (5,) and np.isfinite(res.ssim_trajectory["ssim"]).all()

    out = res.output
    assert out.shape == (1, 3, 32, 32) and out.dtype == torch.float32 and out.device.type == "cpu"
    assert torch.isfinite(out).all() and float(out.min()) >= 0 and float(out.max()) <= 1

    k = int(np.argmax(tr["psnr_ema"]))
    assert res.psnr_peak == tr["psnr_ema"][k] and res.psnr_peak_iteration == k + 1
    assert res.psnr_peak_raw == tr["psnr_raw"].max()
    clean, noisy = make_images()
    out_hwc = out[0].permute(1, 2, 0).double().numpy()
    clean_hwc = clean[0].permute(1, 2, 0).double().numpy()
    assert abs(res.psnr_last - peak_signal_noise_ratio(clean_hwc, out_hwc, data_range=1)) < 1e-4
    for dr, got in ((1.0, res.ssim_last), (2.0, res.ssim_last_paper)):
        assert abs(got - structural_similarity(clean_hwc, out_hwc, channel_axis=-1, data_range=dr)) < 1e-4
    assert res.ssim_last_paper > res.ssim_last
    noisy_hwc = noisy[0].permute(1, 2, 0).double().numpy()
    assert abs(res.psnr_input - peak_signal_noise_ratio(clean_hwc, noisy_hwc, data_range=1)) < 1e-6

    assert res.iterations == 45 and res.backtracks == 0 and res.backtrack_iterations == ()
    assert res.wall_time_s > 0 and res.peak_memory_bytes > 0
    assert res.device.startswith(device)
    if device == "cpu":
        assert res.device == "cpu" and res.peak_memory_kind == "process_peak_rss"
    else:
        assert res.peak_memory_kind == "cuda_max_memory_allocated"
    assert [c[0] for c in calls] == list(range(1, 46))  # every max(1, 45 // 100) = 1
    assert all(isinstance(c[1], float) for c in calls)
    scal = res.scalars()
    assert scal["psnr_last"] == res.psnr_last and "output" not in scal


def test_trajectory_psnrs_match_skimage_float64():
    """PSNRs in the trajectory are scikit-image's numbers for the same tensors."""
    s = FitSettings(iterations=3, exp_weight=0.0, reg_noise_std=0.0)
    clean, noisy = make_images(dtype=torch.float64)
    net = make_net(dtype=torch.float64)
    z = make_input(C_IN, 32, seed=11, dtype=torch.float64)
    outs = []
    handle = net.register_forward_hook(lambda m, i, o: outs.append(o.detach().clone()))
    res = fit(net, z, noisy, clean, s, 0)
    handle.remove()

    def ref(target, pred):
        return peak_signal_noise_ratio(
            target[0].permute(1, 2, 0).numpy(), pred[0].permute(1, 2, 0).numpy(), data_range=1
        )

    for i in range(3):
        assert abs(res.trajectory["psnr_raw"][i] - ref(clean, outs[i])) < 1e-9
        assert abs(res.trajectory["psnr_noisy"][i] - ref(noisy, outs[i])) < 1e-9
        assert abs(res.trajectory["loss"][i] - F.mse_loss(outs[i], noisy).item()) < 1e-12
    # exp_weight = 0: the "EMA" is the raw output
    assert np.array_equal(res.trajectory["psnr_ema"], res.trajectory["psnr_raw"])


def test_seeded_fit_repeats_bit_for_bit_and_seed_matters():
    s = FitSettings(iterations=20, ssim_every=5)
    a = run(s, seed=5)
    b = run(s, seed=5)
    c = run(s, seed=6)
    assert torch.equal(a.output, b.output)
    for key in a.trajectory:
        assert np.array_equal(a.trajectory[key], b.trajectory[key])
    assert np.array_equal(a.ssim_trajectory["ssim"], b.ssim_trajectory["ssim"])
    assert not torch.equal(a.output, c.output)
    assert not np.array_equal(a.trajectory["loss"], c.trajectory["loss"])
    # without input perturbation the seed is irrelevant
    s0 = FitSettings(iterations=5, reg_noise_std=0.0)
    assert torch.equal(run(s0, seed=1).output, run(s0, seed=2).output)


@pytest.mark.parametrize("device", DEVICES)
def test_deterministic_mode_repeats_and_restores_flags(device):
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.backends.cuda.matmul.allow_tf32,
    )
    s = FitSettings(iterations=8, deterministic=True)
    a = run(s, device=device)
    b = run(s, device=device)
    assert torch.equal(a.output, b.output)
    after = (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.backends.cuda.matmul.allow_tf32,
    )
    assert before == after


@pytest.mark.parametrize("w", [0.5, 0.99, 0.0])
def test_final_output_is_paper_formula(w):
    """iterations=1: out_avg is the first output, so final = w*out1 + (1-w)*net1(z).

    Rebuilt by hand in float64 with a copy of the initial network and a plain Adam step.
    """
    s = FitSettings(iterations=1, exp_weight=w, reg_noise_std=0.0, lr=0.05)
    clean, noisy = make_images(dtype=torch.float64)
    z = make_input(C_IN, 32, seed=11, dtype=torch.float64)
    net = make_net(dtype=torch.float64)
    twin = copy.deepcopy(net)
    res = fit(net, z, noisy, clean, s, seed=0)

    opt = torch.optim.Adam(twin.parameters(), lr=0.05)
    out1 = twin(z)
    F.mse_loss(out1, noisy).backward()
    opt.step()
    with torch.no_grad():
        rec = twin(z)  # train-mode BN, clean z
    expect = rec if w == 0 else w * out1.detach() + (1 - w) * rec
    assert torch.allclose(res.output.double(), expect, rtol=0, atol=1e-7)
    # and it is neither of the two ingredients alone (the test can tell them apart)
    if w not in (0.0,):
        assert (res.output.double() - rec).abs().max() > 1e-5
        assert (res.output.double() - out1.detach()).abs().max() > 1e-5
    # the trained network is the twin, to rounding: on CPU the engine runs in channels-last
    # with the fused Adam. Biases of convolutions just before a BatchNorm have gradients that
    # are rounding noise (~1e-16), which Adam's first step turns into moves of up to
    # lr * |g| / eps ~ 1e-9; every other parameter moves by ~lr = 0.05.
    for p, q in zip(net.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-8)
    assert net.training  # never switched to eval mode


def test_matches_naive_paper_loop_float64():
    """20 iterations with perturbation and EMA equal a plain re-implementation of the
    paper's loop (same noise stream) in float64."""
    w, std, lr, n, seed = 0.9, 1 / 30, 0.01, 20, 17
    clean, noisy = make_images(dtype=torch.float64)
    z = make_input(C_IN, 32, seed=11, dtype=torch.float64)
    net = make_net(dtype=torch.float64)
    twin = copy.deepcopy(net)
    res = fit(net, z, noisy, clean, FitSettings(iterations=n, exp_weight=w, reg_noise_std=std, lr=lr), seed)

    gen = torch.Generator().manual_seed(seed)
    noise = torch.empty_like(z)
    opt = torch.optim.Adam(twin.parameters(), lr=lr)
    out_avg, losses = None, []
    for _ in range(n):
        opt.zero_grad()
        out = twin(z + noise.normal_(generator=gen) * std)
        loss = torch.nn.MSELoss()(out, noisy)
        losses.append(loss.item())
        out_avg = out.detach() if out_avg is None else out_avg * w + out.detach() * (1 - w)
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = out_avg * w + twin(z) * (1 - w)
    assert np.allclose(res.trajectory["loss"], losses, rtol=1e-10, atol=0)
    assert torch.allclose(res.output.double(), final, rtol=0, atol=1e-7)


def test_clean_none():
    res = run(FitSettings(iterations=12, ssim_every=4), with_clean=False)
    assert torch.isfinite(res.output).all()
    assert np.isnan(res.trajectory["psnr_raw"]).all() and np.isnan(res.trajectory["psnr_ema"]).all()
    assert np.isfinite(res.trajectory["psnr_noisy"]).all() and np.isfinite(res.trajectory["loss"]).all()
    assert res.ssim_trajectory["iteration"].size == 0 and res.ssim_trajectory["ssim"].size == 0
    for v in (
        res.psnr_last,
        res.ssim_last,
        res.ssim_last_paper,
        res.psnr_peak,
        res.psnr_peak_raw,
        res.psnr_input,
    ):
        assert math.isnan(v)
    assert res.psnr_peak_iteration is None


def test_ssim_every_zero_gives_last_only():
    res = run(FitSettings(iterations=7, ssim_every=0, ssim_data_range=2.0))
    assert np.array_equal(res.ssim_trajectory["iteration"], [7])


# --------------------------------------------------------------------------- divergence


@pytest.mark.parametrize("check_every", [1, 4, 0])
def test_divergence_names_first_bad_iteration(check_every):
    net = make_net()
    net.bad_calls = {6: "nan"}  # call 6 = iteration 7
    with pytest.raises(FitDivergedError, match=r"iteration 7 of 30") as info:
        run(FitSettings(iterations=30, divergence_check_every=check_every), net=net)
    assert info.value.iteration == 7
    if check_every:
        assert net.calls < 30  # stopped early


def test_divergence_from_huge_learning_rate():
    # Adam moves each weight by about lr per step, so with lr near float32's maximum (3.4e38) the
    # weights overflow within a few steps on any CPU; 1e30 overflowed only in some BatchNorm kernels
    with pytest.raises(FitDivergedError, match=r"iteration \d+"):
        run(FitSettings(iterations=30, lr=1e38))


class _FakeEvent:
    """Stands in for torch.cuda.Event: completes only when the test says so."""

    def __init__(self):
        self.done = False

    def record(self):
        self.done = False

    def query(self):
        return self.done

    def synchronize(self):
        self.done = True


def _fake_cuda_watch(ring: int = 4):
    import collections

    from dipkit.fit.divergence import FiniteWatch

    watch = FiniteWatch.__new__(FiniteWatch)
    watch.cuda, watch.RING, watch.count = True, ring, 0
    watch.flags = torch.ones(ring, dtype=torch.bool)
    watch.events = [_FakeEvent() for _ in range(ring)]
    watch.pending = collections.deque()
    return watch


def test_async_divergence_watch_logic():
    """The CUDA path of the finiteness check (ring of non-blocking copies + events),
    exercised on CPU with fake events: no answer before the event completes, an answer
    after, and a blocking wait only when the ring is full."""
    ok, bad = torch.tensor(True), torch.tensor(False)  # the fit's finite-loss flag
    watch = _fake_cuda_watch()
    assert not watch.push(ok)
    assert not watch.push(bad)  # copy still "in flight"
    for ev in watch.events:
        ev.done = True
    assert watch.push(ok)  # polled: the second check saw NaN

    watch = _fake_cuda_watch()
    assert not watch.push(bad)
    for _ in range(3):
        assert not watch.push(ok)  # nothing completed, ring fills up
    assert watch.push(ok)  # ring full: waits for the oldest, which was NaN
    watch = _fake_cuda_watch()
    for _ in range(20):
        assert not watch.push(ok)  # slots are reused without false alarms


# --------------------------------------------------------------------------- backtracking


def test_backtracking_restores_parameters_and_adam_state():
    """A 'far' output at call 5 drops the PSNR vs noisy by far more than 5 dB.

    Without input perturbation the iteration after the restore repeats the snapshot
    iteration exactly, so: params at call 6 == params at call 4 (restored, a real copy,
    not the live call-5 weights) and params at call 7 == params at call 5 (Adam state and
    step count restored too).
    """
    net = make_net(record=True)
    net.bad_calls = {5: "far"}
    res = run(FitSettings(iterations=10, reg_noise_std=0.0, backtracking=True), net=net)
    assert res.backtracks == 1 and res.backtrack_iterations == (6,)
    seen = net.seen
    assert len(seen) == 11  # 10 iterations + the final net(z)

    def same(a, b):
        return all(torch.equal(x, y) for x, y in zip(a, b))

    assert not same(seen[5], seen[4])
    assert same(seen[6], seen[4])  # restored: the snapshot was a copy
    assert same(seen[7], seen[5])  # Adam state restored: the same step again
    assert not same(seen[8], seen[6])
    # the bad output is in the trajectory (as in the notebook), the fit carries on
    assert res.trajectory["psnr_noisy"][5] < res.trajectory["psnr_noisy"][4] - 5
    assert torch.isfinite(res.output).all()


def test_backtracking_off_keeps_bad_step():
    net = make_net(record=True)
    net.bad_calls = {5: "far"}
    res = run(FitSettings(iterations=8, reg_noise_std=0.0), net=net)
    assert res.backtracks == 0
    assert not all(torch.equal(x, y) for x, y in zip(net.seen[6], net.seen[4]))


def test_backtracking_skips_multiples_of_100_and_survives_nan():
    net = make_net()
    net.bad_calls = {100: "far", 130: "nan", 200: "nan"}
    res = run(FitSettings(iterations=205, backtracking=True, ssim_every=0), net=net)
    # i = 100 is exempt (notebook rule); NaN outputs are rejected even on exempt iterations
    assert res.backtrack_iterations == (131, 201) and res.backtracks == 2
    assert np.isnan(res.trajectory["loss"][[130, 200]]).all()  # recorded, not raised
    assert np.isfinite(res.trajectory["psnr_ema"]).all()  # rejected outputs stay out of the EMA
    assert torch.isfinite(res.output).all()


def test_backtracking_nan_before_any_snapshot_raises():
    net = make_net()
    net.bad_calls = {0: "nan"}
    with pytest.raises(FitDivergedError, match="iteration 1 of"):
        run(FitSettings(iterations=5, backtracking=True), net=net)
