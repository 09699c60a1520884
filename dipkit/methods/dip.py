"""DIP (Ulyanov et al.): the 5-level skip hourglass, as the paper's code runs it."""

from dipkit.methods.base import Method

METHOD = Method(
    name="dip",
    label="DIP",
    description="Deep Image Prior: 5-level skip hourglass, 128 channels, 128-channel input",
    architecture="dip",
    arch_options={"in_channels": 128},
)
