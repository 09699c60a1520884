"""Swin-UNet as a Deep Image Prior network (paper Fig. 12), in plain PyTorch.

Re-implementation of ``SwinTransformerSys`` from ``YilinLiu97/FasterDIP-devil-in-upsampling``,
``DIP-Recon/transformer-DIP/model_trans/``: ``transformer.py`` (the paper's modified Swin-UNet,
bilinear upsampling) and ``transformer2.py`` (the original Swin-UNet of Cao et al.,
``HuCaoFighting/Swin-Unet``, with "patch expanding"). Both files build the same U-shaped
network and differ only in the decoder's upsamplers; :func:`build_swin_unet` selects them with
``upsample``.

Structure (``S`` stages, embedding width ``C``, stage ``s`` has ``d_s = C * 2**s`` channels and a
token grid of ``(H / (p * 2**s), W / (p * 2**s))`` for patch size ``p``); tokens are kept
channels-last, ``[B, h, w, d]``::

    embed      z [B, c_in, H, W] -> conv p x p, stride p (c_in -> C) -> LayerNorm(C)
    encoder    for s = 0 .. S-1:  skip_s = x;  x = SwinBlocks_s(x);  x = PatchMerging_s(x) if s < S-1
               x = LayerNorm(d_{S-1})(x)                                   # bottleneck norm
    decoder    x = Expand(d_{S-1})(x)                                      # to stage S-2
               for t = S-2 .. 0:  x = Linear(2 d_t -> d_t)(concat(x, skip_t))
                                  x = SwinBlocks_t(x);  x = Expand(d_t)(x) if t > 0
               x = LayerNorm(C)(x)
    head       x = FinalExpand(C)(x)   # x p, still C channels
               out = conv 1x1 (C -> out, no bias) -> sigmoid

* **Swin block** (pre-norm): ``x + WindowAttention(LN(x))`` then ``x + MLP(LN(x))``; the MLP is
  ``Linear(d -> r d) -> GELU -> Linear(r d -> d)``. Window multi-head self-attention has q/k/v
  biases, scale ``head_dim ** -0.5`` and a learned relative position bias (a table of
  ``(2 wh - 1)(2 ww - 1)`` entries per head). Within each stage, odd blocks (1st, 3rd, ... in
  0-based counting) use shifted windows (cyclic shift by ``window // 2`` plus the attention mask
  that keeps wrapped-around regions apart, masked logits get ``-100`` as upstream).
  With the default ``depths=(1, 1, 1, 1)`` every stage has a single, *non-shifted* block, exactly
  as upstream; shifted windows appear with depths ``>= 2``.
* **Patch merging**: concatenate the four 2x2 neighbours (order ``(0,0), (1,0), (0,1), (1,1)``)
  -> LayerNorm(4d) -> Linear(4d -> 2d, no bias).
* **Skip connections**: the skip of stage ``t`` is the input of that stage's encoder blocks (the
  patch embedding for ``t = 0``, the patch-merging output otherwise), as upstream.

Upsamplers (``upsample``):

=================  ===========================================  ===========================================
                   ``"patch_expand"`` (``transformer2.py``)     ``"bilinear"`` (``transformer.py``)
=================  ===========================================  ===========================================
Expand(d)          Linear(d -> 2d, no bias), rearrange           Linear(d -> d/2, no bias), bilinear x2
(x2, d -> d/2)     ``(p1 p2 c) -> (h p1)(w p2) c`` with p=2,      (``align_corners=True``), BatchNorm2d(d/2)
                   LayerNorm(d/2)
FinalExpand(C)     Linear(C -> p^2 C, no bias), rearrange x p,   conv 1x1 (C -> 4C, bias), pixel shuffle x2
(x p, C -> C)      LayerNorm(C)                                  ``(c p1 p2)``, bilinear x(p/2)
                                                                 (``align_corners=False``), BatchNorm2d(C)
=================  ===========================================  ===========================================

(upstream's ``align_corners`` differ between the two bilinear upsamplers; we keep that.)
BatchNorm always uses batch statistics (:func:`dipkit.models.layers.make_norm`), as DIP fitting
never switches to eval mode; the network has no dropout/drop-path, so it is deterministic and
``train()``/``eval()`` give the same output.

Initialisation as upstream: every ``nn.Linear`` weight is truncated normal (std 0.02, cut at
+-2), biases 0; relative-position tables truncated normal (std 0.02); LayerNorm 1/0;
convolutions and BatchNorm keep PyTorch's defaults. All random numbers come from torch's global
RNG.

Defaults and choices
--------------------

* **One shared default for both upsamplers** so that Fig. 12's comparison differs only in the
  upsampler: the paper's modified configuration (``transformer.py``): ``embed_dim=108``,
  ``heads=(4, 8, 8, 6)`` (head dims 27, 27, 54, 144), ``depths=(1, 1, 1, 1)`` (the decoder
  mirrors the encoder: stage ``t`` of the decoder has ``depths[t]`` blocks; upstream's
  ``depths_decoder`` argument is unused there too), ``window=8``, ``mlp_ratio=4``,
  ``patch_size=4``, ``in_channels=32``, no drop-path. The original ``transformer2.py`` defaults
  are ``embed_dim=96, heads=(4, 4, 4, 4)`` with drop-path 0.1; the former two are available as
  options, stochastic depth is deliberately not (a DIP fit must be deterministic).
* **Input code**: ``z`` has the full image size, ``[1, in_channels, H, W]``; upstream draws it
  as ``U[0, 1) * 0.2`` (``x *= 1./5.``) with 32 channels. (The fit settings live elsewhere.)
* **Window adaptation, per axis**: Swin shrinks the window to the token grid when the grid is
  not larger than the window (and then does not shift). Upstream only handles square images
  and uses ``min(h, w)`` for both axes; here each axis is treated separately: along an axis of
  ``n`` tokens the window is ``min(window, n)`` and shifted blocks shift by ``window // 2`` only
  if ``n > window``. For square images this is identical to upstream. Consequently the size of
  the relative-position tables (and the parameter count) depends on the image size when a stage
  grid is smaller than the window (e.g. 64x64 images).
* **Valid image sizes**: ``H`` and ``W`` must be divisible by ``patch_size * 2**(S-1)`` (32 by
  default), and at every stage each grid side must be ``<= window`` or a multiple of
  ``window``. With the defaults each side must be 32, 64, 128 or a multiple of 256 (e.g.
  512x512, 256x768, 64x128). For 480x320 (CBSD68) use ``window=5`` (grids 120x80 ... 15x10).
* **Patch size**: ``patch_size`` is generalised from upstream's fixed 4: the final expansion
  scales by ``patch_size`` (``"patch_expand"``: one ``p x p`` rearrangement; ``"bilinear"``:
  pixel shuffle x2 then bilinear x``p/2``, so ``patch_size`` must be even there).

Checked against upstream (square images, with shims for ``einops``/``timm``): parameter counts
are identical (RGB, 512x512: 17,930,682 bilinear, 19,539,882 patch_expand with the shared
default, 15,446,652 for ``transformer2.py``'s own 96/[4,4,4,4]), and with upstream's weights
copied in, outputs agree to ~1e-15 in float64 for both upsamplers, also with depths 2 (shifted
windows).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import nn

from .layers import DIPNetwork, make_norm

__all__ = [
    "SWIN_UPSAMPLERS",
    "SwinBlock",
    "SwinUNet",
    "WindowAttention",
    "build_swin_unet",
    "shifted_window_mask",
    "swin_unet_geometry",
]

#: accepted values of the ``upsample`` option
SWIN_UPSAMPLERS: tuple[str, ...] = ("bilinear", "patch_expand")

#: logit added to masked (wrapped-around) pairs in shifted-window attention, as upstream
MASK_VALUE = -100.0


# ----------------------------------------------------------------------------- geometry


def _is_positive_int(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and int(v) == v and int(v) >= 1


def _int_tuple(value, name: str) -> tuple[int, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError(f"swin_unet: {name} must be a sequence of ints (one per stage), got {value!r}")
    if not all(_is_positive_int(v) for v in value):
        raise ValueError(f"swin_unet: {name} must hold positive ints, got {value!r}")
    return tuple(int(v) for v in value)


def _positive_int(value, name: str) -> int:
    if not _is_positive_int(value):
        raise ValueError(f"swin_unet: {name} must be a positive int, got {value!r}")
    return int(value)


def resolve_swin_options(
    *,
    upsample: str = "bilinear",
    embed_dim: int = 108,
    depths: Sequence[int] = (1, 1, 1, 1),
    heads: Sequence[int] = (4, 8, 8, 6),
    window: int = 8,
    mlp_ratio: float = 4.0,
    patch_size: int = 4,
    in_channels: int = 32,
    need_sigmoid: bool = True,
) -> dict:
    """Validate and normalise the options of :func:`build_swin_unet` (no image size involved).

    :raises ValueError: naming the offending option.
    """
    if upsample not in SWIN_UPSAMPLERS:
        raise ValueError(f"swin_unet: unknown upsample {upsample!r}; allowed: {', '.join(SWIN_UPSAMPLERS)}")
    embed_dim = _positive_int(embed_dim, "embed_dim")
    depths = _int_tuple(depths, "depths")
    heads = _int_tuple(heads, "heads")
    if len(depths) < 2:
        raise ValueError(f"swin_unet: needs at least 2 stages (len(depths) >= 2), got depths={depths}")
    if len(heads) != len(depths):
        raise ValueError(f"swin_unet: heads {heads} and depths {depths} must have one entry per stage")
    for s, h in enumerate(heads):
        dim = embed_dim * 2**s
        if dim % h:
            raise ValueError(
                f"swin_unet: stage {s} has {dim} channels (embed_dim * 2**{s}), not divisible by "
                f"heads[{s}] = {h}"
            )
    window = _positive_int(window, "window")
    patch_size = _positive_int(patch_size, "patch_size")
    if upsample == "bilinear" and patch_size % 2:
        raise ValueError(
            f"swin_unet: upsample='bilinear' needs an even patch_size (final expansion = pixel "
            f"shuffle x2, bilinear x patch_size/2), got {patch_size}"
        )
    try:
        mlp_ratio = float(mlp_ratio)
    except (TypeError, ValueError):
        raise ValueError(f"swin_unet: mlp_ratio must be a number, got {mlp_ratio!r}") from None
    if not mlp_ratio > 0 or int(embed_dim * mlp_ratio) < 1:
        raise ValueError(f"swin_unet: mlp_ratio must be positive, got {mlp_ratio!r}")
    in_channels = _positive_int(in_channels, "in_channels")
    return dict(
        upsample=upsample,
        embed_dim=embed_dim,
        depths=depths,
        heads=heads,
        window=window,
        mlp_ratio=mlp_ratio,
        patch_size=patch_size,
        in_channels=in_channels,
        need_sigmoid=bool(need_sigmoid),
    )


def swin_unet_geometry(
    image_size: tuple[int, int], *, patch_size: int = 4, stages: int = 4, window: int = 8
) -> list[dict]:
    """Per-stage token grids and attention windows for an image size.

    :return: one dict per stage ``s`` with ``grid`` ``(h, w)``, ``window`` ``(wh, ww)`` and
        ``shift`` ``(sh, sw)`` (the shift that shifted blocks of that stage use; 0 along an axis
        whose grid fits in one window).
    :raises ValueError: if the image size is not divisible by ``patch_size * 2**(stages-1)`` or
        a stage grid side is larger than ``window`` but not a multiple of it.
    """
    H, W = int(image_size[0]), int(image_size[1])
    factor = patch_size * 2 ** (stages - 1)
    if H % factor or W % factor:
        raise ValueError(
            f"swin_unet: image size {H}x{W} must be divisible by patch_size * 2**(stages - 1) = "
            f"{patch_size} * 2**{stages - 1} = {factor} (patch embedding and {stages - 1} patch "
            f"mergings); e.g. use {max(factor, H // factor * factor)}x{max(factor, W // factor * factor)}"
        )
    out = []
    for s in range(stages):
        grid = (H // (patch_size * 2**s), W // (patch_size * 2**s))
        win, shift = [], []
        for n in grid:
            if n <= window:
                win.append(n)
                shift.append(0)
            elif n % window:
                raise ValueError(
                    f"swin_unet: image size {H}x{W} gives a {grid[0]}x{grid[1]} token grid at stage "
                    f"{s}; with window={window} every grid side must be <= {window} or a multiple of "
                    f"{window} (the grid at stage s is image / (patch_size * 2**s)). Choose another "
                    f"image size (e.g. a multiple of {factor * window}) or another window "
                    f"(a common divisor of the grid sides)"
                )
            else:
                win.append(window)
                shift.append(window // 2)
        out.append(dict(grid=grid, window=tuple(win), shift=tuple(shift)))
    return out


# ----------------------------------------------------------------------------- windows


def window_partition(x: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    """``[B, h, w, C] -> [B * nW, wh * ww, C]``, windows in row-major order."""
    B, h, w, C = x.shape
    wh, ww = window
    x = x.reshape(B, h // wh, wh, w // ww, ww, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, wh * ww, C)


def window_merge(windows: torch.Tensor, window: tuple[int, int], grid: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``[B * nW, wh * ww, C] -> [B, h, w, C]``."""
    h, w = grid
    wh, ww = window
    C = windows.shape[-1]
    x = windows.reshape(-1, h // wh, w // ww, wh, ww, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, C)


def _region_labels(n: int, window: int, shift: int) -> torch.Tensor:
    """Region id along one axis of the *cyclically shifted* grid: positions that came from
    different sides of the wrap-around get different ids (3 regions, or 1 without shift)."""
    labels = torch.zeros(n, dtype=torch.long)
    if shift > 0:
        labels[n - window : n - shift] = 1
        labels[n - shift :] = 2
    return labels


def shifted_window_mask(
    grid: tuple[int, int], window: tuple[int, int], shift: tuple[int, int]
) -> torch.Tensor | None:
    """Additive attention mask for shifted windows, ``[nW, N, N]`` with ``N = wh * ww``:
    0 for token pairs from the same region of the shifted grid, :data:`MASK_VALUE` otherwise.
    ``None`` when nothing is shifted."""
    if shift[0] == 0 and shift[1] == 0:
        return None
    lh = _region_labels(grid[0], window[0], shift[0])
    lw = _region_labels(grid[1], window[1], shift[1])
    labels = (lh[:, None] * 3 + lw[None, :]).to(torch.float32)  # [h, w]
    win = window_partition(labels[None, :, :, None], window)[..., 0]  # [nW, N]
    different = win[:, :, None] != win[:, None, :]
    mask = torch.zeros(different.shape, dtype=torch.float32)
    return mask.masked_fill(different, MASK_VALUE)


def _relative_position_index(window: tuple[int, int]) -> torch.Tensor:
    """``[N, N]`` index into a ``(2 wh - 1) * (2 ww - 1)`` table for every (query, key) pair of
    a window: ``(dy + wh - 1) * (2 ww - 1) + (dx + ww - 1)`` with ``(dy, dx) = q - k``."""
    wh, ww = window
    yy, xx = torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")
    y, x = yy.reshape(-1), xx.reshape(-1)
    dy = y[:, None] - y[None, :] + wh - 1
    dx = x[:, None] - x[None, :] + ww - 1
    return dy * (2 * ww - 1) + dx


# ----------------------------------------------------------------------------- layers


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a learned relative position bias.

    Shapes: ``[B * nW, N, dim] -> [B * nW, N, dim]``; ``mask`` is ``[nW, N, N]`` or ``None``.
    """

    def __init__(self, dim: int, window: tuple[int, int], heads: int) -> None:
        super().__init__()
        self.dim, self.window, self.heads = dim, tuple(window), heads
        self.scale = (dim // heads) ** -0.5
        wh, ww = self.window
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * wh - 1) * (2 * ww - 1), heads))
        self.register_buffer(
            "relative_position_index", _relative_position_index(self.window), persistent=False
        )
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def relative_position_bias(self) -> torch.Tensor:
        """``[heads, N, N]``."""
        n = self.window[0] * self.window[1]
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        return bias.reshape(n, n, self.heads).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        Bw, N, C = x.shape
        qkv = self.qkv(x).reshape(Bw, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # [Bw, heads, N, hd]
        logits = (q * self.scale) @ k.transpose(-2, -1) + self.relative_position_bias()[None]
        if mask is not None:
            nW = mask.shape[0]
            logits = logits.reshape(Bw // nW, nW, self.heads, N, N) + mask[None, :, None]
            logits = logits.reshape(Bw, self.heads, N, N)
        out = logits.softmax(dim=-1) @ v  # [Bw, heads, N, hd]
        return self.proj(out.transpose(1, 2).reshape(Bw, N, C))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, window={self.window}, heads={self.heads}"


class SwinBlock(nn.Module):
    """Swin transformer block on channels-last tokens ``[B, h, w, dim]`` (same shape out).

    :param grid: token grid ``(h, w)`` the block is built for.
    :param window: requested window size; clipped per axis to the grid (see module docstring).
    :param shifted: use shifted windows (shift ``window // 2`` along axes longer than ``window``).
    """

    def __init__(
        self, dim: int, grid: tuple[int, int], heads: int, window: int, shifted: bool, mlp_ratio: float
    ) -> None:
        super().__init__()
        self.dim, self.grid = dim, (int(grid[0]), int(grid[1]))
        self.window = tuple(n if n <= window else window for n in self.grid)
        self.shift = tuple(window // 2 if (shifted and n > window) else 0 for n in self.grid)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, self.window, heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.register_buffer(
            "attn_mask", shifted_window_mask(self.grid, self.window, self.shift), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sh, sw = self.shift
        y = self.norm1(x)
        if sh or sw:
            y = torch.roll(y, shifts=(-sh, -sw), dims=(1, 2))
        y = window_merge(self.attn(window_partition(y, self.window), self.attn_mask), self.window, self.grid)
        if sh or sw:
            y = torch.roll(y, shifts=(sh, sw), dims=(1, 2))
        x = x + y
        return x + self.mlp(self.norm2(x))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, grid={self.grid}, window={self.window}, shift={self.shift}"


class PatchMerging(nn.Module):
    """``[B, h, w, d] -> [B, h/2, w/2, 2d]``: 2x2 neighbours concatenated, LayerNorm, linear."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


def _unfold_channels(x: torch.Tensor, p: int) -> torch.Tensor:
    """Channels-last rearrangement ``b h w (p1 p2 c) -> b (h p1) (w p2) c``."""
    B, h, w, C = x.shape
    c = C // (p * p)
    x = x.reshape(B, h, w, p, p, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(B, h * p, w * p, c)


class PatchExpand(nn.Module):
    """Original Swin-UNet upsampler ``[B, h, w, d] -> [B, 2h, 2w, d/2]``: Linear(d -> 2d, no
    bias), rearrange into 2x2 sub-pixels, LayerNorm(d/2)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.expand = nn.Linear(dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(dim // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(_unfold_channels(self.expand(x), 2))


class BilinearExpand(nn.Module):
    """The paper's upsampler ``[B, h, w, d] -> [B, 2h, 2w, d/2]``: Linear(d -> d/2, no bias),
    bilinear x2 (``align_corners=True``), BatchNorm2d(d/2)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.expand = nn.Linear(dim, dim // 2, bias=False)
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.norm = make_norm(dim // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x).permute(0, 3, 1, 2)
        return self.norm(self.upsample(y)).permute(0, 2, 3, 1)


class FinalPatchExpand(nn.Module):
    """Original final upsampler ``[B, h, w, C] -> [B, p h, p w, C]``: Linear(C -> p^2 C, no
    bias), rearrange into p x p sub-pixels, LayerNorm(C)."""

    def __init__(self, dim: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.expand = nn.Linear(dim, factor * factor * dim, bias=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(_unfold_channels(self.expand(x), self.factor))


class FinalBilinearExpand(nn.Module):
    """The paper's final upsampler ``[B, h, w, C] -> [B, p h, p w, C]``: conv 1x1 (C -> 4C, with
    bias), pixel shuffle x2 (``b (c p1 p2) h w -> b c (h p1) (w p2)``), bilinear x(p/2)
    (``align_corners=False``; omitted for p = 2), BatchNorm2d(C)."""

    def __init__(self, dim: int, factor: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, 4 * dim, kernel_size=1)
        self.shuffle = nn.PixelShuffle(2)
        rest = factor // 2
        self.upsample = (
            nn.Upsample(scale_factor=rest, mode="bilinear", align_corners=False)
            if rest > 1
            else nn.Identity()
        )
        self.norm = make_norm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.shuffle(self.conv(x.permute(0, 3, 1, 2)))
        return self.norm(self.upsample(y)).permute(0, 2, 3, 1)


# ----------------------------------------------------------------------------- network


class SwinUNetCore(nn.Module):
    """The layers of :class:`SwinUNet`: ``[B, c_in, H, W] -> [B, out, H, W]``."""

    def __init__(self, in_channels: int, out_channels: int, image_size: tuple[int, int], opts: dict) -> None:
        super().__init__()
        C, p, window = opts["embed_dim"], opts["patch_size"], opts["window"]
        depths, heads, ratio = opts["depths"], opts["heads"], opts["mlp_ratio"]
        S = len(depths)
        geo = swin_unet_geometry(image_size, patch_size=p, stages=S, window=window)
        grids = [g["grid"] for g in geo]
        dims = [C * 2**s for s in range(S)]
        Expand = BilinearExpand if opts["upsample"] == "bilinear" else PatchExpand

        def blocks(s: int) -> nn.Sequential:
            return nn.Sequential(
                *(SwinBlock(dims[s], grids[s], heads[s], window, i % 2 == 1, ratio) for i in range(depths[s]))
            )

        self.patch_embed = nn.Conv2d(in_channels, C, kernel_size=p, stride=p)
        self.embed_norm = nn.LayerNorm(C)
        self.encoder = nn.ModuleList(blocks(s) for s in range(S))
        self.merge = nn.ModuleList(PatchMerging(dims[s]) for s in range(S - 1))
        self.bottleneck_norm = nn.LayerNorm(dims[-1])
        self.bottleneck_expand = Expand(dims[-1])
        # decoder modules are indexed by stage t = 0 .. S-2
        self.skip_fuse = nn.ModuleList(nn.Linear(2 * dims[t], dims[t]) for t in range(S - 1))
        self.decoder = nn.ModuleList(blocks(t) for t in range(S - 1))
        self.expand = nn.ModuleList([nn.Identity()] + [Expand(dims[t]) for t in range(1, S - 1)])
        self.decoder_norm = nn.LayerNorm(C)
        if opts["upsample"] == "bilinear":
            self.final_expand: nn.Module = FinalBilinearExpand(C, p)
        else:
            self.final_expand = FinalPatchExpand(C, p)
        self.output = nn.Conv2d(C, out_channels, kernel_size=1, bias=False)
        self.sigmoid = nn.Sigmoid() if opts["need_sigmoid"] else nn.Identity()
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Upstream's initialisation (see module docstring); uses torch's global RNG."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, WindowAttention):
                nn.init.trunc_normal_(m.relative_position_bias_table, std=0.02)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.embed_norm(self.patch_embed(z).permute(0, 2, 3, 1))
        skips = []
        for s, stage in enumerate(self.encoder):
            skips.append(x)
            x = stage(x)
            if s < len(self.merge):
                x = self.merge[s](x)
        x = self.bottleneck_expand(self.bottleneck_norm(x))
        for t in reversed(range(len(self.decoder))):
            x = self.skip_fuse[t](torch.cat([x, skips[t]], dim=-1))
            x = self.expand[t](self.decoder[t](x))
        x = self.final_expand(self.decoder_norm(x))
        return self.sigmoid(self.output(x.permute(0, 3, 1, 2)))


class SwinUNet(DIPNetwork):
    """Swin-UNet DIP network (see module docstring); build with :func:`build_swin_unet`.

    Shapes: ``[B, in_channels, H, W] -> [B, out_channels, H, W]`` (``input_size == image_size``).
    """


def build_swin_unet(out_channels: int, image_size: tuple[int, int], **options) -> SwinUNet:
    """Build a Swin-UNet for images of ``image_size``.

    :param out_channels: image channels.
    :param image_size: ``(H, W)``; see :func:`swin_unet_geometry` for the valid sizes.
    :param options: ``upsample`` (``"bilinear"`` | ``"patch_expand"``), ``embed_dim``, ``depths``,
        ``heads``, ``window``, ``mlp_ratio``, ``patch_size``, ``in_channels``, ``need_sigmoid``
        (see :func:`resolve_swin_options` for the defaults).
    :raises ValueError: invalid option or image size.
    """
    opts = resolve_swin_options(**options)
    size = (int(image_size[0]), int(image_size[1]))
    geo = swin_unet_geometry(
        size, patch_size=opts["patch_size"], stages=len(opts["depths"]), window=opts["window"]
    )
    core = SwinUNetCore(opts["in_channels"], int(out_channels), size, opts)
    config = dict(
        opts,
        depths=list(opts["depths"]),
        heads=list(opts["heads"]),
        grids=[list(g["grid"]) for g in geo],
        windows=[list(g["window"]) for g in geo],
    )
    return SwinUNet(
        core,
        in_channels=opts["in_channels"],
        out_channels=int(out_channels),
        image_size=size,
        input_size=size,
        config=config,
    )
