"""``dipkit denoise`` and ``dipkit --help``: the real command in a subprocess, on CPU."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, synthetic_image
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio


def dipkit(*args: str, cache=None, timeout=600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if cache is not None:
        env["DIPKIT_CACHE_DIR"] = str(cache)
    return subprocess.run(
        [sys.executable, "-m", "dipkit", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def _noisy_pair(tmp_path, h, w, c, sigma=25, seed=0):
    clean = synthetic_image(h, w, c, seed=seed).astype(np.float64)
    noisy = np.clip(clean + np.random.default_rng(seed + 1).normal(0, sigma / 255, clean.shape), 0, 1)
    u8 = (noisy * 255).round().astype(np.uint8)
    path = tmp_path / "noisy.png"
    Image.fromarray(u8[:, :, 0] if c == 1 else u8).save(path)
    return clean, u8 / 255.0, path


def test_help_is_clear():
    top = dipkit("--help")
    assert top.returncode == 0 and "denoise" in top.stdout and "snakemake --cores all" in top.stdout
    sub = dipkit("denoise", "--help")
    assert sub.returncode == 0
    for option in ("--sigma", "--method", "--iterations", "--width", "--seed", "--device", "-o OUTPUT"):
        assert option in sub.stdout


def test_denoise_improves_psnr_with_a_predicted_width(tmp_path):
    """The paper's method end to end: estimated sigma, width from the cached classifier, fit."""
    clean, noisy, path = _noisy_pair(tmp_path, 64, 64, 3)
    out = tmp_path / "out.png"
    cache = tmp_path / "cache"
    proc = dipkit("denoise", str(path), "-o", str(out), "--iterations", "250", cache=cache)
    assert proc.returncode == 0, proc.stderr
    assert "width" in proc.stderr and "(predicted (32:" in proc.stderr and "sigma" in proc.stderr
    assert "250/250 loss" in proc.stderr  # the progress bar reached the end
    assert list(cache.glob("width_classifier-*.pkl"))  # trained once, cached
    den = np.asarray(Image.open(out), dtype=np.float64) / 255.0
    assert den.shape == clean.shape
    before = peak_signal_noise_ratio(clean, noisy, data_range=1.0)
    after = peak_signal_noise_ratio(clean, den, data_range=1.0)
    assert after > before + 1.0, (before, after)


