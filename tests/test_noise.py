import numpy as np
import pytest
from conftest import synthetic_image

from dipkit.noise import NoiseSpec, add_noise, format_level, noise_seed
from dipkit.seeding import derive_seed


def test_noise_ids_round_trip():
    for spec, text in [
        (NoiseSpec("gaussian", 25), "gaussian25"),
        (NoiseSpec("gaussian", 12.5), "gaussian12.5"),
        (NoiseSpec("poisson", 0.01), "poisson0.01"),
        (NoiseSpec("poisson", 0.10), "poisson0.1"),
        (NoiseSpec("real"), "real"),
    ]:
        assert spec.id == text
        assert NoiseSpec.parse(text) == spec


@pytest.mark.parametrize("bad", ["gauss25", "poisson", "gaussian-5", "real1", ""])
def test_bad_noise_ids_rejected(bad):
    with pytest.raises(ValueError, match="not a noise id"):
        NoiseSpec.parse(bad)


@pytest.mark.parametrize("level", [0, -25, float("nan"), float("inf")])
def test_bad_levels_rejected(level):
    with pytest.raises(ValueError, match="positive finite"):
        format_level(level)


def test_seeds_depend_on_every_part():
    base = noise_seed(0, "Set9", "img", "gaussian25")
    assert base == noise_seed(0, "Set9", "img", "gaussian25")
    others = {
        noise_seed(1, "Set9", "img", "gaussian25"),
        noise_seed(0, "Set12", "img", "gaussian25"),
        noise_seed(0, "Set9", "img2", "gaussian25"),
        noise_seed(0, "Set9", "img", "gaussian50"),
    }
    assert base not in others and len(others) == 4
    assert 0 <= derive_seed(0, "x") < 2**63


def test_gaussian_noise_statistics_and_clipping():
    clean = np.full((128, 128, 3), 0.5, np.float32)
    noisy = add_noise(clean, NoiseSpec("gaussian", 25), seed=1)
    assert noisy.dtype == np.float32 and noisy.shape == clean.shape
    resid = noisy - clean
    assert abs(resid.std() - 25 / 255) < 0.002 and abs(resid.mean()) < 0.002
    # values are not quantised to 1/255 steps
    assert len(np.unique(noisy)) > 10000
    # clipped into [0, 1]
    edge = add_noise(np.zeros((64, 64, 1), np.float32), NoiseSpec("gaussian", 50), seed=2)
    assert edge.min() == 0.0 and edge.max() <= 1.0 and (edge == 0).mean() > 0.4


def test_gaussian_matches_formula():
    clean = synthetic_image(16, 16, 3)
    seed = 123
    rng = np.random.Generator(np.random.PCG64(seed))
    expected = np.clip(clean + rng.normal(0.0, 25 / 255, clean.shape), 0, 1).astype(np.float32)
    np.testing.assert_array_equal(add_noise(clean, NoiseSpec("gaussian", 25), seed), expected)


def test_poisson_noise_mean_and_variance():
    clean = np.full((200, 200, 1), 0.4, np.float32)
    zeta = 0.1
    noisy = add_noise(clean, NoiseSpec("poisson", zeta), seed=3)
    # y = Poisson(x / zeta) * zeta: mean x, variance x * zeta (before clipping; 0.4 rarely clips)
    assert abs(noisy.mean() - 0.4) < 0.01
    assert abs(noisy.var() - 0.4 * zeta) < 0.005
    # values are multiples of zeta
    np.testing.assert_allclose(noisy / zeta, np.round(noisy / zeta), atol=1e-5)


def test_same_seed_same_bits_different_seed_differs(image):
    spec = NoiseSpec("gaussian", 50)
    a, b, c = add_noise(image, spec, 7), add_noise(image, spec, 7), add_noise(image, spec, 8)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_real_noise_is_not_synthesised(image):
    with pytest.raises(ValueError, match="real noise"):
        add_noise(image, NoiseSpec("real"), 0)
