"""Checks and planning on top of the JSON-schema validation of ``config.yaml``.

:func:`plan_datasets` turns the ``datasets`` section into the list of images and noise
settings the workflow fans out over, and raises :class:`ConfigError` with the offending
config key for everything a schema cannot express (unknown dataset names, missing
folders, unknown image ids, noise kinds a dataset cannot have). Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

from dipkit.manifest import DatasetFile, builtin_datasets, scan_folder
from dipkit.noise import NoiseSpec


class ConfigError(ValueError):
    """A config value is invalid; the message names the key and what is allowed."""


@dataclass(frozen=True)
class DatasetPlan:
    """What the workflow does with one dataset."""

    name: str
    builtin: bool
    channels: int
    files: tuple[DatasetFile, ...]  # every file needed (clean, and noisy for real pairs)
    images: tuple[str, ...]  # image ids, in order
    noise: tuple[NoiseSpec, ...]
    methods: tuple[str, ...] = ()  # methods fitted on this dataset

    @property
    def paired(self) -> bool:
        """True when the dataset has real noisy images paired with clean ones."""
        return any(f.role == "noisy" for f in self.files)

    @property
    def noise_ids(self) -> tuple[str, ...]:
        return tuple(n.id for n in self.noise)


def _noise_specs(name: str, entry: dict, paired: bool) -> tuple[NoiseSpec, ...]:
    specs = []
    for kind in ("gaussian", "poisson"):
        levels = entry.get(kind) or []
        if len(set(map(float, levels))) != len(levels):
            raise ConfigError(f"config key datasets.{name}.{kind}: levels repeat: {levels}")
        for level in levels:
            if not 0 < float(level) < float("inf"):
                raise ConfigError(
                    f"config key datasets.{name}.{kind}: levels must be finite numbers > 0, got {level}"
                )
            specs.append(NoiseSpec(kind, float(level)))
    if entry.get("real"):
        if not paired:
            raise ConfigError(
                f"config key datasets.{name}.real: dataset {name!r} has no real noisy images "
                f"(only PolyU does)"
            )
        specs.append(NoiseSpec("real"))
    if not specs:
        raise ConfigError(f"config key datasets.{name}: no noise given (set gaussian, poisson or real)")
    return tuple(specs)


def plan_methods(config: dict) -> dict:
    """``{name: Method}`` for the ``methods`` section, with its overrides applied."""
    from dipkit.architectures import check_options
    from dipkit.methods import get_method

    out = {}
    for name, overrides in (config.get("methods") or {}).items():
        try:
            out[name] = get_method(name, overrides or {})
            check_options(f"methods.{name}", out[name].architecture, out[name].arch_options)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    for name, overrides in relabel_methods(config).items():
        if name not in out:
            try:
                out[name] = get_method(name, overrides)
            except ValueError as err:
                raise ConfigError(f"config key relabel: {err}") from None
    return out


def fitted_size(dataset: str, image: str, crop_multiple: int) -> tuple[int, int]:
    """``(width, height)`` of a built-in clean image as it is fitted: both sides cropped to a
    multiple of ``crop_multiple``, as the prepare stage does (:func:`dipkit.images.crop_to_multiple`)."""
    from dipkit.manifest import builtin_sizes

    w, h = builtin_sizes()[(dataset, image)]
    return w - w % crop_multiple, h - h % crop_multiple


def check_image_sizes(config: dict, plans: dict[str, DatasetPlan], methods: dict) -> None:
    """Fail when a method's network cannot take a built-in dataset's images (after the crop
    to ``crop_multiple``): encoder-decoders need sides that are multiples of ``2**levels``.

    User datasets are checked when their images are read (the fit job names the file)."""
    from dipkit.architectures import size_rule

    crop = int(config.get("crop_multiple", 32))
    for dname, plan in plans.items():
        if not plan.builtin:
            continue
        for image in plan.images:
            if min(fitted_size(dname, image, crop)) == 0:
                w, h = fitted_size(dname, image, 1)
                raise ConfigError(
                    f"config key crop_multiple: {crop} is larger than {dname} image {image} ({w}x{h}), "
                    f"which cropping to a multiple of it would leave empty; use a smaller crop_multiple "
                    f"(the paper's is 32)"
                )
        for mname in plan.methods:
            m = methods.get(mname)
            rule = m and size_rule(m.architecture, m.arch_options)
            if not rule:
                continue
            multiple, smallest = rule
            for image in plan.images:
                w, h = fitted_size(dname, image, crop)
                if w % multiple or h % multiple or min(w, h) < smallest:
                    raise ConfigError(
                        f"config key methods.{mname}: its {m.architecture} network downsamples by {multiple}, "
                        f"so image sides must be multiples of {multiple} and at least {smallest} px, but "
                        f"{dname} image {image} is {w}x{h} after cropping to multiples of {crop}; lower "
                        f"arch_options.levels"
                        + (f", set crop_multiple to a multiple of {multiple}" if crop % multiple else "")
                        + f" or leave the method out of datasets.{dname}.methods"
                    )


def relabel_methods(config: dict) -> dict[str, dict]:
    """The fixed-width variants the ``relabel`` stage needs: ``{name: method overrides}``."""
    cfg = config.get("relabel") or {}
    if not cfg.get("enabled"):
        return {}
    base = cfg.get("base", "ours")
    return {
        f"{base}_w{w}": {"base": base, "width": int(w), "noise": list(cfg.get("noise", ["gaussian25"]))}
        for w in cfg.get("widths", [32, 64, 128])
    }


def plan_datasets(config: dict) -> dict[str, DatasetPlan]:
    """Return ``{dataset name: DatasetPlan}`` for the ``datasets`` section of ``config``."""
    builtin = builtin_datasets()
    configured_methods = list(config.get("methods") or {}) + list(relabel_methods(config))
    plans = {}
    for name, entry in (config.get("datasets") or {}).items():
        entry = entry or {}
        if "path" in entry:
            if name in builtin:
                raise ConfigError(
                    f"config key datasets.{name}.path: {name!r} is a built-in dataset; "
                    f"give your folder another name"
                )
            channels = int(entry.get("channels", 3))
            try:
                files = scan_folder(name, entry["path"], channels)
            except ValueError as err:
                raise ConfigError(str(err)) from None
        elif name in builtin:
            if "channels" in entry:
                raise ConfigError(
                    f"config key datasets.{name}.channels: only user datasets (with a path) take it"
                )
            files = builtin[name]
            channels = files[0].channels
        else:
            raise ConfigError(
                f"config key datasets.{name}: unknown dataset; built-in datasets are "
                f"{', '.join(builtin)}, or give a folder with datasets.{name}.path"
            )
        images = list(dict.fromkeys(f.image for f in files))
        wanted = entry.get("images")
        if wanted:
            unknown = [i for i in wanted if i not in images]
            if unknown:
                raise ConfigError(
                    f"config key datasets.{name}.images: unknown image ids {unknown}; "
                    f"{name} has {', '.join(images[:12])}{' ...' if len(images) > 12 else ''}"
                )
            images = list(dict.fromkeys(wanted))
        if entry.get("max_images"):
            images = images[: int(entry["max_images"])]
        keep = set(images)
        paired = any(f.role == "noisy" for f in files)
        methods = entry.get("methods")
        if methods is None:
            methods = configured_methods
        unknown = [m for m in methods if m not in configured_methods]
        if unknown:
            raise ConfigError(
                f"config key datasets.{name}.methods: {unknown} not among the configured methods "
                f"({', '.join(configured_methods) or 'none'}; add them under `methods`)"
            )
        plans[name] = DatasetPlan(
            name=name,
            builtin=name in builtin and "path" not in entry,
            channels=channels,
            files=tuple(f for f in files if f.image in keep),
            images=tuple(images),
            noise=_noise_specs(name, entry, paired),
            methods=tuple(methods),
        )
    if not plans:
        raise ConfigError("config key datasets: no dataset configured")
    return plans


def plan_experiments(config: dict, plans: dict[str, DatasetPlan]) -> dict[str, dict]:
    """Resolve the ``experiments`` section: ``{name: cfg}`` with defaults filled in and ``arms``.

    Every image must belong to a configured dataset (and its image subset), and every noise
    setting must be configured for that dataset, so experiments reuse the noisy images of
    the main run.
    """
    from dipkit.experiments import EXPERIMENTS, split_image

    out = {}
    for name, user in (config.get("experiments") or {}).items():
        if name not in EXPERIMENTS:
            raise ConfigError(
                f"config key experiments.{name}: unknown experiment; known: {', '.join(EXPERIMENTS)}"
            )
        exp = EXPERIMENTS[name]
        try:
            cfg = exp.config(user)
            arms = exp.arms(cfg)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        for ref in cfg["images"]:
            try:
                dataset, image = split_image(ref)
            except ValueError as err:
                raise ConfigError(f"config key experiments.{name}.images: {err}") from None
            if dataset not in plans or image not in plans[dataset].images:
                raise ConfigError(
                    f"config key experiments.{name}.images: {ref!r} is not an image of a configured dataset "
                    f"(add it under datasets.{dataset})"
                )
            for noise in cfg["noise"]:
                if noise not in plans[dataset].noise_ids:
                    raise ConfigError(
                        f"config key experiments.{name}.noise: {noise!r} is not configured for {dataset} "
                        f"(it has {', '.join(plans[dataset].noise_ids)})"
                    )
        cfg["arms"] = arms
        out[name] = cfg
    return out


@dataclass(frozen=True)
class FitBatch:
    """Fits of one method on images of one dataset and noise setting, run as one job
    (:func:`dipkit.fit_jobs.run_fit_batch_job`): same fit spec, same image size."""

    dataset: str
    noise: str
    method: str
    index: int  # 1-based, per (dataset, noise, method)
    images: tuple[str, ...]

    @property
    def path(self) -> str:
        """The batch job's output folder (one row, trajectory and PNG per image)."""
        return f"results/fit_batches/{self.dataset}/{self.noise}/{self.method}/batch{self.index}"


