"""Every Section-3 experiment in its tiny variant, with the real snakemake; plus config checks."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from conftest import run_tiny

from dipkit.config import ConfigError, plan_datasets, plan_experiments
from dipkit.experiments import EXPERIMENTS
from dipkit.models.filters import frequency_response_db

TINY = {
    "seed": 2,
    "datasets": {"Set9": {"images": ["image_House256rgb", "image_Baboon512rgb"], "gaussian": [25]}},
    "experiments": {
        "spectral_density": {"images": ["Set9/image_House256rgb", "Set9/image_Baboon512rgb"]},
        "upsampling_role": {"crop": 64, "iterations": 8, "options": {"width": 16}},
        "lowpass_upsamplers": {
            "images": ["Set9/image_House256rgb"],
            "iterations": 8,
            "options": {"width": 8},
        },
        "depth_width_skips": {  # the two experiments with the most arms fit one image
            "images": ["Set9/image_Baboon512rgb"],
            "crop": 64,
            "iterations": 8,
            "noise": ["gaussian25"],
            "options": {"depths": [1, 2], "widths": [8, 16]},
        },
        "upsampling_position": {
            "images": ["Set9/image_House256rgb"],
            "crop": 64,
            "iterations": 8,
            "options": {"factors": [2, 32], "width": 16},
        },
        "swin_unet": {"crop": 64, "iterations": 8, "options": {"embed_dim": 24, "window": 4}},
    },
}


@pytest.fixture(scope="module")
def run(tmp_path_factory, mirror):
    work = tmp_path_factory.mktemp("experiments")
    run_tiny(work, TINY, mirror)
    return work


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_tiny_experiment_writes_figure_and_table(run, name):
    out = run / "results/experiments" / name
    assert (out / "figure.png").stat().st_size > 5000
    table = pd.read_csv(out / "table.csv")
    assert len(table) > 0
    assert (out / "table.md").read_text().startswith(f"# {name}")
    fits = pd.read_parquet(out / "fits.parquet")
    cfg = EXPERIMENTS[name].config(TINY["experiments"][name])
    n_arms = len(EXPERIMENTS[name].arms(cfg))
    assert len(fits) == n_arms * len(cfg["images"]) * len(cfg["noise"])
    if n_arms:
        assert fits.psnr_last.map(math.isfinite).all() and fits.ssim_last.between(-1, 1).all()
        assert (fits.iterations == cfg["iterations"]).all()
        traj = pd.read_parquet(out / "trajectories.parquet")
        assert len(traj) == len(fits) * cfg["iterations"]


def test_lowpass_table_matches_the_taps(run):
    table = pd.read_csv(run / "results/experiments/lowpass_upsamplers/table.csv").set_index("filter")
    for name in ("NN", "L14", "L15", "L16", "L17", "L-60", "L-100"):
        f, db = frequency_response_db(name, num=2049)
        assert table.loc[name, "stopband_db"] == pytest.approx(
            db[f >= 0.75].max(), abs=1e-3
        )  # CSV keeps 6 digits
    # the series is ordered by stop-band attenuation, as Table 1 needs
    att = table.loc[["NN", "L14", "L15", "L16", "L17", "L-60", "L-100"], "stopband_db"]
    assert att.is_monotonic_decreasing
    assert table.loc["L-60", "paper_peak"] == 31.2


def test_spectral_density_orders_coarse_before_fine(run):
    table = pd.read_csv(run / "results/experiments/spectral_density/table.csv").set_index("image")
    # House (label 32, smooth) falls off faster than Baboon (label 128, fine texture)
    assert table.loc["image_House256rgb", "psd_slope"] < table.loc["image_Baboon512rgb", "psd_slope"]


@pytest.mark.parametrize(
    "experiments, message",
    [
        ({"nope": {}}, "experiments.nope: unknown experiment"),
        (
            {"upsampling_role": {"options": {"depth": 3}}},
            r"experiments.upsampling_role.options: unknown \['depth'\]",
        ),
        (
            {"upsampling_role": {"images": ["Set9/kodim01"]}},
            "'Set9/kodim01' is not an image of a configured dataset",
        ),
        ({"upsampling_role": {"noise": ["gaussian50"]}}, "'gaussian50' is not configured for Set9"),
    ],
)
def test_experiment_config_errors(experiments, message):
    config = {
        "datasets": {"Set9": {"images": ["image_House256rgb"], "gaussian": [25]}},
        "experiments": experiments,
    }
    with pytest.raises(ConfigError, match=message):
        plan_experiments(config, plan_datasets(config))
