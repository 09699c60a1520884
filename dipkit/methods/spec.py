"""Resolve a method for one image and noise setting into a *fit spec*.

A fit spec is a plain, JSON-serialisable dict holding everything that defines a fit's
result except the seed: architecture and its options (with the per-image width filled
in), iterations, learning rate, EMA weight, input perturbation and scale, SSIM cadence,
backtracking, dtype, CPU layout and, when one is set, the early-stopping rule whose output
the fit returns (``early_stop``) and the rules' parameters when they differ from the defaults
(``stopping``); both are absent otherwise, so configs that never set them keep the params,
and the fits, they had. The workflow passes it to the fit rule as a param, so
changing any of these for one method reruns exactly that method's fits. Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dipkit.methods.base import Method
from dipkit.methods.widths import label_width

#: Defaults of the ``fit`` section of the config.
FIT_DEFAULTS: dict[str, Any] = {
    "iterations": None,  # None: each method's own (3000)
    "ssim_every": 100,
    "backtracking": False,
    "dtype": "float32",
    "deterministic": False,
    "autocast": "off",
    "compile": "off",
    "cpu_layout": "auto",
    "early_stop": "off",
    # the rules' parameters (dipkit.fit.stopping.StopParams; the config schema has the same defaults)
    "stopping": {"wmv_window": 100, "wmv_patience": 300, "discrepancy_tau": 1.0, "whiteness_factor": 1.5},
}


def fit_spec(
    method: Method, dataset: str, image: str, noise_id: str, fit_cfg: Mapping[str, Any] | None = None
) -> dict:
    """The fit spec of ``method`` on one image (see module docstring)."""
    cfg = {**FIT_DEFAULTS, **(fit_cfg or {})}
    arch = dict(method.arch_options)
    if method.width_source == "labels":
        arch["width"], width_source = label_width(dataset, image, fallback=arch.get("width", 64))
    elif method.width_source == "predicted":
        # known only once the classifier stage has run: the fit job reads it from its width file
        arch["width"], width_source = None, "predicted"
    else:
        width_source = "fixed" if "width" in arch else "preset"
    dip = method.kind != "classical"
    stopping = {**FIT_DEFAULTS["stopping"], **(cfg.get("stopping") or {})}
    iterations = (
        method.iterations
        if cfg["iterations"] is None or method.kind == "classical"
        else int(cfg["iterations"])
    )
    return {
        "method": method.name,
        "kind": method.kind,
        "architecture": method.architecture,
        "arch_options": arch,
        "width": arch.get("width"),
        "width_source": width_source,
        "iterations": iterations,
        "lr": float(method.lr),
        "exp_weight": float(method.exp_weight),
        "reg_noise_std": float(method.reg_noise_for(noise_id)),
        "input_scale": float(method.input_scale),
        "ssim_every": int(cfg["ssim_every"]),
        "backtracking": bool(cfg["backtracking"]),
        "dtype": str(cfg["dtype"]),
        "deterministic": bool(cfg["deterministic"]),
        "autocast": str(cfg["autocast"]),
        "compile": str(cfg["compile"]),
        "cpu_layout": str(cfg["cpu_layout"]),
        **({"search": dict(method.search)} if method.kind == "isnas" else {}),
        **({"early_stop": str(cfg["early_stop"])} if dip and cfg["early_stop"] != "off" else {}),
        **({"stopping": stopping} if dip and stopping != FIT_DEFAULTS["stopping"] else {}),
    }
