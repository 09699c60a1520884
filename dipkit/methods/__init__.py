"""Benchmark methods: architecture + fit settings, and where per-image widths come from.

Torch-free. See :mod:`dipkit.methods.base` for the record, :mod:`dipkit.methods.registry`
for the registered names (``dip``, ``deep_decoder``, ``conv_decoder``, ``ours``,
``conv_decoder_ours``) and :mod:`dipkit.methods.widths` for width sources.
"""

from dipkit.methods.base import Method, default_reg_noise
from dipkit.methods.registry import METHODS, get_method
from dipkit.methods.spec import FIT_DEFAULTS, fit_spec
from dipkit.methods.widths import label_width, texture_labels

__all__ = [
    "FIT_DEFAULTS",
    "METHODS",
    "Method",
    "default_reg_noise",
    "fit_spec",
    "get_method",
    "label_width",
    "texture_labels",
]
