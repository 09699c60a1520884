"""Every command in the README runs verbatim from the root of a fresh copy of the repository.

The commands are read from ``README.md`` and ``docs/*.md`` themselves: every ```` ```bash ````
block, a line ending in ``\\`` joined with the next, comments dropped, ``&&`` chains split into
their parts. Each part must be a key of :data:`COMMANDS`, which says how it is run here:

* :class:`Install` -- ``pip install ...`` verbatim, in a throwaway virtual environment that
  sees exactly the distributions the install would bring (the dependency closure of
  ``pyproject.toml``, taken from this test environment's installed packages through a
  ``.pth`` file) and no package index: pip downloads nothing, and this environment's own
  editable install is left alone. A dependency missing from ``pyproject.toml`` is missing
  there, as on a fresh machine;
* :class:`DryRun` -- ``snakemake ...`` verbatim plus ``-n``: the plan only, its job count checked;
* :class:`Run` -- verbatim, for real: the tiny benchmark (offline, through the dataset mirror
  at ``../shared/datasets`` as the README says), its report, ``dipkit denoise`` on a photo
  made here, the linters;
* :class:`Check` -- a quick script, verbatim: it must succeed and print the figure the docs
  quote;
* :class:`ArgsOnly` -- a measurement that takes hours, needs a GPU or downloads: its arguments
  are parsed by the script's own parser, nothing is run (the speed benchmark's modes run in
  ``test_benchmark_fit_speed.py``);
* :class:`ShellScript` -- a shell script for a GPU host (or its rehearsal in a prepared scratch
  folder): ``bash -n`` parses it, and its mode and the variables the command sets must be ones
  the script reads;
* :class:`Collect` -- the test suite itself: collected, not run (it is what runs this).

A command in the docs that is not in :data:`COMMANDS` fails the test, and so does an entry of
:data:`COMMANDS` that the docs no longer hold. The copy holds the files ``git ls-files`` lists
(plus files not yet added, as a fresh clone of this work would), with ``../shared`` beside it
resolving to the dataset mirror.
"""

from __future__ import annotations

import importlib.metadata as md
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")
from conftest import REPO, SHARED, synthetic_image

pytestmark = pytest.mark.slow

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
DEFAULT_JOBS = 3329  # the default config's plan (test_workflow.py counts it rule by rule)
TINY_JOBS = 28  # tests/configs/tiny.yaml
TABLE2_OURS_JOBS = 254  # configs/paper_table2_ours.yaml (docs/reproduction.md)


#: The throwaway environments and the extras of pyproject.toml each installs.
ENVS = {"user": (), "dev": ("test",)}


@dataclass(frozen=True)
class Install:
    env: str  # "user" (pip install -e .) or "dev" (pip install -e '.[test]'): see ENVS


@dataclass(frozen=True)
class DryRun:
    env: str
    jobs: int


@dataclass(frozen=True)
class Run:
    env: str
    order: int  # real runs share one copy: the tiny benchmark before its report


@dataclass(frozen=True)
class Check:
    env: str
    prints: str  # the figure the docs quote, as the script prints it


@dataclass(frozen=True)
class ArgsOnly:
    env: str


@dataclass(frozen=True)
class ShellScript:
    env: str


@dataclass(frozen=True)
class Collect:
    env: str


