"""benchmarks/gpu_hours.py: the planned fits of a config priced with the committed H200 rates."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_hours


def test_rates_interpolate_in_pixels_and_prefer_batched_rows():
    rates = gpu_hours.load_rates(gpu_hours.RATES)
    s = gpu_hours.seconds_per_iteration
    assert s(rates, "ours64", 256 * 256, 1, "eager") == pytest.approx(0.0058)
    assert s(rates, "ours64", 128 * 128, 1, "eager") == pytest.approx(0.0058)  # launch-bound floor
    dip_mid = s(rates, "dip", (256 * 256 + 512 * 512) // 2, 1, "eager")
    assert dip_mid == pytest.approx(0.0136)  # the 512² rate is lower: held at the 256² one
    nas_mid = s(rates, "nas_dip", (256 * 256 + 512 * 512) // 2, 1, "eager")
    assert nas_mid == pytest.approx((0.0180 + 0.0294) / 2)
    assert s(rates, "ours32", 256 * 256, 8, "eager") == pytest.approx(0.001003)  # batch 8 row
    assert s(rates, "ours32", 256 * 256, 4, "eager") == pytest.approx(0.001954)
    assert gpu_hours.rate_key("hourglass", {"levels": 2, "width": 128}) == ("ours128", False)
    assert gpu_hours.rate_key("hourglass", {"levels": 3, "width": 48}) == ("ours32", True)
    assert gpu_hours.rate_key("swin_unet", {}) == ("dip", True)


def test_projection_of_the_reproduction_config():
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks/gpu_hours.py"),
            "--configfile",
            str(REPO / "configs/paper_table2_ours.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "fit.batch 8" in proc.stdout and "NVIDIA H200" in proc.stdout
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| ours |"))
    fits, hours = row.split("|")[2].strip(), float(row.split("|")[4])
    assert fits == "178" and 0.1 < hours < 2


def test_projection_counts_the_default_configs_table2_fits():
    import yaml

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    rates = gpu_hours.load_rates(gpu_hours.RATES)
    table = gpu_hours.project(
        config,
        rates,
        "graph",
        datasets=["Set9", "Set12", "CBSD68"],
        noise_kind="gaussian",
        methods=["dip", "deep_decoder", "conv_decoder", "nas_dip", "isnas_dip", "ours"],
    )
    assert sum(r["fits"] for r in table.values()) == 6 * 178
    assert all(r["seconds"] > 0 for r in table.values())
