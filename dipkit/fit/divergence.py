"""Detecting a diverged fit: the finite-loss watch that does not stall the device queue,
the error that names the first non-finite iteration, and the snapshot that backtracking
restores (see :class:`dipkit.fit.settings.FitSettings`: ``divergence_check_every``,
``backtracking``)."""

from __future__ import annotations

import collections

import numpy as np
import torch

from dipkit.fit.settings import FitDivergedError

__all__ = ["FiniteWatch", "Snapshot", "diverged_error", "first_nonfinite"]


def first_nonfinite(values: np.ndarray) -> int | None:
    """1-based index of the first non-finite entry, or ``None``."""
    bad = np.flatnonzero(~np.isfinite(values))
    return int(bad[0]) + 1 if bad.size else None


def diverged_error(iteration: int, n: int, loss: float | None = None) -> FitDivergedError:
    """The error for a fit whose loss stopped being finite at 1-based ``iteration`` of ``n``."""
    what = "" if loss is None else f" ({loss!r})"
    return FitDivergedError(
        f"fit diverged: the loss is not finite{what} at iteration {iteration} of {n}", iteration
    )


class FiniteWatch:
    """Reads the fit's finite-loss flag without stalling the device queue.

    On CPU the check is a direct read. On CUDA each check copies the flag into pinned host
    memory with a non-blocking copy and records an event; completed events are polled
    (``Event.query`` does not block) on later checks. At most ``RING`` checks are in
    flight; only when the ring is full does a check wait for the oldest one.
    """

    RING = 64

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        if self.cuda:
            self.flags = torch.ones(self.RING, dtype=torch.bool, pin_memory=True)
            self.events = [torch.cuda.Event() for _ in range(self.RING)]
            self.pending: collections.deque[int] = collections.deque()
            self.count = 0

    def push(self, finite: torch.Tensor) -> bool:
        """Queue a read of the 0-d bool ``finite`` (False once a loss was not finite); ``True``
        once any finished read saw False."""
        if not self.cuda:
            return not bool(finite)
        if len(self.pending) == self.RING:
            slot = self.pending.popleft()
            self.events[slot].synchronize()
            if not bool(self.flags[slot]):
                return True
        slot = self.count % self.RING
        self.count += 1
        self.flags[slot].copy_(finite, non_blocking=True)
        self.events[slot].record()
        self.pending.append(slot)
        while self.pending and self.events[self.pending[0]].query():
            if not bool(self.flags[self.pending.popleft()]):
                return True
        return False


class Snapshot:
    """Deep copy of the parameters and the Adam state, for backtracking.

    Copies are made with ``clone`` / ``copy_`` into buffers owned by the snapshot, so they
    never alias the live tensors (the DIP notebook's ``.detach().cpu()`` does alias them
    on CPU and then restores nothing). Buffers are allocated once and reused.
    """

    def __init__(self, params: list[torch.Tensor], optimizer: torch.optim.Optimizer):
        self.params = params
        self.optimizer = optimizer
        self.param_bufs: list[torch.Tensor] | None = None
        self.state_bufs: list[dict | None] = [None] * len(params)

    @property
    def saved(self) -> bool:
        return self.param_bufs is not None

    @staticmethod
    def _copy_state(src: dict, dst: dict | None) -> dict:
        if (
            dst is not None
            and dst.keys() == src.keys()
            and all(
                (
                    torch.is_tensor(v)
                    and torch.is_tensor(dst[k])
                    and dst[k].shape == v.shape
                    and dst[k].dtype == v.dtype
                    and dst[k].device == v.device
                )
                or not torch.is_tensor(v)
                for k, v in src.items()
            )
        ):
            for k, v in src.items():
                if torch.is_tensor(v):
                    dst[k].copy_(v)
                else:
                    dst[k] = v
            return dst
        return {k: (v.detach().clone() if torch.is_tensor(v) else v) for k, v in src.items()}

    @torch.no_grad()
    def save(self) -> None:
        if self.param_bufs is None:
            self.param_bufs = [p.detach().clone() for p in self.params]
        else:
            for buf, p in zip(self.param_bufs, self.params):
                buf.copy_(p)
        state = self.optimizer.state
        for k, p in enumerate(self.params):
            live = state.get(p)
            self.state_bufs[k] = self._copy_state(live, self.state_bufs[k]) if live else None

    @torch.no_grad()
    def restore(self) -> None:
        assert self.param_bufs is not None
        for buf, p in zip(self.param_bufs, self.params):
            p.copy_(buf)
        state = self.optimizer.state
        for k, p in enumerate(self.params):
            saved = self.state_bufs[k]
            if saved is None:
                state.pop(p, None)
            else:
                state[p] = self._copy_state(saved, state.get(p))
