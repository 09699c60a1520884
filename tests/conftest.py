"""Shared fixtures: repository paths, the shared dataset mirror, a loopback HTTP server,
a ``device`` fixture (CPU, plus CUDA when available) and synthetic test images."""

from __future__ import annotations

import functools
import http.server
import os
import socketserver
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_dir() -> Path:
    env = os.environ.get("DIPKIT_SHARED")
    return Path(env) if env else REPO.parent / "shared"


SHARED = _shared_dir()
DATASETS_MIRROR = SHARED / "datasets"


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The offline dataset mirror (``../shared/datasets``; ``$DIPKIT_SHARED`` overrides)."""
    if not (DATASETS_MIRROR / "MANIFEST.tsv").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"dataset mirror not found at {DATASETS_MIRROR} (set DIPKIT_SHARED)")
        pytest.skip(f"dataset mirror not found at {DATASETS_MIRROR} (set DIPKIT_SHARED)")
    return DATASETS_MIRROR


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def http_serve():
    """``http_serve(folder) -> base URL``: serve a folder on 127.0.0.1 for the test's duration."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        srv = _Server(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _devices():
    import torch

    devs = ["cpu"]
    if torch.cuda.is_available():
        devs.append("cuda")
    return devs


@pytest.fixture(params=_devices())
def device(request):
    """Every available device: ``cpu`` always, ``cuda`` when present."""
    import torch

    return torch.device(request.param)


def synthetic_image(height: int = 64, width: int = 64, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth, textured test image ``[H, W, C]`` float32 in [0, 1]: gradients, discs, stripes."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    chans = []
    for c in range(channels):
        base = 0.5 + 0.3 * np.sin(2 * np.pi * (x / width * (1 + c) + y / height * 0.5))
        cy, cx, r = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width, 0.2 * min(height, width)
        base = np.where((y - cy) ** 2 + (x - cx) ** 2 < r**2, 0.15 + 0.2 * c, base)
        base += 0.05 * np.sin(2 * np.pi * x / 4.0)
        chans.append(base)
    return np.clip(np.stack(chans, axis=-1), 0, 1).astype(np.float32)


@pytest.fixture
def image():
    return synthetic_image()


def run_snakemake(
    workdir: Path, *args: str, check: bool = True, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run the real ``snakemake`` CLI on this repository's Snakefile in ``workdir``."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def run_tiny(work: Path, config: dict, mirror: Path) -> Path:
    """Write ``config`` (datasets from the offline ``mirror``) into ``work`` and run it to the end
    with 2 cores and 2 concurrent fits; return the config file."""
    import yaml

    cfg = work / "config.yaml"
    cfg.write_text(yaml.safe_dump({**config, "mirror_dir": str(mirror)}, sort_keys=False))
    run_snakemake(work, "--configfile", str(cfg), "--cores", "2", "--resources", "gpu=2")
    return cfg


def write_png16(path: Path, arr: np.ndarray) -> Path:
    """A 16-bit PNG written by hand (Pillow cannot write 16-bit colour): ``arr`` ``[H, W, C]``
    uint16 with C = 2 (gray + alpha) or 3 (RGB)."""
    import struct
    import zlib

    h, w, c = arr.shape
    color_type = {2: 4, 3: 2}[c]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in arr)
    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return path
