"""Aggregation of per-job Parquet files into result tables (CSV + Markdown)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dipkit.io import write_parquet, write_text


def concat_parquet(paths: Sequence[str], out_path: str | None = None) -> pa.Table:
    """Concatenate Parquet files with one schema (in the given order); optionally write the result."""
    if not paths:
        raise ValueError("no Parquet files to concatenate")
    table = pa.concat_tables([pq.read_table(p) for p in paths])
    if out_path is not None:
        write_parquet(out_path, table)
    return table


def _fmt(value, digits: int) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def to_markdown(df: pd.DataFrame, digits: dict[str, int] | None = None) -> str:
    """Render a DataFrame as a GitHub Markdown table; ``digits`` sets decimals per column."""
    digits = digits or {}
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |"]
    lines.append("|" + "|".join("---:" if pd.api.types.is_numeric_dtype(df[c]) else "---" for c in cols) + "|")
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v, digits.get(c, 2)) for c, v in zip(cols, row)) + " |")
    return "\n".join(lines) + "\n"


def write_table(df: pd.DataFrame, csv_path: str, md_path: str, title: str, notes: str = "", digits=None) -> None:
    """Write ``df`` as CSV and as a Markdown file with a title and notes."""
    write_text(csv_path, df.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    body = f"# {title}\n\n" + to_markdown(df, digits) + (f"\n{notes.strip()}\n" if notes else "")
    write_text(md_path, body)


def noisy_baseline(rows: pd.DataFrame, dataset_order: Sequence[str] = ()) -> pd.DataFrame:
    """Dataset x noise summary of noisy-image metrics: image count, mean/std PSNR, mean SSIM."""
    df = rows.copy()
    order = list(dict.fromkeys([*dataset_order, *df["dataset"]]))
    df["_d"] = df["dataset"].map(order.index)
    kind_order = {"gaussian": 0, "poisson": 1, "real": 2}
    df["_k"] = df["noise_kind"].map(kind_order)
    out = (
        df.groupby(["_d", "_k", "noise_level", "dataset", "noise"], dropna=False, sort=True)
        .agg(
            images=("image", "count"),
            psnr_mean=("psnr", "mean"),
            psnr_std=("psnr", "std"),
            ssim_mean=("ssim", "mean"),
            ssim_paper_mean=("ssim_paper", "mean"),
        )
        .reset_index()
        .drop(columns=["_d", "_k", "noise_level"])
    )
    out["psnr_std"] = out["psnr_std"].fillna(0.0)
    return out


NOISY_BASELINE_NOTES = """
Noisy images scored against their clean references before any denoising. PSNR in dB with
data_range 1; SSIM with data_range 1 (scikit-image defaults: 7x7 uniform window, mean over
channels); `ssim_paper_mean` uses data_range 2, the convention of the paper's code. Noise
ids: `gaussian<sigma>` (sigma on the 0-255 scale), `poisson<zeta>`, `real` (PolyU camera
noise). Rows: `results/noisy_baseline.parquet`.
"""


def write_noisy_baseline(paths: Sequence[str], parquet_out: str, csv_out: str, md_out: str, dataset_order=()) -> pd.DataFrame:
    """The *noisy_baseline_table* stage: concatenate rows, write the Parquet and the table."""
    rows = concat_parquet(paths, parquet_out).to_pandas()
    summary = noisy_baseline(rows, dataset_order)
    write_table(
        summary,
        csv_out,
        md_out,
        "Noisy baseline",
        NOISY_BASELINE_NOTES,
        digits={"psnr_mean": 2, "psnr_std": 2, "ssim_mean": 4, "ssim_paper_mean": 4},
    )
    return summary


PAPER_RESULTS = Path(__file__).parent / "data" / "paper_results.csv"


def paper_results(table: str | None = None) -> pd.DataFrame:
    """Published numbers (``dipkit/data/paper_results.csv``), optionally of one table."""
    df = pd.read_csv(PAPER_RESULTS, comment="#")
    return df if table is None else df[df.table == table].drop(columns="table")


def _params_range(values: pd.Series) -> str:
    lo, hi = int(values.min()), int(values.max())
    return f"{lo:,}" if lo == hi else f"{lo:,}-{hi:,}"


def table2(fits: pd.DataFrame, dataset_order: Sequence[str] = (), method_order: Sequence[str] = ()) -> pd.DataFrame:
    """Table 2: dataset x sigma x method, mean last-iteration PSNR/SSIM beside the paper's.

    ``ssim`` uses data_range 1, ``ssim_paper`` the paper code's data_range 2; ``d_psnr`` and
    ``d_ssim`` are ours minus the paper's (``d_ssim`` on the paper's convention).
    """
    g = fits[fits.noise_kind == "gaussian"].copy()
    if g.empty:
        raise ValueError("no Gaussian-noise fits: Table 2 needs datasets with `gaussian` levels and methods")
    datasets = list(dict.fromkeys([*dataset_order, *g.dataset]))
    methods = list(dict.fromkeys([*method_order, *g.method]))
    out = (
        g.groupby(["dataset", "noise", "noise_level", "method"], sort=False)
        .agg(
            images=("image", "count"),
            psnr=("psnr_last", "mean"),
            ssim=("ssim_last", "mean"),
            ssim_paper=("ssim_paper_last", "mean"),
            psnr_peak=("psnr_peak", "mean"),
            params=("params", _params_range),
            seconds=("wall_time_s", "mean"),
        )
        .reset_index()
    )
    paper = paper_results("table2").rename(columns={"psnr": "paper_psnr", "ssim": "paper_ssim"})
    out = out.merge(paper, on=["dataset", "noise", "method"], how="left")
    out["d_psnr"] = out.psnr - out.paper_psnr
    out["d_ssim"] = out.ssim_paper - out.paper_ssim
    out["sigma"] = out.noise_level.astype(int)
    out = out.sort_values(
        ["noise_level", "dataset", "method"],
        key=lambda c: c.map(datasets.index) if c.name == "dataset" else c.map(methods.index) if c.name == "method" else c,
    )
    cols = ["dataset", "sigma", "method", "images", "psnr", "ssim", "ssim_paper", "psnr_peak", "params",
            "seconds", "paper_psnr", "paper_ssim", "d_psnr", "d_ssim"]
    return out[cols].reset_index(drop=True)


TABLE2_NOTES = """
Gaussian denoising, last iteration of every fit (no early stopping), mean over the images.
`psnr` in dB (data_range 1); `ssim` with data_range 1 and `ssim_paper` with data_range 2, the
convention of the paper's code, which `paper_ssim` and `d_ssim` use; `psnr_peak` is the mean
of each fit's best PSNR along the way; `params` the range of trainable parameters (per-image
widths for `ours`); `seconds` the mean wall time of a fit on this run's device. `paper_*`:
Liu et al., ICCV 2023, Table 2; `d_*` = ours - paper. Rows: `results/fits.parquet`.
"""


def write_table2(fits_path: str, csv_out: str, md_out: str, dataset_order=(), method_order=()) -> pd.DataFrame:
    """The *table2* stage."""
    df = table2(pd.read_parquet(fits_path), dataset_order, method_order)
    digits = {"psnr": 2, "ssim": 4, "ssim_paper": 4, "psnr_peak": 2, "seconds": 1, "paper_psnr": 2,
              "paper_ssim": 3, "d_psnr": 2, "d_ssim": 3}
    write_table(df, csv_out, md_out, "Table 2: Gaussian denoising", TABLE2_NOTES, digits)
    return df
