"""Faster CPU kernels for the layers around the convolutions of a DIP network.

On a CPU a DIP iteration is mostly convolutions, which oneDNN already runs near the cores'
peak. Most of the rest goes to two PyTorch CPU kernels that are slow for the shapes DIP
uses (batch 1, 32-128 channels, up to 512^2):

* ``upsample_bilinear2d_backward`` is a scalar scatter loop: 8.3 ms for a 64-channel
  256^2 output on two cores, against 2.5 ms for the same adjoint of bilinear x2
  upsampling written as a few vectorised strided adds (:func:`upsample_bilinear2x_adjoint`;
  the forward pass stays PyTorch's);
* train-mode ``native_batch_norm`` computes the statistics with a slow reduction: 5.2 ms
  for 64 x 256^2, against 3.1 ms for a two-pass mean and variance (sum, then a dot
  product of the centred values) followed by an in-place affine
  (:func:`batch_norm_train`).

:func:`cpu_kernels` is a context manager that routes the matching calls
(``F.interpolate`` with bilinear x2 and ``align_corners=False``; ``F.batch_norm`` in
training mode without running statistics, batch 1) to these kernels while a network runs
its forward pass; the backward passes follow through :class:`torch.autograd.Function`.
Anything else -- other modes, sizes, dtypes, devices, batched inputs -- falls through to
PyTorch unchanged. The engine (:func:`dipkit.fit.fit`) uses it on CPU when
``FitSettings.cpu_kernels`` is true (the default), together with PyTorch's fused CPU
Adam; :func:`dipkit.fit.reference.reference_fit`, the yardstick that behaves like the
paper's code, does not.

The kernels compute the same functions -- only the order of the floating-point operations
differs: in float64 the fits agree with PyTorch's kernels to about 1e-12
(``tests/test_fit_kernels.py``, ``tests/test_fit_reference.py``); in float32 the
trajectories part after a few iterations, as any change of summation order does in DIP
(see README, *Noise, seeds and determinism*).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
from torch.overrides import TorchFunctionMode

__all__ = [
    "batch_norm_train",
    "cpu_kernels",
    "upsample_bilinear2x_adjoint",
]

_DTYPES = (torch.float32, torch.float64)


# --------------------------------------------------------------------------- bilinear x2


def _up2_adjoint_along(g: torch.Tensor, dim: int) -> torch.Tensor:
    """The adjoint of linear x2 upsampling (``align_corners=False``) along ``dim`` (-1 or -2).

    The forward map is ``out[2i] = 0.75 x[i] + 0.25 x[i-1]`` and
    ``out[2i+1] = 0.75 x[i] + 0.25 x[i+1]``, with ``x[-1] = x[0]`` and ``x[n] = x[n-1]``
    (PyTorch clamps the source coordinate at the borders). ``g`` has ``2n`` entries along
    ``dim``, the result ``n``: ``r[i] = 0.75 (g[2i] + g[2i+1]) + 0.25 (g[2i-1] + g[2i+2])``,
    where the borders take the clamped samples' weights (``r[0]`` gets ``0.25 g[0]``,
    ``r[n-1]`` gets ``0.25 g[2n-1]``).
    """
    n = g.shape[dim] // 2
    pairs = g.unflatten(dim, (n, 2))
    even, odd = pairs.select(dim, 0), pairs.select(dim, 1)
    r = torch.add(even, odd).mul_(0.75)
    if n > 1:
        r.narrow(dim, 1, n - 1).add_(odd.narrow(dim, 0, n - 1), alpha=0.25)
        r.narrow(dim, 0, n - 1).add_(even.narrow(dim, 1, n - 1), alpha=0.25)
    r.narrow(dim, 0, 1).add_(even.narrow(dim, 0, 1), alpha=0.25)
    r.narrow(dim, n - 1, 1).add_(odd.narrow(dim, n - 1, 1), alpha=0.25)
    return r


def upsample_bilinear2x_adjoint(g: torch.Tensor) -> torch.Tensor:
    """The gradient of bilinear x2 upsampling (``align_corners=False``) with respect to its
    input: ``[N, C, 2h, 2w]`` -> ``[N, C, h, w]``. Height first (whole rows, halving the
    data), then width.
    """
    return _up2_adjoint_along(_up2_adjoint_along(g, -2), -1)


class _UpsampleBilinear2x(torch.autograd.Function):
    """PyTorch's forward kernel (bit for bit), :func:`upsample_bilinear2x_adjoint` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=(2 * x.shape[-2], 2 * x.shape[-1]), mode="bilinear", align_corners=False)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return upsample_bilinear2x_adjoint(grad)


# --------------------------------------------------------------------------- BatchNorm


