"""The *fit* stage: one method on one noisy image, written as one row, a trajectory and
the denoised image; and the aggregation of all fits into Table 2.

Seeds: the config seed and the job's wildcards give a base seed
(:func:`fit_seed`); the network initialisation, the input code and the input
perturbation each derive their own stream from it. Initialisation and input code are
drawn on the CPU, so they are the same on every device.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

import dipkit
from dipkit.images import to_float
from dipkit.io import atomic_path, load_from_stack, write_parquet
from dipkit.noise import NoiseSpec
from dipkit.schemas import FIT_ROWS, TRAJECTORY, make_table
from dipkit.seeding import derive_seed

log = logging.getLogger(__name__)


def fit_seed(config_seed: int, dataset: str, image: str, noise_id: str, method: str) -> int:
    """Base seed of one fit."""
    return derive_seed(config_seed, "fit", dataset, image, noise_id, method)


def crop_center(img: np.ndarray, size: int) -> np.ndarray:
    """The central ``size x size`` pixels of an ``[H, W, C]`` image."""
    h, w = img.shape[:2]
    if size > min(h, w):
        raise ValueError(f"crop {size} is larger than the image ({w}x{h})")
    top, left = (h - size) // 2, (w - size) // 2
    return img[top : top + size, left : left + size]


def save_png(path: str | Path, img: np.ndarray) -> None:
    """Write a float ``[H, W, C]`` image in ``[0, 1]`` as an 8-bit PNG (atomically)."""
    from PIL import Image

    arr = np.clip(np.rint(np.asarray(img, np.float64) * 255.0), 0, 255).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(tmp, format="PNG")


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
    stop_params=None,
):
    """Fit ``spec``'s network to one noisy image.

    :param clean: ``[H, W, C]`` float32 ground truth, or None.
    :param noisy: ``[H, W, C]`` float32 noisy image.
    :param spec: a fit spec (:func:`dipkit.methods.fit_spec`).
    :param seed: base seed (:func:`fit_seed`).
    :param cuda_graphs: :attr:`dipkit.fit.FitSettings.cuda_graphs` (config ``fit.cuda_graphs``).
    :param noise_sigma: noise std (0-255) for the early-stopping rules; None estimates it.
    :param poll: end the fit once ``spec["early_stop"]``'s rule fired, checked every ``poll``
        iterations (0: run every iteration, as the pipeline does).
    :param stop_params: :class:`dipkit.fit.stopping.StopParams`, or None for the defaults.
    :return: ``(FitResult, network parameter count, device)``.
    """
    from dipkit.fit import fit, select_device
    from dipkit.fit.device import explain_out_of_memory
    from dipkit.models import count_parameters

    dev = select_device(device)
    net = _build_network(spec, noisy.shape, seed)
    h, w, _ = noisy.shape
    what = f"method {spec['method']} ({spec['architecture']}, {count_parameters(net):,} parameters) on a {w}x{h} image"
    with explain_out_of_memory(what, dev):
        net, z, noisy_t, clean_t = _fit_tensors(net, dev, clean, noisy, spec, seed)
        settings = fit_settings(spec, cuda_graphs, poll, stop_params)
        result = fit(net, z, noisy_t, clean_t, settings, derive_seed(seed, "perturb"), progress=progress,
                     noise_sigma=noise_sigma)
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
    from dipkit.fit import select_device
    from dipkit.fit.batched import fit_batch
    from dipkit.fit.device import explain_out_of_memory
    from dipkit.models import count_parameters

    if len({a.shape for a in noisy}) != 1:
        raise ValueError(f"a batch of fits needs one image shape, got {sorted({a.shape for a in noisy})}")
    dev = select_device(device)
    nets = [_build_network(spec, noisy[0].shape, seed) for seed in seeds]
    h, w, _ = noisy[0].shape
    what = (f"a batch of {len(nets)} fits of method {spec['method']} ({spec['architecture']}, "
            f"{count_parameters(nets[0]):,} parameters each) on {w}x{h} images")
    with explain_out_of_memory(what, dev):
        parts = [_fit_tensors(net, dev, None if clean is None else clean[j], noisy[j], spec, seeds[j])
                 for j, net in enumerate(nets)]
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


def _build_network(spec: Mapping, shape: tuple[int, int, int], seed: int):
    """``spec``'s network for an ``[H, W, C]`` image, initialised from ``seed`` (on the CPU)."""
    import torch

    from dipkit.models import build_model, validate_image_size

    h, w, c = shape
    try:
        validate_image_size(spec["architecture"], (h, w), **spec["arch_options"])
    except ValueError as err:
        raise ValueError(f"method {spec['method']} (architecture {spec['architecture']}), image {w}x{h}: {err}") from None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init"))
        return build_model(spec["architecture"], c, (h, w), **spec["arch_options"])


