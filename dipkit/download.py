"""Checksummed dataset downloads with retries, atomic writes and offline mirrors.

Where a file comes from, in order of preference:

1. ``mirror_dir``: a local folder laid out as ``<mirror_dir>/<dataset>/<file>``;
2. ``mirror_url``: an HTTP(S) server with the same layout (``<mirror_url>/<dataset>/<file>``);
3. the file's public URL from the manifest.

Whatever the source, the bytes must match the manifest's sha256, or the download fails
with a message naming the file, the expected and the actual hash, and nothing is left
behind. The source is not part of a file's identity: switching between mirror and network
reruns nothing. Standard library only.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from dipkit.io import atomic_path
from dipkit.manifest import DatasetFile

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
USER_AGENT = "dipkit-downloader"


class DownloadError(RuntimeError):
    """A file could not be fetched, or its bytes do not match the manifest."""

    #: the message says all there is to say: job logs show it without a traceback
    explained = True


#: Appended to network failures: how to run without the network.
OFFLINE_HINT = (
    "without network access, put a copy of the datasets in a folder laid out <folder>/<dataset>/<file> "
    "and set mirror_dir (--config mirror_dir=<folder>), or serve one and set mirror_url"
)


class ChecksumError(DownloadError):
    """The sha256 of the fetched bytes differs from the manifest's."""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(tmp: Path, f: DatasetFile, source: str) -> None:
    actual = sha256_file(tmp)
    if actual != f.sha256:
        raise ChecksumError(
            f"sha256 mismatch for {f.dataset}/{f.file} (from {source}): expected {f.sha256}, got {actual}"
        )


def _http_get(url: str, dest: Path, timeout: float) -> None:
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(req, timeout=timeout) as resp, open(dest, "wb") as out:
        shutil.copyfileobj(resp, out, _CHUNK)


def _permanent(err: Exception) -> bool:
    """HTTP 4xx errors (except 408 and 429) will not go away by retrying."""
    return isinstance(err, urllib.error.HTTPError) and 400 <= err.code < 500 and err.code not in (408, 429)


def fetch_file(
    f: DatasetFile,
    dest: str | Path,
    *,
    mirror_dir: str | Path | None = None,
    mirror_url: str | None = None,
    timeout: float = 60.0,
    attempts: int = 3,
    backoff: float = 1.0,
) -> str:
    """Fetch one manifest file to ``dest`` and verify its sha256; return the source used.

    Network downloads are tried ``attempts`` times with exponential back-off (``backoff``,
    ``2*backoff``, ... seconds), except for permanent HTTP errors (404 and other 4xx).

    :raises DownloadError: the file could not be fetched (the message names file and URL, and
        for network failures other than an HTTP error status, ``mirror_dir``).
    :raises ChecksumError: the bytes do not match the manifest.
    """
    dest = Path(dest)
    if mirror_dir:
        src = Path(mirror_dir) / f.dataset / f.file
        if not src.is_file():
            raise DownloadError(
                f"{f.dataset}/{f.file}: not found in mirror_dir {str(mirror_dir)!r} (expected {src})"
            )
        with atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)
            _verify(tmp, f, str(src))
        return str(src)

    if mirror_url:
        url = mirror_url.rstrip("/") + "/" + urllib.parse.quote(f"{f.dataset}/{f.file}")
    else:
        url = f.url
    if not url:
        raise DownloadError(f"{f.dataset}/{f.file}: no URL in the manifest")
    last: Exception | None = None
    for attempt in range(1, attempts + 1):
        try:
            with atomic_path(dest) as tmp:
                _http_get(url, tmp, timeout)
                _verify(tmp, f, url)
            return url
        except (urllib.error.URLError, OSError, ChecksumError) as err:
            last = err
            log.warning("attempt %d/%d for %s failed: %s", attempt, attempts, url, err)
            if _permanent(err) or attempt == attempts:
                break
            time.sleep(backoff * 2 ** (attempt - 1))
    if isinstance(last, ChecksumError):
        raise last
    hint = "" if isinstance(last, urllib.error.HTTPError) else f"; {OFFLINE_HINT}"
    raise DownloadError(
        f"download of {f.dataset}/{f.file} from {url} failed after {attempt} attempt(s): {last}{hint}"
    )


def download_dataset(
    files: Iterable[DatasetFile],
    out_dir: str | Path,
    **options,
) -> list[str]:
    """Fetch every file into ``out_dir`` (``<out_dir>/<file>``), all or nothing.

    Files are collected in a temporary folder beside ``out_dir`` that is renamed into
    place only when every file is verified. Keyword options go to :func:`fetch_file`.

    :return: the source of each file, in order.
    """
    files = list(files)
    sources = []
    with atomic_path(out_dir, directory=True) as tmp:
        for i, f in enumerate(files, 1):
            sources.append(fetch_file(f, tmp / f.file, **options))
            log.info("[%d/%d] %s/%s <- %s", i, len(files), f.dataset, f.file, sources[-1])
    return sources
