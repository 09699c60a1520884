"""Tests of the ISNAS-DIP selection logic (dipkit.isnas): the training-free PSD metrics, the
seeded random search over the NAS-DIP space and the closest-to-average selection."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dipkit import isnas
from dipkit.isnas import (
    DEFAULT_METRIC,
    ISNAS_DEFAULTS,
    METRICS,
    emd_1d,
    psd,
    psd_metric,
    rank_candidates,
    resize_image,
    search,
    select_output,
    small_size,
    strip_mask,
    weighted_average,
)


def _smooth(h=64, w=64, c=3, seed=0):
    """Smooth, non-separable image in [0, 1]: a few random low-frequency cosines (no exact zeros
    in the PSD strip, unlike a pure linear ramp)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    img = np.zeros((h, w, c))
    for k in range(c):
        acc = 0.5 * xx + 0.3 * yy
        for _ in range(6):
            fx, fy = rng.uniform(0.3, 3.0, 2)
            acc = acc + 0.1 * np.cos(2 * np.pi * (fx * xx + fy * yy) + rng.uniform(0, 2 * np.pi))
        img[:, :, k] = acc
    img -= img.min()
    return img / img.max()


def _noisy(h=64, w=64, c=3, seed=0, sigma=25.0):
    rng = np.random.default_rng(seed + 100)
    return np.clip(_smooth(h, w, c, seed) + rng.normal(0, sigma / 255, (h, w, c)), 0, 1)


# ----------------------------------------------------------------------------- metrics


def test_defaults():
    assert ISNAS_DEFAULTS["n_samples"] == 5000
    assert ISNAS_DEFAULTS["top_k"] == 15
    assert ISNAS_DEFAULTS["iterations"] == 1200
    assert ISNAS_DEFAULTS["lr"] == 0.01
    assert ISNAS_DEFAULTS["reg_noise_std"] == pytest.approx(1 / 30)
    assert ISNAS_DEFAULTS["exp_weight"] == 0.99
    assert ISNAS_DEFAULTS["metric"] == DEFAULT_METRIC == "psd db strip mse"
    assert set(METRICS) == {"psd db strip mse", "psd strip hist emd", "random mse"}


def test_default_model_options_build():
    pytest.importorskip("torch")
    from dipkit.models import build_model, count_parameters

    net = build_model("nas_dip", 3, (64, 64), genotype=158, in_channels=3, **ISNAS_DEFAULTS["model"])
    assert count_parameters(net) > 4_000_000


def test_import_is_cheap():
    import subprocess
    import sys

    code = "import sys, dipkit.isnas; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_psd_parseval_and_dc_position():
    x = _noisy(32, 48, 1)
    p = psd(x)
    assert p.shape == (32, 48, 1)
    assert p.sum() == pytest.approx(np.mean(x**2))  # norm='forward': sum |F|^2 = mean |x|^2
    assert p[16, 24, 0] == pytest.approx(x.mean() ** 2)  # fftshifted DC


def test_strip_mask_is_the_ring():
    m = strip_mask((64, 64))
    assert not m[32, 32]  # DC
    assert m[32, 32 + 5]  # r = 5/64 ~ 0.078 in [0.05, 0.1)
    assert not m[32, 32 + 3]  # r = 0.047 < 0.05
    assert not m[32, 32 + 7]  # r = 0.109 >= 0.1
    assert np.array_equal(m[1:, 1:], m[1:, 1:][::-1, ::-1])  # point-symmetric about DC


@pytest.mark.parametrize("metric", ["psd db strip mse", "psd strip hist emd"])
def test_metric_zero_on_identical_and_symmetric(metric):
    a, b = _noisy(seed=1), _smooth(seed=2)
    assert psd_metric(a, a, metric) == 0.0
    assert psd_metric(a, b, metric) == pytest.approx(psd_metric(b, a, metric), rel=1e-12)
    assert psd_metric(a, b, metric) > 0


@pytest.mark.parametrize("metric", ["psd db strip mse", "psd strip hist emd"])
def test_white_noise_output_scores_worse_than_similar_output(metric):
    smooth = _smooth(seed=3)
    close = np.clip(0.97 * smooth + 0.01, 0, 1)
    white = np.random.default_rng(0).random(smooth.shape)
    assert psd_metric(close, smooth, metric) < psd_metric(white, smooth, metric)


