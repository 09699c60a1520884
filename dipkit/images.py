"""Reading, checking, cropping and writing images; the *prepare* stage.

Numpy images in dipkit are ``[H, W, C]`` arrays (``C`` = 1 for grayscale, 3 for RGB).
Prepared stacks keep the source's pixels at their true depth (``uint8``; ``uint16`` for
16-bit grayscale files; ``float32`` in [0, 1] for 32-bit float grayscale files) so they stay
exact and small; :func:`to_float` converts them to float32 in ``[0, 1]`` exactly as the
paper's code does (``x / 255``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from dipkit.io import atomic_path, save_stack
from dipkit.manifest import DatasetFile


class ImageError(ValueError):
    """An image file is unreadable or does not fit its dataset; the message names the file."""

    #: the message says all there is to say: job logs show it without a traceback
    explained = True


#: Pillow modes that are read, and the mode each is converted to first (None: as it is).
_READ_MODES = {
    "1": "L",
    "L": None,
    "P": None,
    "PA": None,
    "LA": None,
    "La": "LA",
    "RGB": None,
    "RGBA": None,
    "RGBa": "RGBA",
    "RGBX": "RGB",
    "YCbCr": "RGB",
    "I": None,
    "F": None,
    "I;16": None,
    "I;16L": None,
    "I;16B": None,
    "I;16N": None,
}
_INT_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")
#: Pillow modes that are refused, with what to do instead.
_REFUSED_MODES = {
    "CMYK": "a CMYK (print) image; convert it to RGB with its colour profile",
    "LAB": "a CIELAB image; save it as RGB",
    "HSV": "an HSV image; save it as RGB",
}


def _file_bits(im) -> int:
    """Bits per sample of the file as Pillow's decoder arguments show them (8 if they do not).

    Pillow decodes 16-bit colour PNG, TIFF and PPM files to 8-bit ``RGB`` / ``RGBA``; the raw
    mode (``RGB;16B``) or the PPM maximum value still tells the file's depth."""
    bits = 8
    for tile in im.tile or ():
        args = tile[3]
        raw = args if isinstance(args, str) else (args[0] if args and isinstance(args[0], str) else "")
        if ";16" in raw:
            bits = max(bits, 16)
        if ";32" in raw:
            bits = max(bits, 32)
        if im.format == "PPM" and isinstance(args, tuple) and len(args) > 1 and isinstance(args[1], int):
            bits = max(bits, 16 if args[1] > 255 else 8)
    return bits


def _decode(path: Path, im, channels: int | None = None) -> np.ndarray:
    """Pixels of an open Pillow image, ``[H, W]`` or ``[H, W, C]`` at their true depth (see
    :func:`read_image`); opaque alpha is dropped. A palette of grays gives a grayscale image
    unless ``channels`` asks for RGB.

    :raises ImageError: for everything :func:`read_image` refuses.
    """
    mode = im.mode
    if mode in _REFUSED_MODES:
        raise ImageError(f"{path}: {_REFUSED_MODES[mode]} (expected a grayscale or RGB image)")
    if mode not in _READ_MODES:
        raise ImageError(f"{path}: unsupported image mode {mode!r} (expected a grayscale or RGB image)")
    frames = int(getattr(im, "n_frames", 1) or 1)
    if frames > 1 and im.format != "MPO":  # MPO: a camera JPEG; its first frame is the picture
        raise ImageError(
            f"{path}: the file holds {frames} frames (an animation or a multi-page file); "
            f"save the one you want as an image of its own"
        )
    bits = _file_bits(im)
    if bits > 8 and mode not in (*_INT_MODES, "F"):
        raise ImageError(
            f"{path}: a {bits}-bit image of mode {mode}, which Pillow reads at 8 bits only; "
            f"save it as 8-bit RGB, or as 16-bit grayscale without alpha"
        )
    if mode == "I" and bits == 32:
        raise ImageError(
            f"{path}: a 32-bit integer image (mode I), whose value range is unknown; save it as 8- or 16-bit"
        )
    im.load()
    if _READ_MODES[mode]:
        im = im.convert(_READ_MODES[mode])
        mode = im.mode
    gray = False
    if mode in ("P", "PA"):
        rgb = np.asarray(im.convert("RGB"))
        gray = channels != 3 and bool((rgb == rgb[..., :1]).all())
        im = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("RGBA", "LA"):
        if np.asarray(im.getchannel("A")).min() < 255:
            raise ImageError(f"{path}: image has transparency (mode {mode}); save it without alpha")
        im = im.convert("RGB" if mode == "RGBA" else "L")
    arr = np.asarray(im)
    if gray:  # a palette of grays only: a grayscale image
        arr = arr[..., 0]
    if mode in _INT_MODES:
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ImageError(f"{path}: 16-bit image with values {arr.min()}..{arr.max()} outside 0..65535")
        arr = arr.astype(np.uint16)
    elif mode == "F":
        arr = arr.astype(np.float32)
        finite = bool(np.isfinite(arr).all())
        if not finite or (arr.size and (arr.min() < 0 or arr.max() > 1)):
            raise ImageError(
                f"{path}: a 32-bit float image needs finite values in [0, 1], got "
                + (f"{np.nanmin(arr):g}..{np.nanmax(arr):g}" if finite else "NaN or infinity")
            )
    return arr


