"""Torch-free facts about the architectures, so that a config can be checked before any job.

The Snakefile must not import torch (every job submitted to a cluster re-reads it), so the
option names and the size rule of the networks that downsample live here as plain data.
``tests/test_bad_inputs.py`` checks they agree with :data:`dipkit.models.ARCHITECTURES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_HOURGLASS = frozenset(
    "act align_corners channels_down channels_up downsample in_channels kernel_down kernel_skip "
    "kernel_up levels need1x1_up need_bias need_sigmoid num_skips pad skip_channels taps upsample width".split()
)
_DECODER = frozenset("act align_corners in_channels input_size layers need_sigmoid taps upsample width".split())

#: architecture -> the options its builder takes
OPTION_NAMES: dict[str, frozenset[str]] = {
    "dip": _HOURGLASS,
    "hourglass": _HOURGLASS,
    "deep_decoder": _DECODER,
    "mlp_decoder": _DECODER,
    "conv_decoder": _DECODER | {"pad"},
    "conv_decoder_after": _DECODER | {"pad"},
    "conv_decoder_lpf": _DECODER | {"pad"},
    "conv_decoder_position": frozenset(
        "act align_corners factor in_channels layers need_sigmoid pad position upsample width".split()
    ),
    "swin_unet": frozenset("depths embed_dim heads in_channels mlp_ratio need_sigmoid patch_size upsample window".split()),
    "nas_dip": frozenset(
        "act downsample genotype in_channels keep_unused kernel_down kernel_up levels model_index need1x1_up "
        "need_bias need_sigmoid pad skips width".split()
    ),
}

#: encoder-decoder architectures: default number of stride-2 levels
LEVELS_DEFAULT: dict[str, int] = {"dip": 5, "hourglass": 2, "nas_dip": 5}


def check_options(key: str, architecture: str, options: Mapping[str, Any]) -> None:
    """Raise :class:`ValueError` for option names ``architecture`` does not take.

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
    """``(multiple, minimum side)`` an image must satisfy, for networks that downsample by
    ``2**levels`` (their deepest map must be at least 2x2), else ``None``."""
    if architecture not in LEVELS_DEFAULT:
        return None
    levels = int(options.get("levels") or LEVELS_DEFAULT[architecture])
    return 2**levels, 2 ** (levels + 1)
