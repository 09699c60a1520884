"""The fit-stage jobs of the workflow: what the rules ``fit`` / ``experiment_fit``, ``fit_batch``,
``isnas_search`` and ``isnas_fit`` run, each writing its fits as rows (:data:`dipkit.columns.FIT_ROWS`),
trajectories (:data:`dipkit.columns.TRAJECTORY`) and denoised PNGs.

Each rule's job is a small frozen dataclass (:class:`FitJob`, :class:`FitBatchJob`,
:class:`IsnasSearchJob`, :class:`IsnasFitJob`) built from the rule's inputs, outputs, wildcards
and params by ``from_rule(snakemake)``; how it runs (device, threads, GPU sharing, CUDA graphs:
never what it computes) is a :class:`Runtime`. The fitting itself is :mod:`dipkit.runner`'s.
"""

from __future__ import annotations

import json
import logging
import resource
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from dipkit.classical import run_classical
from dipkit.columns import FIT_ROWS, TRAJECTORY, arrow_schema, fit_row, make_table, stop_columns
from dipkit.fit import FitDivergedError, select_device
from dipkit.fit.gpu_slots import device_for_job
from dipkit.images import central_crop, save_png, to_float
from dipkit.io import atomic_path, load_from_stack, write_parquet, write_text
from dipkit.isnas import ISNAS_DEFAULTS, search, select_output
from dipkit.models import ARCHITECTURES
from dipkit.noise import NoiseSpec
from dipkit.runner import fit_seed, run_fit, run_fit_batch
from dipkit.seeding import derive_seed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    """How a fit job runs, never what it computes (none of it is a rule param).

    :ivar device: config ``fit.device`` (``auto``, ``cpu``, ``cuda``, ``cuda:1``...).
    :ivar threads: the rule's threads (torch CPU threads).
    :ivar fits_per_gpu: config ``fit.fits_per_gpu`` (picks the GPU slot with several GPUs,
        see :mod:`dipkit.fit.gpu_slots`).
    :ivar cuda_graphs: config ``fit.cuda_graphs`` (``auto``, ``on`` or ``off``).
    """

    device: str = "auto"
    threads: int = 1
    fits_per_gpu: int = 1
    cuda_graphs: str = "auto"

    @classmethod
    def from_rule(cls, smk) -> Runtime:
        """The runtime of the job a workflow script runs (its ``snakemake`` object)."""
        fit = smk.config["fit"]
        graphs = fit.get("cuda_graphs", "auto")
        if isinstance(graphs, bool):  # YAML's unquoted on / off
            graphs = "on" if graphs else "off"
        return cls(
            device=str(fit["device"]),
            threads=max(1, int(smk.threads)),
            fits_per_gpu=int(fit["fits_per_gpu"]),
            cuda_graphs=graphs,
        )


@dataclass(frozen=True)
class FitOutputs:
    """The three files of one fit: its row, its trajectory and its denoised PNG."""

    row: str
    trajectory: str
    image: str


@dataclass(frozen=True)
class FitJob:
    """One method on one noisy image (rules ``fit`` and ``experiment_fit``).

    :ivar prepared: the dataset's prepared stack (clean images).
    :ivar noisy: the (dataset, noise) noisy stack.
    :ivar spec: the fit spec (:func:`dipkit.methods.fit_spec`).
    :ivar config_seed: config ``seed``; the fit's seed is :func:`dipkit.runner.fit_seed`.
    :ivar fit_version: the fit stage's version (``dipkit/_versions.py``), written in the row.
    :ivar width_file: for ``width_source == "predicted"``: the classifier's width for this
        image (a text file holding one integer).
    """

    prepared: str
    noisy: str
    dataset: str
    image: str
    noise: str
    spec: Mapping[str, Any]
    config_seed: int
    fit_version: int
    out: FitOutputs
    width_file: str | None = None

    @classmethod
    def from_rule(cls, smk) -> FitJob:
        wc, params, out = smk.wildcards, smk.params, smk.output
        return cls(
            prepared=smk.input.prepared,
            noisy=smk.input.noisy,
            dataset=wc.dataset,
            image=wc.image,
            noise=wc.noise,
            spec=params.spec,
            config_seed=int(params.seed),
            fit_version=int(params.version),
            out=FitOutputs(out.row, out.trajectory, out.image),
            width_file=smk.input.get("width"),
        )


