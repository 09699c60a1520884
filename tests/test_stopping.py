"""Early-stopping rules (dipkit.fit.stopping): synthetic trajectories where a rule must stop and
where it must not, the closed-form clipped-noise variance, the online monitor against the offline
replay, single against batched fits, and a fit that really ends early."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import synthetic_image

from dipkit.fit import FitSettings, fit, make_input
from dipkit.fit.batched import fit_batch
from dipkit.fit.stopping import STOP_RULES, StopMonitor, StopParams, clipped_noise_variance, replay
from dipkit.models import build_model

SIGMA = 25.0


def _images(k=1, size=16, seed=0):
    """K clean images [K, 3, size, size] in float64 and their clipped noisy versions."""
    x = torch.from_numpy(np.stack([synthetic_image(size, size, 3, seed=seed + j) for j in range(k)]))
    x = x.permute(0, 3, 1, 2).to(torch.float64)
    g = torch.Generator().manual_seed(seed)
    y = (x + torch.randn(x.shape, generator=g, dtype=torch.float64) * SIGMA / 255).clamp(0, 1)
    return x, y


def _feed(monitor, outs, avgs):
    for o, a in zip(outs, avgs):
        monitor.update(o, a)


def _jitter_trajectory(x, n, amplitude, seed=1):
    """Outputs x + amplitude(t) * (-1)^t * pattern: the moving variance of the outputs follows the
    mean of amplitude^2 over the window, and every output is also its own 'smoothed' output."""
    pattern = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)
    return [x + amplitude(t) * (-1) ** t * pattern for t in range(1, n + 1)]


def test_wmv_stops_after_the_variance_minimum_and_returns_that_output():
    x, y = _images()
    n, low, params = 400, 150, StopParams(wmv_window=10, wmv_patience=60)
    # the outputs settle until iteration `low`, then start to wander (the fit picks up the noise)
    outs = _jitter_trajectory(x, n, lambda t: 0.02 * (1 + abs(t - low) / 20))
    m = StopMonitor(y, SIGMA, n, params)
    _feed(m, outs, outs)
    rec = m.result(outs[-1], x)["wmv"]
    var = m.signal_trajectories()["wmv_variance"]
    best = int(np.argmin(var)) + 1
    assert abs(best - low) <= params.wmv_window  # the window lags the minimum by at most W
    assert rec.triggered and rec.stop_iteration == best + params.wmv_patience
    assert rec.iteration == best and torch.equal(rec.output, outs[best - 1].float())
    assert m.should_stop("wmv") and not m.should_stop("discrepancy")


def test_no_rule_stops_a_trajectory_that_only_improves():
    """Outputs that approach the clean image and flicker less and less: the moving variance only
    falls and the residual stays above the noise level, so neither rule fires and each returns
    the final output."""
    x, y = _images()
    n, params = 400, StopParams(wmv_window=10, wmv_patience=40)
    gray = torch.full_like(x, 0.5)
    flicker = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=x.dtype)
    outs = [
        x + (gray - x) * (1 - t / n) * 0.8 + 0.05 * (1.1 - t / n) * (-1) ** t * flicker
        for t in range(1, n + 1)
    ]
    m = StopMonitor(y, SIGMA, n, params)
    _feed(m, outs, outs)
    final = outs[-1]
    recs = m.result(final, x)
    var = m.signal_trajectories()["wmv_variance"][params.wmv_window - 1 :]
    assert np.all(np.diff(var) < 0)  # the trajectory really only improves
    for rule in STOP_RULES:
        assert not recs[rule].triggered and recs[rule].stop_iteration is None
        assert recs[rule].iteration == n and torch.equal(recs[rule].output, final.float())
        assert not m.should_stop(rule)


def test_discrepancy_fires_where_the_residual_meets_the_clipped_noise_variance():
    """The smoothed output moves from gray to the clean image and on to the noisy one; the rule
    fires at the first iteration whose residual is at most tau x the clipped-noise variance
    expected there (computed here independently, on the full image)."""
    x, y = _images(size=24)
    n, tau = 300, 1.0
    gray = torch.full_like(x, 0.5)
    path = [
        gray + (x - gray) * min(1.0, 2 * t / n) + (y - x) * max(0.0, 2 * t / n - 1) for t in range(1, n + 1)
    ]
    m = StopMonitor(y, SIGMA, n, StopParams(discrepancy_tau=tau))
    _feed(m, path, path)
    resid = np.array([float(((p - y) ** 2).mean()) for p in path])
    expected = np.array([float(clipped_noise_variance(p, torch.tensor(SIGMA / 255)).mean()) for p in path])
    first = int(np.flatnonzero(resid <= tau * expected)[0]) + 1
    assert n // 3 < first < n  # near or past the clean image, never on the way from gray
    rec = m.result(path[-1], x)["discrepancy"]
    assert rec.triggered and rec.stop_iteration == first and rec.iteration == first
    assert torch.equal(rec.output, path[first - 1].float())
    ratio = m.signal_trajectories()["discrepancy_ratio"]
    np.testing.assert_allclose(ratio, resid / expected, rtol=2e-3)  # the table and the pixel grid


def _lag_one(r):
    """Lag-one autocorrelation of a residual [K, C, H, W] over horizontal and vertical neighbours."""
    lagged = (r[..., :, 1:] * r[..., :, :-1]).sum() + (r[..., 1:, :] * r[..., :-1, :]).sum()
    return float(lagged / (2 * (r * r).sum()))


def test_whiteness_fires_k_times_after_the_residual_turned_white():
    """The smoothed output reaches the clean image and then takes up a blurred copy of the noise
    (what a DIP network fits first): the residual's neighbours, correlated while it holds image
    structure, decorrelate (white) and then anti-correlate; the rule notes the iteration t0 where
    the lag-one autocorrelation first reaches 0 and fires at ceil(k * t0)."""
    x, y = _images(size=32)
    n, k = 300, 1.5
    noise = y - x
    smooth = torch.nn.functional.avg_pool2d(noise, 3, stride=1, padding=1, count_include_pad=False)
    gray = torch.full_like(x, 0.5)
    path = [
        gray + (x - gray) * min(1.0, 3 * t / n) + smooth * max(0.0, 3 * t / n - 1) for t in range(1, n + 1)
    ]
    m = StopMonitor(y, SIGMA, n, StopParams(whiteness_factor=k))
    _feed(m, path, path)
    rho = np.array([_lag_one(y - p) for p in path])
    np.testing.assert_allclose(m.signal_trajectories()["whiteness_rho"], rho, atol=1e-9)
    assert rho[0] > 0.5 and rho[-1] < -0.1  # structure first, fitted noise last
    t0 = int(np.flatnonzero(rho <= 0)[0]) + 1
    assert n // 4 < t0 < n // 2 and math.ceil(k * t0) < n
    rec = m.result(path[-1], x)["whiteness"]
    assert rec.triggered and rec.stop_iteration == rec.iteration == math.ceil(k * t0)
    assert torch.equal(rec.output, path[rec.iteration - 1].float())


def test_clipped_noise_variance_matches_monte_carlo():
    rng = np.random.default_rng(0)
    s = 50 / 255
    mu = np.array([0.0, 0.02, 0.1, 0.5, 0.9, 1.0])
    n = rng.normal(0, s, (400_000, 1))
    mc = ((np.clip(mu + n, 0, 1) - mu) ** 2).mean(axis=0)
    got = clipped_noise_variance(torch.tensor(mu), torch.tensor(s)).numpy()
    np.testing.assert_allclose(got, mc, rtol=0.01)
    assert got[0] == pytest.approx(s * s / 2, rel=1e-6)  # at 0 half the noise is clipped to 0
    assert got[3] < s * s  # even mid-gray loses some variance at sigma 50
    small = 15 / 255  # 8.5 sigma from either bound: no clipping
    f64 = torch.float64
    mid = clipped_noise_variance(torch.tensor(0.5, dtype=f64), torch.tensor(small, dtype=f64))
    assert float(mid) == pytest.approx(small**2, rel=1e-9)


def test_batched_monitor_decides_each_fit_on_its_own():
    x, y = _images(k=3)
    n, params = 300, StopParams(wmv_window=10, wmv_patience=50)
    lows = (80, 10_000, 150)  # the second never turns
    per_fit = [
        _jitter_trajectory(x[j : j + 1], n, lambda t, lo=lo: 0.02 * (1 + abs(t - lo) / 20), seed=j)
        for j, lo in enumerate(lows)
    ]
    batch = [torch.cat([per_fit[j][t] for j in range(3)]) for t in range(n)]
    m = StopMonitor(y, SIGMA, n, params)
    _feed(m, batch, batch)
    for j in range(3):
        single = StopMonitor(y[j : j + 1], SIGMA, n, params)
        _feed(single, per_fit[j], per_fit[j])
        got, want = (
            m.result(batch[-1][j : j + 1], x[j : j + 1], fit=j),
            single.result(per_fit[j][-1], x[j : j + 1]),
        )
        for rule in STOP_RULES:
            assert got[rule].stop_iteration == want[rule].stop_iteration
            assert got[rule].iteration == want[rule].iteration
            assert torch.equal(got[rule].output, want[rule].output)
    assert [m.result(batch[-1][j : j + 1], fit=j)["wmv"].triggered for j in range(3)] == [True, False, True]
    assert not m.should_stop("wmv")  # one fit has not stopped


def test_estimated_sigma_when_none_is_given():
    _, y = _images(size=64)
    m = StopMonitor(y, None, 10)
    assert m.sigma_255[0] == pytest.approx(SIGMA, rel=0.2)


@pytest.mark.parametrize(
    "bad, what",
    [
        ({"wmv_window": 1}, "wmv_window"),
        ({"wmv_patience": 0}, "wmv_patience"),
        ({"discrepancy_tau": 0.0}, "tau"),
        ({"whiteness_factor": 0.5}, "whiteness_factor"),
    ],
)
def test_bad_parameters_are_named(bad, what):
    with pytest.raises(ValueError, match=what):
        StopParams(**bad)


@pytest.mark.parametrize(
    "bad, what",
    [
        ({"early_stop": "sure"}, "early_stop must be one of off, wmv, discrepancy"),
        ({"early_stop_poll": 10}, "early_stop_poll needs an early_stop rule"),
        ({"early_stop": "wmv", "early_stop_poll": -1}, "early_stop_poll must be an int >= 0"),
    ],
)
def test_bad_fit_settings_are_named(bad, what):
    with pytest.raises(ValueError, match=what):
        FitSettings(**bad)


def test_defaults_agree_across_config_spec_and_params():
    import yaml
    from conftest import REPO

    from dipkit.methods import FIT_DEFAULTS

    schema = yaml.safe_load((REPO / "schemas/config.schema.yaml").read_text())
    props = schema["properties"]["fit"]["properties"]
    assert props["early_stop"]["enum"] == ["off", *STOP_RULES]
    yaml_defaults = {k: v["default"] for k, v in props["stopping"]["properties"].items()}
    assert yaml_defaults == FIT_DEFAULTS["stopping"] == vars(StopParams())


# ----------------------------------------------------------------------------- real fits


def _tiny_fit(settings, size=16, seed=0, dtype=torch.float64):
    x, y = _images(size=size, seed=seed)
    torch.manual_seed(seed)
    net = build_model("hourglass", 3, (size, size), levels=2, width=8).to(dtype)
    z = make_input(net.in_channels, net.input_size, seed, dtype=dtype)
    return net, z, y.to(dtype), x.to(dtype)


FAST = StopParams(wmv_window=8, wmv_patience=25, discrepancy_tau=1.3, whiteness_factor=1.2)


@pytest.fixture(scope="module")
def full_fit():
    """A tiny float64 fit run to its end with early stopping off."""
    s = FitSettings(iterations=160, lr=0.02, stop_params=FAST)
    return fit(*_tiny_fit(s), s, seed=1, noise_sigma=SIGMA)


def test_off_returns_the_final_output_and_records_every_rule(full_fit):
    r = full_fit
    assert r.iterations == 160 and set(r.stops) == set(STOP_RULES)
    err = float(((r.output.double() - _images()[0]) ** 2).mean())
    assert r.psnr_last == pytest.approx(10 * math.log10(1 / err), abs=1e-4)  # the output is the final one
    for rec in r.stops.values():
        assert math.isfinite(rec.psnr) and 0 < rec.ssim <= 1 and 1 <= rec.iteration <= 160
    assert r.stop_sigma == SIGMA and len(r.stop_signals["wmv_variance"]) == 160
    assert r.stops["wmv"].triggered  # the tiny fit does overfit


def test_replay_makes_the_online_decisions(full_fit):
    """The offline replay of recorded signals (used to tune parameters) decides as the monitor."""
    decisions = replay(full_fit.stop_signals, FAST)
    for rule in STOP_RULES:
        rec = full_fit.stops[rule]
        assert decisions[rule] == ((rec.stop_iteration, rec.iteration) if rec.triggered else (0, 0))


def test_a_fit_that_ends_early_returns_what_the_full_fit_records(full_fit):
    """early_stop_poll ends the loop soon after the rule fires; the output and the trajectory up
    to there equal those of the same fit run to the end (CPU, float64, same seed)."""
    short = FitSettings(iterations=160, lr=0.02, stop_params=FAST, early_stop="wmv", early_stop_poll=10)
    b = fit(*_tiny_fit(short), short, seed=1, noise_sigma=SIGMA)
    rec = full_fit.stops["wmv"]
    assert b.iterations == math.ceil(rec.stop_iteration / 10) * 10 < 160
    assert b.stops["wmv"].stop_iteration == rec.stop_iteration and b.stops["wmv"].iteration == rec.iteration
    assert torch.equal(b.output, rec.output)  # the rule's output, as the full fit recorded it
    np.testing.assert_array_equal(b.trajectory["psnr_ema"], full_fit.trajectory["psnr_ema"][: b.iterations])


def test_batched_fits_record_the_rules_of_single_fits():
    """In float64 a batch of fits stops where each fit alone stops."""
    s = FitSettings(iterations=100, lr=0.02, stop_params=FAST)
    singles, parts = [], []
    for seed in (0, 1):
        net, z, y, x = _tiny_fit(s, seed=seed)
        parts.append((net, z, y, x))
        singles.append(fit(*_tiny_fit(s, seed=seed), s, seed=seed + 5, noise_sigma=SIGMA))
    nets, zs, ys, xs = (list(col) for col in zip(*parts))
    batch = fit_batch(nets, zs, ys, xs, s, [5, 6], noise_sigma=[SIGMA, SIGMA])
    for one, b in zip(singles, batch):
        for rule in STOP_RULES:
            assert (b.stops[rule].stop_iteration, b.stops[rule].iteration) == (
                one.stops[rule].stop_iteration,
                one.stops[rule].iteration,
            )
            assert b.stops[rule].psnr == pytest.approx(one.stops[rule].psnr, abs=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_monitor_never_synchronises_and_matches_the_cpu():
    x, y = _images()
    n, params = 200, StopParams(wmv_window=10, wmv_patience=40)
    outs = _jitter_trajectory(x, n, lambda t: 0.02 * (1 + abs(t - 80) / 20))
    cpu = StopMonitor(y, SIGMA, n, params)
    _feed(cpu, outs, outs)
    gpu = StopMonitor(y.cuda(), SIGMA, n, params)
    cuda_outs = [o.cuda() for o in outs]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        _feed(gpu, cuda_outs, cuda_outs)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    a, b = cpu.result(outs[-1], x), gpu.result(cuda_outs[-1], x.cuda())
    for rule in STOP_RULES:
        assert (a[rule].stop_iteration, a[rule].iteration) == (b[rule].stop_iteration, b[rule].iteration)


# ----------------------------------------------------------------------------- dipkit denoise


def test_denoise_stops_early_and_says_where(tmp_path):
    """denoise() (what the CLI calls) ends the fit when its rule fires and returns what the same
    fit run to its end records for that rule; the message names the iteration and the rule."""
    from dipkit.cli import stop_message
    from dipkit.denoise import denoise

    clean = synthetic_image(32, 32, 3, seed=4)
    noise = np.random.default_rng(5).normal(0, 25 / 255, clean.shape)
    noisy = np.clip(clean + noise, 0, 1).astype(np.float32)
    params = StopParams(discrepancy_tau=8.0)
    kw = {
        "width": 8,
        "sigma": 25,
        "iterations": 120,
        "device": "cpu",
        "early_stop": "discrepancy",
        "stop_params": params,
        "cache_dir": tmp_path,
    }
    short = denoise(noisy, **kw)
    full = denoise(noisy, **kw, clean=clean, full_length=True)
    rec = full["fit"].stops["discrepancy"]
    assert rec.triggered and short["stop"].stop_iteration == rec.stop_iteration
    assert short["iterations_run"] == math.ceil(rec.stop_iteration / 25) * 25 < 120 == full["iterations_run"]
    np.testing.assert_array_equal(short["output"], full["output"])
    message = stop_message(short)
    assert f"stopped at iteration {short['iterations_run']} of 120 (discrepancy" in message
    assert f"returned the output of iteration {rec.iteration}" in message and "s saved" in message


@pytest.mark.parametrize(
    "flag, expected",
    [
        ((), "early stopping (whiteness) did not fire within the cap of 30 iterations"),
        (("--no-early-stop",), "early stopping off: ran all 30 iterations"),
    ],
)
def test_cli_reports_early_stopping(tmp_path, flag, expected):
    from test_cli import _noisy_pair, dipkit

    _, _, path = _noisy_pair(tmp_path, 32, 32, 3)
    proc = dipkit(
        "denoise",
        str(path),
        "-o",
        str(tmp_path / "out.png"),
        "--width",
        "8",
        "--sigma",
        "25",
        "--iterations",
        "30",
        *flag,
    )
    assert proc.returncode == 0, proc.stderr
    assert expected in proc.stderr and "30/30 loss" in proc.stderr