def _fit_tensors(net, dev, clean, noisy, spec, seed):
    """The network on ``dev`` in the spec's dtype, its input code and the ``[1, C, H, W]`` images."""
    import torch

    from dipkit.fit import make_input

    dtype = {"float32": torch.float32, "float64": torch.float64}[spec["dtype"]]
    net = net.to(dev, dtype)
    z = make_input(net.in_channels, net.input_size, derive_seed(seed, "input"), spec["input_scale"], dtype, dev)

    def to_tensor(img):
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].to(dev, dtype)

    return net, z, to_tensor(noisy), None if clean is None else to_tensor(clean)


def fit_settings(spec: Mapping, cuda_graphs: str = "auto", poll: int = 0, stop_params=None):
    """The :class:`~dipkit.fit.FitSettings` of a fit spec, with ``fit.cuda_graphs`` (not part of
    the spec: it changes only the speed) and the early-stopping poll and parameters (see
    :func:`run_fit`)."""
    from dipkit.fit import FitSettings
    from dipkit.fit.stopping import StopParams

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


def _dip_outcome(result, n_params: int, dev, spec, dataset, image, noise_id) -> dict:
    """Row fields, trajectory columns and output image of a DIP fit."""
    tr = result.trajectory
    n = len(tr["iteration"])
    ssim = np.full(n, np.nan)
    st = result.ssim_trajectory
    ssim[np.asarray(st["iteration"], dtype=np.int64) - 1] = st["ssim"]
    return {
        "row": {
            "params": n_params,
            "psnr_input": float(result.psnr_input),
            "psnr_last": float(result.psnr_last),
            "ssim_last": float(result.ssim_last),
            "ssim_paper_last": float(result.ssim_last_paper),
            "psnr_peak": float(result.psnr_peak),
            "psnr_peak_iteration": int(result.psnr_peak_iteration),
            "psnr_peak_raw": float(result.psnr_peak_raw),
            **stop_columns(result),
            "wall_time_s": float(result.wall_time_s),
            "search_s": 0.0,
            "device": result.device,
            "peak_memory_bytes": int(result.peak_memory_bytes),
            "peak_memory_kind": result.peak_memory_kind,
            "backtracks": int(result.backtracks),
        },
        "trajectory": {
            "dataset": [dataset] * n,
            "image": [image] * n,
            "noise": [noise_id] * n,
            "method": [spec["method"]] * n,
            "iteration": np.asarray(tr["iteration"], np.int64),
            "loss": np.asarray(tr["loss"], np.float64),
            "psnr_raw": np.asarray(tr["psnr_raw"], np.float64),
            "psnr_ema": np.asarray(tr["psnr_ema"], np.float64),
            "psnr_noisy": np.asarray(tr["psnr_noisy"], np.float64),
            "ssim_ema": [None if np.isnan(v) else float(v) for v in ssim],
        },
        "output": result.output[0].numpy().transpose(1, 2, 0),
    }


def stop_columns(result) -> dict:
    """The early-stopping columns of :data:`dipkit.schemas.FIT_ROWS` (``stop_sigma`` and each
    rule's ``<rule>_*``) of a :class:`~dipkit.fit.FitResult`, or all null (``result=None``:
    a classical method)."""
    from dipkit.schemas import STOP_RULES

    row = {"stop_sigma": None if result is None else float(result.stop_sigma)}
    for rule in STOP_RULES:
        rec = None if result is None else result.stops[rule]
        row[f"{rule}_stop_iteration"] = None if rec is None else rec.stop_iteration
        row[f"{rule}_iteration"] = None if rec is None else rec.iteration
        row[f"{rule}_psnr"] = None if rec is None else float(rec.psnr)
        row[f"{rule}_ssim"] = None if rec is None else float(rec.ssim)
    return row


