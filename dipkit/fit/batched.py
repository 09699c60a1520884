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
backtracking, NCHW layout, NaN checked once after the loop. Used by ``benchmarks/fit_speed.py``
(``batched``, ``throughput --batch``) and by the pipeline's ``fit_batch`` rule (config
``fit.batch``, :func:`dipkit.benchmark.run_fit_batch_job`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from dipkit.fit.device import backend_flags, peak_memory, reset_peak_memory, synchronize, tune_host_allocator
from dipkit.fit.engine import ProgressFn, _fit_result, ssim_iterations
from dipkit.fit.settings import FitDivergedError, FitResult, FitSettings
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
        return _fit_batch(nets, zs, noisy, clean, settings, seeds, device, progress, noise_sigma)


def _fit_batch(nets, zs, noisy, clean, s, seeds, device, progress, noise_sigma=None):
    from torch.func import functional_call, stack_module_state, vmap

    k, n, w, std = len(nets), int(s.iterations), float(s.exp_weight), float(s.reg_noise_std)
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
    optimizer = torch.optim.Adam(list(params.values()), lr=s.lr)
    gens = []
    for seed in seeds:
        g = torch.Generator(device=device)
        g.manual_seed(int(seed))
        gens.append(g)
    noise, z_in = torch.empty_like(z), torch.empty_like(z)
    # rows as the engine's: loss, SSE(raw, clean), SSE(smoothed, clean), SSE(raw, noisy)
    rec = torch.full((4, k, n), math.nan, dtype=torch.float64, device=device)
    ssim_iters = ssim_iterations(n, s.ssim_every) if x is not None else []
    ssim_slot = {i: j for j, i in enumerate(ssim_iters)}
    ssim_vals = torch.full((len(ssim_iters), k), math.nan, dtype=torch.float64, device=device)
    dims = tuple(range(1, y.dim()))
    out_avg = None
    progress_every = max(1, n // 100)
    monitor = StopMonitor(y[:, 0], noise_sigma, n, s.stop_params)  # every rule, for the K fits
    done = n

    reset_peak_memory(device)
    synchronize(device)
    t0 = time.perf_counter()
    for i in range(n):
        optimizer.zero_grad(set_to_none=True)
        if std > 0:
            for j in range(k):
                noise[j].normal_(generator=gens[j])
            torch.mul(noise, std, out=z_in)  # z + noise * std, as the single-fit engine
            z_in.add_(z)
            inp = z_in
        else:
            inp = z
        out = forward(params, buffers, inp)
        losses = ((out - y) ** 2).mean(dim=dims)  # [K]: each fit's MSE
        losses.sum().backward()
        with torch.no_grad():
            o = out.detach()
            rec[0, :, i] = losses.detach()
            if x is not None:
                rec[1, :, i] = ((o - x) ** 2).sum(dim=dims, dtype=torch.float64)
            rec[3, :, i] = ((o - y) ** 2).sum(dim=dims, dtype=torch.float64)
            if out_avg is None:
                out_avg = o.clone()
            elif w == 0.0:
                out_avg.copy_(o)
            else:
                out_avg.mul_(w).add_(o, alpha=1.0 - w)
            if x is not None:
                rec[2, :, i] = ((out_avg - x) ** 2).sum(dim=dims, dtype=torch.float64)
            slot = ssim_slot.get(i + 1)
            if slot is not None:
                ssim_vals[slot] = fm.ssim(out_avg.flatten(0, 1), x.flatten(0, 1), s.ssim_data_range)
            monitor.update(o[:, 0], out_avg[:, 0])
        optimizer.step()
        if progress is not None and ((i + 1) % progress_every == 0 or i + 1 == n):
            progress(i + 1, float(losses.detach().sum()))
        if s.early_stop_poll and (i + 1) % s.early_stop_poll == 0 and monitor.should_stop(s.early_stop):
            done = i + 1
            break
    with torch.no_grad():
        final_raw = forward(params, buffers, z)
        final = final_raw if w == 0.0 else out_avg * w + final_raw * (1.0 - w)
    synchronize(device)
    wall = time.perf_counter() - t0
    peak = peak_memory(device)

    host = rec[:, :, :done].cpu().numpy()
    kept = [j for j, it in enumerate(ssim_iters) if it <= done]
    ssim_iters, ssim_host = [ssim_iters[j] for j in kept], ssim_vals.cpu().numpy()[kept]
    results = []
    for j in range(k):
        if not np.isfinite(host[0, j]).all() or not bool(torch.isfinite(final[j]).all()):
            bad = np.flatnonzero(~np.isfinite(host[0, j]))
            it = int(bad[0]) + 1 if bad.size else n + 1
            raise FitDivergedError(f"fit {j} of the batch diverged: the loss is not finite at iteration {it} of {n}", it)
        truth = None if x is None else x[j]
        results.append(_fit_result(host[:, j], ssim_iters, ssim_host[:, j], final[j], y[j], truth, s, int(seeds[j]),
                                   wall=wall, device=device, peak=peak, monitor=(monitor, j)))
    return results
