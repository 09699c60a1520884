"""Fixed 1-D low-pass FIR filters used by the zero-insertion upsamplers (Fig. 4, Table 1).

The paper builds custom ×2 upsamplers as *zero insertion followed by a fixed low-pass
filter* and compares how much of the spectral image ("replica") above the old Nyquist
frequency each filter lets through. The taps below are the ones hard-coded in the upstream
repository (``YilinLiu97/FasterDIP-devil-in-upsampling``, ``DIP-Recon/core/models/ConvDecoder.py``,
class ``ConvDecoder``, and ``models/common.py``, ``lowpass_conv3``). Names follow the paper;
the upstream script names are accepted as aliases:

=========  ==========  =====  ==========================================================
paper      upstream    taps   design
=========  ==========  =====  ==========================================================
``NN``     ``LPF1``    2      rectangle ``[0.5, 0.5]``: zero insertion + NN == nearest
                               upsampling shifted by half an output sample (see below)
``tri``    ``LPF2``    3      triangle ``[0.25, 0.5, 0.25]`` (linear interpolation);
                               *not* the "Bilinear" of Fig. 4, which is ``nn.Upsample``
``L14``    ``LPF14``   7      design unknown [UNVERIFIED]; ``H(pi) = 0`` exactly
``L15``    ``LPF15``   9      design unknown [UNVERIFIED]; ``H(pi) = 0`` exactly
``L-60``   ``LPF5``    17     ``scipy.signal.firwin(17, 0.46, window=('kaiser', 4.5))``
``L-100``  ``LPF6``    17     ``scipy.signal.firwin(17, 0.10, window=('kaiser', 10.0))``
``L16``    --          11     ours: ``firwin(11, 0.5, window=('kaiser', kaiser_beta(30)))``
``L17``    --          15     ours: ``firwin(15, 0.5, window=('kaiser', kaiser_beta(45)))``
=========  ==========  =====  ==========================================================

Two more filters exist only in the upstream code (not in the paper) and are kept for
completeness: ``LPF3`` (7 taps, "-20dB", ``firwin(7, 0.5, window=('kaiser', 0.5))`` up to
the 4-decimal rounding of the upstream list) and ``LPF4`` (17 taps,
``firwin(17, 0.36, window=('kaiser', 3.1))``). The paper's L16 and L17 (Table 1) are not in
the code [UNVERIFIED]; ours continue the series L14 < L15 in stop-band attenuation (12.6 and
17.5 dB at f >= 0.75) with Kaiser-window half-band designs of 38 dB (``L16``) and 49 dB
(``L17``) whose passband stays within 0.03 dB of flat up to f = 0.25, so Table 1's trend
(more attenuation -> later peak, less noise fitting) can be tested.

The coefficients are kept *exactly* as printed upstream (not re-normalised); the paper
filters sum to 1 within 1e-6, so the 2-D DC gain of ``outer(w, w) * 4`` is 4, which
compensates for the 3/4 zeros introduced by zero insertion.

This module is pure numpy (no torch), so it can be used for plotting Fig. 4 without torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType

import numpy as np

__all__ = [
    "FILTER_DESIGNS",
    "FILTER_TAPS",
    "PAPER_FILTERS",
    "filter_names",
    "frequency_response",
    "frequency_response_db",
    "get_filter_taps",
    "resolve_filter_name",
]


def _mirror(half: Sequence[float]) -> tuple[float, ...]:
    """Return the odd-length symmetric sequence whose first ``len(half)`` taps are ``half``
    (the last element of ``half`` is the centre tap)."""
    half = tuple(float(v) for v in half)
    return half + half[-2::-1]


#: Canonical name -> 1-D taps (floats, exactly as in the upstream code).
FILTER_TAPS: MappingProxyType = MappingProxyType(
    {
        "NN": (0.5, 0.5),
        "tri": (0.25, 0.5, 0.25),
        "L14": _mirror([-0.0054, -0.0518, 0.2554, 0.6036]),
        "L15": _mirror([0.0105, -0.0263, -0.0518, 0.2763, 0.5826]),
        "L-60": _mirror(
            [-0.001921, -0.004291, 0.009947, 0.021970, -0.022680, -0.073998, 0.034907, 0.306100, 0.459933]
        ),
        "L-100": _mirror(
            [0.000015, 0.000541, 0.003707, 0.014130, 0.037396, 0.075367, 0.121291, 0.159962, 0.175182]
        ),
        # ours: Kaiser-window half-band designs continuing Table 1's series L14 < L15 < L16 < L17
        # in stop-band attenuation (38 dB and 49 dB; passband within 0.03 dB up to f = 0.25)
        "L16": _mirror([0.025465903151, 0.0, -0.078773478861, 0.0, 0.305744155964, 0.495126839494]),
        "L17": _mirror(
            [-0.004106852963, 0.0, 0.023568069582, 0.0, -0.076397017012, 0.0, 0.307107782974, 0.499656034838]
        ),
        # upstream-only filters (not in the paper)
        "LPF3": _mirror([-0.1070, 0.0000, 0.3389, 0.5360]),
        "LPF4": _mirror(
            [0.002745, 0.014011, 0.011312, -0.021707, -0.055602, -0.021802, 0.112306, 0.280146, 0.357183]
        ),
    }
)

#: The filters that appear in the paper's Fig. 4, in the figure's order (``bilinear`` is
#: the built-in ``nn.Upsample`` mode and is therefore not a filter here).
PAPER_FILTERS: tuple[str, ...] = ("NN", "L14", "L15", "L-60", "L-100")

#: ``scipy.signal.firwin`` arguments that reproduce a stored filter (recovered by fitting;
#: maximum absolute tap error about 5e-7, 5e-5 for the 4-decimal ``LPF3``).
FILTER_DESIGNS: MappingProxyType = MappingProxyType(
    {
        "L-60": {"numtaps": 17, "cutoff": 0.46, "window": ("kaiser", 4.5)},
        "L-100": {"numtaps": 17, "cutoff": 0.10, "window": ("kaiser", 10.0)},
        "LPF3": {"numtaps": 7, "cutoff": 0.5, "window": ("kaiser", 0.5)},
        # ours (Table 1's L16, L17 are not in the paper's code): beta = scipy.signal.kaiser_beta(A)
        # for A = 30 dB and 45 dB
        "L16": {"numtaps": 11, "cutoff": 0.5, "window": ("kaiser", 2.1166248611409806)},
        "L17": {"numtaps": 15, "cutoff": 0.5, "window": ("kaiser", 3.975432711887479)},
        "LPF4": {"numtaps": 17, "cutoff": 0.36, "window": ("kaiser", 3.1)},
    }
)

# lower-cased alias -> canonical name
_ALIASES = {
    "nn": "NN",
    "lpf1": "NN",
    "rect": "NN",
    "rectangle": "NN",
    "tri": "tri",
    "triangle": "tri",
    "lpf2": "tri",
    "l14": "L14",
    "lpf14": "L14",
    "l15": "L15",
    "lpf15": "L15",
    "l-60": "L-60",
    "l60": "L-60",
    "lpf5": "L-60",
    "l-100": "L-100",
    "l100": "L-100",
    "lpf6": "L-100",
    "l16": "L16",
    "l17": "L17",
    "lpf3": "LPF3",
    "lpf4": "LPF4",
}


def filter_names() -> tuple[str, ...]:
    """Canonical names of all stored filters."""
    return tuple(FILTER_TAPS)


def _normalise(name: str) -> str:
    # accept the paper's typographic minus (U+2212) and en dash, spaces and underscores
    key = str(name).strip().lower().replace("\u2212", "-").replace("\u2013", "-")
    return key.replace(" ", "").replace("_", "-")


def resolve_filter_name(name: str) -> str | None:
    """Canonical filter name for ``name`` (case-insensitive, paper or upstream spelling),
    or ``None`` if ``name`` is not a stored filter.

    >>> resolve_filter_name("LPF5"), resolve_filter_name("l\u2212100")
    ('L-60', 'L-100')
    """
    if not isinstance(name, str):
        return None
    key = _normalise(name)
    if key.startswith("fir:"):
        key = key[4:]
    return _ALIASES.get(key)


def get_filter_taps(name: str) -> np.ndarray:
    """1-D taps of a named filter as a float64 array of shape ``[K]``.

    :param name: canonical name (``NN``, ``tri``, ``L14``, ``L15``, ``L-60``, ``L-100``,
        ``LPF3``, ``LPF4``) or an alias (``LPF1``, ``LPF5``, ``L60``, ``l−60`` ...).
    :raises ValueError: for an unknown name, listing the known ones.
    """
    canon = resolve_filter_name(name)
    if canon is None:
        raise ValueError(f"unknown FIR filter {name!r}; known filters: {', '.join(FILTER_TAPS)}")
    return np.asarray(FILTER_TAPS[canon], dtype=np.float64)


def _taps(filter_or_taps: str | Sequence[float] | np.ndarray) -> np.ndarray:
    if isinstance(filter_or_taps, str):
        return get_filter_taps(filter_or_taps)
    taps = np.asarray(filter_or_taps, dtype=np.float64)
    if taps.ndim != 1 or taps.size == 0:
        raise ValueError(f"FIR taps must be a non-empty 1-D sequence, got shape {taps.shape}")
    return taps


def frequency_response(
    filter_or_taps: str | Sequence[float] | np.ndarray, num: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Magnitude of the 1-D frequency response ``|H(f)|`` of a filter.

    :param filter_or_taps: a filter name or explicit 1-D taps.
    :param num: number of frequencies, evenly spaced on ``[0, 1]`` (endpoints included).
    :return: ``(f, mag)``, two float64 arrays of shape ``[num]``. ``f`` is normalised so
        that ``1`` is the Nyquist frequency of the *upsampled* signal (``omega = pi * f``):
        the passband of the ×2 upsampler is ``f < 0.5`` and the image replica created by
        zero insertion sits on ``0.5 <= f <= 1``. ``mag`` is not normalised (taps that sum to
        one give ``mag[0] == 1``); the 2-D gain of 4 used by the upsampler is *not* included.
    """
    taps = _taps(filter_or_taps)
    if num < 2:
        raise ValueError("num must be at least 2")
    f = np.linspace(0.0, 1.0, int(num))
    n = np.arange(taps.size)
    h = np.exp(-1j * np.pi * np.outer(f, n)) @ taps
    return f, np.abs(h)


def frequency_response_db(
    filter_or_taps: str | Sequence[float] | np.ndarray, num: int = 1024, floor_db: float = -300.0
) -> tuple[np.ndarray, np.ndarray]:
    """Frequency response in dB, ``20 * log10(|H(f)|)``, as used for the paper's Fig. 4.

    :param filter_or_taps: a filter name or explicit 1-D taps.
    :param num: number of frequencies on ``[0, 1]`` (``1`` = Nyquist of the upsampled signal).
    :param floor_db: lower clip for exact zeros (e.g. ``L14`` has ``H(1) = 0``), so the
        result is always finite.
    :return: ``(f, db)``, float64 arrays of shape ``[num]``.

    Reference values (spec §4): ``NN`` gives -3.0 dB at ``f = 0.5``; ``L-60`` -9.9 dB;
    ``L-100`` -101.9 dB.
    """
    f, mag = frequency_response(filter_or_taps, num)
    floor = 10.0 ** (floor_db / 20.0)
    return f, 20.0 * np.log10(np.maximum(mag, floor))
