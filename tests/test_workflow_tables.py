"""Tables 2-6 from one tiny run of the real snakemake (Gaussian, Poisson and real noise)."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import run_tiny

CONFIG = {
    "seed": 4,
    "datasets": {
        "Set9": {"images": ["image_House256rgb"], "poisson": [0.1]},
        "Set12": {"images": ["01"], "gaussian": [25]},
        "PolyU": {"max_images": 1, "real": True},
    },
    # every table gets its rows; the slow fits on PolyU's 512x512 photo are Ours' only
    "methods": {
        "ours": {},
        "conv_decoder": {"noise": ["gaussian25"]},
        "conv_decoder_ours": {"noise": ["gaussian25", "poisson0.1"]},
        "bm3d": {"noise": ["gaussian25", "poisson0.1"]},
        "isnas_dip": {"search": {"n_samples": 3, "top_k": 2}, "noise": ["gaussian25"]},
    },
    "fit": {"iterations": 3},
}


@pytest.fixture(scope="module")
def tables(tmp_path_factory, mirror):
    work = tmp_path_factory.mktemp("tables")
    run_tiny(work, CONFIG, mirror)
    return work / "results/tables"


@pytest.mark.parametrize("name", ["table2", "table3", "table4", "table5", "table6"])
def test_every_table_renders(tables, name):
    df = pd.read_csv(tables / f"{name}.csv")
    assert len(df) > 0
    assert (tables / f"{name}.md").read_text().startswith("# Table " + name[-1])


def test_table_contents(tables):
    t2 = pd.read_csv(tables / "table2.csv")
    assert set(t2.method) == {"ours", "conv_decoder", "conv_decoder_ours", "bm3d", "isnas_dip"}
    bm3d = t2[t2.method == "bm3d"].iloc[0]
    assert bm3d.psnr > 25 and pd.isna(bm3d.paper_psnr)  # BM3D is our extra reference row
    t4 = pd.read_csv(tables / "table4.csv")
    assert set(t4.method) == {"ours", "conv_decoder_ours", "bm3d"} and (t4.zeta == 0.1).all()
    assert t4.set_index("method").loc["ours", "paper_psnr"] == 24.99
    t5 = pd.read_csv(tables / "table5.csv").set_index("method")
    assert t5.loc["ours", "paper_psnr"] == 38.05 and t5.loc["ours", "images"] == 1
    t6 = pd.read_csv(tables / "table6.csv").iloc[0]
    assert t6.dataset == "Set12" and t6.sigma == 25 and t6.paper_psnr_after == 26.98
    assert t6.gain == pytest.approx(t6.psnr_after - t6.psnr_before, abs=1e-3)  # CSV keeps 6 digits
    t3 = pd.read_csv(tables / "table3.csv").set_index("method")
    assert t3.loc["ours", "image_specific"] == "yes" and t3.loc["conv_decoder", "image_specific"] == "no"
    assert t3.loc["ours", "paper_restoration"] == "~6 min" and (t3.restoration_s > 0).all()
    assert t3.loc["ours", "restoration_size"] == "512x512"  # the PolyU fit is 512x512
    assert t3.loc["conv_decoder", "restoration_size"] == "256x256"  # Set12 only: the size timed is named
    isnas = t3.loc["isnas_dip"]
    assert isnas.image_specific == "yes" and isnas.search_s > 0 and isnas.paper_search == "5 min"
    assert isnas.restoration_s > isnas.search_s  # search + 2 candidate fits
    notes = (tables / "table2.md").read_text()
    assert "`psnr_peak` (an oracle" in notes and "final output" in notes


def test_figures_and_the_report(tables):
    """Figures land under results/figures/; `snakemake --report` builds one self-contained HTML
    page holding every table and figure with its caption."""
    import re

    from conftest import run_snakemake

    work = tables.parent.parent
    figures = work / "results/figures"
    pairs = [("Set9", "poisson0.1"), ("Set12", "gaussian25"), ("PolyU", "real")]
    for dataset, noise in pairs:
        for kind in ("psnr_curves", "gallery"):
            png = figures / f"{kind}_{dataset}_{noise}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    run_snakemake(work, "--configfile", str(work / "config.yaml"), "--report", "results/report.html")
    html = (work / "results/report.html").read_text()
    assert len(html) > 100_000
    for name in ("table2.csv", "table3.csv", "table4.csv", "table5.csv", "table6.csv", "noisy_baseline.csv"):
        assert name in html, name
    for dataset, noise in pairs:
        assert f"psnr_curves_{dataset}_{noise}.png" in html and f"gallery_{dataset}_{noise}.png" in html
    assert "exponentially smoothed output" in html and "Central crops" in html  # captions
    assert "The Devil is in the Upsampling" in html  # workflow description
    # self-contained: no stylesheet, script or image fetched from elsewhere
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=[\"']https?://", html)


def test_the_readme_tiny_config_plans(tmp_path):
    """tests/configs/tiny.yaml (the README's try-it config) is valid and plans its fits."""
    from conftest import REPO, run_snakemake

    proc = run_snakemake(tmp_path, "--configfile", str(REPO / "tests/configs/tiny.yaml"), "-n")
    out = proc.stdout + proc.stderr
    assert "fit " in out and "gallery" in out and "psnr_curves" in out