def _classical_outcome(spec, clean, noisy, noise_id) -> dict:
    """Row fields, (empty) trajectory and output image of a classical denoiser."""
    import resource

    from dipkit.classical import run_classical

    r = run_classical(spec["architecture"], clean, noisy, noise_id)
    log.info("%s with sigma %.4f (%s)", spec["architecture"], r["sigma"], r["sigma_source"])
    return {
        "row": {
            "params": 0,
            "psnr_input": r["psnr_input"],
            "psnr_last": r["psnr_last"],
            "ssim_last": r["ssim_last"],
            "ssim_paper_last": r["ssim_last_paper"],
            "psnr_peak": r["psnr_last"],
            "psnr_peak_iteration": 1,
            "psnr_peak_raw": r["psnr_last"],
            **stop_columns(None),
            "wall_time_s": r["wall_time_s"],
            "search_s": 0.0,
            "device": "cpu",
            "peak_memory_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "peak_memory_kind": "process_peak_rss",
            "backtracks": 0,
        },
        "trajectory": {c.name: [] for c in TRAJECTORY},
        "output": r["output"],
    }


def run_fit_job(
    prepared_path: str,
    noisy_path: str,
    dataset: str,
    image: str,
    noise_id: str,
    spec: Mapping,
    config_seed: int,
    out_row: str,
    out_trajectory: str,
    out_image: str,
    *,
    fit_version: int,
    device: str = "auto",
    threads: int = 1,
    width_file: str | None = None,
    keep_output: bool = False,
    fits_per_gpu: int = 1,
    cuda_graphs: str | None = None,
) -> dict:
    """The fit rule: fit, then write the row, the trajectory and the denoised PNG.

    :param width_file: for ``width_source == "predicted"``: the classifier's width for this
        image (a text file holding one integer).
    :param keep_output: also return the float output image in the row under ``_output``.
    :param fits_per_gpu: fits sharing one GPU (config ``fit.fits_per_gpu``; picks the GPU
        slot with several GPUs, see :mod:`dipkit.fit.gpu_slots`).
    :param cuda_graphs: config ``fit.cuda_graphs``; None: the job's config (:func:`_cuda_graphs`).
    """
    import torch

    torch.set_num_threads(max(1, int(threads)))
    spec = _job_spec(spec, width_file)
    clean, noisy = _job_images(prepared_path, noisy_path, image, spec)
    seed = fit_seed(config_seed, dataset, image, noise_id, spec["method"])
    started = time.time()
    if spec.get("kind", "dip") == "classical":
        outcome = _classical_outcome(spec, clean, noisy, noise_id)
    else:
        from dipkit.fit.gpu_slots import device_for_job

        with device_for_job(device, fits_per_gpu) as job_device:  # a GPU slot per concurrent job
            result = run_fit(clean, noisy, spec, seed, job_device, _progress_logger(spec["iterations"]),
                             _cuda_graphs(cuda_graphs), noise_sigma=stop_sigma(noise_id))
        outcome = _dip_outcome(*result, spec, dataset, image, noise_id)
    row = _fit_row(dataset, image, noise_id, spec, seed, outcome["row"], noisy.shape, fit_version)
    _write_fit(row, outcome, out_row, out_trajectory, out_image, started)
    if keep_output:
        return {**row, "_output": outcome["output"]}
    return row


