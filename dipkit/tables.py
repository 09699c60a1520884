"""Aggregation of per-job Parquet files into result tables (CSV + Markdown)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dipkit.columns import upgrade_fit_rows
from dipkit.io import write_parquet, write_text


def concat_parquet(paths: Sequence[str], out_path: str | None = None) -> pa.Table:
    """Concatenate Parquet files with one schema (in the given order); optionally write the result.

    Fit rows written before a column was added are brought up to date first
    (:func:`dipkit.columns.upgrade_fit_rows`)."""
    if not paths:
        raise ValueError("no Parquet files to concatenate")
    table = pa.concat_tables([upgrade_fit_rows(pq.read_table(p)) for p in paths])
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
    lines.append(
        "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(df[c]) else "---" for c in cols) + "|"
    )
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v, digits.get(c, 2)) for c, v in zip(cols, row)) + " |")
    return "\n".join(lines) + "\n"


def write_table(
    df: pd.DataFrame, csv_path: str, md_path: str, title: str, notes: str = "", digits=None
) -> None:
    """Write ``df`` as CSV and as a Markdown file with a title and notes."""
    write_text(csv_path, df.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    body = f"# {title}\n\n" + to_markdown(df, digits) + (f"\n{notes.strip()}\n" if notes else "")
    write_text(md_path, body)


PAPER_RESULTS = Path(__file__).parent / "data" / "paper_results.csv"


def paper_results(table: str | None = None) -> pd.DataFrame:
    """Published numbers (``dipkit/data/paper_results.csv``), optionally of one table."""
    df = pd.read_csv(PAPER_RESULTS, comment="#")
    return df if table is None else df[df.table == table].drop(columns="table")


def _params_range(values: pd.Series) -> str:
    lo, hi = int(values.min()), int(values.max())
    return f"{lo:,}" if lo == hi else f"{lo:,}-{hi:,}"


def table2(
    fits: pd.DataFrame, dataset_order: Sequence[str] = (), method_order: Sequence[str] = ()
) -> pd.DataFrame:
    """Table 2: dataset x sigma x method, mean last-iteration PSNR/SSIM beside the paper's.

    ``ssim`` uses data_range 1, ``ssim_paper`` the paper code's data_range 2; ``d_psnr`` and
    ``d_ssim`` are ours minus the paper's (``d_ssim`` on the paper's convention).
    """
    g = fits[fits.noise_kind == "gaussian"]
    if g.empty:
        raise ValueError("no Gaussian-noise fits: Table 2 needs datasets with `gaussian` levels and methods")
    keys = ["dataset", "noise", "noise_level", "method"]
    cost = g.groupby(keys, sort=False).agg(params=("params", _params_range), seconds=("wall_time_s", "mean"))
    out = _with_paper(
        _scores(g, keys).merge(cost.reset_index(), on=keys), "table2", ["dataset", "noise", "method"]
    )
    out["sigma"] = out.noise_level.astype(int)
    out = out.assign(_d=_order(out, "dataset", dataset_order), _m=_order(out, "method", method_order))
    out = out.sort_values(["noise_level", "_d", "_m"])
    cols = [
        "dataset",
        "sigma",
        "method",
        "images",
        "psnr",
        "ssim",
        "ssim_paper",
        "psnr_peak",
        "params",
        "seconds",
        "paper_psnr",
        "paper_ssim",
        "d_psnr",
        "d_ssim",
    ]
    return out[cols].reset_index(drop=True)


#: Which output each score column of Tables 2, 4 and 5 scores.
SCORE_NOTES = (
    "`psnr`, `ssim`, `ssim_paper` score each fit's final output, as the paper's code does: after the "
    "last step, 0.99 x the moving average of the outputs + 0.01 x one more pass net(z) without input "
    "perturbation (no early stopping). `psnr_peak` (an oracle: it needs the clean image) is the best "
    "PSNR of the moving average at any iteration along the way, a different image from the final "
    "output, so it can be below `psnr` when a fit still improves at its end."
)

TABLE2_NOTES = f"""
Gaussian denoising, mean over the images. {SCORE_NOTES}
`psnr` in dB (data_range 1); `ssim` with data_range 1 and `ssim_paper` with data_range 2, the
convention of the paper's code, which `paper_ssim` and `d_ssim` use; `params` the range of
trainable parameters (per-image widths for `ours`); `seconds` the mean wall time of a fit on
this run's device. `paper_*`: Liu et al., ICCV 2023, Table 2; `d_*` = ours - paper. Rows:
`results/fits.parquet`.
"""


def write_table2(
    fits_path: str, csv_out: str, md_out: str, dataset_order=(), method_order=()
) -> pd.DataFrame:
    """The *table2* stage."""
    df = table2(pd.read_parquet(fits_path), dataset_order, method_order)
    digits = {
        "psnr": 2,
        "ssim": 4,
        "ssim_paper": 4,
        "psnr_peak": 2,
        "seconds": 1,
        "paper_psnr": 2,
        "paper_ssim": 3,
        "d_psnr": 2,
        "d_ssim": 3,
    }
    write_table(df, csv_out, md_out, "Table 2: Gaussian denoising", TABLE2_NOTES, digits)
    return df


def _scores(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean last-iteration scores per group (the shared core of Tables 2, 4 and 5)."""
    return (
        df.groupby(keys, sort=False)
        .agg(
            images=("image", "count"),
            psnr=("psnr_last", "mean"),
            ssim=("ssim_last", "mean"),
            ssim_paper=("ssim_paper_last", "mean"),
            psnr_peak=("psnr_peak", "mean"),
        )
        .reset_index()
    )


