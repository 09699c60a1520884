"""The DIP fit loop (see :mod:`dipkit.fit` for what it reproduces)."""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from dipkit.fit.cuda_graphs import StepRunner, eager_reason
from dipkit.fit.device import (
    backend_flags,
    describe_device,
    peak_memory,
    reset_peak_memory,
    synchronize,
    tune_host_allocator,
)
from dipkit.fit.divergence import FiniteWatch, Snapshot, diverged_error, first_nonfinite
from dipkit.fit.settings import FitDivergedError, FitResult, FitSettings
from dipkit.fit.step import StepHook, StepTensors, TrainStep, make_optimizer
from dipkit.fit.stopping import StopMonitor
from dipkit.metrics import functional as fm

__all__ = ["fit", "make_input", "resolve_cpu_layout"]

#: The paper's PSNR convention: images in [0, 1].
_PSNR_DATA_RANGE = 1.0
#: The SSIM data range that scikit-image 0.19 inferred in the paper's code.
_PAPER_SSIM_DATA_RANGE = 2.0

ProgressFn = Callable[[int, "float | None"], None]


# --------------------------------------------------------------------------- input code


def make_input(
    in_channels: int,
    input_size: int | Sequence[int],
    seed: int,
    scale: float = 0.1,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """The fixed random input code ``z`` of a DIP network.

    :param int in_channels: channels of ``z`` (the paper's code uses the network width).
    :param input_size: ``h`` (square) or ``(h, w)``.
    :param int seed: seed of a CPU :class:`torch.Generator`.
    :param float scale: ``z ~ U[0, 1) * scale`` (the paper's code: 0.1).
    :param dtype: dtype of the result.
    :param device: device of the result.
    :return: ``[1, in_channels, h, w]`` tensor.

    The values are drawn on the CPU in float64 and then scaled, cast and moved, so the
    same seed gives the same ``z`` on every device, and the float32 code is the rounding
    of the float64 one (useful for float64 equivalence tests).
    """
    if isinstance(input_size, int):
        h = w = input_size
    else:
        size = tuple(int(s) for s in input_size)
        if len(size) != 2:
            raise ValueError(f"input_size must be an int or (h, w), got {input_size!r}")
        h, w = size
    if in_channels < 1 or h < 1 or w < 1:
        raise ValueError(f"bad input shape: channels={in_channels}, size=({h}, {w})")
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    z = torch.rand((1, int(in_channels), h, w), generator=gen, dtype=torch.float64)
    z.mul_(float(scale))
    return z.to(device=device, dtype=dtype)


# --------------------------------------------------------------------------- helpers


def ssim_iterations(n: int, every: int) -> list[int]:
    """The 1-based iterations whose SSIM a fit of ``n`` iterations records: every ``every``-th
    (none if 0) and the last."""
    return [k for k in range(1, n + 1) if (every and k % every == 0) or k == n]


def _psnr_from_sse(sse: np.ndarray | float, numel: int) -> np.ndarray:
    """scikit-image's formula ``10 log10(R^2 / mse)`` with ``mse = sse / numel``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10.0 * np.log10((_PSNR_DATA_RANGE**2) / (np.asarray(sse, dtype=np.float64) / numel))


def _check_inputs(z: torch.Tensor, noisy: torch.Tensor, clean: torch.Tensor | None) -> None:
    if noisy.dim() != 4 or noisy.shape[0] != 1:
        raise ValueError(f"noisy must be [1, C, H, W], got {tuple(noisy.shape)}")
    if z.dim() != 4 or z.shape[0] != 1:
        raise ValueError(f"z must be [1, C_in, h, w], got {tuple(z.shape)}")
    tensors = {"z": z, "noisy": noisy}
    if clean is not None:
        if clean.shape != noisy.shape:
            raise ValueError(f"clean {tuple(clean.shape)} and noisy {tuple(noisy.shape)} shapes differ")
        tensors["clean"] = clean
    for name, t in tensors.items():
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")
        if t.device != noisy.device or t.dtype != noisy.dtype:
            raise ValueError(
                f"{name} is {t.dtype} on {t.device}, noisy is {noisy.dtype} on {noisy.device};"
                " they must match"
            )


# --------------------------------------------------------------------------- fit


def fit(
    net: nn.Module,
    z: torch.Tensor,
    noisy: torch.Tensor,
    clean: torch.Tensor | None,
    settings: FitSettings,
    seed: int,
    progress: ProgressFn | None = None,
    step_hooks: Sequence[StepHook] = (),
    noise_sigma: float | None = None,
) -> FitResult:
    """Fit ``net`` so that ``net(z + perturbation)`` reproduces ``noisy``; the paper's loop.

    :param torch.nn.Module net: network on the same device and dtype as the images. It is
        put in train mode (BatchNorm uses batch statistics throughout, as in the paper's
        code) and its parameters are trained in place. On CPU its 4-D weights are in the
        layout of ``settings.cpu_layout`` during the fit (see :func:`resolve_cpu_layout`)
        and back in PyTorch's default layout afterwards.
    :param torch.Tensor z: input code ``[1, C_in, h, w]`` (see :func:`make_input`).
    :param torch.Tensor noisy: target ``[1, C, H, W]`` in ``[0, 1]``.
    :param clean: ground truth ``[1, C, H, W]``, or ``None`` (then the PSNR/SSIM vs clean
        are NaN and the SSIM trajectory is empty).
    :param FitSettings settings: hyper-parameters.
    :param int seed: seed of the device :class:`torch.Generator` that draws the input
        perturbation (pass a seed dedicated to this stream, e.g. from
        :func:`dipkit.seeding.derive_seed`). CPU and CUDA generators give different
        streams, so runs repeat bit for bit only on the same device type, code, thread
        count and seed (and, on CUDA, with ``deterministic=True``).
    :param progress: optional ``progress(iteration, loss)`` called every
        ``max(1, iterations // 100)`` iterations and at the last one (reads the loss, so it
        synchronises the device when given).
    :param step_hooks: per-iteration device-side updates run inside the training step
        (:data:`dipkit.fit.step.StepHook`; captured with it in a CUDA-graph fit).
    :param noise_sigma: the noise std (0-255) for the early-stopping rules that need one
        (:mod:`dipkit.fit.stopping`); ``None`` estimates it from ``noisy``.
    :return: :class:`FitResult`.
    :raises FitDivergedError: when the loss becomes non-finite (unless backtracking), or
        the final output is non-finite.

    The process's glibc allocator is tuned on first use (:func:`dipkit.fit.device.tune_host_allocator`).
    """
    if not isinstance(settings, FitSettings):
        raise TypeError(f"settings must be a FitSettings, got {type(settings).__name__}")
    _check_inputs(z, noisy, clean)
    tune_host_allocator()
    device = noisy.device
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    cuda_ctx = torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
    layout = resolve_cpu_layout(net, settings.cpu_layout) if device.type == "cpu" else "nchw"
    with (
        cuda_ctx,
        backend_flags(device, deterministic=settings.deterministic, tf32=settings.tf32),
        _network_layout(net, layout),
    ):
        return _fit(
            net,
            z,
            noisy,
            clean,
            settings,
            int(seed),
            progress,
            device,
            layout,
            tuple(step_hooks),
            noise_sigma,
        )


def resolve_cpu_layout(net: nn.Module, setting: str = "auto") -> str:
    """The memory layout of a CPU fit of ``net``: ``"channels_last"`` or ``"nchw"``.

    ``setting`` is :attr:`FitSettings.cpu_layout`; ``"auto"`` gives channels-last unless a
    module of ``net`` has ``cpu_channels_last = False`` (the FIR upsamplers, measured slower).
    """
    if setting != "auto":
        return setting
    return "channels_last" if all(getattr(m, "cpu_channels_last", True) for m in net.modules()) else "nchw"


@contextlib.contextmanager
def _network_layout(net: nn.Module, layout: str):
    """``net``'s 4-D weights in channels-last for the block, back in the default layout after
    (the same :class:`~torch.nn.Parameter` objects and values; only the strides change)."""
    if layout != "channels_last":
        yield
        return
    net.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        net.to(memory_format=torch.contiguous_format)


def _fit(
    net: nn.Module,
    z: torch.Tensor,
    noisy: torch.Tensor,
    clean: torch.Tensor | None,
    s: FitSettings,
    seed: int,
    progress: ProgressFn | None,
    device: torch.device,
    layout: str = "nchw",
    hooks: tuple[StepHook, ...] = (),
    noise_sigma: float | None = None,
) -> FitResult:
    n = int(s.iterations)
    w = float(s.exp_weight)
    numel = noisy.numel()

    net.train()
    params = list(net.parameters())
    optimizer = make_optimizer(params, s.lr, device)
    forward = net if s.compile == "off" else torch.compile(net, mode=s.compile)
    if s.autocast == "bf16":
        amp = torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    else:
        amp = contextlib.nullcontext()
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    generators = [gen]
    if layout == "channels_last":
        z = z.contiguous(memory_format=torch.channels_last)
    monitor = StopMonitor(noisy, noise_sigma, n, s.stop_params)  # every early-stopping rule, on the device

    def monitor_hook(t: StepTensors) -> None:
        monitor.update(t.output, t.average)

    step = TrainStep(
        forward,
        optimizer,
        z,
        noisy,
        clean,
        n=n,
        reg_noise_std=s.reg_noise_std,
        exp_weight=w,
        generators=generators,
        amp=amp,
        channels_last=layout == "channels_last",
        hooks=(monitor_hook, *hooks),
    )
    reason = eager_reason(
        s.cuda_graphs,
        device,
        iterations=n,
        backtracking=s.backtracking,
        compile=s.compile,
        autocast=s.autocast,
    )
    runner = StepRunner(
        step, device=device, generators=generators, optimizer=optimizer, mode=s.cuda_graphs, reason=reason
    )

    # SSIM of the moving average: on the device, between steps, fetched once after the loop
    ssim_iters = ssim_iterations(n, s.ssim_every) if clean is not None else []
    ssim_slot = {k: j for j, k in enumerate(ssim_iters)}
    ssim_vals = torch.full((len(ssim_iters),), math.nan, dtype=torch.float64, device=device)

    watch = FiniteWatch(device) if (s.divergence_check_every and not s.backtracking) else None
    snapshot = Snapshot(params, optimizer) if s.backtracking else None
    last_psnr_noisy = 0.0  # the notebook's initial value
    backtrack_iters: list[int] = []
    progress_every = max(1, n // 100)
    poll = s.early_stop_poll
    done = n

    reset_peak_memory(device)
    synchronize(device)
    t0 = time.perf_counter()

    with warnings.catch_warnings():
        # eager steps (warm-up, fallbacks) of a capturable Adam are intended
        warnings.filterwarnings("ignore", message="This instance was constructed with capturable=True")
        for i in range(n):
            if snapshot is None:
                runner(i)
            else:
                step.forward_backward(i == 0)
                # The DIP notebook's rule; needs the PSNR on the host every iteration.
                psnr_noisy = float(_psnr_from_sse(step.vals[3].item(), numel))
                # A NaN output is rejected on every iteration (the notebook has no such case).
                exempt = i % s.backtrack_period == 0
                accept = True
                dropped = psnr_noisy - last_psnr_noisy < -s.backtrack_drop_db
                if math.isnan(psnr_noisy) or (not exempt and dropped):
                    if not snapshot.saved:
                        raise diverged_error(i + 1, n, float(step.loss))
                    snapshot.restore()
                    backtrack_iters.append(i + 1)
                    accept = False
                elif not exempt:
                    snapshot.save()
                    last_psnr_noisy = psnr_noisy
                step.finish(i == 0, accept)

            j = ssim_slot.get(i + 1)
            if j is not None:
                with torch.no_grad():
                    ssim_vals[j : j + 1] = fm.ssim(step.out_avg, clean, s.ssim_data_range)
            if watch is not None and (i + 1) % s.divergence_check_every == 0 and watch.push(step.finite):
                losses = step.rec[0, : i + 1].cpu().numpy()
                first = first_nonfinite(losses)
                if first is None:
                    raise diverged_error(i + 1, n)
                raise diverged_error(first, n, float(losses[first - 1]))
            if progress is not None and ((i + 1) % progress_every == 0 or i + 1 == n):
                progress(i + 1, float(step.loss))
            if poll and (i + 1) % poll == 0 and monitor.should_stop(s.early_stop):
                done = i + 1
                break

    if runner.captured:
        optimizer.zero_grad(set_to_none=True)  # the graph's gradients: release its memory pool
    with torch.no_grad():
        with amp:
            final_raw = forward(z).to(noisy.dtype)  # clean z, BatchNorm still in train mode
        final = final_raw if w == 0.0 else step.out_avg * w + final_raw * (1.0 - w)
    synchronize(device)
    wall = time.perf_counter() - t0
    peak_bytes, peak_kind = peak_memory(device)

    rec_host = step.rec[:, :done].cpu().numpy()
    first_bad = first_nonfinite(rec_host[0])
    if first_bad is not None and snapshot is None:
        raise diverged_error(first_bad, n, float(rec_host[0, first_bad - 1]))
    if not bool(torch.isfinite(final).all()):
        raise FitDivergedError(
            f"fit diverged: the final output net(z) is not finite after {n} iterations", n + 1
        )

    kept = [j for j, k in enumerate(ssim_iters) if k <= done]
    return _fit_result(
        rec_host,
        [ssim_iters[j] for j in kept],
        ssim_vals.cpu().numpy()[kept],
        final,
        noisy,
        clean,
        s,
        seed,
        wall=wall,
        device=device,
        peak=(peak_bytes, peak_kind),
        backtrack_iters=backtrack_iters,
        cuda_graph=runner.captured,
        monitor=(monitor, 0),
    )


def _fit_result(
    rec_host: np.ndarray,
    ssim_iters: Sequence[int],
    ssim_vals: np.ndarray,
    final: torch.Tensor,
    noisy: torch.Tensor,
    clean: torch.Tensor | None,
    s: FitSettings,
    seed: int,
    *,
    wall: float,
    device: torch.device,
    peak: tuple[int, str],
    backtrack_iters: Sequence[int] = (),
    cuda_graph: bool = False,
    monitor: tuple[StopMonitor, int] | None = None,
) -> FitResult:
    """The :class:`FitResult` of one finished fit (shared with :mod:`dipkit.fit.batched`).

    :param rec_host: ``[4, n]`` float64 records per iteration: loss, SSE(raw, clean),
        SSE(smoothed, clean), SSE(raw, noisy).
    :param ssim_iters: the 1-based iterations of ``ssim_vals`` (SSIM of the smoothed output).
    :param final: the scored output ``[1, C, H, W]`` on the fit's device.
    :param monitor: the fit's early-stopping monitor and the fit's index in it.
    """
    n = rec_host.shape[1]
    numel = noisy.numel()
    has_clean = clean is not None
    iteration = np.arange(1, n + 1, dtype=np.int64)
    psnr_noisy_traj = _psnr_from_sse(rec_host[3], numel)
    if has_clean:
        psnr_raw = _psnr_from_sse(rec_host[1], numel)
        psnr_ema = _psnr_from_sse(rec_host[2], numel)
    else:
        psnr_raw = np.full(n, np.nan)
        psnr_ema = np.full(n, np.nan)
    trajectory = {
        "iteration": iteration,
        "loss": rec_host[0].copy(),
        "psnr_raw": psnr_raw,
        "psnr_ema": psnr_ema,
        "psnr_noisy": psnr_noisy_traj,
    }
    ssim_trajectory = {
        "iteration": np.asarray(ssim_iters, dtype=np.int64),
        "ssim": np.asarray(ssim_vals, dtype=np.float64),
    }

    if has_clean:
        with torch.no_grad():
            psnr_last = float(fm.psnr(final, clean, _PSNR_DATA_RANGE)[0])
            ssim_last = float(fm.ssim(final, clean, 1.0)[0])
            ssim_last_paper = float(fm.ssim(final, clean, _PAPER_SSIM_DATA_RANGE)[0])
            psnr_input = float(fm.psnr(noisy, clean, _PSNR_DATA_RANGE)[0])
        if np.isnan(psnr_ema).all():
            psnr_peak, peak_it = math.nan, None
        else:
            k = int(np.nanargmax(psnr_ema))
            psnr_peak, peak_it = float(psnr_ema[k]), k + 1
        psnr_peak_raw = float(np.nanmax(psnr_raw)) if not np.isnan(psnr_raw).all() else math.nan
    else:
        psnr_last = ssim_last = ssim_last_paper = psnr_input = math.nan
        psnr_peak, peak_it, psnr_peak_raw = math.nan, None, math.nan

    stops, signals, stop_sigma = {}, {}, math.nan
    if monitor is not None:
        mon, j = monitor
        stops, signals, stop_sigma = mon.result(final, clean, j), mon.signal_trajectories(j), mon.sigma_255[j]
    chosen = final if s.early_stop == "off" else stops[s.early_stop].output

    return FitResult(
        output=chosen.detach().to(device="cpu", dtype=torch.float32).contiguous(),
        trajectory=trajectory,
        ssim_trajectory=ssim_trajectory,
        psnr_last=psnr_last,
        ssim_last=ssim_last,
        ssim_last_paper=ssim_last_paper,
        psnr_peak=psnr_peak,
        psnr_peak_iteration=peak_it,
        psnr_peak_raw=psnr_peak_raw,
        psnr_input=psnr_input,
        wall_time_s=wall,
        device=describe_device(device),
        peak_memory_bytes=peak[0],
        peak_memory_kind=peak[1],
        backtracks=len(backtrack_iters),
        iterations=n,
        backtrack_iterations=tuple(backtrack_iters),
        seed=seed,
        settings=s,
        cuda_graph=cuda_graph,
        stops=stops,
        stop_signals=signals,
        stop_sigma=stop_sigma,
    )
