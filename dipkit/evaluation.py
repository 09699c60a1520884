"""Scoring stages: the noisy baseline (noisy image vs clean image)."""

from __future__ import annotations

import dipkit
from dipkit.images import to_float
from dipkit.io import load_stack, write_parquet
from dipkit.metrics.reference import PAPER_SSIM_DATA_RANGE, psnr, ssim
from dipkit.noise import NoiseSpec, noise_seed
from dipkit.schemas import NOISY_METRICS, make_table


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

    Writes one row per image with the :data:`dipkit.schemas.NOISY_METRICS` columns.
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
