"""The NAS-DIP search space (Chen et al., ECCV 2020), as sampled by ISNAS-DIP (Arican et al.,
CVPR 2022): upsampling cells, skip matrices, their encodings and random sampling. Torch-free
(numpy only), so configs and searches can read architectures without torch; the network
built from a point of the space is :mod:`dipkit.models.nas_dip`.

Re-implements the space of ``YunChunChen/NAS-DIP-pytorch`` (cells of ``gen_upsample_layer.py`` /
``NAS/operations.py``, skip matrix of ``DIP/models/cross_skip.py:skip``) as ``ozgurkara99/ISNAS-DIP``
samples it (``random_search.py``, ``utils/model_utils.py``). No upstream code is used.

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

Option names: the ``nas_dip`` builder's options (``model_index``, ``skips``, ``genotype``, ...)
and their defaults are in :data:`dipkit.architectures.ARCHITECTURE_DEFAULTS`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dipkit.architectures import NAS_DIP_MODEL_INDEX, canonical_activation

__all__ = [
    "CELL_ACTIVATIONS",
    "CELL_CONVS",
    "CELL_KERNELS",
    "CELL_PRIMITIVES",
    "INVALID_CELL_INDICES",
    "ISNAS_NUM_CELL_INDICES",
    "NAS_DIP_MODEL_INDEX",
    "NUM_CELL_INDICES",
    "SPLIT_GROUPS",
    "NASArchitecture",
    "SkipMatrix",
    "UpsampleCell",
    "cell_index",
    "decode_cell_index",
    "describe",
    "is_valid_cell_index",
    "nas_dip_architecture",
    "nas_dip_skips",
    "resolve_nas_architecture",
    "sample_nas_architecture",
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

#: channel groups that ``split_stack_sum`` adds up
SPLIT_GROUPS = 4
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
    def from_index(cls, index: int) -> UpsampleCell:
        """The cell upstream numbers ``index`` (same as :func:`decode_cell_index`)."""
        return decode_cell_index(index)

    @classmethod
    def from_spec(cls, spec: UpsampleCell | int | Mapping[str, Any]) -> UpsampleCell:
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
        return {
            "index": self.index,
            "primitive": self.primitive,
            "conv": self.conv,
            "kernel_size": self.kernel_size,
            "activation": self.activation,
            "conv_first": self.conv_first,
        }

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
        if self.conv == "split_stack_sum" and cin % SPLIT_GROUPS:
            raise ValueError(
                f"cell {self.describe()!r}: split_stack_sum needs {cin} channels divisible by {SPLIT_GROUPS}"
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
    return max(1, round(n**0.5))


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
        return {
            "model_index": self.model_index,
            "cell": self.cell.to_dict(),
            "skips": self.skip_bits,
            "levels": self.levels,
            "token": self.token,
        }

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
    def from_spec(cls, spec: Any, levels: int | None = None) -> NASArchitecture:
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
    def _from_spec(cls, spec: Any, levels: int | None) -> NASArchitecture:
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
    """One-line description for logs of an architecture, a cell, or anything
    :meth:`NASArchitecture.from_spec` reads (default: NAS-DIP). A built network describes
    itself (:meth:`dipkit.models.nas_dip.NASDIP.describe`)."""
    if isinstance(arch, UpsampleCell):
        idx = "" if arch.index is None else f"cell {arch.index}: "
        return idx + arch.describe()
    return NASArchitecture.from_spec(arch).describe()
