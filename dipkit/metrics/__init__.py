"""Image-quality metrics.

* :mod:`dipkit.metrics.reference` -- numpy / scikit-image implementations; the reference
  used for noisy baselines and final scores.
* :mod:`dipkit.metrics.functional` -- torch implementations that run on the fit's device
  and agree with the reference to floating-point precision.

Conventions (see ``README.md``, *Metrics*): PSNR with ``data_range=1``; SSIM with
``data_range=1`` and, for comparison with the paper, ``data_range=2`` (what scikit-image
0.19 inferred for float images in the paper's code).
"""

from dipkit.metrics.reference import PAPER_SSIM_DATA_RANGE, psnr, ssim

__all__ = ["PAPER_SSIM_DATA_RANGE", "psnr", "ssim"]