def _with_paper(out: pd.DataFrame, table: str, on: list[str]) -> pd.DataFrame:
    paper = paper_results(table).rename(columns={"psnr": "paper_psnr", "ssim": "paper_ssim"})
    out = out.merge(paper, on=on, how="left")
    out["d_psnr"] = out.psnr - out.paper_psnr
    out["d_ssim"] = out.ssim_paper - out.paper_ssim
    return out


def _order(df: pd.DataFrame, column: str, order: Sequence[str]) -> pd.Series:
    known = list(dict.fromkeys([*order, *df[column]]))
    return df[column].map(known.index)


def table4(fits: pd.DataFrame, dataset_order=(), method_order=()) -> pd.DataFrame:
    """Table 4: Poisson noise (the paper: Set9, zeta 0.01 / 0.1 / 0.2), every method."""
    g = fits[fits.noise_kind == "poisson"]
    if g.empty:
        raise ValueError("no Poisson-noise fits: Table 4 needs a dataset with `poisson` levels")
    out = _with_paper(
        _scores(g, ["dataset", "noise", "noise_level", "method"]), "table4", ["dataset", "noise", "method"]
    )
    out = out.assign(_d=_order(out, "dataset", dataset_order), _m=_order(out, "method", method_order))
    out = out.sort_values(["_d", "noise_level", "_m"]).rename(columns={"noise_level": "zeta"})
    cols = [
        "dataset",
        "zeta",
        "method",
        "images",
        "psnr",
        "ssim",
        "ssim_paper",
        "psnr_peak",
        "paper_psnr",
        "paper_ssim",
        "d_psnr",
        "d_ssim",
    ]
    return out[cols].reset_index(drop=True)


def table5(fits: pd.DataFrame, dataset_order=(), method_order=()) -> pd.DataFrame:
    """Table 5: real noise (PolyU), every method."""
    g = fits[fits.noise_kind == "real"]
    if g.empty:
        raise ValueError("no real-noise fits: Table 5 needs PolyU with `real: true`")
    out = _with_paper(_scores(g, ["dataset", "noise", "method"]), "table5", ["dataset", "noise", "method"])
    out = out.assign(_d=_order(out, "dataset", dataset_order), _m=_order(out, "method", method_order))
    cols = [
        "dataset",
        "method",
        "images",
        "psnr",
        "ssim",
        "ssim_paper",
        "psnr_peak",
        "paper_psnr",
        "paper_ssim",
        "d_psnr",
        "d_ssim",
    ]
    return out.sort_values(["_d", "_m"])[cols].reset_index(drop=True)