def test_any_size_grayscale_comes_back_at_its_size(tmp_path):
    _, _, path = _noisy_pair(tmp_path, 37, 50, 1)
    out = tmp_path / "out.tif"
    proc = dipkit(
        "denoise",
        str(path),
        "-o",
        str(out),
        "--width",
        "16",
        "--sigma",
        "25",
        "--iterations",
        "20",
        "--seed",
        "3",
        "-q",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    img = Image.open(out)
    assert img.mode == "L" and img.size == (50, 37)


#: ``dipkit denoise`` given bad input: case -> what stderr says (exit status 2, nothing written).
#: Each case is a row of the table in docs/failures.md (test_bad_inputs.py checks).
CLI_CASES = {
    "denoise-missing-file": "in.png: no such file",
    "denoise-not-an-image": "in.png: not a readable image",
    "denoise-transparency": "in.png: image has transparency",
    "denoise-too-small": "image of 5x4 pixels is too small (at least 8x8)",
    "denoise-unknown-format": "-o OUT: unknown image format '.xyz' (use .png, .tif or .jpg)",
    "denoise-iterations-zero": "--iterations must be >= 1",
    "denoise-sigma-infinite": "--sigma must be a finite number > 0 (the noise's standard deviation, 0-255",
    "denoise-unknown-method": "--method foo: unknown method; choose one of dip, deep_decoder, conv_decoder,",
    "denoise-classical-method": "--method bm3d: a classical method, not a DIP network dipkit fits",
    "denoise-width-without-option": "--width 64: method dip has no width option (methods with one: ours,",
    "denoise-bad-device": "--device gpu: unknown device 'gpu'",
    "denoise-output-is-input": "-o OUT is the input image; choose another name, or add --force to overwrite",
    "denoise-output-folder-is-a-file": "-o OUT: IN is a file, not a folder",
    "denoise-output-is-a-folder": "-o OUT: a folder; give the file to write",
    "denoise-animation": "in.gif: the file holds 2 frames (an animation or a multi-page file)",
    "denoise-32-bit-integer": "in.tif: a 32-bit integer image (mode I), whose value range is unknown",
}


def _bad_case(tmp_path, case):
    """``(input, output, extra arguments)`` for a case of :data:`CLI_CASES`."""
    src, out, args = tmp_path / "in.png", tmp_path / "out.png", []
    gray = np.zeros((16, 16), np.uint8)
    if case == "denoise-not-an-image":
        src.write_text("not an image")
    elif case == "denoise-transparency":
        rgba = np.zeros((16, 16, 4), np.uint8)
        rgba[..., 3] = np.arange(16)[None, :] * 16
        Image.fromarray(rgba, "RGBA").save(src)
    elif case == "denoise-too-small":
        Image.fromarray(np.zeros((4, 5), np.uint8)).save(src)
    elif case == "denoise-animation":
        src = tmp_path / "in.gif"
        Image.fromarray(gray).save(src, save_all=True, append_images=[Image.fromarray(gray + 255)])
    elif case == "denoise-32-bit-integer":
        src = tmp_path / "in.tif"
        Image.fromarray(np.full((16, 16), 70000, np.int32)).save(src)
    elif case != "denoise-missing-file":
        Image.fromarray(gray).save(src)
    args = {
        "denoise-iterations-zero": ["--iterations", "0"],
        "denoise-sigma-infinite": ["--sigma", "inf"],
        "denoise-unknown-method": ["--method", "foo"],
        "denoise-classical-method": ["--method", "bm3d"],
        "denoise-width-without-option": ["--method", "dip", "--width", "64"],
        "denoise-bad-device": ["--device", "gpu"],
    }.get(case, args)
    if case == "denoise-unknown-format":
        out = tmp_path / "out.xyz"
    elif case == "denoise-output-is-input":
        out = src
    elif case == "denoise-output-folder-is-a-file":
        out = src / "out.png"
    elif case == "denoise-output-is-a-folder":
        out = tmp_path
    return src, out, args


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_bad_inputs_give_a_clean_error(tmp_path, case):
    src, out, args = _bad_case(tmp_path, case)
    before = src.read_bytes() if src.is_file() else None
    proc = dipkit("denoise", str(src), "-o", str(out), *args)
    expected = CLI_CASES[case].replace("OUT", str(out)).replace("IN", str(src))
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("dipkit: error: ") and expected in last, proc.stderr
    assert "Traceback" not in proc.stderr
    if out != src and out != tmp_path and not case.startswith("denoise-output-folder"):
        assert not out.exists()
    if before is not None:
        assert src.read_bytes() == before  # the input is never touched
    assert not list(tmp_path.glob(".*.partial"))


def test_force_lets_the_output_replace_the_input(tmp_path):
    _, _, path = _noisy_pair(tmp_path, 16, 16, 1)
    proc = dipkit(
        "denoise",
        str(path),
        "-o",
        str(path),
        "--force",
        "--width",
        "8",
        "--sigma",
        "25",
        "--iterations",
        "3",
        "-q",
    )
    assert proc.returncode == 0, proc.stderr
    assert Image.open(path).size == (16, 16)


def _limited(limit: str, value: int, *args: str, env=None) -> subprocess.CompletedProcess:
    """``dipkit`` with a resource limit set after torch and dipkit are loaded: ``fsize`` (bytes a
    file may hold) or ``as`` (bytes of address space beyond what the process already maps)."""
    harness = (
        "import resource, sys\n"
        "import torch, dipkit.runner, dipkit.denoise, dipkit.fit\n"
        "from dipkit.cli import main\n"
        "if sys.argv[1] == 'as':\n"
        "    status = open('/proc/self/status').read().splitlines()\n"
        "    vm = next(int(line.split()[1]) * 1024 for line in status if line.startswith('VmSize:'))\n"
        "    resource.setrlimit(resource.RLIMIT_AS, (vm + int(sys.argv[2]),) * 2)\n"
        "else:\n"
        "    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]),) * 2)\n"
        "sys.exit(main(sys.argv[3:]))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run(
        [sys.executable, "-c", harness, limit, str(value), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def test_no_room_for_the_output_fails_before_the_fit(tmp_path):
    """Files may hold 4 KiB only (RLIMIT_FSIZE, as on a full disk): the test write of a file the
    size of the result fails, before any fitting."""
    src = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(src)
    out = tmp_path / "out" / "den.png"
    proc = _limited(
        "fsize",
        4096,
        "denoise",
        str(src),
        "-o",
        str(out),
        "--width",
        "8",
        "--sigma",
        "25",
        "--iterations",
        "3",
    )
    assert proc.returncode == 2, proc.stderr
    assert f"dipkit: error: -o {out}: cannot write there (File too large); nothing was fitted" in proc.stderr
    assert "loss" not in proc.stderr and "Traceback" not in proc.stderr
    assert list(out.parent.iterdir()) == []


def test_cpu_out_of_memory_is_one_line(tmp_path):
    """The real CPU allocator failing (the address space is capped 768 MiB above what torch and
    dipkit map): one line naming the image size, method, width and what to try."""
    src = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)).save(src)
    out = tmp_path / "out.png"
    proc = _limited(
        "as",
        768 << 20,
        "denoise",
        str(src),
        "-o",
        str(out),
        "--width",
        "128",
        "--sigma",
        "25",
        "--iterations",
        "2",
        "--device",
        "cpu",
        "-q",
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(
        "dipkit: error: out of memory denoising a 1024x1024 image with method ours at "
        "width 128 on cpu (DefaultCPUAllocator: can't allocate memory"
    ), lines[0]
    assert lines[0].endswith(
        "try a smaller --width (32 needs the least memory), a smaller image (crop or "
        "downscale it) or more memory (a larger machine, or a GPU)"
    )
    assert not out.exists()


def test_a_write_that_fails_after_the_fit_keeps_the_result(tmp_path):
    """The output folder is replaced by a file while the fit runs: the result goes to the
    temporary folder, and the error line says where."""
    _, _, path = _noisy_pair(tmp_path, 24, 24, 3)
    folder = tmp_path / "results"
    out = folder / "den.png"
    spare = tmp_path / "spare"
    spare.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO), TMPDIR=str(spare))
    command = [
        sys.executable,
        "-m",
        "dipkit",
        "denoise",
        str(path),
        "-o",
        str(out),
        "--width",
        "8",
        "--sigma",
        "25",
        "--iterations",
        "300",
    ]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    try:
        seen = ""
        while "/300 loss" not in seen:  # the fit has begun (the output was checked before it)
            char = proc.stderr.read(1)
            assert char, seen
            seen += char
        assert folder.is_dir()
        folder.rmdir()
        folder.write_text("a file where the output folder was")
        rest = proc.communicate(timeout=600)[1]
    finally:
        proc.kill()
    assert proc.returncode == 2, seen + rest
    kept = list(spare.glob("dipkit-den-*.png"))
    assert len(kept) == 1 and Image.open(kept[0]).size == (24, 24)
    assert f"dipkit: error: could not write {out} ({folder} is a file, not a folder)" in rest
    assert rest.strip().endswith(f"; the denoised image is saved as {kept[0]} instead")
    assert "Traceback" not in rest


