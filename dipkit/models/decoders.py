"""Decoder-only networks: Deep Decoder / MLP-Decoder, ConvDecoder and its variants.

All four are instances of one decoder template (:func:`build_decoder`): ``layers - 1`` blocks
of width ``C`` followed by a head. A block is a convolution, an (optional) upsampler, the
activation and BatchNorm, in one of two orders:

* ``upsample_first=False`` (conv -> upsample -> act -> BN): Deep Decoder / MLP-Decoder and the
  LPF ConvDecoder of Fig. 4;
* ``upsample_first=True`` (upsample -> conv -> act -> BN): ConvDecoder and its Table 6 variant.

The head is ``conv -> [act] -> BN -> conv_1x1(C -> out) -> [sigmoid]``.

Upstream sources (``YilinLiu97/FasterDIP-devil-in-upsampling``, ``DIP-Recon/core/models/``):

=========================  ===========================================  =================================
registry name              upstream                                     structure
=========================  ===========================================  =================================
``deep_decoder``,          ``decoder_skip.py``: ``skipdecoder`` with    1x1 convs without bias;
``mlp_decoder``            ``skips=False`` (``getModel 'DD'``)          conv -> up -> ReLU -> BN
``conv_decoder``           ``light_cnn.py``: ``ConvDecoder``            3x3 convs with bias;
                                                                        up -> conv -> ReLU -> BN
``conv_decoder_after``     ``light_cnn.py``: ``ConvDecoder_improved``   as ConvDecoder but only 2
                           (``getModel 'ConvDecoder_ours'``)            upsamplers; head without ReLU
``conv_decoder_lpf``       ``ConvDecoder.py``: ``ConvDecoder``          3x3 convs; conv -> up -> ReLU
                           (``getModel 'ConvDecoder_LPF'``)             -> BN; zero insertion + FIR
=========================  ===========================================  =================================

Upsampling targets ("hidden sizes") follow upstream: with input ``(h, w)`` and ``L`` layers,
``s = (H / h) ** (1 / (L - 1))``, block ``n`` (1-based) upsamples to ``ceil(s**n * h)`` and the
last one to ``(H, W)`` exactly. With the default input size ``(H, W) / 2**(L - 1)`` this is
exact ×2 per block. Upstream always used ``H/32`` (``--progressive True``), which is the same
for the default ``L = 6``; for other ``L`` we use ``2**(L - 1)`` so that ×2 upsamplers fit.

"Without upsampling" (paper Fig. 3, upstream ``--progressive False``): ``upsample='none'``;
the input code then has the full image size and every upsampler is omitted. The paper's
"5/4/3 layers" correspond to ``layers=6/5/4`` here (``layers`` counts the head as a layer, as
upstream ``num_layers``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import nn

from dipkit.architectures import canonical_activation, canonical_padding

from .filters import FILTER_TAPS
from .layers import DIPNetwork, make_activation, make_conv, make_norm
from .upsample import fir_min_input_size, make_upsampler, resolve_upsample_mode

__all__ = [
    "Decoder",
    "build_conv_decoder",
    "build_conv_decoder_after",
    "build_conv_decoder_lpf",
    "build_conv_decoder_position",
    "build_decoder",
    "build_deep_decoder",
    "decoder_geometry",
    "decoder_hidden_sizes",
    "position_input_size",
]


class Decoder(DIPNetwork):
    """Decoder-only network (see module docstring). Build with :func:`build_decoder` or a
    preset builder.

    Shapes: ``[B, in_channels, h, w] -> [B, out_channels, H, W]`` with ``(h, w) == input_size``.
    """


def decoder_hidden_sizes(
    input_size: tuple[int, int], image_size: tuple[int, int], layers: int
) -> list[tuple[int, int]]:
    """Upstream's per-block target sizes (``hidden_size``), ``layers - 1`` entries, the last
    one equal to ``image_size``."""
    n = int(layers) - 1
    if n < 1:
        raise ValueError("a decoder needs at least 2 layers")
    sx = (image_size[0] / input_size[0]) ** (1.0 / n)
    sy = (image_size[1] / input_size[1]) ** (1.0 / n)
    sizes = [(int(np.ceil(sx**k * input_size[0])), int(np.ceil(sy**k * input_size[1]))) for k in range(1, n)]
    return sizes + [(int(image_size[0]), int(image_size[1]))]


def _up_blocks(layers: int, schedule: str) -> list[int]:
    """Indices of the blocks (0 .. layers-2) that contain an upsampler."""
    nb = layers - 1
    if schedule == "all":
        return list(range(nb))
    if schedule == "last2":  # ConvDecoder_improved: x2 before block L-3, to full size before L-2
        return [i for i in (layers - 3, layers - 2) if 0 <= i < nb]
    if schedule == "first":  # Fig. 6: one upsampler, next to the input
        return [0]
    if schedule == "last":  # Fig. 6: one upsampler, next to the output
        return [nb - 1]
    raise ValueError(f"unknown upsampling schedule {schedule!r}")


def decoder_geometry(
    image_size: tuple[int, int],
    *,
    layers: int,
    upsample: str = "bilinear",
    schedule: str = "all",
    input_size: tuple[int, int] | None = None,
    taps: Sequence[float] | None = None,
    name: str = "decoder",
) -> dict:
    """Check an image size for a decoder and work out its geometry.

    :return: dict with ``input_size`` ``(h, w)``, ``targets`` (block index -> output size of
        its upsampler) and ``kind`` (upsampler kind).
    :raises ValueError: with an explanation if the image is too small or not divisible.
    """
    H, W = int(image_size[0]), int(image_size[1])
    layers = int(layers)
    if layers < 2:
        raise ValueError(f"{name}: layers must be >= 2, got {layers}")
    if H < 1 or W < 1:
        raise ValueError(f"{name}: invalid image size {image_size}")
    kind, detail = resolve_upsample_mode(upsample)
    blocks = [] if kind == "none" else _up_blocks(layers, schedule)
    n_up = len(blocks)
    fixed = kind in ("transposed", "fir")
    f = 2**n_up
    if input_size is None:
        if H % f or W % f:
            raise ValueError(
                f"{name}: image size {H}x{W} is not divisible by {f}: with {n_up} x2 upsamplings "
                f"the input code is the image size / {f} (crop the image to multiples of {f}, "
                "or pass input_size=...)"
            )
        inp = (H // f, W // f)
    else:
        inp = (int(input_size[0]), int(input_size[1]))
        if min(inp) < 1:
            raise ValueError(f"{name}: invalid input_size {input_size}")
        if kind == "none" and inp != (H, W):
            raise ValueError(f"{name}: without upsampling the input size must equal the image size {H}x{W}")
        if fixed and (inp[0] * f, inp[1] * f) != (H, W):
            raise ValueError(
                f"{name}: upsampler {upsample!r} doubles the size {n_up} times, so input_size {inp} "
                f"cannot give {H}x{W}; use input_size=({H // f}, {W // f}) with a divisible image"
            )
        if inp[0] > H or inp[1] > W:
            raise ValueError(f"{name}: input_size {inp} is larger than the image {H}x{W}")

    # output size of each upsampler
    targets: dict[int, tuple[int, int]] = {}
    if schedule == "all" and n_up:
        hidden = decoder_hidden_sizes(inp, (H, W), layers)
        for i in blocks:
            targets[i] = (inp[0] * 2 ** (i + 1), inp[1] * 2 ** (i + 1)) if fixed else hidden[i]
    elif n_up:
        for j, i in enumerate(blocks):
            targets[i] = (H, W) if j == n_up - 1 else (inp[0] * 2, inp[1] * 2)
    # spatial sizes seen by BatchNorm (train-mode BN needs more than one value per channel)
    cur = inp
    bn_sizes = []
    up_inputs = []
    for i in range(layers - 1):
        if i in targets:
            up_inputs.append(cur)
            cur = targets[i]
        bn_sizes.append(cur)
    smallest = min(bn_sizes, key=lambda s: s[0] * s[1])
    if smallest[0] * smallest[1] < 2:
        raise ValueError(
            f"{name}: image size {H}x{W} is too small: a BatchNorm layer would see a "
            f"{smallest[0]}x{smallest[1]} feature map (needs at least 2 values)"
        )
    if kind == "fir" and up_inputs:
        k = len(taps) if taps is not None else len(FILTER_TAPS[detail])
        need = fir_min_input_size(k)
        small = min(min(s) for s in up_inputs)
        if small < need:
            raise ValueError(
                f"{name}: image size {H}x{W} is too small for the {k}-tap FIR upsampler {upsample!r}: "
                f"its reflection padding needs an input of at least {need} px per side, but the first "
                f"upsampler gets {small} px (need an image of at least {need * f} px per side)"
            )
    return {"input_size": inp, "targets": targets, "kind": kind}


def build_decoder(
    out_channels: int,
    image_size: tuple[int, int],
    *,
    layers: int = 6,
    width: int = 128,
    in_channels: int | None = None,
    kernel_size: int = 3,
    bias: bool = True,
    upsample: str = "bilinear",
    align_corners: bool = False,
    upsample_first: bool = True,
    schedule: str = "all",
    act: str = "ReLU",
    head_act: bool = True,
    pad: str = "zero",
    need_sigmoid: bool = True,
    input_size: tuple[int, int] | None = None,
    taps: Sequence[float] | None = None,
    name: str = "decoder",
) -> Decoder:
    """Generic decoder template (see module docstring).

    :param out_channels: image channels.
    :param image_size: image size ``(H, W)``.
    :param layers: ``L``: ``L - 1`` blocks plus the head (upstream ``num_layers``).
    :param width: channels ``C`` of every block.
    :param in_channels: channels of the input code (default ``C``).
    :param kernel_size: kernel of the block convolutions and the head's first conv (1 or 3).
    :param bias: biases in all convolutions.
    :param upsample: upsampler name (:func:`make_upsampler`); ``'none'`` = no upsampling.
    :param align_corners: for bilinear/bicubic.
    :param upsample_first: ``True``: up -> conv -> act -> BN; ``False``: conv -> up -> act -> BN.
    :param schedule: ``'all'`` (an upsampler in every block) or ``'last2'`` (×2 before block
        ``L - 3`` and to full size before block ``L - 2``, as ``ConvDecoder_improved``).
    :param act: activation name.
    :param head_act: activation in the head (after its first conv).
    :param pad: ``'zero'`` or ``'reflection'`` padding for 3x3 convolutions.
    :param need_sigmoid: final sigmoid.
    :param input_size: override the input code size (default: image size / ``2**n_up``).
    :param taps: explicit FIR taps for ``upsample='fir'``.
    :return: :class:`Decoder`: ``[B, in_channels, h, w] -> [B, out_channels, H, W]``.
    """
    H, W = int(image_size[0]), int(image_size[1])
    act = canonical_activation(act)
    pad = canonical_padding(pad)
    width = int(width)
    if width < 1:
        raise ValueError(f"width must be positive, got {width}")
    cin = width if in_channels is None else int(in_channels)
    geo = decoder_geometry(
        (H, W),
        layers=layers,
        upsample=upsample,
        schedule=schedule,
        input_size=input_size,
        taps=taps,
        name=name,
    )
    targets = geo["targets"]

    def conv(ci: int, co: int, k: int) -> nn.Module:
        return make_conv(ci, co, k, 1, bias=bias, pad=pad)

    mods: list[nn.Module] = []
    c = cin
    for i in range(int(layers) - 1):
        up = None
        if i in targets:
            up = make_upsampler(
                upsample,
                c if upsample_first else width,
                size=targets[i],
                align_corners=align_corners,
                taps=taps,
            )
        if upsample_first and up is not None:
            mods.append(up)
        mods.append(conv(c, width, kernel_size))
        if not upsample_first and up is not None:
            mods.append(up)
        mods += [make_activation(act), make_norm(width)]
        c = width
    mods.append(conv(c, width, kernel_size))
    if head_act:
        mods.append(make_activation(act))
    mods += [make_norm(width), conv(width, out_channels, 1)]
    if need_sigmoid:
        mods.append(nn.Sigmoid())
    config = dict(
        layers=int(layers),
        width=width,
        kernel_size=int(kernel_size),
        bias=bool(bias),
        upsample=upsample,
        align_corners=bool(align_corners),
        upsample_first=bool(upsample_first),
        schedule=schedule,
        act=act,
        head_act=bool(head_act),
        pad=pad,
        need_sigmoid=bool(need_sigmoid),
        upsample_targets={int(k): list(v) for k, v in targets.items()},
    )
    return Decoder(
        nn.Sequential(*mods),
        in_channels=cin,
        out_channels=out_channels,
        image_size=(H, W),
        input_size=geo["input_size"],
        config=config,
    )


def build_deep_decoder(
    out_channels: int,
    image_size: tuple[int, int],
    *,
    layers: int = 6,
    width: int = 128,
    upsample: str = "bilinear",
    align_corners: bool = True,
    act: str = "ReLU",
    need_sigmoid: bool = True,
    in_channels: int | None = None,
    input_size: tuple[int, int] | None = None,
    taps: Sequence[float] | None = None,
) -> Decoder:
    """Deep Decoder / MLP-Decoder as run by the paper (Table 2 "DD", Fig. 3a).

    Upstream: ``decoder_skip.py``, ``skipdecoder(skips=False, need_pad=False)``. ``layers - 1``
    blocks ``conv_1x1(C -> C, no bias) -> upsample -> act -> BN``, then
    ``conv_1x1(no bias) -> act -> BN -> conv_1x1(C -> out, no bias) -> sigmoid``. Bilinear
    upsampling uses ``align_corners=True`` as upstream; ``nearest``, ``transposed``
    (``ConvTranspose2d(C, C, 2, stride 2)``, with bias) and ``none`` are the other upstream modes.
    Defaults ``L = 6``, ``C = 128``, input ``[B, 128, H/32, W/32]``: 100,224 parameters for RGB.

    :return: :class:`Decoder`: ``[B, C, H/2**(L-1), W/2**(L-1)] -> [B, out_channels, H, W]``
        (``[B, C, H, W]`` input with ``upsample='none'``).
    """
    return build_decoder(
        out_channels,
        image_size,
        layers=layers,
        width=width,
        in_channels=in_channels,
        kernel_size=1,
        bias=False,
        upsample=upsample,
        align_corners=align_corners,
        upsample_first=False,
        schedule="all",
        act=act,
        head_act=True,
        pad="zero",
        need_sigmoid=need_sigmoid,
        input_size=input_size,
        taps=taps,
        name="deep_decoder",
    )


def build_conv_decoder(
    out_channels: int,
    image_size: tuple[int, int],
    *,
    layers: int = 6,
    width: int = 128,
    upsample: str = "bilinear",
    align_corners: bool = False,
    act: str = "ReLU",
    pad: str = "zero",
    need_sigmoid: bool = True,
    in_channels: int | None = None,
    input_size: tuple[int, int] | None = None,
    taps: Sequence[float] | None = None,
) -> Decoder:
    """ConvDecoder as run by the paper (Table 2 "CD", Fig. 3b, the §3.2 analysis model).

    Upstream: ``light_cnn.py``, class ``ConvDecoder``. ``layers - 1`` blocks
    ``upsample(size=hidden) -> conv_3x3(C -> C, bias) -> act -> BN``, then
    ``conv_3x3 -> act -> BN -> conv_1x1(C -> out) -> sigmoid``. Defaults ``L = 6``, ``C = 128``,
    bilinear (``align_corners=False``), input ``[B, 128, H/32, W/32]``: 887,427 parameters for RGB.

    :return: :class:`Decoder`: ``[B, C, H/2**(L-1), W/2**(L-1)] -> [B, out_channels, H, W]``.
    """
    return build_decoder(
        out_channels,
        image_size,
        layers=layers,
        width=width,
        in_channels=in_channels,
        kernel_size=3,
        bias=True,
        upsample=upsample,
        align_corners=align_corners,
        upsample_first=True,
        schedule="all",
        act=act,
        head_act=True,
        pad=pad,
        need_sigmoid=need_sigmoid,
        input_size=input_size,
        taps=taps,
        name="conv_decoder",
    )


def build_conv_decoder_after(
    out_channels: int,
    image_size: tuple[int, int],
    *,
    layers: int = 6,
    width: int = 64,
    upsample: str = "bilinear",
    align_corners: bool = False,
    act: str = "ReLU",
    pad: str = "zero",
    need_sigmoid: bool = True,
    in_channels: int | None = None,
    input_size: tuple[int, int] | None = None,
    taps: Sequence[float] | None = None,
) -> Decoder:
    """ConvDecoder "after" of Table 6: fewer upsamplers, all convolutions kept.

    Upstream: ``light_cnn.py``, class ``ConvDecoder_improved`` (``getModel 'ConvDecoder_ours'``).
    Same blocks as :func:`build_conv_decoder` but only two upsamplers: ×2 before block
    ``L - 3`` and to the full image size before block ``L - 2``; the head has no activation
    (``conv_3x3 -> BN -> conv_1x1 -> sigmoid``). The width is chosen per image in the paper
    (Texture-DIP labels 32/64/128); RGB parameters: 55,971 / 222,531 / 887,427 (the same as
    ConvDecoder at equal width: only upsamplers were removed).

    [UNVERIFIED] The input size used for Table 6 is unknown. The default input is
    ``(H/4, W/4)`` so that both upsamplers are exact ×2 steps; upstream's ``--progressive``
    would force ``H/32`` (then the last upsampling is ×16): pass ``input_size=(H//32, W//32)``
    for that reading, or ``(64, 64)`` as in an old (broken) script.

    :return: :class:`Decoder`: ``[B, C, H/4, W/4] -> [B, out_channels, H, W]`` by default.
    """
    return build_decoder(
        out_channels,
        image_size,
        layers=layers,
        width=width,
        in_channels=in_channels,
        kernel_size=3,
        bias=True,
        upsample=upsample,
        align_corners=align_corners,
        upsample_first=True,
        schedule="last2",
        act=act,
        head_act=False,
        pad=pad,
        need_sigmoid=need_sigmoid,
        input_size=input_size,
        taps=taps,
        name="conv_decoder_after",
    )


def build_conv_decoder_lpf(
    out_channels: int,
    image_size: tuple[int, int],
    *,
    layers: int = 6,
    width: int = 128,
    upsample: str = "NN",
    align_corners: bool = False,
    act: str = "ReLU",
    pad: str = "zero",
    need_sigmoid: bool = True,
    in_channels: int | None = None,
    input_size: tuple[int, int] | None = None,
    taps: Sequence[float] | None = None,
) -> Decoder:
    """ConvDecoder with custom low-pass upsamplers (Fig. 4, Table 1).

    Upstream: ``ConvDecoder.py``, class ``ConvDecoder`` (``getModel 'ConvDecoder_LPF'``).
    ``layers - 1`` blocks ``conv_3x3(C -> C, bias) -> upsample -> act -> BN`` (note: conv
    *before* the upsampler, unlike :func:`build_conv_decoder`), then
    ``conv_3x3 -> act -> BN -> conv_1x1 -> sigmoid``. The upsampler is zero insertion ×2 followed
    by the fixed FIR filter ``upsample`` (``NN``, ``L14``, ``L15``, ``L-60``, ``L-100``, ...; see
    :mod:`dipkit.models.filters`), or a built-in ``nearest``/``bilinear``/``bicubic`` resize
    (Fig. 4's "Bilinear"). Defaults ``L = 6``, ``C = 128``, input ``H/32``: 887,427 parameters
    for RGB (the filters add none).

    :return: :class:`Decoder`: ``[B, C, H/2**(L-1), W/2**(L-1)] -> [B, out_channels, H, W]``.
    """
    return build_decoder(
        out_channels,
        image_size,
        layers=layers,
        width=width,
        in_channels=in_channels,
        kernel_size=3,
        bias=True,
        upsample=upsample,
        align_corners=align_corners,
        upsample_first=False,
        schedule="all",
        act=act,
        head_act=True,
        pad=pad,
        need_sigmoid=need_sigmoid,
        input_size=input_size,
        taps=taps,
        name="conv_decoder_lpf",
    )


def position_input_size(image_size: tuple[int, int], factor: int) -> tuple[int, int]:
    """Input code size of :func:`build_conv_decoder_position`: the image size / ``factor``.

    :raises ValueError: if the image is not divisible by ``factor``.
    """
    H, W = int(image_size[0]), int(image_size[1])
    f = int(factor)
    if f < 2 or H % f or W % f:
        raise ValueError(
            f"conv_decoder_position: image size {H}x{W} is not divisible by the upsampling factor {f} "
            "(the input code is the image size / factor; factor >= 2)"
        )
    return H // f, W // f


def build_conv_decoder_position(
    out_channels: int,
    image_size: tuple[int, int],
    *,
    layers: int = 6,
    width: int = 128,
    position: str = "last",
    factor: int = 2,
    upsample: str = "bilinear",
    align_corners: bool = False,
    act: str = "ReLU",
    pad: str = "zero",
    need_sigmoid: bool = True,
    in_channels: int | None = None,
) -> Decoder:
    """ConvDecoder with a single upsampler of factor ``factor`` (paper Fig. 6).

    The blocks are those of :func:`build_conv_decoder`, but only one of them upsamples: the
    first (``position='first'``, next to the input) or the last (``'last'``, next to the
    output), straight to the image size. The input code is ``image size / factor``, so a larger
    factor means the same number of layers and one larger upsampling step. Not in the paper's
    code: the figure's exact networks are unknown [UNVERIFIED]; this is our reading of it.

    :return: :class:`Decoder`: ``[B, C, H/factor, W/factor] -> [B, out_channels, H, W]``.
    """
    if position not in ("first", "last"):
        raise ValueError(f"conv_decoder_position: position must be 'first' or 'last', got {position!r}")
    return build_decoder(
        out_channels,
        image_size,
        layers=layers,
        width=width,
        in_channels=in_channels,
        kernel_size=3,
        bias=True,
        upsample=upsample,
        align_corners=align_corners,
        upsample_first=True,
        schedule=position,
        act=act,
        head_act=True,
        pad=pad,
        need_sigmoid=need_sigmoid,
        input_size=position_input_size(image_size, factor),
        name="conv_decoder_position",
    )
