"""Publishing a reproduction: a run's ``fits.parquet`` -> ``docs/reproduced/table2.csv`` and the
page beside it (``table2.md``): the measured cells of the paper's Table 2 beside the published
ones, the spread across images, and the cells off the paper with their measured reasons.

Torch-free (pandas only), so it runs wherever the pipeline's tables run. Used by
``benchmarks/publish_table2.py``; see ``docs/reproduction.md``.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from dipkit.io import write_text
from dipkit.tables import paper_results

__all__ = [
    "CSV_COLUMNS",
    "PSNR_TOLERANCE_DB",
    "SSIM_TOLERANCE",
    "table2_cells",
    "table2_page",
    "write_table2",
]

#: Columns of ``docs/reproduced/table2.csv``, in order.
CSV_COLUMNS = [
    "dataset",
    "noise",
    "method",
    "images",
    "psnr",
    "ssim_paper",
    "paper_psnr",
    "paper_ssim",
    "device",
    "date",
    "iterations",
    "seed",
]
#: A cell further than this from the paper (dB, or SSIM with the paper's data range 2) needs a reason.
PSNR_TOLERANCE_DB = 0.3
SSIM_TOLERANCE = 0.01


def _device_name(device: str) -> str:
    """``cuda:0 (NVIDIA H200)`` -> ``NVIDIA H200``; other names as they are."""
    if device.startswith("cuda") and "(" in device and device.endswith(")"):
        return device[device.index("(") + 1 : -1]
    return device


def table2_cells(fits: pd.DataFrame, *, date: str, seed: int, methods=None) -> pd.DataFrame:
    """One row per (dataset, noise, method) of the Gaussian-noise fits, columns :data:`CSV_COLUMNS`.

    ``psnr`` and ``ssim_paper`` are means over the images of the last-iteration scores
    (``psnr_last``, ``ssim_paper_last``), as the paper's Table 2; ``paper_*`` come from
    ``dipkit/data/paper_results.csv`` (NaN where the paper has no such cell).
    """
    g = fits[fits.noise_kind == "gaussian"]
    if methods is not None:
        g = g[g.method.isin(list(methods))]
    if g.empty:
        raise ValueError("no Gaussian-noise fits to publish (Table 2 needs datasets with gaussian levels)")
    keys = ["dataset", "noise", "method"]
    out = (
        g.groupby(keys, sort=False)
        .agg(
            images=("image", "nunique"),
            psnr=("psnr_last", "mean"),
            ssim_paper=("ssim_paper_last", "mean"),
            device=("device", lambda d: "; ".join(sorted({_device_name(x) for x in d}))),
            iterations=("iterations", lambda it: int(it.max())),
            level=("noise_level", "first"),
        )
        .reset_index()
    )
    paper = paper_results("table2").rename(columns={"psnr": "paper_psnr", "ssim": "paper_ssim"})
    out = out.merge(paper, on=keys, how="left")
    datasets = list(dict.fromkeys(g.dataset))
    out["_d"] = out.dataset.map(datasets.index)
    out = out.sort_values(["level", "_d"], kind="stable")
    out["date"], out["seed"] = date, int(seed)
    return out[CSV_COLUMNS].reset_index(drop=True)


def _spread(fits: pd.DataFrame) -> pd.DataFrame:
    g = fits[fits.noise_kind == "gaussian"]
    return g.groupby(["dataset", "noise", "method"], sort=False).agg(
        psnr_min=("psnr_last", "min"),
        psnr_max=("psnr_last", "max"),
        psnr_std=("psnr_last", "std"),
        ssim_min=("ssim_paper_last", "min"),
        ssim_max=("ssim_paper_last", "max"),
        ssim_std=("ssim_paper_last", "std"),
    )


def _f(value, digits: int, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def off_paper(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells further from the paper than :data:`PSNR_TOLERANCE_DB` or :data:`SSIM_TOLERANCE`."""
    d_psnr = (cells.psnr - cells.paper_psnr).abs()
    d_ssim = (cells.ssim_paper - cells.paper_ssim).abs()
    return cells[(d_psnr > PSNR_TOLERANCE_DB) | (d_ssim > SSIM_TOLERANCE)]