def test_noise_estimate_is_close():
    from dipkit.denoise import estimate_sigma

    clean = synthetic_image(128, 128, 3, seed=2).astype(np.float64)
    for sigma in (10, 25, 50):
        noisy = np.clip(clean + np.random.default_rng(sigma).normal(0, sigma / 255, clean.shape), 0, 1)
        assert abs(estimate_sigma(noisy) - sigma) < 0.12 * sigma


def test_gpu_out_of_memory_is_one_line():
    """Fault injection (no GPU here): CUDA's own exception type, raised where `dipkit denoise`
    fits, becomes the same kind of line as on the CPU, with GPU advice."""
    import torch

    from dipkit.denoise import _explain_out_of_memory
    from dipkit.fit import FitOutOfMemoryError
    from dipkit.fit.device import explain_out_of_memory

    img = np.zeros((4000, 6000, 3), np.float32)
    fit = "method ours (hourglass, 921,475 parameters) on a 6016x4000 image"
    gpu = torch.device("cuda", 0)
    with (
        pytest.raises(FitOutOfMemoryError) as err,
        _explain_out_of_memory(img, "ours", 128, gpu),
        explain_out_of_memory(fit, "cuda:0"),
    ):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 46.00 GiB\nmore detail")
    assert str(err.value) == (
        "out of memory denoising a 6000x4000 image with method ours at width 128 on cuda:0 (CUDA out of "
        "memory. Tried to allocate 46.00 GiB); try a smaller --width (32 needs the least memory), a smaller "
        "image (crop or downscale it) or a GPU with more memory"
    )
