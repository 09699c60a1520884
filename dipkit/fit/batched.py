"""Several fits of one architecture at once, in one process: stacked parameters and ``vmap``.

Small DIP networks leave a GPU mostly idle, and fit processes sharing a GPU are time-sliced.
:func:`fit_batch` runs K independent fits as one vectorised computation instead: the K
networks' parameters are stacked (``torch.func.stack_module_state``), the forward pass is
``vmap`` of ``functional_call`` (convolutions become grouped convolutions), the loss is the sum
of the K per-fit MSEs (so each fit's gradient is its own), and one Adam steps the stacked
parameters (Adam is element-wise, so this is K Adams). BatchNorm normalises each fit's
activations separately. Each fit keeps its own perturbation generator. In float64 the results
equal K calls of :func:`dipkit.fit.fit` up to rounding (``tests/test_fit_batched.py``).

Scope: the paper's loop without backtracking; it records loss and PSNR trajectories (no SSIM
trajectory) and checks for NaN once, after the loop. Used by ``benchmarks/fit_speed.py
throughput --batched``; the pipeline runs one fit per job.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from dipkit.fit.device import backend_flags, describe_device, synchronize, tune_host_allocator
from dipkit.fit.engine import _psnr_from_sse
from dipkit.fit.settings import FitDivergedError, FitSettings
from dipkit.metrics import functional as fm

__all__ = ["fit_batch"]


def fit_batch(
    nets: Sequence[nn.Module],
    zs: Sequence[torch.Tensor],
    noisy: Sequence[torch.Tensor],
    clean: Sequence[torch.Tensor],
    settings: FitSettings,
    seeds: Sequence[int],
) -> list[dict]:
    """Fit K networks of one architecture, each to its own image, at once.

    :param nets: K networks with the same structure (different weights), on one device.
    :param zs: K input codes ``[1, C_in, h, w]``.
    :param noisy: K targets ``[1, C, H, W]`` (same shape).
    :param clean: K ground truths ``[1, C, H, W]``.
    :param settings: ``iterations``, ``lr``, ``reg_noise_std``, ``exp_weight``, ``tf32`` and
        ``deterministic`` are used.
    :param seeds: K perturbation seeds (as ``seed`` of :func:`dipkit.fit.fit`).
    :return: per fit a dict with ``loss``, ``psnr_raw``, ``psnr_ema`` (numpy, one value per
        iteration), ``output`` (``[1, C, H, W]`` CPU float32) and ``psnr_last``; every dict
        also carries the batch's ``wall_time_s`` and ``device``.
    """
    k = len(nets)
    if not (k == len(zs) == len(noisy) == len(clean) == len(seeds)) or k < 1:
        raise ValueError("fit_batch needs equally many networks, codes, images and seeds (at least one)")
    for net in nets:
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                raise ValueError("fit_batch needs BatchNorm without running statistics (DIP never uses them)")
    tune_host_allocator()
    device = noisy[0].device
    with backend_flags(device, deterministic=settings.deterministic, tf32=settings.tf32):
        return _fit_batch(nets, zs, noisy, clean, settings, seeds, device)


def _fit_batch(nets, zs, noisy, clean, s, seeds, device):
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
    x = torch.stack(list(clean))
    optimizer = torch.optim.Adam(list(params.values()), lr=s.lr)
    gens = []
    for seed in seeds:
        g = torch.Generator(device=device)
        g.manual_seed(int(seed))
        gens.append(g)
    noise, z_in = torch.empty_like(z), torch.empty_like(z)
    rec = torch.full((3, k, n), math.nan, dtype=torch.float64, device=device)  # loss, sse raw, sse ema
    dims = tuple(range(1, y.dim()))
    numel = y[0].numel()
    out_avg = None

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
            rec[1, :, i] = ((o - x) ** 2).sum(dim=dims, dtype=torch.float64)
            if out_avg is None:
                out_avg = o.clone()
            elif w == 0.0:
                out_avg.copy_(o)
            else:
                out_avg.mul_(w).add_(o, alpha=1.0 - w)
            rec[2, :, i] = ((out_avg - x) ** 2).sum(dim=dims, dtype=torch.float64)
        optimizer.step()
    with torch.no_grad():
        final_raw = forward(params, buffers, z)
        final = final_raw if w == 0.0 else out_avg * w + final_raw * (1.0 - w)
    synchronize(device)
    wall = time.perf_counter() - t0

    host = rec.cpu().numpy()
    psnr = _psnr_from_sse(host[1:], numel)
    psnr_last = fm.psnr(final, x, 1.0).cpu().numpy()  # [K], as the engine scores its output
    results = []
    for j in range(k):
        if not np.isfinite(host[0, j]).all() or not bool(torch.isfinite(final[j]).all()):
            bad = np.flatnonzero(~np.isfinite(host[0, j]))
            it = int(bad[0]) + 1 if bad.size else n + 1
            raise FitDivergedError(f"fit {j} of the batch diverged: the loss is not finite at iteration {it} of {n}", it)
        results.append({
            "loss": host[0, j].copy(),
            "psnr_raw": psnr[0, j].copy(),
            "psnr_ema": psnr[1, j].copy(),
            "output": final[j].detach().to("cpu", torch.float32),
            "psnr_last": float(psnr_last[j]),
            "wall_time_s": wall,
            "device": describe_device(device),
        })
    return results
