"""Width sources: which hourglass width a per-image method uses for an image.

``labels`` -- the released Texture-DIP labels (shipped as ``dipkit/data/texture_dip_labels.csv``,
derived from the upstream folder names). The NoRepeat variant (one label per image) is the
one the authors used for Table 2. Images without a NoRepeat label get, in order: their
wRepeat label when it is unique, else the method's fallback width (``arch_options.width``,
64 by default -- the most common label). Concretely: CBSD68 ``0004``/``0005`` take their
wRepeat label 64; ``0048`` (wRepeat 64 and 128) and every PolyU or user image take the
fallback. The source of every width is recorded in the results (``width_source``).
"""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"


def _image_id(source_dataset: str, filename: str, cbsd_names: dict[str, str]) -> tuple[str, str]:
    stem = filename.rsplit(".", 1)[0]
    if source_dataset == "Set9":
        stem = stem.removeprefix("CBM3D_")
        return "Set9", stem if stem.startswith("kodim") else f"image_{stem}"
    if source_dataset == "Set12":
        return "Set12", stem.removeprefix("Set12_")
    if source_dataset == "CBSD68":
        return "CBSD68", cbsd_names[filename].rsplit(".", 1)[0]
    raise ValueError(f"unknown source dataset {source_dataset!r} in the Texture-DIP labels")


@cache
def texture_labels() -> dict[str, dict[tuple[str, str], tuple[int, ...]]]:
    """``{variant: {(dataset, image id): sorted widths}}`` for NoRepeat and wRepeat."""
    with open(DATA / "cbsd68_index_names.csv", newline="") as fh:
        cbsd = {r["texture_dip_name"]: r["cbsd68_file"] for r in csv.DictReader(fh)}
    out: dict[str, dict[tuple[str, str], set[int]]] = {}
    with open(DATA / "texture_dip_labels.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            key = _image_id(r["source_dataset"], r["filename"], cbsd)
            out.setdefault(r["variant"], {}).setdefault(key, set()).add(int(r["width_label"]))
    return {v: {k: tuple(sorted(w)) for k, w in d.items()} for v, d in out.items()}


def label_width(dataset: str, image: str, fallback: int) -> tuple[int, str]:
    """Width for an image from the released labels: ``(width, source)``.

    ``source`` is ``labels:NoRepeat``, ``labels:wRepeat`` or ``fallback``.
    """
    labels = texture_labels()
    key = (dataset, image)
    if key in labels["NoRepeat"]:
        return labels["NoRepeat"][key][0], "labels:NoRepeat"
    rep = labels["wRepeat"].get(key, ())
    if len(rep) == 1:
        return rep[0], "labels:wRepeat"
    return int(fallback), "fallback"


def write_width_files(predicted_csv: str, targets: list[tuple[str, str, str]]) -> None:
    """Write one width file (a single integer) per ``(dataset, image, path)`` target.

    Widths come from the classifier's ``predicted_widths.csv`` (columns ``dataset``,
    ``image``, ``width``). One small file per image lets Snakemake rerun exactly the fits
    whose predicted width changed.

    :raises KeyError: naming an image the classifier gave no width for.
    """
    from dipkit.io import write_text

    with open(predicted_csv, newline="") as fh:
        widths = {(r["dataset"], r["image"]): int(r["width"]) for r in csv.DictReader(fh)}
    for dataset, image, path in targets:
        if (dataset, image) not in widths:
            raise KeyError(f"{predicted_csv}: no predicted width for {dataset}/{image}")
        write_text(path, f"{widths[(dataset, image)]}\n")
