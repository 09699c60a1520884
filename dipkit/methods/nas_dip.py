"""NAS-DIP (Chen et al., ECCV 2020): the published searched denoising network.

Model 158 of the upsampling-cell search space with NAS-DIP's cross-scale skip connections
(``dipkit.models`` ``nas_dip``: 5 levels x 128 channels, 32-channel input, 4,405,635
parameters for RGB). Training as the NAS-DIP denoising script: Adam lr 0.01, 3000
iterations, input perturbation 1/30 at sigma 25 (the paper's per-noise values elsewhere),
EMA 0.99.
"""

from dipkit.methods.base import Method

METHOD = Method(
    name="nas_dip",
    label="NAS",
    description="NAS-DIP: searched upsampling cell 158 with cross-scale skips, 5 levels x 128",
    architecture="nas_dip",
)
