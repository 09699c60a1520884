"""The paper's Section-3 investigations as runnable experiments (``experiments:`` in the config).

=======================  ====================  ==================================================
experiment               paper                 what
=======================  ====================  ==================================================
``spectral_density``     Fig. 2                radial power spectra of coarse and fine images
``upsampling_role``      Fig. 3 (a), (b)       MLP-/ConvDecoder with transposed, bilinear or no
                                               upsampling (covers "MLP vs conv")
``lowpass_upsamplers``   Fig. 4, Table 1       zero insertion + fixed FIR low-pass filters
``depth_width_skips``    Fig. 5, Fig. 10       hourglass depth x width x skip connections
``upsampling_position``  Fig. 6                one upsampler next to the input or the output
``swin_unet``            Fig. 12               Swin-UNet with patch expanding vs bilinear
=======================  ====================  ==================================================

Each module defines one :class:`~dipkit.experiments.base.Experiment`; this registry lists
them. Torch-free.
"""

from __future__ import annotations

from types import MappingProxyType

from dipkit.experiments import (
    depth_width_skips,
    lowpass_upsamplers,
    spectral_density,
    swin_unet,
    upsampling_position,
    upsampling_role,
)
from dipkit.experiments.base import Experiment, ExperimentData, arm_spec, split_image

EXPERIMENTS: MappingProxyType[str, Experiment] = MappingProxyType(
    {
        e.name: e
        for e in (
            spectral_density.EXPERIMENT,
            upsampling_role.EXPERIMENT,
            lowpass_upsamplers.EXPERIMENT,
            depth_width_skips.EXPERIMENT,
            upsampling_position.EXPERIMENT,
            swin_unet.EXPERIMENT,
        )
    }
)


def run_summary(name, cfg, row_paths, trajectory_paths, prepared, outputs) -> None:
    """The *experiment* stage: concatenate an experiment's fits and draw its figure and table.

    :param prepared: ``{dataset: prepared stack path}`` of the experiment's datasets.
    :param outputs: dict with ``rows``, ``trajectories``, ``figure``, ``table_csv``, ``table_md``.
    """
    import pandas as pd

    from dipkit.columns import FIT_ROWS, TRAJECTORY, arrow_schema
    from dipkit.images import to_float
    from dipkit.io import load_from_stack, write_parquet
    from dipkit.tables import concat_parquet

    exp = EXPERIMENTS[name]
    if row_paths:
        rows = concat_parquet(row_paths, outputs["rows"]).to_pandas()
        rows["png"] = [str(p)[: -len(".parquet")] + ".png" for p in row_paths]  # one row per file
        traj = concat_parquet(trajectory_paths, outputs["trajectories"]).to_pandas()
    else:  # a study without fits: empty tables with the documented schemas
        write_parquet(outputs["rows"], arrow_schema(FIT_ROWS).empty_table())
        write_parquet(outputs["trajectories"], arrow_schema(TRAJECTORY).empty_table())
        rows = traj = pd.DataFrame()
    images = {}
    for ref in cfg["images"]:
        dataset, image = split_image(ref)
        images[(dataset, image)] = to_float(load_from_stack(prepared[dataset], f"clean/{image}"))
    exp.summarize(
        ExperimentData(rows, traj, images), cfg, outputs["figure"], outputs["table_csv"], outputs["table_md"]
    )


__all__ = ["EXPERIMENTS", "Experiment", "ExperimentData", "arm_spec", "run_summary", "split_image"]