def test_metric_grayscale_and_torch_inputs():
    torch = pytest.importorskip("torch")
    a, b = _noisy(c=1, seed=4), _smooth(c=1, seed=5)
    v = psd_metric(a[:, :, 0], b[:, :, 0])
    assert v == pytest.approx(psd_metric(a, b))
    t = torch.from_numpy(a.transpose(2, 0, 1))[None].float()
    assert psd_metric(t, b) == pytest.approx(psd_metric(a.astype(np.float32), b), rel=1e-9)


def _upstream_style(out_chw, img_chw, metric):
    """Independent re-derivation in upstream's [C, H, W] layout: fftshift over *all* axes,
    channel-stacked boolean mask, natural-log dB, scipy's wasserstein distance."""
    from scipy.stats import wasserstein_distance

    def p(x):
        return np.fft.fftshift(np.abs(np.fft.fft2(x, norm="forward")) ** 2)

    c, h, w = img_chw.shape
    xx, yy = np.meshgrid(range(w), range(h))
    xx, yy = xx / w - 0.5, yy / h - 0.5
    ring = np.logical_xor(xx**2 + yy**2 < 0.1**2, xx**2 + yy**2 < 0.05**2)
    mask = np.concatenate([ring[None]] * c, 0)
    if metric == "psd db strip mse":
        return np.mean((10 * np.log(p(img_chw))[mask] - 10 * np.log(p(out_chw))[mask]) ** 2)
    hi = np.histogram(p(img_chw)[mask], bins=100, density=True)[0]
    ho = np.histogram(p(out_chw)[mask], bins=100, density=True)[0]
    return wasserstein_distance(hi, ho)


@pytest.mark.parametrize("metric", ["psd db strip mse", "psd strip hist emd"])
@pytest.mark.parametrize("shape", [(64, 64, 3), (64, 96, 1)])
def test_metric_matches_upstream_layout(metric, shape):
    pytest.importorskip("scipy")
    h, w, c = shape
    img, out = _noisy(h, w, c, seed=6), _smooth(h, w, c, seed=7)
    ref = _upstream_style(out.transpose(2, 0, 1), img.transpose(2, 0, 1), metric)
    assert psd_metric(out, img, metric) == pytest.approx(ref, rel=1e-10)


def test_emd_matches_scipy():
    wd = pytest.importorskip("scipy.stats").wasserstein_distance
    rng = np.random.default_rng(0)
    a, b = rng.random(100), 3 * rng.random(100)
    assert emd_1d(a, b) == pytest.approx(wd(a, b))
    assert emd_1d(a, b[:37]) == pytest.approx(wd(a, b[:37]))


def test_random_mse_is_a_seeded_control():
    a, b = _noisy(seed=8), _smooth(seed=9)
    v = psd_metric(a, b, "random mse", rng=3)
    assert v == psd_metric(a, b, "random mse", rng=3)
    assert 1.8 < v < 2.2  # E[(x - y)^2] = 2 for independent N(0, 1)


def test_unknown_metric_rejected():
    with pytest.raises(ValueError, match="unknown ISNAS-DIP metric"):
        psd_metric(_smooth(), _smooth(), "psd mse")


# ------------------------------------------------------------------------------ search


@pytest.fixture(scope="module")
def searched():
    torch = pytest.importorskip("torch")
    noisy = _noisy(seed=10).astype(np.float32)
    state = torch.get_rng_state()
    r1 = search(noisy, n_samples=4, top_k=2, seed=123)
    assert torch.equal(state, torch.get_rng_state())  # global RNG untouched
    r2 = search(noisy, n_samples=4, top_k=2, seed=123)
    return noisy, r1, r2


def test_search_result_structure(searched):
    _noisy_img, r, _ = searched
    assert r["n_samples"] == 4 and r["top_k"] == 2 and r["metric"] == DEFAULT_METRIC
    assert r["in_channels"] == 3 and r["image_size"] == [64, 64]
    assert len(r["candidates"]) == 4 and r["seconds"] > 0
    assert [c["index"] for c in r["candidates"]] == [0, 1, 2, 3]
    for c in r["candidates"]:
        assert c["error"] is None and c["params"] > 0
        assert set(c["scores"]) == set(METRICS)
        assert c["score"] == c["scores"][DEFAULT_METRIC] and math.isfinite(c["score"])
    assert len(r["top"]) == 2


