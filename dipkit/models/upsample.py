"""Upsampling layers, selected by name.

Every network in :mod:`dipkit.models` obtains its upsamplers from :func:`make_upsampler`, so
any architecture can be combined with any upsampler (the paper's central experiment):

============================  ====================================================================
name                          layer
============================  ====================================================================
``nearest``                   ``nn.Upsample(mode='nearest')``
``bilinear``                  ``nn.Upsample(mode='bilinear', align_corners=...)``
``bicubic``                   ``nn.Upsample(mode='bicubic', align_corners=...)``
``transposed``                learnable ``nn.ConvTranspose2d(C, C, kernel_size=2, stride=2)`` (with bias)
``none``                      identity (no upsampling)
a filter name, e.g. ``L-60``  zero insertion ×2 followed by a *fixed* depthwise FIR low-pass
``fir``                       same, with explicit ``taps=`` (see :mod:`dipkit.models.filters`)
============================  ====================================================================

The built-in interpolation modes accept either a target ``size=(H, W)`` or a ``scale_factor``.
``transposed`` and the FIR upsamplers always upsample by exactly 2; when a ``size`` is given it
is checked at run time (:class:`RuntimeError` on mismatch), so the networks can pass the same
arguments whatever upsampler is selected.

Zero-insertion FIR upsampler (upstream: ``InsertZeros`` followed by ``lowpass_conv3`` in
``DIP-Recon/core/models/common.py``, used by ``models/ConvDecoder.py``): the input
``[B, C, h, w]`` is interleaved with zeros to ``[B, C, 2h, 2w]`` (input samples at even
indices), then filtered depthwise with the 2-D kernel ``outer(w, w) * 4`` using PyTorch's
``padding='same'`` convention with reflection padding: for ``K`` taps the padding is
``(K - 1) // 2`` before and ``K - 1 - (K - 1) // 2`` after, i.e. ``(0, 1)`` for even ``K``.
The kernel is a registered buffer: it is not a parameter, is not trained, is not counted by
:func:`dipkit.models.count_parameters`, and follows ``.to(device, dtype)``.

With the ``NN`` taps ``[0.5, 0.5]`` and the ``(0, 1)`` padding the result is *exactly* nearest
neighbour upsampling advanced by one output sample (half an input sample), with the last row
and column repeated::

    fir_nn(x)[..., i, j] == nearest(x)[..., min(i + 1, 2h - 1), min(j + 1, 2w - 1)]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .filters import FILTER_TAPS, resolve_filter_name

__all__ = [
    "BUILTIN_MODES",
    "UPSAMPLE_MODES",
    "FIRUpsample2d",
    "TransposedUpsample2d",
    "fir_min_input_size",
    "make_upsampler",
    "resolve_upsample_mode",
    "zero_insert",
]

#: ``nn.Upsample`` interpolation modes supported by name.
BUILTIN_MODES: tuple[str, ...] = ("nearest", "bilinear", "bicubic")

#: All names accepted by :func:`make_upsampler` (filter aliases such as ``LPF5`` are also accepted).
UPSAMPLE_MODES: tuple[str, ...] = BUILTIN_MODES + ("transposed", "none", "fir") + tuple(FILTER_TAPS)

_NONE_ALIASES = {"none", "identity", "no", "off"}


def resolve_upsample_mode(mode: str | None) -> tuple[str, str | None]:
    """Classify an upsampler name.

    :param mode: an upsampler name (see :data:`UPSAMPLE_MODES`), case-insensitive; ``None``
        means ``'none'``.
    :return: ``(kind, detail)`` where ``kind`` is ``'builtin'`` (detail = interpolation mode),
        ``'transposed'``, ``'none'``, ``'fir'`` (detail = canonical filter name, or ``None``
        for explicit taps).
    :raises ValueError: for an unknown name.
    """
    if mode is None:
        return "none", None
    if not isinstance(mode, str):
        raise ValueError(f"upsample mode must be a string, got {type(mode).__name__}")
    key = mode.strip().lower()
    if key in BUILTIN_MODES:
        return "builtin", key
    if key in ("transposed", "transpose", "convtranspose", "deconv"):
        return "transposed", None
    if key in _NONE_ALIASES:
        return "none", None
    if key in ("fir", "zero_insertion", "zero-insertion"):
        return "fir", None
    canon = resolve_filter_name(mode)
    if canon is not None:
        return "fir", canon
    raise ValueError(
        f"unknown upsample mode {mode!r}; allowed: {', '.join(UPSAMPLE_MODES)} "
        "(filter aliases such as 'LPF1', 'LPF5', 'L60' are accepted too)"
    )


def _same_padding(k: int) -> tuple[int, int]:
    """PyTorch ``padding='same'`` split for kernel size ``k``: ``(before, after)``."""
    before = (k - 1) // 2
    return before, k - 1 - before


def fir_min_input_size(num_taps: int) -> int:
    """Smallest input side (before ×2 zero insertion) for which the reflection padding of a
    ``num_taps`` FIR upsampler is valid (reflection needs ``pad < 2 * side``)."""
    return max(_same_padding(int(num_taps))) // 2 + 1


def _check_size(out: torch.Tensor, size: tuple[int, int] | None, what: str) -> torch.Tensor:
    if size is not None and tuple(out.shape[-2:]) != size:
        raise RuntimeError(
            f"{what} upsamples by exactly 2 and produced {tuple(out.shape[-2:])}, "
            f"but the network expects {size}; the image size must be divisible by the "
            "network's total downsampling factor"
        )
    return out


def zero_insert(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Interleave zeros between samples (upstream ``InsertZeros`` with gain 1).

    :param x: tensor of shape ``[B, C, h, w]``.
    :param factor: integer upsampling factor.
    :return: tensor of shape ``[B, C, factor*h, factor*w]`` with ``out[..., ::factor, ::factor]
        == x`` and zeros elsewhere.
    """
    b, c, h, w = x.shape
    y = x.reshape(b, c, h, 1, w, 1)
    y = F.pad(y, (0, factor - 1, 0, 0, 0, factor - 1))
    return y.reshape(b, c, h * factor, w * factor)


