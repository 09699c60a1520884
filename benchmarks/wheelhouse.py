"""What a GPU host without snakemake needs to run the pipeline offline, prepared here.

The GPU host (see docs/reproduction.md) has Python 3.12 with torch and the scientific stack
(:data:`HOST_PACKAGES`) but no snakemake, and cannot download anything. This script, run in the
development environment (which has all of dipkit's dependencies installed):

``prepare``
    downloads a wheel of every package that snakemake (and pytest, for the CUDA tests) needs and
    the host lacks -- the dependency closure of snakemake minus that of the host's packages, at the
    versions installed here -- for CPython ``--python`` on manylinux x86-64 into ``--wheels``
    (default ``.whl``), and copies the datasets of the reproduction (Set9, Set12, CBSD68) from the
    offline mirror into ``--data`` (default ``.mirror``, laid out as ``<dataset>/<file>``). Both
    folders are git-ignored; the device call carries them. Prints their sizes.
``check``
    the same wheel set for *this* Python, installed with ``pip --no-index --no-deps --target``
    into a scratch folder, then imported from a fresh virtual environment that sees only the
    host's packages (symlinks to this environment's copies of their dependency closure): proves
    the set is complete. Prints the environment's python and the install folder for a rehearsal.

On the host: ``python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site
.whl/*.whl`` and ``PYTHONPATH=/tmp/site`` (``benchmarks/paper_scale.sh`` does it).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: What the GPU host has installed (besides pip), as its lender describes it.
HOST_PACKAGES = [
    "torch",
    "numpy",
    "pandas",
    "pyarrow",
    "scipy",
    "scikit-image",
    "scikit-learn",
    "matplotlib",
    "pillow",
    "pyyaml",
    "jinja2",
    "pygments",
    "tabulate",
    "requests",
    "psutil",
]
#: What the device calls run that the host lacks.
NEEDED = ["snakemake", "pytest", "pytest-timeout"]
#: Left out: pulp is 16 MiB (solver binaries) used only by Snakemake's ILP scheduler; the device
#: calls run with ``--scheduler greedy``.
EXCLUDED = {"pulp"}
DATASETS = ["Set9", "Set12", "CBSD68"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(names: list[str]) -> dict[str, str]:
    """``{distribution: installed version}`` of ``names`` and everything they require (no extras),
    as installed in this environment."""
    seen: dict[str, str] = {}
    todo = list(names)
    while todo:
        req = todo.pop()
        if ";" in req:
            req, marker = req.split(";", 1)
            if "extra" in marker:
                continue
            from packaging.markers import Marker

            if not Marker(marker).evaluate():
                continue
        name = _key(re.split(r"[<>=!~\[ (]", req.strip(), maxsplit=1)[0])
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[name] = dist.version
        todo += dist.requires or []
    return seen


def missing() -> dict[str, str]:
    """What :data:`NEEDED` pulls in beyond the host's closure."""
    host = closure(HOST_PACKAGES)
    return {k: v for k, v in sorted(closure(NEEDED).items()) if k not in host and k not in EXCLUDED}


