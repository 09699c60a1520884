"""The architectures' options and size rules, torch-free: one source for the model registry
(:mod:`dipkit.models.registry`) and the config checks (:mod:`dipkit.config`).

The Snakefile must not import torch (every job submitted to a cluster re-reads it), so what a
config can be checked against before any job lives here as plain data:

* :data:`ARCHITECTURE_DEFAULTS`: architecture name -> the default value of every option its
  builder takes (the keys are the allowed option names; the registry's presets are these);
* :data:`ACTIVATIONS`, :data:`PADDINGS` and their spellings (:func:`canonical_activation`,
  :func:`canonical_padding`);
* the size rule of the encoder-decoders, which downsample by ``2**levels`` (:func:`size_rule`,
  :func:`check_downsampled_size`): image sides must be multiples of ``2**levels`` and at
  least ``2**(levels + 1)``, so that the deepest feature map is at least 2x2 (BatchNorm needs
  more than one value, reflection padding more than one pixel).

Standard library only; :mod:`dipkit.nas_search_space` builds on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = [
    "ACTIVATIONS",
    "ARCHITECTURE_DEFAULTS",
    "ENCODER_DECODERS",
    "NAS_DIP_MODEL_INDEX",
    "OPTION_NAMES",
    "PADDINGS",
    "canonical_activation",
    "canonical_padding",
    "check_downsampled_size",
    "check_options",
    "size_rule",
]

#: Activation names the networks accept (case-insensitive; see :func:`canonical_activation`).
ACTIVATIONS: tuple[str, ...] = ("ReLU", "LeakyReLU", "GELU", "none")

#: Padding names the networks' convolutions accept.
PADDINGS: tuple[str, ...] = ("zero", "reflection")


def canonical_activation(name: str) -> str:
    """Canonical spelling of an activation name; raises :class:`ValueError` if unknown."""
    key = str(name).strip().lower().replace("_", "").replace("-", "")
    table = {"relu": "ReLU", "leakyrelu": "LeakyReLU", "lrelu": "LeakyReLU", "gelu": "GELU", "none": "none"}
    if key not in table:
        raise ValueError(f"unknown activation {name!r}; allowed: {', '.join(ACTIVATIONS)}")
    return table[key]


def canonical_padding(name: str) -> str:
    """Canonical spelling of a padding name; raises :class:`ValueError` if unknown."""
    key = str(name).strip().lower()
    table = {"zero": "zero", "zeros": "zero", "reflection": "reflection", "reflect": "reflection"}
    if key not in table:
        raise ValueError(f"unknown padding {name!r}; allowed: {', '.join(PADDINGS)}")
    return table[key]


# ----------------------------------------------------------------------------- default options

#: DIP's hourglass (deep-image-prior models/skip.py:skip; FasterDIP 'DIP_orig')
_DIP = {
    "levels": 5,
    "width": 128,
    "channels_down": None,
    "channels_up": None,
    "skip_channels": 4,
    "num_skips": None,
    "kernel_down": 3,
    "kernel_up": 3,
    "kernel_skip": 1,
    "need1x1_up": True,
    "act": "LeakyReLU",
    "pad": "reflection",
    "upsample": "bilinear",
    "align_corners": False,
    "downsample": "stride",
    "need_sigmoid": True,
    "need_bias": True,
    "taps": None,
    "in_channels": 128,
}

#: the paper's 2-level hourglass without skips (FasterDIP 'DIP_2_scaled')
_OURS = dict(_DIP, levels=2, width=64, num_skips=0, act="ReLU", pad="zero", in_channels=None)

#: the decoder family (ConvDecoder and its variants)
_DECODER = {
    "layers": 6,
    "width": 128,
    "upsample": "bilinear",
    "align_corners": False,
    "act": "ReLU",
    "pad": "zero",
    "need_sigmoid": True,
    "in_channels": None,
    "input_size": None,
    "taps": None,
}

#: Deep Decoder / MLP-Decoder: 1x1 convolutions (no padding option), align_corners as upstream
_DEEP_DECODER = dict({k: v for k, v in _DECODER.items() if k != "pad"}, align_corners=True)

#: ConvDecoder with one upsampler of factor ``factor`` next to the input or the output (Fig. 6)
_POSITION = {
    "layers": 6,
    "width": 128,
    "position": "last",
    "factor": 2,
    "upsample": "bilinear",
    "align_corners": False,
    "act": "ReLU",
    "pad": "zero",
    "need_sigmoid": True,
    "in_channels": None,
}

#: one shared default for both Swin-UNet upsamplers (the paper's modified config, transformer.py)
_SWIN = {
    "upsample": "bilinear",
    "embed_dim": 108,
    "depths": (1, 1, 1, 1),
    "heads": (4, 8, 8, 6),
    "window": 8,
    "mlp_ratio": 4.0,
    "patch_size": 4,
    "in_channels": 32,
    "need_sigmoid": True,
}

#: NAS-DIP's searched upsampling cell for denoising (``model_denoising.Model(model_index=158)``),
#: a cell index of :mod:`dipkit.nas_search_space`
NAS_DIP_MODEL_INDEX = 158

#: NAS-DIP's searched denoising model (model_denoising.py:Model defaults)
_NAS_DIP = {
    "model_index": NAS_DIP_MODEL_INDEX,
    "skips": None,
    "genotype": None,
    "levels": 5,
    "width": 128,
    "in_channels": 32,
    "kernel_down": 3,
    "kernel_up": 3,
    "need1x1_up": True,
    "act": "LeakyReLU",
    "pad": "reflection",
    "downsample": "stride",
    "need_sigmoid": True,
    "need_bias": True,
    "keep_unused": True,
}

#: architecture name -> read-only ``{option: default}``; the keys are the allowed option names
ARCHITECTURE_DEFAULTS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        name: MappingProxyType(dict(defaults))
        for name, defaults in {
            "dip": _DIP,
            "hourglass": _OURS,
            "deep_decoder": _DEEP_DECODER,
            "mlp_decoder": _DEEP_DECODER,
            "conv_decoder": _DECODER,
            "conv_decoder_after": dict(_DECODER, width=64),
            "conv_decoder_lpf": dict(_DECODER, upsample="NN"),
            "conv_decoder_position": _POSITION,
            "swin_unet": _SWIN,
            "nas_dip": _NAS_DIP,
        }.items()
    }
)

#: architecture name -> the option names its builder takes
OPTION_NAMES: Mapping[str, frozenset[str]] = MappingProxyType(
    {name: frozenset(defaults) for name, defaults in ARCHITECTURE_DEFAULTS.items()}
)

#: the encoder-decoders: ``levels`` stride-2 downsamplings, then as many x2 upsamplings
ENCODER_DECODERS: frozenset[str] = frozenset({"dip", "hourglass", "nas_dip"})


# ----------------------------------------------------------------------------- checks


def check_options(key: str, architecture: str, options: Mapping[str, Any]) -> None:
    """Raise :class:`ValueError` for option names ``architecture`` does not take, or a
    ``levels`` that is not an integer >= 1.

    :param key: the config key to name, e.g. ``methods.ours``.
    """
    allowed = OPTION_NAMES.get(architecture)
    if allowed is None:
        return  # classical methods (bm3d) take no network options
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"config key {key}.arch_options: unknown option(s) {', '.join(map(repr, unknown))} for "
            f"architecture {architecture!r}; allowed: {', '.join(sorted(allowed))}"
        )
    levels = options.get("levels")
    if levels is not None and (isinstance(levels, bool) or not isinstance(levels, int) or levels < 1):
        raise ValueError(f"config key {key}.arch_options.levels: expected an integer >= 1, got {levels!r}")


def size_rule(architecture: str, options: Mapping[str, Any]) -> tuple[int, int] | None:
    """``(multiple, minimum side)`` an image must satisfy, for the encoder-decoders
    (:data:`ENCODER_DECODERS`: ``2**levels`` and ``2**(levels + 1)``), else ``None``.

    :param options: the method's ``arch_options`` (``levels`` defaults to the preset's).
    """
    if architecture not in ENCODER_DECODERS:
        return None
    levels = int(options.get("levels") or ARCHITECTURE_DEFAULTS[architecture]["levels"])
    return 2**levels, 2 ** (levels + 1)


def check_downsampled_size(image_size: tuple[int, int], levels: int, network: str, min_deep: int = 2) -> None:
    """Raise :class:`ValueError` unless an encoder-decoder with ``levels`` levels can produce
    an image of ``image_size`` ``(H, W)``: both sides must be multiples of ``2**levels``, and at
    least ``min_deep * 2**levels`` (the deepest feature map at least ``min_deep`` square; 2 is
    :func:`size_rule`'s minimum, long FIR upsamplers need more).

    :param network: how the message names the network, e.g. ``"an hourglass"``, ``"NAS-DIP"``.
    """
    h, w = int(image_size[0]), int(image_size[1])
    n = int(levels)
    if n < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    f = 2**n
    if h % f or w % f:
        raise ValueError(
            f"image size {h}x{w} is not divisible by {f}: {network} with {n} levels downsamples "
            f"by 2**{n} = {f} (crop the image to multiples of {f})"
        )
    if min(h, w) < f * min_deep:
        raise ValueError(
            f"image size {h}x{w} is too small for {network} with {n} levels: each side must be at "
            f"least {f * min_deep} (deepest feature map >= {min_deep}x{min_deep})"
        )