def table6(
    fits: pd.DataFrame, dataset_order=(), before="conv_decoder", after="conv_decoder_ours"
) -> pd.DataFrame:
    """Table 6: ConvDecoder before (``conv_decoder``) and after (``conv_decoder_ours``) the paper's changes."""
    g = fits[(fits.noise_kind == "gaussian") & fits.method.isin([before, after])]
    if g.empty or set(g.method) != {before, after}:
        raise ValueError(f"Table 6 needs Gaussian-noise fits of both {before} and {after}")
    rows = []
    for (dataset, noise, level), x in g.groupby(["dataset", "noise", "noise_level"], sort=False):
        b, a = x[x.method == before], x[x.method == after]
        paper = paper_results("table6")
        pb = paper[(paper.dataset == dataset) & (paper.noise == noise) & (paper.method == before)]
        pa_ = paper[(paper.dataset == dataset) & (paper.noise == noise) & (paper.method == after)]
        rows.append(
            {
                "dataset": dataset,
                "sigma": int(level),
                "images": int(min(len(b), len(a))),
                "psnr_before": b.psnr_last.mean(),
                "ssim_paper_before": b.ssim_paper_last.mean(),
                "psnr_after": a.psnr_last.mean(),
                "ssim_paper_after": a.ssim_paper_last.mean(),
                "params_before": _params_range(b.params) if len(b) else "",
                "params_after": _params_range(a.params) if len(a) else "",
                "paper_psnr_before": float(pb.psnr.iloc[0]) if len(pb) else float("nan"),
                "paper_psnr_after": float(pa_.psnr.iloc[0]) if len(pa_) else float("nan"),
                "paper_ssim_after": float(pa_.ssim.iloc[0]) if len(pa_) else float("nan"),
            }
        )
    out = pd.DataFrame(rows)
    out["gain"] = out.psnr_after - out.psnr_before
    out["paper_gain"] = out.paper_psnr_after - out.paper_psnr_before
    out = out.assign(_d=_order(out, "dataset", dataset_order)).sort_values(["sigma", "_d"]).drop(columns="_d")
    return out.reset_index(drop=True)


#: The paper's Table 3 (NAS, ISNAS, Ours), restoration times for 512x512 and 3000 iterations.
PAPER_TABLE3 = {
    "nas_dip": {
        "paper_image_specific": "no",
        "paper_search": "3 days",
        "paper_restoration": "~23 min",
        "paper_early_stopping": "yes",
    },
    "isnas_dip": {
        "paper_image_specific": "yes",
        "paper_search": "5 min",
        "paper_restoration": "~7 h",
        "paper_early_stopping": "yes",
    },
    "ours": {
        "paper_image_specific": "yes",
        "paper_search": "-",
        "paper_restoration": "~6 min",
        "paper_early_stopping": "no",
    },
}

#: A method "needs early stopping" when its mean drop from peak to last PSNR exceeds this (dB).
EARLY_STOPPING_DROP_DB = 0.5


