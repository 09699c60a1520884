"""The NAS-DIP network (Chen et al., ECCV 2020) built from a point of its search space; the
"NAS" and "ISNAS" (Arican et al., CVPR 2022) baselines of Table 2.

Clean re-implementation of the denoising network of ``YunChunChen/NAS-DIP-pytorch``
(``DIP/models/model_denoising.py:Model``, upsampling cells from ``gen_upsample_layer.py`` /
``NAS/operations.py``) and of its generalisation with a searchable skip-connection matrix
(``DIP/models/cross_skip.py:skip``, which ``ozgurkara99/ISNAS-DIP`` samples in
``random_search.py`` through ``utils/model_utils.py``). No upstream code is used.

The search space -- upsampling cells (:class:`~dipkit.nas_search_space.UpsampleCell`, numbered
by upstream's ``model_index``), skip matrices ``skips[r][c]`` and their architectures
(:class:`~dipkit.nas_search_space.NASArchitecture`) -- is the torch-free
:mod:`dipkit.nas_search_space`; this module turns an architecture into layers.

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

from typing import Any

import torch
from torch import nn

from dipkit.architectures import (
    NAS_DIP_MODEL_INDEX,
    canonical_activation,
    canonical_padding,
    check_downsampled_size,
)
from dipkit.nas_search_space import SPLIT_GROUPS, NASArchitecture, UpsampleCell, resolve_nas_architecture

from .layers import DIPNetwork, make_activation, make_conv, make_norm

__all__ = [
    "NASDIP",
    "NASDIPCore",
    "NASUpsampleCell",
    "build_nas_dip",
    "check_nas_dip_size",
]


# ----------------------------------------------------------------------------- modules


class _SplitStackSum(nn.Module):
    """Add the ``groups`` equal channel groups: ``[B, C, h, w] -> [B, C/groups, h, w]``."""

    def __init__(self, groups: int = SPLIT_GROUPS) -> None:
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
        return [_SplitStackSum(SPLIT_GROUPS), nn.Conv2d(cin // SPLIT_GROUPS, cout, k, padding=p, bias=False)]
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

    :ivar genotype: the :class:`~dipkit.nas_search_space.NASArchitecture` it was built from.
    """

    genotype: NASArchitecture

    def describe(self) -> str:
        """One line for logs: the architecture and the network options."""
        c = self.config
        return (
            f"{self.genotype.describe()}; levels={c['levels']}, width={c['width']}, "
            f"in_channels={self.in_channels}, act={c['act']}, pad={c['pad']}"
        )


def check_nas_dip_size(image_size: tuple[int, int], levels: int = 5) -> None:
    """Raise :class:`ValueError` unless both sides are multiples of ``2**levels`` and at least
    ``2**(levels + 1)`` (the deepest feature map must be at least 2x2 for its reflection padding
    and BatchNorm); :func:`dipkit.architectures.check_downsampled_size`."""
    check_downsampled_size(image_size, levels, "NAS-DIP")


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
    :param model_index: upstream cell index (:func:`~dipkit.nas_search_space.decode_cell_index`);
        158 = NAS-DIP.
    :param skips: skip matrix (``levels x levels`` of 0/1, or its row-major bit string);
        ``None``: NAS-DIP's (:func:`~dipkit.nas_search_space.nas_dip_skips`).
    :param genotype: an explicit architecture (:class:`~dipkit.nas_search_space.NASArchitecture`,
        its dict or token, an ISNAS-DIP model name), instead of ``model_index``/``skips``.
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
