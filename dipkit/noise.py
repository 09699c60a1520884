"""Noise models: Gaussian (sigma on the 0-255 scale), Poisson (scale zeta) and real noise.

Each noise setting has a string id used in file names and Snakemake wildcards:
``gaussian25``, ``poisson0.01``, ``real``. Synthetic noise follows the paper's code:

* Gaussian: ``y = clip(x + N(0, (sigma/255)^2), 0, 1)`` computed in float64 and stored as
  float32 -- clipped, not quantised; independent per pixel and channel.
* Poisson: ``y = clip(Poisson(x / zeta) * zeta, 0, 1)`` stored as float32.
* Real: the camera's noisy image of a pair (PolyU), loaded as is.

Random draws use :class:`numpy.random.Generator` (PCG64) seeded per image by
:func:`dipkit.seeding.derive_seed` from the config seed, dataset, image and noise id, so a
noisy image is bit-identical on every run (for a given numpy release).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from dipkit.seeding import derive_seed

NOISE_KINDS = ("gaussian", "poisson", "real")
NOISE_ID_PATTERN = r"gaussian[0-9]+(?:\.[0-9]+)?|poisson[0-9]+(?:\.[0-9]+)?|real"


def format_level(value: float) -> str:
    """Canonical text of a noise level: ``25`` for 25.0, ``0.01`` for 0.010."""
    v = float(value)
    if v <= 0 or not np.isfinite(v):
        raise ValueError(f"noise level must be a positive finite number, got {value!r}")
    return str(int(v)) if v.is_integer() else np.format_float_positional(v, trim="-")  # 1e-06 -> 0.000001


@dataclass(frozen=True)
class NoiseSpec:
    """A noise setting: ``kind`` in :data:`NOISE_KINDS`, ``level`` (sigma or zeta; None for real)."""

    kind: str
    level: float | None = None

    def __post_init__(self):
        if self.kind not in NOISE_KINDS:
            raise ValueError(f"unknown noise kind {self.kind!r}; expected one of {NOISE_KINDS}")
        if (self.kind == "real") != (self.level is None):
            raise ValueError(
                f"noise kind {self.kind!r} {'takes no' if self.kind == 'real' else 'needs a'} level"
            )
        if self.level is not None:
            format_level(self.level)

    @property
    def id(self) -> str:
        """The id used in paths and wildcards, e.g. ``gaussian25``."""
        return self.kind if self.level is None else f"{self.kind}{format_level(self.level)}"

    @property
    def synthetic(self) -> bool:
        return self.kind != "real"

    @classmethod
    def parse(cls, noise_id: str) -> NoiseSpec:
        """Inverse of :attr:`id`."""
        if noise_id == "real":
            return cls("real")
        m = re.fullmatch(r"(gaussian|poisson)([0-9]+(?:\.[0-9]+)?)", noise_id)
        if not m:
            raise ValueError(f"not a noise id: {noise_id!r} (expected e.g. gaussian25, poisson0.1, real)")
        return cls(m.group(1), float(m.group(2)))


def noise_seed(config_seed: int, dataset: str, image: str, noise_id: str) -> int:
    """Seed of the noise draw for one image."""
    return derive_seed(config_seed, "noise", dataset, image, noise_id)


def add_noise(clean: np.ndarray, spec: NoiseSpec, seed: int) -> np.ndarray:
    """Return a noisy float32 copy of ``clean``.

    :param numpy.ndarray clean: image ``[H, W, C]``, float in ``[0, 1]``.
    :param NoiseSpec spec: a synthetic noise setting.
    :param int seed: seed of the draw (see :func:`noise_seed`).
    :return: float32 array of the same shape, in ``[0, 1]``.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    x = np.asarray(clean, dtype=np.float32)
    if spec.kind == "gaussian":
        noisy = x + rng.normal(0.0, spec.level / 255.0, size=x.shape)
    elif spec.kind == "poisson":
        noisy = rng.poisson(x.astype(np.float64) / spec.level) * spec.level
    else:
        raise ValueError("real noise is not synthesised; it is loaded from the dataset's noisy images")
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)


def make_noisy_stack(
    prepared_path: str,
    out_path: str,
    dataset: str,
    images: list[str],
    spec: NoiseSpec,
    config_seed: int,
) -> None:
    """The *noise* stage: write the noisy version of every image of a dataset.

    :param prepared_path: the dataset's prepared stack (:func:`dipkit.images.prepare_dataset`).
    :param out_path: ``.npz`` stack of float32 ``[H, W, C]`` noisy images keyed by image id.
    :param spec: synthetic noise, or ``real`` to take the pair's noisy half.
    """
    from dipkit.images import to_float
    from dipkit.io import load_stack, save_stack

    stack = load_stack(prepared_path)
    out = {}
    for image in images:
        if spec.synthetic:
            clean = to_float(stack[f"clean/{image}"])
            out[image] = add_noise(clean, spec, noise_seed(config_seed, dataset, image, spec.id))
        else:
            key = f"noisy/{image}"
            if key not in stack:
                raise ValueError(f"{prepared_path}: image {image!r} has no real noisy image")
            out[image] = to_float(stack[key])
    save_stack(out_path, out)
