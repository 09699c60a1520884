"""NAS-DIP (Chen et al., ECCV 2020) and its search space, as used by ISNAS-DIP (Arican et al.,
CVPR 2022); the "NAS" and "ISNAS" baselines of Table 2.

Clean re-implementation of the denoising network of ``YunChunChen/NAS-DIP-pytorch``
(``DIP/models/model_denoising.py:Model``, upsampling cells from ``gen_upsample_layer.py`` /
``NAS/operations.py``) and of its generalisation with a searchable skip-connection matrix
(``DIP/models/cross_skip.py:skip``, which ``ozgurkara99/ISNAS-DIP`` samples in
``random_search.py`` through ``utils/model_utils.py``). No upstream code is used.

A point of the search space, :class:`NASArchitecture`, has two parts.

**Upsampling cell** (:class:`UpsampleCell`), used by every ×2 upsampling of the network:

    primitive (×2, channels unchanged) -> activation -> conv op (C -> C) -> activation

* ``primitive``: ``bilinear``, ``bicubic``, ``nearest`` (``nn.Upsample(scale_factor=2)``,
  ``align_corners=False``), ``pixel_shuffle`` (``nn.PixelShuffle(2)``: C -> C/4 channels) or
  ``trans_conv`` (``ConvTranspose2d(C, C, k, stride=2, padding=k//2, output_padding=1)`` with
  bias);
* ``conv``: ``conv`` (``Conv2d(k, padding=k//2)``, zero padding, no bias), ``trans_conv``
  (stride-1 ``ConvTranspose2d`` with bias), ``split_stack_sum`` (split the channels into 4
  equal groups, add them up, then ``Conv2d(C/4 -> C_out, k)`` without bias), ``sep_conv``
  (depthwise ``k x k`` then pointwise ``1x1``, no biases), ``depth_wise_conv``
  (``Conv2d(groups=C_out)``, no bias) or ``identity``;
* ``kernel_size`` in {1, 3, 5, 7} for the conv op (and the ``trans_conv`` primitive);
* ``activation`` in {``none``, ``ReLU``, ``LeakyReLU`` (slope 0.2)}, applied after *both* the
  primitive and the conv op (nothing for ``identity``);
* ``conv_first`` (``pixel_shuffle`` only): the conv op maps C -> 4C *before* the shuffle
  (upstream's "DepthToSpace - Second"); otherwise it maps C/4 -> C after it.

The dilation rates listed in upstream's ``genotypes.py`` are never used by its cells.

Upstream numbers the cells with one ``model_index`` (:func:`decode_cell_index`, the same
table as ``NAS/index_to_model_mapping.log``):

* ``0 <= i < 252``: ``primitive = [bilinear, bicubic, nearest, pixel_shuffle][i // 63]`` and,
  with ``r = i % 63``: for ``r < 60``, ``conv = [conv, trans_conv, split_stack_sum, sep_conv,
  depth_wise_conv][r // 12]``, ``kernel = [1, 3, 5, 7][(r // 3) % 4]``; ``r = 60, 61, 62`` is
  ``identity`` (kernel 1); ``activation = [none, ReLU, LeakyReLU][r % 3]``;
* ``252 <= i < 312``: ``pixel_shuffle`` with ``conv_first``; ``r = i - 252`` decoded as above;
* ``312 <= i < 324``: ``trans_conv`` primitive, ``identity`` conv op,
  ``kernel = [1, 3, 5, 7][(i - 312) // 3]``, ``activation = [...][i % 3]``.

27 of these cells cannot be built (:data:`INVALID_CELL_INDICES`): 237-248 and 300-311
(``depth_wise_conv`` next to a pixel shuffle: the channel count is not divisible by the
groups) and 249-251 (pixel shuffle + identity leaves C/4 channels).

NAS-DIP's searched denoising cell is **158** = ``nearest -> LeakyReLU -> split_stack_sum,
conv 5x5 (C/4 -> C) -> LeakyReLU``.

**Skip matrix** ``skips[r][c]`` (``L x L`` of 0/1, ``L`` = levels = 5), row ``r`` = decoder
level at resolution ``H / 2**r`` (row 0 = the full-resolution output level), column ``c`` =
source feature: ``c = 0`` the input code ``z`` (``H``), ``c = j`` the encoder output
``enc_j`` (``H / 2**j``). A 1 adds the source, brought to the row's resolution, to the
decoder sum of that level:

* ``c == r``: same-scale skip ``conv1x1 -> BN -> act`` (``skip_{r+1}`` upstream);
* ``c < r``: chain of downsampling blocks ``conv_k(stride 2) -> BN -> act``, one per level
  (``skip_down_{c+1}_{c+2}``, ...; each block is shared by all chains through it);
* ``c > r``: chain of upsampling cells (``skip_up_{c+1}_{c}``, ...; shared likewise).

ISNAS-DIP flattens it row-major into its model names (``0_{index}_iteration_4000_sigma_25_skip_
{25 bits}``, :attr:`NASArchitecture.isnas_name`). NAS-DIP's denoising model uses the same-scale
skips and every cross-scale *upsampling* skip: the upper triangle ``c >= r``
(:func:`nas_dip_skips`: ``11111 01111 00111 00011 00001``).

**Network** (width ``C``, all levels equal; ``k`` = 3)::

    enc_j  = conv_k(stride 2) -> BN -> act -> conv_k -> BN -> act          j = 1..L
    sum_r  = up_{r+1}(x_{r+1}) + sum over c of skips[r][c] * moved(source_c -> level r)
    x_r    = dec_{r+1}(sum_r),  x_L = enc_L
    dec    = BN -> conv_k -> BN -> act -> conv_k -> BN -> act [-> conv1x1 -> BN -> act]
    output = conv1x1(C -> out) -> sigmoid

with ``up_{r+1}`` an upsampling cell (C -> C). Padding (reflection by default) applies to the
encoder/decoder/skip convolutions; the cells' convolutions zero-pad, as upstream. The input
code has the image's spatial size (``in_channels`` = 32 by default; NAS-DIP feeds
``U[0, 0.1)`` noise). BatchNorm always uses batch statistics (:func:`~.layers.make_norm`).

**Unused modules.** Upstream always creates the whole module set: 5 encoder, 5 same-scale
skip, 4 ``skip_up``, 4 ``skip_down``, 5 ``up`` and 5 decoder blocks, whatever the skip matrix.
NAS-DIP's model never uses its 4 ``skip_down`` blocks (480,768 parameters at width 128), but
they count in its published size. With ``keep_unused=True`` (default) the same modules are
created in the same order, so that parameter counts match upstream: **4,405,635** parameters
for RGB (4,405,377 for grayscale), Table 2's "4.4M"; the unused blocks get no gradient.
With the same ``torch.manual_seed`` the initial weights equal upstream's. ``keep_unused=False``
creates only the blocks the skip matrix uses (3,924,867 for NAS-DIP on RGB).

Forward: a source moved through a chain of shared blocks is computed once per target level
and reused (upstream recomputes the same chains; the values are identical).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch
from torch import nn

from .layers import (
    DIPNetwork,
    canonical_activation,
    canonical_padding,
    make_activation,
    make_conv,
    make_norm,
)

__all__ = [
    "CELL_PRIMITIVES",
    "CELL_CONVS",
    "CELL_KERNELS",
    "CELL_ACTIVATIONS",
    "NUM_CELL_INDICES",
    "ISNAS_NUM_CELL_INDICES",
    "INVALID_CELL_INDICES",
    "NAS_DIP_MODEL_INDEX",
    "UpsampleCell",
    "NASArchitecture",
    "decode_cell_index",
    "cell_index",
    "is_valid_cell_index",
    "nas_dip_skips",
    "nas_dip_architecture",
    "resolve_nas_architecture",
    "sample_nas_architecture",
    "describe",
    "check_nas_dip_size",
    "NASUpsampleCell",
    "NASDIPCore",
    "NASDIP",
    "build_nas_dip",
]

#: spatial primitives of the upsampling cell (upstream ``genotypes.UPSAMPLE_PRIMITIVE``)
CELL_PRIMITIVES: tuple[str, ...] = ("bilinear", "bicubic", "nearest", "pixel_shuffle", "trans_conv")
#: channel-mixing ops of the cell (upstream ``genotypes.UPSAMPLE_CONV``)
CELL_CONVS: tuple[str, ...] = (
    "conv",
    "trans_conv",
    "split_stack_sum",
    "sep_conv",
    "depth_wise_conv",
    "identity",
)
#: kernel sizes of the cell's conv op
CELL_KERNELS: tuple[int, ...] = (1, 3, 5, 7)
#: activations of the cell (``LeakyReLU`` has slope 0.2)
CELL_ACTIVATIONS: tuple[str, ...] = ("none", "ReLU", "LeakyReLU")

#: cell indices upstream's ``gen_layer`` decodes: ``0 .. 323``
NUM_CELL_INDICES = 324
#: ISNAS-DIP samples cell indices ``0 .. 320`` (the 321 rows of ``index_to_model_mapping.log``)
ISNAS_NUM_CELL_INDICES = 321
#: cells that cannot be built (depthwise conv next to a pixel shuffle; shuffle + identity)
INVALID_CELL_INDICES: frozenset[int] = frozenset(range(237, 252)) | frozenset(range(300, 312))
#: NAS-DIP's searched cell for denoising (``model_denoising.Model(model_index=158)``)
NAS_DIP_MODEL_INDEX = 158

_SPLIT = 4  # groups of split_stack_sum
_ISNAS_NAME = re.compile(r"^\d+_(\d+)_.*_skip_([01]+)$")


# ----------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class UpsampleCell:
    """One ×2 upsampling cell of the NAS-DIP search space (see the module docstring).

    :ivar primitive: one of :data:`CELL_PRIMITIVES`.
    :ivar conv: one of :data:`CELL_CONVS`.
    :ivar kernel_size: one of :data:`CELL_KERNELS` (conv op; also the ``trans_conv`` primitive).
    :ivar activation: one of :data:`CELL_ACTIVATIONS`.
    :ivar conv_first: ``pixel_shuffle`` only: conv op (C -> 4C) before the shuffle.
    """

    primitive: str
    conv: str
    kernel_size: int
    activation: str
    conv_first: bool = False

    def __post_init__(self) -> None:
        if self.primitive not in CELL_PRIMITIVES:
            raise ValueError(
                f"unknown cell primitive {self.primitive!r}; allowed: {', '.join(CELL_PRIMITIVES)}"
            )
        if self.conv not in CELL_CONVS:
            raise ValueError(f"unknown cell conv op {self.conv!r}; allowed: {', '.join(CELL_CONVS)}")
        if isinstance(self.kernel_size, bool) or int(self.kernel_size) not in CELL_KERNELS:
            raise ValueError(f"cell kernel_size must be one of {CELL_KERNELS}, got {self.kernel_size!r}")
        object.__setattr__(self, "kernel_size", int(self.kernel_size))
        act = canonical_activation(self.activation)
        if act not in CELL_ACTIVATIONS:
            raise ValueError(
                f"cell activation must be one of {', '.join(CELL_ACTIVATIONS)}, got {self.activation!r}"
            )
        object.__setattr__(self, "activation", act)
        object.__setattr__(self, "conv_first", bool(self.conv_first))
        if self.conv_first and self.primitive != "pixel_shuffle":
            raise ValueError("conv_first is only defined for the pixel_shuffle primitive")

    @classmethod
    def from_index(cls, index: int) -> "UpsampleCell":
        """The cell upstream numbers ``index`` (same as :func:`decode_cell_index`)."""
        return decode_cell_index(index)

    @classmethod
    def from_spec(cls, spec: Union["UpsampleCell", int, Mapping[str, Any]]) -> "UpsampleCell":
        """A cell from a cell, an upstream index or a dict of the fields (``index`` key ignored)."""
        if isinstance(spec, UpsampleCell):
            return spec
        if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
            return decode_cell_index(int(spec))
        if isinstance(spec, Mapping):
            keys = ("primitive", "conv", "kernel_size", "activation", "conv_first")
            unknown = sorted(set(spec) - set(keys) - {"index"})
            if unknown:
                raise ValueError(f"unknown cell field(s) {unknown}; allowed: {', '.join(keys)}")
            return cls(**{k: spec[k] for k in keys if k in spec})
        raise ValueError(f"cannot make an upsampling cell from {spec!r}")

    @property
    def index(self) -> int | None:
        """Upstream ``model_index`` of this cell, or ``None`` if it is not in upstream's table."""
        return cell_index(self)

    def to_dict(self) -> dict:
        """Plain-value form (with ``index``), e.g. for logging and JSON."""
        return dict(
            index=self.index,
            primitive=self.primitive,
            conv=self.conv,
            kernel_size=self.kernel_size,
            activation=self.activation,
            conv_first=self.conv_first,
        )

    def describe(self) -> str:
        """One line, e.g. ``'nearest x2 -> LeakyReLU -> split_stack_sum 5x5 -> LeakyReLU'``."""
        act = "" if self.activation == "none" else f" -> {self.activation}"
        k = f"{self.kernel_size}x{self.kernel_size}"
        prim = f"trans_conv {k} x2" if self.primitive == "trans_conv" else f"{self.primitive} x2"
        if self.conv == "identity":
            return prim + act
        conv = f"{self.conv} {k}"
        if self.conv_first:
            return f"{conv} (C->4C){act} -> {prim}{act}"
        return f"{prim}{act} -> {conv}{act}"

    def check(self, channels: int) -> None:
        """Raise :class:`ValueError` unless this cell can map ``channels`` to ``channels``."""
        c = int(channels)
        if self.primitive == "pixel_shuffle":
            if c % 4:
                raise ValueError(
                    f"cell {self.describe()!r}: pixel shuffle needs channels divisible by 4, got {c}"
                )
            if self.conv == "identity":
                raise ValueError(
                    f"cell {self.describe()!r} cannot be built: a pixel shuffle without conv leaves "
                    f"{c // 4} of {c} channels"
                )
            if self.conv == "depth_wise_conv":
                cin, cout = (c, 4 * c) if self.conv_first else (c // 4, c)
                raise ValueError(
                    f"cell {self.describe()!r} cannot be built: a depthwise conv {cin} -> {cout} "
                    f"needs in_channels divisible by groups={cout}"
                )
            cin = c if self.conv_first else c // 4
        else:
            cin = c
        if self.conv == "split_stack_sum" and cin % _SPLIT:
            raise ValueError(
                f"cell {self.describe()!r}: split_stack_sum needs {cin} channels divisible by {_SPLIT}"
            )


def decode_cell_index(index: int) -> UpsampleCell:
    """Decode upstream's ``model_index`` (``gen_upsample_layer.gen_layer``) into a cell.

    :param index: ``0 <= index < 324`` (:data:`NUM_CELL_INDICES`).
    :raises ValueError: out of range. Invalid cells (:data:`INVALID_CELL_INDICES`) decode
        fine; :meth:`UpsampleCell.check` rejects them.
    """
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise ValueError(f"model_index must be an int, got {index!r}")
    i = int(index)
    if not 0 <= i < NUM_CELL_INDICES:
        raise ValueError(f"model_index must be in 0..{NUM_CELL_INDICES - 1}, got {i}")
    if i >= 312:
        r = i - 312
        return UpsampleCell("trans_conv", "identity", CELL_KERNELS[r // 3], CELL_ACTIVATIONS[r % 3])
    if i >= 252:
        prim, r, first = "pixel_shuffle", i - 252, True
    else:
        prim, r, first = CELL_PRIMITIVES[i // 63], i % 63, False
    act = CELL_ACTIVATIONS[r % 3]
    if r >= 60:
        return UpsampleCell(prim, "identity", 1, act)
    return UpsampleCell(prim, CELL_CONVS[r // 12], CELL_KERNELS[(r // 3) % 4], act, conv_first=first)


_CELL_TABLE: dict[UpsampleCell, int] = {}
for _i in range(NUM_CELL_INDICES):
    _CELL_TABLE.setdefault(decode_cell_index(_i), _i)
del _i


def cell_index(cell: UpsampleCell) -> int | None:
    """Upstream ``model_index`` of ``cell`` (inverse of :func:`decode_cell_index`), or ``None``."""
    return _CELL_TABLE.get(cell)


def is_valid_cell_index(index: int, width: int = 128) -> bool:
    """Whether cell ``index`` can be built for ``width`` channels (False out of range)."""
    try:
        decode_cell_index(index).check(width)
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------- architectures


SkipMatrix = tuple[tuple[int, ...], ...]


def nas_dip_skips(levels: int = 5) -> SkipMatrix:
    """NAS-DIP's skip matrix: same-scale skips and every cross-scale upsampling skip
    (``skips[r][c] = 1`` for ``c >= r``)."""
    n = int(levels)
    if n < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    return tuple(tuple(int(c >= r) for c in range(n)) for r in range(n))


_SEPARATORS = re.compile(r"[\s,|/_;-]")


def _levels_of_bits(bits: str) -> int:
    """Side ``L`` of a square skip matrix written as a bit string (at least 1)."""
    n = len(_SEPARATORS.sub("", bits))
    return max(1, int(round(n**0.5)))


def _skip_matrix(skips: Any, levels: int) -> SkipMatrix:
    """Normalise a skip matrix given as a bit string (row-major, separators ignored), a
    nested sequence or an array of 0/1."""
    n = int(levels)
    if isinstance(skips, str):
        bits = _SEPARATORS.sub("", skips)
        if not bits or set(bits) - {"0", "1"}:
            raise ValueError(f"skips string must contain only 0 and 1, got {skips!r}")
        flat = [int(b) for b in bits]
    else:
        try:
            arr = np.asarray(skips)
        except Exception:  # pragma: no cover - exotic inputs
            raise ValueError(f"cannot read a skip matrix from {skips!r}") from None
        if arr.dtype == object or arr.ndim not in (1, 2):
            raise ValueError(f"skips must be a {n}x{n} matrix of 0/1, got {skips!r}")
        if arr.ndim == 2 and arr.shape != (n, n):
            raise ValueError(f"skips must be a {n}x{n} matrix (levels={n}), got shape {arr.shape}")
        flat = arr.reshape(-1).tolist()
        if any(v not in (0, 1) for v in flat):
            raise ValueError(f"skips entries must be 0 or 1, got {skips!r}")
        flat = [int(v) for v in flat]
    if len(flat) != n * n:
        raise ValueError(f"skips must have {n}x{n} = {n * n} entries (levels={n}), got {len(flat)}")
    return tuple(tuple(flat[r * n : (r + 1) * n]) for r in range(n))


@dataclass(frozen=True)
class NASArchitecture:
    """A point of the NAS-DIP / ISNAS-DIP search space: an upsampling cell and a skip matrix.

    :ivar cell: the :class:`UpsampleCell` used by every upsampling of the network.
    :ivar skips: ``L x L`` tuple of 0/1; ``skips[r][c]`` connects source ``c`` (0: input code,
        ``j``: ``enc_j``) to decoder level ``r`` (0: full resolution). See the module docstring.
    """

    cell: UpsampleCell
    skips: SkipMatrix

    def __post_init__(self) -> None:
        object.__setattr__(self, "cell", UpsampleCell.from_spec(self.cell))
        if isinstance(self.skips, str):
            levels = _levels_of_bits(self.skips)
        else:
            levels = len(self.skips)
        object.__setattr__(self, "skips", _skip_matrix(self.skips, levels))

    # -- views
    @property
    def levels(self) -> int:
        """Number of levels ``L`` (the skip matrix is ``L x L``)."""
        return len(self.skips)

    @property
    def model_index(self) -> int | None:
        """Upstream index of the cell (``None`` for a cell outside upstream's table)."""
        return self.cell.index

    @property
    def skip_bits(self) -> str:
        """The skip matrix row-major as a string of 0/1 (ISNAS-DIP's order)."""
        return "".join(str(v) for row in self.skips for v in row)

    @property
    def num_skips(self) -> int:
        """Number of skip connections (ones in the matrix)."""
        return sum(sum(row) for row in self.skips)

    @property
    def token(self) -> str:
        """Compact form ``'<model_index>:<skip bits>'``, e.g. ``'158:1111101111001110001100001'``;
        accepted by :meth:`from_spec`. Cells outside upstream's table are spelled
        ``'<primitive>/<conv>/<k>/<activation>[/conv_first]'``."""
        idx = self.model_index
        if idx is None:
            c = self.cell
            cell = f"{c.primitive}/{c.conv}/{c.kernel_size}/{c.activation}" + (
                "/conv_first" if c.conv_first else ""
            )
        else:
            cell = str(idx)
        return f"{cell}:{self.skip_bits}"

    @property
    def isnas_name(self) -> str:
        """ISNAS-DIP's model name ``'0_<index>_iteration_4000_sigma_25_skip_<bits>'``."""
        if self.model_index is None:
            raise ValueError("this cell has no upstream model_index, so no ISNAS-DIP name")
        return f"0_{self.model_index}_iteration_4000_sigma_25_skip_{self.skip_bits}"

    def to_dict(self) -> dict:
        """Plain-value form: ``model_index``, ``cell`` (dict), ``skips`` (bit string), ``levels``."""
        return dict(
            model_index=self.model_index,
            cell=self.cell.to_dict(),
            skips=self.skip_bits,
            levels=self.levels,
            token=self.token,
        )

    def describe(self) -> str:
        """One line for logs; see :func:`describe`."""
        idx = "" if self.model_index is None else f"cell {self.model_index} "
        rows = " ".join("".join(str(v) for v in row) for row in self.skips)
        return (
            f"NAS-DIP architecture: {idx}[{self.cell.describe()}]; skips {rows} "
            f"(row r = decoder level at H/2^r, column c = input z (c=0) or enc_c; "
            f"{self.num_skips} of {self.levels * self.levels})"
        )

    # -- constructors
    @classmethod
    def from_spec(cls, spec: Any, levels: int | None = None) -> "NASArchitecture":
        """Read an architecture from a :class:`NASArchitecture`, a dict (:meth:`to_dict` form,
        or ``{'model_index': .., 'skips': ..}`` / ``{'cell': {..}, 'skips': ..}``; a missing
        ``skips`` means NAS-DIP's), a :attr:`token` string, an ISNAS-DIP model name, or a
        plain int (a cell index, with NAS-DIP's skips).

        :param levels: expected number of levels (checked when given).
        """
        arch = cls._from_spec(spec, levels)
        if levels is not None and arch.levels != int(levels):
            raise ValueError(f"architecture has {arch.levels} levels but levels={levels}")
        return arch

    @classmethod
    def _from_spec(cls, spec: Any, levels: int | None) -> "NASArchitecture":
        n = 5 if levels is None else int(levels)
        if isinstance(spec, NASArchitecture):
            return spec
        if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
            return cls(decode_cell_index(int(spec)), nas_dip_skips(n))
        if isinstance(spec, Mapping):
            allowed = {"model_index", "cell", "skips", "levels", "token"}
            unknown = sorted(set(spec) - allowed)
            if unknown:
                raise ValueError(
                    f"unknown architecture field(s) {unknown}; allowed: {', '.join(sorted(allowed))}"
                )
            if spec.get("levels") is not None:
                n = int(spec["levels"])
            if spec.get("cell") is not None:
                cell = UpsampleCell.from_spec(spec["cell"])
                if spec.get("model_index") is not None and cell.index != int(spec["model_index"]):
                    raise ValueError(
                        f"model_index {spec['model_index']} does not match the cell {cell.describe()!r}"
                    )
            elif spec.get("model_index") is not None:
                cell = decode_cell_index(spec["model_index"])
            else:
                raise ValueError("an architecture dict needs 'model_index' or 'cell'")
            skips = nas_dip_skips(n) if spec.get("skips") is None else _skip_matrix(spec["skips"], n)
            return cls(cell, skips)
        if isinstance(spec, str):
            text = spec.strip()
            m = _ISNAS_NAME.match(text)
            if m:
                bits = m.group(2)
                return cls(decode_cell_index(int(m.group(1))), _skip_matrix(bits, _levels_of_bits(bits)))
            if ":" in text:
                cell_part, bits = text.split(":", 1)
                n = _levels_of_bits(bits)
                if cell_part.strip().isdigit():
                    cell = decode_cell_index(int(cell_part))
                else:
                    parts = [p.strip() for p in cell_part.split("/")]
                    if len(parts) not in (4, 5) or (len(parts) == 5 and parts[4] != "conv_first"):
                        raise ValueError(f"cannot read a cell from {cell_part!r}")
                    cell = UpsampleCell(
                        parts[0], parts[1], int(parts[2]), parts[3], conv_first=len(parts) == 5
                    )
                return cls(cell, _skip_matrix(bits, n))
            if text.isdigit():
                return cls(decode_cell_index(int(text)), nas_dip_skips(n))
        raise ValueError(
            f"cannot read a NAS-DIP architecture from {spec!r}; give a NASArchitecture, a dict, "
            "a token like '158:1111101111001110001100001' or an ISNAS-DIP model name"
        )


def nas_dip_architecture(
    model_index: int = NAS_DIP_MODEL_INDEX, skips: Any = None, levels: int = 5
) -> NASArchitecture:
    """The architecture with upstream cell ``model_index`` and ``skips`` (``None``: NAS-DIP's
    :func:`nas_dip_skips`). Defaults: NAS-DIP's searched denoising model."""
    n = int(levels)
    if n < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    matrix = nas_dip_skips(n) if skips is None else _skip_matrix(skips, n)
    return NASArchitecture(decode_cell_index(model_index), matrix)


def resolve_nas_architecture(
    model_index: int = NAS_DIP_MODEL_INDEX,
    skips: Any = None,
    genotype: Any = None,
    levels: int = 5,
) -> NASArchitecture:
    """The architecture selected by the ``nas_dip`` options: ``genotype`` (anything
    :meth:`NASArchitecture.from_spec` reads) if given, else ``model_index`` and ``skips``.

    :raises ValueError: ``genotype`` together with a non-default ``model_index`` or ``skips``,
        or any invalid value.
    """
    if genotype is not None:
        arch = NASArchitecture.from_spec(genotype, levels=int(levels))
        if skips is not None and _skip_matrix(skips, int(levels)) != arch.skips:
            raise ValueError("give either genotype or skips, not both")
        if model_index is not None and model_index != NAS_DIP_MODEL_INDEX and arch.model_index != model_index:
            raise ValueError("give either genotype or model_index, not both")
        return arch
    return nas_dip_architecture(NAS_DIP_MODEL_INDEX if model_index is None else model_index, skips, levels)


def sample_nas_architecture(
    rng: np.random.Generator | int | None = None,
    *,
    levels: int = 5,
    width: int = 128,
    num_cells: int = ISNAS_NUM_CELL_INDICES,
) -> NASArchitecture:
    """Draw an architecture uniformly from the search space, as ISNAS-DIP's random search.

    ISNAS-DIP draws a cell index uniformly from ``0 .. 320`` and each of the 25 skip bits
    independently with probability 1/2 (no constraint on the matrix), and drops the models
    that fail to build. Here a pair (index, matrix) is drawn with ``rng.integers(0, num_cells)``
    then ``rng.integers(0, 2, size=(levels, levels))`` and redrawn while the cell cannot be
    built for ``width`` channels: the result is uniform over the valid architectures.

    :param rng: a :class:`numpy.random.Generator` (or a seed for ``numpy.random.default_rng``).
    :param levels: size of the skip matrix.
    :param width: channel count the cell must support (see :meth:`UpsampleCell.check`).
    :param num_cells: sample cell indices ``0 .. num_cells - 1`` (at most 324).
    """
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    n, k = int(levels), int(num_cells)
    if n < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    if not 1 <= k <= NUM_CELL_INDICES:
        raise ValueError(f"num_cells must be in 1..{NUM_CELL_INDICES}, got {num_cells}")
    if not any(is_valid_cell_index(i, width) for i in range(k)):
        raise ValueError(f"no cell among 0..{k - 1} can be built for width={width}")
    while True:
        index = int(rng.integers(0, k))
        bits = rng.integers(0, 2, size=(n, n))
        if is_valid_cell_index(index, width):
            return NASArchitecture(decode_cell_index(index), _skip_matrix(bits, n))


def describe(arch: Any = NAS_DIP_MODEL_INDEX) -> str:
    """One-line description for logs of an architecture, a cell, a built :class:`NASDIP`
    network, or anything :meth:`NASArchitecture.from_spec` reads (default: NAS-DIP)."""
    if isinstance(arch, UpsampleCell):
        idx = "" if arch.index is None else f"cell {arch.index}: "
        return idx + arch.describe()
    if isinstance(arch, NASDIP):
        c = arch.config
        return (
            f"{arch.genotype.describe()}; levels={c['levels']}, width={c['width']}, "
            f"in_channels={arch.in_channels}, act={c['act']}, pad={c['pad']}"
        )
    return NASArchitecture.from_spec(arch).describe()


# ----------------------------------------------------------------------------- modules


class _SplitStackSum(nn.Module):
    """Add the ``groups`` equal channel groups: ``[B, C, h, w] -> [B, C/groups, h, w]``."""

    def __init__(self, groups: int = _SPLIT) -> None:
        super().__init__()
        self.groups = int(groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return x.reshape(b, self.groups, c // self.groups, h, w).sum(dim=1)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


def _cell_conv_layers(kind: str, cin: int, cout: int, k: int) -> list[nn.Module]:
    p = k // 2
    if kind == "conv":
        return [nn.Conv2d(cin, cout, k, padding=p, bias=False)]
    if kind == "trans_conv":
        return [nn.ConvTranspose2d(cin, cout, k, stride=1, padding=p)]
    if kind == "split_stack_sum":
        return [_SplitStackSum(_SPLIT), nn.Conv2d(cin // _SPLIT, cout, k, padding=p, bias=False)]
    if kind == "sep_conv":
        return [
            nn.Conv2d(cin, cin, k, padding=p, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, bias=False),
        ]
    if kind == "depth_wise_conv":
        return [nn.Conv2d(cin, cout, k, padding=p, groups=cout, bias=False)]
    return []  # identity


class NASUpsampleCell(nn.Sequential):
    """A ×2 upsampling cell ``[B, C, h, w] -> [B, C, 2h, 2w]`` built from an :class:`UpsampleCell`."""

    def __init__(self, cell: UpsampleCell, channels: int) -> None:
        cell.check(channels)
        c, k = int(channels), cell.kernel_size

        def act() -> list[nn.Module]:
            return [] if cell.activation == "none" else [make_activation(cell.activation)]

        # creation order as upstream (weights drawn from torch's RNG in the same order)
        if cell.primitive == "pixel_shuffle":
            if cell.conv_first:
                layers = _cell_conv_layers(cell.conv, c, 4 * c, k) + act() + [nn.PixelShuffle(2)] + act()
            else:  # check() rejected identity / depthwise here
                layers = [nn.PixelShuffle(2)] + act() + _cell_conv_layers(cell.conv, c // 4, c, k) + act()
        else:
            if cell.primitive == "trans_conv":
                prim: nn.Module = nn.ConvTranspose2d(c, c, k, stride=2, padding=k // 2, output_padding=1)
            else:
                prim = nn.Upsample(scale_factor=2, mode=cell.primitive)
            layers = [prim] + act()
            if cell.conv != "identity":
                layers += _cell_conv_layers(cell.conv, c, c, k) + act()
        super().__init__(*layers)
        self.cell = cell


class NASDIPCore(nn.Module):
    """The layers of :class:`NASDIP`: ``[B, in_channels, H, W] -> [B, out_channels, H, W]``.

    Submodules (``ModuleList``s indexed by level ``j = 0 .. L-1``, outermost first; ``None``
    entries where ``keep_unused=False`` drops an unused block): ``enc[j]`` (-> ``H/2^(j+1)``),
    ``same[j]`` (same-scale skip into decoder level ``j``), ``down[j]`` (level ``j`` ->
    ``j + 1``, ``j < L-1``), ``skip_up[j]`` (level ``j + 1`` -> ``j``), ``up[j]`` (the decoder
    upsampling into level ``j``), ``dec[j]`` and ``output``.
    """

    def __init__(
        self,
        arch: NASArchitecture,
        in_channels: int,
        out_channels: int,
        *,
        width: int,
        kernel_down: int,
        kernel_up: int,
        need1x1_up: bool,
        act: str,
        pad: str,
        downsample: str,
        need_sigmoid: bool,
        need_bias: bool,
        keep_unused: bool,
    ) -> None:
        super().__init__()
        L, C, S = arch.levels, int(width), arch.skips
        self.levels = L
        self.skips = S

        def conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Module:
            return make_conv(cin, cout, k, stride, bias=need_bias, pad=pad, downsample=downsample)

        def cba(cin: int, cout: int, k: int, stride: int = 1) -> list[nn.Module]:
            return [conv(cin, cout, k, stride), make_norm(cout), make_activation(act)]

        # which shared blocks the skip matrix uses
        used_same = [bool(S[r][r]) for r in range(L)]
        used_down = [any(S[r][c] for r in range(L) for c in range(L) if c <= j < r) for j in range(L - 1)]
        used_up = [any(S[r][c] for r in range(L) for c in range(L) if r <= j < c) for j in range(L - 1)]

        def maybe(used: bool, make):
            return make() if (used or keep_unused) else None

        # creation order mirrors upstream: enc 1..L, skip 1..L, skip_up (deepest first),
        # skip_down 1_2.., up L..1, dec L..1, output
        enc = [
            nn.Sequential(*cba(in_channels if j == 0 else C, C, kernel_down, 2), *cba(C, C, kernel_down))
            for j in range(L)
        ]
        same = [
            maybe(used_same[j], lambda j=j: nn.Sequential(*cba(in_channels if j == 0 else C, C, 1)))
            for j in range(L)
        ]
        skip_up = [None] * (L - 1)
        for j in reversed(range(L - 1)):
            skip_up[j] = maybe(used_up[j], lambda: NASUpsampleCell(arch.cell, C))
        down = [
            maybe(
                used_down[j], lambda j=j: nn.Sequential(*cba(in_channels if j == 0 else C, C, kernel_down, 2))
            )
            for j in range(L - 1)
        ]
        up = [None] * L
        for j in reversed(range(L)):
            up[j] = NASUpsampleCell(arch.cell, C)
        dec = [None] * L
        for j in reversed(range(L)):
            layers = [make_norm(C)] + cba(C, C, kernel_up) + cba(C, C, kernel_up)
            if need1x1_up:
                layers += cba(C, C, 1)
            dec[j] = nn.Sequential(*layers)
        head: list[nn.Module] = [conv(C, out_channels, 1)]
        if need_sigmoid:
            head.append(nn.Sigmoid())

        self.enc = nn.ModuleList(enc)
        self.same = nn.ModuleList(same)
        self.down = nn.ModuleList(down)
        self.skip_up = nn.ModuleList(skip_up)
        self.up = nn.ModuleList(up)
        self.dec = nn.ModuleList(dec)
        self.output = nn.Sequential(*head)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        L, S = self.levels, self.skips
        feats = [z]  # feats[c]: source c at resolution H / 2^c; feats[L] = bottleneck
        for enc in self.enc:
            feats.append(enc(feats[-1]))
        moved: dict[tuple[int, int], torch.Tensor] = {}

        def at_level(c: int, r: int) -> torch.Tensor:
            """Source ``c`` brought to level ``r`` by the shared down/up chains (memoised)."""
            if c == r:
                return feats[c]
            key = (c, r)
            if key not in moved:
                if c < r:
                    moved[key] = self.down[r - 1](at_level(c, r - 1))
                else:
                    moved[key] = self.skip_up[r](at_level(c, r + 1))
            return moved[key]

        x = feats[L]
        for r in reversed(range(L)):
            y = self.up[r](x)
            for c in range(L):
                if S[r][c]:
                    y = y + (self.same[r](feats[c]) if c == r else at_level(c, r))
            x = self.dec[r](y)
        return self.output(x)


class NASDIP(DIPNetwork):
    """NAS-DIP / ISNAS-DIP network; build with :func:`build_nas_dip` (or
    ``build_model('nas_dip', ...)``).

    Shapes: ``[B, in_channels, H, W] -> [B, out_channels, H, W]`` (``input_size == image_size``).

    :ivar genotype: the :class:`NASArchitecture` it was built from.
    """

    genotype: NASArchitecture


def check_nas_dip_size(image_size: tuple[int, int], levels: int = 5) -> None:
    """Raise :class:`ValueError` unless both sides are multiples of ``2**levels`` and at least
    ``2**(levels + 1)`` (the deepest feature map must be at least 2x2 for its reflection padding
    and BatchNorm)."""
    h, w = int(image_size[0]), int(image_size[1])
    n = int(levels)
    if n < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    f = 2**n
    if h % f or w % f:
        raise ValueError(
            f"image size {h}x{w} is not divisible by {f}: NAS-DIP with {n} levels downsamples "
            f"by 2**{n} = {f} (crop the image to multiples of {f})"
        )
    if min(h, w) < 2 * f:
        raise ValueError(
            f"image size {h}x{w} is too small for NAS-DIP with {n} levels: each side must be at "
            f"least {2 * f} (deepest feature map >= 2x2)"
        )


def build_nas_dip(
    out_channels: int,
    image_size: tuple[int, int],
    *,
    model_index: int = NAS_DIP_MODEL_INDEX,
    skips: Any = None,
    genotype: Any = None,
    levels: int = 5,
    width: int = 128,
    in_channels: int = 32,
    kernel_down: int = 3,
    kernel_up: int = 3,
    need1x1_up: bool = True,
    act: str = "LeakyReLU",
    pad: str = "reflection",
    downsample: str = "stride",
    need_sigmoid: bool = True,
    need_bias: bool = True,
    keep_unused: bool = True,
) -> NASDIP:
    """Build a network of the NAS-DIP search space (defaults: NAS-DIP's denoising model).

    :param out_channels: image channels (1 or 3).
    :param image_size: ``(H, W)``, multiples of ``2**levels``, at least ``2**(levels+1)``.
    :param model_index: upstream cell index (:func:`decode_cell_index`); 158 = NAS-DIP.
    :param skips: skip matrix (``levels x levels`` of 0/1, or its row-major bit string);
        ``None``: NAS-DIP's (:func:`nas_dip_skips`).
    :param genotype: an explicit architecture (:class:`NASArchitecture`, its dict or token, an
        ISNAS-DIP model name), instead of ``model_index``/``skips``.
    :param levels: number of levels ``L``.
    :param width: channels of every encoder/decoder/skip block (upstream 128).
    :param in_channels: channels of the input code (NAS-DIP: 32; ISNAS-DIP's random search
        uses the image's channel count).
    :param kernel_down: encoder and downsampling-skip kernel size.
    :param kernel_up: decoder kernel size.
    :param need1x1_up: decoder blocks end with ``conv1x1 -> BN -> act``.
    :param act: network activation (``LeakyReLU`` = slope 0.2, ``ReLU``, ``GELU``, ``none``);
        the cells use their own activation.
    :param pad: ``'reflection'`` or ``'zero'`` (encoder/decoder/skip convolutions).
    :param downsample: ``'stride'``, ``'avg'`` or ``'max'``.
    :param need_sigmoid: end with a sigmoid.
    :param need_bias: biases in the encoder/decoder/skip/output convolutions.
    :param keep_unused: create every upstream module even if the skip matrix leaves it unused
        (upstream behaviour and parameter count; see the module docstring).
    :raises ValueError: invalid option, cell or image size.
    """
    size = (int(image_size[0]), int(image_size[1]))
    levels = int(levels)
    arch = resolve_nas_architecture(model_index, skips, genotype, levels)
    width, in_channels = int(width), int(in_channels)
    if width < 1 or in_channels < 1:
        raise ValueError(f"width and in_channels must be positive, got {width} and {in_channels}")
    arch.cell.check(width)
    act = canonical_activation(act)
    pad = canonical_padding(pad)
    if downsample not in ("stride", "avg", "max"):
        raise ValueError(f"unknown downsample mode {downsample!r}; allowed: stride, avg, max")
    check_nas_dip_size(size, levels)
    opts = dict(
        kernel_down=int(kernel_down),
        kernel_up=int(kernel_up),
        need1x1_up=bool(need1x1_up),
        act=act,
        pad=pad,
        downsample=downsample,
        need_sigmoid=bool(need_sigmoid),
        need_bias=bool(need_bias),
        keep_unused=bool(keep_unused),
    )
    core = NASDIPCore(arch, in_channels, int(out_channels), width=width, **opts)
    config = dict(
        model_index=arch.model_index,
        skips=arch.skip_bits,
        genotype=arch.token,
        cell=arch.cell.to_dict(),
        levels=levels,
        width=width,
        in_channels=in_channels,
        **opts,
        description=arch.describe(),
    )
    net = NASDIP(
        core,
        in_channels=in_channels,
        out_channels=int(out_channels),
        image_size=size,
        input_size=size,
        config=config,
    )
    net.genotype = arch
    return net
