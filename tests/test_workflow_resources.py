"""Resources with the real snakemake: a CPU-only host runs as many fits as --cores allows,
GPU slots follow fit.fits_per_gpu, the planned resources of GPU and CPU configs, and the
job-cost table of a run (in the report)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO

from dipkit.columns import JOB_COST_TABLE, JOB_COSTS, columns_markdown
from dipkit.config import fitted_size, plan_methods
from dipkit.job_resources import fit_cost
from dipkit.methods import fit_spec

SIX = ["01", "02", "03", "04", "05", "06"]  # six 256x256 images: six fits ready at once


def _snakemake(work: Path, *args: str, env: dict | None = None, check: bool = True) -> str:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work), *args]
    proc = subprocess.run(
        cmd, check=False, capture_output=True, text=True, timeout=900, env={**os.environ, **(env or {})}
    )
    out = proc.stdout + proc.stderr
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}): {' '.join(cmd)}\n{out}")
    return out


def _config(work: Path, mirror: Path | None = None, **fit) -> Path:
    cfg = {
        "seed": 3,
        "datasets": {"Set12": {"images": SIX, "gaussian": [25]}},
        "methods": {"ours": {}},
        "fit": {"iterations": 2, **fit},
        **({"mirror_dir": str(mirror)} if mirror else {}),
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _intervals(work: Path, rule: str) -> list[tuple[float, float]]:
    """[start, end] of every job of ``rule``, from its benchmark record: the file is written
    when the job ends, and holds the job's wall time."""
    out = []
    for tsv in (work / "results/benchmarks" / rule).rglob("*.tsv"):
        seconds = float(pd.read_csv(tsv, sep="\t")["s"].iloc[0])
        end = tsv.stat().st_mtime
        out.append((end - seconds, end))
    return out


