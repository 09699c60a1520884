"""Issue 9: every bad input and fault ends in a clear message, with nothing half-written and
no finished result lost. Each case here is a row of the table in ``docs/failures.md``;
``test_failures_table_lists_every_case`` keeps the two in step.

Config cases run the real ``snakemake -n`` (they must fail before any job); data and fit
cases run the real workflow on a small user folder.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, run_snakemake, synthetic_image, write_png16

from dipkit.images import save_png

SET9 = {"Set9": {"images": ["image_House256rgb"], "gaussian": [25]}}

#: id -> (config, fragments the output must contain)
CONFIG_CASES = {
    "unknown-top-level-key": (
        {"sed": 1, "datasets": SET9},
        ["Additional properties are not allowed ('sed' was unexpected)"],
    ),
    "unknown-dataset": (
        {"datasets": {"Set99": {"gaussian": [25]}}},
        ["config key datasets.Set99: unknown dataset; built-in datasets are Set9, Set12, CBSD68, PolyU"],
    ),
    "unknown-method": (
        {"datasets": SET9, "methods": {"hourglas": {}}},
        ["config key methods.hourglas: unknown method; registered: dip, deep_decoder"],
    ),
    "unknown-experiment": (
        {"datasets": SET9, "experiments": {"spectral": {}}},
        ["config key experiments.spectral: unknown experiment; known: spectral_density"],
    ),
    "sigma-zero": (
        {"datasets": {"Set9": {"gaussian": [0]}}},
        ["0 is less than or equal to the minimum of 0", "['datasets']['Set9']['gaussian'][0]"],
    ),
    "zeta-negative": (
        {"datasets": {"Set9": {"poisson": [-0.1]}}},
        ["-0.1 is less than or equal to the minimum of 0", "['datasets']['Set9']['poisson'][0]"],
    ),
    "iterations-zero": (
        {"datasets": SET9, "fit": {"iterations": 0}},
        ["0 is less than the minimum of 1", "['fit']['iterations']"],
    ),
    "method-iterations-negative": (
        {"datasets": SET9, "methods": {"dip": {"iterations": -5}}},
        ["-5 is less than the minimum of 1", "['methods']['dip']['iterations']"],
    ),
    "width-zero": (
        {"datasets": SET9, "methods": {"ours": {"width": 0}}},
        ["0 is not valid under any of the given schemas", "['methods']['ours']['width']"],
    ),
    "unknown-arch-option": (
        {"datasets": SET9, "methods": {"ours": {"arch_options": {"levles": 3}}}},
        ["config key methods.ours.arch_options: unknown option(s) 'levles' for architecture 'hourglass'"],
    ),
    "levels-too-deep": (
        {
            "datasets": {"CBSD68": {"gaussian": [25], "max_images": 2}},
            "methods": {"ours": {"arch_options": {"levels": 6}}},
        },
        [
            "config key methods.ours: its hourglass network downsamples by 64",
            "after cropping to multiples of 32",
        ],
    ),
    "bad-device": (
        {"datasets": SET9, "fit": {"device": "gpu"}},
        ["'gpu' does not match", "['fit']['device']"],
    ),
    "unknown-image": (
        {"datasets": {"Set9": {"images": ["house"], "gaussian": [25]}}},
        ["config key datasets.Set9.images: unknown image ids ['house']"],
    ),
    "real-noise-without-pairs": (
        {"datasets": {"Set9": {"real": True}}},
        ["config key datasets.Set9.real: dataset 'Set9' has no real noisy images"],
    ),
    "method-not-configured": (
        {"datasets": {"Set9": {"gaussian": [25], "methods": ["bm3d"]}}, "methods": {"ours": {}}},
        ["config key datasets.Set9.methods: ['bm3d'] not among the configured methods"],
    ),
    "custom-folder-missing": (
        {"datasets": {"mine": {"path": "/nonexistent/photos", "gaussian": [25]}}},
        ["config key datasets.mine.path: folder '/nonexistent/photos' does not exist"],
    ),
    "sigma-infinite": (
        {"datasets": {"Set9": {"images": ["image_House256rgb"], "gaussian": [float("inf")]}}},
        ["config key datasets.Set9.gaussian: levels must be finite numbers > 0, got inf"],
    ),
    "crop-larger-than-images": (
        {"crop_multiple": 1024, "datasets": SET9, "methods": {"ours": {}}},
        [
            "config key crop_multiple: 1024 is larger than Set9 image image_House256rgb (256x256)",
            "use a smaller crop_multiple",
        ],
    ),
}


def _write_config(work: Path, config: dict) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "config.yaml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    return cfg


@pytest.fixture(scope="module")
def config_runs(tmp_path_factory):
    """``snakemake -n`` on every bad config, four at a time (each is a separate process)."""
    from concurrent.futures import ThreadPoolExecutor

    works = {case: tmp_path_factory.mktemp(case) for case in CONFIG_CASES}  # not thread-safe

    def dry_run(case):
        work = works[case]
        cfg = _write_config(work, CONFIG_CASES[case][0])
        return case, work, run_snakemake(work, "--configfile", str(cfg), "-n", check=False)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return {case: (work, proc) for case, work, proc in pool.map(dry_run, CONFIG_CASES)}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_config_fails_before_any_job(case, config_runs):
    work, proc = config_runs[case]
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    for fragment in CONFIG_CASES[case][1]:
        assert fragment in out, f"{fragment!r} not in:\n{out[-3000:]}"
    assert not (work / "results").exists()


def test_tiny_sigma_gets_a_noise_id(tmp_path):
    """sigma 0.000001 is a valid (if useless) level: its noise id is written without an exponent."""
    house = {"images": ["image_House256rgb"], "gaussian": [0.000001]}
    cfg = _write_config(tmp_path, {"datasets": {"Set9": house}, "methods": {"bm3d": {}}})
    proc = run_snakemake(tmp_path, "--configfile", str(cfg), "-n", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "results/noisy/Set9/gaussian0.000001.npz" in proc.stdout


def test_empty_custom_folder_fails_before_any_job(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "notes.txt").write_text("no images here")
    cfg = _write_config(
        tmp_path / "work", {"datasets": {"mine": {"path": str(tmp_path / "photos"), "gaussian": [25]}}}
    )
    proc = run_snakemake(tmp_path / "work", "--configfile", str(cfg), "-n", check=False)
    assert proc.returncode != 0
    assert (
        f"config key datasets.mine.path: folder '{tmp_path / 'photos'}' holds no image"
        in proc.stdout + proc.stderr
    )


def test_unpaired_real_noise_file_is_named_before_any_job(tmp_path):
    folder = tmp_path / "pairs"
    for sub, names in (("clean", ["a", "b"]), ("noisy", ["a"])):
        (folder / sub).mkdir(parents=True)
        for n in names:
            save_png(folder / sub / f"{n}.png", synthetic_image(64, 64, 3, seed=1))
    cfg = _write_config(tmp_path / "work", {"datasets": {"mine": {"path": str(folder), "real": True}}})
    proc = run_snakemake(tmp_path / "work", "--configfile", str(cfg), "-n", check=False)
    assert proc.returncode != 0
    assert (
        f"{(folder / 'clean' / 'b.png').resolve()}: no noisy image pairs with it" in proc.stdout + proc.stderr
    )


# --------------------------------------------------------------------------- data


def _leftovers(results: Path) -> list[Path]:
    """Temporary or partial files anywhere under results/ (Snakemake's own
    ``.snakemake_timestamp`` marker of directory outputs aside)."""
    return [
        p
        for p in results.rglob("*")
        if (p.name.startswith(".") or p.name.endswith(".partial")) and p.name != ".snakemake_timestamp"
    ]


def _bad_folder(root: Path, case: str) -> tuple[Path, Path, int]:
    """A user folder with one good image and one bad file; (folder, bad file, channels)."""
    from PIL import Image

    folder = root / case
    folder.mkdir()
    save_png(folder / "good.png", synthetic_image(64, 64, 3, seed=0))
    bad = folder / ("bad.tif" if case.endswith("tiff") else "bad.png")
    channels = 3
    if case == "truncated-image":
        save_png(bad, synthetic_image(64, 64, 3, seed=1))
        bad.write_bytes(bad.read_bytes()[:300])
    elif case == "not-an-image":
        bad.write_text("this is not a PNG")
    elif case == "grayscale-in-rgb-set":
        save_png(bad, synthetic_image(64, 64, 1, seed=1))
    elif case == "rgb-in-grayscale-set":
        (folder / "good.png").unlink()
        save_png(folder / "good.png", synthetic_image(64, 64, 1, seed=0))
        save_png(bad, synthetic_image(64, 64, 3, seed=1))
        channels = 1
    elif case == "image-smaller-than-crop":
        save_png(bad, synthetic_image(20, 24, 3, seed=1))
    elif case == "multi-page-tiff":
        pages = [(synthetic_image(64, 64, 3, seed=s) * 255).astype("uint8") for s in (1, 2, 3)]
        first, *more = (Image.fromarray(p) for p in pages)
        first.save(bad, save_all=True, append_images=more)
    elif case == "32-bit-integer-tiff":  # values above 65535 (read through uint16 they would wrap)
        Image.fromarray((synthetic_image(64, 64, 1, seed=1)[..., 0] * 100000).astype("int32")).save(bad)
        (folder / "good.png").unlink()
        save_png(folder / "good.png", synthetic_image(64, 64, 1, seed=0))
        channels = 1
    elif case == "16-bit-colour":
        write_png16(bad, (synthetic_image(64, 64, 3, seed=1) * 65535).astype("uint16"))
    return folder, bad, channels


DATA_CASES = {
    "truncated-image": "not a readable image",
    "not-an-image": "not a readable image (cannot identify image file",
    "grayscale-in-rgb-set": "image is grayscale but its dataset is RGB",
    "rgb-in-grayscale-set": "image is RGB but its dataset is grayscale",
    "image-smaller-than-crop": "image of 24x20 pixels is smaller than the crop multiple 32",
    "multi-page-tiff": "the file holds 3 frames (an animation or a multi-page file); save the one you want",
    "32-bit-integer-tiff": "a 32-bit integer image (mode I), whose value range is unknown; save it as 8-",
    "16-bit-colour": "a 16-bit image of mode RGB, which Pillow reads at 8 bits only; save it as 8-bit RGB",
}


@pytest.fixture(scope="module")
def data_run(tmp_path_factory):
    """One real run over five user datasets, each with one bad file (``--keep-going``)."""
    root = tmp_path_factory.mktemp("bad_data")
    datasets, bad_files = {}, {}
    for i, case in enumerate(DATA_CASES):
        folder, bad, channels = _bad_folder(root, case)
        datasets[f"set{i}"] = {
            "path": str(folder),
            "gaussian": [25],
            **({"channels": 1} if channels == 1 else {}),
        }
        bad_files[case] = (f"set{i}", bad)
    work = root / "work"
    cfg = _write_config(work, {"datasets": datasets, "methods": {"ours": {"width": 8}}})
    proc = run_snakemake(work, "--configfile", str(cfg), "--cores", "2", "--keep-going", check=False)
    return work, proc, bad_files


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_image_file_is_named_and_nothing_is_half_written(case, data_run):
    work, proc, bad_files = data_run
    dataset, bad = bad_files[case]
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"{bad.resolve()}: {DATA_CASES[case]}" in out, out[-3000:]
    assert not (work / f"results/prepared/{dataset}.npz").exists()
    assert _leftovers(work / "results") == []


def _run_one_image(tmp_path, name: str, size: int, methods: dict):
    """The workflow on a user folder with one synthetic RGB image (Gaussian sigma 25), allowed
    to fail: ``(work dir, completed process)``."""
    folder = tmp_path / "photos"
    folder.mkdir()
    save_png(folder / name, synthetic_image(size, size, 3, seed=0))
    work = tmp_path / "work"
    cfg = _write_config(
        work, {"datasets": {"mine": {"path": str(folder), "gaussian": [25]}}, "methods": methods}
    )
    return work, run_snakemake(work, "--configfile", str(cfg), "--cores", "1", check=False)


def test_image_too_small_for_the_network_names_method_and_size(tmp_path):
    work, proc = _run_one_image(tmp_path, "tiny.png", 32, {"dip": {"iterations": 2}})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "method dip (architecture dip), image 32x32: image size 32x32" in out, out[-3000:]
    assert not list((work / "results").glob("fits/**/*.parquet"))
    assert (work / "results/prepared/mine.npz").exists()  # finished upstream results are kept
    assert _leftovers(work / "results") == []


def test_dot_files_are_skipped_and_names_keep_their_letters(tmp_path):
    """A macOS ``._`` file beside the photos is skipped; non-ASCII names keep their letters in
    the image ids, the result files and the rows."""
    folder = tmp_path / "photos"
    folder.mkdir()
    save_png(folder / "my phötö ☃.png", synthetic_image(64, 64, 3, seed=0))
    save_png(folder / "☃.png", synthetic_image(64, 64, 3, seed=1))
    (folder / "._my phötö ☃.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble resource fork")
    work = tmp_path / "work"
    cfg = _write_config(
        work,
        {
            "datasets": {"mine": {"path": str(folder), "gaussian": [25]}},
            "methods": {"ours": {"width": 8, "iterations": 2}},
        },
    )
    proc = run_snakemake(work, "--configfile", str(cfg), "--cores", "2", check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    fits = pd.read_parquet(work / "results/fits.parquet")
    assert sorted(fits.image) == sorted(["my_phötö_☃", "☃"])
    for image in fits.image:
        assert (work / f"results/fits/mine/gaussian25/ours/{image}.png").is_file()
    assert "| mine |" in (work / "results/tables/table2.md").read_text(encoding="utf-8")
    assert (work / "results/figures/gallery_mine_gaussian25.png").is_file()


def test_image_id_collision_is_refused_before_any_job(tmp_path):
    """Two files whose names give one image id (here one name in Unicode's composed and
    decomposed forms, as two systems may write it) stop the run before any job, naming both."""
    import unicodedata

    folder = tmp_path / "photos"
    folder.mkdir()
    composed, decomposed = (unicodedata.normalize(form, "phötö") for form in ("NFC", "NFD"))
    save_png(folder / f"{composed}.png", synthetic_image(64, 64, 3, seed=0))
    save_png(folder / f"{decomposed}.jpg", synthetic_image(64, 64, 3, seed=1))
    work = tmp_path / "work"
    cfg = _write_config(work, {"datasets": {"mine": {"path": str(folder), "gaussian": [25]}}})
    proc = run_snakemake(work, "--configfile", str(cfg), "-n", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config key datasets.mine.path: files" in out
    assert "map to the same image id 'phötö'; rename one" in out
    assert not (work / "results").exists()


def test_offline_download_names_mirror_dir(tmp_path):
    """No network (nothing answers at the configured address): one line that says how to run
    offline, and no traceback, neither on the terminal nor in the log Snakemake prints."""
    work = tmp_path / "work"
    cfg = _write_config(
        work,
        {
            "datasets": SET9,
            "methods": {"bm3d": {}},
            "mirror_url": "http://127.0.0.1:9",
            "download": {"attempts": 1, "backoff": 0, "timeout": 5},
        },
    )
    proc = run_snakemake(work, "--configfile", str(cfg), "--cores", "1", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert re.search(
        r"dipkit: rule download_dataset \(\{'dataset': 'Set9'\}\) failed: download of "
        r"Set9/image_House256rgb.png from http://127.0.0.1:9/\S+ failed after 1 attempt\(s\): .*"
        r"without network access, put a copy of the datasets in a folder laid out "
        r"<folder>/<dataset>/<file> and set mirror_dir \(--config mirror_dir=<folder>\)",
        out,
    ), out
    assert "Traceback" not in out
    assert not (work / "results/downloads/Set9").exists()


def test_http_timeout_is_named(tmp_path):
    """A server that accepts the connection and never answers: the download times out."""
    import socket
    import threading

    from dipkit.download import DownloadError, fetch_file
    from dipkit.manifest import builtin_datasets

    house = next(f for f in builtin_datasets()["Set9"] if f.image == "image_House256rgb")
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    held = []
    threading.Thread(target=lambda: held.append(srv.accept()), daemon=True).start()
    try:
        with pytest.raises(
            DownloadError,
            match=r"Set9/image_House256rgb.png from .* failed after 1 attempt\(s\): .*timed out",
        ):
            fetch_file(
                house,
                tmp_path / "x.png",
                mirror_url=f"http://127.0.0.1:{srv.getsockname()[1]}",
                timeout=1,
                attempts=1,
                backoff=0,
            )
    finally:
        srv.close()
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- fits


def test_diverging_fit_names_the_iteration_and_writes_nothing(tmp_path):
    work, proc = _run_one_image(tmp_path, "a.png", 64, {"ours": {"width": 8, "lr": 1.0e20, "iterations": 5}})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert re.search(
        r"FitDivergedError: fit diverged: the loss is not finite \(nan\) at iteration \d of 5", out
    ), out[-3000:]
    assert not [p for p in (work / "results").glob("fits/**/*") if p.is_file()]
    assert _leftovers(work / "results") == []


def test_cuda_out_of_memory_names_method_and_image_size():
    """Fault injection: the allocator's real exception type, raised inside the fit's guard."""
    from dipkit.fit import FitOutOfMemoryError
    from dipkit.fit.device import explain_out_of_memory

    what = "method ours (hourglass, 921,475 parameters) on a 512x768 image"
    with pytest.raises(FitOutOfMemoryError) as err, explain_out_of_memory(what, "cuda:0"):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")
    msg = str(err.value)
    assert msg.startswith(
        f"CUDA out of memory fitting {what} on cuda:0: CUDA out of memory. Tried to allocate 2.00 GiB."
    )
    assert "fit.fits_per_gpu" in msg and "fit.batch" in msg and "more detail" not in msg


def test_cpu_out_of_memory_names_method_and_image_size():
    """The CPU allocator really failing (400 TB asked for) inside the fit's guard."""
    from dipkit.fit import FitOutOfMemoryError
    from dipkit.fit.device import explain_out_of_memory

    what = "method ours (hourglass, 921,475 parameters) on a 6000x6000 image"
    with pytest.raises(FitOutOfMemoryError) as err, explain_out_of_memory(what, "cpu"):
        torch.empty(10**14)
    msg = str(err.value)
    assert msg.startswith(f"out of memory fitting {what} on cpu: DefaultCPUAllocator: can't allocate"), msg
    assert msg.endswith("Run fewer jobs at once (--cores), crop the image, or use a machine with more memory")
    assert "\n" not in msg