#: Every command of the docs (canonical form: ``shlex.join`` of its words) and how it is run.
COMMANDS = {
    "pip install torch==2.13.0 -e .": Install("user"),
    "pip install torch==2.13.0 -e '.[test]'": Install("dev"),
    "snakemake --cores all": DryRun("user", DEFAULT_JOBS),
    "snakemake --cores all --config mirror_dir=../shared/datasets": DryRun("user", DEFAULT_JOBS),
    "snakemake -n": DryRun("dev", DEFAULT_JOBS),
    "snakemake --cores all --configfile tests/configs/tiny.yaml": DryRun("user", TINY_JOBS),
    "snakemake --cores all --configfile tests/configs/tiny.yaml --config mirror_dir=../shared/datasets": Run(
        "user", 1
    ),
    "snakemake --configfile tests/configs/tiny.yaml --report results/report.html": Run("user", 2),
    "dipkit denoise photo.png -o photo_denoised.png": Run("user", 3),
    "snakemake --lint": Run("dev", 4),
    "snakefmt --check Snakefile rules": Run("dev", 5),
    "ruff check .": Run("dev", 6),
    "ruff format --check .": Run("dev", 7),
    "python -m pytest": Collect("dev"),
    "python benchmarks/fit_speed.py per-fit --sizes 256 512": ArgsOnly("dev"),
    "python benchmarks/fit_speed.py throughput --method ours64": ArgsOnly("dev"),
    "python benchmarks/fit_speed.py throughput --method ours64 --batch 8": ArgsOnly("dev"),
    "python benchmarks/fit_speed.py batched --method ours64": ArgsOnly("dev"),
    "python benchmarks/fit_speed.py full --methods ours64 --size 512": ArgsOnly("dev"),
    "python benchmarks/fit_speed.py precision --images a.png b.png": ArgsOnly("dev"),
    "python benchmarks/fit_speed.py compile --method ours32": ArgsOnly("dev"),
    # docs/cuda-graphs.md: the CUDA-graph rows (a GPU)
    "python benchmarks/fit_speed.py per-fit --cuda-graphs --methods ours32 --sizes 256 512": ArgsOnly("dev"),
    "python benchmarks/fit_speed.py full --cuda-graphs --methods ours64 --size 512": ArgsOnly("dev"),
    "python benchmarks/fit_speed.py batched --cuda-graphs --method ours64 --size 256 --batches 4 8": ArgsOnly(
        "dev"
    ),
    # docs/gpu-hours.md: the GPU-hours the page quotes
    "python benchmarks/gpu_hours.py": Check("user", "| **total** | **2,949** | | **61.40** |"),
    "python benchmarks/gpu_hours.py --configfile configs/paper_table2_ours.yaml": Check(
        "user", "| **total** | **178** | | **0.58** |"
    ),
    "python benchmarks/gpu_hours.py --datasets Set9 Set12 CBSD68 --noise-kind gaussian "
    "--methods dip deep_decoder conv_decoder nas_dip isnas_dip ours": Check(
        "user", "| **total** | **1,068** | | **30.94** |"
    ),
    # docs/reproduction.md: the GPU-host run, its publisher and its wheels (downloads)
    "snakemake --cores all --configfile configs/paper_table2_ours.yaml": DryRun("user", TABLE2_OURS_JOBS),
    "python benchmarks/publish_table2.py --config configs/paper_table2_ours.yaml --fits results/fits.parquet "
    "--out docs/reproduced": ArgsOnly("dev"),
    "python benchmarks/wheelhouse.py prepare": ArgsOnly("dev"),
    "python benchmarks/wheelhouse.py check": ArgsOnly("dev"),
    # docs/early-stopping.md: the study (hours of fits: parsed; tests/test_early_stopping_study.py runs it small)
    "python benchmarks/early_stopping.py run --out docs/early-stopping/fits.csv --methods ours --sizes 128 "
    "--sigmas 25 --signals results/early_stopping/signals": ArgsOnly("dev"),
    "python benchmarks/early_stopping.py summary docs/early-stopping/fits.csv --out docs/early-stopping/summary.csv": (
        ArgsOnly("dev")
    ),
    "python benchmarks/early_stopping.py tune results/early_stopping/signals --factor 1.4 1.5 1.6": ArgsOnly(
        "dev"
    ),
    "python benchmarks/early_stopping.py run --out docs/early-stopping/fits.csv --device cuda --workers 4 "
    "--sizes 128 256 512 --signals results/early_stopping/signals": ArgsOnly("dev"),
    "DEVICE=cpu QUICK=1 PYTHON=/tmp/dipkit-hostlike/venv/bin/python WHEELS=/tmp/dipkit-hostlike/whl "
    "OUT=/tmp/rehearsal bash benchmarks/paper_scale.sh table2": ShellScript("dev"),
}


# --------------------------------------------------------------------------- reading the docs


