"""Table 6's ConvDecoder "after": two upsamplings, width per image from its texture label."""

from dipkit.methods.base import Method

METHOD = Method(
    name="conv_decoder_ours",
    label="CD after",
    description="ConvDecoder with 2 upsamplings (Table 6 'after'), width per image",
    architecture="conv_decoder_after",
    arch_options={"width": 64},
    width_source="labels",
    reg_noise_std=0.0,
)
