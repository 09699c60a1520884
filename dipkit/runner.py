"""The fit runner: a method's network fitted to one noisy image (or to several of one size at
once), from numpy images to a :class:`~dipkit.fit.FitResult`.

``dipkit denoise`` (:mod:`dipkit.denoise`), the pipeline's fit jobs (:mod:`dipkit.fit_jobs`)
and the studies under ``benchmarks/`` all fit through :func:`run_fit` / :func:`run_fit_batch`.

Seeds: the config seed and the job's wildcards give a base seed (:func:`fit_seed`); the
network initialisation, the input code and the input perturbation each derive their own
stream from it. Initialisation and input code are drawn on the CPU, so they are the same on
every device.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from dipkit.fit import FitSettings, fit, make_input, select_device
from dipkit.fit.batched import fit_batch
from dipkit.fit.device import explain_out_of_memory
from dipkit.fit.stopping import StopParams
from dipkit.models import build_model, count_parameters, validate_image_size
from dipkit.seeding import derive_seed


def fit_seed(config_seed: int, dataset: str, image: str, noise_id: str, method: str) -> int:
    """Base seed of one fit."""
    return derive_seed(config_seed, "fit", dataset, image, noise_id, method)


def run_fit(
    clean: np.ndarray | None,
    noisy: np.ndarray,
    spec: Mapping,
    seed: int,
    device: str = "auto",
    progress=None,
    cuda_graphs: str = "auto",
    *,
    noise_sigma: float | None = None,
    poll: int = 0,
    stop_params: StopParams | None = None,
):
    """Fit ``spec``'s network to one noisy image.

    :param clean: ``[H, W, C]`` float32 ground truth, or None.
    :param noisy: ``[H, W, C]`` float32 noisy image.
    :param spec: a fit spec (:func:`dipkit.methods.fit_spec`).
    :param seed: base seed (:func:`fit_seed`).
    :param progress: ``progress(iteration, loss)`` callback, or None.
    :param cuda_graphs: :attr:`dipkit.fit.FitSettings.cuda_graphs` (config ``fit.cuda_graphs``).
    :param noise_sigma: noise std (0-255) for the early-stopping rules; None estimates it.
    :param poll: end the fit once ``spec["early_stop"]``'s rule fired, checked every ``poll``
        iterations (0: run every iteration, as the pipeline does).
    :param stop_params: :class:`dipkit.fit.stopping.StopParams`, or None for the spec's.
    :return: ``(FitResult, network parameter count, device)``.
    """
    dev = select_device(device)
    net = build_network(spec, noisy.shape, seed)
    h, w, _ = noisy.shape
    what = (
        f"method {spec['method']} ({spec['architecture']}, {count_parameters(net):,} parameters) "
        f"on a {w}x{h} image"
    )
    with explain_out_of_memory(what, dev):
        net, z, noisy_t, clean_t = fit_tensors(net, dev, clean, noisy, spec, seed)
        settings = fit_settings(spec, cuda_graphs, poll, stop_params)
        result = fit(
            net,
            z,
            noisy_t,
            clean_t,
            settings,
            derive_seed(seed, "perturb"),
            progress=progress,
            noise_sigma=noise_sigma,
        )
    return result, count_parameters(net), dev


def run_fit_batch(
    clean: list[np.ndarray] | None,
    noisy: list[np.ndarray],
    spec: Mapping,
    seeds: list[int],
    device: str = "auto",
    progress=None,
    cuda_graphs: str = "auto",
    noise_sigma: float | None = None,
):
    """Fit ``spec``'s network to K noisy images of one size at once (:func:`dipkit.fit.batched.fit_batch`).

    Each fit is seeded as :func:`run_fit` seeds it, so in float64 the results equal K calls of
    :func:`run_fit` up to rounding.

    :param clean: K ``[H, W, C]`` ground truths, or None.
    :param noisy: K ``[H, W, C]`` noisy images (one shape).
    :param seeds: K base seeds (:func:`fit_seed`).
    :param noise_sigma: noise std (0-255) of every image for the early-stopping rules; None
        estimates each.
    :return: ``[(FitResult, network parameter count, device)]``, one per image.
    """
    if len({a.shape for a in noisy}) != 1:
        raise ValueError(f"a batch of fits needs one image shape, got {sorted({a.shape for a in noisy})}")
    dev = select_device(device)
    nets = [build_network(spec, noisy[0].shape, seed) for seed in seeds]
    h, w, _ = noisy[0].shape
    what = (
        f"a batch of {len(nets)} fits of method {spec['method']} ({spec['architecture']}, "
        f"{count_parameters(nets[0]):,} parameters each) on {w}x{h} images"
    )
    with explain_out_of_memory(what, dev):
        parts = [
            fit_tensors(net, dev, None if clean is None else clean[j], noisy[j], spec, seeds[j])
            for j, net in enumerate(nets)
        ]
        results = fit_batch(
            [p[0] for p in parts],
            [p[1] for p in parts],
            [p[2] for p in parts],
            None if clean is None else [p[3] for p in parts],
            fit_settings(spec, cuda_graphs),
            [derive_seed(seed, "perturb") for seed in seeds],
            progress=progress,
            noise_sigma=None if noise_sigma is None else [noise_sigma] * len(nets),
        )
    return [(r, count_parameters(net), dev) for r, net in zip(results, nets)]


def build_network(spec: Mapping, shape: tuple[int, int, int], seed: int) -> torch.nn.Module:
    """``spec``'s network for an ``[H, W, C]`` image, initialised from ``seed`` (on the CPU).

    :raises ValueError: the image size does not suit the architecture (names method and size).
    """
    h, w, c = shape
    try:
        validate_image_size(spec["architecture"], (h, w), **spec["arch_options"])
    except ValueError as err:
        raise ValueError(
            f"method {spec['method']} (architecture {spec['architecture']}), image {w}x{h}: {err}"
        ) from None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init"))
        return build_model(spec["architecture"], c, (h, w), **spec["arch_options"])


def fit_tensors(
    net: torch.nn.Module,
    dev: torch.device,
    clean: np.ndarray | None,
    noisy: np.ndarray,
    spec: Mapping,
    seed: int,
):
    """The network on ``dev`` in the spec's dtype, its input code ``z`` (``[1, C_in, H_in, W_in]``,
    seeded from ``seed``) and the ``[1, C, H, W]`` noisy and clean images (clean: None if None)."""
    dtype = {"float32": torch.float32, "float64": torch.float64}[spec["dtype"]]
    net = net.to(dev, dtype)
    z = make_input(
        net.in_channels, net.input_size, derive_seed(seed, "input"), spec["input_scale"], dtype, dev
    )

    def to_tensor(img):
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].to(dev, dtype)

    return net, z, to_tensor(noisy), None if clean is None else to_tensor(clean)


def fit_settings(
    spec: Mapping, cuda_graphs: str = "auto", poll: int = 0, stop_params: StopParams | None = None
) -> FitSettings:
    """The :class:`~dipkit.fit.FitSettings` of a fit spec, with ``fit.cuda_graphs`` (not part of
    the spec: it changes only the speed) and the early-stopping poll and parameters (see
    :func:`run_fit`)."""
    return FitSettings(
        iterations=spec["iterations"],
        lr=spec["lr"],
        reg_noise_std=spec["reg_noise_std"],
        exp_weight=spec["exp_weight"],
        ssim_every=spec["ssim_every"],
        backtracking=spec["backtracking"],
        deterministic=spec["deterministic"],
        autocast=spec.get("autocast", "off"),
        compile=spec.get("compile", "off"),
        cpu_layout=spec.get("cpu_layout", "auto"),
        cuda_graphs=cuda_graphs,
        early_stop=spec.get("early_stop", "off"),
        early_stop_poll=int(poll),
        stop_params=stop_params or StopParams(**spec.get("stopping", {})),
    )