def doc_commands(text: str) -> list[str]:
    """The commands of every ```` ```bash ```` block of a Markdown text, canonical form."""
    out = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE):
        for line in re.sub(r"\\\n", " ", block).splitlines():
            words = shlex.split(line, comments=True)
            part: list[str] = []
            for word in [*words, "&&"]:
                if word == "&&":
                    if part:
                        out.append(shlex.join(part))
                    part = []
                else:
                    part.append(word)
    return out


def all_doc_commands() -> dict[str, list[str]]:
    """``{command: [doc files holding it]}`` over README.md and docs/*.md."""
    found: dict[str, list[str]] = {}
    for path in DOCS:
        for cmd in doc_commands(path.read_text(encoding="utf-8")):
            found.setdefault(cmd, []).append(path.name)
    return found


def test_doc_commands_are_parsed_as_a_shell_would():
    text = (
        "```bash\npip install -e '.[test]' && python -m pytest   # comment\nsnakemake --cores 1 \\\n"
        "  && snakemake --report r.html\n```\n```yaml\nnot: a command\n```\n"
    )
    assert doc_commands(text) == [
        "pip install -e '.[test]'",
        "python -m pytest",
        "snakemake --cores 1",
        "snakemake --report r.html",
    ]


def test_every_doc_command_is_classified():
    found = all_doc_commands()
    unclassified = {c: where for c, where in found.items() if c not in COMMANDS}
    assert not unclassified, (
        "commands in the docs that tests/test_readme.py does not run: add each to COMMANDS "
        f"(how it is run or checked): {unclassified}"
    )
    stale = [c for c in COMMANDS if c not in found]
    assert not stale, f"COMMANDS entries no longer in README.md or docs/*.md: {stale}"


