"""Aggregation of per-job Parquet files into result tables (CSV + Markdown)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dipkit.io import write_parquet, write_text


def concat_parquet(paths: Sequence[str], out_path: str | None = None) -> pd.DataFrame:
    """Concatenate Parquet files with one schema (in the given order); optionally write the result."""
    if not paths:
        raise ValueError("no Parquet files to concatenate")
    table = pa.concat_tables([pq.read_table(p) for p in paths])
    if out_path is not None:
        write_parquet(out_path, table)
    return table.to_pandas()


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
    rows = concat_parquet(paths, parquet_out)
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
