"""envs/dipkit.yaml (the conda environment of every rule) in step with pyproject.toml: the
same packages, each pinned to one version that pyproject.toml's requirement admits.

The environment itself is never solved here (conda-forge is out of reach; docs/running.md)."""

from __future__ import annotations

import re

import tomllib
import yaml
from conftest import REPO
from packaging.requirements import Requirement
from packaging.version import Version

#: conda-forge names of pip distributions, where they differ
CONDA_NAMES = {"torch": "pytorch", "matplotlib": "matplotlib-base"}
#: run outside the jobs' environment
NOT_IN_ENV = {"snakemake"}


def _env() -> dict[str, str | None]:
    """``{pip name: pinned version or None}`` of envs/dipkit.yaml, conda and pip entries."""
    doc = yaml.safe_load((REPO / "envs/dipkit.yaml").read_text())
    assert doc["channels"] == ["conda-forge", "nodefaults"]
    to_pip = {conda: pip for pip, conda in CONDA_NAMES.items()}
    out = {}
    for dep in doc["dependencies"]:
        if isinstance(dep, dict):
            for line in dep["pip"]:
                req = Requirement(line.split("#")[0].strip())
                pins = [s.version for s in req.specifier if s.operator == "=="]
                out[req.name.lower()] = pins[0] if pins else None
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(?:=+\s*([0-9][^=\s]*))?", dep.strip())
        assert m, f"envs/dipkit.yaml: cannot read the dependency {dep!r}"
        out[to_pip.get(m.group(1), m.group(1)).lower()] = m.group(2)
    return out


def _pyproject() -> tuple[dict[str, Requirement], str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = {Requirement(r).name.lower(): Requirement(r) for r in project["dependencies"]}
    return reqs, project["requires-python"]


def test_same_packages():
    env, (reqs, _) = _env(), _pyproject()
    assert set(env) - {"python", "pip"} == set(reqs) - NOT_IN_ENV


def test_every_package_is_pinned_to_a_version_pyproject_admits():
    env, (reqs, python) = _env(), _pyproject()
    for name, req in reqs.items():
        if name in NOT_IN_ENV:
            continue
        assert env[name], f"envs/dipkit.yaml: {name} is not pinned"
        pinned = Version(env[name])
        assert pinned in req.specifier, f"envs/dipkit.yaml pins {name} {pinned}; pyproject.toml wants {req}"
    from packaging.specifiers import SpecifierSet

    assert Version(env["python"]) in SpecifierSet(python), (env["python"], python)


def test_cuda_advice_is_the_conda_forge_way():
    text = (REPO / "envs/dipkit.yaml").read_text()
    assert "cuda-version" in text and "=cuda*" in text
    assert not re.search(r"^\s*-\s*pytorch-cuda", text, re.MULTILINE)  # a pytorch-channel package
