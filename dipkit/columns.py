"""The columns of the Parquet results, in one place, and the builder of a fit's row.

Each schema is a list of :class:`Column` (name, Arrow type, description). Writers build
their tables through :func:`make_table`, which enforces the exact columns and types, so
the documentation here (and the schema tables of the docs, generated from it by
:func:`columns_markdown`) is what the files hold. (The config's schema is another thing:
``schemas/config.schema.yaml``.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dipkit
from dipkit.noise import NoiseSpec


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # pyarrow type factory name: string, int64, float64, bool
    description: str


def columns_markdown(columns: list[Column]) -> str:
    """The schema as a Markdown table (column | type | meaning), as in the README."""
    lines = ["| column | type | meaning |", "|---|---|---|"]
    lines += [f"| `{c.name}` | {c.type} | {c.description} |" for c in columns]
    return "\n".join(lines) + "\n"


#: ``results/metrics/noisy/<dataset>/<noise>.parquet`` and ``results/noisy_baseline.parquet``:
#: one row per (dataset, image, noise setting), the noisy image scored against its clean one.
NOISY_METRICS = [
    Column("dataset", "string", "dataset name (Set9, Set12, CBSD68, PolyU or a user dataset)"),
    Column("image", "string", "image id"),
    Column("noise", "string", "noise id: gaussian<sigma>, poisson<zeta> or real"),
    Column("noise_kind", "string", "gaussian, poisson or real"),
    Column("noise_level", "float64", "sigma on the 0-255 scale, or zeta; null for real noise"),
    Column("seed", "int64", "seed of the noise draw; null for real noise"),
    Column("height", "int64", "image height after cropping, pixels"),
    Column("width", "int64", "image width after cropping, pixels"),
    Column("channels", "int64", "1 (grayscale) or 3 (RGB)"),
    Column("psnr", "float64", "PSNR of the noisy image vs the clean one, dB, data_range 1"),
    Column("ssim", "float64", "SSIM, data_range 1 (scikit-image defaults, mean over channels)"),
    Column("ssim_paper", "float64", "SSIM with the paper code's convention, data_range 2"),
    Column("dipkit_version", "string", "dipkit version that wrote the row"),
]


def arrow_schema(columns: list[Column]):
    """The :class:`pyarrow.Schema` of a column list."""
    import pyarrow as pa

    return pa.schema([pa.field(c.name, getattr(pa, c.type)()) for c in columns])


def make_table(rows: list[dict], columns: list[Column]):
    """Build a :class:`pyarrow.Table` with exactly ``columns``, in order.

    :raises ValueError: when a row lacks a column or has one the schema does not know.
    """
    import pyarrow as pa

    names = [c.name for c in columns]
    for i, row in enumerate(rows):
        if set(row) != set(names):
            missing, extra = set(names) - set(row), set(row) - set(names)
            raise ValueError(f"row {i}: missing columns {sorted(missing)}, unknown columns {sorted(extra)}")
    return pa.Table.from_pylist(rows, schema=arrow_schema(columns))


#: The no-reference early-stopping rules (:mod:`dipkit.fit.stopping`); each adds the
#: ``<rule>_*`` columns of :data:`FIT_ROWS`.
STOP_RULES = ("wmv", "discrepancy", "whiteness")


def _stop_columns() -> list[Column]:
    cols = [
        Column(
            "early_stop",
            "string",
            "config fit.early_stop: the rule whose output is the fit's PNG, or off (the final output)",
        ),
        Column(
            "stop_sigma",
            "float64",
            "noise sigma (0-255) the discrepancy rule used: the Gaussian noise "
            "level, else Donoho's estimate from the noisy image",
        ),
    ]
    for rule in STOP_RULES:
        cols += [
            Column(
                f"{rule}_stop_iteration",
                "int64",
                f"iteration at which the {rule} rule fired (the fit would end there); null: it never did",
            ),
            Column(
                f"{rule}_iteration",
                "int64",
                f"iteration of the output the {rule} rule returns (the last one if it never fired)",
            ),
            Column(f"{rule}_psnr", "float64", f"PSNR of the {rule} rule's output vs clean, dB"),
            Column(f"{rule}_ssim", "float64", f"SSIM of the {rule} rule's output vs clean, data_range 1"),
        ]
    return cols


#: ``results/fits/<dataset>/<noise>/<method>/<image>.parquet`` and ``results/fits.parquet``:
#: one row per fit (dataset, image, noise setting, method).
FIT_ROWS = [
    Column("dataset", "string", "dataset name"),
    Column("image", "string", "image id"),
    Column("noise", "string", "noise id: gaussian<sigma>, poisson<zeta> or real"),
    Column("noise_kind", "string", "gaussian, poisson or real"),
    Column("noise_level", "float64", "sigma on the 0-255 scale, or zeta; null for real noise"),
    Column("method", "string", "method name (dipkit.methods registry)"),
    Column("architecture", "string", "architecture name (dipkit.models registry)"),
    Column("arch_options", "string", "JSON of the options the network was built with"),
    Column(
        "width", "int64", "network width (channels per layer; per image for width_source labels/predicted)"
    ),
    Column(
        "width_source",
        "string",
        "labels:NoRepeat, labels:wRepeat, fallback (no label), predicted, fixed or preset",
    ),
    Column("params", "int64", "trainable parameters of the network"),
    Column("height", "int64", "image height, pixels"),
    Column("width_px", "int64", "image width, pixels"),
    Column("channels", "int64", "1 (grayscale) or 3 (RGB)"),
    Column("iterations", "int64", "Adam steps"),
    Column("lr", "float64", "Adam learning rate"),
    Column("exp_weight", "float64", "EMA weight of the output (0: none)"),
    Column("reg_noise_std", "float64", "std of the per-iteration input perturbation"),
    Column("input_scale", "float64", "input code z ~ U[0,1) * input_scale"),
    Column("seed", "int64", "base seed of the fit (init, input code and perturbation derive from it)"),
    Column("psnr_input", "float64", "PSNR of the noisy image vs clean, dB"),
    Column("psnr_last", "float64", "PSNR of the final (last-iteration, EMA-smoothed) output, dB"),
    Column("ssim_last", "float64", "SSIM of the final output, data_range 1"),
    Column("ssim_paper_last", "float64", "SSIM of the final output, data_range 2 (paper's convention)"),
    Column("psnr_peak", "float64", "best PSNR of the EMA output over the iterations, dB"),
    Column("psnr_peak_iteration", "int64", "iteration (1-based) of psnr_peak"),
    Column("psnr_peak_raw", "float64", "best PSNR of the raw (unsmoothed) output, dB"),
    *_stop_columns(),
    Column(
        "wall_time_s",
        "float64",
        "seconds of the fit loop including the final output (ISNAS-DIP: search + all top-k fits; "
        "batched: the batch's / batch_size)",
    ),
    Column("search_s", "float64", "seconds of an architecture search (ISNAS-DIP), 0 for other methods"),
    Column("seconds_per_iteration", "float64", "wall_time_s / iterations"),
    Column("device", "string", "device the fit ran on, e.g. cpu or cuda:0 (NVIDIA H100 ...)"),
    Column("dtype", "string", "float32 or float64"),
    Column("threads", "int64", "torch CPU threads"),
    Column("batch_size", "int64", "fits run at once in one process (config fit.batch); 1: on its own"),
    Column(
        "peak_memory_bytes",
        "int64",
        "peak GPU memory allocated, or the process's peak RSS on CPU (batched: the batch's)",
    ),
    Column("peak_memory_kind", "string", "what peak_memory_bytes measures"),
    Column("backtracks", "int64", "backtracking restores (0 unless backtracking is on)"),
    Column("torch_version", "string", "torch version"),
    Column("dipkit_version", "string", "dipkit version"),
    Column("fit_version", "int64", "algorithm version of the fit stage (dipkit/_versions.py)"),
]


def fit_row(
    dataset: str,
    image: str,
    noise_id: str,
    spec: Mapping[str, Any],
    seed: int,
    outcome: Mapping[str, Any],
    shape: tuple[int, int, int],
    *,
    fit_version: int,
    threads: int,
    torch_version: str,
    batch_size: int = 1,
) -> dict:
    """One row of :data:`FIT_ROWS`.

    :param spec: the fit spec (:func:`dipkit.methods.fit_spec`), its width filled in.
    :param seed: the fit's base seed (:func:`dipkit.runner.fit_seed`).
    :param outcome: the columns a fit measures, ``params`` to ``backtracks`` less
        ``seconds_per_iteration`` (derived here), as :mod:`dipkit.fit_jobs` measures them.
    :param shape: ``[H, W, C]`` of the fitted image.
    :param threads: torch CPU threads of the fit's process; ``torch_version``: ``torch.__version__``.
    :param batch_size: fits run at once in the fit's process (config ``fit.batch``).
    """
    noise = NoiseSpec.parse(noise_id)
    return {
        "dataset": dataset,
        "image": image,
        "noise": noise_id,
        "noise_kind": noise.kind,
        "noise_level": noise.level,
        "method": spec["method"],
        "architecture": spec["architecture"],
        "arch_options": json.dumps(spec["arch_options"], sort_keys=True),
        "width": spec["width"],
        "width_source": spec["width_source"],
        "height": shape[0],
        "width_px": shape[1],
        "channels": shape[2],
        "iterations": spec["iterations"],
        "lr": spec["lr"],
        "exp_weight": spec["exp_weight"],
        "reg_noise_std": spec["reg_noise_std"],
        "input_scale": spec["input_scale"],
        "seed": seed,
        "early_stop": spec.get("early_stop", "off"),
        **outcome,
        "seconds_per_iteration": outcome["wall_time_s"] / spec["iterations"],
        "dtype": spec["dtype"],
        "threads": int(threads),
        "batch_size": int(batch_size),
        "torch_version": torch_version,
        "dipkit_version": dipkit.__version__,
        "fit_version": int(fit_version),
    }


def stop_columns(result=None) -> dict:
    """The early-stopping columns of :data:`FIT_ROWS` (``stop_sigma`` and each rule's
    ``<rule>_*``) of a :class:`~dipkit.fit.FitResult` (its ``stop_sigma`` and ``stops``), or
    all null (``result=None``: a classical method)."""
    row = {"stop_sigma": None if result is None else float(result.stop_sigma)}
    for rule in STOP_RULES:
        rec = None if result is None else result.stops[rule]
        row[f"{rule}_stop_iteration"] = None if rec is None else rec.stop_iteration
        row[f"{rule}_iteration"] = None if rec is None else rec.iteration
        row[f"{rule}_psnr"] = None if rec is None else float(rec.psnr)
        row[f"{rule}_ssim"] = None if rec is None else float(rec.ssim)
    return row


#: Columns added to :data:`FIT_ROWS` after its first release, with the value every row
#: written before holds: no fit ran in a batch before ``batch_size`` existed; no fit
#: returned a rule's output before ``early_stop``, and none recorded the rules (null).
FIT_ROWS_ADDED = {
    "batch_size": 1,
    "early_stop": "off",
    **{c.name: None for c in _stop_columns() if c.name != "early_stop"},
}


def upgrade_fit_rows(table):
    """A fit-rows table (:data:`FIT_ROWS`) written before :data:`FIT_ROWS_ADDED`'s columns
    existed, with them filled in at their place; any other table is returned unchanged."""
    import pyarrow as pa

    names = table.schema.names
    fit_names = [c.name for c in FIT_ROWS]
    missing = sorted((n for n in FIT_ROWS_ADDED if n not in names), key=fit_names.index)  # insert in order
    if not missing or names != [n for n in fit_names if n not in missing]:
        return table
    for name in missing:
        col = next(c for c in FIT_ROWS if c.name == name)
        array = pa.array([FIT_ROWS_ADDED[name]] * table.num_rows, getattr(pa, col.type)())
        table = table.add_column(fit_names.index(name), name, array)
    return table


#: ``results/fits/.../<image>.trajectory.parquet`` and ``results/trajectories.parquet``:
#: one row per fit and iteration.
TRAJECTORY = [
    Column("dataset", "string", "dataset name"),
    Column("image", "string", "image id"),
    Column("noise", "string", "noise id"),
    Column("method", "string", "method name"),
    Column("iteration", "int64", "1-based iteration"),
    Column("loss", "float64", "MSE of the raw output vs the noisy image"),
    Column("psnr_raw", "float64", "PSNR of the raw output vs clean, dB"),
    Column("psnr_ema", "float64", "PSNR of the EMA output vs clean, dB"),
    Column("psnr_noisy", "float64", "PSNR of the raw output vs the noisy image, dB"),
    Column(
        "ssim_ema",
        "float64",
        "SSIM of the EMA output vs clean (data_range 1) every ssim_every iterations, else null",
    ),
]

#: ``results/job_costs.parquet``: one row per job with a benchmark record under
#: ``results/benchmarks/`` (:mod:`dipkit.job_costs`); memory, CPU and I/O are null for a job
#: that ended before Snakemake's first sample.
JOB_COSTS = [
    Column("rule", "string", "rule name"),
    Column("job", "string", "the job's wildcards as its benchmark path under results/benchmarks/<rule>/"),
    Column("wall_s", "float64", "wall time of the whole job, seconds"),
    Column("max_rss_mb", "float64", "peak resident memory of the job's processes, MB (sampled)"),
    Column("cpu_s", "float64", "CPU time (user + system) of the job's processes, seconds"),
    Column("io_in_mb", "float64", "bytes read, MB"),
    Column("io_out_mb", "float64", "bytes written, MB"),
]

#: ``results/tables/job_costs.{csv,md}`` (in the report): one row per rule, then ``total``.
JOB_COST_TABLE = [
    Column("rule", "string", "rule name, or total (all rules)"),
    Column("jobs", "int64", "jobs with a benchmark record"),
    Column("wall_s_total", "float64", "wall time of all its jobs, seconds"),
    Column("wall_s_mean", "float64", "mean wall time of one job, seconds"),
    Column("wall_s_max", "float64", "longest job, seconds"),
    Column("max_rss_mb", "float64", "largest peak resident memory of one job, MB (sampled)"),
    Column("cpu_s_total", "float64", "CPU time of all its jobs, seconds"),
]
