import numpy as np
import pytest
from conftest import write_png16
from PIL import Image

from dipkit.images import (
    ImageError,
    central_crop,
    crop_to_multiple,
    prepare_dataset,
    read_image,
    save_png,
    to_float,
)
from dipkit.io import load_stack
from dipkit.manifest import DatasetFile


def _png(path, arr, mode=None):
    Image.fromarray(arr, mode=mode).save(path)
    return path


def test_crop_to_multiple_matches_paper_convention():
    img = np.arange(321 * 481).reshape(321, 481, 1)
    out = crop_to_multiple(img, 32)
    assert out.shape[:2] == (320, 480)
    # (481 - 480) // 2 == 0: the last column and row are dropped
    np.testing.assert_array_equal(out, img[:320, :480])
    portrait = np.zeros((481, 321, 3))
    assert crop_to_multiple(portrait, 32).shape == (480, 320, 3)
    odd = np.arange(70 * 70).reshape(70, 70, 1)
    np.testing.assert_array_equal(crop_to_multiple(odd, 32), odd[3:67, 3:67])
    with pytest.raises(ImageError, match="smaller than the crop multiple"):
        crop_to_multiple(np.zeros((20, 64, 3)), 32)


def test_central_crop_is_the_central_square():
    img = np.arange(70 * 90).reshape(70, 90, 1)
    np.testing.assert_array_equal(central_crop(img, 64), img[3:67, 13:77])
    assert central_crop(img, 70).shape == (70, 70, 1)
    with pytest.raises(ValueError, match=r"crop 71 is larger than the image \(90x70\)"):
        central_crop(img, 71)


def test_save_png_rounds_to_8_bits(tmp_path):
    img = np.array([[[0.0], [0.5]], [[1.0], [1.7]]], np.float32)  # [2, 2, 1]; 1.7 is clipped
    save_png(tmp_path / "g.png", img)
    assert read_image(tmp_path / "g.png").tolist() == [[[0], [128]], [[255], [255]]]
    rgb = np.zeros((2, 3, 3), np.float32)
    save_png(tmp_path / "c.png", rgb)
    assert read_image(tmp_path / "c.png").shape == (2, 3, 3)


