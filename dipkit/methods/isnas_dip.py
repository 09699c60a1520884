"""ISNAS-DIP (Arican et al., CVPR 2022): an image-specific architecture search, then DIP.

Per image: sample ``n_samples`` architectures from the NAS-DIP search space, score every
untrained network by how well the power spectrum of its output matches the noisy image's
(training-free), fit the ``top_k`` best with DIP for 1200 iterations, and report the output
closest to the average of the ``top_k`` outputs (:mod:`dipkit.isnas`). The paper's counts are
5000 and 15; the search runs as its own job and its cost is recorded (Table 3).
"""

from dipkit.methods.base import Method

METHOD = Method(
    name="isnas_dip",
    label="ISNAS",
    description="ISNAS-DIP: training-free PSD search over the NAS-DIP space, top-k fits, closest to their mean",
    architecture="nas_dip",
    kind="isnas",
    iterations=1200,
    search={"n_samples": 5000, "top_k": 15, "metric": "psd db strip mse"},
)
