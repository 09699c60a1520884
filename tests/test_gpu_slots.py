import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from dipkit.fit import gpu_slots
from dipkit.fit.gpu_slots import claim_gpu, device_for_job


def test_concurrent_claims_get_distinct_gpus(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with claim_gpu(2, tmp_path) as a:
        with claim_gpu(2, tmp_path) as b:
            assert {a, b} == {0, 1}
            busy = claim_gpu(2, tmp_path, poll=0.05, timeout=0.2)
            with pytest.raises(TimeoutError, match="no free GPU among 2"), busy:
                pass
        with claim_gpu(2, tmp_path) as c:  # b released
            assert c == 1 - a


def test_lock_is_held_across_processes_and_freed_when_the_holder_dies(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys, time
            from dipkit.fit.gpu_slots import claim_gpu
            with claim_gpu(2, {str(tmp_path)!r}) as i:
                print(i, flush=True)
                time.sleep(60)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        taken = int(holder.stdout.readline())
        with claim_gpu(2, tmp_path) as mine:
            assert mine == 1 - taken
    finally:
        holder.kill()
        holder.wait()
    with claim_gpu(2, tmp_path) as a, claim_gpu(2, tmp_path) as b:  # both free again after the kill
        assert {a, b} == {0, 1}


def test_locks_follow_physical_gpus(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    monkeypatch.setenv("LOGNAME", "alice")
    with claim_gpu(2, tmp_path) as a:
        assert a == 0 and (tmp_path / "dipkit-alice-gpu-5.lock").exists()


def _hold(lock_dir, env, n_devices=1):
    """A process that holds a GPU slot until killed; returns it once the slot is taken."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import time
            from dipkit.fit.gpu_slots import claim_gpu
            with claim_gpu({n_devices}, {str(lock_dir)!r}) as i:
                print(i, flush=True)
                time.sleep(60)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
        **({"user": env["RUN_AS"]} if "RUN_AS" in env else {}),
    )
    assert holder.stdout.readline().strip() == "0"
    return holder


def test_each_user_has_their_own_slots(tmp_path, monkeypatch):
    """alice's running fit holds the only slot of GPU 0 for alice; bob still gets it."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    holder = _hold(tmp_path, {"LOGNAME": "alice"})
    try:
        monkeypatch.setenv("LOGNAME", "bob")
        with claim_gpu(1, tmp_path, timeout=5) as gpu:
            assert gpu == 0
        monkeypatch.setenv("LOGNAME", "alice")
        with pytest.raises(TimeoutError), claim_gpu(1, tmp_path, poll=0.05, timeout=0.3):
            pass
    finally:
        holder.kill()
        holder.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dipkit-alice-gpu-0.lock", "dipkit-bob-gpu-0.lock"]


def _interpreter_for(user: str) -> str | None:
    """A Python that ``user`` may run (the test's own may sit in root's home)."""
    for exe in (sys.executable, "/usr/bin/python3"):
        try:
            proc = subprocess.run(
                [exe, "-c", "pass"], check=False, user=user, capture_output=True, timeout=30
            )
            if proc.returncode == 0:
                return exe
        except (OSError, subprocess.SubprocessError):
            continue
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a process as another account")
def test_another_account_claims_beside_root(monkeypatch):
    """Real accounts: a fit of 'nobody' runs while root holds GPU 0, in a shared lock folder
    (sticky and world-writable like /tmp), where it could not open root's lock file."""
    exe = _interpreter_for("nobody")
    if exe is None:
        pytest.skip("no Python interpreter that the account 'nobody' may run")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    for var in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(var, raising=False)
    module = Path(gpu_slots.__file__)  # standard library only: loaded by path
    child = textwrap.dedent(f"""
        import importlib.util
        spec = importlib.util.spec_from_file_location("gpu_slots", {str(module)!r})
        slots = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(slots)
        with slots.claim_gpu(1, {{folder!r}}, timeout=5) as i:
            print(i)
    """)
    folder = Path(tempfile.mkdtemp(prefix="dipkit-locks-"))
    try:
        folder.chmod(0o1777)
        with claim_gpu(1, folder) as mine:
            assert mine == 0
            proc = subprocess.run(
                [exe, "-c", child.format(folder=str(folder))],
                check=False,
                capture_output=True,
                text=True,
                env={"PATH": os.environ.get("PATH", "")},
                user="nobody",
                timeout=60,
            )
            assert proc.returncode == 0 and proc.stdout.strip() == "0", proc.stderr
        names = sorted(p.name for p in folder.iterdir())
        assert names == ["dipkit-nobody-gpu-0.lock", "dipkit-root-gpu-0.lock"], names
    finally:
        shutil.rmtree(folder)


def test_cpu_jobs_need_no_lock():
    with device_for_job("cpu") as dev:
        assert dev == "cpu"


def test_several_fits_per_gpu_spread_over_the_gpus(tmp_path, monkeypatch):
    """With 2 slots per GPU, four fits take GPU 0, 1, 0, 1 and a fifth has to wait."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("LOGNAME", "alice")
    with claim_gpu(2, tmp_path, fits_per_gpu=2) as a, claim_gpu(2, tmp_path, fits_per_gpu=2) as b:
        assert (a, b) == (0, 1)
        with claim_gpu(2, tmp_path, fits_per_gpu=2) as c, claim_gpu(2, tmp_path, fits_per_gpu=2) as d:
            assert (c, d) == (0, 1)
            assert (tmp_path / "dipkit-alice-gpu-1-slot1.lock").exists()
            with (
                pytest.raises(TimeoutError, match=r"2 fit\(s\) each"),
                claim_gpu(2, tmp_path, poll=0.05, timeout=0.2, fits_per_gpu=2),
            ):
                pass
        with pytest.raises(ValueError, match="fits_per_gpu"), claim_gpu(2, tmp_path, fits_per_gpu=0):
            pass
