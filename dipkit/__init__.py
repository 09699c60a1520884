"""dipkit: a reproducible benchmark of Deep Image Prior denoising architectures.

Built around *The Devil is in the Upsampling* (Liu et al., ICCV 2023). The package is
torch-free at import time: modules that need torch (``dipkit.models``, ``dipkit.fit``,
``dipkit.metrics.functional``) import it themselves, so the Snakefile can import the
light modules (config, manifest, versions) without paying for torch.
"""

__version__ = "0.1.0"