def read_image(path: str | Path, channels: int | None = None) -> np.ndarray:
    """Read an image file into an ``[H, W, C]`` array at its true bit depth.

    ``uint8`` for 1-bit (0 / 255) and 8-bit files; ``uint16`` for 16-bit grayscale; ``float32``
    in [0, 1] for 32-bit float grayscale. Palette images become RGB, or grayscale when every
    colour is a gray (unless ``channels`` is 3); YCbCr becomes RGB; opaque alpha is dropped.
    Refused, each with a message naming the file and what is expected: transparency; CMYK,
    CIELAB and HSV images; 16-bit colour and 32-bit integer images (Pillow cannot read them at
    their depth); files of several frames (animations, multi-page TIFFs; a camera's MPO JPEG is
    read as its first, main picture).

    :param path: PNG, JPEG, TIFF or BMP file (or any other format Pillow reads).
    :param channels: expected channel count (1 or 3); ``None`` keeps the file's own.
    :raises ImageError: an unreadable or truncated file, any case above, or a grayscale image
        where RGB is expected (and vice versa).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            arr = _decode(path, im, channels)
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{path}: not a readable image ({err})") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    got = arr.shape[2]
    if channels is not None and got != channels:
        kinds = {1: "grayscale", 3: "RGB"}
        raise ImageError(
            f"{path}: image is {kinds.get(got, got)} but its dataset is {kinds.get(channels, channels)}"
        )
    return np.ascontiguousarray(arr)


def crop_to_multiple(img: np.ndarray, multiple: int) -> np.ndarray:
    """Crop each side of an ``[H, W, C]`` image down to a multiple of ``multiple`` around the centre.

    Follows the paper's ``crop_image``: the crop starts at ``(size - new) // 2``, so a
    481x321 CBSD68 image loses its last column and row and becomes 480x320.

    :raises ImageError: if a side is smaller than ``multiple``.
    """
    h, w = img.shape[:2]
    nh, nw = h - h % multiple, w - w % multiple
    if nh == 0 or nw == 0:
        raise ImageError(f"image of {w}x{h} pixels is smaller than the crop multiple {multiple}")
    top, left = (h - nh) // 2, (w - nw) // 2
    return img[top : top + nh, left : left + nw]


def central_crop(img: np.ndarray, size: int) -> np.ndarray:
    """The central ``size x size`` pixels of an ``[H, W, C]`` image (a fit spec's ``crop``).

    :raises ValueError: if ``size`` is larger than a side.
    """
    h, w = img.shape[:2]
    if size > min(h, w):
        raise ValueError(f"crop {size} is larger than the image ({w}x{h})")
    top, left = (h - size) // 2, (w - size) // 2
    return img[top : top + size, left : left + size]


def to_float(img: np.ndarray) -> np.ndarray:
    """Integer image -> float32 in ``[0, 1]`` (``uint8 / 255``, ``uint16 / 65535``)."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / np.float32(255.0)
    if img.dtype == np.uint16:
        return (img.astype(np.float64) / 65535.0).astype(np.float32)
    if np.issubdtype(img.dtype, np.floating):
        return img.astype(np.float32)
    raise TypeError(f"unsupported pixel type {img.dtype}")


def prepare_dataset(
    files: Sequence[DatasetFile],
    source_dir: str | Path | None,
    out_path: str | Path,
    crop_multiple: int = 32,
) -> dict[str, tuple[int, ...]]:
    """Read, check and centre-crop every image of a dataset into one stack.

    Stack keys are ``clean/<image>`` and, for paired datasets, ``noisy/<image>``. Both
    halves of a pair must have the same size before cropping, so they stay aligned.

    :param files: the dataset's files (from the plan).
    :param source_dir: folder holding downloaded files (``<source_dir>/<file>``); user
        datasets carry their own absolute ``path`` and ignore it.
    :param out_path: the ``.npz`` stack to write (atomically).
    :return: ``{key: shape}`` of what was written.
    """
    arrays: dict[str, np.ndarray] = {}
    raw_shapes: dict[str, dict[str, tuple[int, int]]] = {}
    for f in files:
        path = Path(f.path) if f.path else Path(source_dir) / f.file
        img = read_image(path, f.channels)
        raw_shapes.setdefault(f.image, {})[f.role] = (img.shape[0], img.shape[1], path)
        try:
            arrays[f"{f.role}/{f.image}"] = crop_to_multiple(img, crop_multiple)
        except ImageError as err:
            raise ImageError(f"{path}: {err}") from None
    for image, roles in raw_shapes.items():
        if "noisy" in roles or any(f.role == "noisy" for f in files):
            if set(roles) != {"clean", "noisy"}:
                missing = ({"clean", "noisy"} - set(roles)).pop()
                raise ImageError(f"image {image!r}: the {missing} half of the pair is missing")
            (hc, wc, pc), (hn, wn, pn) = roles["clean"], roles["noisy"]
            if (hc, wc) != (hn, wn):
                raise ImageError(
                    f"{pn}: {wn}x{hn} pixels, but its clean pair {pc} has {wc}x{hc}; pairs must align"
                )
    save_stack(out_path, arrays)
    return {k: v.shape for k, v in arrays.items()}


def load_clean(stack: Mapping[str, np.ndarray], image: str) -> np.ndarray:
    """The clean image of ``image`` from a loaded prepared stack, float32 ``[H, W, C]``."""
    return to_float(stack[f"clean/{image}"])


def save_png(path: str | Path, img: np.ndarray) -> None:
    """Write a float ``[H, W, C]`` image in ``[0, 1]`` as an 8-bit PNG (atomically)."""
    from PIL import Image

    arr = np.clip(np.rint(np.asarray(img, np.float64) * 255.0), 0, 255).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(tmp, format="PNG")
