import subprocess
import sys
import textwrap

import pytest

from dipkit.fit.gpu_slots import claim_gpu, device_for_job


def test_concurrent_claims_get_distinct_gpus(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with claim_gpu(2, tmp_path) as a:
        with claim_gpu(2, tmp_path) as b:
            assert {a, b} == {0, 1}
            with pytest.raises(TimeoutError, match="no free GPU among 2"):
                with claim_gpu(2, tmp_path, poll=0.05, timeout=0.2):
                    pass
        with claim_gpu(2, tmp_path) as c:  # b released
            assert c == 1 - a


def test_lock_is_held_across_processes_and_freed_when_the_holder_dies(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from dipkit.fit.gpu_slots import claim_gpu
            with claim_gpu(2, {str(tmp_path)!r}) as i:
                print(i, flush=True)
                time.sleep(60)
        """)],
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
    with claim_gpu(2, tmp_path) as a:
        assert a == 0 and (tmp_path / "dipkit-gpu-5.lock").exists()


def test_cpu_jobs_need_no_lock():
    with device_for_job("cpu") as dev:
        assert dev == "cpu"


def test_several_fits_per_gpu_spread_over_the_gpus(tmp_path, monkeypatch):
    """With 2 slots per GPU, four fits take GPU 0, 1, 0, 1 and a fifth has to wait."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with claim_gpu(2, tmp_path, fits_per_gpu=2) as a, claim_gpu(2, tmp_path, fits_per_gpu=2) as b:
        assert (a, b) == (0, 1)
        with claim_gpu(2, tmp_path, fits_per_gpu=2) as c, claim_gpu(2, tmp_path, fits_per_gpu=2) as d:
            assert (c, d) == (0, 1)
            assert (tmp_path / "dipkit-gpu-1-slot1.lock").exists()
            with pytest.raises(TimeoutError, match=r"2 fit\(s\) each"):
                with claim_gpu(2, tmp_path, poll=0.05, timeout=0.2, fits_per_gpu=2):
                    pass
        with pytest.raises(ValueError, match="fits_per_gpu"):
            with claim_gpu(2, tmp_path, fits_per_gpu=0):
                pass
