import hashlib
import os

import numpy as np
import pytest

from dipkit.io import atomic_path, load_from_stack, load_stack, save_stack, write_text


def test_stack_round_trip_and_reproducible_bytes(tmp_path):
    arrays = {"clean/a": np.arange(12, dtype=np.uint8).reshape(2, 2, 3), "b": np.linspace(0, 1, 5, dtype=np.float32)}
    p1, p2 = tmp_path / "one.npz", tmp_path / "two.npz"
    save_stack(p1, arrays)
    os.utime(tmp_path, (0, 0))
    save_stack(p2, dict(reversed(list(arrays.items()))))
    assert hashlib.sha256(p1.read_bytes()).digest() == hashlib.sha256(p2.read_bytes()).digest()
    back = load_stack(p1)
    assert set(back) == set(arrays)
    for k in arrays:
        np.testing.assert_array_equal(back[k], arrays[k])
        assert back[k].dtype == arrays[k].dtype
    np.testing.assert_array_equal(load_from_stack(p1, "b"), arrays["b"])
    with pytest.raises(KeyError, match="no entry 'zzz'"):
        load_from_stack(p1, "zzz")


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "folder", directory=True) as tmp:
            (tmp / "x").write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces_and_respects_umask(tmp_path):
    target = tmp_path / "out.txt"
    write_text(target, "one")
    write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_readme_schema_tables_match_the_code():
    from conftest import REPO
    from dipkit.schemas import FIT_ROWS, NOISY_METRICS, TRAJECTORY, columns_markdown

    readme = (REPO / "README.md").read_text()
    for cols in (NOISY_METRICS, FIT_ROWS, TRAJECTORY):
        assert columns_markdown(cols) in readme