def table3(fits: pd.DataFrame, method_order=(), study: pd.DataFrame | None = None) -> pd.DataFrame:
    """Table 3: properties of each method, measured from our own fits.

    ``restoration_s``: mean wall time of the method's fits on 512x512 images, the paper's size
    (on all its images when it has none of that size); ``restoration_size``: the image sizes
    timed (``512x512``, or e.g. ``256x256, 480x320``); ``drop_db``: mean drop from peak to last
    PSNR in this run; ``study_drop_db``: the same over the early-stopping study's fits of the
    method (``study``: ``docs/early-stopping/fits.csv``, images outside the datasets, 3000
    iterations; NaN for methods it did not fit). ``early_stopping`` is ``yes`` when the study's
    drop, or this run's for methods the study lacks, exceeds :data:`EARLY_STOPPING_DROP_DB`;
    ``early_stopping_from`` says which. ``search_s``: mean measured cost of the per-image
    architecture search (ISNAS-DIP), 0 for methods without one.
    """
    study_drop = {} if study is None else (study.psnr_peak - study.psnr_last).groupby(study.method).mean()
    study_fits = {} if study is None else study.groupby("method").size()
    rows = []
    for method, g in fits.groupby("method", sort=False):
        big = g[(g.height == 512) & (g.width_px == 512)]
        timed = big if len(big) else g
        sources = set(g.width_source)
        drop = float((g.psnr_peak - g.psnr_last).mean())
        measured = float(study_drop.get(method, math.nan))
        decisive = drop if math.isnan(measured) else measured
        rows.append(
            {
                "method": method,
                "image_specific": "yes"
                if sources & {"labels:NoRepeat", "labels:wRepeat", "predicted", "search"}
                else "no",
                "search_s": float(g.search_s.mean()),
                "restoration_s": float(timed.wall_time_s.mean()),
                "restoration_size": ", ".join(
                    f"{w}x{h}" for w, h in sorted(set(zip(timed.width_px, timed.height)))
                ),
                "iterations": int(g.iterations.max()),
                "device": ", ".join(sorted(set(g.device))),
                "drop_db": drop,
                "study_drop_db": measured,
                "study_fits": int(study_fits.get(method, 0)),
                "early_stopping": "yes" if decisive > EARLY_STOPPING_DROP_DB else "no",
                "early_stopping_from": "this run" if math.isnan(measured) else "study",
                "fits": len(g),
                **PAPER_TABLE3.get(method, {}),
            }
        )
    out = pd.DataFrame(rows)
    out = out.assign(_m=_order(out, "method", method_order)).sort_values("_m").drop(columns="_m")
    return out.reset_index(drop=True)


PAPER_TABLE_NOTES = {
    "table3": (
        "Table 3: properties of each method",
        "Measured from this run's fits: `restoration_s` is the mean wall time per fit of the images of "
        "`restoration_size` (512x512 when the method was fitted on any, else all its images), on "
        "the device named; `drop_db` is the mean drop from peak to last PSNR in this run, `study_drop_db` the "
        "same in the early-stopping study (docs/early-stopping.md: photos outside the datasets, 3000 "
        f"iterations), and `early_stopping` is `yes` when the study's drop (else this run's) is above "
        f"{EARLY_STOPPING_DROP_DB} dB. `paper_*`: the paper's Table 3 (512x512, 3000 iterations).",
    ),
    "table4": (
        "Table 4: Poisson noise",
        f"Mean over images. {SCORE_NOTES} `ssim_paper` (data_range 2) is compared with the paper's "
        "Table 4 (`d_ssim`). Rows: `results/fits.parquet`.",
    ),
    "table5": (
        "Table 5: real noise (PolyU)",
        f"Mean over the image pairs. {SCORE_NOTES} `ssim_paper` (data_range 2) is compared with the "
        "paper's Table 5. Rows: `results/fits.parquet`.",
    ),
    "table6": (
        "Table 6: ConvDecoder before and after",
        "`before` = `conv_decoder` (Table 2's CD), `after` = `conv_decoder_ours` (two upsamplings, width per "
        "image). PSNR at the last iteration, SSIM with data_range 2 as the paper; `gain` = after - before, "
        "`paper_gain` the paper's.",
    ),
}


def write_paper_table(
    name: str,
    fits_path: str,
    csv_out: str,
    md_out: str,
    dataset_order=(),
    method_order=(),
    study_path: str | None = None,
) -> pd.DataFrame:
    """The *paper_table* stage for ``table3`` ... ``table6`` (``study_path``: the early-stopping
    study's per-fit CSV, for Table 3)."""
    fits = pd.read_parquet(fits_path)
    if name == "table3":
        df = table3(fits, method_order, pd.read_csv(study_path) if study_path else None)
    elif name == "table4":
        df = table4(fits, dataset_order, method_order)
    elif name == "table5":
        df = table5(fits, dataset_order, method_order)
    elif name == "table6":
        df = table6(fits, dataset_order)
    else:
        raise ValueError(f"unknown table {name!r}")
    title, notes = PAPER_TABLE_NOTES[name]
    digits = {
        c: (
            4
            if "ssim" in c
            else 3
            if c.startswith("paper_ssim")
            else 1
            if c.endswith("_s") or "_s_" in c
            else 2
        )
        for c in df.columns
    }
    write_table(df, csv_out, md_out, title, notes, digits)
    return df
