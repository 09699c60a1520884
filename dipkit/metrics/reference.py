"""Reference image metrics on numpy arrays (scikit-image).

Images are ``float`` arrays of shape ``[H, W, C]`` with values in ``[0, 1]`` (``C`` is 1
for grayscale). These functions define the numbers that go into every results table; the
torch versions in :mod:`dipkit.metrics.functional` are tested against them.
"""

from __future__ import annotations

import numpy as np

# scikit-image's metrics load scipy.stats (about a second): imported where they are used, so
# that a fit job, which scores on the device (dipkit.metrics.functional), never pays for them.

#: ``data_range`` that scikit-image 0.19 inferred for float images (``dmax - dmin`` of the
#: dtype range, -1..1) when the paper's code called ``structural_similarity`` without it.
#: Scores with this convention are comparable with the paper's SSIM columns.
PAPER_SSIM_DATA_RANGE = 2.0


def _check_pair(clean: np.ndarray, pred: np.ndarray) -> None:
    if clean.shape != pred.shape:
        raise ValueError(f"image shapes differ: clean {clean.shape} vs prediction {pred.shape}")
    if clean.ndim != 3:
        raise ValueError(f"expected [H, W, C] arrays, got shape {clean.shape}")


def psnr(clean: np.ndarray, pred: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB.

    :param numpy.ndarray clean: reference image ``[H, W, C]`` in ``[0, 1]``.
    :param numpy.ndarray pred: estimate, same shape.
    :param float data_range: peak value (1 for images in ``[0, 1]``).
    :return: PSNR in dB (``inf`` for identical images).
    """
    from skimage.metrics import peak_signal_noise_ratio

    _check_pair(clean, pred)
    return float(
        peak_signal_noise_ratio(
            np.asarray(clean, dtype=np.float64),
            np.asarray(pred, dtype=np.float64),
            data_range=data_range,
        )
    )


def ssim(clean: np.ndarray, pred: np.ndarray, data_range: float = 1.0) -> float:
    """Structural similarity, scikit-image defaults (7x7 uniform window, sample covariance).

    Colour images are scored per channel and averaged, as the paper's code did.

    :param numpy.ndarray clean: reference image ``[H, W, C]`` in ``[0, 1]``.
    :param numpy.ndarray pred: estimate, same shape.
    :param float data_range: 1.0 for the standard convention, :data:`PAPER_SSIM_DATA_RANGE`
        for the paper's.
    :return: mean SSIM.
    """
    from skimage.metrics import structural_similarity

    _check_pair(clean, pred)
    return float(
        structural_similarity(
            np.asarray(clean, dtype=np.float64),
            np.asarray(pred, dtype=np.float64),
            data_range=data_range,
            channel_axis=-1,
        )
    )
