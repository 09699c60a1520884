"""A fit loop that behaves like the paper's code, kept as the yardstick for the engine.

What the paper's ``DIP-Recon/core/fit.py`` does every iteration, besides the Adam step:
the input code is wrapped with ``requires_grad=True`` (so the backward pass also computes
the gradient with respect to the input), the loss is copied to the host, and the smoothed
output is copied to the host and scored with scikit-image (SSIM and PSNR against the clean
image); every ``iters_print_acc = 100`` iterations it also scores the smoothed output
against the noisy image, the noisy image against the clean one and the raw output against
the clean one. :func:`reference_fit` does the same, so that

* ``benchmarks/fit_speed.py`` can time :func:`dipkit.fit.fit` against it in one run, and
* ``tests/test_fit_reference.py`` can show, in float64, that the engine's optimisations leave
  the trajectory unchanged.

It is not used by the pipeline. Unlike the paper's code it draws the input perturbation
from a seeded device generator (the same stream as the engine) and does not plot layer
importances to PNG files every ten iterations (which would make it slower still).
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import nn

from dipkit.fit.device import peak_memory, reset_peak_memory, synchronize
from dipkit.fit.settings import FitSettings

__all__ = ["reference_fit"]


def _hwc(t: torch.Tensor) -> np.ndarray:
    """``[1, C, H, W]`` tensor -> ``[H, W, C]`` numpy array on the host (a device sync)."""
    return t.detach().cpu().numpy()[0].transpose(1, 2, 0)


def _scores(gt: np.ndarray, pred: np.ndarray, data_range: float) -> tuple[float, float]:
    """The paper's ``eval_general``: (PSNR, SSIM) with scikit-image."""
    return (
        peak_signal_noise_ratio(gt, pred, data_range=1.0),
        structural_similarity(gt, pred, data_range=data_range, channel_axis=-1),
    )


def reference_fit(
    net: nn.Module,
    z: torch.Tensor,
    noisy: torch.Tensor,
    clean: torch.Tensor,
    settings: FitSettings,
    seed: int,
    print_every: int = 100,
) -> dict:
    """Fit ``net`` the way the paper's loop does, scoring on the host every iteration.

    :param net: network on the images' device and dtype (trained in place, train mode).
    :param z: input code ``[1, C_in, h, w]``.
    :param noisy: target ``[1, C, H, W]``.
    :param clean: ground truth ``[1, C, H, W]``.
    :param settings: ``iterations``, ``lr``, ``reg_noise_std``, ``exp_weight`` and
        ``ssim_data_range`` are used; the rest is ignored.
    :param seed: seed of the device generator of the input perturbation (as in
        :func:`dipkit.fit.fit`).
    :param print_every: the paper's ``iters_print_acc``: iterations ``i`` (0-based) with
        ``i % print_every == 0`` also score the raw output and the noisy image.
    :return: dict with numpy arrays of one value per iteration -- ``loss``, ``psnr_ema`` and
        ``ssim`` (smoothed output vs clean, every iteration), ``psnr_raw`` (raw output vs
        clean) and ``psnr_noisy_ema`` (smoothed output vs noisy), both NaN between print
        iterations --, ``output`` (the final smoothed estimate, ``[1, C, H, W]`` on the
        device), ``wall_time_s`` and ``peak_memory_bytes``.
    """
    device = noisy.device
    n, w, std = int(settings.iterations), float(settings.exp_weight), float(settings.reg_noise_std)
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=settings.lr)
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    noise = torch.empty_like(z)
    noisy_np, clean_np = _hwc(noisy), _hwc(clean)
    rec = {k: np.full(n, np.nan) for k in ("loss", "psnr_ema", "ssim", "psnr_raw", "psnr_noisy_ema")}
    out_avg = None

    reset_peak_memory(device)
    synchronize(device)
    t0 = time.perf_counter()
    for i in range(n):
        optimizer.zero_grad()
        z_in = z + noise.normal_(generator=gen) * std if std > 0 else z.clone()
        z_in.requires_grad_(True)  # as the paper's Variable(net_input, requires_grad=True)
        out = net(z_in)
        loss = F.mse_loss(out, noisy)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            out_avg = out.detach() if out_avg is None else out_avg * w + out.detach() * (1 - w)
        avg_np = _hwc(out_avg)
        rec["psnr_ema"][i], rec["ssim"][i] = _scores(clean_np, avg_np, settings.ssim_data_range)
        if i % print_every == 0:
            rec["psnr_noisy_ema"][i] = _scores(noisy_np, avg_np, settings.ssim_data_range)[0]
            _scores(clean_np, noisy_np, settings.ssim_data_range)  # the noisy baseline, recomputed
            rec["psnr_raw"][i] = _scores(clean_np, _hwc(out), settings.ssim_data_range)[0]
        rec["loss"][i] = loss.detach().cpu().item()
    with torch.no_grad():
        final = net(z)
        if w > 0:
            final = out_avg * w + final * (1 - w)
    synchronize(device)
    rec["wall_time_s"] = time.perf_counter() - t0
    rec["peak_memory_bytes"] = peak_memory(device)[0]
    rec["output"] = final
    return rec
