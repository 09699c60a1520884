"""Seeds derived from the config seed and a job's wildcards.

Every random draw in the pipeline (noise, network initialisation, input code, input
perturbation) is seeded from ``derive_seed(config_seed, stage, *wildcards)``. The hash is
stable across processes, platforms and Python versions (unlike ``hash()``), so the same
config gives the same numbers on every run.
"""

from __future__ import annotations

import hashlib


def derive_seed(base: int, *parts: object) -> int:
    """Return a 63-bit seed determined by ``base`` and the string form of ``parts``.

    >>> derive_seed(0, "noise", "Set9", "image_House256rgb", "gaussian25") == derive_seed(
    ...     0, "noise", "Set9", "image_House256rgb", "gaussian25")
    True
    """
    text = "\x1f".join([str(int(base)), *(str(p) for p in parts)])
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def random_state(base: int, *parts: object) -> int:
    """A ``random_state`` for scikit-learn (and ``numpy.random.RandomState``, which need
    seeds below ``2**32``): :func:`derive_seed` of ``base`` and ``parts``, modulo ``2**32``."""
    return derive_seed(base, *parts) % (2**32)
