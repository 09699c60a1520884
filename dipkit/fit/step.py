"""One iteration of a DIP fit as one call: the training step that :func:`dipkit.fit.fit` runs
eagerly or captures into a CUDA graph (:mod:`dipkit.fit.cuda_graphs`).

Everything the step touches lives across iterations: the perturbation buffers, the moving
average, the per-iteration records (written at a device-side iteration counter), the
finite-loss flag. The step hooks run inside it, so in a graph fit they are captured too.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, MutableSequence, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = ["StepHook", "StepTensors", "TrainStep", "make_optimizer"]


class StepTensors(NamedTuple):
    """What a step hook sees: the fit's own tensors, valid during the call.

    For :func:`dipkit.fit.fit` the images are ``[1, C, H, W]`` and the loss is 0-d; for
    :func:`dipkit.fit.batched.fit_batch` they carry the K fits in front (``[K, 1, C, H, W]``,
    loss ``[K]``).
    """

    #: 0-d int64 on the fit's device: the 0-based index of this iteration
    iteration: torch.Tensor
    #: this iteration's output (detached)
    output: torch.Tensor
    #: the output's moving average after this iteration's update
    average: torch.Tensor
    #: the training MSE of this iteration (detached)
    loss: torch.Tensor


#: A per-iteration device-side update, called inside the step with the iteration's tensors. It
#: must use in-place tensor operations only (no ``.item()``, no Python branching on tensor
#: values, no new tensors kept across calls): in a graph fit it runs once, at the capture, and
#: what it launched is replayed every iteration.
StepHook = Callable[[StepTensors], None]


def make_optimizer(params: Sequence[torch.Tensor], lr: float, device: torch.device) -> torch.optim.Adam:
    """The fit's Adam (default betas, no weight decay): fused on CPU (one kernel instead of a
    dozen small ops per parameter), ``capturable`` on CUDA (step count on the device, so the step
    can be captured; eager and graph fits share it)."""
    if device.type == "cpu":
        return torch.optim.Adam(params, lr=lr, fused=True)
    return torch.optim.Adam(params, lr=lr, capturable=device.type == "cuda")


def sse_into(a: torch.Tensor, b: torch.Tensor, scratch: torch.Tensor, out: torch.Tensor) -> None:
    """``out[()] = sum((a - b)**2)``: difference and square in the input dtype (into
    ``scratch``), sum accumulated in float64 into the 0-d float64 view ``out``."""
    torch.sub(a, b, out=scratch)
    scratch.mul_(scratch)
    torch.sum(scratch, dim=tuple(range(scratch.dim())), dtype=torch.float64, out=out)


class TrainStep:
    """The training step of one fit (the paper's loop body), as :meth:`__call__` or, for
    backtracking, as :meth:`forward_backward` + a host decision + :meth:`finish`.

    :param forward: the network (or its compiled forward).
    :param optimizer: from :func:`make_optimizer`.
    :param z: input code ``[1, C_in, h, w]`` (channels-last on CPU when ``channels_last``).
    :param noisy: target ``[1, C, H, W]``.
    :param clean: ground truth ``[1, C, H, W]`` or None.
    :param n: iterations of the fit (length of :attr:`rec`).
    :param generators: one generator (a list, read at every call: see
        :class:`dipkit.fit.cuda_graphs.StepRunner`).
    :param hooks: :data:`StepHook` callables.

    Records, ``rec[:, i]`` (float64, ``[4, n]``): loss, SSE(raw output, clean), SSE(moving
    average, clean), SSE(raw output, noisy); NaN where there is no clean image.
    """

    def __init__(
        self,
        forward: Callable[[torch.Tensor], torch.Tensor],
        optimizer: torch.optim.Optimizer,
        z: torch.Tensor,
        noisy: torch.Tensor,
        clean: torch.Tensor | None,
        *,
        n: int,
        reg_noise_std: float,
        exp_weight: float,
        generators: MutableSequence[torch.Generator],
        amp=None,
        channels_last: bool = False,
        hooks: Sequence[StepHook] = (),
    ):
        device = noisy.device
        self.forward, self.optimizer = forward, optimizer
        self.z, self.noisy, self.clean = z, noisy, clean
        self.std, self.w = float(reg_noise_std), float(exp_weight)
        self.generators = generators
        self.amp = amp if amp is not None else contextlib.nullcontext()
        self.channels_last = channels_last
        self.hooks = tuple(hooks)
        if self.std > 0:
            # drawn in NCHW order whatever the layout, so both layouts (and the reference loop)
            # see the same perturbation; channels-last pays one transposing copy for it
            self.noise = torch.empty(z.shape, dtype=z.dtype, device=device)
            self.z_in = torch.empty_like(z)
        self.rec = torch.full((4, n), math.nan, dtype=torch.float64, device=device)
        self.vals = torch.full((4,), math.nan, dtype=torch.float64, device=device)
        self.iteration = torch.zeros((), dtype=torch.int64, device=device)
        self.finite = torch.ones((), dtype=torch.bool, device=device)
        self.out_avg = torch.empty_like(noisy)
        self.scratch = torch.empty_like(noisy)
        self.out: torch.Tensor | None = None
        self.loss: torch.Tensor | None = None

    def __call__(self, first: bool) -> None:
        """One iteration: ``first`` starts the moving average at this output."""
        self.forward_backward(first)
        self.finish(first)

    def forward_backward(self, first: bool) -> None:
        """Perturbation, forward, loss, backward, and this iteration's loss and raw SSEs."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.std > 0:
            self.noise.normal_(generator=self.generators[0])
            if self.channels_last:
                self.z_in.copy_(self.noise).mul_(self.std)
            else:
                torch.mul(self.noise, self.std, out=self.z_in)
            self.z_in.add_(self.z)  # z + noise * std, rounded as the paper's code
            inp = self.z_in
        else:
            inp = self.z
        with self.amp:
            out = self.forward(inp)
        noisy = self.noisy
        if out.dtype != noisy.dtype:  # autocast
            out = out.to(noisy.dtype)
        if first and (out.shape != noisy.shape or out.dtype != noisy.dtype):
            raise ValueError(
                f"net output is {tuple(out.shape)} {out.dtype}, "
                f"noisy image is {tuple(noisy.shape)} {noisy.dtype}"
            )
        loss = F.mse_loss(out, noisy)
        loss.backward()
        o = out.detach()
        with torch.no_grad():
            self.vals[0].copy_(loss.detach())
            sse_into(o, noisy, self.scratch, self.vals[3])
            if self.clean is not None:
                sse_into(o, self.clean, self.scratch, self.vals[1])
        self.out, self.loss = o, loss.detach()

    def finish(self, first: bool, accept: bool = True) -> None:
        """Moving average (unless the output is rejected), records, finite flag, hooks, Adam
        step (if accepted) and the iteration counter."""
        o, avg = self.out, self.out_avg
        with torch.no_grad():
            if first:
                avg.copy_(o)
            elif not accept:
                pass  # a rejected output stays out of the moving average
            elif self.w == 0.0:
                avg.copy_(o)
            else:
                avg.mul_(self.w).add_(o, alpha=1.0 - self.w)
            if self.clean is not None:
                sse_into(avg, self.clean, self.scratch, self.vals[2])
            self.rec.index_copy_(1, self.iteration.view(1), self.vals.view(4, 1))
            torch.logical_and(self.finite, torch.isfinite(self.loss), out=self.finite)
            if self.hooks:
                view = StepTensors(self.iteration, o, avg, self.loss)
                for hook in self.hooks:
                    hook(view)
        if accept:
            self.optimizer.step()
        self.iteration.add_(1)
