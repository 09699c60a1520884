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
        upstream = {
            (r["dataset"], r["file"]): (r["sha256"], r["url"]) for r in csv.DictReader(fh, delimiter="\t")
        }
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
        (
            {"Set99": {"gaussian": [25]}},
            "datasets.Set99: unknown dataset; built-in datasets are Set9, Set12, CBSD68, PolyU",
        ),
        ({"Set9": {}}, "datasets.Set9: no noise given"),
        ({"Set9": {"real": True}}, "datasets.Set9.real: dataset 'Set9' has no real noisy images"),
        ({"Set9": {"gaussian": [25, 25.0]}}, "datasets.Set9.gaussian: levels repeat"),
        ({"Set9": {"gaussian": [-5]}}, "datasets.Set9.gaussian: levels must be finite numbers > 0, got -5"),
        ({"Set9": {"poisson": [float("inf")]}}, "datasets.Set9.poisson: levels must be finite numbers > 0"),
        (
            {"Set9": {"images": ["nope"], "gaussian": [25]}},
            "datasets.Set9.images: unknown image ids \\['nope'\\]",
        ),
        ({"Set9": {"channels": 1, "gaussian": [25]}}, "datasets.Set9.channels: only user datasets"),
        ({"Set9": {"path": "/tmp", "gaussian": [25]}}, "datasets.Set9.path: 'Set9' is a built-in dataset"),
        (
            {"mine": {"path": "/nonexistent/dipkit", "gaussian": [25]}},
            "datasets.mine.path: folder '/nonexistent/dipkit' does not exist",
        ),
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
    with pytest.raises(ValueError, match="map to the same image id 'b_photo'; rename one of them"):
        scan_folder("mine", tmp_path, 3)


def test_user_folder_skips_dot_files_and_keeps_letters(tmp_path):
    import re
    import unicodedata

    from dipkit.manifest import IMAGE_ID_PATTERN

    for name in ("my phötö ☃.png", "☃.png", "東京 2024.JPG", "हिन्दी.tif", "._my phötö ☃.png", ".hidden.png"):
        (tmp_path / name).write_bytes(b"")
    files = scan_folder("mine", tmp_path, 3)
    assert sorted(f.image for f in files) == sorted(["my_phötö_☃", "☃", "東京_2024", "हिन्दी"])
    assert all(re.fullmatch(IMAGE_ID_PATTERN, f.image) for f in files)
    assert not any(f.file.startswith(".") for f in files)
    # the same name in Unicode's decomposed form (as macOS writes it) is the same image
    (tmp_path / unicodedata.normalize("NFD", "my phötö ☃.jpg")).write_bytes(b"")
    with pytest.raises(ValueError, match="map to the same image id 'my_phötö_☃'"):
        scan_folder("mine", tmp_path, 3)
    only_hidden = tmp_path / "hidden"
    only_hidden.mkdir()
    (only_hidden / "._a.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"holds no image .*names starting with a dot are skipped"):
        scan_folder("mine", only_hidden, 3)
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "(1).png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"\(1\).png: cannot make an image id of the file name \(got '_1_'"):
        scan_folder("mine", odd, 3)


def _spec(method, width=32, kind="dip", width_source="labels:NoRepeat"):
    return {"method": method, "kind": kind, "arch_options": {"width": width}, "width_source": width_source}


def test_fit_batches_group_by_method_spec_and_size():
    from dipkit.config import FitBatch, plan_fit_batches

    widths = {"a": 32, "b": 64, "c": 32, "d": 32, "e": 32, "f": 32}
    sizes = {
        "a": (256, 256),
        "b": (256, 256),
        "c": (256, 256),
        "d": (512, 512),
        "e": (256, 256),
        "f": (256, 256),
    }
    fits = [("S", "gaussian25", m, i) for m in ("ours", "dip") for i in "abcdef"]
    fits += [
        ("S", "gaussian50", "ours", "a"),
        ("U", "gaussian25", "ours", "x"),
        ("U", "gaussian25", "ours", "y"),
    ]

    def spec_of(d, n, m, i):
        return _spec(m, widths.get(i, 32) if m == "ours" else 0)

    def size_of(d, i):
        return sizes[i] if d == "S" else None

    batches = plan_fit_batches(fits, spec_of, size_of, 2)
    got = [(b.dataset, b.noise, b.method, b.index, b.images) for b in batches]
    assert got == [
        ("S", "gaussian25", "ours", 1, ("a", "c")),  # width 32 at 256², in image order, at most 2
        ("S", "gaussian25", "ours", 2, ("e", "f")),
        ("S", "gaussian25", "ours", 3, ("b",)),  # width 64
        ("S", "gaussian25", "ours", 4, ("d",)),  # 512²
        ("S", "gaussian25", "dip", 1, ("a", "b")),  # one spec for every image
        ("S", "gaussian25", "dip", 2, ("c", "e")),
        ("S", "gaussian25", "dip", 3, ("f",)),
        ("S", "gaussian25", "dip", 4, ("d",)),
        ("S", "gaussian50", "ours", 1, ("a",)),
        ("U", "gaussian25", "ours", 1, ("x", "y")),  # sizes unknown: the job groups them
    ]
    assert batches[0] == FitBatch("S", "gaussian25", "ours", 1, ("a", "c"))
    assert batches[0].path == "results/fit_batches/S/gaussian25/ours/batch1"
    assert plan_fit_batches(fits, spec_of, size_of, 1) == []


def test_fit_batches_leave_unbatchable_methods_alone():
    from dipkit.config import batchable, plan_fit_batches

    specs = {
        "bm3d": _spec("bm3d", kind="classical"),
        "isnas": _spec("isnas", kind="isnas"),
        "pred": _spec("pred", width_source="predicted"),
        "ours": _spec("ours"),
    }
    assert [m for m, s in specs.items() if batchable(s)] == ["ours"]
    fits = [("S", "gaussian25", m, i) for m in specs for i in "ab"]
    batches = plan_fit_batches(fits, lambda d, n, m, i: specs[m], lambda d, i: (64, 64), 8)
    assert [(b.method, b.images) for b in batches] == [("ours", ("a", "b"))]


@pytest.mark.parametrize("key, value", [("backtracking", True), ("autocast", "bf16"), ("compile", "default")])
def test_fit_batch_refuses_what_batched_fits_lack(key, value):
    from dipkit.config import check_fit_batch

    assert check_fit_batch({"batch": 8}) == 8
    assert check_fit_batch({"batch": 1, key: value}) == 1
    with pytest.raises(ConfigError, match=rf"config key fit.batch: .* have no fit.{key}; set fit.{key} to"):
        check_fit_batch({"batch": 8, key: value})
