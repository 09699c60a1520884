import hashlib
import os

import numpy as np
import pytest

from dipkit.io import atomic_path, load_from_stack, load_stack, save_stack, write_text


def test_stack_round_trip_and_reproducible_bytes(tmp_path):
    arrays = {
        "clean/a": np.arange(12, dtype=np.uint8).reshape(2, 2, 3),
        "b": np.linspace(0, 1, 5, dtype=np.float32),
    }
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
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "folder", directory=True) as tmp:
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


def test_documented_schema_tables_match_the_code():
    from conftest import REPO

    from dipkit.columns import FIT_ROWS, NOISY_METRICS, TRAJECTORY, columns_markdown

    page = (REPO / "docs/outputs.md").read_text()
    for cols in (NOISY_METRICS, FIT_ROWS, TRAJECTORY):
        assert columns_markdown(cols) in page


def test_fit_rows_written_before_batch_size_are_upgraded(tmp_path):
    """Rows of fits made before the batch_size column existed aggregate with new ones."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dipkit.columns import FIT_ROWS, arrow_schema
    from dipkit.io import write_parquet
    from dipkit.tables import concat_parquet

    schema = arrow_schema(FIT_ROWS)
    row = {c.name: None for c in FIT_ROWS} | {"dataset": "Set9", "image": "a", "batch_size": 4}
    new = pa.Table.from_pylist([row], schema=schema)
    write_parquet(tmp_path / "new.parquet", new)
    write_parquet(
        tmp_path / "old.parquet", new.drop_columns(["batch_size"]).set_column(1, "image", pa.array(["b"]))
    )
    both = concat_parquet([tmp_path / "old.parquet", tmp_path / "new.parquet"], tmp_path / "all.parquet")
    assert both.schema.equals(schema)
    assert both.column("image").to_pylist() == ["b", "a"] and both.column("batch_size").to_pylist() == [1, 4]
    assert pq.read_table(tmp_path / "all.parquet").schema.equals(schema)
    # other tables pass unchanged; a fit table missing other columns is not "upgraded"
    other = pa.table({"x": [1]})
    write_parquet(tmp_path / "x.parquet", other)
    assert concat_parquet([tmp_path / "x.parquet"]).equals(other)
    write_parquet(tmp_path / "bad.parquet", new.drop_columns(["batch_size", "seed"]))
    with pytest.raises(pa.ArrowInvalid):
        concat_parquet([tmp_path / "bad.parquet", tmp_path / "new.parquet"])


def test_copy_file_is_atomic_and_names_a_missing_source(tmp_path):
    from dipkit.io import copy_file

    (tmp_path / "a").write_bytes(b"payload")
    copy_file(tmp_path / "a", tmp_path / "sub" / "b")
    assert (tmp_path / "sub" / "b").read_bytes() == b"payload"
    with pytest.raises(FileNotFoundError, match=r"missing: no such file to copy to"):
        copy_file(tmp_path / "missing", tmp_path / "sub" / "c")
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["b"]
