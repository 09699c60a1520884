"""Small building blocks shared by all networks, and the common base class.

Upstream counterparts (``DIP-Recon/core/models/common.py`` in
``YilinLiu97/FasterDIP-devil-in-upsampling``, same as ``models/common.py`` in
``DmitryUlyanov/deep-image-prior``): ``act`` -> :func:`make_activation`, ``conv`` ->
:func:`make_conv`, ``bn`` -> :func:`make_norm`, ``Concat`` -> :class:`Concat`.

Batch normalisation: DIP-style fitting never calls ``net.eval()``, so BatchNorm always
normalises with the statistics of the current batch. :func:`make_norm` therefore builds
``nn.BatchNorm2d(C, affine=True, track_running_stats=False)``: the forward pass (and the
parameter count, ``2*C``) is identical to upstream's train-mode BatchNorm, but the behaviour
no longer depends on ``train()``/``eval()`` and there are no running-statistics buffers that
would be mutated in place (convenient for ``torch.func``/``vmap`` batching of fits).
"""

from __future__ import annotations

import torch
from torch import nn

from dipkit.architectures import canonical_activation, canonical_padding

__all__ = [
    "Concat",
    "DIPNetwork",
    "make_activation",
    "make_conv",
    "make_norm",
]


def make_activation(name: str) -> nn.Module:
    """Activation layer by name: ``ReLU``, ``LeakyReLU`` (negative slope 0.2, as in DIP),
    ``GELU`` or ``none`` (identity). Not in-place (numerically identical to upstream's
    in-place versions, but safe under ``torch.func`` transforms)."""
    name = canonical_activation(name)
    if name == "ReLU":
        return nn.ReLU()
    if name == "LeakyReLU":
        return nn.LeakyReLU(0.2)
    if name == "GELU":
        return nn.GELU()
    return nn.Identity()


def make_norm(channels: int) -> nn.BatchNorm2d:
    """Affine BatchNorm that always uses batch statistics (see module docstring)."""
    return nn.BatchNorm2d(channels, affine=True, track_running_stats=False)


def make_conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    *,
    bias: bool = True,
    pad: str = "zero",
    downsample: str = "stride",
) -> nn.Module:
    """Convolution with 'same'-style padding, as DIP's ``conv`` helper.

    :param kernel_size: odd kernel size ``k``; padding is ``(k - 1) // 2`` on each side.
    :param stride: 1, or 2 for downsampling.
    :param pad: ``'zero'`` (``Conv2d(padding=...)``) or ``'reflection'`` (a
        ``ReflectionPad2d`` before an unpadded ``Conv2d``; omitted for 1x1 kernels).
    :param downsample: how a ``stride > 1`` is realised: ``'stride'`` (strided conv),
        ``'avg'`` or ``'max'`` (stride-1 conv followed by pooling).
    :return: module mapping ``[B, in, h, w] -> [B, out, ceil(h/stride), ceil(w/stride)]``
        (for even ``h, w`` simply ``h/stride``).
    """
    k = int(kernel_size)
    if k < 1 or k % 2 == 0:
        raise ValueError(f"kernel sizes must be odd and positive, got {kernel_size}")
    pad = canonical_padding(pad)
    pool: nn.Module | None = None
    if stride != 1 and downsample != "stride":
        if downsample == "avg":
            pool = nn.AvgPool2d(stride, stride)
        elif downsample == "max":
            pool = nn.MaxPool2d(stride, stride)
        else:
            raise ValueError(f"unknown downsample mode {downsample!r}; allowed: stride, avg, max")
        stride = 1
    p = (k - 1) // 2
    layers: list[nn.Module] = []
    if pad == "reflection" and p > 0:
        layers.append(nn.ReflectionPad2d(p))
        p = 0
    layers.append(nn.Conv2d(in_channels, out_channels, k, stride, padding=p, bias=bias))
    if pool is not None:
        layers.append(pool)
    return layers[0] if len(layers) == 1 else nn.Sequential(*layers)


class Concat(nn.Module):
    """Apply several branches to the same input and concatenate along channels.

    If the branch outputs differ in spatial size, each is centre-cropped to the smallest
    height and width first (offset ``(size - min) // 2``), as DIP's ``Concat``.

    Shapes: ``[B, C_in, h, w] -> [B, sum(C_i), min h_i, min w_i]``.
    """

    def __init__(self, *branches: nn.Module) -> None:
        super().__init__()
        for i, branch in enumerate(branches):
            self.add_module(str(i), branch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.children()]
        h = min(o.shape[-2] for o in outs)
        w = min(o.shape[-1] for o in outs)
        cropped = []
        for o in outs:
            dh = (o.shape[-2] - h) // 2
            dw = (o.shape[-1] - w) // 2
            cropped.append(o[..., dh : dh + h, dw : dw + w])
        return torch.cat(cropped, dim=1)


class DIPNetwork(nn.Module):
    """Base class of every network built by :func:`dipkit.models.build_model`.

    :ivar in_channels: channels of the input code ``z``.
    :ivar out_channels: channels of the output image.
    :ivar image_size: output spatial size ``(H, W)``.
    :ivar input_size: spatial size ``(h, w)`` of the input code ``z`` for that image size.
    :ivar config: the resolved construction options (plain Python values), for logging.
    :ivar net: the layers, an ``nn.Sequential``.

    ``forward(z)`` maps ``[B, in_channels, *input_size] -> [B, out_channels, H, W]`` and
    raises :class:`ValueError` for any other input shape.
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        in_channels: int,
        out_channels: int,
        image_size: tuple[int, int],
        input_size: tuple[int, int],
        config: dict | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.config = dict(config or {})

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(in_channels, h, w)``: the shape of one input code (without batch dimension)."""
        return (self.in_channels, *self.input_size)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, input_size={self.input_size}, "
            f"out_channels={self.out_channels}, image_size={self.image_size}"
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """:param z: input code ``[B, in_channels, h, w]`` with ``(h, w) == input_size``.
        :return: image ``[B, out_channels, H, W]`` with ``(H, W) == image_size``."""
        if z.dim() != 4 or z.shape[1] != self.in_channels or tuple(z.shape[-2:]) != self.input_size:
            raise ValueError(
                f"{type(self).__name__} expects input [B, {self.in_channels}, {self.input_size[0]}, "
                f"{self.input_size[1]}], got {list(z.shape)}"
            )
        return self.net(z)
