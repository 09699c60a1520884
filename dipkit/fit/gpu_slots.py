"""A GPU for each concurrent fit: one or several fits per GPU on a multi-GPU workstation.

Snakemake limits how many fit jobs run at once (``--resources gpu=N``) but does not say
*which* GPU a job should use (snakemake/snakemake#281), so every job would land on GPU 0.
:func:`claim_gpu` gives each job a distinct GPU: it takes an exclusive ``flock`` on one lock
file per GPU (``<lock dir>/dipkit-<user>-gpu-<id>.lock``) and holds it for the fit; the operating
system releases it when the job ends, even if it is killed. With ``N`` GPUs and
``--resources gpu=N`` a free GPU always exists; when none is free the job waits.

Small DIP networks leave a modern GPU mostly idle, so several fits may share one GPU
(config ``fit.fits_per_gpu``, README *Fit speed*): then each GPU has that many slots, one lock
file each (``...-gpu-<id>.lock``, ``...-gpu-<id>-slot<k>.lock``), filled slot by slot so that
the fits spread evenly over the GPUs; the workflow sets Snakemake's ``gpu`` resource to the
number of GPUs times ``fits_per_gpu`` (:mod:`dipkit.job_resources`).

Lock files are keyed by the physical GPU (the entry of ``CUDA_VISIBLE_DEVICES`` when it is
set), so jobs that see different GPUs never block each other, and by the user
(``dipkit-<user>-gpu-<id>[-slot<k>].lock``): each user's run spreads its own fits over the
GPUs, and two users of one workstation neither wait for each other's slots nor trip over
each other's lock files (a file another user created cannot be opened for writing). The lock
folder is ``$DIPKIT_GPU_LOCK_DIR`` or the system's temporary folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def _gpu_ids(n_devices: int) -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        ids = [v.strip() for v in visible.split(",") if v.strip()]
        if len(ids) >= n_devices:
            return ids[:n_devices]
    return [str(i) for i in range(n_devices)]


def _user() -> str:
    """The user's login name (``$LOGNAME``, ``$USER``, the password database), safe in a file name."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (some containers)
        name = f"uid{os.getuid()}"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or f"uid{os.getuid()}"


def _lock_name(user: str, gpu_id: str, slot: int) -> str:
    base = f"dipkit-{user}-gpu-{gpu_id}"
    return f"{base}.lock" if slot == 0 else f"{base}-slot{slot}.lock"


@contextlib.contextmanager
def claim_gpu(
    n_devices: int,
    lock_dir: str | os.PathLike | None = None,
    poll: float = 0.5,
    timeout: float | None = None,
    fits_per_gpu: int = 1,
) -> Iterator[int]:
    """Hold one of ``n_devices * fits_per_gpu`` GPU slots; yield its GPU's index (0-based, as torch counts).

    :param n_devices: visible CUDA devices (``torch.cuda.device_count()``).
    :param fits_per_gpu: slots per GPU; the least used GPU is taken first.
    :param lock_dir: folder of the lock files (default ``$DIPKIT_GPU_LOCK_DIR`` or the temp dir);
        the files carry the user's name, so each user has their own slots.
    :param poll: seconds between tries while every GPU is taken.
    :param timeout: give up after this many seconds (``None``: wait for ever).
    :raises TimeoutError: when no GPU became free within ``timeout``.
    """
    if n_devices < 1:
        raise ValueError("claim_gpu needs at least one device")
    if fits_per_gpu < 1:
        raise ValueError(f"fits_per_gpu must be >= 1, got {fits_per_gpu!r}")
    folder = Path(lock_dir or os.environ.get("DIPKIT_GPU_LOCK_DIR") or tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    ids = _gpu_ids(n_devices)
    user = _user()
    start = time.monotonic()
    while True:
        for slot, index in ((s, i) for s in range(fits_per_gpu) for i in range(len(ids))):
            fh = open(folder / _lock_name(user, ids[index], slot), "a")  # noqa: SIM115 - held past the yield
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            try:
                yield index
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
                fh.close()
            return
        if timeout is not None and time.monotonic() - start > timeout:
            raise TimeoutError(
                f"no free GPU among {n_devices} ({fits_per_gpu} fit(s) each) within {timeout} s "
                f"(locks in {folder})"
            )
        time.sleep(poll)


@contextlib.contextmanager
def device_for_job(preference: str = "auto", fits_per_gpu: int = 1) -> Iterator[str]:
    """The device string a fit job should use: with ``auto`` and several GPUs, a claimed slot.

    With one GPU no lock is needed: ``--resources gpu=`` alone caps the fits sharing it.
    """
    if preference == "auto":
        import torch  # here only: the rest of this module is standard library, loaded by path by tests

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n > 1:
            with claim_gpu(n, fits_per_gpu=fits_per_gpu) as index:
                yield f"cuda:{index}"
            return
    yield preference