@dataclass(frozen=True)
class FitBatchJob:
    """One method on several noisy images of one (dataset, noise), fitted at once (rule
    ``fit_batch``); each fit is written as ``<image>.parquet``, ``<image>.trajectory.parquet``
    and ``<image>.png`` in ``out_dir``. ``images`` and ``specs`` come in pairs."""

    prepared: str
    noisy: str
    dataset: str
    noise: str
    images: tuple[str, ...]
    specs: tuple[Mapping[str, Any], ...]
    config_seed: int
    fit_version: int
    out_dir: str

    @classmethod
    def from_rule(cls, smk) -> FitBatchJob:
        wc, params = smk.wildcards, smk.params
        return cls(
            prepared=smk.input.prepared,
            noisy=smk.input.noisy,
            dataset=wc.dataset,
            noise=wc.noise,
            images=tuple(params.images),
            specs=tuple(params.specs),
            config_seed=int(params.seed),
            fit_version=int(params.version),
            out_dir=smk.output[0],
        )


@dataclass(frozen=True)
class IsnasSearchJob:
    """The ISNAS-DIP architecture search for one noisy image (rule ``isnas_search``), written
    to the JSON ``out``."""

    noisy: str
    dataset: str
    image: str
    noise: str
    spec: Mapping[str, Any]
    config_seed: int
    out: str

    @classmethod
    def from_rule(cls, smk) -> IsnasSearchJob:
        wc = smk.wildcards
        return cls(
            noisy=smk.input[0],
            dataset=wc.dataset,
            image=wc.image,
            noise=wc.noise,
            spec=smk.params.spec,
            config_seed=int(smk.params.seed),
            out=smk.output[0],
        )


@dataclass(frozen=True)
class IsnasFitJob:
    """The searched candidates fitted, and the one closest to their mean kept (rule ``isnas_fit``).

    :ivar fit: the method's fit (its spec holds the search settings; its outputs get the kept fit).
    :ivar search: the :class:`IsnasSearchJob`'s JSON.
    """

    fit: FitJob
    search: str

    @classmethod
    def from_rule(cls, smk) -> IsnasFitJob:
        return cls(fit=FitJob.from_rule(smk), search=smk.input.search)


# ----------------------------------------------------------------------------- one fit


def run_fit_job(job: FitJob, runtime: Runtime) -> dict:
    """The fit rule: fit, then write the row, the trajectory and the denoised PNG.

    :return: the row (:data:`dipkit.columns.FIT_ROWS`).
    """
    started = time.time()
    row, outcome = _fit_one(job, runtime)
    _write_fit(row, outcome, job.out, started)
    return row


def _fit_one(job: FitJob, runtime: Runtime) -> tuple[dict, dict]:
    """One fit: its row and its outcome (:func:`_dip_outcome`), written nowhere."""
    torch.set_num_threads(max(1, runtime.threads))
    spec = _job_spec(job.spec, job.width_file)
    clean, noisy = _job_images(job.prepared, job.noisy, job.image, spec)
    seed = fit_seed(job.config_seed, job.dataset, job.image, job.noise, spec["method"])
    if spec.get("kind", "dip") == "classical":
        outcome = _classical_outcome(spec, clean, noisy, job.noise)
    else:
        with device_for_job(runtime.device, runtime.fits_per_gpu) as job_device:  # a GPU slot per job
            result = run_fit(
                clean,
                noisy,
                spec,
                seed,
                job_device,
                _progress_logger(spec["iterations"]),
                runtime.cuda_graphs,
                noise_sigma=stop_sigma(job.noise),
            )
        outcome = _dip_outcome(*result, spec, job.dataset, job.image, job.noise)
    return _row(job.dataset, job.image, job.noise, spec, seed, outcome, noisy.shape, job.fit_version), outcome


def stop_sigma(noise_id: str) -> float | None:
    """The noise sigma (0-255) the early-stopping rules get in the pipeline: the level of
    Gaussian noise; None (estimated from the noisy image) for Poisson and real noise."""
    noise = NoiseSpec.parse(noise_id)
    return float(noise.level) if noise.kind == "gaussian" else None


def _job_spec(spec: Mapping, width_file: str | None) -> dict:
    """A fit spec with its width filled in (a predicted width is read from ``width_file``)."""
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
    """``(clean, noisy)`` float ``[H, W, C]`` images of one fit (a central crop when the spec says so)."""
    clean = to_float(load_from_stack(prepared_path, f"clean/{image}"))
    noisy = load_from_stack(noisy_path, image).astype(np.float32)
    if clean.shape != noisy.shape:
        raise ValueError(f"{noisy_path}: {image} has shape {noisy.shape}, its clean image {clean.shape}")
    if spec.get("crop"):
        clean, noisy = central_crop(clean, spec["crop"]), central_crop(noisy, spec["crop"])
    return clean, noisy


def _dip_outcome(result, n_params: int, dev, spec, dataset, image, noise_id) -> dict:
    """Row fields, trajectory columns and output image (``[H, W, C]``) of a DIP fit."""
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