def test_stale_partial_files_are_removed_on_the_next_write(tmp_path):
    from dipkit.io import atomic_path

    target = tmp_path / "row.parquet"
    stale = tmp_path / ".row.parquet.abc123.partial"
    stale.write_bytes(b"half")
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and not stale.exists()


KILL_CONFIG = {
    "seed": 3,
    "datasets": {"Set12": {"images": ["01", "02"], "gaussian": [25]}},
    "methods": {"ours": {"width": 8}},
    "fit": {"iterations": 150},
}

#: columns that measure the run, not its result
_RUN_COLUMNS = ["wall_time_s", "seconds_per_iteration", "peak_memory_bytes", "search_s"]


def _kill_config(mirror: Path) -> dict:
    return {**KILL_CONFIG, "mirror_dir": str(mirror)}


def test_sigkill_then_rerun_incomplete_gives_the_same_rows(tmp_path, mirror):
    """Kill the whole workflow (snakemake and its jobs) with SIGKILL while a fit runs, at a
    seeded random moment; ``--unlock`` and ``--rerun-incomplete`` then finish it, and the
    rows equal those of an uninterrupted run (except the run-time columns)."""
    ref = tmp_path / "ref"
    cfg = _write_config(ref, _kill_config(mirror))
    run_snakemake(ref, "--configfile", str(cfg), "--cores", "2")

    work = tmp_path / "work"
    cfg = _write_config(work, _kill_config(mirror))
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(work),
        "--configfile",
        str(cfg),
        "--cores",
        "2",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        logs = work / "results/logs/fit"
        while not (logs.exists() and any("iteration" in p.read_text() for p in logs.rglob("*.log"))):
            assert proc.poll() is None, "the workflow ended before a fit started"
            assert time.monotonic() < deadline, "no fit started within 300 s"
            time.sleep(0.1)
        time.sleep(random.Random(9).uniform(0.0, 1.0))  # somewhere inside the fit loop
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (work / "results/fits.parquet").exists()

    locked = run_snakemake(work, "--configfile", str(cfg), "--cores", "1", check=False)
    assert locked.returncode != 0
    assert (
        "Directory cannot be locked" in locked.stdout + locked.stderr
        and "--unlock" in locked.stdout + locked.stderr
    )
    run_snakemake(work, "--configfile", str(cfg), "--unlock")
    run_snakemake(work, "--configfile", str(cfg), "--cores", "2", "--rerun-incomplete")

    def rows(root):
        df = pd.read_parquet(root / "results/fits.parquet").drop(columns=_RUN_COLUMNS)
        return df.sort_values(["method", "image"]).reset_index(drop=True)

    assert len(rows(ref)) == 2

    pd.testing.assert_frame_equal(rows(work), rows(ref))
    tr = [
        pd.read_parquet(r / "results/trajectories.parquet")
        .sort_values(["method", "image", "iteration"])
        .reset_index(drop=True)
        for r in (work, ref)
    ]
    pd.testing.assert_frame_equal(tr[0], tr[1])
    assert _leftovers(work / "results") == []


# --------------------------------------------------------------------------- docs/failures.md


def test_failures_table_lists_every_case():
    """Every case here is a row of the table in docs/failures.md, and every test it names exists."""
    section = (REPO / "docs/failures.md").read_text()
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| what")]
    assert len(rows) >= 20
    ids = set(re.findall(r"`([a-z0-9-]+)`", section))
    from test_cli import CLI_CASES

    cases = set(CONFIG_CASES) | set(DATA_CASES) | set(CLI_CASES)
    assert cases <= ids, sorted(cases - ids)
    sources = "".join(p.read_text() for p in (REPO / "tests").glob("test_*.py"))
    for name in set(re.findall(r"\b(test_[a-z0-9_]+)\b(?!\.py)", section)):
        assert f"def {name}(" in sources, name
