"""Network architectures of dipkit (Deep Image Prior family), in PyTorch.

Re-implementations of the networks used by Liu et al., "The Devil is in the Upsampling"
(ICCV 2023) and its baselines: DIP's hourglass (:mod:`.hourglass`), the paper's 2-level
hourglass, Deep Decoder / MLP-Decoder and ConvDecoder variants (:mod:`.decoders`), the
upsamplers (:mod:`.upsample`), the fixed FIR filters of Fig. 4 (:mod:`.filters`) and the
Swin-UNet of Fig. 12 (:mod:`.swin_unet`, registered as ``swin_unet``) and NAS-DIP
(:mod:`.nas_dip`, registered as ``nas_dip``) built from a point of its search space
(:mod:`dipkit.nas_search_space`, torch-free; ISNAS-DIP samples it with
:func:`~dipkit.nas_search_space.sample_nas_architecture`).

Typical use::

    from dipkit.models import build_model, count_parameters
    net = build_model("hourglass", out_channels=3, image_size=(480, 320), width=64)
    z = 0.1 * torch.rand(1, *net.input_shape)     # [1, 64, 480, 320]
    x = net(z)                                    # [1, 3, 480, 320]

``python -m dipkit.models`` prints every architecture with its parameter count.
"""

from dipkit.nas_search_space import NASArchitecture, UpsampleCell, sample_nas_architecture

from .filters import FILTER_TAPS, frequency_response_db, get_filter_taps
from .layers import DIPNetwork
from .registry import (
    ARCHITECTURES,
    ArchitectureSpec,
    build_model,
    count_parameters,
    get_input_shape,
    validate_image_size,
)
from .upsample import make_upsampler

__all__ = [
    "ARCHITECTURES",
    "FILTER_TAPS",
    "ArchitectureSpec",
    "DIPNetwork",
    "NASArchitecture",
    "UpsampleCell",
    "build_model",
    "count_parameters",
    "frequency_response_db",
    "get_filter_taps",
    "get_input_shape",
    "make_upsampler",
    "sample_nas_architecture",
    "validate_image_size",
]
