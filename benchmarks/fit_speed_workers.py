"""The pieces of ``benchmarks/fit_speed.py`` that its measuring processes run: the benchmark
methods, one benchmark fit's network and images (:func:`build`), one timed measurement
(:func:`measure_one`), the throughput worker, and how the modes start them (:func:`spawn`,
:func:`run_jobs`: ``python benchmarks/fit_speed_workers.py _worker JOBS`` or ``_throughput
JOB``, so each measurement runs in a fresh process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: benchmark name -> (registered method, width override)
METHODS = {
    "dip": ("dip", None),
    "ours32": ("ours", 32),
    "ours64": ("ours", 64),
    "ours128": ("ours", 128),
    "deep_decoder": ("deep_decoder", None),
    "conv_decoder": ("conv_decoder", None),
    "conv_decoder_ours64": ("conv_decoder_ours", 64),
    "nas_dip": ("nas_dip", None),
}
FIT_ITERATIONS = 3000


# --------------------------------------------------------------------------- shared pieces


def machine_name(device: str) -> str:
    """The device in words: GPU name, or CPU model and core count."""
    import torch

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    from dipkit.fit.device import cpu_model

    return f"{cpu_model()}, {os.cpu_count()} cores (torch {torch.__version__})"


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def build(
    bench_method: str, size: int, device: str, seed: int = 0, channels: int = 3, image=None, init_seed=None
):
    """Network, input code, noisy and clean image and fit settings of one benchmark fit.

    ``seed`` draws the synthetic image and the noise; ``init_seed`` (default ``seed``) the
    network's initialisation and input code."""
    import numpy as np
    import torch

    from dipkit.fit import make_input
    from dipkit.methods import get_method
    from dipkit.models import build_model

    name, width = METHODS[bench_method]
    method = get_method(name)
    opts = dict(method.arch_options)
    if width is not None:
        opts["width"] = width
    if image is None:
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:size, 0:size] / size
        clean = np.stack(
            [
                0.5 + 0.25 * np.sin(2 * np.pi * (k + 2) * xx) * np.cos(2 * np.pi * (k + 3) * yy)
                for k in range(channels)
            ],
            axis=-1,
        )
        clean = np.clip(clean + 0.05 * rng.standard_normal(clean.shape), 0, 1)
    else:
        clean = image
    size_hw = clean.shape[:2]
    rng = np.random.default_rng(seed + 1)
    noisy = np.clip(clean + rng.normal(0, 25 / 255, clean.shape), 0, 1)
    init_seed = seed if init_seed is None else init_seed
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        net = build_model(method.architecture, clean.shape[2], size_hw, **opts)
    net = net.to(device)
    z = make_input(net.in_channels, net.input_size, init_seed + 2, method.input_scale, device=device)

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32))[None].to(device)

    settings = dict(
        lr=method.lr, exp_weight=method.exp_weight, reg_noise_std=method.reg_noise_for("gaussian25")
    )
    return net, z, t(noisy), t(clean), settings, sum(p.numel() for p in net.parameters())


def fits_per_hour(fits: int, wall_s: float, iterations: int) -> float:
    """``fits`` fits of ``iterations`` iterations took ``wall_s``: fits per hour at 3000 iterations."""
    return fits * 3600.0 / (wall_s * FIT_ITERATIONS / iterations)


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


# --------------------------------------------------------------------------- workers


