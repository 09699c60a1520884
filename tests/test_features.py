"""Texture features: GLCM statistics, radial PSD, spectral slope, per-dataset tables."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import synthetic_image
from scipy.ndimage import gaussian_filter

from dipkit import features as F
from dipkit.io import save_stack


def _flat(h=96, w=96):
    return np.full((h, w, 1), 0.5, dtype=np.float32)


def _noise(h=96, w=96, seed=0, sigma=0.15):
    rng = np.random.default_rng(seed)
    return np.clip(0.5 + sigma * rng.standard_normal((h, w, 1)), 0, 1).astype(np.float32)


def _stripes(h=96, w=96, period=8.0, vertical=True):
    coord = np.arange(w if vertical else h, dtype=np.float64)
    wave = 0.5 + 0.4 * np.cos(2 * np.pi * coord / period)
    img = np.tile(wave[None, :], (h, 1)) if vertical else np.tile(wave[:, None], (1, w))
    return img[:, :, None].astype(np.float32)


def _smooth(h=128, w=128, seed=0):
    rng = np.random.default_rng(seed)
    g = gaussian_filter(rng.standard_normal((h, w)), 6, mode="wrap")
    g = (g - g.min()) / (g.max() - g.min())
    return g[:, :, None].astype(np.float32)


def test_feature_names_are_stable_and_include_the_paper_features():
    names = F.feature_names()
    props = F.glcm_props()
    assert props[:6] == ("contrast", "dissimilarity", "homogeneity", "ASM", "energy", "correlation")
    assert len(names) == len(props) * len(F.DISTANCES) * len(F.ANGLES_DEG) + F.PSD_BINS + 1
    assert len(set(names)) == len(names)
    assert set(F.PAPER_FEATURES) <= set(names)
    assert names[-F.PSD_BINS - 1] == "psd_000" and names[-2] == "psd_063" and names[-1] == "psd_slope"
    assert "glcm_asm_d4_a135" in names
    feats = F.image_features(synthetic_image(64, 64, 3, seed=1))
    assert list(feats) == names
    assert all(isinstance(v, float) and np.isfinite(v) for v in feats.values())
    assert len(F.feature_names(psd_bins=32)) == len(names) - 32


def test_glcm_orders_flat_stripes_noise():
    flat, stripes, noise = (F.glcm_features(x) for x in (_flat(), _stripes(), _noise(sigma=0.25)))
    smooth = F.glcm_features(_smooth())
    c = "glcm_contrast_d1_a0"
    assert flat[c] == 0.0 < smooth[c] < stripes[c] < noise[c]
    h = "glcm_homogeneity_d1_a45"
    assert flat[h] == 1.0 > smooth[h] > noise[h]
    r = "glcm_correlation_d1_a0"
    assert smooth[r] > 0.95 and abs(noise[r]) < 0.1
    # vertical stripes are constant along a column: no contrast at 90 degrees
    assert stripes["glcm_contrast_d1_a90"] == 0.0
    assert flat["glcm_entropy_d1_a0"] == 0.0 < noise["glcm_entropy_d1_a0"]


def test_glcm_angles_follow_transposition():
    img = synthetic_image(48, 80, 1, seed=3)
    a, b = F.glcm_features(img), F.glcm_features(img.transpose(1, 0, 2))
    for prop in ("contrast", "homogeneity", "correlation"):
        for d in F.DISTANCES:
            # transposing swaps the 0 and 90 degree offsets; 45/135 map onto themselves
            assert a[f"glcm_{prop}_d{d}_a0"] == pytest.approx(b[f"glcm_{prop}_d{d}_a90"], rel=1e-12)
            assert a[f"glcm_{prop}_d{d}_a45"] == pytest.approx(b[f"glcm_{prop}_d{d}_a45"], rel=1e-12)
            assert a[f"glcm_{prop}_d{d}_a135"] == pytest.approx(b[f"glcm_{prop}_d{d}_a135"], rel=1e-12)


def test_spectral_slope_white_noise_flat_smooth_steep():
    white = F.psd_slope(_noise(128, 128, seed=1))
    smooth = F.psd_slope(_smooth())
    natural_like = F.psd_slope(synthetic_image(128, 128, 1, seed=0))
    assert abs(white) < 0.2
    assert smooth < -3.0
    assert smooth < natural_like < white
    assert F.psd_slope(_flat()) == pytest.approx(0.0, abs=1e-9)


def test_psd_level_does_not_depend_on_image_size():
    sigma = 0.1
    expected = 10 * (np.log(sigma**2) - np.euler_gamma)  # E[ln] of an exponential periodogram
    levels = []
    for size in (64, 256):
        rng = np.random.default_rng(size)
        img = (0.5 + sigma * rng.standard_normal((size, size)))[:, :, None]
        psd = F.radial_psd(img)
        assert psd.shape == (F.PSD_BINS,)
        levels.append(psd[8:].mean())
    assert levels[0] == pytest.approx(expected, abs=1.0)
    assert levels[1] == pytest.approx(expected, abs=0.3)


def test_nonsquare_and_transposed_images_share_one_frequency_axis():
    img = synthetic_image(64, 96, 3, seed=2)
    a = F.radial_psd(img)
    b = F.radial_psd(img.transpose(1, 0, 2))
    assert a.shape == b.shape == (F.PSD_BINS,)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)
    fa, fb = F.image_features(img), F.image_features(img.transpose(1, 0, 2))
    assert list(fa) == list(fb)
    assert fa["psd_slope"] == pytest.approx(fb["psd_slope"], abs=1e-9)
    # different sizes give equal-length vectors
    assert (
        F.radial_psd(synthetic_image(320, 480, 1)).shape == F.radial_psd(synthetic_image(256, 256, 1)).shape
    )


@pytest.mark.parametrize("shape", [(64, 96), (96, 64), (64, 64), (160, 96)])
@pytest.mark.parametrize("vertical", [True, False])
def test_psd_peak_sits_at_the_true_frequency(shape, vertical):
    # a cosine of period 8 pixels is 0.125 cycles/pixel whatever the image shape or its direction;
    # the paper's code (centre at ((W-1)/2, (W-1)/2)) puts it elsewhere for non-square images
    img = _stripes(*shape, period=8.0, vertical=vertical)
    psd = F.radial_psd(img)
    peak = F.psd_frequencies()[np.argmax(psd)]
    assert abs(peak - 0.125) <= 0.5 / F.PSD_BINS


def test_small_images_and_bin_counts():
    img = synthetic_image(32, 32, 1, seed=4)  # frequency step 1/32 is wider than a 64-bin ring
    psd = F.radial_psd(img)
    assert psd.shape == (64,) and np.isfinite(psd).all()
    assert F.radial_psd(img, bins=16).shape == (16,)
    np.testing.assert_allclose(F.psd_frequencies(4), [0.0625, 0.1875, 0.3125, 0.4375])
    norm = F.radial_psd(img, normalize=True)
    assert norm.min() == 0.0 and norm.max() == 1.0
    with pytest.raises(ValueError):
        F.radial_psd(img, bins=1)


def test_rgb_uses_luma_and_gray_is_used_as_is():
    rgb = synthetic_image(64, 80, 3, seed=5).astype(np.float64)
    luma = (0.2989 * rgb[..., 0] + 0.5870 * rgb[..., 1] + 0.1140 * rgb[..., 2])[:, :, None]
    assert F.image_features(rgb) == pytest.approx(F.image_features(luma), rel=1e-9, abs=1e-9)
    gray = synthetic_image(64, 80, 1, seed=6)
    as_rgb = np.repeat(gray, 3, axis=2)
    # the paper's luma weights sum to 0.9999, so a gray image stored as RGB is 0.01 % darker:
    # a few pixels fall into the next lower level
    assert F.glcm_features(as_rgb) == pytest.approx(F.glcm_features(gray), rel=0.03, abs=1e-3)
    np.testing.assert_allclose(F.radial_psd(as_rgb), F.radial_psd(gray), atol=0.01)
    assert F.glcm_features(gray) == F.glcm_features(gray[:, :, 0])
    # integer images are scaled like dipkit.images.to_float; 8-bit gray quantises back exactly
    u8 = (gray * 255).round().astype(np.uint8)
    assert F.glcm_features(u8) == F.glcm_features(u8.astype(np.float32) / 255)
    np.testing.assert_array_equal(F.quantize(F.to_gray(u8)), u8[:, :, 0])
    with pytest.raises(ValueError):
        F.to_gray(np.zeros((8, 8, 2)))


def test_dataset_features_writes_a_parquet(tmp_path):
    rng = np.random.default_rng(0)
    a = (synthetic_image(64, 96, 3, seed=1) * 255).round().astype(np.uint8)
    b = (rng.uniform(size=(32, 32, 3)) * 255).astype(np.uint8)
    stack = tmp_path / "toy.npz"
    save_stack(stack, {"clean/a": a, "clean/b": b, "noisy/a": a[::-1]})
    out = tmp_path / "features" / "toy.parquet"
    df = F.dataset_features(stack, "Toy", ["b", "a"], out, psd_bins=16)
    assert out.is_file()
    assert [p.name for p in out.parent.iterdir()] == ["toy.parquet"]  # no partial file left
    back = pd.read_parquet(out)
    pd.testing.assert_frame_equal(back, df)
    assert list(df.columns) == [*F.META_COLUMNS, *F.feature_names(16)]
    assert df["image"].tolist() == ["b", "a"] and set(df["dataset"]) == {"Toy"}
    assert df[["height", "width", "channels"]].values.tolist() == [[32, 32, 3], [64, 96, 3]]
    assert all(back[c].dtype == np.float64 for c in F.feature_names(16))
    expected = F.image_features(a.astype(np.float32) / 255, psd_bins=16)
    assert df.iloc[1][list(expected)].tolist() == pytest.approx(list(expected.values()))
    every = F.dataset_features(stack, "Toy", None, None, psd_bins=16)
    assert every["image"].tolist() == ["a", "b"]


def test_features_from_files_match_the_prepared_crop(tmp_path):
    from PIL import Image

    from dipkit.images import crop_to_multiple
    from dipkit.manifest import DatasetFile

    rgb = (synthetic_image(70, 100, 3, seed=8) * 255).round().astype(np.uint8)
    gray = (synthetic_image(64, 40, 1, seed=9) * 255).round().astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(gray[:, :, 0]).save(tmp_path / "b.png")
    own = tmp_path / "elsewhere.png"
    Image.fromarray(rgb[::-1]).save(own)
    files = [
        DatasetFile("Toy", "a", "clean", "a.png", channels=3),
        DatasetFile("Toy", "a", "noisy", "b.png", channels=1),  # skipped
        DatasetFile("Toy", "b", "clean", "b.png", channels=1),
        DatasetFile("Toy", "c", "clean", "c.png", channels=3, path=str(own)),
    ]
    out = tmp_path / "f.parquet"
    df = F.features_from_files(files, tmp_path, out, crop_multiple=32, psd_bins=16)
    assert df["image"].tolist() == ["a", "b", "c"]
    assert df[["height", "width", "channels"]].values.tolist() == [[64, 96, 3], [64, 32, 1], [64, 96, 3]]
    expected = F.image_features(crop_to_multiple(rgb, 32), psd_bins=16)
    assert df.iloc[0][list(expected)].tolist() == pytest.approx(list(expected.values()))
    pd.testing.assert_frame_equal(pd.read_parquet(out), df)
    stack = tmp_path / "s.npz"
    save_stack(stack, {"clean/a": crop_to_multiple(rgb, 32), "clean/b": crop_to_multiple(gray, 32)})
    via_stack = F.dataset_features(stack, "Toy", ["a", "b"], None, psd_bins=16)
    pd.testing.assert_frame_equal(via_stack, df.iloc[:2])
    empty = F.features_from_files([], tmp_path, None, psd_bins=16)
    assert list(empty.columns) == [*F.META_COLUMNS, *F.feature_names(16)] and empty.empty


def test_modules_import_neither_torch_nor_snakemake():
    code = (
        "import sys, dipkit.features, dipkit.classifier.stage; "
        "bad = [m for m in ('torch', 'snakemake') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