def _classical_outcome(spec, clean, noisy, noise_id) -> dict:
    """Row fields, (empty) trajectory and output image of a classical denoiser."""
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


def _row(dataset, image, noise_id, spec, seed, outcome, shape, fit_version, batch_size: int = 1) -> dict:
    """:func:`dipkit.columns.fit_row` with this process's torch threads and version."""
    return fit_row(
        dataset,
        image,
        noise_id,
        spec,
        seed,
        outcome["row"],
        shape,
        fit_version=fit_version,
        threads=torch.get_num_threads(),
        torch_version=torch.__version__,
        batch_size=batch_size,
    )


def _progress_logger(iterations: int):
    def progress(i, loss):
        log.info("iteration %d/%d loss %s", i, iterations, "n/a" if loss is None else f"{loss:.6f}")

    return progress


def _write_fit(row: dict, outcome: dict, out: FitOutputs, started: float) -> None:
    """Write one fit's trajectory, PNG and row (each atomically), and log its scores."""
    write_parquet(out.trajectory, pa.table(outcome["trajectory"], schema=arrow_schema(TRAJECTORY)))
    save_png(out.image, outcome["output"])
    write_parquet(out.row, make_table([row], FIT_ROWS))
    log.info(
        "%s/%s/%s/%s: PSNR %.2f dB (peak %.2f at %d), %.1f s on %s in %.1f s total",
        row["dataset"],
        row["noise"],
        row["method"],
        row["image"],
        row["psnr_last"],
        row["psnr_peak"],
        row["psnr_peak_iteration"],
        row["wall_time_s"],
        row["device"],
        time.time() - started,
    )


# ----------------------------------------------------------------------------- batched fits


def run_fit_batch_job(job: FitBatchJob, runtime: Runtime) -> list[dict]:
    """The fit_batch rule: fit one method to several images at once, in one process
    (:func:`dipkit.runner.run_fit_batch`), and write each fit as :func:`run_fit_job` writes it,
    as ``<image>.parquet``, ``<image>.trajectory.parquet`` and ``<image>.png`` in ``job.out_dir``
    (created whole or not at all).

    Fits with the same spec and image size run as one batch (a planned batch has one of each;
    a user dataset's images may differ in size). Each fit is seeded as in :func:`run_fit_job`.
    A fit's ``wall_time_s`` is its batch's loop time divided by the ``batch_size`` fits in it,
    and ``peak_memory_bytes`` the batch's peak.

    :return: the rows, in the order of ``job.images``.
    """
    images = list(job.images)
    if len(images) != len(job.specs) or not images:
        raise ValueError(
            f"a fit batch needs one spec per image, got {len(images)} images and {len(job.specs)} specs"
        )
    torch.set_num_threads(max(1, runtime.threads))
    specs = [_job_spec(spec, None) for spec in job.specs]
    for spec in specs:
        if spec.get("kind", "dip") != "dip":
            raise ValueError(f"method {spec['method']} ({spec.get('kind')}) cannot run in a batch of fits")
    loaded = [_job_images(job.prepared, job.noisy, image, spec) for image, spec in zip(images, specs)]
    seeds = [
        fit_seed(job.config_seed, job.dataset, image, job.noise, spec["method"])
        for image, spec in zip(images, specs)
    ]
    groups: dict[tuple, list[int]] = {}
    for j, (spec, (_, noisy)) in enumerate(zip(specs, loaded)):
        groups.setdefault((json.dumps(spec, sort_keys=True), noisy.shape), []).append(j)
    started = time.time()
    outcomes: dict[int, dict] = {}
    with device_for_job(runtime.device, runtime.fits_per_gpu) as job_device:  # one GPU slot for the batch
        if select_device(job_device).type == "cpu" and len(images) > 1:
            log.warning(
                "batched fits on the CPU: slower than one fit per job (docs/fit-engine.md, Batched fits); "
                "set fit.batch: 1 on machines without a GPU"
            )
        for members in groups.values():
            spec = specs[members[0]]
            log.info(
                "%s/%s/%s: fitting %d image(s) at once: %s",
                job.dataset,
                job.noise,
                spec["method"],
                len(members),
                " ".join(images[j] for j in members),
            )
            try:
                results = run_fit_batch(
                    [loaded[j][0] for j in members],
                    [loaded[j][1] for j in members],
                    spec,
                    [seeds[j] for j in members],
                    job_device,
                    _progress_logger(spec["iterations"]),
                    runtime.cuda_graphs,
                    noise_sigma=stop_sigma(job.noise),
                )
            except FitDivergedError as err:
                names = ", ".join(images[j] for j in members)
                raise FitDivergedError(f"batch of images {names}: {err}", err.iteration) from None
            for j, result in zip(members, results):
                outcomes[j] = _dip_outcome(*result, spec, job.dataset, images[j], job.noise)
                outcomes[j]["row"]["wall_time_s"] /= len(members)
                outcomes[j]["batch_size"] = len(members)
    rows = []
    with atomic_path(job.out_dir, directory=True) as tmp:
        for j, image in enumerate(images):
            row = _row(
                job.dataset,
                image,
                job.noise,
                specs[j],
                seeds[j],
                outcomes[j],
                loaded[j][1].shape,
                job.fit_version,
                batch_size=outcomes[j]["batch_size"],
            )
            out = FitOutputs(
                tmp / f"{image}.parquet", tmp / f"{image}.trajectory.parquet", tmp / f"{image}.png"
            )
            _write_fit(row, outcomes[j], out, started)
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------- ISNAS-DIP


