"""Fit speed: dipkit's engine against a loop like the paper's, and fits per hour when fits share a device.

Modes (each prints a Markdown table and, with ``--json``, writes the raw numbers):

``per-fit``
    For each method and image size, times :func:`dipkit.fit.reference.reference_fit` (host
    copy plus scikit-image PSNR and SSIM every iteration, as the paper's ``fit.py``) and
    :func:`dipkit.fit.fit` on the same network, image and seed, each in a fresh process
    (on CUDA, one process per loop kind), after warm-up iterations. Prints seconds per
    iteration, seconds per 3000-iteration fit (extrapolated from the measured iterations),
    iterations per second, peak memory, the engine / reference ratio (medians over
    ``--rounds`` alternating rounds, with each round's own ratio beside it), and the share of
    the engine's time its on-device SSIM takes at ``ssim_every``.
``throughput``
    Starts ``K`` fit processes of ``T`` threads each at once (layouts ``KxT``), releases them
    together after their warm-up and reports fits per hour, relative to the first layout
    (``--loop reference``: the paper-like loop instead of the engine).
``batched``
    K fits of one architecture in one process (:func:`dipkit.fit.batched.fit_batch`, stacked
    parameters and ``vmap``) against one engine fit, in fits per hour.
``full``
    One real 3000-iteration engine fit (the GPU target: Ours-64 at 512^2 in <= 30 s on an H100).

With ``--cuda-graphs``, ``per-fit``, ``full`` and ``batched`` also time the engine with its
training step captured in a CUDA graph (``fit.cuda_graphs: auto``) beside eager steps (``off``)
in the same run, and print the ratio (the rows say whether the step was captured: on a CPU
``auto`` runs eagerly).
``precision``
    Same seed, 3000 iterations on given images: fp32 without TF32, TF32 (the default on
    CUDA) and bf16 autocast, plus a second seed for the run-to-run spread.
``compile``
    Eager against ``torch.compile`` modes: cold start and steady seconds per iteration.

Usage (README, Fit speed)::

    python benchmarks/fit_speed.py per-fit --sizes 256 512
    python benchmarks/fit_speed.py throughput --method ours64 --size 256 --layouts 1x2 2x1
    python benchmarks/fit_speed.py per-fit --cuda-graphs --methods ours32 --sizes 256 512

The benchmark fits themselves (networks, images, timed runs, the throughput worker) are in
``fit_speed_workers.py``, which each mode starts in fresh processes.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

# fit_speed_workers.py sits beside this file, whichever way this file is run
sys.path.insert(0, str(Path(__file__).resolve().parent))
from fit_speed_workers import (
    FIT_ITERATIONS,
    METHODS,
    build,
    fits_per_hour,
    machine_name,
    resolve_device,
    run_jobs,
    spawn,
)

# --------------------------------------------------------------------------- modes


def _mib(b: int) -> str:
    return f"{b / 2**20:,.0f}"


def mode_per_fit(args, device: str) -> list[dict]:
    cuda = device.startswith("cuda")
    threads = args.threads or (1 if cuda else os.cpu_count())
    jobs = []
    loops = [("reference", args.ref_iterations), ("engine", args.iterations)]
    if args.cuda_graphs:  # the engine eagerly, against its captured step
        loops.append(("graph", args.iterations))
    for size in args.sizes:
        for m in args.methods:
            for loop, n in loops:
                jobs.append(
                    dict(
                        method=m,
                        size=size,
                        loop=loop,
                        iterations=n,
                        warmup=args.warmup,
                        device=device,
                        threads=threads,
                        ssim_every=args.ssim_every,
                        cuda_graphs="off" if args.cuda_graphs else "auto",
                    )
                )
    results = []
    for _ in range(args.rounds):  # alternate the loops; medians over the rounds are reported
        if cuda:  # CUDA peaks are reset per measurement: one process per loop kind
            for loop, _ in loops:
                results += run_jobs([j for j in jobs if j["loop"] == loop])
        else:  # CPU peak RSS is per process: one process per measurement
            for j in jobs:
                results += run_jobs([j])
                print(
                    f"  {j['method']} {j['size']} {j['loop']}: {results[-1]['s_per_it']:.4f} s/it",
                    file=sys.stderr,
                )
    by = {}
    for r in results:
        by.setdefault((r["method"], r["size"], r["loop"]), []).append(r)
    # Medians over the rounds, and each round's reference / engine ratio: on a shared machine
    # load comes in episodes of seconds to minutes, so the two loops of one round see similar
    # load, while the fastest reference and the fastest engine may come from different rounds.
    rounds = {k: [x["s_per_it"] for x in v] for k, v in by.items()}
    by = {
        k: dict(
            v[0],
            s_per_it=statistics.median(x["s_per_it"] for x in v),
            peak_bytes=max(x["peak_bytes"] for x in v),
        )
        for k, v in by.items()
    }
    print(f"\nDevice: {machine_name(device)}; {threads} thread(s) per fit; {_dt.date.today()}")

    def its(n):
        return str(n) if n else "3-50 (about 4 s)"

    print(
        f"Reference: {its(args.ref_iterations)} iterations, engine: {its(args.iterations)}, after {args.warmup} "
        f"warm-up; medians of {args.rounds} alternating round(s); s/fit = s/it x {FIT_ITERATIONS}.\n"
    )
    print(
        "| method | size | params | reference s/it | dipkit s/it | reference s/fit | dipkit s/fit | dipkit it/s "
        f"| speed-up | per round | peak MiB ref / dipkit | SSIM share (every {args.ssim_every}) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for size in args.sizes:
        for m in args.methods:
            ref, eng = by[(m, size, "reference")], by[(m, size, "engine")]
            ratio = ref["s_per_it"] / eng["s_per_it"]
            per_round = [a / b for a, b in zip(rounds[(m, size, "reference")], rounds[(m, size, "engine")])]
            share = eng["ssim_call_s"] / (args.ssim_every * eng["s_per_it"])
            rows.append(
                dict(
                    method=m,
                    size=size,
                    params=eng["params"],
                    ref_s_per_it=ref["s_per_it"],
                    engine_s_per_it=eng["s_per_it"],
                    speedup=ratio,
                    speedup_per_round=per_round,
                    ssim_share=share,
                    ref_peak=ref["peak_bytes"],
                    engine_peak=eng["peak_bytes"],
                )
            )
            print(
                f"| {m} | {size}² | {eng['params']:,} | {ref['s_per_it']:.4f} | {eng['s_per_it']:.4f} "
                f"| {ref['s_per_it'] * FIT_ITERATIONS:,.0f} | {eng['s_per_it'] * FIT_ITERATIONS:,.1f} "
                f"| {1 / eng['s_per_it']:,.1f} | {ratio:.2f}× | {' / '.join(f'{x:.2f}' for x in per_round)} "
                f"| {_mib(ref['peak_bytes'])} / {_mib(eng['peak_bytes'])} | {100 * share:.2f} % |"
            )
    if args.cuda_graphs:
        print(
            f"\nCUDA graphs: the engine with its step captured (fit.cuda_graphs auto) against eager steps "
            f"(off), {args.iterations or 'about 4 s of'} iterations after {args.warmup} warm-up, "
            "same run.\n"
        )
        print(
            "| method | size | eager s/it | graph s/it | graph s/fit | captured | graph vs eager "
            "| per round |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for row in rows:
            m, size = row["method"], row["size"]
            g = by[(m, size, "graph")]
            per_round = [a / b for a, b in zip(rounds[(m, size, "engine")], rounds[(m, size, "graph")])]
            row.update(
                graph_s_per_it=g["s_per_it"],
                graph_speedup=row["engine_s_per_it"] / g["s_per_it"],
                graph_speedup_per_round=per_round,
                captured=g["cuda_graph"],
                graph_peak=g["peak_bytes"],
            )
            print(
                f"| {m} | {size}² | {row['engine_s_per_it']:.4f} | {g['s_per_it']:.4f} "
                f"| {g['s_per_it'] * FIT_ITERATIONS:,.1f} | {'yes' if g['cuda_graph'] else 'no'} "
                f"| {row['graph_speedup']:.2f}× | {' / '.join(f'{x:.2f}' for x in per_round)} |"
            )
    return rows


def mode_throughput(args, device: str) -> list[dict]:
    cuda = device.startswith("cuda")
    layouts = args.layouts or (
        ["1x1", "2x1", "4x1", "8x1"] if cuda else [f"1x{os.cpu_count()}", f"{os.cpu_count()}x1"]
    )
    shapes = [tuple(int(v) for v in layout.split("x")) for layout in layouts]

    def start(index, batch):
        job = dict(
            method=args.method,
            size=args.size,
            device=device,
            index=index,
            iterations=args.iterations,
            warmup=args.warmup,
            loop=args.loop,
            batch=batch,
        )
        return spawn(
            ["_throughput", json.dumps(job)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env_extra={"OMP_NUM_THREADS": "1"},
        )

    # with --batch, one unbatched fit first: the reference the batched layouts are compared with
    ref = [start(0, 1)] if args.batch > 1 else []
    procs = [start(index, args.batch) for index in range(max(k for k, _ in shapes))]  # reused by every layout
    runs = [(f"{layouts[0]}, one fit per process", ref, shapes[0], 1)] if ref else []
    for layout, (k, t) in zip(layouts, shapes):
        label = layout if args.batch == 1 else f"{layout}, {args.batch} fits per process"
        runs.append((label, procs[:k], (k, t), args.batch))
    rows = []
    try:
        for p in ref + procs:
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError("a throughput worker failed to start")
        for layout, workers, (k, t), batch in runs:
            for p in workers:
                p.stdin.write(f"go {t}\n")
                p.stdin.flush()
            reports = [json.loads(p.stdout.readline()) for p in workers]
            # from the first fit's start to the last fit's end
            wall = max(r["end"] for r in reports) - min(r["start"] for r in reports)
            per_hour = fits_per_hour(k * batch, wall, args.iterations)
            rows.append(
                dict(
                    layout=layout,
                    processes=k,
                    threads=t,
                    batch=batch,
                    wall_s=wall,
                    fits_per_hour=per_hour,
                    mean_fit_s=statistics.mean(r["wall"] for r in reports) * FIT_ITERATIONS / args.iterations,
                )
            )
            print(f"  {layout}: {per_hour:.1f} fits/h", file=sys.stderr)
    finally:
        for p in ref + procs:
            try:
                p.stdin.write("exit\n")
                p.stdin.close()
            except OSError:
                pass
            p.wait(timeout=60)
    base = rows[0]["fits_per_hour"]
    loop = args.loop if args.batch == 1 else f"batched ({args.batch} fits per process)"
    print(
        f"\nDevice: {machine_name(device)}; {args.method} at {args.size}², {loop} loop, "
        f"{args.iterations} iterations per fit "
        f"(fits/h extrapolated to {FIT_ITERATIONS}); {_dt.date.today()}\n"
    )
    took = "one fit takes (s)" if args.batch == 1 else "one process's fit(s) take (s)"
    print(f"| processes x threads | fits per hour | vs first layout | {took} |")
    print("|---|---|---|---|")
    for r in rows:
        r["ratio"] = r["fits_per_hour"] / base
        print(f"| {r['layout']} | {r['fits_per_hour']:,.0f} | {r['ratio']:.2f}× | {r['mean_fit_s']:,.0f} |")
    return rows


def mode_batched(args, device: str) -> list[dict]:
    """K fits of one architecture in one process (dipkit.fit.batched), against one engine fit."""
    import torch

    from dipkit.fit import FitSettings, fit
    from dipkit.fit.batched import fit_batch

    torch.set_num_threads(args.threads or (1 if device.startswith("cuda") else os.cpu_count()))
    rows = []
    # with --cuda-graphs: the base is one eager fit, and every row is run with graphs (auto)
    modes = ["off", "auto"] if args.cuda_graphs else ["auto"]
    net, z, noisy, clean, hp, _ = build(args.method, args.size, device, seed=0)
    base = None
    for mode in modes:
        fit(net, z, noisy, clean, FitSettings(iterations=args.warmup, cuda_graphs=mode, **hp), seed=1)
        r = fit(net, z, noisy, clean, FitSettings(iterations=args.iterations, cuda_graphs=mode, **hp), seed=2)
        fph = fits_per_hour(1, r.wall_time_s, args.iterations)
        base = base or fph
        steps = "CUDA graph" if r.cuda_graph else "eager"
        label = "engine, 1 fit" + ("" if len(modes) == 1 else f", {steps}")
        rows.append(
            dict(
                layout=label,
                fits=1,
                wall_s=r.wall_time_s,
                fits_per_hour=fph,
                ratio=fph / base,
                captured=r.cuda_graph,
            )
        )
    for k in args.batches:
        cases = [build(args.method, args.size, device, seed=j) for j in range(k)]
        parts = [list(c) for c in zip(*cases)]
        nets, zs, ys, xs, hps = parts[0], parts[1], parts[2], parts[3], parts[4]
        settings = dict(hps[0], cuda_graphs=modes[-1])
        fit_batch(nets, zs, ys, xs, FitSettings(iterations=args.warmup, **settings), seeds=list(range(k)))
        out = fit_batch(
            nets, zs, ys, xs, FitSettings(iterations=args.iterations, **settings), seeds=list(range(k))
        )
        fph = fits_per_hour(k, out[0].wall_time_s, args.iterations)
        label = f"batched, {k} fits" + (
            "" if len(modes) == 1 else f", {'CUDA graph' if out[0].cuda_graph else 'eager'}"
        )
        rows.append(
            dict(
                layout=label,
                fits=k,
                wall_s=out[0].wall_time_s,
                fits_per_hour=fph,
                ratio=fph / base,
                captured=out[0].cuda_graph,
            )
        )
        print(f"  batched {k}: {fph:.0f} fits/h", file=sys.stderr, flush=True)
        del cases, parts, nets, zs, ys, xs, out
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    print(
        f"\nDevice: {machine_name(device)}; {args.method} at {args.size}², {args.iterations} iterations per fit "
        f"(fits/h extrapolated to {FIT_ITERATIONS}); {_dt.date.today()}\n"
    )
    print(f"| layout | fits per hour | vs one {'eager ' if args.cuda_graphs else ''}engine fit |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r['layout']} | {r['fits_per_hour']:,.0f} | {r['ratio']:.2f}× |")
    return rows


def mode_full(args, device: str) -> list[dict]:
    rows = []
    print(
        f"\n{_dt.date.today()}; s per fit: of {FIT_ITERATIONS} iterations (measured over the iterations given)\n"
    )
    print("| method | size | iterations | steps | s per fit | vs eager | device |")
    print("|---|---|---|---|---|---|---|")
    for m in args.methods:
        eager = None
        for loop in ["engine", "graph"] if args.cuda_graphs else ["engine"]:
            job = dict(
                method=m,
                size=args.size,
                loop=loop,
                iterations=args.iterations,
                warmup=args.warmup,
                device=device,
                threads=args.threads or 1,
                ssim_every=args.ssim_every,
                cuda_graphs="off" if args.cuda_graphs else "auto",
            )
            r = run_jobs([job])[0]
            rows.append(r)
            eager = eager or r["s_per_it"]
            steps = "CUDA graph" if r["cuda_graph"] else "eager"
            print(
                f"| {m} | {args.size}² | {args.iterations} | {steps} | {r['s_per_it'] * FIT_ITERATIONS:.1f} "
                f"| {eager / r['s_per_it']:.2f}× | {machine_name(device)} |",
                flush=True,
            )
    return rows


def _load_image(path: str):
    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(path), dtype=np.float64) / 255.0
    img = img[:, :, None] if img.ndim == 2 else img[:, :, :3]
    h, w = (s - s % 32 for s in img.shape[:2])
    return img[:h, :w]


def mode_precision(args, device: str) -> list[dict]:
    import torch

    from dipkit.fit import FitSettings, fit

    variants = [
        ("fp32", dict(tf32=False), 3),
        ("tf32", dict(tf32=True), 3),
        ("bf16", dict(tf32=True, autocast="bf16"), 3),
        ("tf32, other init and seed", dict(tf32=True), 4),
    ]
    rows = []
    print(
        f"\nDevice: {machine_name(device)}; {args.method}, sigma 25, {args.iterations} iterations; {_dt.date.today()}\n"
    )
    print("| image | variant | PSNR last (dB) | vs fp32 (dB) | s/fit |")
    print("|---|---|---|---|---|")
    for path in args.images:
        img = _load_image(path)
        ref = None
        for label, kw, seed in variants:
            net, z, noisy, clean, hp, _ = build(args.method, 0, device, seed=0, image=img, init_seed=seed)
            r = fit(net, z, noisy, clean, FitSettings(iterations=args.iterations, **hp, **kw), seed=seed)
            ref = r.psnr_last if ref is None else ref
            rows.append(
                dict(
                    image=Path(path).name,
                    variant=label,
                    psnr_last=r.psnr_last,
                    delta=r.psnr_last - ref,
                    wall_s=r.wall_time_s,
                )
            )
            print(
                f"| {Path(path).name} | {label} | {r.psnr_last:.3f} | {r.psnr_last - ref:+.3f} | {r.wall_time_s:.1f} |",
                flush=True,
            )
            del net
            torch.cuda.empty_cache() if device.startswith("cuda") else None
    return rows


def mode_compile(args, device: str) -> list[dict]:
    rows = []
    print(f"\nDevice: {machine_name(device)}; {args.method} at {args.size}²; {_dt.date.today()}\n")
    print(f"| forward | cold start (s, first fit of {args.warmup} it) | steady s/it | vs eager |")
    print("|---|---|---|---|")
    base = None
    for mode in ["off", *args.modes]:
        job = dict(
            method=args.method,
            size=args.size,
            loop="engine",
            iterations=args.iterations,
            warmup=args.warmup,
            device=device,
            threads=args.threads or 1,
            ssim_every=args.ssim_every,
            compile=mode,
        )
        try:
            r = run_jobs([job])[0]
        except RuntimeError as err:
            print(f"| {mode} | failed: {err} | | |")
            continue
        base = r["s_per_it"] if base is None else base
        rows.append(
            dict(mode=mode, warmup_s=r["warmup_s"], s_per_it=r["s_per_it"], speedup=base / r["s_per_it"])
        )
        print(
            f"| {'eager' if mode == 'off' else 'compile ' + mode} | {r['warmup_s']:.1f} | {r['s_per_it']:.5f} "
            f"| {base / r['s_per_it']:.2f}× |",
            flush=True,
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["per-fit", "throughput", "batched", "full", "precision", "compile"])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--method", default="ours64", choices=list(METHODS), help="throughput/precision/compile")
    p.add_argument("--sizes", nargs="+", type=int, default=[256, 512])
    p.add_argument("--size", type=int, default=256, help="throughput/full/compile image size")
    p.add_argument(
        "--iterations",
        type=int,
        default=None,
        help="measured engine iterations (per-fit: CUDA 200, CPU 0 = about 4 s worth)",
    )
    p.add_argument(
        "--ref-iterations", type=int, default=None, help="measured reference iterations (CUDA 20, CPU 0)"
    )
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument(
        "--threads", type=int, default=None, help="threads per fit (default: CPU all cores, CUDA 1)"
    )
    p.add_argument("--ssim-every", type=int, default=100)
    p.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="per-fit: alternating rounds, medians are reported (CPU 3, CUDA 1)",
    )
    p.add_argument("--layouts", nargs="+", default=None, help="throughput: KxT = K processes of T threads")
    p.add_argument(
        "--loop", default="engine", choices=["engine", "reference"], help="throughput: which fit loop"
    )
    p.add_argument(
        "--batch",
        type=int,
        default=1,
        help="throughput: fits per process, run at once by fit_batch (as the pipeline's fit.batch)",
    )
    p.add_argument("--images", nargs="+", default=[], help="precision: image files")
    p.add_argument("--modes", nargs="+", default=["default", "reduce-overhead"], help="compile modes")
    p.add_argument("--batches", nargs="+", type=int, default=[1, 2, 4, 8], help="batched: fits per batch")
    p.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="per-fit/full/batched: also time the engine with its step in a CUDA graph, against eager steps",
    )
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args()
    device = resolve_device(args.device)
    cuda = device.startswith("cuda")
    if args.iterations is None:
        args.iterations = {
            "per-fit": 200 if cuda else 0,
            "throughput": 500 if cuda else 8,
            "batched": 500 if cuda else 8,
            "precision": FIT_ITERATIONS,
            "compile": 300,
            "full": FIT_ITERATIONS,
        }[args.mode]
    args.ref_iterations = args.ref_iterations if args.ref_iterations is not None else (20 if cuda else 0)
    args.rounds = args.rounds or (1 if cuda else 3)
    args.warmup = args.warmup if args.warmup is not None else (20 if cuda else 2)
    if args.batch > 1 and args.loop != "engine":
        p.error("--batch runs fit_batch, not the reference loop")
    if args.mode == "precision" and not args.images:
        p.error("precision needs --images")
    rows = {
        "per-fit": mode_per_fit,
        "throughput": mode_throughput,
        "batched": mode_batched,
        "full": mode_full,
        "precision": mode_precision,
        "compile": mode_compile,
    }[args.mode](args, device)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "mode": args.mode,
                    "device": machine_name(device),
                    "date": str(_dt.date.today()),
                    "rows": rows,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
