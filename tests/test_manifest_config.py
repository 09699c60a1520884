import csv

import pytest

from dipkit.config import ConfigError, plan_datasets
from dipkit.manifest import builtin_datasets, scan_folder


def test_manifest_lists_every_file(mirror):
    ds = builtin_datasets()
    counts = {name: len({f.image for f in files}) for name, files in ds.items()}
    assert counts == {"Set9": 9, "Set12": 12, "CBSD68": 68, "PolyU": 100}
    assert sum(len(v) for v in ds.values()) == 9 + 12 + 68 + 200
    assert {f.role for f in ds["PolyU"]} == {"clean", "noisy"}
    assert {f.channels for f in ds["Set12"]} == {1}
    with open(mirror / "MANIFEST.tsv", newline="") as fh:
        upstream = {(r["dataset"], r["file"]): (r["sha256"], r["url"]) for r in csv.DictReader(fh, delimiter="\t")}
    ours = {(f.dataset, f.file): (f.sha256, f.url) for files in ds.values() for f in files}
    assert ours == upstream


def test_plan_defaults_and_subsets():
    plans = plan_datasets(
        {
            "datasets": {
                "Set9": {"gaussian": [25, 50], "poisson": [0.01]},
                "PolyU": {"real": True, "max_images": 3},
                "Set12": {"images": ["05", "01"], "gaussian": [15]},
            }
        }
    )
    assert plans["Set9"].noise_ids == ("gaussian25", "gaussian50", "poisson0.01")
    assert len(plans["Set9"].images) == 9 and plans["Set9"].channels == 3
    assert plans["PolyU"].paired and len(plans["PolyU"].files) == 6
    assert plans["Set12"].images == ("05", "01") and plans["Set12"].channels == 1


@pytest.mark.parametrize(
    "datasets, message",
    [
        ({"Set99": {"gaussian": [25]}}, "datasets.Set99: unknown dataset; built-in datasets are Set9, Set12, CBSD68, PolyU"),
        ({"Set9": {}}, "datasets.Set9: no noise given"),
        ({"Set9": {"real": True}}, "datasets.Set9.real: dataset 'Set9' has no real noisy images"),
        ({"Set9": {"gaussian": [25, 25.0]}}, "datasets.Set9.gaussian: levels repeat"),
        ({"Set9": {"gaussian": [-5]}}, "datasets.Set9.gaussian: levels must be > 0"),
        ({"Set9": {"images": ["nope"], "gaussian": [25]}}, "datasets.Set9.images: unknown image ids \\['nope'\\]"),
        ({"Set9": {"channels": 1, "gaussian": [25]}}, "datasets.Set9.channels: only user datasets"),
        ({"Set9": {"path": "/tmp", "gaussian": [25]}}, "datasets.Set9.path: 'Set9' is a built-in dataset"),
        ({"mine": {"path": "/nonexistent/dipkit", "gaussian": [25]}}, "datasets.mine.path: folder '/nonexistent/dipkit' does not exist"),
        ({}, "config key datasets: no dataset configured"),
    ],
)
def test_plan_errors_name_the_key(datasets, message):
    with pytest.raises(ConfigError, match=message):
        plan_datasets({"datasets": datasets})


def test_user_folder(tmp_path):
    with pytest.raises(ValueError, match="holds no image"):
        scan_folder("mine", tmp_path, 3)
    (tmp_path / "b photo.PNG").write_bytes(b"")
    (tmp_path / "a.jpg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    files = scan_folder("mine", tmp_path, 3)
    assert [f.image for f in files] == ["a", "b_photo"]
    assert all(f.path and f.role == "clean" for f in files)
    (tmp_path / "b_photo.png").write_bytes(b"")
    with pytest.raises(ValueError, match="map to the same image id 'b_photo'"):
        scan_folder("mine", tmp_path, 3)
