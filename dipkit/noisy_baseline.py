"""The noisy baseline: every noisy image scored against its clean image (stage *score_noisy*),
and the dataset x noise summary of those scores (stage *noisy_baseline_table*)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

import dipkit
from dipkit.columns import NOISY_METRICS, make_table
from dipkit.images import to_float
from dipkit.io import load_stack, write_parquet
from dipkit.metrics.reference import PAPER_SSIM_DATA_RANGE, psnr, ssim
from dipkit.noise import NoiseSpec, noise_seed
from dipkit.tables import concat_parquet, write_table


def score_noisy(
    prepared_path: str,
    noisy_path: str,
    out_path: str,
    dataset: str,
    images: list[str],
    noise_id: str,
    config_seed: int,
) -> list[dict]:
    """Score every noisy image of one (dataset, noise) against its clean image.

    Writes one row per image with the :data:`dipkit.columns.NOISY_METRICS` columns.
    """
    spec = NoiseSpec.parse(noise_id)
    clean_stack = load_stack(prepared_path)
    noisy_stack = load_stack(noisy_path)
    rows = []
    for image in images:
        clean = to_float(clean_stack[f"clean/{image}"])
        noisy = noisy_stack[image]
        rows.append(
            {
                "dataset": dataset,
                "image": image,
                "noise": spec.id,
                "noise_kind": spec.kind,
                "noise_level": spec.level,
                "seed": noise_seed(config_seed, dataset, image, spec.id) if spec.synthetic else None,
                "height": clean.shape[0],
                "width": clean.shape[1],
                "channels": clean.shape[2],
                "psnr": psnr(clean, noisy),
                "ssim": ssim(clean, noisy),
                "ssim_paper": ssim(clean, noisy, data_range=PAPER_SSIM_DATA_RANGE),
                "dipkit_version": dipkit.__version__,
            }
        )
    write_parquet(out_path, make_table(rows, NOISY_METRICS))
    return rows


def baseline_table(rows: pd.DataFrame, dataset_order: Sequence[str] = ()) -> pd.DataFrame:
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


def write_noisy_baseline(
    paths: Sequence[str], parquet_out: str, csv_out: str, md_out: str, dataset_order=()
) -> pd.DataFrame:
    """The *noisy_baseline_table* stage: concatenate rows, write the Parquet and the table."""
    rows = concat_parquet(paths, parquet_out).to_pandas()
    summary = baseline_table(rows, dataset_order)
    write_table(
        summary,
        csv_out,
        md_out,
        "Noisy baseline",
        NOISY_BASELINE_NOTES,
        digits={"psnr_mean": 2, "psnr_std": 2, "ssim_mean": 4, "ssim_paper_mean": 4},
    )
    return summary