def run_fit_batch_job(
    prepared_path: str,
    noisy_path: str,
    dataset: str,
    noise_id: str,
    images: list[str],
    specs: list[Mapping],
    config_seed: int,
    out_dir: str,
    *,
    fit_version: int,
    device: str = "auto",
    threads: int = 1,
    fits_per_gpu: int = 1,
    cuda_graphs: str | None = None,
) -> list[dict]:
    """The fit_batch rule: fit one method to several images at once, in one process
    (:func:`run_fit_batch`), and write each fit as :func:`run_fit_job` writes it, as
    ``<image>.parquet``, ``<image>.trajectory.parquet`` and ``<image>.png`` in ``out_dir``
    (created whole or not at all).

    Images and specs come in pairs; fits with the same spec and image size run as one batch
    (a planned batch has one of each; a user dataset's images may differ in size). Each fit
    is seeded as in :func:`run_fit_job`. A fit's ``wall_time_s`` is its batch's loop time
    divided by the ``batch_size`` fits in it, and ``peak_memory_bytes`` the batch's peak.
    """
    import torch

    from dipkit.fit import FitDivergedError, select_device
    from dipkit.fit.gpu_slots import device_for_job

    if len(images) != len(specs) or not images:
        raise ValueError(f"a fit batch needs one spec per image, got {len(images)} images and {len(specs)} specs")
    torch.set_num_threads(max(1, int(threads)))
    specs = [_job_spec(spec, None) for spec in specs]
    for spec in specs:
        if spec.get("kind", "dip") != "dip":
            raise ValueError(f"method {spec['method']} ({spec.get('kind')}) cannot run in a batch of fits")
    loaded = [_job_images(prepared_path, noisy_path, image, spec) for image, spec in zip(images, specs)]
    seeds = [fit_seed(config_seed, dataset, image, noise_id, spec["method"]) for image, spec in zip(images, specs)]
    groups: dict[tuple, list[int]] = {}
    for j, (spec, (_, noisy)) in enumerate(zip(specs, loaded)):
        groups.setdefault((json.dumps(spec, sort_keys=True), noisy.shape), []).append(j)
    started = time.time()
    outcomes: dict[int, dict] = {}
    with device_for_job(device, fits_per_gpu) as job_device:  # one GPU slot for the whole batch
        if select_device(job_device).type == "cpu" and len(images) > 1:
            log.warning("batched fits on the CPU: slower than one fit per job (README, Batched fits); "
                        "set fit.batch: 1 on machines without a GPU")
        for members in groups.values():
            spec = specs[members[0]]
            log.info("%s/%s/%s: fitting %d image(s) at once: %s", dataset, noise_id, spec["method"],
                     len(members), " ".join(images[j] for j in members))
            try:
                results = run_fit_batch(
                    [loaded[j][0] for j in members],
                    [loaded[j][1] for j in members],
                    spec,
                    [seeds[j] for j in members],
                    job_device,
                    _progress_logger(spec["iterations"]),
                    _cuda_graphs(cuda_graphs),
                    noise_sigma=stop_sigma(noise_id),
                )
            except FitDivergedError as err:
                names = ", ".join(images[j] for j in members)
                raise FitDivergedError(f"batch of images {names}: {err}", err.iteration) from None
            for j, result in zip(members, results):
                outcomes[j] = _dip_outcome(*result, spec, dataset, images[j], noise_id)
                outcomes[j]["row"]["wall_time_s"] /= len(members)
                outcomes[j]["batch_size"] = len(members)
    rows = []
    with atomic_path(out_dir, directory=True) as tmp:
        for j, image in enumerate(images):
            spec, noisy = specs[j], loaded[j][1]
            row = _fit_row(dataset, image, noise_id, spec, seeds[j], outcomes[j]["row"], noisy.shape, fit_version,
                           batch_size=outcomes[j]["batch_size"])
            _write_fit(row, outcomes[j], tmp / f"{image}.parquet", tmp / f"{image}.trajectory.parquet",
                       tmp / f"{image}.png", started)
            rows.append(row)
    return rows


def _cuda_graphs(value: str | None) -> str:
    """``fit.cuda_graphs`` of a fit job: ``value``, or else the job's config
    (:func:`dipkit.workflow.job_config`), or else ``auto``; YAML's unquoted on/off (booleans) too."""
    if value is None:
        from dipkit.workflow import job_config

        value = (job_config().get("fit") or {}).get("cuda_graphs", "auto")
    return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value


def stop_sigma(noise_id: str) -> float | None:
    """The noise sigma (0-255) the early-stopping rules get in the pipeline: the level of
    Gaussian noise; None (estimated from the noisy image) for Poisson and real noise."""
    noise = NoiseSpec.parse(noise_id)
    return float(noise.level) if noise.kind == "gaussian" else None


