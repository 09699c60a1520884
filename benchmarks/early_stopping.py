"""Early stopping: how close each no-reference rule gets to the oracle peak (docs/early-stopping.md).

Images outside the four benchmark datasets (scikit-image's bundled photos, centre crops),
Gaussian noise, and each DIP method fitted through :func:`dipkit.denoise.denoise` -- the
function ``dipkit denoise`` calls: noise level estimated from the noisy image, the hourglass
width predicted from texture for ``ours`` -- for the full number of iterations, so one fit
gives the last-iteration result, the oracle peak (the best PSNR of the smoothed output over
the run, which needs the clean image) and, computed online in the same run, where every rule
of :mod:`dipkit.fit.stopping` stops and the PSNR/SSIM of what it returns. BM3D (true sigma)
is scored on the same noisy image.

Commands::

    python benchmarks/early_stopping.py run --out docs/early-stopping/fits.csv \\
        --methods ours --sizes 128 --sigmas 15 25 50
    python benchmarks/early_stopping.py summary docs/early-stopping/fits.csv \\
        --out docs/early-stopping/summary.csv
    python benchmarks/early_stopping.py tune results/early_stopping/signals --factor 1.4 1.5 1.6

``run`` appends one row per fit to ``--out`` (rewritten atomically after every fit) and skips
the fits already there, so an interrupted run continues where it stopped; ``--workers N``
runs N fits at once (several processes per GPU). ``--signals DIR`` also keeps each fit's
per-iteration rule signals and PSNR, from which ``tune`` replays the rules with other
parameters (:func:`dipkit.fit.stopping.replay`) without refitting, per noise level with
``--by-sigma``. ``summary`` prints, per method, crop size and rule, the mean and worst gap to
the oracle peak, the gain over the last iterate, the iterations run and BM3D, naming the
device and date of the fits.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: The study's photos (scikit-image's bundled data; none is in Set9, Set12, CBSD68 or PolyU).
STUDY_IMAGES = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "coins",
    "moon",
    "brick",
    "clock",
)
#: Held-out photos the rules' parameters were tuned on (never in the study's table).
TUNING_IMAGES = ("grass", "gravel", "retina", "page")
METHODS = ("ours", "deep_decoder", "conv_decoder", "dip")
ITERATIONS = 3000
#: Columns that identify a fit (a rerun skips fits whose key is already in the CSV).
KEY = ("method", "size", "sigma", "image", "iterations")


def load_crop(name: str, size: int) -> np.ndarray:
    """The central ``size x size`` crop of a scikit-image photo, float32 ``[H, W, C]`` in [0, 1]."""
    import skimage.data

    from dipkit.images import central_crop

    img = np.asarray(getattr(skimage.data, name)())
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    img = img.astype(np.float32) / (255.0 if img.max() > 1 else 1.0)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 4:  # RGBA: drop alpha
        img = img[:, :, :3]
    return np.ascontiguousarray(central_crop(img, size))


def noisy_image(clean: np.ndarray, name: str, size: int, sigma: int, seed: int) -> np.ndarray:
    """``clean`` with clipped Gaussian noise (:mod:`dipkit.noise`), seeded per image, crop and sigma."""
    from dipkit.noise import NoiseSpec, add_noise
    from dipkit.seeding import derive_seed

    seed = derive_seed(seed, "early_stopping", name, size, sigma)
    return add_noise(clean, NoiseSpec("gaussian", sigma), seed)


def device_name(device: str) -> str:
    import torch

    from dipkit.fit import select_device
    from dipkit.fit.device import cpu_model

    dev = select_device(device)
    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name(dev)}"
    return f"{cpu_model()}, {os.cpu_count()} cores"


def fit_cell(task: dict) -> dict:
    """One fit (a row of the CSV): ``task`` holds method, size, sigma, image, iterations, seed,
    device, threads, signals (a folder or None) and bm3d (whether to score BM3D)."""
    import torch

    from dipkit.classical import run_classical
    from dipkit.columns import STOP_RULES
    from dipkit.denoise import denoise
    from dipkit.seeding import derive_seed

    torch.set_num_threads(task["threads"])
    clean = load_crop(task["image"], task["size"])
    noisy = noisy_image(clean, task["image"], task["size"], task["sigma"], task["seed"])
    fit_seed = derive_seed(
        task["seed"], "early_stopping_fit", task["image"], task["size"], task["sigma"], task["method"]
    )
    started = time.perf_counter()
    res = denoise(
        noisy,
        method=task["method"],
        iterations=task["iterations"],
        seed=fit_seed,
        device=task["device"],
        early_stop="off",
        clean=clean,
        cache_dir=task.get("cache_dir"),
    )
    seconds = time.perf_counter() - started
    fit = res["fit"]
    row = {
        **{k: task[k] for k in KEY},
        "channels": clean.shape[2],
        "width": res["width"],
        "sigma_estimate": round(res["sigma"], 3),
        "psnr_input": fit.psnr_input,
        "psnr_last": fit.psnr_last,
        "ssim_last": fit.ssim_last,
        "psnr_peak": fit.psnr_peak,
        "peak_iteration": fit.psnr_peak_iteration,
    }
    for rule in STOP_RULES:
        rec = fit.stops[rule]
        row[f"{rule}_stop_iteration"] = rec.stop_iteration if rec.triggered else -1
        row[f"{rule}_iteration"] = rec.iteration
        row[f"{rule}_psnr"] = rec.psnr
        row[f"{rule}_ssim"] = rec.ssim
    row["bm3d_psnr"] = (
        run_classical("bm3d", clean, noisy, f"gaussian{task['sigma']}")["psnr_last"]
        if task["bm3d"]
        else float("nan")
    )
    row["seconds"] = round(seconds, 1)
    row["device"] = device_name(task["device"])
    row["threads"] = torch.get_num_threads()
    row["torch"] = torch.__version__
    row["date"] = _dt.date.today().isoformat()
    if task.get("signals"):
        path = Path(task["signals"]) / ("_".join(str(task[k]) for k in KEY) + ".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            path,
            psnr_ema=fit.trajectory["psnr_ema"],
            loss=fit.trajectory["loss"],
            psnr_last=fit.psnr_last,
            **fit.stop_signals,
        )
    return row


def _write(rows: list[dict], out: Path) -> None:
    from dipkit.io import atomic_path

    with atomic_path(out) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False, float_format="%.4f", lineterminator="\n")


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    rows = pd.read_csv(out).to_dict("records") if out.exists() else []
    done = {tuple(str(r[k]) for k in KEY) for r in rows}
    tasks = []
    for method in args.methods:
        for size in args.sizes:
            for sigma in args.sigmas:
                for image in args.images[: args.max_images or None]:
                    task = {
                        "method": method,
                        "size": size,
                        "sigma": sigma,
                        "image": image,
                        "iterations": args.iterations,
                    }
                    if tuple(str(task[k]) for k in KEY) in done:
                        continue
                    task.update(
                        seed=args.seed,
                        device=args.device,
                        threads=args.threads,
                        signals=args.signals,
                        bm3d=not args.no_bm3d,
                        cache_dir=args.cache_dir,
                    )
                    tasks.append(task)
    print(f"{len(tasks)} fits to run, {len(rows)} already in {out}", flush=True)
    if "ours" in args.methods and tasks:
        from dipkit.denoise import width_classifier

        width_classifier(args.cache_dir)  # trained (or loaded) once, before the workers need it
    if args.workers <= 1:
        results = map(fit_cell, tasks)
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        pool = ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn"))
        results = (f.result() for f in as_completed([pool.submit(fit_cell, t) for t in tasks]))
    for k, row in enumerate(results, start=1):
        rows.append(row)
        _write(rows, out)
        print(
            f"[{k}/{len(tasks)}] {row['method']} {row['image']} {row['size']}² sigma {row['sigma']}: "
            f"last {row['psnr_last']:.2f}, peak {row['psnr_peak']:.2f} at {row['peak_iteration']}, "
            + ", ".join(f"{r} {row[f'{r}_psnr']:.2f} at {row[f'{r}_iteration']}" for r in _rules())
            + f", BM3D {row['bm3d_psnr']:.2f} ({row['seconds']:.0f} s)",
            flush=True,
        )


def _rules() -> tuple[str, ...]:
    from dipkit.columns import STOP_RULES

    return STOP_RULES


def summarize(fits: pd.DataFrame, default_rule: str) -> pd.DataFrame:
    """Per method, crop size, sigma and rule: fits, mean PSNR, mean and worst gap to the oracle peak,
    mean and worst gain over the last iterate, iterations run, how often the rule fired, BM3D."""
    rows = []
    for (method, size, sigma), g in fits.groupby(["method", "size", "sigma"], sort=True):
        cap = g.iterations.to_numpy()
        bm3d = float(g.bm3d_psnr.mean())
        choices = {
            "last": (g.psnr_last, cap, np.ones(len(g), bool)),
            "oracle": (g.psnr_peak, g.peak_iteration.to_numpy(), np.zeros(len(g), bool)),
        }
        for rule in _rules():
            fired = g[f"{rule}_stop_iteration"].to_numpy() > 0
            ran = np.where(fired, g[f"{rule}_stop_iteration"].to_numpy(), cap)
            choices[rule] = (g[f"{rule}_psnr"], ran, fired)
        for name, (psnr, ran, fired) in choices.items():
            gap = g.psnr_peak - psnr
            gain = psnr - g.psnr_last
            label = name + (" (dipkit denoise)" if name == default_rule and method == "ours" else "")
            rows.append(
                {
                    "method": method,
                    "size": int(size),
                    "rule": label,
                    "fits": len(g),
                    "sigma": int(sigma),
                    "psnr": float(psnr.mean()),
                    "gap_mean": float(gap.mean()),
                    "gap_worst": float(gap.max()),
                    "gain_mean": float(gain.mean()),
                    "gain_worst": float(gain.min()),
                    "iterations_mean": float(np.mean(ran)),
                    "fired": f"{int(np.sum(fired))}/{len(g)}" if name not in ("last", "oracle") else "",
                    "bm3d": bm3d,
                }
            )
    return pd.DataFrame(rows)


def _markdown(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        cells = [
            f"{v:.2f}"
            if isinstance(v, float) and c != "iterations_mean"
            else f"{v:.0f}"
            if isinstance(v, float)
            else str(v)
            for c, v in zip(cols, r)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(args: argparse.Namespace) -> None:
    from dipkit.denoise import DEFAULT_EARLY_STOP

    fits = pd.read_csv(args.fits)
    if args.sigma:
        fits = fits[fits.sigma.isin(args.sigma)]
    table = summarize(fits, DEFAULT_EARLY_STOP)
    devices = ", ".join(sorted(set(fits.device)))
    dates = sorted(set(fits.date))
    print(
        f"Device: {devices}; fits dated {dates[0]}"
        + (f" to {dates[-1]}" if len(dates) > 1 else "")
        + f"; {len(fits)} fits, images: {' '.join(sorted(set(fits.image)))}\n"
    )
    print(_markdown(table))
    if args.out:
        from dipkit.io import atomic_path

        with atomic_path(args.out) as tmp:
            table.to_csv(tmp, index=False, float_format="%.3f", lineterminator="\n")


def _signal_sigma(path: Path) -> int:
    """The noise level in a signal file's name (``method_size_sigma_image_iterations.npz``)."""
    match = re.search(r"_\d+_(\d+)_.+_\d+$", path.stem)
    if not match:
        raise SystemExit(f"{path}: expected a name method_size_sigma_image_iterations.npz")
    return int(match.group(1))


