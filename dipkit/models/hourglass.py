"""Encoder-decoder ("hourglass") networks: DIP and the paper's 2-level hourglass.

:func:`build_hourglass` is a clean re-implementation of the ``skip()`` builder of Deep Image
Prior (``DmitryUlyanov/deep-image-prior``, ``models/skip.py``, function ``skip``) in the
variant used by the paper's code (``YilinLiu97/FasterDIP-devil-in-upsampling``,
``DIP-Recon/core/models/skip.py``, functions ``skip`` and ``DIP``; chosen by ``getModel`` in
``models/__init__.py`` as ``'DIP_2_scaled'`` for "Ours" and ``'DIP_orig'`` for DIP). The layer
order, channel counts and the resulting parameter counts are identical to upstream.

Structure, with levels ``i = 0`` (outermost) ... ``L - 1`` (deepest), ``d_i``/``u_i``/``s_i`` the
down/up/skip widths and ``k_i = u_{i+1}`` (or ``d_{L-1}`` at the deepest level)::

    level_i(x) = [Concat(skip_i, deeper_i) if s_i > 0 else deeper_i](x)    # centre-cropping concat
                 -> BN(s_i + k_i) -> conv_{ku}(s_i + k_i -> u_i) -> BN -> act
                 -> [conv_1x1(u_i -> u_i) -> BN -> act]                    # need1x1_up
    skip_i     = conv_{ks}(c_in -> s_i) -> BN -> act                        # ks = 1 by default
    deeper_i   = conv_{kd}(c_in -> d_i, stride 2) -> BN -> act
                 -> conv_{kd}(d_i -> d_i) -> BN -> act
                 -> [level_{i+1}] -> upsample
    net(z)     = level_0(z) -> conv_1x1(u_0 -> out) -> [sigmoid]

``c_in`` is the input channel count at level 0 and ``d_{i-1}`` below. The BatchNorm after the
(optional) concatenation is always present, also without skip connections. The upsampler of
level 0 resizes to the exact image size ``(H, W)`` (``nn.Upsample(size=...)`` upstream); the
inner levels upsample ×2. Any upsampler of :func:`dipkit.models.upsample.make_upsampler` can be
used. Convolutions have biases; initialisation is PyTorch's default.

Presets (see :mod:`dipkit.models.registry`):

* ``dip``: 5 levels, 128 channels everywhere, 4 skip channels on every level, LeakyReLU(0.2),
  reflection padding, bilinear upsampling, 128 input channels (as the paper's code runs DIP;
  the original DIP notebook uses 32): 2,328,807 parameters for RGB (2,217,831 with 32 inputs).
* ``hourglass`` ("Ours", Table 2): 2 levels, width ``C`` in {32, 64, 128}, no skips, ReLU, zero
  padding, bilinear, ``C`` input channels: 58,339 / 231,363 / 921,475 parameters for RGB.

[CODE≠PAPER] The paper says its hourglass uses "the same components as in DIP"
(LeakyReLU, reflection padding), but every "Ours" script runs ``--act_func ReLU --pad zero``.
The ``hourglass`` preset follows the code; ``act='LeakyReLU', pad='reflection'`` gives the
paper's wording. Likewise all scripts use 0 skip connections although Fig. 7 mentions "one
skip connection" for kodim01: use ``num_skips=1`` for that variant.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from dipkit.architectures import canonical_activation, canonical_padding, check_downsampled_size

from .filters import FILTER_TAPS
from .layers import (
    Concat,
    DIPNetwork,
    make_activation,
    make_conv,
    make_norm,
)
from .upsample import fir_min_input_size, make_upsampler, resolve_upsample_mode

__all__ = ["Hourglass", "build_hourglass", "check_hourglass_size", "hourglass_channels"]


def _per_level(value, levels: int, what: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != levels:
            raise ValueError(f"{what} must have one entry per level ({levels}), got {len(value)}")
        return list(value)
    return [value] * levels


def hourglass_channels(
    levels: int,
    width: int | None = 128,
    channels_down: Sequence[int] | None = None,
    channels_up: Sequence[int] | None = None,
    skip_channels: int | Sequence[int] = 4,
    num_skips: int | None = None,
) -> tuple[list[int], list[int], list[int]]:
    """Resolve per-level widths ``(down, up, skip)``, outermost level first.

    :param levels: number of levels (``num_scales`` upstream), at least 1.
    :param width: width used for every level where ``channels_down``/``channels_up`` is not given.
    :param channels_down: optional per-level down widths ``d_i``.
    :param channels_up: optional per-level up widths ``u_i``.
    :param skip_channels: per-level skip widths, or one int used on the skip-carrying levels.
    :param num_skips: with an int ``skip_channels``: how many of the *deepest* levels carry a
        skip (upstream ``num_skips``); ``None`` means all levels.
    """
    levels = int(levels)
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    if (channels_down is None or channels_up is None) and (width is None or int(width) < 1):
        raise ValueError(f"width must be a positive int, got {width!r}")
    down = [int(c) for c in (channels_down if channels_down is not None else [width] * levels)]
    up = [int(c) for c in (channels_up if channels_up is not None else [width] * levels)]
    if len(down) != levels or len(up) != levels:
        raise ValueError(f"channels_down/channels_up must have {levels} entries")
    if isinstance(skip_channels, (list, tuple)):
        if num_skips is not None:
            raise ValueError("give either a per-level skip_channels list or num_skips, not both")
        skip = [int(c) for c in skip_channels]
        if len(skip) != levels:
            raise ValueError(f"skip_channels must have {levels} entries, got {len(skip)}")
    else:
        n = levels if num_skips is None else int(num_skips)
        if not 0 <= n <= levels:
            raise ValueError(f"num_skips must be between 0 and levels={levels}, got {num_skips}")
        skip = [0] * (levels - n) + [int(skip_channels)] * n
    if min(down + up) < 1 or min(skip) < 0:
        raise ValueError("channel counts must be positive (skip channels >= 0)")
    return down, up, skip


def check_hourglass_size(image_size: tuple[int, int], levels: int, upsample="bilinear") -> None:
    """Raise :class:`ValueError` unless an hourglass with ``levels`` levels can produce an
    image of ``image_size``: both sides must be multiples of ``2**levels`` and at least
    ``2**(levels + 1)`` (so the deepest feature map, where BatchNorm needs more than one value,
    is at least 2x2; :func:`dipkit.architectures.check_downsampled_size`); FIR upsamplers with
    long filters need larger deepest maps."""
    min_deep = 2
    for mode in upsample if isinstance(upsample, (list, tuple)) else [upsample]:
        kind, detail = resolve_upsample_mode(mode)
        if kind == "none":
            raise ValueError("an hourglass network needs an upsampler; upsample='none' is not allowed")
        if kind == "fir" and detail is not None:
            min_deep = max(min_deep, fir_min_input_size(len(FILTER_TAPS[detail])))
    check_downsampled_size(image_size, levels, "an hourglass", min_deep)


class Hourglass(DIPNetwork):
    """DIP-style encoder-decoder. Build with :func:`build_hourglass`.

    Shapes: ``[B, in_channels, H, W] -> [B, out_channels, H, W]`` (``input_size == image_size``).
    """


def build_hourglass(
    in_channels: int,
    out_channels: int,
    image_size: tuple[int, int],
    *,
    levels: int = 5,
    width: int | None = 128,
    channels_down: Sequence[int] | None = None,
    channels_up: Sequence[int] | None = None,
    skip_channels: int | Sequence[int] = 4,
    num_skips: int | None = None,
    kernel_down: int | Sequence[int] = 3,
    kernel_up: int | Sequence[int] = 3,
    kernel_skip: int = 1,
    need1x1_up: bool = True,
    act: str = "LeakyReLU",
    pad: str = "reflection",
    upsample: str | Sequence[str] = "bilinear",
    align_corners: bool = False,
    downsample: str = "stride",
    need_sigmoid: bool = True,
    need_bias: bool = True,
    taps: Sequence[float] | None = None,
) -> Hourglass:
    """Build a DIP ``skip()``-style hourglass (defaults: the original DIP with 5 levels).

    :param in_channels: channels of the input code ``z``.
    :param out_channels: image channels (1 or 3).
    :param image_size: image size ``(H, W)``; the outermost upsampler resizes to it.
    :param levels: number of down/up levels ``L``; total downsampling ``2**L``.
    :param width: channels of every level (unless ``channels_down``/``channels_up`` given).
    :param channels_down: per-level widths of the encoder convolutions (outermost first).
    :param channels_up: per-level widths of the decoder convolutions (outermost first).
    :param skip_channels: skip-branch widths: int or per-level list (0 = no skip).
    :param num_skips: with an int ``skip_channels``, number of deepest levels with a skip
        (``None``: all levels).
    :param kernel_down: encoder kernel size (int or per level).
    :param kernel_up: decoder kernel size (int or per level).
    :param kernel_skip: skip-branch kernel size.
    :param need1x1_up: add ``conv1x1 -> BN -> act`` after each decoder conv.
    :param act: ``'ReLU'``, ``'LeakyReLU'`` (slope 0.2), ``'GELU'`` or ``'none'``.
    :param pad: ``'zero'`` or ``'reflection'``.
    :param upsample: upsampler name (or one per level), see :func:`make_upsampler`.
    :param align_corners: for bilinear/bicubic upsampling.
    :param downsample: ``'stride'`` (strided conv), ``'avg'`` or ``'max'``.
    :param need_sigmoid: end with a sigmoid.
    :param need_bias: biases in all convolutions.
    :param taps: explicit FIR taps when ``upsample='fir'``.
    :return: :class:`Hourglass`, mapping ``[B, in_channels, H, W] -> [B, out_channels, H, W]``.
    """
    image_size = (int(image_size[0]), int(image_size[1]))
    levels = int(levels)
    down, up, skip = hourglass_channels(levels, width, channels_down, channels_up, skip_channels, num_skips)
    ups = _per_level(upsample, levels, "upsample")
    kd = [int(k) for k in _per_level(kernel_down, levels, "kernel_down")]
    ku = [int(k) for k in _per_level(kernel_up, levels, "kernel_up")]
    act = canonical_activation(act)
    pad = canonical_padding(pad)
    if downsample not in ("stride", "avg", "max"):
        raise ValueError(f"unknown downsample mode {downsample!r}; allowed: stride, avg, max")
    check_hourglass_size(image_size, levels, ups)

    def conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Module:
        return make_conv(cin, cout, k, stride, bias=need_bias, pad=pad, downsample=downsample)

    def block(cin: int, cout: int, k: int, stride: int = 1) -> list[nn.Module]:
        return [conv(cin, cout, k, stride), make_norm(cout), make_activation(act)]

    # Build from the deepest level outwards: level i wraps level i + 1.
    inner: nn.Sequential | None = None
    for i in reversed(range(levels)):
        cin = in_channels if i == 0 else down[i - 1]
        k = down[i] if i == levels - 1 else up[i + 1]
        deeper_layers = block(cin, down[i], kd[i], 2) + block(down[i], down[i], kd[i])
        if inner is not None:
            deeper_layers.append(inner)
        if i == 0:
            deeper_layers.append(
                make_upsampler(ups[i], k, size=image_size, align_corners=align_corners, taps=taps)
            )
        else:
            deeper_layers.append(
                make_upsampler(ups[i], k, scale_factor=2, align_corners=align_corners, taps=taps)
            )
        deeper = nn.Sequential(*deeper_layers)
        if skip[i] > 0:
            head: nn.Module = Concat(nn.Sequential(*block(cin, skip[i], kernel_skip)), deeper)
        else:
            head = deeper
        level = [head, make_norm(skip[i] + k)] + block(skip[i] + k, up[i], ku[i])
        if need1x1_up:
            level += block(up[i], up[i], 1)
        inner = nn.Sequential(*level)

    assert inner is not None
    tail: list[nn.Module] = [inner, conv(up[0], out_channels, 1)]
    if need_sigmoid:
        tail.append(nn.Sigmoid())
    config = dict(
        levels=levels,
        channels_down=down,
        channels_up=up,
        skip_channels=skip,
        kernel_down=kd,
        kernel_up=ku,
        kernel_skip=int(kernel_skip),
        need1x1_up=bool(need1x1_up),
        act=act,
        pad=pad,
        upsample=list(ups),
        align_corners=bool(align_corners),
        downsample=downsample,
        need_sigmoid=bool(need_sigmoid),
        need_bias=bool(need_bias),
    )
    return Hourglass(
        nn.Sequential(*tail),
        in_channels=in_channels,
        out_channels=out_channels,
        image_size=image_size,
        input_size=image_size,
        config=config,
    )
