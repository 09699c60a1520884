"""No-reference early-stopping rules for DIP fits, computed online on the device.

A DIP fit first fits the image and then the noise, so its PSNR against the clean image rises
to a peak and falls. Without the clean image a practitioner cannot see the peak; these rules
watch what the fit can see and say where to stop:

``wmv`` (ES-WMV, Wang et al., "Early Stopping for Deep Image Prior", arXiv 2112.06074)
    The windowed moving variance of the raw outputs, ``VAR(t) = 1/W sum_{s=t-W+1..t}
    ||x_s - mean||^2 / numel`` over the last ``W`` outputs. It falls while the network
    learns the image and rises once it starts to fit the noise. The rule keeps the smoothed
    (EMA) output at the lowest ``VAR`` so far and stops when ``VAR`` has not reached a new
    minimum for ``P`` iterations. Needs no noise level.
``discrepancy`` (Morozov's discrepancy principle)
    Stops at the first iteration where the residual of the smoothed output against the noisy
    image, ``||out_avg - y||^2 / numel``, falls to ``tau`` times the variance that the noise
    alone leaves there. The noise is clipped to ``[0, 1]`` (as dipkit's and the paper's
    noise is), which removes variance where the image is dark or bright, so the expected
    residual of the clean image is ``mean(g(x))`` with ``g(mu) = E[(clip(mu + n, 0, 1) -
    mu)^2]``, ``n ~ N(0, sigma^2)``, in closed form; it is evaluated at the current smoothed
    output. Needs ``sigma`` (known, or Donoho's estimate from the noisy image).
``whiteness`` (the residual whiteness principle, as used to choose regularisation parameters,
    e.g. Lanza, Pragliola and Sgallari, 2020)
    The residual ``r = y - out_avg`` of a good estimate is noise, white. While the fit still
    misses image structure the residual holds it, and neighbouring residuals are positively
    correlated; once the network fits the noise -- smooth parts of it first -- the residual
    loses its low frequencies and neighbours become anti-correlated. The rule watches the
    residual's lag-one autocorrelation ``rho = sum(r_p r_q) / sum(r_p^2)`` over horizontally
    and vertically adjacent pixels ``p, q``. The iteration ``t0`` where it first reaches 0 is
    where the fit has caught the image's structure; the best smoothed output comes later (the
    fit keeps refining the image while it starts on the noise, and the average lags the
    network), so the rule stops at ``ceil(k * t0)`` and returns the smoothed output there.
    Needs no noise level. (At ``t0`` the discrepancy ratio is close to 1 when sigma is known:
    the two rules see the same moment from two sides.)

A SURE criterion is not offered: SURE needs the divergence of the estimate with respect to
the noisy image, and a DIP estimate is the end of an optimisation run, not a function one
can perturb cheaply (each Monte-Carlo probe would be a second fit).

:class:`StopMonitor` evaluates every rule at once, for one fit or a batch of K fits. Its
state lives in preallocated device tensors and :meth:`StopMonitor.update` changes it with
in-place tensor operations only (no ``.item()``, no branch on a tensor value, no host
synchronisation), so it can sit inside a captured training step. Its own iteration counter
is a device tensor. :meth:`StopMonitor.should_stop` reads one flag (one synchronisation) for
callers that end a fit early; :meth:`StopMonitor.result` reads everything once, after the
loop. Rule names: :data:`dipkit.columns.STOP_RULES`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from dipkit.columns import STOP_RULES
from dipkit.denoise import estimate_sigma
from dipkit.metrics import functional as fm

__all__ = ["STOP_RULES", "StopMonitor", "StopParams", "StopRecord", "clipped_noise_variance", "replay"]


@dataclass(frozen=True)
class StopParams:
    """Parameters of the rules (defaults chosen from the study in ``docs/early-stopping.md``).

    :ivar int wmv_window: ``W``, outputs in the moving window (ES-WMV's default, 100).
    :ivar int wmv_patience: ``P``, iterations without a new minimum of the variance before
        ES-WMV stops.
    :ivar float discrepancy_tau: ``tau``, the residual-to-noise-variance ratio at which the
        discrepancy rule stops.
    :ivar float whiteness_factor: ``k``, the whiteness rule stops at ``k`` times the
        iteration where the residual's lag-one autocorrelation first reached 0.
    """

    wmv_window: int = 100
    wmv_patience: int = 300
    discrepancy_tau: float = 1.0
    whiteness_factor: float = 1.5

    def __post_init__(self) -> None:
        if not (isinstance(self.wmv_window, int) and self.wmv_window >= 2):
            raise ValueError(f"StopParams: wmv_window must be an int >= 2, got {self.wmv_window!r}")
        if not (isinstance(self.wmv_patience, int) and self.wmv_patience >= 1):
            raise ValueError(f"StopParams: wmv_patience must be an int >= 1, got {self.wmv_patience!r}")
        if not (math.isfinite(self.discrepancy_tau) and self.discrepancy_tau > 0):
            raise ValueError(f"StopParams: discrepancy_tau must be > 0, got {self.discrepancy_tau!r}")
        if not (math.isfinite(self.whiteness_factor) and self.whiteness_factor >= 1):
            raise ValueError(f"StopParams: whiteness_factor must be >= 1, got {self.whiteness_factor!r}")


@dataclass
class StopRecord:
    """Where one rule stops one fit, and what it returns.

    :ivar str rule: the rule's name.
    :ivar bool triggered: whether the rule fired within the iterations run.
    :ivar int stop_iteration: the 1-based iteration at which the rule fired (the fit would end
        there), ``None`` if it never fired.
    :ivar int iteration: the 1-based iteration of the output the rule returns; the last
        iteration run when it never fired (it then returns the fit's final output).
    :ivar torch.Tensor output: that output ``[1, C, H, W]`` on the fit's device.
    :ivar float psnr: PSNR of ``output`` vs clean (data range 1), NaN without a clean image.
    :ivar float ssim: SSIM of ``output`` vs clean (data range 1), NaN without a clean image.
    """

    rule: str
    triggered: bool
    stop_iteration: int | None
    iteration: int
    output: torch.Tensor
    psnr: float = math.nan
    ssim: float = math.nan


def clipped_noise_variance(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``E[(clip(mu + n, 0, 1) - mu)^2]`` for ``n ~ N(0, sigma^2)``, elementwise.

    :param mu: clean values, any shape, clamped to ``[0, 1]``.
    :param sigma: noise std on the ``[0, 1]`` scale, broadcastable to ``mu``, > 0.
    :return: tensor of ``mu``'s shape and dtype: ``sigma^2 [(F(b) - F(a)) - (b f(b) - a f(a))]
        + mu^2 F(a) + (1 - mu)^2 (1 - F(b))`` with ``a = -mu / sigma``, ``b = (1 - mu) / sigma``
        and ``F``, ``f`` the standard normal CDF and density.
    """
    m = mu.clamp(0.0, 1.0)
    a = -m / sigma
    b = (1.0 - m) / sigma
    cdf_a, cdf_b = torch.special.ndtr(a), torch.special.ndtr(b)
    inv_sqrt_2pi = 1.0 / math.sqrt(2.0 * math.pi)
    pdf_a = torch.exp(-0.5 * a * a) * inv_sqrt_2pi
    pdf_b = torch.exp(-0.5 * b * b) * inv_sqrt_2pi
    inner = (cdf_b - cdf_a) - (b * pdf_b - a * pdf_a)
    return sigma * sigma * inner + m * m * cdf_a + (1.0 - m) ** 2 * (1.0 - cdf_b)


class StopMonitor:
    """Every rule of :data:`STOP_RULES`, evaluated online for K fits at once.

    :param noisy: the K noisy images ``[K, C, H, W]`` (the fits' targets), on the fits' device
        and in their dtype.
    :param sigma: the noise std of each fit on the 0-255 scale: a number, a sequence of K,
        or ``None`` to estimate it from each noisy image (Donoho's estimate,
        :func:`dipkit.denoise.estimate_sigma`). Only the discrepancy rule uses it.
    :param int iterations: the most iterations the fit will run (sizes the signal records).
    :param StopParams params: the rules' parameters.

    Call :meth:`update` once per iteration with that iteration's raw output and smoothed
    output (both ``[K, C, H, W]``), after the smoothed output has been updated.
    """

    def __init__(self, noisy: torch.Tensor, sigma, iterations: int, params: StopParams | None = None):
        if noisy.dim() != 4:
            raise ValueError(f"noisy must be [K, C, H, W], got {tuple(noisy.shape)}")
        self.params = params or StopParams()
        self.k = k = noisy.shape[0]
        self.n = int(iterations)
        dev, dt = noisy.device, noisy.dtype
        f64 = {"device": dev, "dtype": torch.float64}
        i64 = {"device": dev, "dtype": torch.int64}
        self.y = noisy
        self.sigma_255 = _sigmas(noisy, sigma)
        self.numel = noisy[0].numel()
        w = self.params.wmv_window
        self.t = torch.zeros((), **i64)
        self.dims = tuple(range(1, noisy.dim()))
        # ES-WMV: ring buffer of the last W raw outputs (zeros before they arrive), their mean
        # and the sum of squared deviations from it, updated as one output replaces another
        self.ring = torch.zeros((w, *noisy.shape), device=dev, dtype=dt)
        self.mean = torch.zeros(noisy.shape, device=dev, dtype=dt)
        self.m2 = torch.zeros(k, **f64)
        self.diff = torch.empty(noisy.shape, device=dev, dtype=dt)
        h, w_px = noisy.shape[-2:]
        self.lag_h = torch.empty((*noisy.shape[:-1], w_px - 1), device=dev, dtype=dt)
        self.lag_v = torch.empty((*noisy.shape[:-2], h - 1, w_px), device=dev, dtype=dt)
        self.acc = torch.empty(noisy.shape, device=dev, dtype=dt)
        self.best_var = torch.full((k,), math.inf, **f64)
        self.best_t = torch.zeros(k, **i64)
        self.white_t = torch.zeros(k, **i64)  # where the residual first turned white (0: not yet)
        # discrepancy: the expected clipped-noise variance g(mu) of each fit, tabulated at
        # mu = 0, 1/L, ..., 1 and averaged over a fixed grid of at most SAMPLE pixels per fit
        sig = torch.tensor([s / 255.0 for s in self.sigma_255], dtype=torch.float64).view(k, 1)
        levels = torch.linspace(0.0, 1.0, self.LEVELS + 1, dtype=torch.float64).view(1, -1)
        self.table = clipped_noise_variance(levels, sig).to(device=dev, dtype=dt)  # [K, L + 1]
        self.step = max(1, math.ceil(math.sqrt(self.numel / self.SAMPLE)))
        # per rule: iteration it fired (0: not yet), iteration of its output, its output
        self.fired = torch.zeros((len(STOP_RULES), k), **i64)
        self.kept_t = torch.zeros((len(STOP_RULES), k), **i64)
        self.kept = torch.zeros((len(STOP_RULES), *noisy.shape), device=dev, dtype=dt)
        # per-iteration signals: the moving variance, the residual / noise-variance ratio, the
        # residual's lag-one autocorrelation
        self.signals = torch.full((3, k, self.n), math.nan, **f64)
        self._inf = torch.full((k,), math.inf, **f64)

    #: Most pixels per fit over which the expected clipped-noise variance is averaged (small
    #: enough that its element-wise work stays one thread's: no thread wake-ups on CPU).
    SAMPLE = 16384
    #: Intervals of the table of the expected clipped-noise variance over ``[0, 1]``.
    LEVELS = 4096

    # ----------------------------------------------------------------- per iteration

    @torch.no_grad()
    def update(self, out: torch.Tensor, out_avg: torch.Tensor) -> None:
        """Advance every rule by one iteration (in-place device work only).

        :param out: this iteration's raw outputs ``[K, C, H, W]``.
        :param out_avg: the smoothed outputs after this iteration's update ``[K, C, H, W]``.
        """
        p = self.params
        w = p.wmv_window
        self.t.add_(1)
        t = self.t
        slot = torch.remainder(t - 1, w).view(1)
        # windowed variance: out replaces the oldest output x_o; with d = out - x_o the mean
        # moves by d / W and the sum of squared deviations by d . (out + x_o - mean' - mean)
        old = self.ring.index_select(0, slot)[0]
        torch.sub(out, old, out=self.diff)
        torch.add(out, old, out=self.acc)
        self.acc.sub_(self.mean)
        self.mean.add_(self.diff, alpha=1.0 / w)
        self.acc.sub_(self.mean)
        self.m2.add_(_dots(self.diff, self.acc))
        self.ring.index_copy_(0, slot, out.unsqueeze(0))
        var = (self.m2 / (w * self.numel)).clamp_(min=0.0)
        var = torch.where(t >= w, var, self._inf)
        # discrepancy: residual of the smoothed output vs the variance the clipped noise leaves
        torch.sub(out_avg, self.y, out=self.diff)
        resid = _dots(self.diff, self.diff) / self.numel
        level = torch.mul(out_avg[:, :, :: self.step, :: self.step], self.LEVELS).nan_to_num_(0.0)
        level.round_().clamp_(0, self.LEVELS)  # a diverged (NaN) output reads as level 0
        expected = torch.gather(self.table, 1, level.flatten(1).to(torch.int64)).mean(1, dtype=torch.float64)
        ratio = resid / expected
        # whiteness: neighbouring residuals (the residual is -diff; the sign cancels)
        d = self.diff
        torch.mul(d[..., :, 1:], d[..., :, :-1], out=self.lag_h)
        torch.mul(d[..., 1:, :], d[..., :-1, :], out=self.lag_v)
        lagged = self.lag_h.sum(dim=self.dims, dtype=torch.float64)
        lagged += self.lag_v.sum(dim=self.dims, dtype=torch.float64)
        rho = lagged / (2.0 * resid * self.numel)
        self.signals.index_copy_(2, (t - 1).view(1), torch.stack([var, ratio, rho]).unsqueeze(2))

        active = self.fired == 0  # [R, K]
        # wmv: a new minimum of the variance keeps this output; P iterations without one fire
        better = active[0] & (var < self.best_var)
        self.best_var.copy_(torch.where(better, var, self.best_var))
        self.best_t.copy_(torch.where(better, t, self.best_t))
        fire_wmv = active[0] & (t - self.best_t >= p.wmv_patience) & (self.best_t > 0)
        # discrepancy: the first iteration at or below tau keeps this output and fires
        fire_disc = active[1] & (ratio <= p.discrepancy_tau)
        # whiteness: note where rho first reaches 0, fire k times as late
        self.white_t.copy_(torch.where((self.white_t == 0) & (rho <= 0), t, self.white_t))
        due = torch.ceil(self.white_t.to(torch.float64) * p.whiteness_factor)
        fire_white = active[2] & (self.white_t > 0) & (t >= due)
        keep = torch.stack([better, fire_disc, fire_white])  # [R, K]
        # lerp with weights 0 and 1 is an exact select (torch computes end - (end - start) * 0)
        self.kept.lerp_(out_avg.unsqueeze(0), keep.to(self.kept.dtype).view(*keep.shape, 1, 1, 1))
        self.kept_t.copy_(torch.where(keep, t, self.kept_t))
        fire = torch.stack([fire_wmv, fire_disc, fire_white])
        self.fired.copy_(torch.where(fire, t, self.fired))

    # ----------------------------------------------------------------- reading

    def should_stop(self, rule: str) -> bool:
        """Whether ``rule`` has fired for every fit (reads one flag: one host synchronisation)."""
        return bool((self.fired[_rule_index(rule)] > 0).all())

    def result(
        self, final: torch.Tensor, clean: torch.Tensor | None = None, fit: int = 0
    ) -> dict[str, StopRecord]:
        """Every rule's record for fit ``fit`` (the state is read from the device once).

        :param final: that fit's final output ``[1, C, H, W]`` (what a rule that never fired
            returns).
        :param clean: its ground truth ``[1, C, H, W]`` to score the outputs against, or None.
        :return: ``{rule: StopRecord}``; the outputs are CPU float32 copies.
        """
        done = int(self.t)
        fired = self.fired[:, fit].cpu().numpy()
        kept_t = self.kept_t[:, fit].cpu().numpy()
        records = {}
        for r, rule in enumerate(STOP_RULES):
            hit = bool(fired[r] > 0)
            img = self.kept[r, fit].unsqueeze(0) if hit else final
            rec = StopRecord(
                rule,
                hit,
                int(fired[r]) if hit else None,
                int(kept_t[r]) if hit else done,
                img.detach().to("cpu", torch.float32).contiguous(),
            )
            if clean is not None:
                rec.psnr = float(fm.psnr(img, clean, 1.0)[0])
                rec.ssim = float(fm.ssim(img, clean, 1.0)[0])
            records[rule] = rec
        return records

    def signal_trajectories(self, fit: int = 0) -> dict[str, np.ndarray]:
        """The rules' signals of fit ``fit`` at every iteration run, float64: ``wmv_variance``
        (the moving variance; inf before the window is full), ``discrepancy_ratio`` (the
        residual over the noise variance expected there) and ``whiteness_rho`` (the residual's
        lag-one autocorrelation)."""
        host = self.signals[:, fit, : int(self.t)].cpu().numpy()
        return {name: host[j].copy() for j, name in enumerate(SIGNALS)}


def replay(signals: dict[str, np.ndarray], params: StopParams | None = None) -> dict[str, tuple[int, int]]:
    """The rules' decisions from one fit's recorded signals (:attr:`FitResult.stop_signals`),
    for tuning :class:`StopParams` without refitting: the same decisions as
    :meth:`StopMonitor.update` makes online (tested).

    :return: ``{rule: (fired, kept)}``: the 1-based iteration the rule fired at (0: never)
        and the iteration of its output (0: never fired, so it returns the final output).
    """
    p = params or StopParams()
    var = np.asarray(signals["wmv_variance"], np.float64)
    ratio = np.asarray(signals["discrepancy_ratio"], np.float64)
    out = {}
    best, best_t, fired = math.inf, 0, 0
    for t, v in enumerate(var, start=1):
        if v < best:
            best, best_t = v, t
        if best_t > 0 and t - best_t >= p.wmv_patience:
            fired = t
            break
    out["wmv"] = (fired, best_t if fired else 0)
    hits = np.flatnonzero(ratio <= p.discrepancy_tau)
    first = int(hits[0]) + 1 if hits.size else 0
    out["discrepancy"] = (first, first)
    white = np.flatnonzero(np.asarray(signals["whiteness_rho"], np.float64) <= 0)
    due = math.ceil((int(white[0]) + 1) * p.whiteness_factor) if white.size else 0
    due = due if due <= len(ratio) else 0
    out["whiteness"] = (due, due)
    return out


#: The per-iteration signals the rules decide on (:meth:`StopMonitor.signal_trajectories`).
SIGNALS = ("wmv_variance", "discrepancy_ratio", "whiteness_rho")


def _dots(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-fit dot products of two contiguous ``[K, ...]`` tensors, as float64 ``[K]``."""
    k = a.shape[0]
    return torch.bmm(a.view(k, 1, -1), b.view(k, -1, 1)).view(k).to(torch.float64)


def _rule_index(rule: str) -> int:
    if rule not in STOP_RULES:
        raise ValueError(f"unknown early-stopping rule {rule!r}; expected one of {', '.join(STOP_RULES)}")
    return STOP_RULES.index(rule)


def _sigmas(noisy: torch.Tensor, sigma) -> list[float]:
    """K noise levels on the 0-255 scale: given, or estimated from each noisy image."""
    k = noisy.shape[0]
    if sigma is None:
        host = noisy.detach().to("cpu", torch.float64).numpy().transpose(0, 2, 3, 1)
        values = [estimate_sigma(host[j]) for j in range(k)]
    elif isinstance(sigma, (int, float)):
        values = [float(sigma)] * k
    else:
        values = [float(s) for s in sigma]
    if len(values) != k:
        raise ValueError(f"need one noise level per fit ({k}), got {len(values)}")
    # a noise-free image estimates as 0; a tiny floor keeps the closed form finite
    return [max(v, 1e-3) for v in values]
