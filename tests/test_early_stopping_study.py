"""benchmarks/early_stopping.py, the early-stopping study (docs/early-stopping.md), run for real
on tiny settings: fits through ``dipkit.denoise``, a resumed run that skips the finished fits,
the per-method/sigma/rule summary and the replay of the recorded signals with other parameters."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

SCRIPT = REPO / "benchmarks/early_stopping.py"


def _study(*args, cwd):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.slow
def test_study_runs_resumes_summarises_and_replays(tmp_path):
    fits = tmp_path / "fits.csv"
    signals = tmp_path / "signals"
    common = ("--out", fits, "--sizes", 32, "--iterations", 60, "--threads", 1, "--no-bm3d")
    common += ("--signals", signals, "--cache-dir", tmp_path / "cache")
    out = _study("run", *common, "--methods", "ours", "--sigmas", 25, "--images", "chelsea", cwd=tmp_path)
    assert "1 fits to run, 0 already" in out
    out = _study("run", *common, "--methods", "ours", "--sigmas", 25, 50, "--images", "chelsea", cwd=tmp_path)
    assert "1 fits to run, 1 already" in out  # the finished fit is skipped

    rows = pd.read_csv(fits)
    assert len(rows) == 2 and set(rows.sigma) == {25, 50}
    assert rows.peak_iteration.between(1, 60).all()
    for rule in ("wmv", "discrepancy", "whiteness"):
        # a rule returns one of the run's smoothed outputs (or, never fired, the final one)
        assert (rows[f"{rule}_psnr"] <= np.maximum(rows.psnr_peak, rows.psnr_last) + 1e-6).all()
        assert rows[f"{rule}_iteration"].between(1, 60).all()
    assert len(list(signals.glob("*.npz"))) == 2

    summary = tmp_path / "summary.csv"
    _study("summary", fits, "--out", summary, cwd=tmp_path)
    table = pd.read_csv(summary)
    assert list(table.sigma.unique()) == [25, 50]
    per_cell = table[(table.sigma == 25)].set_index("rule")
    assert per_cell.loc["oracle", "gap_mean"] == 0
    assert per_cell.loc["last", "gain_mean"] == 0
    assert "whiteness (dipkit denoise)" in per_cell.index
    last_gap = float((rows.psnr_peak - rows.psnr_last)[rows.sigma == 25].iloc[0])
    assert per_cell.loc["last", "gap_mean"] == pytest.approx(last_gap, abs=1e-3)  # CSV: 3 decimals

    tuning = tmp_path / "tuning.csv"
    _study(
        "tune", signals, "--factor", 1.5, 3.0, "--patience", 300, "--tau", 1.0, "--out", tuning, cwd=tmp_path
    )
    tuned = pd.read_csv(tuning).set_index("parameter")
    assert set(tuned.rule) == {"wmv", "discrepancy", "whiteness"} and (tuned.fits == 2).all()
    # replaying the online rule's own parameters gives the online result
    online = float((rows.psnr_peak - rows.whiteness_psnr).mean())
    assert tuned.loc["factor 1.5", "gap_mean"] == pytest.approx(online, abs=2e-3)

    # per noise level: one row per sigma, each from its own fit (the noise level is in the file name)
    by_sigma = tmp_path / "by_sigma.csv"
    _study(
        "tune",
        signals,
        "--factor",
        1.5,
        "--patience",
        300,
        "--tau",
        1.0,
        "--by-sigma",
        "--out",
        by_sigma,
        cwd=tmp_path,
    )
    per_sigma = pd.read_csv(by_sigma).query("rule == 'whiteness'").set_index("sigma")
    assert list(per_sigma.index) == [25, 50] and (per_sigma.fits == 1).all()
    for sigma, row in per_sigma.iterrows():
        one = rows[rows.sigma == sigma].iloc[0]
        assert row.gap_mean == pytest.approx(one.psnr_peak - one.whiteness_psnr, abs=2e-3)


def test_tune_by_sigma_names_a_file_without_a_noise_level(tmp_path):
    np.savez(tmp_path / "my_fit.npz", psnr_ema=np.zeros(3), psnr_last=0.0)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "tune", str(tmp_path), "--by-sigma"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"{tmp_path / 'my_fit.npz'}: expected a name method_size_sigma_image_iterations.npz"
    )
