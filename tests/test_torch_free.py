"""The torch-free boundary at run time: every dipkit module that pyproject.toml's ruff rule TID253
does not exempt imports without loading torch, transitively too (ruff sees only each module's
own imports)."""

from __future__ import annotations

import fnmatch
import subprocess
import sys

import pytest
from conftest import REPO


def _exempt_globs() -> list[str]:
    tomllib = pytest.importorskip("tomllib")
    lint = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    return [glob for glob, rules in lint["per-file-ignores"].items() if "TID253" in rules]


def test_modules_outside_the_exemptions_do_not_load_torch():
    exempt = _exempt_globs()
    assert "dipkit/fit/*.py" in exempt and "dipkit/config.py" not in exempt
    modules = []
    for path in sorted((REPO / "dipkit").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if path.name == "__main__.py" or any(fnmatch.fnmatch(rel, glob) for glob in exempt):
            continue
        modules.append(rel[: -len(".py")].removesuffix("/__init__").replace("/", "."))
    assert {"dipkit.config", "dipkit.columns", "dipkit.cli", "dipkit.classifier.stage"} <= set(modules)
    code = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    importlib.import_module(name)\n"
        "    if 'torch' in sys.modules:\n"
        "        print(name); break\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *modules], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"importing {proc.stdout.strip()} loads torch"


def test_a_fit_job_does_not_load_scipy_stats():
    """What a fit job imports (the rule adapters) leaves out scikit-image's metrics, which load
    scipy.stats (about a second per job): fits score on their device; the reference metrics
    import scikit-image when they are called."""
    code = (
        "import sys, dipkit.fit_jobs, dipkit.metrics\n"
        "print(sorted(m for m in ('scipy.stats', 'skimage.metrics') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
