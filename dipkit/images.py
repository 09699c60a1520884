"""Reading, checking and cropping images; the *prepare* stage.

Numpy images in dipkit are ``[H, W, C]`` arrays (``C`` = 1 for grayscale, 3 for RGB).
Prepared stacks keep the source's integer pixels (``uint8``, or ``uint16`` for 16-bit
files) so they stay exact and small; :func:`to_float` converts them to float32 in
``[0, 1]`` exactly as the paper's code does (``x / 255``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from dipkit.io import save_stack
from dipkit.manifest import DatasetFile

_GRAY_MODES = {"L", "I;16", "I;16B", "I;16L", "I"}


class ImageError(ValueError):
    """An image file is unreadable or does not fit its dataset; the message names the file."""


def read_image(path: str | Path, channels: int | None = None) -> np.ndarray:
    """Read an image file into an ``[H, W, C]`` integer array.

    :param path: PNG, JPEG, TIFF or BMP file.
    :param channels: expected channel count (1 or 3); ``None`` keeps the file's own.
    :raises ImageError: unreadable or truncated file, unsupported mode, or a grayscale
        image where RGB is expected (and vice versa).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("P", "PA"):
                im = im.convert("RGBA" if "transparency" in im.info or mode == "PA" else "RGB")
                mode = im.mode
            if mode in ("RGBA", "LA"):
                alpha = np.asarray(im.getchannel("A"))
                if alpha.min() < alpha.max() or alpha.min() not in (255, 65535):
                    raise ImageError(f"{path}: image has transparency (mode {mode}); save it without alpha")
                im = im.convert("RGB" if mode == "RGBA" else "L")
                mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im).astype(np.uint16)
            elif mode in ("L", "RGB"):
                arr = np.asarray(im)
            else:
                raise ImageError(f"{path}: unsupported image mode {mode!r} (expected grayscale or RGB)")
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


def center_crop(img: np.ndarray, multiple: int) -> np.ndarray:
    """Crop each side down to a multiple of ``multiple`` around the centre.

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
            arrays[f"{f.role}/{f.image}"] = center_crop(img, crop_multiple)
        except ImageError as err:
            raise ImageError(f"{path}: {err}") from None
    for image, roles in raw_shapes.items():
        if "noisy" in roles or any(f.role == "noisy" for f in files):
            if set(roles) != {"clean", "noisy"}:
                missing = ({"clean", "noisy"} - set(roles)).pop()
                raise ImageError(f"image {image!r}: the {missing} half of the pair is missing")
            (hc, wc, pc), (hn, wn, pn) = roles["clean"], roles["noisy"]
            if (hc, wc) != (hn, wn):
                raise ImageError(f"{pn}: {wn}x{hn} pixels, but its clean pair {pc} has {wc}x{hc}; pairs must align")
    save_stack(out_path, arrays)
    return {k: v.shape for k, v in arrays.items()}


def load_clean(stack: Mapping[str, np.ndarray], image: str) -> np.ndarray:
    """The clean image of ``image`` from a loaded prepared stack, float32 ``[H, W, C]``."""
    return to_float(stack[f"clean/{image}"])
