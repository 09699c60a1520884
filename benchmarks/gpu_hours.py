"""GPU-hours of a config, projected from measured per-method fit rates.

Plans the fits of a config as the pipeline does (``dipkit.config``: datasets, methods, their
per-image widths and sizes, the Section-3 experiments, the relabelling fits; torch-free) and
prices each with a measured rate: seconds per iteration per fit on one GPU for the network and
image size (``docs/fit-rates-h200.csv``: per-fit rows, batched rows, eager or CUDA-graph
steps). Prints per method and in total, naming the rates' device and dates.

    python benchmarks/gpu_hours.py                                  # the default config.yaml
    python benchmarks/gpu_hours.py --configfile configs/paper_table2_ours.yaml
    python benchmarks/gpu_hours.py --datasets Set9 Set12 CBSD68 --noise-kind gaussian --no-experiments

Pricing: a network's rate comes from its row (``ours`` at width 64 -> ``ours64``); networks
without their own row take the nearest one (marked ``~``: the NAS-DIP and Swin U-Net of the
experiments, other hourglass depths and widths, the experiments' ConvDecoder variants). Rates
are interpolated linearly in pixels between 256² and 512², extrapolated beyond 512² along the
same line, and held at the 256² value below it (small networks are launch-bound there). With
``fit.batch`` K > 1, a batchable method uses the fastest measured batched row of at most K for
its network and the nearest size, when there is one; ``--steps graph`` prefers CUDA-graph rows.
ISNAS-DIP is priced as its ``top_k`` candidate fits plus a search of ``n_samples`` forward
passes at a third of a NAS-DIP training step each (``~``). Classical methods (BM3D) use no GPU.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RATES = REPO / "docs/fit-rates-h200.csv"
SIZES = (256, 512)


def load_rates(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        rows = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    for r in rows:
        r["size"], r["batch"], r["s_per_it"] = int(r["size"]), int(r["batch"]), float(r["s_per_it"])
    return rows


def rate_key(architecture: str, options: dict) -> tuple[str, bool]:
    """The rate row's network for an architecture and its options; True when it is approximate."""
    width = options.get("width")
    if architecture == "hourglass":
        near = min((32, 64, 128), key=lambda w: abs(w - (width or 64)))
        exact = options.get("levels", 2) == 2 and not options.get("num_skips") and width == near
        return f"ours{near}", not exact
    exact = {
        "dip": "dip",
        "deep_decoder": "deep_decoder",
        "conv_decoder": "conv_decoder",
        "nas_dip": "nas_dip",
        "conv_decoder_after": "conv_decoder_ours64",
    }
    if architecture in exact:
        approx = architecture == "conv_decoder_after" and width not in (None, 64)
        return exact[architecture], approx or bool(options.get("genotype"))
    if architecture.startswith("conv_decoder"):
        return "conv_decoder", True
    return "dip", True  # e.g. swin_unet: priced like DIP


def seconds_per_iteration(rates: list[dict], net: str, pixels: int, batch: int, steps: str) -> float:
    """Interpolated seconds per iteration per fit (see the module docstring)."""

    def at(size: int) -> float | None:
        rows = [r for r in rates if r["method"] == net and r["size"] == size and r["batch"] <= batch]
        if steps == "graph" and any(r["steps"] == "graph" for r in rows):
            rows = [r for r in rows if r["steps"] == "graph"]
        else:
            rows = [r for r in rows if r["steps"] == "eager"]
        return min((r["s_per_it"] for r in rows), default=None)

    lo, hi = at(SIZES[0]), at(SIZES[1])
    base_lo = at_batch1(rates, net, SIZES[0], steps)
    base_hi = at_batch1(rates, net, SIZES[1], steps)
    if lo is None or hi is None:  # batched rows exist for some sizes only: scale batch-1 rows by their gain
        gain = min((x / y for x, y in ((lo, base_lo), (hi, base_hi)) if x is not None and y), default=1.0)
        lo, hi = base_lo * gain, base_hi * gain
    p_lo, p_hi = SIZES[0] ** 2, SIZES[1] ** 2
    if pixels <= p_lo:
        return lo
    return max(lo, lo + (hi - lo) * (pixels - p_lo) / (p_hi - p_lo))


def at_batch1(rates, net, size, steps):
    rows = [r for r in rates if r["method"] == net and r["size"] == size and r["batch"] == 1]
    graph = [r["s_per_it"] for r in rows if r["steps"] == "graph"]
    if steps == "graph" and graph:
        return min(graph)
    return min(r["s_per_it"] for r in rows if r["steps"] == "eager")


