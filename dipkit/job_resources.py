"""What each job asks the scheduler for: a GPU slot or not, threads, memory and run time.

Planning code, read by ``rules/common.smk`` on every Snakemake invocation (and in every
cluster job), so standard library only: no torch.

**Where fits run** (:func:`fits_on_gpu`). ``fit.device: cpu`` -> CPU; ``cuda`` / ``cuda:N``
-> GPU; ``auto`` -> GPU in a cluster run (the submit host cannot see the compute nodes; the
workflow recognises one by Snakemake's job limit, ``--jobs``, see ``rules/common.smk``), else
when this host has an NVIDIA GPU (:func:`count_gpus`: ``CUDA_VISIBLE_DEVICES``,
``/proc/driver/nvidia``, ``nvidia-smi -L``; no torch). Fits planned on a GPU take one ``gpu``
slot each, others none, so a CPU-only host runs as many fits at once as ``--cores`` allows.

**GPU slots** (:func:`gpu_slots`): one setting, ``fit.fits_per_gpu``; the workflow sets
Snakemake's ``gpu`` resource to GPUs x ``fits_per_gpu`` where the fits run (a local run, or a
cluster job) unless ``--resources gpu=`` is given.

**Memory and run time** (:func:`fit_cost`, :func:`scaled`): estimated per job from the
architecture, its width, the image size and the iterations, calibrated on the measured
tables of the README (*Fit speed*: peak RSS and seconds per iteration on a 2-core AMD EPYC
at 256² and 512², seconds per iteration on an H200) with a safety factor of
:data:`SAFETY`, and multiplied by the attempt number on retries. The job-cost table
(``results/tables/job_costs.csv``) shows what the jobs really used.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

PROC_GPUS = "/proc/driver/nvidia/gpus"

#: requested memory and run time are the estimate times this
SAFETY = 1.5
#: seconds a fit job spends outside its iterations (interpreter, torch import, data, writing)
STARTUP_S = 90.0
#: host memory of a process that has imported torch, MB
BASE_MB = 800
#: host memory of a fit on a GPU (the CUDA context and libraries), MB
GPU_HOST_MB = 4000


def count_gpus(
    environ: Mapping[str, str] | None = None,
    proc_dir: str | os.PathLike = PROC_GPUS,
    which: Callable[[str], str | None] = shutil.which,
) -> int:
    """NVIDIA GPUs this process could use, found without torch.

    ``CUDA_VISIBLE_DEVICES`` set to nothing or ``-1`` hides every GPU; otherwise the GPUs are
    the entries of ``/proc/driver/nvidia/gpus`` (the driver's list), or, where that folder is
    missing (some containers), the ``GPU ...`` lines of ``nvidia-smi -L``; a
    ``CUDA_VISIBLE_DEVICES`` list caps the count at its length.
    """
    environ = os.environ if environ is None else environ
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0
    folder = Path(proc_dir)
    found = sum(1 for _ in folder.iterdir()) if folder.is_dir() else 0
    if not found and (exe := which("nvidia-smi")):
        try:
            out = subprocess.run([exe, "-L"], check=False, capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        found = sum(line.startswith("GPU ") for line in out.splitlines())
    if visible and found:
        found = min(found, len([v for v in visible.split(",") if v.strip()]))
    return found


def fits_on_gpu(device: str, n_gpus: int, cluster: bool) -> bool:
    """Whether fit jobs are planned on a GPU (module docstring, *Where fits run*).

    :param device: config ``fit.device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``).
    :param n_gpus: GPUs of this host (:func:`count_gpus`).
    :param cluster: the jobs run through a cluster executor, or this is such a job.
    """
    if device == "cpu":
        return False
    if device.startswith("cuda"):
        return True
    return cluster or n_gpus > 0


def gpu_slots(device: str, n_gpus: int, fits_per_gpu: int) -> int:
    """Fits that may run at once on this host's GPUs: ``fits_per_gpu`` on each GPU the fits
    use (all of them with ``auto``, one with ``cuda`` / ``cuda:N``; at least one)."""
    used = max(1, n_gpus) if device == "auto" else 1
    return used * int(fits_per_gpu)


@dataclass(frozen=True)
class ArchCost:
    """Measured cost of one fit of an architecture at ``ref_width`` channels.

    :param mb_per_mpx: host memory above :data:`BASE_MB` per megapixel of image, on CPU.
    :param s_per_mpx: CPU seconds per iteration per megapixel, with two threads.

    Other widths scale memory linearly and time by ``(width / ref_width) ** 1.7`` (the
    hourglass at 32 / 64 / 128 channels measured 1.3 / 3.8 / 12.9 s per iteration per Mpx).
    """

    ref_width: int
    mb_per_mpx: float
    s_per_mpx: float


#: per architecture, from the README's CPU table (peak RSS, s/it at 256² and 512², 2 threads)
ARCH_COSTS: dict[str, ArchCost] = {
    "hourglass": ArchCost(64, 5800, 3.8),  # ours64; ours32 / ours128: memory ~ width, time ~ width^1.7
    "dip": ArchCost(128, 15300, 17.0),
    "deep_decoder": ArchCost(128, 6200, 2.2),
    "mlp_decoder": ArchCost(128, 6200, 2.2),  # unmeasured: as deep_decoder
    "conv_decoder": ArchCost(128, 5900, 12.3),
    "conv_decoder_lpf": ArchCost(128, 8900, 18.5),  # unmeasured: conv_decoder x 1.5
    "conv_decoder_position": ArchCost(128, 8900, 18.5),  # unmeasured: conv_decoder x 1.5
    "conv_decoder_after": ArchCost(64, 3100, 3.6),
    "nas_dip": ArchCost(128, 36300, 65.0),
}
#: architectures not measured (swin_unet) are costed like the most expensive measured one
DEFAULT_COST = ARCH_COSTS["nas_dip"]
#: widths of ``width: predicted`` fits are known only when they run: the largest label
PREDICTED_WIDTH = 128


def _megapixels(size: tuple[int, int] | None) -> float:
    return 1.0 if size is None else size[0] * size[1] / 1e6


def fit_cost(
    spec: Mapping,
    size: tuple[int, int] | None,
    *,
    on_gpu: bool,
    threads: int = 1,
    fits_per_gpu: int = 1,
    batch: int = 1,
) -> tuple[int, int]:
    """``(mem_mb, runtime_min)`` to request for one fit job (first attempt; see :func:`scaled`).

    :param spec: the fit spec (:func:`dipkit.methods.fit_spec`): ``kind``, ``architecture``,
        ``width``, ``iterations``, ``search`` (ISNAS: ``n_samples``, ``top_k``).
    :param size: ``(width, height)`` of the fitted image in pixels; ``None``: unknown, costed as
        one megapixel.
    :param on_gpu: the fit runs on a GPU (:func:`fits_on_gpu`); it then shares the GPU with
        ``fits_per_gpu - 1`` others.
    :param threads: torch CPU threads of a CPU fit.
    :param batch: fits of the job run at once in one process (``fit_batch``).
    """
    mpx = _megapixels(size)
    if spec.get("kind") == "classical":  # BM3D on the CPU: seconds to a minute per image
        return math.ceil((BASE_MB + 2000 * mpx) * SAFETY), 15
    cost = ARCH_COSTS.get(spec.get("architecture"), DEFAULT_COST)
    predicted = spec.get("width_source") == "predicted"
    width = spec.get("width") or (PREDICTED_WIDTH if predicted else cost.ref_width)
    scale = width / cost.ref_width
    iterations = int(spec.get("iterations") or 3000)
    nets = 1
    if spec.get("kind") == "isnas":  # top-k candidate fits, up to 4x NAS-DIP's parameters
        search = spec.get("search") or {}
        iterations *= int(search.get("top_k", 1))
        nets = 2
    cpu_s_per_it = cost.s_per_mpx * scale**1.7 * mpx * nets
    if on_gpu:
        # the H200 took 4-30 ms per iteration at 256²-512² (small networks are launch-bound):
        # at least 10 ms, else the two-thread CPU time / 400; fits sharing a GPU are time-sliced,
        # and a batch of K fits takes about K / 2 times one fit's time (3.3-3.8x at K = 8)
        seconds = iterations * max(0.01, cpu_s_per_it / 400) * fits_per_gpu * max(1.0, batch / 2)
        mem = GPU_HOST_MB + 200 * mpx * batch
    else:
        # one thread takes 1.8x two threads' time (README); more threads are not counted on
        seconds = iterations * cpu_s_per_it * 2 / min(max(1, threads), 2) * batch
        mem = BASE_MB + cost.mb_per_mpx * scale * mpx * nets * batch
    runtime = (STARTUP_S + seconds) * SAFETY / 60
    return math.ceil(mem * SAFETY), math.ceil(runtime)


def search_cost(
    spec: Mapping, size: tuple[int, int] | None, *, on_gpu: bool, threads: int = 1, fits_per_gpu: int = 1
) -> tuple[int, int]:
    """``(mem_mb, runtime_min)`` of an ISNAS-DIP search job: ``n_samples`` untrained candidate
    networks each run forward once (about a third of a training iteration of twice NAS-DIP's
    cost)."""
    n = int((spec.get("search") or {}).get("n_samples", 5000))
    probe = {"kind": "dip", "architecture": "nas_dip", "iterations": max(1, math.ceil(n * 2 / 3))}
    return fit_cost(probe, size, on_gpu=on_gpu, threads=threads, fits_per_gpu=fits_per_gpu)


def scaled(value: int, attempt: int) -> int:
    """A request for retry ``attempt`` (1, 2, ...): ``value`` times the attempt."""
    return int(value) * max(1, int(attempt))


def image_size(path: str | os.PathLike, crop_multiple: int) -> tuple[int, int] | None:
    """``(width, height)`` of an image file as fitted (cropped to ``crop_multiple``), read from
    its header only; ``None`` when it cannot be read (the prepare job will name the file)."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            w, h = im.size
    except Exception:
        return None
    return w - w % crop_multiple, h - h % crop_multiple
