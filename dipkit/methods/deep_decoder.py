"""Deep Decoder (Heckel & Hand) as the paper's code runs it for Table 2.

No input perturbation (reg_noise 0). Output EMA 0.99: the paper's Poisson scripts use it,
its Fig. 3 scripts do not; which one Table 2 used is not recorded upstream [UNVERIFIED].
"""

from dipkit.methods.base import Method

METHOD = Method(
    name="deep_decoder",
    label="DD",
    description="Deep Decoder: 6 layers of 1x1 convs, 128 channels, bilinear upsampling",
    architecture="deep_decoder",
    reg_noise_std=0.0,
)
