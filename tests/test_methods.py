import json

import numpy as np
import pytest
from conftest import synthetic_image

from dipkit.manifest import builtin_datasets
from dipkit.methods import METHODS, fit_spec, get_method, label_width, texture_labels
from dipkit.noise import NoiseSpec, add_noise
from dipkit.runner import fit_seed, run_fit

REQUIRED = {
    "dip",
    "deep_decoder",
    "conv_decoder",
    "ours",
    "conv_decoder_ours",
    "nas_dip",
}  # fitted by run_fit


def test_registry_has_the_table2_methods():
    assert REQUIRED | {"isnas_dip", "bm3d"} <= set(METHODS)
    from dipkit.classical import DENOISERS
    from dipkit.models import ARCHITECTURES

    for m in METHODS.values():
        assert m.architecture in (DENOISERS if m.kind == "classical" else ARCHITECTURES)


def test_every_released_label_maps_to_a_manifest_image():
    images = {(d, f.image) for d, files in builtin_datasets().items() for f in files}
    labels = texture_labels()
    assert len(labels["NoRepeat"]) == 86 and len(labels["wRepeat"]) == 88
    for variant in labels.values():
        assert set(variant) <= images


@pytest.mark.parametrize(
    "dataset, image, width, source",
    [
        ("Set9", "image_House256rgb", 32, "labels:NoRepeat"),
        ("Set9", "kodim01", 128, "labels:NoRepeat"),
        ("Set12", "09", 64, "labels:NoRepeat"),
        ("CBSD68", "3096", 32, "labels:NoRepeat"),  # Texture-DIP 0000.png
        ("CBSD68", "19021", 64, "labels:wRepeat"),  # 0004.png: only in wRepeat, at 64
        ("CBSD68", "229036", 64, "fallback"),  # 0048.png: wRepeat 64 and 128 -> ambiguous
        ("PolyU", "Canon5D2_5_160_3200_chair_11", 64, "fallback"),
    ],
)
def test_label_widths(dataset, image, width, source):
    assert label_width(dataset, image, fallback=64) == (width, source)


def test_fit_spec_resolves_width_and_perturbation():
    ours = get_method("ours")
    spec = fit_spec(ours, "Set9", "kodim01", "gaussian50")
    assert spec["arch_options"] == {"levels": 2, "width": 128} and spec["width_source"] == "labels:NoRepeat"
    assert spec["reg_noise_std"] == pytest.approx(1 / 20) and spec["iterations"] == 3000
    assert fit_spec(ours, "Set9", "kodim01", "gaussian25")["reg_noise_std"] == pytest.approx(1 / 30)
    assert fit_spec(get_method("deep_decoder"), "Set9", "kodim01", "gaussian25")["reg_noise_std"] == 0.0
    fixed = fit_spec(get_method("ours", {"width": 32}), "Set9", "kodim01", "gaussian25", {"iterations": 50})
    assert (
        fixed["arch_options"]["width"] == 32
        and fixed["width_source"] == "fixed"
        and fixed["iterations"] == 50
    )
    custom = get_method("dip", {"reg_noise_std": {"gaussian25": 0.01, "default": 0.02}, "lr": 0.005})
    assert fit_spec(custom, "Set9", "x", "gaussian25")["reg_noise_std"] == 0.01
    assert fit_spec(custom, "Set9", "x", "poisson0.1")["reg_noise_std"] == 0.02
    json.dumps(spec)  # a param: must serialise


def test_unknown_method_and_override_are_errors():
    with pytest.raises(ValueError, match=r"config key methods.nope: unknown method; registered: dip"):
        get_method("nope")
    with pytest.raises(ValueError, match=r"methods.dip: unknown keys \['lrate'\]"):
        get_method("dip", {"lrate": 0.1})


@pytest.fixture(scope="module")
def pair():
    clean = synthetic_image(64, 64, 3, seed=4)
    return clean, add_noise(clean, NoiseSpec("gaussian", 25), 11)


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_every_method_fits_a_small_crop(name, pair):
    clean, noisy = pair
    spec = fit_spec(get_method(name), "Set9", "image_House256rgb", "gaussian25", {"iterations": 30})
    result, n_params, _ = run_fit(clean, noisy, spec, seed=5, device="cpu")
    loss = result.trajectory["loss"]
    assert np.isfinite(loss).all() and loss[-5:].mean() < 0.7 * loss[:3].mean()
    out = result.output.numpy()
    assert out.shape == (1, 3, 64, 64) and np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert n_params > 0 and np.isfinite(result.psnr_last)


def test_seeded_fit_repeats_bit_for_bit(pair):
    clean, noisy = pair
    spec = fit_spec(get_method("ours"), "Set9", "image_House256rgb", "gaussian25", {"iterations": 15})
    seed = fit_seed(0, "Set9", "image_House256rgb", "gaussian25", "ours")
    a, _, _ = run_fit(clean, noisy, spec, seed, device="cpu")
    b, _, _ = run_fit(clean, noisy, spec, seed, device="cpu")
    c, _, _ = run_fit(clean, noisy, spec, seed + 1, device="cpu")
    assert a.output.numpy().tobytes() == b.output.numpy().tobytes()
    np.testing.assert_array_equal(a.trajectory["loss"], b.trajectory["loss"])
    assert a.output.numpy().tobytes() != c.output.numpy().tobytes()


def test_too_small_image_is_a_clear_error(pair):
    clean, noisy = pair
    spec = fit_spec(get_method("dip"), "Set9", "x", "gaussian25", {"iterations": 2})
    with pytest.raises(
        ValueError,
        match=r"method dip \(architecture dip\), image 48x48: image size 48x48 is not divisible by 32",
    ):
        run_fit(clean[:48, :48], noisy[:48, :48], spec, 0, device="cpu")


def test_variants_and_width_sources():
    hg = get_method("hourglass32", {"base": "ours", "width": 32})
    assert hg.name == "hourglass32" and hg.width_source is None and hg.arch_options["width"] == 32
    spec = fit_spec(hg, "Set9", "kodim01", "gaussian25")
    assert spec["method"] == "hourglass32" and spec["width"] == 32 and spec["width_source"] == "fixed"
    pred = fit_spec(get_method("ours", {"width": "predicted"}), "Set9", "kodim01", "gaussian25")
    assert pred["width_source"] == "predicted" and pred["arch_options"]["width"] is None
    with pytest.raises(ValueError, match=r"methods.x.base: unknown method 'nope'"):
        get_method("x", {"base": "nope"})
    with pytest.raises(ValueError, match="a variant cannot take a registered name"):
        get_method("dip", {"base": "ours"})
    with pytest.raises(
        ValueError, match=r"methods.ours.width: expected 'labels' or 'predicted' or a positive integer"
    ):
        get_method("ours", {"width": "wide"})
