"""Settings, result record and error type of the fit engine."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dipkit.columns import STOP_RULES
from dipkit.fit.stopping import StopParams, StopRecord

__all__ = [
    "AUTOCAST_MODES",
    "COMPILE_MODES",
    "CPU_LAYOUTS",
    "CUDA_GRAPH_MODES",
    "EARLY_STOP_CHOICES",
    "FitDivergedError",
    "FitOutOfMemoryError",
    "FitResult",
    "FitSettings",
]

#: Values of :attr:`FitSettings.autocast`.
AUTOCAST_MODES = ("off", "bf16")
#: Values of :attr:`FitSettings.compile` (``"off"`` or a ``torch.compile`` mode).
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune-no-cudagraphs")
#: Values of :attr:`FitSettings.cpu_layout`.
CPU_LAYOUTS = ("auto", "channels_last", "nchw")
#: Values of :attr:`FitSettings.cuda_graphs`.
CUDA_GRAPH_MODES = ("auto", "on", "off")
#: Values of :attr:`FitSettings.early_stop`.
EARLY_STOP_CHOICES = ("off", *STOP_RULES)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


class FitDivergedError(RuntimeError):
    """The loss (or the final output) became NaN or infinite.

    :ivar int iteration: the first iteration (1-based) whose loss is not finite, or
        ``iterations + 1`` when only the final output ``net(z)`` is not finite.
    """

    def __init__(self, message: str, iteration: int):
        super().__init__(message)
        self.iteration = iteration


class FitOutOfMemoryError(RuntimeError):
    """The device ran out of memory during a fit; the message names the method and image size.

    :ivar str detail: the allocator's own message (set by the code that raises it).
    """

    #: the message says all there is to say: job logs show it without a traceback
    explained = True
    detail = ""


@dataclass(frozen=True)
class FitSettings:
    """Hyper-parameters of one DIP fit. The defaults are the paper's code.

    :ivar int iterations: number of Adam steps (paper: 3000).
    :ivar float lr: Adam learning rate (default betas, no weight decay; paper: 0.01).
    :ivar float reg_noise_std: std of the fresh ``N(0, 1)`` perturbation added to the input
        code every iteration; 0 disables it (paper: 1/30 for sigma 25, 1/20 for sigma 50).
    :ivar float exp_weight: weight ``w`` of the exponential moving average of the output,
        ``out_avg = w * out_avg + (1 - w) * out``; 0 disables smoothing (paper: 0.99).
    :ivar int ssim_every: SSIM of the EMA output vs the clean image every this many
        iterations and at the last one; 0 means only at the last one.
    :ivar float ssim_data_range: ``data_range`` of that SSIM trajectory. The final result
        always carries both conventions (``ssim_last`` with 1.0, ``ssim_last_paper``
        with 2.0).
    :ivar bool backtracking: the DIP notebook's rule (restore the last parameter and Adam
        snapshot when the PSNR vs the noisy image drops by more than
        ``backtrack_drop_db``). Off in the paper's code. Costs one host sync per iteration.
    :ivar int divergence_check_every: check that the loss is finite every this many
        iterations; 0 checks only once, after the loop. On CUDA the check is asynchronous
        (a non-blocking copy polled later), so it never stalls the loop; on CPU it is a
        plain read.
    :ivar bool deterministic: ``torch.use_deterministic_algorithms(True, warn_only=True)``,
        ``cudnn.deterministic = True`` and ``cudnn.benchmark = False`` for this fit
        (global flags are restored afterwards).
    :ivar bool tf32: on CUDA, allow TF32 in matmul and cuDNN convolutions for this fit.
    :ivar str autocast: ``"off"`` (default) or ``"bf16"``: run the network under
        ``torch.autocast`` with bfloat16 (convolutions in bf16, loss and metrics in the
        image dtype). Meant for CUDA; CPUs without native bf16 run it far slower.
        Off by default because it moves the last-iteration PSNR by more than 0.05 dB on the
        paper's test images (README, Fit speed).
    :ivar str compile: ``"off"`` (default) or a ``torch.compile`` mode (``"default"``,
        ``"reduce-overhead"`` -- which uses CUDA graphs --, ``"max-autotune-no-cudagraphs"``)
        for the network's forward pass. Off by default: its cold start exceeds what it saves
        in one fit (measured in ``benchmarks/fit_speed.py``).
    :ivar str cpu_layout: memory layout of the network's weights and activations in a CPU
        fit: ``"channels_last"`` (NHWC), ``"nchw"`` (PyTorch's default) or ``"auto"`` (the
        default: channels-last unless a module of the network sets
        ``cpu_channels_last = False``, as the FIR upsamplers do). On this kind of CPU
        oneDNN's convolutions and PyTorch's BatchNorm and bilinear kernels are faster in
        channels-last (README, Fit speed). The same arithmetic in another order: in
        float64 the trajectory matches NCHW to rounding, in float32 it is another, equally
        valid, chaotic trajectory. Ignored on CUDA.
    :ivar str cuda_graphs: ``"auto"`` (default): on CUDA the training step is captured once
        into a CUDA graph and replayed (one launch per iteration instead of hundreds), unless
        the settings need the host inside the step (backtracking) or bring their own graphs or
        casts (``compile``, ``autocast``); the fit then runs eagerly and the reason is logged
        once per process. ``"on"``: the same, but a fit that cannot be captured (on the CPU,
        with those settings, or a network that synchronises with the host) raises
        ``ValueError`` instead. ``"off"``: eager steps. Only the speed changes: a graph replays
        the same kernels on the same buffers, the perturbation comes from the fit's own
        generator registered with the graph, and the first iterations run eagerly as
        warm-up (:mod:`dipkit.fit.cuda_graphs`); so it is not part of a fit's spec.
    :ivar str early_stop: ``"off"`` (default: the fit returns the paper's final output) or a
        rule of :mod:`dipkit.fit.stopping` (``"wmv"``, ``"discrepancy"``): the fit returns that
        rule's output as :attr:`FitResult.output`. Every rule is evaluated whatever this is
        (:attr:`FitResult.stops`).
    :ivar int early_stop_poll: ``0`` (default): run all ``iterations``; ``N``: every ``N``
        iterations check whether the ``early_stop`` rule has fired (one host sync per check)
        and end the fit when it has, so ``iterations`` is a cap.
    :ivar StopParams stop_params: the rules' parameters.
    :ivar int backtrack_period: iterations ``i`` (0-based) with ``i % period == 0`` are
        exempt from backtracking (notebook: ``show_every = 100``).
    :ivar float backtrack_drop_db: PSNR drop that triggers backtracking (notebook: 5 dB).
    """

    iterations: int = 3000
    lr: float = 0.01
    reg_noise_std: float = 1 / 30
    exp_weight: float = 0.99
    ssim_every: int = 100
    ssim_data_range: float = 1.0
    backtracking: bool = False
    divergence_check_every: int = 1
    deterministic: bool = False
    tf32: bool = True
    backtrack_period: int = 100
    backtrack_drop_db: float = 5.0
    autocast: str = "off"
    compile: str = "off"
    cpu_layout: str = "auto"
    cuda_graphs: str = "auto"
    early_stop: str = "off"
    early_stop_poll: int = 0
    stop_params: StopParams = field(default_factory=StopParams)

    def __post_init__(self) -> None:
        def need(cond: bool, what: str) -> None:
            if not cond:
                raise ValueError(f"FitSettings: {what}")

        need(
            _is_int(self.iterations) and self.iterations >= 1,
            f"iterations must be an int >= 1, got {self.iterations!r}",
        )
        need(math.isfinite(self.lr) and self.lr > 0, f"lr must be > 0, got {self.lr!r}")
        need(
            math.isfinite(self.reg_noise_std) and self.reg_noise_std >= 0,
            f"reg_noise_std must be >= 0, got {self.reg_noise_std!r}",
        )
        need(0.0 <= self.exp_weight < 1.0, f"exp_weight must be in [0, 1), got {self.exp_weight!r}")
        need(
            _is_int(self.ssim_every) and self.ssim_every >= 0,
            f"ssim_every must be an int >= 0, got {self.ssim_every!r}",
        )
        need(self.ssim_data_range > 0, f"ssim_data_range must be > 0, got {self.ssim_data_range!r}")
        need(
            _is_int(self.divergence_check_every) and self.divergence_check_every >= 0,
            f"divergence_check_every must be an int >= 0, got {self.divergence_check_every!r}",
        )
        need(
            _is_int(self.backtrack_period) and self.backtrack_period >= 1,
            f"backtrack_period must be an int >= 1, got {self.backtrack_period!r}",
        )
        need(
            self.autocast in AUTOCAST_MODES,
            f"autocast must be one of {', '.join(AUTOCAST_MODES)}, got {self.autocast!r}",
        )
        need(
            self.compile in COMPILE_MODES,
            f"compile must be one of {', '.join(COMPILE_MODES)}, got {self.compile!r}",
        )
        need(
            self.cpu_layout in CPU_LAYOUTS,
            f"cpu_layout must be one of {', '.join(CPU_LAYOUTS)}, got {self.cpu_layout!r}",
        )
        need(
            self.cuda_graphs in CUDA_GRAPH_MODES,
            f"cuda_graphs must be one of {', '.join(CUDA_GRAPH_MODES)}, got {self.cuda_graphs!r}",
        )
        need(
            self.early_stop in EARLY_STOP_CHOICES,
            f"early_stop must be one of {', '.join(EARLY_STOP_CHOICES)}, got {self.early_stop!r}",
        )
        need(
            _is_int(self.early_stop_poll) and self.early_stop_poll >= 0,
            f"early_stop_poll must be an int >= 0, got {self.early_stop_poll!r}",
        )
        need(
            self.early_stop_poll == 0 or self.early_stop != "off", "early_stop_poll needs an early_stop rule"
        )
        need(isinstance(self.stop_params, StopParams), "stop_params must be a StopParams")
        need(self.backtrack_drop_db > 0, f"backtrack_drop_db must be > 0, got {self.backtrack_drop_db!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain ``dict`` of the fields (for JSON / provenance records)."""
        return dataclasses.asdict(self)


@dataclass
class FitResult:
    """Outcome of :func:`dipkit.fit.fit`.

    :ivar torch.Tensor output: the estimate ``[1, C, H, W]``, CPU float32: the final output
        ``w * out_avg + (1 - w) * net(z)`` after the last iteration (``net(z)`` alone if
        ``w == 0``), as the paper's code scores it; with ``settings.early_stop`` a rule, that
        rule's output (``stops[rule].output``).
    :ivar dict trajectory: numpy arrays of length ``iterations``: ``iteration`` (1..N),
        ``loss`` (training MSE vs the noisy image), ``psnr_raw`` (this iteration's output
        vs clean), ``psnr_ema`` (moving average vs clean), ``psnr_noisy`` (output vs
        noisy). PSNRs against clean are NaN without a clean image.
    :ivar dict ssim_trajectory: ``iteration`` and ``ssim`` arrays: SSIM (data range
        ``settings.ssim_data_range``) of the moving average vs clean every
        ``ssim_every`` iterations and at the last one; empty without a clean image.
    :ivar float psnr_last: PSNR of the final output vs clean (data range 1).
    :ivar float ssim_last: SSIM of the final output vs clean, data range 1.0.
    :ivar float ssim_last_paper: the same with data range 2.0 (the paper's convention).
    :ivar float psnr_peak: maximum of ``trajectory['psnr_ema']``.
    :ivar psnr_peak_iteration: its 1-based iteration (``None`` without a clean image).
    :ivar float psnr_peak_raw: maximum of ``trajectory['psnr_raw']``.
    :ivar float psnr_input: PSNR of the noisy image vs clean (the "noisy baseline").
    :ivar float wall_time_s: seconds for the loop and the final output (CUDA synchronised).
    :ivar str device: e.g. ``"cpu"`` or ``"cuda:0 (NVIDIA H100 80GB HBM3)"``.
    :ivar int peak_memory_bytes: see ``peak_memory_kind``.
    :ivar str peak_memory_kind: ``"cuda_max_memory_allocated"`` (torch allocator peak during
        the fit) or ``"process_peak_rss"`` (peak resident set of the whole process since it
        started, from ``resource.getrusage``; an upper bound, not the fit's own use).
    :ivar int backtracks: number of backtracking restores.
    :ivar tuple backtrack_iterations: their 1-based iterations.
    :ivar int iterations: number of iterations run (fewer than ``settings.iterations`` when
        ``early_stop_poll`` ended the fit).
    :ivar dict stops: ``{rule: StopRecord}`` for every rule of :mod:`dipkit.fit.stopping`:
        where it fired, the iteration of its output, the output (CPU float32) and its scores.
    :ivar dict stop_signals: the rules' signals per iteration (``wmv_variance``,
        ``discrepancy_ratio``; float64 arrays of length ``iterations``).
    :ivar float stop_sigma: the noise sigma (0-255) the discrepancy rule used.
    :ivar int seed: the seed of the input-perturbation generator.
    :ivar FitSettings settings: the settings used.
    :ivar bool cuda_graph: whether the iterations after the warm-up were replays of a CUDA
        graph (see :attr:`FitSettings.cuda_graphs`).
    """

    output: torch.Tensor
    trajectory: dict[str, np.ndarray]
    ssim_trajectory: dict[str, np.ndarray]
    psnr_last: float
    ssim_last: float
    ssim_last_paper: float
    psnr_peak: float
    psnr_peak_iteration: int | None
    psnr_peak_raw: float
    psnr_input: float
    wall_time_s: float
    device: str
    peak_memory_bytes: int
    peak_memory_kind: str
    backtracks: int
    iterations: int
    backtrack_iterations: tuple[int, ...] = ()
    seed: int = 0
    settings: FitSettings = field(default_factory=FitSettings)
    cuda_graph: bool = False
    stops: dict[str, StopRecord] = field(default_factory=dict)
    stop_signals: dict[str, np.ndarray] = field(default_factory=dict)
    stop_sigma: float = math.nan

    def scalars(self) -> dict[str, Any]:
        """The scalar fields as a JSON-friendly ``dict`` (no tensors or arrays)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("output", "trajectory", "ssim_trajectory", "settings", "stops", "stop_signals"):
                continue
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out