def test_read_image_channels_and_errors(tmp_path):
    rgb = _png(tmp_path / "rgb.png", np.full((8, 9, 3), 7, np.uint8))
    gray = _png(tmp_path / "gray.png", np.full((8, 9), 3, np.uint8))
    assert read_image(rgb, 3).shape == (8, 9, 3)
    assert read_image(gray, 1).shape == (8, 9, 1)
    with pytest.raises(ImageError, match=r"gray.png: image is grayscale but its dataset is RGB"):
        read_image(gray, 3)
    with pytest.raises(ImageError, match=r"rgb.png: image is RGB but its dataset is grayscale"):
        read_image(rgb, 1)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match=r"junk.png: not a readable image"):
        read_image(junk)
    truncated = tmp_path / "trunc.png"
    big = _png(tmp_path / "big.png", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    truncated.write_bytes(big.read_bytes()[:500])
    with pytest.raises(ImageError, match=r"trunc.png: not a readable image"):
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
    with pytest.raises(ImageError, match=r"b_real.png: 66x64 pixels, but its clean pair"):
        prepare_dataset(bad, tmp_path, tmp_path / "bad.npz")
    unpaired = files + [DatasetFile("P", "c", "noisy", "a_real.png", channels=3)]
    with pytest.raises(ImageError, match="image 'c': the clean half of the pair is missing"):
        prepare_dataset(unpaired, tmp_path, tmp_path / "bad.npz")
    assert not (tmp_path / "bad.npz").exists()


# --------------------------------------------------------------------------- every Pillow mode


RNG = np.random.default_rng(3)
GRAY8 = RNG.integers(0, 256, (6, 7), dtype=np.uint8)
RGB8 = RNG.integers(0, 256, (6, 7, 3), dtype=np.uint8)
GRAY16 = RNG.integers(0, 65536, (6, 7), dtype=np.uint16)


def _write(tmp_path, case):
    """``(file, expected array [H, W, C])`` for a case that is read."""
    if case == "L":
        return _png(tmp_path / "a.png", GRAY8), GRAY8[..., None]
    if case == "1":
        bits = GRAY8 > 127
        Image.fromarray(bits).save(tmp_path / "a.png")
        return tmp_path / "a.png", (bits * 255).astype(np.uint8)[..., None]
    if case in ("I;16", "I;16B"):
        path = tmp_path / "a.tif"
        Image.frombytes(case, (7, 6), GRAY16.astype("<u2" if case == "I;16" else ">u2").tobytes()).save(path)
        return path, GRAY16[..., None]
    if case == "I;16 png":
        return _png(tmp_path / "a.png", GRAY16), GRAY16[..., None]
    if case == "I pgm":  # 16-bit PGM, opened by Pillow in mode I
        path = tmp_path / "a.pgm"
        path.write_bytes(b"P5\n7 6\n65535\n" + GRAY16.astype(">u2").tobytes())
        return path, GRAY16[..., None]
    if case == "F":
        values = (GRAY16 / 65535.0).astype(np.float32)
        Image.fromarray(values, mode="F").save(tmp_path / "a.tif")
        return tmp_path / "a.tif", values[..., None]
    if case == "RGB":
        return _png(tmp_path / "a.png", RGB8), RGB8
    if case in ("RGBA", "LA"):
        base = RGB8 if case == "RGBA" else GRAY8[..., None]
        arr = np.concatenate([base, np.full(base.shape[:2] + (1,), 255, np.uint8)], axis=2)
        Image.fromarray(arr, mode=case).save(tmp_path / "a.png")
        return tmp_path / "a.png", base
    if case == "RGBX":
        Image.fromarray(RGB8).convert("RGBX").save(tmp_path / "a.tif")
        return tmp_path / "a.tif", RGB8
    if case == "YCbCr":
        im = Image.fromarray(RGB8).convert("YCbCr")
        im.save(tmp_path / "a.tif")
        return tmp_path / "a.tif", np.asarray(im.convert("RGB"))
    if case in ("P", "P gray"):
        src = Image.fromarray(GRAY8).convert("RGB") if case == "P gray" else Image.fromarray(RGB8)
        im = src.quantize(64)
        im.save(tmp_path / "a.png")
        rgb = np.asarray(im.convert("RGB"))
        return tmp_path / "a.png", rgb[..., :1] if case == "P gray" else rgb
    if case == "MPO":  # a camera JPEG with a preview frame: its first frame is the picture
        first, preview = Image.fromarray(RGB8), Image.fromarray(RGB8[:3, :3])
        first.save(tmp_path / "a.mpo", format="MPO", save_all=True, append_images=[preview], quality=95)
        with Image.open(tmp_path / "a.mpo") as im:
            return tmp_path / "a.mpo", np.asarray(im.convert("RGB"))
    raise AssertionError(case)


READ_CASES = [
    "L",
    "1",
    "I;16",
    "I;16B",
    "I;16 png",
    "I pgm",
    "F",
    "RGB",
    "RGBA",
    "LA",
    "RGBX",
    "YCbCr",
    "P",
    "P gray",
    "MPO",
]


@pytest.mark.parametrize("case", READ_CASES)
def test_every_readable_mode_keeps_its_true_depth(tmp_path, case):
    path, expected = _write(tmp_path, case)
    got = read_image(path)
    assert got.dtype == expected.dtype and got.shape == expected.shape, (got.dtype, got.shape)
    np.testing.assert_array_equal(got, expected)
    if got.dtype == np.uint16:
        assert to_float(got).max() == pytest.approx(GRAY16.max() / 65535.0)
    if case == "P gray":  # in an RGB dataset, a palette of grays is an RGB image
        np.testing.assert_array_equal(read_image(path, 3), np.repeat(expected, 3, axis=2))


def _refused(tmp_path, case):
    """A file of a refused kind."""
    if case == "I 32-bit":
        Image.fromarray(np.full((6, 7), 70000, np.int32)).save(tmp_path / "a.tif")  # would wrap mod 65536
        return tmp_path / "a.tif"
    if case == "RGB 16-bit":
        return write_png16(tmp_path / "a.png", RNG.integers(0, 65536, (6, 7, 3), dtype=np.uint16))
    if case == "LA 16-bit":
        return write_png16(tmp_path / "a.png", np.full((6, 7, 2), 65535, np.uint16))
    if case == "PPM 16-bit":
        (tmp_path / "a.ppm").write_bytes(b"P6\n7 6\n65535\n" + np.full((6, 7, 3), 1000, ">u2").tobytes())
        return tmp_path / "a.ppm"
    if case in ("CMYK", "LAB"):
        Image.fromarray(RGB8).convert(case).save(tmp_path / "a.tif")
        return tmp_path / "a.tif"
    if case == "transparent":
        arr = np.concatenate([RGB8, np.full((6, 7, 1), 200, np.uint8)], axis=2)
        Image.fromarray(arr, mode="RGBA").save(tmp_path / "a.png")
        return tmp_path / "a.png"
    if case == "animated GIF":
        frames = [Image.fromarray(RGB8), Image.fromarray(255 - RGB8)]
        frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
        return tmp_path / "a.gif"
    if case == "multi-page TIFF":
        frames = [Image.fromarray(GRAY8)] * 3
        frames[0].save(tmp_path / "a.tif", save_all=True, append_images=frames[1:])
        return tmp_path / "a.tif"
    if case == "float outside [0, 1]":
        Image.fromarray(np.full((6, 7), 2.0, np.float32), mode="F").save(tmp_path / "a.tif")
        return tmp_path / "a.tif"
    if case == "float NaN":
        Image.fromarray(np.full((6, 7), np.nan, np.float32), mode="F").save(tmp_path / "a.tif")
        return tmp_path / "a.tif"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case, message",
    [
        (
            "I 32-bit",
            "a 32-bit integer image (mode I), whose value range is unknown; save it as 8- or 16-bit",
        ),
        ("RGB 16-bit", "a 16-bit image of mode RGB, which Pillow reads at 8 bits only; save it as 8-bit RGB"),
        ("LA 16-bit", "a 16-bit image of mode RGBA, which Pillow reads at 8 bits only"),
        ("PPM 16-bit", "a 16-bit image of mode RGB, which Pillow reads at 8 bits only"),
        ("CMYK", "a CMYK (print) image; convert it to RGB with its colour profile"),
        ("LAB", "a CIELAB image; save it as RGB"),
        ("transparent", "image has transparency (mode RGBA); save it without alpha"),
        ("animated GIF", "the file holds 2 frames (an animation or a multi-page file)"),
        ("multi-page TIFF", "the file holds 3 frames (an animation or a multi-page file)"),
        ("float outside [0, 1]", "a 32-bit float image needs finite values in [0, 1], got 2..2"),
        ("float NaN", "a 32-bit float image needs finite values in [0, 1], got NaN or infinity"),
    ],
)
def test_other_modes_are_refused_by_name(tmp_path, case, message):
    path = _refused(tmp_path, case)
    with pytest.raises(ImageError) as err:
        read_image(path)
    assert str(err.value).startswith(f"{path}: {message}"), str(err.value)