def measure_one(job: dict) -> dict:
    """One (method, size, loop) measurement in the current process."""
    import torch

    from dipkit.fit import FitSettings, fit
    from dipkit.fit.reference import reference_fit
    from dipkit.metrics import functional as fm

    device, loop, n, warm = job["device"], job["loop"], job["iterations"], job["warmup"]
    torch.set_num_threads(job["threads"])
    net, z, noisy, clean, hp, n_params = build(job["method"], job["size"], device)
    if loop == "reference":
        run = lambda net, k: reference_fit(net, z, noisy, clean, FitSettings(iterations=k, **hp), seed=3)  # noqa: E731
    else:  # "engine", or "graph": the engine with cuda_graphs auto
        graphs = "auto" if loop == "graph" else job.get("cuda_graphs", "auto")
        settings = dict(
            hp,
            ssim_every=job["ssim_every"],
            autocast=job.get("autocast", "off"),
            compile=job.get("compile", "off"),
            tf32=job.get("tf32", True),
            cuda_graphs=graphs,
        )
        run = lambda net, k: fit(net, z, noisy, clean, FitSettings(iterations=k, **settings), seed=3)  # noqa: E731
    t0 = time.perf_counter()
    if warm:
        run(net, warm)  # cuDNN autotuning, allocator, compile
    cold = time.perf_counter() - t0
    if n == 0:  # auto: about `budget_s` seconds of measurement, 3 to 50 iterations
        n = max(3, min(50, round(job.get("budget_s", 4.0) / (cold / max(warm, 1)))))
    r = run(net, n)
    wall = r["wall_time_s"] if isinstance(r, dict) else r.wall_time_s
    peak = r["peak_memory_bytes"] if isinstance(r, dict) else r.peak_memory_bytes
    out = {
        **job,
        "iterations": n,
        "params": n_params,
        "s_per_it": wall / n,
        "peak_bytes": int(peak),
        "warmup_s": cold,
    }
    if loop != "reference":
        out["psnr_last"], out["cuda_graph"] = r.psnr_last, r.cuda_graph
        # cost of one on-device SSIM call, for the ssim_every share
        x = clean.clone()
        for _ in range(3):
            fm.ssim(x, clean, 1.0)
        sync(device)
        reps = 10
        t0 = time.perf_counter()
        for _ in range(reps):
            fm.ssim(x, clean, 1.0)
        sync(device)
        out["ssim_call_s"] = (time.perf_counter() - t0) / reps
    return out


def worker_main(jobs_json: str) -> None:
    for job in json.loads(jobs_json):
        print(json.dumps(measure_one(job)), flush=True)


def throughput_worker(job_json: str) -> None:
    """Build and warm up, say ready; then for each ``go T`` on stdin fit with T threads and
    report the fit's start and end (CLOCK_MONOTONIC, comparable across processes).

    ``loop`` is ``engine`` (:func:`dipkit.fit.fit`) or ``reference`` (the paper-like loop,
    in a process that never runs the engine, so with glibc's default allocator); with
    ``batch`` B > 1 the process fits B images at once (:func:`dipkit.fit.batched.fit_batch`,
    as the pipeline's ``fit.batch``)."""
    import torch

    from dipkit.fit import FitSettings, fit
    from dipkit.fit.batched import fit_batch
    from dipkit.fit.reference import reference_fit

    job = json.loads(job_json)
    b = int(job.get("batch", 1))
    cases = [build(job["method"], job["size"], job["device"], seed=job["index"] * b + j) for j in range(b)]
    net, z, noisy, clean, hp, _ = cases[0]
    if b > 1:
        nets, zs, ys, xs = ([c[i] for c in cases] for i in range(4))

        def run(k, seed):
            return fit_batch(nets, zs, ys, xs, FitSettings(iterations=k, **hp), seeds=[seed] * b)[
                0
            ].wall_time_s
    elif job.get("loop", "engine") == "reference":

        def run(k, seed):
            return reference_fit(net, z, noisy, clean, FitSettings(iterations=k, **hp), seed=seed)[
                "wall_time_s"
            ]
    else:

        def run(k, seed):
            return fit(net, z, noisy, clean, FitSettings(iterations=k, **hp), seed=seed).wall_time_s

    run(job["warmup"], 1)
    print("ready", flush=True)
    for line in sys.stdin:
        if not line.startswith("go"):
            break
        torch.set_num_threads(int(line.split()[1]))
        start = time.monotonic()
        wall = run(job["iterations"], 2)
        print(json.dumps({"wall": wall, "start": start, "end": time.monotonic()}), flush=True)


def spawn(args: list[str], env_extra: dict | None = None, **kw) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_extra or {})
    return subprocess.Popen([sys.executable, __file__, *args], env=env, text=True, **kw)


def run_jobs(jobs: list[dict]) -> list[dict]:
    proc = spawn(["_worker", json.dumps(jobs)], stdout=subprocess.PIPE)
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed (exit {proc.returncode}) on {[j['method'] for j in jobs]}")
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def _main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "_worker":
        return worker_main(sys.argv[2])
    if len(sys.argv) == 3 and sys.argv[1] == "_throughput":
        return throughput_worker(sys.argv[2])
    raise SystemExit(f"usage: {sys.argv[0]} _worker JOBS_JSON | _throughput JOB_JSON (run by fit_speed.py)")


if __name__ == "__main__":
    _main()