def _job_spec(spec: Mapping, width_file: str | None) -> dict:
    """A fit spec with its width filled in (a predicted width is read from ``width_file``)."""
    from dipkit.models import ARCHITECTURES

    spec = dict(spec)
    if spec["width_source"] == "predicted":
        if width_file is None:
            raise ValueError(f"method {spec['method']} uses predicted widths but no width file was given")
        spec["arch_options"] = {**spec["arch_options"], "width": int(Path(width_file).read_text().strip())}
        spec["width"] = spec["arch_options"]["width"]
    if spec["width"] is None and spec["architecture"] in ARCHITECTURES:
        spec["width"] = ARCHITECTURES[spec["architecture"]].defaults.get("width")
    return spec


def _job_images(prepared_path: str, noisy_path: str, image: str, spec: Mapping):
    """``(clean, noisy)`` float ``[H, W, C]`` images of one fit (centre-cropped when the spec says so)."""
    clean = to_float(load_from_stack(prepared_path, f"clean/{image}"))
    noisy = load_from_stack(noisy_path, image).astype(np.float32)
    if clean.shape != noisy.shape:
        raise ValueError(f"{noisy_path}: {image} has shape {noisy.shape}, its clean image {clean.shape}")
    if spec.get("crop"):
        clean, noisy = crop_center(clean, spec["crop"]), crop_center(noisy, spec["crop"])
    return clean, noisy


def _progress_logger(iterations: int):
    def progress(i, loss):
        log.info("iteration %d/%d loss %s", i, iterations, "n/a" if loss is None else f"{loss:.6f}")

    return progress


def _fit_row(dataset, image, noise_id, spec, seed, outcome_row, shape, fit_version, batch_size: int = 1) -> dict:
    """One row of :data:`dipkit.schemas.FIT_ROWS`."""
    import torch

    noise = NoiseSpec.parse(noise_id)
    return {
        "dataset": dataset,
        "image": image,
        "noise": noise_id,
        "noise_kind": noise.kind,
        "noise_level": noise.level,
        "method": spec["method"],
        "architecture": spec["architecture"],
        "arch_options": json.dumps(spec["arch_options"], sort_keys=True),
        "width": spec["width"],
        "width_source": spec["width_source"],
        "height": shape[0],
        "width_px": shape[1],
        "channels": shape[2],
        "iterations": spec["iterations"],
        "lr": spec["lr"],
        "exp_weight": spec["exp_weight"],
        "reg_noise_std": spec["reg_noise_std"],
        "input_scale": spec["input_scale"],
        "seed": seed,
        "early_stop": spec.get("early_stop", "off"),
        **outcome_row,
        "seconds_per_iteration": outcome_row["wall_time_s"] / spec["iterations"],
        "dtype": spec["dtype"],
        "threads": torch.get_num_threads(),
        "batch_size": int(batch_size),
        "torch_version": torch.__version__,
        "dipkit_version": dipkit.__version__,
        "fit_version": int(fit_version),
    }


def _write_fit(row: dict, outcome: dict, out_row, out_trajectory, out_image, started: float) -> None:
    """Write one fit's trajectory, PNG and row (each atomically), and log its scores."""
    import pyarrow as pa

    from dipkit.schemas import arrow_schema

    write_parquet(out_trajectory, pa.table(outcome["trajectory"], schema=arrow_schema(TRAJECTORY)))
    save_png(out_image, outcome["output"])
    write_parquet(out_row, make_table([row], FIT_ROWS))
    log.info(
        "%s/%s/%s/%s: PSNR %.2f dB (peak %.2f at %d), %.1f s on %s in %.1f s total",
        row["dataset"], row["noise"], row["method"], row["image"], row["psnr_last"], row["psnr_peak"],
        row["psnr_peak_iteration"], row["wall_time_s"], row["device"], time.time() - started,
    )


# ----------------------------------------------------------------------------- ISNAS-DIP


