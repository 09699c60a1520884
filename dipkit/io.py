"""File I/O with atomic writes and byte-reproducible containers.

Every output of the pipeline is written to a temporary name beside its final path and
renamed into place only once complete, so a failed or killed job never leaves a partial
file behind. Image stacks are uncompressed ``.npz`` archives written with fixed zip
timestamps, so the same arrays always give the same bytes.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On any exception the temporary file (or directory) is removed and the exception
    propagates; ``path`` itself is never touched in that case. A process killed outright
    (SIGKILL, power loss) cannot clean up: its ``.<name>.*.partial`` leftovers are removed
    the next time ``path`` is written (one job writes a given output at a time).

    :param path: final destination.
    :param directory: create and yield a temporary *directory* instead of a file name.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{glob.escape(final.name)}.*.partial"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
        os.close(fd)
        tmp = Path(name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, (0o777 if directory else 0o666) & ~umask)  # mkstemp/mkdtemp default to 0600/0700
    try:
        yield tmp
        if directory and final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` atomically (UTF-8, ``\\n`` line endings)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def save_stack(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Save named arrays as an uncompressed, byte-reproducible ``.npz`` archive.

    Members are written in sorted key order with a fixed timestamp, so equal inputs give
    identical files. Read back with :func:`load_stack` (or :func:`numpy.load`).

    :param path: destination ``.npz`` file, written atomically.
    :param arrays: mapping from key (``[A-Za-z0-9_./-]+``) to array.
    """
    with (
        atomic_path(path) as tmp,
        zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf,
    ):
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(arrays[key]), allow_pickle=False)


def load_stack(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load every array of a ``.npz`` archive into a dict (keys without ``.npy``)."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def load_from_stack(path: str | os.PathLike, key: str) -> np.ndarray:
    """Load one array of a ``.npz`` archive without reading the others.

    :raises KeyError: naming the archive and the keys it holds when ``key`` is absent.
    """
    with np.load(path, allow_pickle=False) as data:
        if key not in data.files:
            raise KeyError(f"{path}: no entry {key!r}; it holds {sorted(data.files)}")
        return data[key]


def copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy ``src`` to ``dst`` atomically (``dst`` gets a new modification time).

    :raises FileNotFoundError: naming ``src`` when it does not exist.
    """
    if not Path(src).is_file():
        raise FileNotFoundError(f"{src}: no such file to copy to {dst}")
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def write_parquet(path: str | os.PathLike, table) -> None:
    """Write a :class:`pyarrow.Table` (or a pandas DataFrame) atomically as Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
