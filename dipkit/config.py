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
            if not float(level) > 0:
                raise ConfigError(f"config key datasets.{name}.{kind}: levels must be > 0, got {level}")
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
    from dipkit.catalog import check_options
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


def check_image_sizes(config: dict, plans: dict[str, DatasetPlan], methods: dict) -> None:
    """Fail when a method's network cannot take a built-in dataset's images (after the crop
    to ``crop_multiple``): encoder-decoders need sides that are multiples of ``2**levels``.

    User datasets are checked when their images are read (the fit job names the file)."""
    from dipkit.catalog import size_rule
    from dipkit.manifest import builtin_sizes

    crop = int(config.get("crop_multiple", 32))
    sizes = builtin_sizes()
    for dname, plan in plans.items():
        if not plan.builtin:
            continue
        for mname in plan.methods:
            m = methods.get(mname)
            rule = m and size_rule(m.architecture, m.arch_options)
            if not rule:
                continue
            multiple, smallest = rule
            for image in plan.images:
                w, h = sizes[(dname, image)]
                w, h = w - w % crop, h - h % crop
                if w % multiple or h % multiple or min(w, h) < smallest:
                    raise ConfigError(
                        f"config key methods.{mname}: its {m.architecture} network downsamples by {multiple}, "
                        f"so image sides must be multiples of {multiple} and at least {smallest} px, but "
                        f"{dname} image {image} is {w}x{h} after cropping to multiples of {crop}; lower "
                        f"arch_options.levels or leave the method out of datasets.{dname}.methods"
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
                raise ConfigError(f"config key datasets.{name}.channels: only user datasets (with a path) take it")
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
            raise ConfigError(f"config key experiments.{name}: unknown experiment; known: {', '.join(EXPERIMENTS)}")
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