def download(dest: Path, python: str | None) -> list[Path]:
    """Wheels of :func:`missing` into ``dest`` (for CPython ``python`` on manylinux, or this Python)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, version in missing().items():
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            str(dest),
        ]
        if python:
            cmd += ["--python-version", python, "--implementation", "cp"]
            for plat in PLATFORMS:
                cmd += ["--platform", plat]
        if subprocess.run([*cmd, f"{name}=={version}"], check=False).returncode == 0:
            continue
        # no wheel on the index (an sdist only, e.g. connection-pool): build one here; it must be
        # pure Python to serve another interpreter
        before = set(dest.glob("*.whl"))
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dest), f"{name}=={version}"],
            check=True,
        )
        for built in set(dest.glob("*.whl")) - before:
            if not built.name.endswith("-py3-none-any.whl"):
                raise SystemExit(
                    f"{built.name}: built from source for this platform only; find a wheel of {name}"
                )
    return sorted(dest.glob("*.whl"))


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def copy_datasets(mirror: Path, dest: Path) -> None:
    for name in DATASETS:
        (dest / name).mkdir(parents=True, exist_ok=True)
        for f in sorted((mirror / name).iterdir()):
            if not (dest / name / f.name).exists():
                shutil.copyfile(f, dest / name / f.name)


def host_like_env(where: Path) -> Path:
    """A fresh venv seeing only the host's packages: symlinks to this environment's copies of
    their dependency closure. Returns its python."""
    site_dirs = {Path(p) for p in sys.path if p.endswith("site-packages")}
    farm = where / "host-site"
    farm.mkdir(parents=True, exist_ok=True)
    for name in closure(HOST_PACKAGES):
        dist = metadata.distribution(name)
        base = Path(dist.locate_file(""))
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            src = base / top
            if src.exists() and base in site_dirs and not (farm / top).exists():
                (farm / top).symlink_to(src)
    env = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(env)], check=True)  # with pip, as the host
    python = env / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "host.pth").write_text(str(farm) + "\n")
    return python


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["prepare", "check", "list"])
    p.add_argument("--python", default="3.12", help="prepare: the host's Python version")
    p.add_argument("--wheels", default=str(REPO / ".whl"))
    p.add_argument("--data", default=str(REPO / ".mirror"))
    p.add_argument(
        "--mirror", default=os.environ.get("DIPKIT_SHARED", str(REPO.parent / "shared")) + "/datasets"
    )
    p.add_argument("--scratch", default="/tmp/dipkit-hostlike", help="check: where the env and install go")
    args = p.parse_args()
    if args.mode == "list":
        for name, version in missing().items():
            print(f"{name}=={version}")
        return
    if args.mode == "prepare":
        wheels = download(Path(args.wheels), args.python)
        copy_datasets(Path(args.mirror), Path(args.data))
        w, d = _size(Path(args.wheels)), _size(Path(args.data))
        print(
            f"{len(wheels)} wheels in {args.wheels}: {w / 2**20:.1f} MiB; datasets in {args.data}: "
            f"{d / 2**20:.1f} MiB; together {(w + d) / 2**20:.1f} MiB (a device call carries at most 64 MiB)"
        )
        return
    scratch = Path(args.scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    wheels = download(scratch / "whl", None)
    site = scratch / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-index",
            "--no-deps",
            "--no-compile",
            "--target",
            str(site),
            *map(str, wheels),
        ],
        check=True,
    )
    python = host_like_env(scratch)
    env = {**os.environ, "PYTHONPATH": str(site)}
    bare = subprocess.run(
        [str(python), "-c", "import snakemake"], capture_output=True, text=True, check=False
    )
    assert bare.returncode != 0, "the host-like environment must not see snakemake on its own"
    probe = (
        "import snakemake, snakemake.cli, pytest, torch, pandas, pyarrow, skimage; "
        "from importlib.metadata import version; print('snakemake', version('snakemake'), 'pytest', "
        "version('pytest'), 'torch', torch.__version__)"
    )
    subprocess.run([str(python), "-c", probe], env=env, check=True)
    subprocess.run([str(python), "-m", "snakemake", "--version"], env=env, check=True)
    # a dry run of the reproduction config plans with the greedy scheduler (pulp is left out)
    with tempfile.TemporaryDirectory() as work:
        subprocess.run(
            [
                str(python),
                "-m",
                "snakemake",
                "-s",
                str(REPO / "Snakefile"),
                "-d",
                work,
                "--configfile",
                str(REPO / "configs/paper_table2_ours.yaml"),
                "-n",
                "-q",
                "--scheduler",
                "greedy",
            ],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    print(f"{len(wheels)} wheels complete; rehearse with PYTHON={python} WHEELS={scratch / 'whl'}")


if __name__ == "__main__":
    main()
