"""The paper's method: a 2-level hourglass whose width comes from the image's texture.

Recipe from the authors' scripts and their answer in upstream issue #1: ``skip`` with 2
levels, no skip connections, ReLU, zero padding, bilinear upsampling, width 32/64/128 from
the Texture-DIP (NoRepeat) label, input channels = width.
"""

from dipkit.methods.base import Method

METHOD = Method(
    name="ours",
    label="Ours",
    description="2-level hourglass, width per image from its texture label",
    architecture="hourglass",
    arch_options={"levels": 2, "width": 64},
    width_source="labels",
)