def test_search_top_is_sorted_and_builds(searched):
    import torch

    from dipkit.models import NASArchitecture, build_model

    _noisy_img, r, _ = searched
    by_token = {c["token"]: c["score"] for c in r["candidates"]}
    best = sorted(by_token.values())[:2]
    assert [by_token[t] for t in r["top"]] == best
    for token in r["top"]:
        net = build_model("nas_dip", 3, (64, 64), genotype=NASArchitecture.from_spec(token), in_channels=3)
        with torch.no_grad():
            assert net(0.1 * torch.rand(1, 3, 64, 64)).shape == (1, 3, 64, 64)


def test_search_is_deterministic_per_seed(searched):
    noisy, r1, r2 = searched
    assert r1["top"] == r2["top"]
    for a, b in zip(r1["candidates"], r2["candidates"]):
        assert a["token"] == b["token"] and a["scores"] == b["scores"] and a["params"] == b["params"]
    r3 = search(noisy, n_samples=2, top_k=1, seed=124)
    assert [c["token"] for c in r3["candidates"]] != [c["token"] for c in r1["candidates"][:2]]
    # candidate i does not depend on n_samples
    r4 = search(noisy, n_samples=1, top_k=1, seed=123, metric="psd strip hist emd")
    assert r4["candidates"][0]["scores"] == r1["candidates"][0]["scores"]


def test_rank_candidates_skips_failures():
    cands = [
        {"token": "a", "error": None, "scores": dict.fromkeys(METRICS, 3.0)},
        {"token": "b", "error": "boom", "scores": dict.fromkeys(METRICS)},
        {"token": "c", "error": None, "scores": dict.fromkeys(METRICS, 1.0)},
        {"token": "d", "error": None, "scores": {m: float("nan") for m in METRICS}},
        {"token": "e", "error": None, "scores": {m: float("inf") for m in METRICS}},
    ]
    assert rank_candidates(cands, DEFAULT_METRIC, 10) == ["c", "a", "e"]
    assert rank_candidates(cands, "random mse", 1) == ["c"]


# --------------------------------------------------------------------------- selection


def _const(v, shape=(8, 8, 3)):
    return np.full(shape, v, dtype=np.float32)


def test_select_output_picks_the_middle():
    assert select_output([_const(0.2), _const(0.5), _const(0.8)]) == 1
    assert select_output([_const(0.8), _const(0.2), _const(0.5)]) == 2
    assert select_output([_const(0.1), _const(0.15), _const(0.9)]) == 1  # mean 0.383


def test_select_output_metric_weighting():
    outs = [_const(0.2), _const(0.5), _const(0.8)]
    # weights (max - s) / (max - min): 1, 0.5, 0 -> average 0.3 -> output 0 (0.2)
    assert select_output(outs, scores=[1.0, 2.0, 3.0]) == 0
    assert np.allclose(weighted_average(outs, [1.0, 2.0, 3.0]), 0.3)
    # equal scores: plain mean
    assert select_output(outs, scores=[5.0, 5.0, 5.0]) == 1
    with pytest.raises(ValueError):
        select_output(outs, scores=[1.0, 2.0])


def test_select_output_small():
    pytest.importorskip("PIL")
    outs = [_const(v, (128, 192, 3)) for v in (0.2, 0.5, 0.8)]
    assert select_output(outs, small=True) == 1
    assert select_output([o[:, :, 0] for o in outs], small=True) == 1


def test_small_size_and_resize():
    assert small_size(512, 512) == (64, 64)
    assert small_size(512, 768) == (64, 96)
    assert small_size(481, 321) == (95, 64)  # truncation, like astype(int32)
    img = _smooth(128, 128, 3)
    r = resize_image(img, (64, 64))
    assert r.shape == (64, 64, 3) and r.dtype == np.float32
    assert abs(float(r.mean()) - float(img.mean())) < 0.01
    assert resize_image(img[:, :, 0], (64, 32)).shape == (64, 32)
    assert np.allclose(resize_image(img, (128, 128)), img.astype(np.float32))


def test_module_docstring_mentions_sources():
    doc = isnas.__doc__
    for key in ("random_search.py", "isnasdip.sh", "utils/funcs.py", "closest_to_average", "Deviations"):
        assert key in doc
