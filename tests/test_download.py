import shutil

import pytest

from dipkit.download import ChecksumError, DownloadError, download_dataset, fetch_file, sha256_file
from dipkit.manifest import builtin_datasets

SET9 = builtin_datasets()["Set9"]
HOUSE = next(f for f in SET9 if f.image == "image_House256rgb")


def _mini_mirror(mirror, tmp_path, files):
    root = tmp_path / "served"
    for f in files:
        (root / f.dataset).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mirror / f.dataset / f.file, root / f.dataset / f.file)
    return root


def test_http_download_verifies_checksum(mirror, tmp_path, http_serve):
    url = http_serve(mirror)
    dest = tmp_path / "out" / HOUSE.file
    source = fetch_file(HOUSE, dest, mirror_url=url, timeout=5, attempts=1)
    assert source == f"{url}/Set9/{HOUSE.file}"
    assert sha256_file(dest) == HOUSE.sha256
    assert [p.name for p in dest.parent.iterdir()] == [HOUSE.file]


def test_corrupted_download_fails_with_both_hashes_and_leaves_nothing(mirror, tmp_path, http_serve):
    root = _mini_mirror(mirror, tmp_path, [HOUSE])
    served = root / "Set9" / HOUSE.file
    data = bytearray(served.read_bytes())
    data[1000] ^= 0xFF
    served.write_bytes(bytes(data))
    url = http_serve(root)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ChecksumError) as err:
        fetch_file(HOUSE, out / HOUSE.file, mirror_url=url, timeout=5, attempts=2, backoff=0)
    msg = str(err.value)
    assert f"Set9/{HOUSE.file}" in msg and HOUSE.sha256 in msg and sha256_file(served) in msg
    assert list(out.iterdir()) == []


def test_http_404_is_not_retried_and_named(tmp_path, http_serve):
    url = http_serve(tmp_path)  # empty folder: every file is 404
    with pytest.raises(
        DownloadError, match=r"Set9/image_House256rgb.png from .* failed after 1 attempt\(s\): HTTP Error 404"
    ):
        fetch_file(HOUSE, tmp_path / "x.png", mirror_url=url, timeout=5, attempts=3, backoff=0)


def test_unreachable_server_retries_then_fails(tmp_path):
    # port 9 on loopback: nothing listens, the connection is refused at once
    with pytest.raises(DownloadError, match="failed after 2 attempt"):
        fetch_file(
            HOUSE, tmp_path / "x.png", mirror_url="http://127.0.0.1:9", timeout=2, attempts=2, backoff=0
        )
    assert list(tmp_path.iterdir()) == []


def test_mirror_dir_copy_and_missing_file(mirror, tmp_path):
    dest = tmp_path / "h.png"
    assert fetch_file(HOUSE, dest, mirror_dir=mirror) == str(mirror / "Set9" / HOUSE.file)
    assert sha256_file(dest) == HOUSE.sha256
    with pytest.raises(DownloadError, match="not found in mirror_dir"):
        fetch_file(HOUSE, tmp_path / "y.png", mirror_dir=tmp_path)


def test_dataset_download_is_all_or_nothing(mirror, tmp_path, http_serve):
    files = list(SET9[:3])
    root = _mini_mirror(mirror, tmp_path, files)
    (root / "Set9" / files[2].file).write_bytes(b"corrupt")
    url = http_serve(root)
    out = tmp_path / "dl" / "Set9"
    with pytest.raises(ChecksumError, match=files[2].file):
        download_dataset(files, out, mirror_url=url, timeout=5, attempts=1)
    assert not (tmp_path / "dl").exists() or list((tmp_path / "dl").iterdir()) == []
    shutil.copyfile(mirror / "Set9" / files[2].file, root / "Set9" / files[2].file)
    download_dataset(files, out, mirror_url=url, timeout=5, attempts=1)
    assert sorted(p.name for p in out.iterdir()) == sorted(f.file for f in files)