class _BatchNormTrain(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        channels = x.shape[1]
        v = x.view(channels, -1)
        n = v.shape[1]
        mean = v.sum(1).div_(n)
        out = v - mean[:, None]  # centred values; becomes the output in place
        invstd = torch.linalg.vecdot(out, out).div_(n).add_(eps).rsqrt_()
        out.mul_((invstd if weight is None else weight * invstd)[:, None])
        if bias is not None:
            out.add_(bias[:, None])
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        return out.view_as(x)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight, mean, invstd = ctx.saved_tensors
        need = ctx.needs_input_grad
        mask = [need[0], need[1] and weight is not None, need[2] and weight is not None]
        if not any(mask):
            return None, None, None, None
        gx, gw, gb = torch.ops.aten.native_batch_norm_backward(
            grad.contiguous(), x, weight, None, None, mean, invstd, True, ctx.eps, mask
        )
        if need[2] and weight is None:  # no affine weight: the bias gradient is a plain sum
            gb = grad.sum(dim=(0, 2, 3))
        return gx, gw, gb, None


def batch_norm_train(
    x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float = 1e-5
) -> torch.Tensor:
    """Training-mode BatchNorm of one image, with autograd.

    :param x: ``[1, C, H, W]``, contiguous, ``H * W > 1``.
    :param weight: ``[C]`` or ``None``; :param bias: ``[C]`` or ``None``.
    :return: ``(x - mean) / sqrt(var + eps) * weight + bias`` with the per-channel mean and
        biased variance of ``x`` (what ``F.batch_norm(x, None, None, weight, bias, True)``
        computes). The backward pass is PyTorch's ``native_batch_norm_backward``, given
        these statistics.
    """
    if x.dim() != 4 or x.shape[0] != 1 or not x.is_contiguous():
        raise ValueError(f"batch_norm_train expects a contiguous [1, C, H, W] tensor, got {tuple(x.shape)}")
    return _BatchNormTrain.apply(x, weight, bias, float(eps))


# --------------------------------------------------------------------------- routing


def _interpolate_args(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                      recompute_scale_factor=None, antialias=False):
    return input, size, scale_factor, mode, align_corners, antialias


def _is_two(value) -> bool:
    values = value if isinstance(value, (tuple, list)) else (value, value)
    return len(values) == 2 and all(float(v) == 2.0 for v in values)


def _upsample(args, kwargs) -> torch.Tensor | None:
    x, size, scale_factor, mode, align_corners, antialias = _interpolate_args(*args, **kwargs)
    if mode != "bilinear" or align_corners or antialias or not isinstance(x, torch.Tensor):
        return None
    if x.dim() != 4 or x.device.type != "cpu" or x.dtype not in _DTYPES:
        return None
    h, w = x.shape[-2:]
    if size is not None:
        target = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
        if target != (2 * h, 2 * w):
            return None
    elif scale_factor is None or not _is_two(scale_factor):
        return None
    return _UpsampleBilinear2x.apply(x)


def _batch_norm_args(input, running_mean, running_var, weight=None, bias=None, training=False,
                     momentum=0.1, eps=1e-5):
    return input, running_mean, running_var, weight, bias, training, eps


def _batch_norm(args, kwargs) -> torch.Tensor | None:
    x, running_mean, running_var, weight, bias, training, eps = _batch_norm_args(*args, **kwargs)
    if not training or running_mean is not None or running_var is not None or not isinstance(x, torch.Tensor):
        return None
    if x.dim() != 4 or x.shape[0] != 1 or x.shape[2] * x.shape[3] < 2 or not x.is_contiguous():
        return None
    if x.device.type != "cpu" or x.dtype not in _DTYPES:
        return None
    for t in (weight, bias):
        if t is not None and (t.dtype != x.dtype or t.device != x.device):
            return None
    return _BatchNormTrain.apply(x, weight, bias, float(eps))


class _CPUKernelMode(TorchFunctionMode):
    """Routes matching ``F.interpolate`` / ``F.batch_norm`` calls to this module's kernels."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.interpolate:
            out = _upsample(args, kwargs)
            if out is not None:
                return out
        elif func is F.batch_norm:
            out = _batch_norm(args, kwargs)
            if out is not None:
                return out
        return func(*args, **kwargs)


def cpu_kernels(enabled: bool = True) -> contextlib.AbstractContextManager:
    """A reusable context manager: within it, bilinear x2 upsampling and train-mode
    BatchNorm of CPU tensors run on this module's kernels (see the module docstring).
    ``enabled=False`` gives one that does nothing."""
    return _CPUKernelMode() if enabled else contextlib.nullcontext()
