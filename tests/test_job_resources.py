"""dipkit.job_resources: where fits run, GPU slots, and the memory / run time a job asks for."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from dipkit.config import plan_methods
from dipkit.job_resources import (
    BASE_MB,
    GPU_HOST_MB,
    count_gpus,
    fit_cost,
    fits_on_gpu,
    gpu_slots,
    image_size,
    scaled,
    search_cost,
)
from dipkit.methods import fit_spec


def _fake_nvidia_smi(folder, gpus: int) -> str:
    """An ``nvidia-smi`` whose ``-L`` lists ``gpus`` GPUs, as the real one does."""
    exe = folder / "nvidia-smi"
    lines = "".join(f"echo 'GPU {i}: NVIDIA Fake (UUID: GPU-{i:04d})'\n" for i in range(gpus))
    exe.write_text(f'#!/bin/sh\n[ "$1" = -L ] || exit 2\n{lines}')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return str(exe)


def test_gpus_from_the_driver_folder(tmp_path):
    for i in range(3):
        (tmp_path / f"0000:0{i}:00.0").mkdir()
    assert count_gpus({}, tmp_path, which=lambda _: None) == 3
    assert count_gpus({"CUDA_VISIBLE_DEVICES": "1"}, tmp_path, which=lambda _: None) == 1
    assert count_gpus({"CUDA_VISIBLE_DEVICES": ""}, tmp_path) == 0  # hidden on purpose
    assert count_gpus({"CUDA_VISIBLE_DEVICES": "-1"}, tmp_path) == 0


def test_gpus_from_nvidia_smi_when_the_driver_folder_is_missing(tmp_path):
    exe = _fake_nvidia_smi(tmp_path, 2)
    missing = tmp_path / "no-such-folder"
    assert count_gpus({}, missing, which=lambda _: exe) == 2
    assert count_gpus({"CUDA_VISIBLE_DEVICES": "0"}, missing, which=lambda _: exe) == 1
    assert count_gpus({}, missing, which=lambda _: None) == 0  # no driver, no nvidia-smi
    broken = tmp_path / "broken"
    broken.write_text("#!/bin/sh\nexit 9\n")
    broken.chmod(0o755)
    assert count_gpus({}, missing, which=lambda _: str(broken)) == 0


def test_gpu_detection_needs_no_torch(tmp_path):
    """The planner runs in every snakemake call: importing it must not import torch."""
    code = "import sys, dipkit.job_resources; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize(
    ("device", "gpus", "cluster", "on_gpu"),
    [
        ("cpu", 4, False, False),
        ("cpu", 0, True, False),
        ("cuda", 0, False, True),  # asked for: the job fails clearly if there is none
        ("cuda:1", 0, True, True),
        ("auto", 0, False, False),  # a CPU-only workstation
        ("auto", 2, False, True),
        ("auto", 0, True, True),  # a cluster: the submit host has no GPU, its GPU nodes do
    ],
)
def test_where_fits_run(device, gpus, cluster, on_gpu):
    assert fits_on_gpu(device, gpus, cluster) is on_gpu


def test_slots_come_from_fits_per_gpu():
    assert gpu_slots("auto", 2, 4) == 8
    assert gpu_slots("auto", 0, 4) == 4  # planned on a GPU that detection missed: one
    assert gpu_slots("cuda", 3, 2) == 2  # every fit on the current GPU
    assert gpu_slots("cuda:2", 3, 1) == 1


def _spec(name, image="image_House256rgb", dataset="Set9", **overrides):
    methods = plan_methods({"methods": {name: overrides}})
    return fit_spec(methods[name], dataset, image, "gaussian25", {"iterations": None})


def test_memory_and_time_grow_with_image_width_and_iterations():
    ours = _spec("ours_w64", base="ours", width=64)
    small = fit_cost(ours, (256, 256), on_gpu=False)
    large = fit_cost(ours, (512, 512), on_gpu=False)
    wide = fit_cost(_spec("ours_w128", base="ours", width=128), (256, 256), on_gpu=False)
    longer = fit_cost({**ours, "iterations": 6000}, (256, 256), on_gpu=False)
    assert large[0] > small[0] and large[1] > small[1]
    assert wide[0] > small[0] and wide[1] > small[1]
    assert longer[0] == small[0] and longer[1] > 1.8 * small[1]
    assert small[0] > BASE_MB  # never below what importing torch takes


def test_requests_cover_the_measured_cpu_costs():
    """The README's CPU table (2-core EPYC, 2 threads per fit, 2026-11-26): the requests stay
    above the measured peak memory and the one-thread time (1.78x the two-thread time)."""
    measured = {  # method: (size, peak MiB, s/it with 2 threads)
        "dip": (512, 4423, 4.6305),
        "ours_w32": (512, 1084, 0.3422),
        "ours_w128": (256, 1139, 0.8713),
        "deep_decoder": (512, 1966, 0.4995),
        "conv_decoder": (256, 810, 0.8085),
        "nas_dip": (512, 9813, 16.9646),
    }
    widths = {"ours_w32": 32, "ours_w128": 128}
    for name, (side, mib, s_per_it) in measured.items():
        spec = _spec(name, **({"base": "ours", "width": widths[name]} if name in widths else {}))
        mem_mb, minutes = fit_cost(spec, (side, side), on_gpu=False, threads=1)
        assert mem_mb > mib * 1.048576, name
        assert minutes * 60 > 1.78 * s_per_it * spec["iterations"], name


def test_gpu_fits_ask_for_host_memory_of_a_cuda_process_and_share_the_gpu():
    spec = _spec("ours_w64", base="ours", width=64)
    alone = fit_cost(spec, (512, 512), on_gpu=True, fits_per_gpu=1)
    shared = fit_cost(spec, (512, 512), on_gpu=True, fits_per_gpu=4)
    assert alone[0] >= GPU_HOST_MB and shared[1] > alone[1]
    assert alone[1] < fit_cost(spec, (512, 512), on_gpu=False)[1]


def test_other_kinds_of_jobs():
    bm3d = fit_cost(_spec("bm3d"), (512, 512), on_gpu=False)
    assert bm3d[1] <= 15
    pred = _spec("ours_pred", base="ours", width="predicted")
    assert pred["width"] is None
    widest = _spec("ours_w128", base="ours", width=128)
    assert fit_cost(pred, (256, 256), on_gpu=False) == fit_cost(widest, (256, 256), on_gpu=False)
    isnas = _spec("isnas_dip")
    one = fit_cost({**isnas, "kind": "dip"}, (256, 256), on_gpu=False)
    assert fit_cost(isnas, (256, 256), on_gpu=False)[1] > 10 * one[1]  # top-k candidate fits
    assert search_cost(isnas, (256, 256), on_gpu=True)[1] > 0
    batch = fit_cost(_spec("ours_w64", base="ours", width=64), (256, 256), on_gpu=False, batch=4)
    assert batch[0] > fit_cost(_spec("ours_w64", base="ours", width=64), (256, 256), on_gpu=False)[0]
    unknown = fit_cost(_spec("ours_w64", base="ours", width=64), None, on_gpu=False)  # costed as 1 Mpx
    assert unknown[0] > batch[0] / 4


def test_retries_ask_for_more():
    assert [scaled(1500, a) for a in (1, 2, 3)] == [1500, 3000, 4500]


def test_image_size_reads_the_header_and_crops(tmp_path):
    from PIL import Image

    Image.new("RGB", (100, 70)).save(tmp_path / "a.png")
    assert image_size(tmp_path / "a.png", 32) == (96, 64)
    (tmp_path / "b.png").write_text("not an image")
    assert image_size(tmp_path / "b.png", 32) is None


@pytest.mark.skipif(not os.path.isdir("/proc/driver/nvidia/gpus"), reason="no NVIDIA driver on this host")
def test_detection_agrees_with_torch():
    import torch

    assert count_gpus() == torch.cuda.device_count()
