"""All benchmark methods by name. A new method: one small module with a ``METHOD``, plus
one entry here."""

from __future__ import annotations

from types import MappingProxyType

from dipkit.methods import conv_decoder, conv_decoder_ours, deep_decoder, dip, ours
from dipkit.methods.base import Method

METHODS: MappingProxyType[str, Method] = MappingProxyType(
    {m.name: m for m in (dip.METHOD, deep_decoder.METHOD, conv_decoder.METHOD, ours.METHOD, conv_decoder_ours.METHOD)}
)


def get_method(name: str, overrides=None) -> Method:
    """The registered method ``name`` with config ``overrides`` applied.

    :raises ValueError: naming the config key and the registered methods.
    """
    if name not in METHODS:
        raise ValueError(f"config key methods.{name}: unknown method; registered: {', '.join(METHODS)}")
    return METHODS[name].with_overrides(overrides or {})
