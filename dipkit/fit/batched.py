"""Several fits of one architecture at once, in one process: stacked parameters and ``vmap``.

Small DIP networks leave a GPU mostly idle, and fit processes sharing a GPU are time-sliced.
:func:`fit_batch` runs K independent fits as one vectorised computation instead: the K
networks' parameters are stacked (``torch.func.stack_module_state``), the forward pass is
``vmap`` of ``functional_call`` (convolutions become grouped convolutions), the loss is the sum
of the K per-fit MSEs (so each fit's gradient is its own), and one Adam steps the stacked
parameters (Adam is element-wise, so this is K Adams). BatchNorm normalises each fit's
activations separately. Each fit keeps its own perturbation generator. In float64 the results
equal K calls of :func:`dipkit.fit.fit` up to rounding (``tests/test_fit_batched.py``).

Each fit gets the same :class:`~dipkit.fit.FitResult` as :func:`dipkit.fit.fit` gives: loss and
PSNR trajectories every iteration, SSIM of the smoothed output every ``ssim_every`` iterations
and at the last, the scored output and its scores. Scope: the paper's loop without
backtracking, NCHW layout. As in :func:`dipkit.fit.fit` the iteration is one step function
(:class:`_BatchStep`), captured into a CUDA graph and replayed on CUDA (``cuda_graphs``,
with the K generators registered with the graph; :mod:`dipkit.fit.cuda_graphs`). Used by
``benchmarks/fit_speed.py`` (``batched``, ``throughput --batch``) and by the pipeline's
``fit_batch`` rule (config ``fit.batch``, :func:`dipkit.fit_jobs.run_fit_batch_job`).
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from dipkit.fit.cuda_graphs import StepRunner, eager_reason
from dipkit.fit.device import backend_flags, peak_memory, reset_peak_memory, synchronize, tune_host_allocator
from dipkit.fit.divergence import FiniteWatch, first_nonfinite
from dipkit.fit.engine import ProgressFn, _fit_result, ssim_iterations
from dipkit.fit.settings import FitDivergedError, FitResult, FitSettings
from dipkit.fit.step import StepHook, StepTensors
from dipkit.fit.stopping import StopMonitor
from dipkit.metrics import functional as fm

__all__ = ["fit_batch"]


def fit_batch(
    nets: Sequence[nn.Module],
    zs: Sequence[torch.Tensor],
    noisy: Sequence[torch.Tensor],
    clean: Sequence[torch.Tensor] | None,
    settings: FitSettings,
    seeds: Sequence[int],
    progress: ProgressFn | None = None,
    step_hooks: Sequence[StepHook] = (),
    noise_sigma: Sequence[float] | None = None,
) -> list[FitResult]:
    """Fit K networks of one architecture, each to its own image, at once.

    :param nets: K networks with the same structure (different weights), on one device.
    :param zs: K input codes ``[1, C_in, h, w]``.
    :param noisy: K targets ``[1, C, H, W]`` (same shape).
    :param clean: K ground truths ``[1, C, H, W]``, or None (no PSNR or SSIM against a
        ground truth, as :func:`dipkit.fit.fit` without one).
    :param settings: as for :func:`dipkit.fit.fit`, without ``backtracking``; ``autocast``,
        ``compile`` and ``cpu_layout`` are not used.
    :param seeds: K perturbation seeds (as ``seed`` of :func:`dipkit.fit.fit`).
    :param progress: optional ``progress(iteration, loss)`` with the batch's summed loss,
        called every ``max(1, iterations // 100)`` iterations and at the last.
    :param step_hooks: as for :func:`dipkit.fit.fit`, seeing the K fits' tensors at once
        (:class:`dipkit.fit.step.StepTensors` with ``[K, 1, C, H, W]`` images and ``[K]`` losses).
    :param noise_sigma: K noise stds (0-255) for the early-stopping rules, or None to estimate
        them (as :func:`dipkit.fit.fit`); with ``settings.early_stop_poll`` the batch ends when
        the rule has fired for every fit.
    :return: one :class:`~dipkit.fit.FitResult` per fit; ``wall_time_s`` and the peak memory
        are the batch's.
    :raises FitDivergedError: naming the fit whose loss or output is not finite.
    """
    k = len(nets)
    if clean is not None and any(c is None for c in clean):
        raise ValueError("fit_batch needs a ground truth for every fit, or clean=None for none")
    if not (k == len(zs) == len(noisy) == len(seeds) == (k if clean is None else len(clean))) or k < 1:
        raise ValueError("fit_batch needs equally many networks, codes, images and seeds (at least one)")
    if settings.backtracking:
        raise ValueError("fit_batch does not implement backtracking; use dipkit.fit.fit")
    for net in nets:
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                raise ValueError("fit_batch needs BatchNorm without running statistics (DIP never uses them)")
    tune_host_allocator()
    device = noisy[0].device
    with backend_flags(device, deterministic=settings.deterministic, tf32=settings.tf32):
        return _fit_batch(
            nets, zs, noisy, clean, settings, seeds, device, progress, tuple(step_hooks), noise_sigma
        )


class _BatchStep:
    """One iteration of K batched fits (see :class:`dipkit.fit.step.TrainStep`, whose records
    these follow: ``rec[:, j, i]`` for fit ``j``)."""

    def __init__(self, forward, params, buffers, optimizer, z, y, x, *, n, std, w, generators, hooks):
        k, device = z.shape[0], z.device
        self.forward, self.params, self.buffers, self.optimizer = forward, params, buffers, optimizer
        self.z, self.y, self.x, self.std, self.w = z, y, x, std, w
        self.generators, self.hooks = generators, hooks
        self.noise, self.z_in = torch.empty_like(z), torch.empty_like(z)
        self.rec = torch.full((4, k, n), math.nan, dtype=torch.float64, device=device)
        self.vals = torch.full((4, k), math.nan, dtype=torch.float64, device=device)
        self.iteration = torch.zeros((), dtype=torch.int64, device=device)
        self.finite = torch.ones((k,), dtype=torch.bool, device=device)
        self.out_avg = torch.empty_like(y)
        self.dims = tuple(range(1, y.dim()))
        self.losses: torch.Tensor | None = None

    def __call__(self, first: bool) -> None:
        z, y, x, dims = self.z, self.y, self.x, self.dims
        self.optimizer.zero_grad(set_to_none=True)
        if self.std > 0:
            for j, gen in enumerate(self.generators):
                self.noise[j].normal_(generator=gen)
            torch.mul(self.noise, self.std, out=self.z_in)  # z + noise * std, as the single-fit engine
            self.z_in.add_(z)
            inp = self.z_in
        else:
            inp = z
        out = self.forward(self.params, self.buffers, inp)
        losses = ((out - y) ** 2).mean(dim=dims)  # [K]: each fit's MSE
        losses.sum().backward()
        with torch.no_grad():
            o, avg, vals = out.detach(), self.out_avg, self.vals
            self.losses = losses.detach()
            vals[0].copy_(self.losses)
            if x is not None:
                vals[1].copy_(((o - x) ** 2).sum(dim=dims, dtype=torch.float64))
            vals[3].copy_(((o - y) ** 2).sum(dim=dims, dtype=torch.float64))
            if first or self.w == 0.0:
                avg.copy_(o)
            else:
                avg.mul_(self.w).add_(o, alpha=1.0 - self.w)
            if x is not None:
                vals[2].copy_(((avg - x) ** 2).sum(dim=dims, dtype=torch.float64))
            self.rec.index_copy_(2, self.iteration.view(1), vals.unsqueeze(2))
            torch.logical_and(self.finite, torch.isfinite(self.losses), out=self.finite)
            if self.hooks:
                view = StepTensors(self.iteration, o, avg, self.losses)
                for hook in self.hooks:
                    hook(view)
        self.optimizer.step()
        self.iteration.add_(1)


def _diverged_fit(losses: np.ndarray, final_ok: Sequence[bool] | None = None) -> FitDivergedError | None:
    """The error naming the first fit (of ``losses``, ``[K, iterations run]``) whose loss, or
    final output, is not finite; None if there is none."""
    n = losses.shape[1]
    for j in range(losses.shape[0]):
        first = first_nonfinite(losses[j])
        if first is not None or (final_ok is not None and not final_ok[j]):
            it = first if first is not None else n + 1
            return FitDivergedError(
                f"fit {j} of the batch diverged: the loss is not finite at iteration {it} of {n}", it
            )
    return None


def _fit_batch(nets, zs, noisy, clean, s, seeds, device, progress, hooks=(), noise_sigma=None):
    n, w, std = int(s.iterations), float(s.exp_weight), float(s.reg_noise_std)
    for net in nets:
        net.train()
    params, buffers = stack_module_state(list(nets))
    skeleton = copy.deepcopy(nets[0]).to("meta")

    def one(p, b, x):
        return functional_call(skeleton, (p, b), (x,))

    forward = vmap(one, in_dims=(0, 0, 0))
    z = torch.stack(list(zs))  # [K, 1, C_in, h, w]
    y = torch.stack(list(noisy))  # [K, 1, C, H, W]
    x = None if clean is None else torch.stack(list(clean))
    optimizer = torch.optim.Adam(list(params.values()), lr=s.lr, capturable=device.type == "cuda")
    gens = []
    for seed in seeds:
        g = torch.Generator(device=device)
        g.manual_seed(int(seed))
        gens.append(g)
    monitor = StopMonitor(y[:, 0], noise_sigma, n, s.stop_params)  # every rule, for the K fits

    def monitor_hook(t: StepTensors) -> None:
        monitor.update(t.output[:, 0], t.average[:, 0])

    step = _BatchStep(
        forward,
        params,
        buffers,
        optimizer,
        z,
        y,
        x,
        n=n,
        std=std,
        w=w,
        generators=gens,
        hooks=(monitor_hook, *hooks),
    )
    runner = StepRunner(
        step,
        device=device,
        generators=gens,
        optimizer=optimizer,
        mode=s.cuda_graphs,
        reason=eager_reason(s.cuda_graphs, device, iterations=n),
    )
    ssim_iters = ssim_iterations(n, s.ssim_every) if x is not None else []
    ssim_slot = {i: j for j, i in enumerate(ssim_iters)}
    ssim_vals = torch.full((len(ssim_iters), len(nets)), math.nan, dtype=torch.float64, device=device)
    watch = FiniteWatch(device) if s.divergence_check_every else None
    progress_every = max(1, n // 100)
    done = n

    reset_peak_memory(device)
    synchronize(device)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # eager steps (warm-up, fallbacks) of a capturable Adam are intended
        warnings.filterwarnings("ignore", message="This instance was constructed with capturable=True")
        for i in range(n):
            runner(i)
            slot = ssim_slot.get(i + 1)
            if slot is not None:
                with torch.no_grad():
                    ssim_vals[slot] = fm.ssim(step.out_avg.flatten(0, 1), x.flatten(0, 1), s.ssim_data_range)
            check = watch is not None and (i + 1) % s.divergence_check_every == 0
            if check and watch.push(step.finite.all()):
                raise _diverged_fit(step.rec[0, :, : i + 1].cpu().numpy()) or _diverged_fit_unknown(i + 1, n)
            if progress is not None and ((i + 1) % progress_every == 0 or i + 1 == n):
                progress(i + 1, float(step.losses.sum()))
            if s.early_stop_poll and (i + 1) % s.early_stop_poll == 0 and monitor.should_stop(s.early_stop):
                done = i + 1
                break
    if runner.captured:
        optimizer.zero_grad(set_to_none=True)  # the graph's gradients: release its memory pool
    with torch.no_grad():
        final_raw = forward(params, buffers, z)
        final = final_raw if w == 0.0 else step.out_avg * w + final_raw * (1.0 - w)
    synchronize(device)
    wall = time.perf_counter() - t0
    peak = peak_memory(device)

    host = step.rec[:, :, :done].cpu().numpy()
    kept = [j for j, it in enumerate(ssim_iters) if it <= done]
    ssim_iters, ssim_host = [ssim_iters[j] for j in kept], ssim_vals.cpu().numpy()[kept]
    err = _diverged_fit(host[0], [bool(torch.isfinite(f).all()) for f in final])
    if err is not None:
        raise err
    results = []
    for j in range(len(nets)):
        truth = None if x is None else x[j]
        results.append(
            _fit_result(
                host[:, j],
                ssim_iters,
                ssim_host[:, j],
                final[j],
                y[j],
                truth,
                s,
                int(seeds[j]),
                wall=wall,
                device=device,
                peak=peak,
                cuda_graph=runner.captured,
                monitor=(monitor, j),
            )
        )
    return results


def _diverged_fit_unknown(iteration: int, n: int) -> FitDivergedError:
    return FitDivergedError(
        f"a fit of the batch diverged: a loss is not finite by iteration {iteration} of {n}", iteration
    )