def table2_page(
    cells: pd.DataFrame,
    fits: pd.DataFrame,
    *,
    reasons: Mapping[str, str] | None = None,
    expected_images: Mapping[str, int] | None = None,
    command: str = "",
    lowest: int = 3,
) -> str:
    """The Markdown page: the table, the spread across images, and the cells off the paper.

    :param reasons: measured reasons, by ``dataset/noise/method``, shown under the cells off the
        paper (the others get a line saying the reason is still to be measured).
    :param expected_images: images per dataset in a complete run (marks partial cells).
    :param command: how the numbers were made, shown on the page.
    :param lowest: images listed per cell off the paper (its lowest PSNRs, a first per-image look).
    """
    reasons, expected_images = dict(reasons or {}), dict(expected_images or {})
    devices = "; ".join(sorted(set("; ".join(cells.device).split("; "))))
    dates = ", ".join(sorted(set(cells.date)))
    its = ", ".join(str(i) for i in sorted(set(cells.iterations)))
    seeds = ", ".join(str(s) for s in sorted(set(cells.seed)))
    lines = [
        "# Table 2, reproduced",
        "",
        (
            f"Measured on {devices} on {dates}, through the pipeline ({its} iterations, "
            f"config seed {seeds}). "
            "PSNR in dB of the last iteration's smoothed output, mean over the images; SSIM as the paper's "
            "code computes it (`ssim_paper`, data range 2). Paper: Liu et al., ICCV 2023, Table 2. "
            "The numbers are in [`table2.csv`](table2.csv)."
        ),
    ]
    if command:
        lines += ["", f"Made with `{command}`."]
    lines += [
        "",
        "| dataset | σ | method | images | PSNR | paper | Δ PSNR | SSIM | paper | Δ SSIM |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells.itertuples(index=False):
        n = expected_images.get(c.dataset)
        images = f"{c.images} of {n}" if n and c.images < n else str(c.images)
        lines.append(
            f"| {c.dataset} | {c.noise.removeprefix('gaussian')} | {c.method} | {images} | {_f(c.psnr, 2)} "
            f"| {_f(c.paper_psnr, 2)} | {_f(c.psnr - c.paper_psnr, 2, True)} | {_f(c.ssim_paper, 3)} "
            f"| {_f(c.paper_ssim, 3)} | {_f(c.ssim_paper - c.paper_ssim, 3, True)} |"
        )
    spread = _spread(fits)
    lines += [
        "",
        "## Spread across images",
        "",
        (
            "Last-iteration PSNR (dB) and SSIM (data range 2) of the single images of each cell: "
            "lowest, highest and standard deviation."
        ),
        "",
        "| dataset | σ | method | PSNR min | PSNR max | PSNR std | SSIM min | SSIM max | SSIM std |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells.itertuples(index=False):
        s = spread.loc[(c.dataset, c.noise, c.method)]
        lines.append(
            f"| {c.dataset} | {c.noise.removeprefix('gaussian')} | {c.method} | {_f(s.psnr_min, 2)} "
            f"| {_f(s.psnr_max, 2)} | {_f(s.psnr_std, 2)} | {_f(s.ssim_min, 3)} | {_f(s.ssim_max, 3)} "
            f"| {_f(s.ssim_std, 3)} |"
        )
    off = off_paper(cells)
    lines += ["", f"## Cells off the paper (> {PSNR_TOLERANCE_DB} dB or > {SSIM_TOLERANCE} SSIM)", ""]
    if off.empty:
        lines.append("None: every cell is within both tolerances.")
    for c in off.itertuples(index=False):
        key = f"{c.dataset}/{c.noise}/{c.method}"
        rows = fits[(fits.dataset == c.dataset) & (fits.noise == c.noise) & (fits.method == c.method)]
        worst = rows.nsmallest(lowest, "psnr_last")
        low = ", ".join(f"{r.image} {r.psnr_last:.2f} dB (width {r.width})" for r in worst.itertuples())
        lines += [
            (
                f"### {c.dataset}, σ {c.noise.removeprefix('gaussian')}, {c.method}: "
                f"{_f(c.psnr - c.paper_psnr, 2, True)} dB, {_f(c.ssim_paper - c.paper_ssim, 3, True)} SSIM"
            ),
            "",
            f"Lowest images: {low}.",
            "",
            f"Reason: {reasons.get(key, '*not measured yet* (a second seed, a per-image look).')}",
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def write_table2(
    fits_path: str | Path,
    out_dir: str | Path,
    *,
    seed: int,
    date: str | None = None,
    reasons: Mapping[str, str] | None = None,
    expected_images: Mapping[str, int] | None = None,
    methods=None,
    command: str = "",
) -> pd.DataFrame:
    """Write ``<out_dir>/table2.csv`` and ``<out_dir>/table2.md`` from a run's fits.

    :param fits_path: ``results/fits.parquet``, or a folder searched for per-fit rows
        (``results/fits``: ``<dataset>/<noise>/<method>/<image>.parquet``) when a run was cut short
        before its aggregation.
    :param date: the run's date (default: the day the fits were last written).
    """
    fits_path = Path(fits_path)
    if fits_path.is_dir():
        from dipkit.tables import concat_parquet

        rows = sorted(
            str(p) for p in fits_path.rglob("*.parquet") if not p.name.endswith(".trajectory.parquet")
        )
        if not rows:
            raise ValueError(f"{fits_path}: no fit rows (<dataset>/<noise>/<method>/<image>.parquet) in it")
        fits = concat_parquet(rows).to_pandas()
        stamp = max(Path(p).stat().st_mtime for p in rows)
    else:
        fits = pd.read_parquet(fits_path)
        stamp = fits_path.stat().st_mtime
    date = date or _dt.date.fromtimestamp(stamp).isoformat()
    cells = table2_cells(fits, date=date, seed=seed, methods=methods)
    out_dir = Path(out_dir)
    write_text(out_dir / "table2.csv", cells.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    write_text(
        out_dir / "table2.md",
        table2_page(cells, fits, reasons=reasons, expected_images=expected_images, command=command),
    )
    return cells
