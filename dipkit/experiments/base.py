"""The :class:`Experiment` record and the helpers every experiment shares.

An experiment is a named study of the paper's Section 3: a set of *arms* (networks with
their fit settings, as :class:`dipkit.methods.Method` records) fitted on a few images and
noise settings by the same DAG and fit engine as Table 2, plus a ``summarize`` function that
turns the fits into one figure and one table under ``results/experiments/<name>/``.

Config (``experiments.<name>``), every key optional:

* ``images``: ``["Set9/image_House256rgb", ...]`` -- ``dataset/image`` of configured datasets;
* ``noise``: noise ids, each configured for those datasets;
* ``iterations``: Adam steps of every arm;
* ``crop``: centre-crop the images to ``crop x crop`` pixels before fitting (tiny variants);
* ``options``: experiment-specific settings (see each experiment's module).

Torch-free: arms are resolved when the Snakefile is parsed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from dipkit.methods.base import Method
from dipkit.methods.spec import fit_spec

#: The two Set9 images used by the texture studies: a coarse-grained one (released width
#: label 32) and a fine-grained one (label 128). The paper does not name its images [UNVERIFIED].
COARSE = "Set9/image_House256rgb"
FINE = "Set9/image_Baboon512rgb"


@dataclass(frozen=True)
class Experiment:
    """A Section-3 study.

    :ivar name: config key and folder name.
    :ivar figure: the paper figure/table it reproduces.
    :ivar description: one line for the README.
    :ivar defaults: default config (images, noise, iterations, crop, options).
    :ivar make_arms: ``options -> {arm name: Method}`` (empty for studies without fits).
    :ivar summarize: ``summarize(data, cfg, figure_path, table_csv, table_md)``.
    """

    name: str
    figure: str
    description: str
    defaults: Mapping[str, Any]
    make_arms: Callable[[Mapping[str, Any]], dict[str, Method]]
    summarize: Callable[..., None] = field(repr=False)

    def config(self, user: Mapping[str, Any] | None) -> dict:
        """Defaults overlaid with the user's config (``options`` merged key by key)."""
        user = dict(user or {})
        cfg = {k: v for k, v in self.defaults.items() if k != "options"}
        options = dict(self.defaults.get("options", {}))
        unknown = set(user.get("options") or {}) - set(options)
        if unknown:
            raise ValueError(
                f"config key experiments.{self.name}.options: unknown {sorted(unknown)}; "
                f"allowed: {sorted(options)}"
            )
        options.update(user.pop("options", None) or {})
        cfg.update({k: v for k, v in user.items() if v is not None})
        cfg["options"] = options
        return cfg

    def arms(self, cfg: Mapping[str, Any]) -> dict[str, Method]:
        arms = self.make_arms(cfg["options"])
        if cfg.get("iterations"):
            arms = {k: replace(m, iterations=int(cfg["iterations"])) for k, m in arms.items()}
        return arms


def split_image(ref: str) -> tuple[str, str]:
    """``"Set9/kodim01"`` -> ``("Set9", "kodim01")``."""
    dataset, sep, image = ref.partition("/")
    if not sep or not dataset or not image:
        raise ValueError(f"image reference {ref!r} must be 'dataset/image'")
    return dataset, image


def arm_spec(arm: Method, dataset: str, image: str, noise: str, cfg: Mapping[str, Any], fit_cfg=None) -> dict:
    """The fit spec of one arm on one image (:func:`dipkit.methods.fit_spec` plus the crop)."""
    spec = fit_spec(arm, dataset, image, noise, {**(fit_cfg or {}), "iterations": None})
    spec["crop"] = cfg.get("crop")
    return spec


def arm(name: str, architecture: str, *, label: str | None = None, **settings) -> Method:
    """A :class:`Method` for an experiment arm (``settings``: Method fields or arch options)."""
    fields = {"reg_noise_std", "input_scale", "iterations", "lr", "exp_weight"}
    method_kw = {k: settings.pop(k) for k in list(settings) if k in fields}
    return Method(
        name=name,
        label=label or name,
        description=f"experiment arm {name}",
        architecture=architecture,
        arch_options=dict(settings),
        **method_kw,
    )


@dataclass
class ExperimentData:
    """What ``summarize`` gets: fit rows, trajectories and the prepared clean images."""

    rows: Any  # pandas DataFrame, fits.parquet schema plus ``png`` (the denoised image's path)
    trajectories: Any  # pandas DataFrame, trajectories.parquet schema
    images: dict[tuple[str, str], np.ndarray]  # (dataset, image) -> clean float [H, W, C]


def mean_curves(traj, by: list[str], value: str = "psnr_ema"):
    """Mean of ``value`` over images per ``by`` group and iteration: ``{key: (iterations, mean)}``."""
    out = {}
    for key, g in traj.groupby(by, sort=False):
        m = g.groupby("iteration")[value].mean()
        out[key[0] if len(by) == 1 else key] = (m.index.to_numpy(), m.to_numpy())
    return out


def peak_table(rows, by: list[str]):
    """Per group: images, mean peak PSNR, median peak iteration, mean last PSNR and SSIM, drop."""
    import pandas as pd

    g = rows.groupby(by, sort=False)
    out = g.agg(
        images=("image", "count"),
        psnr_peak=("psnr_peak", "mean"),
        peak_iteration=("psnr_peak_iteration", "median"),
        psnr_last=("psnr_last", "mean"),
        ssim_last=("ssim_last", "mean"),
        params=("params", "max"),
    ).reset_index()
    out["drop"] = out.psnr_peak - out.psnr_last
    return pd.DataFrame(out)