def batchable(spec: dict) -> bool:
    """Whether a fit with this spec can run in a batch: a network fitted by :mod:`dipkit.fit`
    whose width is known when the workflow is planned (not ``predicted``)."""
    return spec.get("kind", "dip") == "dip" and spec.get("width_source") != "predicted"


def check_fit_batch(fit_cfg: dict) -> int:
    """``fit.batch``, refused together with the settings batched fits do not implement."""
    batch = int(fit_cfg.get("batch", 1))
    if batch > 1:
        for key, off in (("backtracking", False), ("autocast", "off"), ("compile", "off")):
            if fit_cfg.get(key, off) != off:
                raise ConfigError(
                    f"config key fit.batch: batched fits (fit.batch: {batch}) have no fit.{key}; "
                    f"set fit.{key} to {off!r} or fit.batch to 1"
                )
    return batch


def plan_fit_batches(fits, spec_of, size_of, batch: int) -> list[FitBatch]:
    """Group the planned fits into batches of at most ``batch`` images.

    :param fits: ``(dataset, noise, method, image)`` of every planned fit, in order.
    :param spec_of: ``spec_of(dataset, noise, method, image)`` -> the fit spec.
    :param size_of: ``size_of(dataset, image)`` -> the image's ``(width, height)`` as fitted,
        or None when unknown before the run (user datasets: the job then fits each size
        group of its batch separately).
    :return: the batches, each of one (dataset, noise, method), one spec and one size. A
        method is batched on all its fits or on none (when any fit is not :func:`batchable`),
        so that a fit's producing rule follows from its method. Empty when ``batch`` is 1.
    """
    import json

    if batch <= 1:
        return []
    specs = {fit: spec_of(*fit) for fit in fits}
    single = {m for (_, _, m, _), spec in specs.items() if not batchable(spec)}
    groups: dict[tuple, list[str]] = {}
    for (dataset, noise, method, image), spec in specs.items():
        if method in single:
            continue
        key = (dataset, noise, method, json.dumps(spec, sort_keys=True), size_of(dataset, image))
        groups.setdefault(key, []).append(image)
    counters: dict[tuple, int] = {}
    out = []
    for (dataset, noise, method, _, _), images in groups.items():
        for start in range(0, len(images), batch):
            n = counters[(dataset, noise, method)] = counters.get((dataset, noise, method), 0) + 1
            out.append(FitBatch(dataset, noise, method, n, tuple(images[start : start + batch])))
    return out