def _most_at_once(intervals: list[tuple[float, float]], slack: float = 0.05) -> int:
    """Most intervals that overlap by more than ``slack`` seconds (the records round to 10 ms;
    a job that replaces a finished one starts after the finished one's record was written)."""
    events = sorted([(s + slack, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def _fake_gpu_path(folder: Path) -> str:
    """A PATH whose ``nvidia-smi -L`` lists one GPU (torch still finds no CUDA here, so the
    fits themselves run on the CPU; the plan is what is tested)."""
    folder.mkdir()
    exe = folder / "nvidia-smi"
    exe.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA Fake (UUID: GPU-0000)'\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory, mirror):
    """Six one-iteration-pair fits on a CPU-only plan with --cores 6 (old cap: four at once)."""
    work = tmp_path_factory.mktemp("cpu_run")
    cfg = _config(work, mirror, device="cpu", cpu_threads=1)
    out = _snakemake(work, "--configfile", str(cfg), "--cores", "6")
    return work, cfg, out


def test_cpu_only_run_runs_as_many_fits_as_cores(cpu_run):
    work, _, _ = cpu_run
    spans = _intervals(work, "fit")
    assert len(spans) == 6
    at_once = _most_at_once(spans)
    print(f"fits running at once: {at_once} of 6 (--cores 6)")
    assert at_once > 4, spans  # the profile's old gpu: 4 capped every host at four


def test_gpu_slots_follow_fits_per_gpu(tmp_path, mirror):
    """One (fake) GPU and fit.fits_per_gpu 2: the workflow itself limits the fits to two at
    once, with no --resources and no profile setting."""
    cfg = _config(tmp_path, mirror, device="auto", fits_per_gpu=2)
    env = {"PATH": _fake_gpu_path(tmp_path / "bin"), "CUDA_VISIBLE_DEVICES": "0"}
    _snakemake(tmp_path, "--configfile", str(cfg), "--cores", "6", env=env)
    log = next((tmp_path / ".snakemake/log").glob("*.snakemake.log")).read_text()
    assert re.search(r"Provided resources: .*gpu=(Resource\(\"gpu\", )?2\b", log), log[:3000]
    spans = _intervals(tmp_path, "fit")
    assert len(spans) == 6
    assert _most_at_once(spans) == 2, spans


def _jobs(dry_run: str) -> list[dict]:
    """Each job of a dry run's log: rule, wildcards, threads and resources."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", dry_run):
        m = re.match(r"(?:local)?rule (\w+):", block)
        if not m:
            continue
        job = {"rule": m.group(1), "threads": 1, "resources": {}}
        for line in block.splitlines():
            line = line.strip()
            if line.startswith("wildcards:"):
                job["wildcards"] = dict(kv.split("=", 1) for kv in line[len("wildcards: ") :].split(", "))
            elif line.startswith("threads:"):
                job["threads"] = int(line.split()[1])
            elif line.startswith("resources:"):
                job["resources"] = dict(kv.split("=", 1) for kv in line[len("resources: ") :].split(", "))
        jobs.append(job)
    return jobs


def test_planned_resources_of_a_gpu_config(tmp_path):
    """fit.device cuda planned for a cluster (--jobs) on a host without a GPU (a submit host):
    fits take a GPU slot and one thread, BM3D takes none, and mem_mb / runtime follow
    dipkit.job_resources."""
    cfg = {
        "datasets": {"Set9": {"images": ["image_House256rgb", "image_Baboon512rgb"], "gaussian": [25]}},
        "methods": {"ours": {}, "bm3d": {}},
        "fit": {"device": "cuda", "fits_per_gpu": 3},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    jobs = _jobs(_snakemake(tmp_path, "--configfile", str(tmp_path / "config.yaml"), "-n", "--jobs", "8"))
    fits = [j for j in jobs if j["rule"] == "fit"]
    assert len(fits) == 4
    methods = plan_methods(cfg)
    for job in fits:
        wc = job["wildcards"]
        spec = fit_spec(methods[wc["method"]], wc["dataset"], wc["image"], wc["noise"], {"iterations": None})
        classical = wc["method"] == "bm3d"
        size = fitted_size("Set9", wc["image"], 32)
        mem, minutes = fit_cost(spec, size, on_gpu=not classical, fits_per_gpu=3)
        assert job["threads"] == 1
        assert job["resources"]["gpu"] == ("0" if classical else "1"), job
        assert (int(job["resources"]["mem_mb"]), int(job["resources"]["runtime"])) == (mem, minutes), job
    ours = {j["wildcards"]["image"]: j for j in fits if j["wildcards"]["method"] == "ours"}
    big, small = ours["image_Baboon512rgb"], ours["image_House256rgb"]
    assert int(big["resources"]["mem_mb"]) > int(small["resources"]["mem_mb"])
    prepare = next(j for j in jobs if j["rule"] == "prepare_dataset")
    assert prepare["resources"]["mem_mb"] == "3000" and prepare["resources"]["runtime"] == "15"
    assert "gpu" not in prepare["resources"]


def test_planned_resources_of_a_cpu_config(tmp_path):
    """fit.device cpu, run locally: no GPU slot, fit.cpu_threads threads (Snakemake threads,
    which the SLURM plugin turns into --cpus-per-task); mem_mb only under a memory limit (the
    only use a local run has for it), runtime not at all."""
    cfg = {
        "datasets": {"Set12": {"images": ["01"], "gaussian": [25]}},
        "methods": {"ours": {}},
        "fit": {"device": "cpu", "cpu_threads": 4},
    }
    config = str(tmp_path / "config.yaml")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    fit = next(
        j
        for j in _jobs(_snakemake(tmp_path, "--configfile", config, "-n", "--cores", "8"))
        if j["rule"] == "fit"
    )
    assert fit["threads"] == 4 and not {"gpu", "mem_mb", "runtime"} & set(fit["resources"])
    limit = ("--resources", "mem_mb=64000")
    limited = _jobs(_snakemake(tmp_path, "--configfile", config, "-n", "--cores", "8", *limit))
    fit = next(j for j in limited if j["rule"] == "fit")
    spec = fit_spec(plan_methods(cfg)["ours"], "Set12", "01", "gaussian25", {"iterations": None})
    assert int(fit["resources"]["mem_mb"]) == fit_cost(spec, (256, 256), on_gpu=False, threads=4)[0]
    assert "runtime" not in fit["resources"]


def test_auto_fits_ask_for_a_gpu_on_a_cluster(tmp_path):
    """fit.device auto through profiles/slurm on this GPU-less host (a submit host): the fits ask
    for a GPU (the compute nodes have them), the cheap stages for none; partitions come from the
    profile, everything else from the rules."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    cfg = {"datasets": {"Set12": {"images": ["01"], "gaussian": [25]}}, "methods": {"ours": {}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = _snakemake(
        tmp_path,
        "--configfile",
        str(tmp_path / "config.yaml"),
        "-n",
        "--workflow-profile",
        str(REPO / "profiles/slurm"),
    )
    jobs = _jobs(out)
    fit = next(j for j in jobs if j["rule"] == "fit")
    prepare = next(j for j in jobs if j["rule"] == "prepare_dataset")
    assert fit["resources"]["gpu"] == "1" and fit["threads"] == 1
    assert fit["resources"]["slurm_partition"] == "gpu"
    assert "gpu" not in prepare["resources"] and prepare["resources"]["slurm_partition"] == "cpu"
    assert int(fit["resources"]["mem_mb"]) >= 4000  # the host memory of a CUDA process


def test_every_rule_but_the_targets_is_benchmarked():
    """benchmark: on every rule that runs something, so the job-cost table sees every job."""
    for smk in (REPO / "rules").glob("*.smk"):
        for name, body in re.findall(r"^rule (\w+):\n((?:    .*\n|\n)*)", smk.read_text(), re.MULTILINE):
            if name == "job_costs":
                continue
            assert f"results/benchmarks/{name}" in body, f"{smk.name}: rule {name} has no benchmark"


def test_job_cost_table_of_the_run(cpu_run):
    work, cfg, out = cpu_run
    costs = pd.read_parquet(work / "results/job_costs.parquet")
    assert list(costs.columns) == [c.name for c in JOB_COSTS]
    # one record per job of the run (all but the two targets)
    ran = re.findall(r"^(?:local)?rule (\w+):", out, re.MULTILINE)
    expected = pd.Series([r for r in ran if r not in ("all", "job_costs")]).value_counts().sort_index()
    assert costs["rule"].value_counts().sort_index().to_dict() == expected.to_dict()
    fits = costs[costs["rule"] == "fit"]
    assert sorted(fits["job"]) == [f"Set12/gaussian25/ours/{i}" for i in SIX]
    assert (fits["wall_s"] > 0).all()
    table = pd.read_csv(work / "results/tables/job_costs.csv")
    assert list(table.columns) == [c.name for c in JOB_COST_TABLE]
    assert table["rule"].iloc[-1] == "total" and table["jobs"].iloc[-1] == len(costs)
    assert table.set_index("rule").loc["fit", "jobs"] == 6
    assert table["rule"].iloc[0] == "download_dataset"  # in the workflow's order
    md = (work / "results/tables/job_costs.md").read_text()
    assert "| fit | 6 |" in md
    report = work / "results/report.html"
    _snakemake(work, "--configfile", str(cfg), "--report", str(report))
    html = report.read_text(errors="replace")
    assert "job_costs.csv" in html and "What this run cost, per rule" in html  # the table and its caption


def test_job_cost_schemas_are_documented():
    page = (REPO / "docs/running.md").read_text()
    assert columns_markdown(JOB_COSTS) in page
    assert columns_markdown(JOB_COST_TABLE) in page
