"""Device selection, backend flags for a fit, and memory / timing helpers."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

from dipkit.fit.settings import FitOutOfMemoryError

__all__ = [
    "cpu_model",
    "describe_device",
    "explain_out_of_memory",
    "is_out_of_memory",
    "out_of_memory_detail",
    "select_device",
    "tune_host_allocator",
]

_CUDA_RE = re.compile(r"^cuda(?::(\d+))?$")


def select_device(preference: str | torch.device = "auto") -> torch.device:
    """Resolve a device preference to a concrete :class:`torch.device`.

    :param preference: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``
        (the current CUDA device) or ``"cuda:N"``; a :class:`torch.device` is accepted too.
    :return: the device, with an explicit index for CUDA.
    :raises ValueError: for any other string, or when CUDA (or device ``N``) is not
        available.
    """
    if isinstance(preference, torch.device):
        preference = str(preference)
    if not isinstance(preference, str):
        raise ValueError(f"device preference must be a string, got {preference!r}")
    pref = preference.strip().lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")
    if pref == "cpu":
        return torch.device("cpu")
    match = _CUDA_RE.match(pref)
    if match is None:
        raise ValueError(f"unknown device {preference!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if not torch.cuda.is_available():
        raise ValueError(f"device {preference!r} requested, but CUDA is not available here")
    count = torch.cuda.device_count()
    index = torch.cuda.current_device() if match.group(1) is None else int(match.group(1))
    if index >= count:
        raise ValueError(f"device {preference!r} requested, but only {count} CUDA device(s) are visible")
    return torch.device("cuda", index)


_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_allocator_state: str | None = None


def tune_host_allocator() -> str:
    """Keep freed host memory in the process instead of returning it to the OS (glibc).

    A DIP iteration allocates and frees the same large activation tensors every time. glibc
    serves blocks above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and unmaps
    them on free, so every iteration pays for page faults and for the kernel zeroing the
    pages again. ``mallopt(M_MMAP_MAX, 0)`` and a 1 GiB ``M_TRIM_THRESHOLD`` make glibc
    reuse its heap instead. On the 2-core reference machine this alone makes a CPU fit
    1.3-2.3x faster (``benchmarks/fit_speed.py``); the arithmetic is untouched, so results
    are bit-identical.

    Process-wide and idempotent. Does nothing on non-glibc systems or when
    ``DIPKIT_NO_ALLOCATOR_TUNING`` is set (e.g. to measure the default allocator).

    :return: ``"tuned"``, ``"disabled"`` (environment) or ``"unavailable"``.
    """
    global _allocator_state
    if _allocator_state is not None:
        return _allocator_state
    if os.environ.get("DIPKIT_NO_ALLOCATOR_TUNING"):
        _allocator_state = "disabled"
        return _allocator_state
    _allocator_state = "unavailable"
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None)
            libc.gnu_get_libc_version  # noqa: B018 -- raises AttributeError off glibc
            if libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30) == 1:
                _allocator_state = "tuned"
        except (OSError, AttributeError):
            pass
    return _allocator_state


def _cuda_device(device: torch.device) -> torch.device:
    """Same device with an explicit CUDA index."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def describe_device(device: torch.device) -> str:
    """``"cpu"`` or ``"cuda:N (<GPU name>)"``; other device types by their torch name."""
    device = _cuda_device(device)
    if device.type == "cuda":
        return f"cuda:{device.index} ({torch.cuda.get_device_name(device)})"
    return str(device)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else the platform's processor or
    machine type: how the measurement scripts name a CPU beside their results."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device`` (no-op off CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    """Start a new CUDA allocator peak; nothing to reset on CPU."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> tuple[int, str]:
    """``(bytes, kind)``: CUDA allocator peak, or the process's peak RSS elsewhere."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_memory_allocated"
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return -1, "unavailable"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes
    scale = 1 if sys.platform == "darwin" else 1024
    return int(rss) * scale, "process_peak_rss"


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocator running out of memory: CUDA's, PyTorch's CPU allocator
    (``RuntimeError: ... DefaultCPUAllocator: can't allocate memory``) or Python's ``MemoryError``."""
    if isinstance(err, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(err, RuntimeError) and "can't allocate memory" in str(err)


def out_of_memory_detail(err: BaseException) -> str:
    """The allocator's own words, on one line: ``CUDA out of memory. Tried to allocate 2.00 GiB``,
    ``DefaultCPUAllocator: can't allocate memory: you tried to allocate 4294967296 bytes. ...``."""
    text = str(err).strip()
    if "DefaultCPUAllocator" in text:
        text = text[text.index("DefaultCPUAllocator") :]
    first = text.splitlines()[0].strip() if text else ""
    return first.rstrip(".") or "out of memory"


@contextlib.contextmanager
def explain_out_of_memory(what: str, device: torch.device | str) -> Iterator[None]:
    """Turn an out-of-memory error of the GPU or the CPU (:func:`is_out_of_memory`) into a
    :class:`~dipkit.fit.settings.FitOutOfMemoryError` that says what was being fitted (``what``:
    method and image size) and what to do; its ``detail`` is the allocator's message."""
    try:
        yield
    except Exception as err:
        if not is_out_of_memory(err):
            raise
        detail = out_of_memory_detail(err)
        if isinstance(err, torch.cuda.OutOfMemoryError):
            message = (
                f"CUDA out of memory fitting {what} on {device}: {detail}. Run fewer fits on this GPU "
                f"(config fit.fits_per_gpu, --resources gpu=; fit.batch), crop the image, or use a larger GPU"
            )
        else:
            message = (
                f"out of memory fitting {what} on {device}: {detail}. Run fewer jobs at once (--cores), "
                f"crop the image, or use a machine with more memory"
            )
        exc = FitOutOfMemoryError(message)
        exc.detail = detail
        raise exc from None


@contextlib.contextmanager
def backend_flags(device: torch.device, *, deterministic: bool, tf32: bool) -> Iterator[None]:
    """Set global backend flags for the duration of one fit and restore them afterwards.

    * CUDA: TF32 for matmul and cuDNN when ``tf32``; ``cudnn.benchmark`` unless
      ``deterministic``.
    * ``deterministic`` (any device): ``torch.use_deterministic_algorithms(True,
      warn_only=True)`` and ``cudnn.deterministic``. ``warn_only`` because some ops used
      by DIP networks (the backward of bilinear upsampling on CUDA) have no deterministic
      kernel; torch then warns instead of failing. On CUDA ``CUBLAS_WORKSPACE_CONFIG`` is
      set to ``:4096:8`` if unset (it only takes effect before cuBLAS is first used).
    """
    cudnn = torch.backends.cudnn
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        cudnn.allow_tf32,
        cudnn.benchmark,
        cudnn.deterministic,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    try:
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
            cudnn.allow_tf32 = bool(tf32)
            cudnn.benchmark = not deterministic
        if deterministic:
            if device.type == "cuda":
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            cudnn.deterministic = True
            cudnn.benchmark = False
            torch.use_deterministic_algorithms(True, warn_only=True)
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved[0]
        cudnn.allow_tf32 = saved[1]
        cudnn.benchmark = saved[2]
        cudnn.deterministic = saved[3]
        torch.use_deterministic_algorithms(saved[4], warn_only=saved[5])