def planned_fits(config: dict, *, datasets=None, noise_kind=None, methods=None, experiments=True):
    """``(label, architecture, options, iterations, pixels, batchable, extra)`` per planned fit."""
    from dipkit.config import (
        batchable,
        check_fit_batch,
        fitted_size,
        plan_datasets,
        plan_experiments,
        plan_methods,
    )
    from dipkit.experiments import arm_spec, split_image
    from dipkit.methods import fit_spec
    from dipkit.noise import NoiseSpec

    crop = int(config.get("crop_multiple", 32))
    fit_cfg = config.get("fit") or {}
    check_fit_batch(fit_cfg)
    plans = plan_datasets(config)
    found = plan_methods(config)
    out = []
    for name, plan in plans.items():
        if datasets and name not in datasets:
            continue
        for noise in plan.noise_ids:
            if noise_kind and NoiseSpec.parse(noise).kind != noise_kind:
                continue
            for mname in plan.methods:
                m = found[mname]
                if (methods and mname not in methods) or (m.noise is not None and noise not in m.noise):
                    continue
                for image in plan.images:
                    spec = fit_spec(m, name, image, noise, fit_cfg)
                    w, h = fitted_size(name, image, crop) if plan.builtin else (512, 512)
                    out.append((mname, spec, w * h, batchable(spec)))
    if experiments and not datasets and not noise_kind and not methods:
        for ename, cfg in plan_experiments(config, plans).items():
            for ref in cfg["images"]:
                dataset, image = split_image(ref)
                w, h = fitted_size(dataset, image, crop) if plans[dataset].builtin else (512, 512)
                pixels = cfg["crop"] ** 2 if cfg.get("crop") else w * h
                for noise in cfg["noise"]:
                    for arm in cfg["arms"].values():
                        spec = arm_spec(arm, dataset, image, noise, cfg, fit_cfg)
                        out.append((f"experiment {ename}", spec, pixels, False))
    return out


def project(config: dict, rates: list[dict], steps: str, **filters) -> dict[str, dict]:
    batch = int((config.get("fit") or {}).get("batch", 1))
    table: dict[str, dict] = defaultdict(lambda: {"fits": 0, "iterations": 0, "seconds": 0.0, "approx": 0})
    for label, spec, pixels, can_batch in planned_fits(config, **filters):
        row = table[label]
        if spec.get("kind") == "classical":
            row["fits"] += 1
            continue
        if spec.get("width") is None and spec.get("width_source") == "predicted":
            spec = {**spec, "arch_options": {**spec["arch_options"], "width": 64}}  # unknown before the run
            row["approx"] += 1
        net, approx = rate_key(spec["architecture"], spec["arch_options"])
        s_it = seconds_per_iteration(rates, net, pixels, batch if can_batch else 1, steps)
        seconds = s_it * spec["iterations"]
        if spec.get("kind") == "isnas":
            search = spec.get("search") or {}
            seconds = seconds * int(search.get("top_k", 15)) + int(search.get("n_samples", 5000)) * s_it / 3
            approx = True
        row["fits"] += 1
        row["iterations"] += spec["iterations"]
        row["seconds"] += seconds
        row["approx"] += int(approx)
    return dict(table)


def main(argv=None) -> None:
    import yaml

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configfile", default=str(REPO / "config.yaml"))
    p.add_argument("--rates", default=str(RATES))
    p.add_argument(
        "--steps",
        choices=["eager", "graph"],
        default="graph",
        help="prefer CUDA-graph rows where measured (eager rows otherwise)",
    )
    p.add_argument("--datasets", nargs="+", default=None, help="only fits of these datasets")
    p.add_argument("--noise-kind", choices=["gaussian", "poisson", "real"], default=None)
    p.add_argument("--methods", nargs="+", default=None, help="only these methods")
    p.add_argument("--no-experiments", action="store_true", help="leave out the Section-3 experiments")
    args = p.parse_args(argv)
    config = yaml.safe_load(Path(args.configfile).read_text())
    rates = load_rates(Path(args.rates))
    table = project(
        config,
        rates,
        args.steps,
        datasets=args.datasets,
        noise_kind=args.noise_kind,
        methods=args.methods,
        experiments=not args.no_experiments,
    )
    used = sorted({(r["date"], r["steps"]) for r in rates if args.steps == "graph" or r["steps"] == "eager"})
    print(
        f"Config: {args.configfile}; fit.batch {int((config.get('fit') or {}).get('batch', 1))}; rates: "
        f"{Path(args.rates).name} (one NVIDIA H200; {', '.join(f'{d} {s}' for d, s in used)})\n"
    )
    print("| method | fits | iterations | GPU-hours | of which priced by a nearby network |")
    print("|---|---:|---:|---:|---:|")
    total = {"fits": 0, "seconds": 0.0}
    for label, row in sorted(table.items(), key=lambda kv: -kv[1]["seconds"]):
        total["fits"] += row["fits"]
        total["seconds"] += row["seconds"]
        print(
            f"| {label} | {row['fits']:,} | {row['iterations']:,} | {row['seconds'] / 3600:.2f} "
            f"| {'~' + str(row['approx']) if row['approx'] else ''} |"
        )
    print(f"| **total** | **{total['fits']:,}** | | **{total['seconds'] / 3600:.2f}** | |")


if __name__ == "__main__":
    main()