def run_isnas_search_job(noisy_path, dataset, image, noise_id, spec, config_seed, out_json, device="auto", threads=1):
    """The *isnas_search* rule: rank sampled NAS-DIP architectures for one noisy image.

    Writes a JSON with every candidate's score, the ``top`` tokens in order and the
    search's wall time (``seconds``).
    """
    import torch

    from dipkit.fit import select_device
    from dipkit.io import write_text
    from dipkit.isnas import search

    torch.set_num_threads(max(1, int(threads)))
    noisy = load_from_stack(noisy_path, image).astype(np.float32)
    if spec.get("crop"):
        noisy = crop_center(noisy, spec["crop"])
    seed = derive_seed(fit_seed(config_seed, dataset, image, noise_id, spec["method"]), "search")
    s = spec["search"]
    result = search(
        noisy,
        n_samples=int(s["n_samples"]),
        top_k=int(s["top_k"]),
        seed=seed,
        metric=s["metric"],
        device=str(select_device(device)),
    )
    result.update({"dataset": dataset, "image": image, "noise": noise_id, "seed": seed})
    write_text(out_json, json.dumps(result, indent=1, sort_keys=True, default=str) + "\n")
    log.info("ISNAS search for %s/%s/%s: %d candidates in %.1f s", dataset, noise_id, image,
             len(result["candidates"]), result["seconds"])
    return result


def candidate_spec(spec: Mapping, token: str, rank: int, channels: int) -> dict:
    """The fit spec of the ISNAS candidate of ``rank``: NAS-DIP with the searched genotype, fed
    (as in the search) with an input code of the image's channel count."""
    from dipkit.isnas import ISNAS_DEFAULTS

    return {
        **{k: v for k, v in spec.items() if k != "search"},
        "kind": "dip",
        "method": f"{spec['method']}#{rank}",
        "arch_options": {**ISNAS_DEFAULTS["model"], **spec["arch_options"], "genotype": token, "in_channels": channels},
        "width_source": "search",
    }


def run_isnas_select_job(prepared_path, noisy_path, search_json, dataset, image, noise_id, spec, config_seed,
                         out_row, out_trajectory, out_image, *, fit_version, device="auto", threads=1,
                         fits_per_gpu=1):
    """The *isnas_select* rule: fit the top-k candidates, keep the one closest to their mean.

    The result is written like any fit (row, trajectory, PNG) under the method's name;
    ``wall_time_s`` is the search plus all ``top_k`` fits, ``width_source`` is ``search``.
    """
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    from dipkit.isnas import select_output
    from dipkit.schemas import arrow_schema

    found = json.loads(Path(search_json).read_text())
    channels = int(load_from_stack(noisy_path, image).shape[2])
    score_of = {c["token"]: c["score"] for c in found["candidates"]}
    outputs, rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for rank, token in enumerate(found["top"]):
            cand = candidate_spec(spec, token, rank, channels)
            paths = [f"{tmp}/{rank}.parquet", f"{tmp}/{rank}.trajectory.parquet", f"{tmp}/{rank}.png"]
            rows.append(
                run_fit_job(prepared_path, noisy_path, dataset, image, noise_id, cand, config_seed, *paths,
                            fit_version=fit_version, device=device, threads=threads, keep_output=True,
                            fits_per_gpu=fits_per_gpu)
            )
            outputs.append(rows[-1].pop("_output"))
        # upstream's closest_to_average: the average is weighted by the search scores
        best = select_output(outputs, scores=[score_of[t] for t in found["top"]])
        row = dict(rows[best])
        row["method"] = spec["method"]
        row["search_s"] = float(found["seconds"])
        row["wall_time_s"] = row["search_s"] + sum(r["wall_time_s"] for r in rows)
        row["seconds_per_iteration"] = row["wall_time_s"] / spec["iterations"]
        traj = pq.read_table(f"{tmp}/{best}.trajectory.parquet")
        traj = traj.set_column(
            traj.schema.get_field_index("method"), "method", pa.array([spec["method"]] * traj.num_rows, pa.string())
        )
        write_parquet(out_trajectory, traj.cast(arrow_schema(TRAJECTORY)))
        save_png(out_image, outputs[best])
        write_parquet(out_row, make_table([row], FIT_ROWS))
    log.info("ISNAS-DIP %s/%s/%s: candidate %d of %d selected, PSNR %.2f dB", dataset, noise_id, image, best,
             len(outputs), row["psnr_last"])
    return row
