"""ConvDecoder (Darestani & Heckel) as the paper's code runs it: reg_noise 0, EMA 0.99."""

from dipkit.methods.base import Method

METHOD = Method(
    name="conv_decoder",
    label="CD",
    description="ConvDecoder: 6 layers of 3x3 convs, 128 channels, bilinear upsampling",
    architecture="conv_decoder",
    reg_noise_std=0.0,
)