# --------------------------------------------------------------------------- the fresh copy


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(requirements: list[str]) -> dict[str, md.Distribution]:
    """The installed distributions ``requirements`` bring, with their own dependencies."""
    from packaging.requirements import Requirement

    dists: dict[str, md.Distribution] = {}
    seen: set[tuple[str, frozenset]] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        key = (_norm(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            pytest.fail(f"{req} is not installed in the test environment: pip install -e '.[test]' first")
        dists[key[0]] = dist
        for text in dist.requires or []:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in (req.extras or {""})):
                todo.append(sub)
    return dists


def _make_env(root: Path, requirements: list[str]) -> Path:
    """A virtual environment at ``root`` that sees only the distributions of ``requirements``
    (symlinked into a folder its ``.pth`` file names), with their console scripts and native
    executables."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    view = root / "view"
    view.mkdir()
    dists = _closure(requirements)
    for dist in dists.values():
        base = Path(dist.locate_file(""))
        for top in {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}:
            if (base / top).exists() and not (view / top).exists():
                (view / top).symlink_to(base / top)
    site = next((root / "lib").glob("python3*/site-packages"))
    (site / "readme-test-view.pth").write_text(f"{view}\n")
    for dist in dists.values():
        for ep in dist.entry_points.select(group="console_scripts"):
            module, _, attr = ep.value.partition(":")
            script = root / "bin" / ep.name
            script.write_text(
                f"#!{root}/bin/python\nimport sys\nfrom importlib import import_module\n"
                f"obj = import_module({module!r})\nfor a in {attr.split('.')!r}:\n    obj = getattr(obj, a)\n"
                "sys.exit(obj())\n"
            )
            script.chmod(0o755)
        for file in dist.files or []:  # native executables a wheel installs (ruff), linked as they are
            path = Path(dist.locate_file(file)).resolve()
            if Path(file).parent.name == "bin" and path.is_file() and not (root / "bin" / path.name).exists():
                with path.open("rb") as fh:
                    if fh.read(4) == b"\x7fELF":
                        (root / "bin" / path.name).symlink_to(path)
    return root


@dataclass
class Clone:
    root: Path  # the copy of the repository: commands run here
    envs: dict[str, Path]
    base_env: dict[str, str]
    installs: dict[str, subprocess.CompletedProcess]

    def env(self, name: str) -> dict[str, str]:
        venv = self.envs[name]
        return {**self.base_env, "PATH": f"{venv}/bin:/usr/bin:/bin", "VIRTUAL_ENV": str(venv)}

    def run(self, command: str, env: str, timeout: int = 1500) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", "-c", command],
            cwd=self.root,
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _repository_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return sorted({*listed, "config.yaml"})


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Clone:
    """A fresh copy of the repository with ``../shared`` beside it, and the README's installs done
    in two throwaway environments: ``user`` (``-e .``) and ``dev`` (``-e '.[test]'``)."""
    if not (SHARED / "datasets").is_dir():
        pytest.skip(f"dataset mirror not found at {SHARED} (set DIPKIT_SHARED)")
    top = tmp_path_factory.mktemp("fresh")
    root = top / "dipkit"
    for name in _repository_files():
        src = REPO / name
        if src.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / name)
    (top / "shared").symlink_to(SHARED.resolve())
    project = tomllib.loads((root / "pyproject.toml").read_text())
    build = project["build-system"]["requires"] + ["pip"]
    main = project["project"]["dependencies"]
    envs = {}
    for name, extras in ENVS.items():
        reqs = main + [r for e in extras for r in project["project"]["optional-dependencies"][e]]
        envs[name] = _make_env(top / f"venv-{name}", build + reqs)
    home = top / "home"
    home.mkdir()
    base_env = {
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "LANG": "C.UTF-8",
        "TMPDIR": str(top),
        "PIP_NO_INDEX": "1",
        "PIP_NO_BUILD_ISOLATION": "0",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_CACHE_DIR": str(home / "pip-cache"),
    }
    c = Clone(root, envs, base_env, {})
    for command, how in COMMANDS.items():
        if isinstance(how, Install):
            c.installs[how.env] = c.run(command, how.env, timeout=600)
    return c


def _out(proc: subprocess.CompletedProcess) -> str:
    return (proc.stdout + proc.stderr)[-4000:]


def _present(kind) -> list[str]:
    found = all_doc_commands()
    return [c for c, how in COMMANDS.items() if isinstance(how, kind) and c in found]


# --------------------------------------------------------------------------- the commands


@pytest.mark.parametrize("command", _present(Install))
def test_install_brings_everything_offline(clone, command):
    """The install finds every dependency installed (nothing to download: there is no index)
    and puts the ``dipkit`` command of this copy on the PATH."""
    how = COMMANDS[command]
    proc = clone.installs[how.env]
    assert proc.returncode == 0, _out(proc)
    where = clone.run("python -c 'import dipkit; print(dipkit.__file__)' && dipkit --help", how.env)
    assert where.returncode == 0, _out(where)
    assert where.stdout.startswith(str(clone.root / "dipkit")), where.stdout


@pytest.mark.parametrize("command", _present(DryRun))
def test_dry_run_plans_the_documented_jobs(clone, command):
    how = COMMANDS[command]
    proc = clone.run(command if " -n" in f" {command}" else f"{command} -n", how.env, timeout=600)
    assert proc.returncode == 0, _out(proc)
    total = re.search(r"^total\s+(\d+)\s*$", proc.stdout + proc.stderr, flags=re.MULTILINE)
    assert total and int(total.group(1)) == how.jobs, _out(proc)


def _photo(root: Path) -> np.ndarray:
    """photo.png: a 48x48 RGB picture with sigma 25 noise; returns the clean image."""
    from PIL import Image

    clean = synthetic_image(48, 48, 3, seed=5).astype(np.float64)
    noisy = np.clip(clean + np.random.default_rng(5).normal(0, 25 / 255, clean.shape), 0, 1)
    Image.fromarray((noisy * 255).round().astype(np.uint8)).save(root / "photo.png")
    return clean


@pytest.mark.timeout(3600)
def test_real_runs_do_what_the_docs_say(clone):
    """In the docs' order of dependence: the tiny benchmark offline (27 jobs, its tables), its
    report (one HTML file), ``dipkit denoise`` on a photo (less noise than before), the linters."""
    import pandas as pd
    from PIL import Image
    from skimage.metrics import peak_signal_noise_ratio

    commands = sorted(_present(Run), key=lambda c: COMMANDS[c].order)
    assert commands, "no real run in the docs"
    for command in commands:
        clean = _photo(clone.root) if command.startswith("dipkit denoise") else None
        proc = clone.run(command, COMMANDS[command].env)
        assert proc.returncode == 0, f"{command}\n{_out(proc)}"
        if "--configfile tests/configs/tiny.yaml --config mirror_dir" in command:
            fits = pd.read_parquet(clone.root / "results/fits.parquet")
            assert len(fits) == 9 and set(fits.method) == {"ours", "deep_decoder", "bm3d"}
            for table in ("table2", "table3", "table4", "noisy_baseline"):
                assert (clone.root / f"results/tables/{table}.md").is_file()
            assert "Downloading" not in proc.stdout + proc.stderr
        elif "--report" in command:
            html = (clone.root / "results/report.html").read_text(errors="replace")
            assert "Table 2" in html and len(html) > 100_000
        elif command.startswith("dipkit denoise"):
            out = np.asarray(Image.open(clone.root / "photo_denoised.png"), np.float64) / 255.0
            noisy = np.asarray(Image.open(clone.root / "photo.png"), np.float64) / 255.0
            assert out.shape == clean.shape
            assert peak_signal_noise_ratio(clean, out, data_range=1) > peak_signal_noise_ratio(
                clean, noisy, data_range=1
            )


def test_measurements_take_their_documented_arguments(clone):
    """Each benchmark command of the docs, parsed by the script's own argument parser (argparse
    stops the script right after parsing; an unknown mode or option fails)."""
    commands = _present(ArgsOnly)
    harness = (
        "import argparse, runpy, shlex, sys\n"
        "def stop(self, args=None, namespace=None):\n"
        "    ns = parse(self, args, namespace)\n"
        "    raise SystemExit(0)\n"
        "parse = argparse.ArgumentParser.parse_args\n"
        "argparse.ArgumentParser.parse_args = stop\n"
        "for line in sys.stdin.read().splitlines():\n"
        "    words = shlex.split(line)\n"
        "    sys.argv = words[1:]\n"
        "    try:\n"
        "        runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "    except SystemExit as e:\n"
        "        if e.code not in (0, None):\n"
        "            sys.exit(f'{line}: exit {e.code}')\n"
        "    else:\n"
        "        sys.exit(f'{line}: its argument parser never ran')\n"
        "    print('parsed:', line)\n"
    )
    assert all(shlex.split(c)[0] == "python" for c in commands)
    env = clone.env(COMMANDS[commands[0]].env)
    proc = subprocess.run(
        ["python", "-c", harness],
        input="\n".join(commands),
        cwd=clone.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, _out(proc)
    assert proc.stdout.count("parsed:") == len(commands)


@pytest.mark.parametrize("command", _present(Check))
def test_quick_scripts_print_what_the_docs_quote(clone, command):
    proc = clone.run(command, COMMANDS[command].env, timeout=600)
    assert proc.returncode == 0, _out(proc)
    assert COMMANDS[command].prints in proc.stdout, _out(proc)


def test_shell_scripts_are_parsed_with_their_documented_modes():
    """Each shell-script command of the docs: the script parses (``bash -n``), its arguments are
    modes of its ``case`` statement, and each ``VAR=`` the command sets is a variable it reads."""
    commands = _present(ShellScript)
    for command in commands:
        words = shlex.split(command)
        assigned = [w.split("=", 1)[0] for w in words if re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", w)]
        shell, script, *modes = words[len(assigned) :]
        assert shell == "bash", command
        text = (REPO / script).read_text()
        proc = subprocess.run(["bash", "-n", str(REPO / script)], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, _out(proc)
        for mode in modes:
            case = re.search(rf"^\s*{re.escape(mode)}\)", text, flags=re.MULTILINE)
            assert case, f"{command}: {script} has no mode {mode}"
        for name in assigned:
            assert re.search(rf"\$\{{?{name}\b", text), f"{command}: {script} does not read {name}"


@pytest.mark.parametrize("command", _present(Collect))
def test_the_test_suite_is_collected(clone, command):
    proc = clone.run(f"{command} --collect-only -q -p no:cacheprovider", COMMANDS[command].env, timeout=600)
    assert proc.returncode == 0, _out(proc)
    collected = re.search(r"(\d+) tests? collected", proc.stdout)
    assert collected and int(collected.group(1)) > 100, _out(proc)
