"""The :class:`Method` record: an architecture plus the settings of its fits.

Torch-free (the Snakefile resolves methods to plan the fits); networks are built only
when a fit runs (:mod:`dipkit.runner`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from dipkit.noise import NoiseSpec

#: Input perturbation of the paper's code: 1/30 for sigma 25, 1/20 for sigma 50 and for
#: Poisson zeta 0.2. Our choices where the code is silent (marked in README, *Methods*):
#: Gaussian sigma <= 25 -> 1/30, above -> 1/20; Poisson zeta 0.01 (about 23 dB noisy PSNR)
#: -> 1/30, zeta >= 0.1 (about 14 dB, like sigma 50) -> 1/20; real noise (PolyU, ~36 dB) -> 1/30.
PAPER_REG_NOISE = MappingProxyType({"gaussian25": 1 / 30, "gaussian50": 1 / 20, "poisson0.2": 1 / 20})


def default_reg_noise(noise_id: str) -> float:
    """Input perturbation std of DIP-style methods for a noise setting."""
    if noise_id in PAPER_REG_NOISE:
        return PAPER_REG_NOISE[noise_id]
    spec = NoiseSpec.parse(noise_id)
    if spec.kind == "gaussian":
        return 1 / 30 if spec.level <= 25 else 1 / 20
    if spec.kind == "poisson":
        return 1 / 30 if spec.level < 0.1 else 1 / 20
    return 1 / 30


#: Per-image width sources a method can use.
WIDTH_SOURCES = ("labels", "predicted")


@dataclass(frozen=True)
class Method:
    """A method: which network, and how it is fitted.

    :ivar name: registry name (``[a-z0-9_]+``), used in paths and tables.
    :ivar label: the column name in the paper's tables (``DIP``, ``DD``, ``CD``, ``Ours``).
    :ivar architecture: a name in :data:`dipkit.models.ARCHITECTURES`.
    :ivar arch_options: options for :func:`dipkit.models.build_model`.
    :ivar width_source: where a per-image width comes from: ``"labels"`` (released
        Texture-DIP labels), ``"predicted"`` (the texture classifier's prediction), or
        ``None`` for a fixed network (``arch_options["width"]`` is then the width, and the
        fallback for images without a label otherwise).
    :ivar reg_noise_std: input perturbation std: a number, ``"paper"`` for
        :func:`default_reg_noise`, or a mapping noise id -> std (key ``default`` optional).
    :ivar input_scale: the input code is ``U[0, 1) * input_scale``.
    :ivar iterations, lr, exp_weight: Adam steps, learning rate, output EMA weight.
    :ivar noise: restrict the method's fits to these noise ids (``None``: all).
    :ivar kind: ``"dip"`` (a network fitted by :mod:`dipkit.fit`), ``"classical"`` (a
        non-learnt denoiser from :mod:`dipkit.classical`, ``architecture`` names it) or
        ``"isnas"`` (ISNAS-DIP: an architecture search per image, then ``top_k`` fits).
    :ivar search: settings of the ISNAS-DIP search (``n_samples``, ``top_k``, ``metric``).
    """

    name: str
    label: str
    description: str
    architecture: str
    arch_options: Mapping[str, Any] = field(default_factory=dict)
    width_source: str | None = None
    reg_noise_std: float | str | Mapping[str, float] = "paper"
    input_scale: float = 0.1
    iterations: int = 3000
    lr: float = 0.01
    exp_weight: float = 0.99
    noise: tuple[str, ...] | None = None  # fit only at these noise ids (None: every one)
    kind: str = "dip"  # "dip": a network fitted by dipkit.fit; "classical": dipkit.classical; "isnas"
    search: Mapping[str, Any] = field(default_factory=dict)  # kind "isnas": n_samples, top_k, metric

    def reg_noise_for(self, noise_id: str) -> float:
        """The perturbation std this method uses for a noise setting."""
        r = self.reg_noise_std
        if isinstance(r, str):
            if r != "paper":
                raise ValueError(f"method {self.name}: reg_noise_std must be a number, 'paper' or a mapping")
            return default_reg_noise(noise_id)
        if isinstance(r, Mapping):
            if noise_id in r:
                return float(r[noise_id])
            if "default" in r:
                return float(r["default"])
            return default_reg_noise(noise_id)
        return float(r)

    def with_overrides(self, overrides: Mapping[str, Any]) -> Method:
        """A copy with config overrides applied (``arch_options`` are merged, not replaced).

        ``width`` is ``"labels"``, ``"predicted"`` or a fixed number.
        """
        overrides = dict(overrides or {})
        allowed = {
            "arch_options",
            "reg_noise_std",
            "input_scale",
            "iterations",
            "lr",
            "exp_weight",
            "width",
            "noise",
        }
        if self.kind == "isnas":
            allowed.add("search")
        unknown = set(overrides) - allowed
        if unknown:
            raise ValueError(
                f"methods.{self.name}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}"
            )
        arch = dict(self.arch_options)
        arch.update(overrides.pop("arch_options", {}) or {})
        if "search" in overrides:
            unknown = set(overrides["search"] or {}) - set(self.search)
            if unknown:
                raise ValueError(
                    f"methods.{self.name}.search: unknown keys {sorted(unknown)}; allowed: {sorted(self.search)}"
                )
            overrides["search"] = MappingProxyType({**self.search, **(overrides["search"] or {})})
        if overrides.get("noise") is not None:
            overrides["noise"] = tuple(overrides["noise"])
        width = overrides.pop("width", None)
        source = self.width_source
        if width in WIDTH_SOURCES:
            if "width" not in arch:
                raise ValueError(f"methods.{self.name}.width: {self.architecture} has no width option")
            source = width
        elif width is not None:
            if isinstance(width, bool) or not isinstance(width, int) or width < 1:
                raise ValueError(
                    f"methods.{self.name}.width: expected {' or '.join(map(repr, WIDTH_SOURCES))} or a "
                    f"positive integer, got {width!r}"
                )
            arch["width"] = width
            source = None
        return replace(self, arch_options=MappingProxyType(arch), width_source=source, **overrides)
