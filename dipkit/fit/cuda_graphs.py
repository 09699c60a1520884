"""CUDA graphs for the fit loop: whether a fit's training step is captured, and the runner that
runs the step eagerly or captures it once and replays it.

Why: the small DIP networks are launch-bound on a GPU (on an H200 Ours-32 takes 4.2 ms per
iteration at 256² and at 512²): an iteration is a few hundred small kernels, each launched from
Python. A CUDA graph launches all of them at once.

How (PyTorch's CUDA-graph rules, and how the fit loop keeps them):

* One step function does all the device work of one iteration: the perturbation, forward, MSE,
  backward, Adam, the output's moving average, the records written at a device-side iteration
  counter, the finite-loss flag and the step hooks (:class:`dipkit.fit.step.TrainStep`; the
  batched one in :mod:`dipkit.fit.batched`). Eager fits call it; graph fits capture the same
  call. Its tensors keep their addresses across iterations (preallocated buffers, parameters,
  Adam's state; the gradients are set to None before the capture, so the captured backward
  allocates them in the graph's memory pool and writes, not accumulates, them at every replay).
* The perturbation comes from the fit's own :class:`torch.Generator`, registered with the graph
  (``CUDAGraph.register_generator_state``): at each replay PyTorch gives the kernel the
  generator's current offset and advances it by what the captured draws consume, as an eager
  step does, so a graph fit draws the same numbers as an eager fit with the same seed.
* On CUDA Adam is ``capturable=True`` (its step count lives on the device), in eager and graph
  fits alike, so the two compute the same thing.
* Warm-up: the first :data:`WARMUP_ITERATIONS` iterations run eagerly on a side stream (Adam's
  state, cuDNN's autotuning and PyTorch's lazy initialisations happen there). They are real
  iterations of the fit. The last one runs under ``torch.cuda.set_sync_debug_mode("warn")``: a
  step that synchronises with the host (``.item()``, a data-dependent shape) cannot be captured.
* Nothing runs during the capture, so the iteration after the warm-up is the first replay.
  Between replays the host reads nothing unless asked (SSIM every ``ssim_every`` iterations, the
  progress callback, the finite-loss check): those run eagerly on the same stream.

A capture that fails (an operation not allowed while capturing) leaves the fit where it was: the
fit's generators are replaced by copies of their state taken before the capture, and the fit
goes on eagerly (``auto``) or raises (``on``). (PyTorch leaves the *default* CUDA generator
marked as capturing after a failed capture; the fits never use it.)
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, MutableSequence

import torch

__all__ = ["WARMUP_ITERATIONS", "StepRunner", "eager_reason"]

log = logging.getLogger("dipkit.fit")

#: Eager iterations before a capture (Adam's state, cuDNN autotuning, lazy initialisation).
WARMUP_ITERATIONS = 3

_logged: set[str] = set()


def eager_reason(
    mode: str,
    device: torch.device,
    *,
    iterations: int,
    backtracking: bool = False,
    compile: str = "off",
    autocast: str = "off",
) -> str | None:
    """Why a fit with these settings runs eagerly, or ``None`` when its step is captured.

    :param mode: :attr:`dipkit.fit.FitSettings.cuda_graphs` (``auto``, ``on``, ``off``).
    :raises ValueError: ``mode == "on"`` and the device or the settings rule graphs out (a fit
        too short to reach a capture is not an error: it runs eagerly).
    """
    if mode == "off":
        return "fit.cuda_graphs is off"
    reason = None
    if device.type != "cuda":
        reason = f"CUDA graphs need a CUDA device and this fit runs on {device}"
    elif backtracking:
        reason = "backtracking reads the PSNR on the host every iteration"
    elif compile != "off":
        reason = (
            f"fit.compile {compile!r} compiles the network (its reduce-overhead mode brings its own graphs)"
        )
    elif autocast != "off":
        reason = "bf16 autocast is not captured (its cache of cast weights is not graph-safe)"
    if reason is not None and mode == "on":
        raise ValueError(
            f"fit.cuda_graphs is 'on' but {reason}; set fit.cuda_graphs to auto to run such fits eagerly"
        )
    if reason is None and iterations <= WARMUP_ITERATIONS:
        reason = (
            f"{iterations} iteration(s) are all warm-up ({WARMUP_ITERATIONS} run eagerly before a capture)"
        )
    return reason


def log_eager(reason: str) -> None:
    """Log why fits run eagerly: once per reason and process."""
    if reason not in _logged:
        _logged.add(reason)
        log.info("eager fit steps: %s", reason)


class StepRunner:
    """Runs iteration ``i`` of a fit: ``step(i == 0)`` eagerly, or, after :data:`WARMUP_ITERATIONS`
    eager iterations, as a replay of ``step(False)`` captured into a CUDA graph.

    :param step: ``step(first)``: all the device work of one iteration, reading its generators
        from ``generators`` at every call (see the module docstring).
    :param device: the fit's device.
    :param generators: the generators ``step`` draws from; if a capture fails they are replaced,
        in place, by copies of their state from before the capture.
    :param optimizer: the step's optimizer (gradients are set to None before the capture).
    :param mode: :attr:`dipkit.fit.FitSettings.cuda_graphs`.
    :param reason: :func:`eager_reason` of the fit (``None``: capture).
    """

    def __init__(
        self,
        step: Callable[[bool], None],
        *,
        device: torch.device,
        generators: MutableSequence[torch.Generator],
        optimizer: torch.optim.Optimizer,
        mode: str,
        reason: str | None,
        warmup: int = WARMUP_ITERATIONS,
    ):
        self.step = step
        self.device = device
        self.generators = generators
        self.optimizer = optimizer
        self.mode = mode
        self.warmup = warmup
        self.reason = reason
        self.graph: torch.cuda.CUDAGraph | None = None
        self.side = torch.cuda.Stream(device) if reason is None else None
        if reason is not None:
            log_eager(reason)

    @property
    def captured(self) -> bool:
        """Whether the step has been captured (later iterations are replays)."""
        return self.graph is not None

    def __call__(self, i: int) -> None:
        if self.graph is not None:
            self.graph.replay()
            return
        if self.side is None:
            self.step(i == 0)
            return
        if i >= self.warmup:
            self._capture()
            if self.graph is not None:
                self.graph.replay()
            else:
                self.step(i == 0)
            return
        current = torch.cuda.current_stream(self.device)
        self.side.wait_stream(current)  # the step overwrites what eager work on `current` reads
        with torch.cuda.stream(self.side):
            if i == self.warmup - 1:
                self._checked_step(i == 0)
            else:
                self.step(i == 0)
        current.wait_stream(self.side)

    def _give_up(self, reason: str, err: BaseException | None = None) -> None:
        self.reason, self.side = reason, None
        if self.mode == "on":
            raise ValueError(
                f"fit.cuda_graphs is 'on' but {reason}; set fit.cuda_graphs to auto to run such fits eagerly"
            ) from err
        log_eager(reason)

    def _checked_step(self, first: bool) -> None:
        """One eager step that notes whether it synchronised with the host."""
        previous = torch.cuda.get_sync_debug_mode()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                self.step(first)
            finally:
                torch.cuda.set_sync_debug_mode(previous)
        syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message)]
        for w in caught:  # pass the others on
            if "synchroniz" not in str(w.message):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if syncs:
            self._give_up(f"the step synchronises with the host ({syncs[0]})")

    def _capture(self) -> None:
        states = [g.get_state() for g in self.generators]
        current = torch.cuda.current_stream(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        try:
            for g in self.generators:
                graph.register_generator_state(g)
            with torch.cuda.graph(graph, stream=self.side):
                self.step(False)
        except Exception as err:
            torch.cuda.set_stream(current)
            torch.cuda.synchronize(self.device)
            for k, state in enumerate(states):
                fresh = torch.Generator(device=self.device)
                fresh.set_state(state)
                self.generators[k] = fresh
            self.optimizer.zero_grad(set_to_none=True)
            first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
            self._give_up(f"its capture failed ({first_line})", err)
            return
        self.graph = graph
