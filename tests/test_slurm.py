"""The tiny workflow through a real single-node Slurm cluster on localhost (marker ``slurm``).

Opt-in: it changes the system, so a plain ``pytest`` skips it; ``DIPKIT_TEST_SLURM=1`` turns it
on (``.ci/run`` does). The fixture then installs Debian's ``slurmctld slurmd slurm-client
munge`` when they are missing (root only), writes ``/etc/slurm/slurm.conf`` with one node and
a fake GPU (GRES on ``/dev/null``), starts munged, slurmctld and slurmd, and tears them down by
PID, removing its config. Results must equal a local run's bit for bit (CPU fits, same seed,
one thread), and the fit jobs must have asked Slurm for what their rule declares.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, run_snakemake

from dipkit.config import fitted_size, plan_methods
from dipkit.job_resources import fit_cost
from dipkit.methods import fit_spec

OPT_IN = "DIPKIT_TEST_SLURM"
pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(
        os.environ.get(OPT_IN) != "1",
        reason=f"changes the system (installs Slurm packages, writes /etc/slurm as root): "
        f"set {OPT_IN}=1 to run it (.ci/run does)",
    ),
]

CONF = Path("/etc/slurm/slurm.conf")
GRES = Path("/etc/slurm/gres.conf")
CONFIG = {
    "seed": 5,
    "datasets": {"Set12": {"images": ["01", "02"], "gaussian": [25]}},
    "methods": {"ours": {}},
    "fit": {"iterations": 3},
}


def _install():
    if shutil.which("slurmctld") and shutil.which("slurmd") and shutil.which("munged"):
        return
    if os.geteuid() != 0:
        pytest.skip("Slurm is not installed and installing it needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        [
            "apt-get",
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "slurmctld",
            "slurmd",
            "slurm-client",
            "munge",
        ],
        check=True,
        env=env,
    )


def _memory_mb() -> int:
    """The node's memory for Slurm: this machine's, less 10 % (jobs ask for what their rules
    declare, e.g. 6 GB for a fit on a GPU)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(int(line.split()[1]) / 1024 * 0.9)
    return 2000


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the test cluster runs its daemons as root")
    node = f"NodeName=localhost CPUs={os.cpu_count()} RealMemory={_memory_mb()} Gres=gpu:1 State=UNKNOWN"
    _install()
    if CONF.exists():
        pytest.skip(f"{CONF} exists: not touching a configured Slurm")
    state = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool", "log"):
        (state / sub).mkdir()
    CONF.parent.mkdir(parents=True, exist_ok=True)
    CONF.write_text(
        "\n".join(
            [
                "ClusterName=dipkitci",
                "SlurmctldHost=localhost",
                "SlurmUser=root",
                "AuthType=auth/munge",
                f"StateSaveLocation={state}/state",
                f"SlurmdSpoolDir={state}/spool",
                f"SlurmctldPidFile={state}/slurmctld.pid",
                f"SlurmdPidFile={state}/slurmd.pid",
                f"SlurmctldLogFile={state}/log/slurmctld.log",
                f"SlurmdLogFile={state}/log/slurmd.log",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core_Memory",
                "JobAcctGatherType=jobacct_gather/none",
                "AccountingStorageType=accounting_storage/none",
                "MpiDefault=none",
                "ReturnToService=2",
                "MinJobAge=600",
                "GresTypes=gpu",
                node,
                "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )
    )
    GRES.write_text("Name=gpu File=/dev/null\n")  # a fake GPU so gpu=1 jobs are scheduled
    key = Path("/etc/munge/munge.key")
    if not key.exists() or key.stat().st_size == 0:
        subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True)
    shutil.chown(key, "munge", "munge")
    key.chmod(0o400)
    for d in ("/run/munge", "/var/lib/munge", "/var/log/munge"):
        Path(d).mkdir(parents=True, exist_ok=True)
        shutil.chown(d, "munge", "munge")
    munge_pid = Path("/run/munge/munged.pid")
    started_munge = _pid(munge_pid) is None
    if started_munge:
        subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
    subprocess.run(["/usr/sbin/slurmctld"], check=True)
    subprocess.run(["/usr/sbin/slurmd", "-N", "localhost"], check=True)
    try:
        for _ in range(60):
            out = subprocess.run(
                ["sinfo", "-h", "-o", "%t"], check=False, capture_output=True, text=True
            ).stdout.split()
            if "idle" in out:
                break
            time.sleep(1)
        else:
            pytest.fail(
                f"the test cluster did not become idle: {(state / 'log/slurmctld.log').read_text()[-2000:]}"
            )
        yield state
    finally:
        for pidfile in (state / "slurmd.pid", state / "slurmctld.pid"):
            pid = _pid(pidfile)
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 15)
        time.sleep(2)
        if started_munge and _pid(munge_pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(_pid(munge_pid), 15)
        CONF.unlink(missing_ok=True)  # a leftover config slows every later snakemake call
        GRES.unlink(missing_ok=True)


def test_tiny_workflow_on_slurm_equals_a_local_run(slurm_cluster, tmp_path, mirror):
    if not shutil.which("sbatch"):
        pytest.fail("sbatch not found after installing Slurm")
    config = {**CONFIG, "mirror_dir": str(mirror)}
    local, remote = tmp_path / "local", tmp_path / "slurm"
    for work in (local, remote):
        work.mkdir()
        (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    run_snakemake(local, "--configfile", str(local / "config.yaml"), "--cores", "1")
    proc = subprocess.run(
        [
            "timeout",
            "-k",
            "10",
            "400",
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "-d",
            str(remote),
            "--configfile",
            str(remote / "config.yaml"),
            "--workflow-profile",
            str(REPO / "profiles/slurm-ci"),
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    # every non-local job went through the cluster: completed jobs stay listed (MinJobAge)
    listing = subprocess.run(
        ["squeue", "--states=all", "-h", "-o", "%i|%k|%T"], check=False, capture_output=True, text=True
    ).stdout
    done = [line for line in listing.splitlines() if line.endswith("|COMPLETED")]
    assert sum("rule_fit" in line for line in done) == 2, listing
    assert any("rule_prepare_dataset" in line for line in done), listing
    # each fit job asked Slurm for what the rule declares: on a cluster fit.device auto means a
    # GPU (the submit host has none), one CPU, memory and time estimated by dipkit.job_resources
    methods = plan_methods(config)
    spec = fit_spec(methods["ours"], "Set12", "01", "gaussian25", config["fit"])
    mem_mb, minutes = fit_cost(spec, fitted_size("Set12", "01", 32), on_gpu=True, fits_per_gpu=4)
    fits = [line.split("|")[0] for line in done if "rule_fit" in line]
    for job_id in fits:
        shown = subprocess.run(
            ["scontrol", "show", "job", "-o", job_id], check=False, capture_output=True, text=True
        ).stdout
        fields = dict(kv.split("=", 1) for kv in shown.split() if "=" in kv)
        assert fields.get("NumCPUs") == "1", shown
        assert fields.get("MinMemoryNode") == f"{mem_mb}M", shown
        assert fields.get("TimeLimit") == f"{minutes // 60:02d}:{minutes % 60:02d}:00", shown
        assert "gpu:1" in fields.get("TresPerJob", "") + fields.get("TresPerNode", ""), shown
    ours = pd.read_parquet(remote / "results/fits.parquet").sort_values("image").reset_index(drop=True)
    ref = pd.read_parquet(local / "results/fits.parquet").sort_values("image").reset_index(drop=True)
    assert ours[["image", "psnr_last", "ssim_last", "psnr_peak"]].equals(
        ref[["image", "psnr_last", "ssim_last", "psnr_peak"]]
    )
