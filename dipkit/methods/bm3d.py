"""BM3D (Dabov et al.), the classical reference row: not in the paper, but every reader wants it.

PyPI's ``bm3d`` package (grayscale ``bm3d``, colour ``bm3d_rgb``), profile ``np``. The noise
level it is given: the true sigma for Gaussian noise (the standard oracle setting of every
published BM3D number), and scikit-image's wavelet estimate (``estimate_sigma``) for Poisson
and real noise, where no single sigma exists.
"""

from dipkit.methods.base import Method

METHOD = Method(
    name="bm3d",
    label="BM3D",
    description="BM3D / CBM3D (bm3d package), oracle sigma for Gaussian noise, estimated otherwise",
    architecture="bm3d",
    kind="classical",
    iterations=1,
    reg_noise_std=0.0,
    exp_weight=0.0,
)
