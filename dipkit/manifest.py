"""The dataset manifest: which files make up each built-in dataset.

``dipkit/data/datasets.tsv`` lists every file of Set9 (9 images), Set12 (12), CBSD68 (68)
and PolyU (100 noisy/clean pairs) with its public URL and sha256. Columns:

``dataset``, ``image`` (the image id used in file names and wildcards), ``role`` (``clean``,
or ``noisy`` for the real-noise half of a PolyU pair), ``file`` (file name inside the
dataset folder of a mirror), ``sha256``, ``bytes``, ``width``, ``height``, ``channels``
(1 grayscale, 3 RGB) and ``url``.

User datasets are folders of clean images declared in the config (``datasets.<name>.path``);
:func:`scan_folder` lists them. This module uses the standard library only: the Snakefile
imports it.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

MANIFEST_PATH = Path(__file__).parent / "data" / "datasets.tsv"

#: File endings accepted in a user dataset folder.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

#: An image id, as :func:`image_id` makes them from file names: letters, digits and marks of
#: any script, non-ASCII symbols (``☃``), ``_``, ``+`` and ``-``; it starts with neither of the
#: last three. Ids name files and Snakemake wildcards, so they hold no space, dot or slash.
IMAGE_ID_PATTERN = r"(?:[A-Za-z0-9]|[^\x00-\x7f\s])(?:[A-Za-z0-9_+-]|[^\x00-\x7f\s])*"


@dataclass(frozen=True)
class DatasetFile:
    """One file of a dataset."""

    dataset: str
    image: str
    role: str  # "clean" or "noisy"
    file: str
    sha256: str | None = None
    url: str | None = None
    channels: int | None = None
    path: str | None = None  # set for user datasets: the file on disk


@cache
def _manifest_rows() -> tuple[dict[str, str], ...]:
    """The rows of ``data/datasets.tsv``, read once."""
    with open(MANIFEST_PATH, newline="", encoding="utf-8") as fh:
        return tuple(csv.DictReader(fh, delimiter="\t"))


@cache
def builtin_files() -> tuple[DatasetFile, ...]:
    """Every file of the built-in datasets, in manifest order."""
    return tuple(
        DatasetFile(
            dataset=r["dataset"],
            image=r["image"],
            role=r["role"],
            file=r["file"],
            sha256=r["sha256"],
            url=r["url"],
            channels=int(r["channels"]),
        )
        for r in _manifest_rows()
    )


@cache
def builtin_sizes() -> dict[tuple[str, str], tuple[int, int]]:
    """``{(dataset, image): (width, height)}`` of the built-in clean images, before cropping."""
    return {
        (r["dataset"], r["image"]): (int(r["width"]), int(r["height"]))
        for r in _manifest_rows()
        if r["role"] == "clean"
    }


def builtin_datasets() -> dict[str, tuple[DatasetFile, ...]]:
    """Map each built-in dataset name to its files."""
    out: dict[str, list[DatasetFile]] = {}
    for f in builtin_files():
        out.setdefault(f.dataset, []).append(f)
    return {k: tuple(v) for k, v in out.items()}


def _id_char(ch: str) -> str:
    if ch.isascii():
        return ch if ch.isalnum() or ch in "_+-" else "_"
    return ch if unicodedata.category(ch)[0] in "LMNS" else "_"  # letters, marks, digits, symbols


def image_id(stem: str) -> str:
    """Turn a file stem into an image id (:data:`IMAGE_ID_PATTERN`).

    The stem is put in Unicode normal form NFC (macOS writes ``ö`` as ``o`` + a combining
    mark); letters, marks and digits of any script, non-ASCII symbols, ``_``, ``+`` and ``-``
    stay, anything else (spaces, dots, ASCII punctuation) becomes ``_``:
    ``my phötö ☃`` -> ``my_phötö_☃``.
    """
    return "".join(_id_char(ch) for ch in unicodedata.normalize("NFC", stem))


def _scan_images(dataset: str, root: Path, key: str, channels: int, role: str) -> dict[str, DatasetFile]:
    files = sorted(
        p
        for p in root.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise ValueError(
            f"config key {key}: folder {str(root)!r} holds no image "
            f"(expected files ending in {', '.join(IMAGE_SUFFIXES)}; names starting with a dot are skipped)"
        )
    seen: dict[str, DatasetFile] = {}
    for p in files:
        iid = image_id(p.stem)
        if not re.fullmatch(IMAGE_ID_PATTERN, iid):
            raise ValueError(
                f"{p}: cannot make an image id of the file name (got {iid!r}; an id starts with a "
                f"letter, digit or symbol); rename the file"
            )
        if iid in seen:
            raise ValueError(
                f"config key {key}: files {seen[iid].file!r} and {p.name!r} map to the same image id "
                f"{iid!r}; rename one of them"
            )
        seen[iid] = DatasetFile(
            dataset=dataset, image=iid, role=role, file=p.name, channels=channels, path=str(p.resolve())
        )
    return seen


def scan_folder(dataset: str, folder: str | Path, channels: int) -> tuple[DatasetFile, ...]:
    """List the images of a user dataset folder (non-recursive, sorted by name).

    Files whose names start with a dot are skipped (hidden files, such as the ``._photo.png``
    companions macOS writes on foreign disks).

    A folder with subfolders ``clean/`` and ``noisy/`` is a real-noise dataset like PolyU:
    files are paired by image id (the file name without extension), and every file needs
    its pair.

    :raises ValueError: when the folder does not exist, holds no image, two files map to the
        same image id, or a real-noise file has no pair; the message names the config key
        ``datasets.<name>.path`` or the file.
    """
    key = f"datasets.{dataset}.path"
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"config key {key}: folder {str(root)!r} does not exist")
    if (root / "clean").is_dir() and (root / "noisy").is_dir():
        clean = _scan_images(dataset, root / "clean", key, channels, "clean")
        noisy = _scan_images(dataset, root / "noisy", key, channels, "noisy")
        for have, other, name in ((clean, noisy, "noisy"), (noisy, clean, "clean")):
            for iid, f in have.items():
                if iid not in other:
                    raise ValueError(
                        f"{f.path}: no {name} image pairs with it in {root / name} "
                        f"(real-noise folders pair clean/ and noisy/ files by name)"
                    )
        return tuple(f for iid in clean for f in (clean[iid], noisy[iid]))
    return tuple(_scan_images(dataset, root, key, channels, "clean").values())


def files_from_entries(
    dataset: str, entries: list[dict], paths: list[str] | None = None
) -> list[DatasetFile]:
    """Rebuild :class:`DatasetFile` records from a rule's ``files`` param.

    :param entries: dicts with ``image``, ``role``, ``file``, ``channels`` (the param).
    :param paths: for user datasets, the files on disk in the same order; ``None`` or empty
        for built-in datasets, whose files sit in the download folder.
    """
    return [
        DatasetFile(dataset=dataset, path=paths[i] if paths else None, **e) for i, e in enumerate(entries)
    ]