def tune(args: argparse.Namespace) -> None:
    """Replay the rules on recorded signals over a grid of parameters (per noise level with
    ``--by-sigma``)."""
    from dipkit.fit.stopping import StopParams, replay

    files = sorted(Path(args.signals).glob("*.npz"))
    if not files:
        raise SystemExit(f"no .npz signal files in {args.signals}")
    runs = [dict(np.load(f), sigma=_signal_sigma(f) if args.by_sigma else None) for f in files]
    print(f"{len(runs)} fits from {args.signals}")
    table = []
    grid = [("wmv", "patience", v, StopParams(wmv_patience=v)) for v in args.patience]
    grid += [("discrepancy", "tau", v, StopParams(discrepancy_tau=v)) for v in args.tau]
    grid += [("whiteness", "factor", v, StopParams(whiteness_factor=v)) for v in args.factor]
    groups = sorted({r["sigma"] for r in runs}) if args.by_sigma else [None]
    for rule, name, value, params in grid:
        for sigma in groups:
            gaps, gains, its, fired = [], [], [], 0
            chosen = [r for r in runs if r["sigma"] == sigma]
            for r in chosen:
                n = len(r["psnr_ema"])
                stop, kept = replay(r, params)[rule]
                psnr = r["psnr_ema"][kept - 1] if stop else float(r["psnr_last"])
                gaps.append(np.nanmax(r["psnr_ema"]) - psnr)
                gains.append(psnr - float(r["psnr_last"]))
                its.append(stop if stop else n)
                fired += bool(stop)
            table.append(
                {"rule": rule, "parameter": f"{name} {value}"}
                | ({"sigma": sigma} if args.by_sigma else {})
                | {
                    "fits": len(chosen),
                    "gap_mean": float(np.mean(gaps)),
                    "gap_worst": float(np.max(gaps)),
                    "gain_mean": float(np.mean(gains)),
                    "gain_worst": float(np.min(gains)),
                    "iterations_mean": float(np.mean(its)),
                    "fired": f"{fired}/{len(chosen)}",
                }
            )
    table = pd.DataFrame(table)
    print(_markdown(table))
    if args.out:
        from dipkit.io import atomic_path

        with atomic_path(args.out) as tmp:
            table.to_csv(tmp, index=False, float_format="%.3f", lineterminator="\n")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="fit and score (resumable)")
    r.add_argument("--out", required=True, help="CSV of per-fit rows (appended; finished fits are skipped)")
    r.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    r.add_argument("--sizes", nargs="+", type=int, default=[128])
    r.add_argument("--sigmas", nargs="+", type=int, default=[15, 25, 50])
    r.add_argument("--images", nargs="+", default=list(STUDY_IMAGES))
    r.add_argument("--max-images", type=int, default=0, help="first N images only (0: all)")
    r.add_argument("--iterations", type=int, default=ITERATIONS)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--device", default="auto")
    r.add_argument("--threads", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    r.add_argument("--workers", type=int, default=1, help="fits at once, each in its own process")
    r.add_argument("--signals", default=None, help="folder for each fit's per-iteration signals (.npz)")
    r.add_argument("--cache-dir", default=None, help="width-classifier cache (default: dipkit's)")
    r.add_argument("--no-bm3d", action="store_true")
    r.set_defaults(func=run)
    s = sub.add_parser("summary", help="per method x rule table")
    s.add_argument("fits")
    s.add_argument("--out", default=None, help="also write the table as CSV")
    s.add_argument("--sigma", type=int, nargs="*", default=None, help="only these sigmas")
    s.set_defaults(func=summary)
    t = sub.add_parser("tune", help="replay the rules on recorded signals with other parameters")
    t.add_argument("signals")
    t.add_argument("--patience", type=int, nargs="+", default=[200, 300, 500, 700, 1000])
    t.add_argument("--tau", type=float, nargs="+", default=[0.6, 0.7, 0.8, 0.9, 1.0])
    t.add_argument("--factor", type=float, nargs="+", default=[1.2, 1.3, 1.4, 1.5, 1.6, 1.8])
    t.add_argument("--by-sigma", action="store_true", help="one row per noise level (from the file names)")
    t.add_argument("--out", default=None, help="also write the table as CSV")
    t.set_defaults(func=tune)
    args = p.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
