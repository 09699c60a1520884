import numpy as np
import pytest
from conftest import synthetic_image

from dipkit.classical import noise_sigma, run_classical
from dipkit.methods import fit_spec, get_method
from dipkit.noise import NoiseSpec, add_noise


@pytest.mark.parametrize("channels", [1, 3])
def test_bm3d_beats_the_noisy_input(channels):
    clean = synthetic_image(64, 64, channels, seed=3)
    noisy = add_noise(clean, NoiseSpec("gaussian", 25), 1)
    r = run_classical("bm3d", clean, noisy, "gaussian25")
    assert r["output"].shape == clean.shape and r["output"].dtype == np.float32
    assert r["psnr_last"] > r["psnr_input"] + 5  # ~20 dB in, well over 25 dB out
    assert r["sigma_source"] == "oracle" and r["sigma"] == pytest.approx(25 / 255)


def test_sigma_is_estimated_for_poisson_noise():
    clean = synthetic_image(64, 64, 3, seed=3)
    noisy = add_noise(clean, NoiseSpec("poisson", 0.1), 2)
    sigma, source = noise_sigma(noisy, "poisson0.1")
    assert source == "estimated" and 0.05 < sigma < 0.4


def test_bm3d_is_a_registered_classical_method():
    spec = fit_spec(get_method("bm3d"), "Set9", "x", "gaussian25", {"iterations": 30})
    assert spec["kind"] == "classical" and spec["architecture"] == "bm3d" and spec["iterations"] == 1
    with pytest.raises(ValueError, match="unknown classical denoiser"):
        run_classical("nlm", None, np.zeros((8, 8, 1), np.float32), "gaussian25")
