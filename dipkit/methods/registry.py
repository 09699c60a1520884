"""All methods by name. A new method: one small module with a ``METHOD``, plus
one entry here."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

from dipkit.methods import bm3d, conv_decoder, conv_decoder_ours, deep_decoder, dip, isnas_dip, nas_dip, ours
from dipkit.methods.base import Method

METHODS: MappingProxyType[str, Method] = MappingProxyType(
    {
        m.name: m
        for m in (
            dip.METHOD,
            deep_decoder.METHOD,
            conv_decoder.METHOD,
            ours.METHOD,
            conv_decoder_ours.METHOD,
            nas_dip.METHOD,
            isnas_dip.METHOD,
            bm3d.METHOD,
        )
    }
)


def get_method(name: str, overrides=None) -> Method:
    """The registered method ``name`` with config ``overrides`` applied.

    ``overrides["base"]`` makes ``name`` a *variant*: the registered method ``base`` under a
    new name, e.g. ``hourglass32: {base: ours, width: 32}``.

    :raises ValueError: naming the config key and the registered methods.
    """
    overrides = dict(overrides or {})
    base = overrides.pop("base", None)
    if base is not None:
        if base not in METHODS:
            raise ValueError(
                f"config key methods.{name}.base: unknown method {base!r}; registered: {', '.join(METHODS)}"
            )
        if name in METHODS:
            raise ValueError(f"config key methods.{name}: a variant cannot take a registered name")
        return replace(METHODS[base], name=name, label=name).with_overrides(overrides)
    if name not in METHODS:
        raise ValueError(
            f"config key methods.{name}: unknown method; registered: {', '.join(METHODS)} "
            f"(or give `base:` to define a variant)"
        )
    return METHODS[name].with_overrides(overrides)
