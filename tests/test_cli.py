"""``dipkit denoise`` and ``dipkit --help``: the real command in a subprocess, on CPU."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from conftest import REPO, synthetic_image


def dipkit(*args: str, cache=None, timeout=600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if cache is not None:
        env["DIPKIT_CACHE_DIR"] = str(cache)
    return subprocess.run([sys.executable, "-m", "dipkit", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def _noisy_pair(tmp_path, h, w, c, sigma=25, seed=0):
    clean = synthetic_image(h, w, c, seed=seed).astype(np.float64)
    noisy = np.clip(clean + np.random.default_rng(seed + 1).normal(0, sigma / 255, clean.shape), 0, 1)
    u8 = (noisy * 255).round().astype(np.uint8)
    path = tmp_path / "noisy.png"
    Image.fromarray(u8[:, :, 0] if c == 1 else u8).save(path)
    return clean, u8 / 255.0, path


def test_help_is_clear():
    top = dipkit("--help")
    assert top.returncode == 0 and "denoise" in top.stdout and "snakemake --cores all" in top.stdout
    sub = dipkit("denoise", "--help")
    assert sub.returncode == 0
    for option in ("--sigma", "--method", "--iterations", "--width", "--seed", "--device", "-o OUTPUT"):
        assert option in sub.stdout


def test_denoise_improves_psnr_with_a_predicted_width(tmp_path):
    """The paper's method end to end: estimated sigma, width from the cached classifier, fit."""
    clean, noisy, path = _noisy_pair(tmp_path, 64, 64, 3)
    out = tmp_path / "out.png"
    cache = tmp_path / "cache"
    proc = dipkit("denoise", str(path), "-o", str(out), "--iterations", "250", cache=cache)
    assert proc.returncode == 0, proc.stderr
    assert "width" in proc.stderr and "(predicted (32:" in proc.stderr and "sigma" in proc.stderr
    assert "250/250 loss" in proc.stderr  # the progress bar reached the end
    assert list(cache.glob("width_classifier-*.pkl"))  # trained once, cached
    den = np.asarray(Image.open(out), dtype=np.float64) / 255.0
    assert den.shape == clean.shape
    before = peak_signal_noise_ratio(clean, noisy, data_range=1.0)
    after = peak_signal_noise_ratio(clean, den, data_range=1.0)
    assert after > before + 1.0, (before, after)


def test_any_size_grayscale_comes_back_at_its_size(tmp_path):
    _, _, path = _noisy_pair(tmp_path, 37, 50, 1)
    out = tmp_path / "out.tif"
    proc = dipkit("denoise", str(path), "-o", str(out), "--width", "16", "--sigma", "25",
                  "--iterations", "20", "--seed", "3", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    img = Image.open(out)
    assert img.mode == "L" and img.size == (50, 37)


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "no such file"),
        ("text", "not a readable image"),
        ("alpha", "image has transparency"),
        ("tiny", "image of 5x4 pixels is too small (at least 8x8)"),
        ("bad-output", "unknown image format"),
        ("iterations", "--iterations must be >= 1"),
    ],
)
def test_bad_inputs_give_a_clean_error(tmp_path, case, expected):
    src = tmp_path / "in.png"
    out = tmp_path / "out.png"
    args = []
    if case == "text":
        src.write_text("not an image")
    elif case == "alpha":
        rgba = np.zeros((16, 16, 4), np.uint8)
        rgba[..., 3] = np.arange(16)[None, :] * 16
        Image.fromarray(rgba, "RGBA").save(src)
    elif case == "tiny":
        Image.fromarray(np.zeros((4, 5), np.uint8)).save(src)
    elif case in ("bad-output", "iterations"):
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(src)
        if case == "bad-output":
            out = tmp_path / "out.xyz"
        else:
            args = ["--iterations", "0"]
    proc = dipkit("denoise", str(src), "-o", str(out), *args)
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_noise_estimate_is_close():
    from dipkit.denoise import estimate_sigma

    clean = synthetic_image(128, 128, 3, seed=2).astype(np.float64)
    for sigma in (10, 25, 50):
        noisy = np.clip(clean + np.random.default_rng(sigma).normal(0, sigma / 255, clean.shape), 0, 1)
        assert abs(estimate_sigma(noisy) - sigma) < 0.12 * sigma