def run_isnas_search_job(job: IsnasSearchJob, runtime: Runtime) -> dict:
    """The *isnas_search* rule: rank sampled NAS-DIP architectures for one noisy image.

    Writes a JSON with every candidate's score, the ``top`` tokens in order and the
    search's wall time (``seconds``).
    """
    torch.set_num_threads(max(1, runtime.threads))
    spec = job.spec
    noisy = load_from_stack(job.noisy, job.image).astype(np.float32)
    if spec.get("crop"):
        noisy = central_crop(noisy, spec["crop"])
    seed = derive_seed(fit_seed(job.config_seed, job.dataset, job.image, job.noise, spec["method"]), "search")
    s = spec["search"]
    result = search(
        noisy,
        n_samples=int(s["n_samples"]),
        top_k=int(s["top_k"]),
        seed=seed,
        metric=s["metric"],
        device=str(select_device(runtime.device)),
    )
    result.update({"dataset": job.dataset, "image": job.image, "noise": job.noise, "seed": seed})
    write_text(job.out, json.dumps(result, indent=1, sort_keys=True, default=str) + "\n")
    log.info(
        "ISNAS search for %s/%s/%s: %d candidates in %.1f s",
        job.dataset,
        job.noise,
        job.image,
        len(result["candidates"]),
        result["seconds"],
    )
    return result


def candidate_spec(spec: Mapping, token: str, rank: int, channels: int) -> dict:
    """The fit spec of the ISNAS candidate of ``rank``: NAS-DIP with the searched genotype, fed
    (as in the search) with an input code of the image's channel count."""
    return {
        **{k: v for k, v in spec.items() if k != "search"},
        "kind": "dip",
        "method": f"{spec['method']}#{rank}",
        "arch_options": {
            **ISNAS_DEFAULTS["model"],
            **spec["arch_options"],
            "genotype": token,
            "in_channels": channels,
        },
        "width_source": "search",
    }


def run_isnas_fit_job(job: IsnasFitJob, runtime: Runtime) -> dict:
    """The *isnas_fit* rule: fit the top-k candidates of the search, keep the one closest to
    their mean.

    The result is written like any fit (row, trajectory, PNG) under the method's name;
    ``wall_time_s`` is the search plus all ``top_k`` fits, ``width_source`` is ``search``.
    """
    found = json.loads(Path(job.search).read_text())
    base = job.fit
    spec = base.spec
    channels = int(load_from_stack(base.noisy, base.image).shape[2])
    score_of = {c["token"]: c["score"] for c in found["candidates"]}
    started = time.time()
    rows, outcomes = [], []
    for rank, token in enumerate(found["top"]):
        row, outcome = _fit_one(replace(base, spec=candidate_spec(spec, token, rank, channels)), runtime)
        log.info("candidate %d (%s): PSNR %.2f dB", rank, token, row["psnr_last"])
        rows.append(row)
        outcomes.append(outcome)
    # upstream's closest_to_average: the average is weighted by the search scores
    best = select_output([o["output"] for o in outcomes], scores=[score_of[t] for t in found["top"]])
    row = dict(rows[best])
    row["method"] = spec["method"]
    row["search_s"] = float(found["seconds"])
    row["wall_time_s"] = row["search_s"] + sum(r["wall_time_s"] for r in rows)
    row["seconds_per_iteration"] = row["wall_time_s"] / spec["iterations"]
    kept = outcomes[best]
    trajectory = {**kept["trajectory"], "method": [spec["method"]] * len(kept["trajectory"]["method"])}
    _write_fit(row, {**kept, "trajectory": trajectory}, base.out, started)
    log.info(
        "ISNAS-DIP %s/%s/%s: candidate %d of %d selected, PSNR %.2f dB",
        base.dataset,
        base.noise,
        base.image,
        best,
        len(outcomes),
        row["psnr_last"],
    )
    return row
