import numpy as np
import pytest
from PIL import Image

from dipkit.images import ImageError, center_crop, prepare_dataset, read_image, to_float
from dipkit.io import load_stack
from dipkit.manifest import DatasetFile


def _png(path, arr, mode=None):
    Image.fromarray(arr, mode=mode).save(path)
    return path


def test_center_crop_matches_paper_convention():
    img = np.arange(321 * 481).reshape(321, 481, 1)
    out = center_crop(img, 32)
    assert out.shape[:2] == (320, 480)
    # (481 - 480) // 2 == 0: the last column and row are dropped
    np.testing.assert_array_equal(out, img[:320, :480])
    portrait = np.zeros((481, 321, 3))
    assert center_crop(portrait, 32).shape == (480, 320, 3)
    odd = np.arange(70 * 70).reshape(70, 70, 1)
    np.testing.assert_array_equal(center_crop(odd, 32), odd[3:67, 3:67])
    with pytest.raises(ImageError, match="smaller than the crop multiple"):
        center_crop(np.zeros((20, 64, 3)), 32)


def test_read_image_channels_and_errors(tmp_path):
    rgb = _png(tmp_path / "rgb.png", np.full((8, 9, 3), 7, np.uint8))
    gray = _png(tmp_path / "gray.png", np.full((8, 9), 3, np.uint8))
    assert read_image(rgb, 3).shape == (8, 9, 3)
    assert read_image(gray, 1).shape == (8, 9, 1)
    with pytest.raises(ImageError, match="gray.png: image is grayscale but its dataset is RGB"):
        read_image(gray, 3)
    with pytest.raises(ImageError, match="rgb.png: image is RGB but its dataset is grayscale"):
        read_image(rgb, 1)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match="junk.png: not a readable image"):
        read_image(junk)
    truncated = tmp_path / "trunc.png"
    big = _png(tmp_path / "big.png", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    truncated.write_bytes(big.read_bytes()[:500])
    with pytest.raises(ImageError, match="trunc.png: not a readable image"):
        read_image(truncated)


def test_to_float_is_exact_division():
    x = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    np.testing.assert_array_equal(to_float(x), x.astype(np.float32) / np.float32(255))
    assert to_float(np.array([[[65535]]], np.uint16))[0, 0, 0] == 1.0


def test_prepare_pairs_stay_aligned(tmp_path):
    rng = np.random.default_rng(1)
    clean = rng.integers(0, 255, (70, 66, 3), dtype=np.uint8)
    noisy = clean.copy()
    noisy[0, 0] = 0
    _png(tmp_path / "a_mean.png", clean)
    _png(tmp_path / "a_real.png", noisy)
    files = [
        DatasetFile("P", "a", "clean", "a_mean.png", channels=3),
        DatasetFile("P", "a", "noisy", "a_real.png", channels=3),
    ]
    shapes = prepare_dataset(files, tmp_path, tmp_path / "out.npz", crop_multiple=32)
    assert shapes == {"clean/a": (64, 64, 3), "noisy/a": (64, 64, 3)}
    stack = load_stack(tmp_path / "out.npz")
    np.testing.assert_array_equal(stack["clean/a"], clean[3:67, 1:65])
    np.testing.assert_array_equal(stack["noisy/a"], noisy[3:67, 1:65])

    _png(tmp_path / "b_mean.png", clean)
    _png(tmp_path / "b_real.png", clean[:64])
    bad = [
        DatasetFile("P", "b", "clean", "b_mean.png", channels=3),
        DatasetFile("P", "b", "noisy", "b_real.png", channels=3),
    ]
    with pytest.raises(ImageError, match="b_real.png: 66x64 pixels, but its clean pair"):
        prepare_dataset(bad, tmp_path, tmp_path / "bad.npz")
    unpaired = files + [DatasetFile("P", "c", "noisy", "a_real.png", channels=3)]
    with pytest.raises(ImageError, match="image 'c': the clean half of the pair is missing"):
        prepare_dataset(unpaired, tmp_path, tmp_path / "bad.npz")
    assert not (tmp_path / "bad.npz").exists()
