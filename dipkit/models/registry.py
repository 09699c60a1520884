"""Registry of dipkit's architectures: name -> preset, builder and default options.

Public API (re-exported by :mod:`dipkit.models`):

* :data:`ARCHITECTURES`: read-only mapping ``name -> ArchitectureSpec`` (description, upstream
  source, default options);
* :func:`build_model`: build a network by name; options override the preset's defaults;
* :func:`validate_image_size`: check an image size for a network without building it;
* :func:`get_input_shape`: ``(in_channels, h, w)`` of the input code, without building;
* :func:`count_parameters`: number of trainable parameters.

The option names and defaults of every preset are
:data:`dipkit.architectures.ARCHITECTURE_DEFAULTS` (torch-free, shared with the config checks).

Registered names: ``dip``, ``hourglass``, ``deep_decoder``, ``mlp_decoder`` (same network as
``deep_decoder``: the paper's "MLP-Decoder" *is* the Deep Decoder with 1x1 convolutions),
``conv_decoder``, ``conv_decoder_after``, ``conv_decoder_lpf``, ``swin_unet`` (Fig. 12;
``upsample='bilinear'`` or ``'patch_expand'``, see :mod:`dipkit.models.swin_unet`), ``nas_dip``
(Table 2 "NAS"; any point of its search space, e.g. ISNAS-DIP's samples, through
``model_index``/``skips`` or ``genotype``, see :mod:`dipkit.nas_search_space`).

Where the paper's wording and its code disagree, defaults follow the code (see
:mod:`dipkit.models.hourglass`); the paper's reading is available through options.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from torch import nn

from dipkit.architectures import ARCHITECTURE_DEFAULTS
from dipkit.nas_search_space import resolve_nas_architecture

from .decoders import (
    build_conv_decoder,
    build_conv_decoder_after,
    build_conv_decoder_lpf,
    build_conv_decoder_position,
    build_deep_decoder,
    decoder_geometry,
    position_input_size,
)
from .hourglass import build_hourglass, check_hourglass_size
from .layers import DIPNetwork
from .nas_dip import build_nas_dip, check_nas_dip_size
from .swin_unet import build_swin_unet, resolve_swin_options, swin_unet_geometry

__all__ = [
    "ARCHITECTURES",
    "ArchitectureSpec",
    "build_model",
    "count_parameters",
    "get_input_shape",
    "validate_image_size",
]


@dataclass(frozen=True)
class ArchitectureSpec:
    """One registered architecture.

    :ivar name: registry name.
    :ivar description: one-line description.
    :ivar source: upstream file/function it re-implements.
    :ivar defaults: default value of every accepted option (the allowed option names).
    :ivar builder: ``builder(out_channels, image_size, **options) -> DIPNetwork``.
    :ivar geometry: ``geometry(image_size, options) -> (in_channels, (h, w))``; raises
        :class:`ValueError` if the image size is not valid.
    """

    name: str
    description: str
    source: str
    defaults: Mapping[str, Any]
    builder: Callable[..., DIPNetwork] = field(repr=False)
    geometry: Callable[[tuple[int, int], dict], tuple[int, tuple[int, int]]] = field(repr=False)


# ----------------------------------------------------------------------------- hourglass family

#: the options :func:`build_hourglass` takes as keywords (``in_channels`` is resolved first)
_HOURGLASS_KEYS = tuple(k for k in ARCHITECTURE_DEFAULTS["dip"] if k != "in_channels")


def _hourglass_in_channels(opts: dict) -> int:
    if opts["in_channels"] is not None:
        return int(opts["in_channels"])
    if opts["width"] is not None:
        return int(opts["width"])
    return int(opts["channels_down"][0])


def _hourglass_builder(out_channels: int, image_size: tuple[int, int], **opts) -> DIPNetwork:
    cin = _hourglass_in_channels(opts)
    kwargs = {k: opts[k] for k in _HOURGLASS_KEYS}
    return build_hourglass(cin, out_channels, image_size, **kwargs)


def _hourglass_geometry(image_size: tuple[int, int], opts: dict) -> tuple[int, tuple[int, int]]:
    check_hourglass_size(image_size, int(opts["levels"]), opts["upsample"])
    return _hourglass_in_channels(opts), (int(image_size[0]), int(image_size[1]))


# ----------------------------------------------------------------------------- decoder family


def _decoder_geometry_fn(schedule: str, name: str):
    def geometry(image_size: tuple[int, int], opts: dict) -> tuple[int, tuple[int, int]]:
        geo = decoder_geometry(
            image_size,
            layers=int(opts["layers"]),
            upsample=opts["upsample"],
            schedule=schedule,
            input_size=opts["input_size"],
            taps=opts["taps"],
            name=name,
        )
        cin = int(opts["width"]) if opts["in_channels"] is None else int(opts["in_channels"])
        return cin, geo["input_size"]

    return geometry


def _position_geometry(image_size: tuple[int, int], opts: dict) -> tuple[int, tuple[int, int]]:
    if opts["position"] not in ("first", "last"):
        raise ValueError(
            f"conv_decoder_position: position must be 'first' or 'last', got {opts['position']!r}"
        )
    inp = position_input_size(image_size, opts["factor"])
    decoder_geometry(
        image_size,
        layers=int(opts["layers"]),
        upsample=opts["upsample"],
        schedule=opts["position"],
        input_size=inp,
        name="conv_decoder_position",
    )
    cin = int(opts["width"]) if opts["in_channels"] is None else int(opts["in_channels"])
    return cin, inp


# ----------------------------------------------------------------------------- Swin-UNet


def _swin_geometry(image_size: tuple[int, int], opts: dict) -> tuple[int, tuple[int, int]]:
    o = resolve_swin_options(**opts)
    swin_unet_geometry(image_size, patch_size=o["patch_size"], stages=len(o["depths"]), window=o["window"])
    return o["in_channels"], (int(image_size[0]), int(image_size[1]))


# ----------------------------------------------------------------------------- NAS-DIP


def _nas_dip_geometry(image_size: tuple[int, int], opts: dict) -> tuple[int, tuple[int, int]]:
    arch = resolve_nas_architecture(opts["model_index"], opts["skips"], opts["genotype"], int(opts["levels"]))
    arch.cell.check(int(opts["width"]))
    check_nas_dip_size(image_size, int(opts["levels"]))
    return int(opts["in_channels"]), (int(image_size[0]), int(image_size[1]))


def _spec(name, description, source, builder, geometry) -> ArchitectureSpec:
    """The registry entry of ``name``; its defaults are :data:`dipkit.architectures.ARCHITECTURE_DEFAULTS`."""
    return ArchitectureSpec(name, description, source, ARCHITECTURE_DEFAULTS[name], builder, geometry)


_SPECS = [
    _spec(
        "dip",
        "Deep Image Prior: 5-level hourglass, 128 ch, 4-ch skips, LeakyReLU, reflection pad, bilinear",
        "deep-image-prior models/skip.py:skip; FasterDIP models/skip.py:DIP ('DIP_orig')",
        _hourglass_builder,
        _hourglass_geometry,
    ),
    _spec(
        "hourglass",
        "paper's 'Ours': 2-level hourglass, width C (32/64/128), no skips, ReLU, zero pad, bilinear",
        "FasterDIP models/skip.py:skip ('DIP_2_scaled', num_scales=2, num_skips=0)",
        _hourglass_builder,
        _hourglass_geometry,
    ),
    _spec(
        "deep_decoder",
        "Deep Decoder (Table 2 'DD'): 6 layers x 128, 1x1 convs, bilinear x2 per block, input H/32",
        "FasterDIP models/decoder_skip.py:skipdecoder (skips=False, 'DD')",
        build_deep_decoder,
        _decoder_geometry_fn("all", "deep_decoder"),
    ),
    _spec(
        "mlp_decoder",
        "MLP-Decoder (Fig. 3a): same network as deep_decoder; upsample='none' = w/o upsampling",
        "FasterDIP models/decoder_skip.py:skipdecoder (skips=False, 'DD')",
        build_deep_decoder,
        _decoder_geometry_fn("all", "mlp_decoder"),
    ),
    _spec(
        "conv_decoder",
        "ConvDecoder (Table 2 'CD'): 6 layers x 128, 3x3 convs, upsample before conv, input H/32",
        "FasterDIP models/light_cnn.py:ConvDecoder",
        build_conv_decoder,
        _decoder_geometry_fn("all", "conv_decoder"),
    ),
    _spec(
        "conv_decoder_after",
        "ConvDecoder 'after' (Table 6): 2 upsamplers only, no ReLU in head, width C, input H/4",
        "FasterDIP models/light_cnn.py:ConvDecoder_improved ('ConvDecoder_ours')",
        build_conv_decoder_after,
        _decoder_geometry_fn("last2", "conv_decoder_after"),
    ),
    _spec(
        "conv_decoder_lpf",
        "ConvDecoder with zero insertion + fixed FIR upsampler (Fig. 4): conv before upsample",
        "FasterDIP models/ConvDecoder.py:ConvDecoder ('ConvDecoder_LPF')",
        build_conv_decoder_lpf,
        _decoder_geometry_fn("all", "conv_decoder_lpf"),
    ),
    _spec(
        "conv_decoder_position",
        "ConvDecoder with one upsampler of factor f next to the input or the output (Fig. 6)",
        "ours (the paper's Fig. 6 networks are not in its code); blocks as light_cnn.py:ConvDecoder",
        build_conv_decoder_position,
        _position_geometry,
    ),
    _spec(
        "swin_unet",
        "Swin-UNet (Fig. 12): 4 stages, patch 4, window 8, embed 108; upsample bilinear|patch_expand",
        "FasterDIP DIP-Recon/transformer-DIP/model_trans/transformer.py (bilinear), "
        "transformer2.py (patch_expand): SwinTransformerSys",
        build_swin_unet,
        _swin_geometry,
    ),
    _spec(
        "nas_dip",
        "NAS-DIP (Table 2 'NAS'): searched upsampling cell 158 + cross-scale skips, 5 levels x 128, in 32",
        "YunChunChen/NAS-DIP-pytorch DIP/models/model_denoising.py:Model (cells: gen_upsample_layer.py); "
        "search space as DIP/models/cross_skip.py:skip, sampled by ozgurkara99/ISNAS-DIP random_search.py",
        build_nas_dip,
        _nas_dip_geometry,
    ),
]

#: Read-only mapping ``name -> ArchitectureSpec``.
ARCHITECTURES: Mapping[str, ArchitectureSpec] = MappingProxyType({s.name: s for s in _SPECS})


# ----------------------------------------------------------------------------- API


def _get_spec(name: str) -> ArchitectureSpec:
    try:
        return ARCHITECTURES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown architecture {name!r}; registered: {', '.join(ARCHITECTURES)}") from None


def _image_size(image_size) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be a pair (H, W) of ints, got {image_size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"image_size must be positive, got {image_size!r}")
    return h, w


def _resolve_options(spec: ArchitectureSpec, options: dict) -> dict:
    unknown = sorted(set(options) - set(spec.defaults))
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise ValueError(
            f"unknown option{plural} {', '.join(repr(u) for u in unknown)} for architecture "
            f"{spec.name!r}; allowed options: {', '.join(spec.defaults)}"
        )
    opts = dict(spec.defaults)
    opts.update(options)
    if opts.get("input_size") is not None:
        opts["input_size"] = _image_size(opts["input_size"])
    return opts


def validate_image_size(name: str, image_size: tuple[int, int], **options) -> None:
    """Check that architecture ``name`` (with ``options``) can produce images of ``image_size``.

    :param name: registered architecture name.
    :param image_size: ``(H, W)``.
    :param options: the same options as for :func:`build_model`.
    :raises ValueError: explaining why (not divisible by the network's total down/upsampling
        factor, too small for BatchNorm or for an FIR filter's padding, unknown option ...).
    """
    get_input_shape(name, image_size, **options)


def get_input_shape(name: str, image_size: tuple[int, int], **options) -> tuple[int, int, int]:
    """``(in_channels, h, w)`` of the input code that :func:`build_model` would expect, computed
    without building the network (no random numbers are drawn).

    :raises ValueError: like :func:`validate_image_size`.
    """
    spec = _get_spec(name)
    size = _image_size(image_size)
    opts = _resolve_options(spec, options)
    cin, (h, w) = spec.geometry(size, opts)
    return cin, h, w


def build_model(name: str, out_channels: int, image_size: tuple[int, int], **options) -> DIPNetwork:
    """Build a registered architecture.

    :param name: one of :data:`ARCHITECTURES` (``dip``, ``hourglass``, ``deep_decoder``,
        ``mlp_decoder``, ``conv_decoder``, ``conv_decoder_after``, ``conv_decoder_lpf``,
        ``swin_unet``, ``nas_dip``).
    :param out_channels: image channels (1 for grayscale, 3 for RGB).
    :param image_size: image size ``(H, W)``.
    :param options: override preset defaults (see ``ARCHITECTURES[name].defaults``), e.g.
        ``width=64``, ``upsample='nearest'``, ``act='LeakyReLU'``, ``pad='reflection'``,
        ``levels=3``, ``skip_channels=4``, ``num_skips=1``, ``layers=5``, ``in_channels=32``.
    :return: a :class:`~dipkit.models.layers.DIPNetwork` with attributes ``in_channels`` and
        ``input_size``; ``forward(z)`` maps ``[B, in_channels, *input_size]`` to
        ``[B, out_channels, H, W]``. Parameters use PyTorch's default initialisation (drawn
        from torch's global RNG), on the CPU in the default dtype; use ``.to(device, dtype)``.
    :raises ValueError: unknown name or option, invalid option value, or unsuitable image size.
    """
    spec = _get_spec(name)
    size = _image_size(image_size)
    if int(out_channels) < 1:
        raise ValueError(f"out_channels must be positive, got {out_channels}")
    opts = _resolve_options(spec, options)
    spec.geometry(size, opts)  # validate before allocating anything
    model = spec.builder(int(out_channels), size, **opts)
    model.config = dict(architecture=name, **model.config)
    return model


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters (``requires_grad``) of ``module``; fixed FIR kernels are
    buffers and are not counted."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