class FIRUpsample2d(nn.Module):
    """×2 upsampling by zero insertion followed by a fixed depthwise FIR low-pass filter.

    :param taps: 1-D filter taps ``w`` (length ``K``); the 2-D kernel is ``outer(w, w) * gain``.
    :param gain: 2-D gain; 4 compensates for zero insertion when ``sum(w) == 1``.
    :param size: optional expected output size ``(H, W)``; checked at run time.
    :param name: filter name, for ``repr`` only.

    Shapes: ``[B, C, h, w] -> [B, C, 2h, 2w]`` for any ``C``. The kernel is a non-persistent
    buffer ``kernel`` of shape ``[1, 1, K, K]`` (not a parameter; follows ``.to()``).
    """

    #: CPU fits of networks with this layer stay NCHW (``FitSettings.cpu_layout="auto"``): zero
    #: insertion and the depthwise FIR convolution measured 6-13 % slower in channels-last.
    cpu_channels_last = False

    def __init__(
        self,
        taps: Sequence[float] | np.ndarray | torch.Tensor,
        gain: float = 4.0,
        size: tuple[int, int] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__()
        w = torch.as_tensor(np.asarray(taps, dtype=np.float64))
        if w.ndim != 1 or w.numel() == 0:
            raise ValueError(f"FIR taps must be a non-empty 1-D sequence, got shape {tuple(w.shape)}")
        kernel = torch.outer(w, w) * float(gain)
        self.register_buffer("kernel", kernel[None, None].to(torch.get_default_dtype()), persistent=False)
        self.num_taps = int(w.numel())
        self.gain = float(gain)
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.name = name
        self.padding = _same_padding(self.num_taps)

    def extra_repr(self) -> str:
        label = self.name if self.name is not None else "custom"
        return (
            f"filter={label}, taps={self.num_taps}, gain={self.gain:g}, "
            f"padding={self.padding}, size={self.size}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """:param x: ``[B, C, h, w]``. :return: ``[B, C, 2h, 2w]``."""
        c = x.shape[1]
        y = zero_insert(x, 2)
        before, after = self.padding
        if before or after:
            y = F.pad(y, (before, after, before, after), mode="reflect")
        weight = self.kernel.to(dtype=y.dtype).expand(c, 1, self.num_taps, self.num_taps)
        y = F.conv2d(y, weight, groups=c)
        return _check_size(y, self.size, "FIR upsampler")


class TransposedUpsample2d(nn.Module):
    """Learnable ×2 upsampling, ``nn.ConvTranspose2d(C, C, kernel_size=2, stride=2)``
    (upstream ``upsample_mode='transposed'``). Adds ``4*C*C + C`` parameters.

    :param channels: number of channels ``C``.
    :param size: optional expected output size ``(H, W)``; checked at run time.

    Shapes: ``[B, C, h, w] -> [B, C, 2h, 2w]``.
    """

    def __init__(self, channels: int, size: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2)
        self.size = None if size is None else (int(size[0]), int(size[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """:param x: ``[B, C, h, w]``. :return: ``[B, C, 2h, 2w]``."""
        return _check_size(self.conv(x), self.size, "transposed-convolution upsampler")


def make_upsampler(
    mode: str | None,
    channels: int | None = None,
    *,
    size: tuple[int, int] | None = None,
    scale_factor: float = 2,
    align_corners: bool | None = False,
    taps: Sequence[float] | None = None,
) -> nn.Module:
    """Build an upsampling layer by name.

    :param mode: upsampler name: ``nearest``, ``bilinear``, ``bicubic``, ``transposed``,
        ``none``, ``fir`` (needs ``taps``) or a filter name (``NN``, ``tri``, ``L14``,
        ``L15``, ``L-60``, ``L-100``, ``LPF3``, ``LPF4``, or upstream aliases ``LPF1`` ...).
    :param channels: number of channels ``C``; required for ``transposed`` only.
    :param size: target output size ``(H, W)``. Built-in modes resize to it; the fixed ×2
        upsamplers check it; ``none`` ignores it.
    :param scale_factor: used by built-in modes when ``size`` is ``None``; the other
        upsamplers only support 2.
    :param align_corners: for ``bilinear``/``bicubic`` (ignored otherwise).
    :param taps: explicit 1-D FIR taps (for ``mode='fir'``; overrides a filter name).
    :return: a module mapping ``[B, C, h, w] -> [B, C, H, W]``.
    """
    kind, detail = resolve_upsample_mode(mode)
    size_t = None if size is None else (int(size[0]), int(size[1]))
    if taps is not None and kind != "fir":
        raise ValueError(f"taps= is only used by FIR upsamplers ('fir' or a filter name), not by {mode!r}")
    if kind == "builtin":
        ac = bool(align_corners) if detail in ("bilinear", "bicubic") else None
        if size_t is not None:
            return nn.Upsample(size=size_t, mode=detail, align_corners=ac)
        return nn.Upsample(scale_factor=scale_factor, mode=detail, align_corners=ac)
    if kind == "none":
        return nn.Identity()
    if size_t is None and float(scale_factor) != 2.0:
        raise ValueError(f"upsampler {mode!r} only supports scale_factor=2, got {scale_factor}")
    if kind == "transposed":
        if channels is None:
            raise ValueError("the 'transposed' upsampler needs the number of channels")
        return TransposedUpsample2d(int(channels), size=size_t)
    # FIR
    if taps is not None:
        return FIRUpsample2d(taps, size=size_t, name="custom")
    if detail is None:
        raise ValueError(
            "upsample mode 'fir' needs explicit taps=[...] (or use a filter name such as 'L-60')"
        )
    return FIRUpsample2d(FILTER_TAPS[detail], size=size_t, name=detail)
