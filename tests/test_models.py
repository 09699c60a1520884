"""Tests of dipkit.models: parameter counts, shapes, upsamplers, FIR filters, registry API."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dipkit.architectures import ARCHITECTURE_DEFAULTS, ENCODER_DECODERS, size_rule
from dipkit.models import (
    ARCHITECTURES,
    build_model,
    count_parameters,
    frequency_response_db,
    get_filter_taps,
    get_input_shape,
    make_upsampler,
    validate_image_size,
)
from dipkit.models.filters import FILTER_DESIGNS, FILTER_TAPS, PAPER_FILTERS
from dipkit.models.layers import Concat
from dipkit.models.upsample import FIRUpsample2d, zero_insert

REQUIRED = (
    "dip",
    "hourglass",
    "deep_decoder",
    "conv_decoder",
    "conv_decoder_after",
    "conv_decoder_lpf",
    "mlp_decoder",
)
SIZES = [(480, 320), (320, 480), (256, 256), (768, 512), (64, 64)]


@pytest.fixture(
    params=[
        "cpu",
        pytest.param(
            "cuda",
            marks=[
                pytest.mark.gpu,
                pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
            ],
        ),
    ]
)
def model_device(request) -> torch.device:
    return torch.device(request.param)


def _z(model, batch=1, dtype=torch.float32, device="cpu"):
    return 0.1 * torch.rand(batch, *model.input_shape, dtype=dtype, device=device)


# --------------------------------------------------------------------------- parameter counts

# (name, options, RGB count, grayscale count); RGB counts are the published/upstream ones.
PARAM_COUNTS = [
    ("dip", {}, 2_328_807, 2_328_549),
    ("dip", {"in_channels": 32}, 2_217_831, 2_217_573),
    ("hourglass", {"width": 32}, 58_339, 58_273),
    ("hourglass", {"width": 64}, 231_363, 231_233),
    ("hourglass", {"width": 128}, 921_475, 921_217),
    ("deep_decoder", {}, 100_224, 99_968),
    ("mlp_decoder", {}, 100_224, 99_968),
    ("conv_decoder", {}, 887_427, 887_169),
    ("conv_decoder_lpf", {}, 887_427, 887_169),
    ("conv_decoder_lpf", {"upsample": "L-100"}, 887_427, 887_169),
    ("conv_decoder_after", {"width": 32}, 55_971, 55_905),
    ("conv_decoder_after", {"width": 64}, 222_531, 222_401),
    ("conv_decoder_after", {"width": 128}, 887_427, 887_169),
]


@pytest.mark.parametrize("name,opts,rgb,gray", PARAM_COUNTS)
def test_parameter_counts(name, opts, rgb, gray):
    assert count_parameters(build_model(name, 3, (512, 512), **opts)) == rgb
    assert count_parameters(build_model(name, 1, (256, 256), **opts)) == gray


def test_paper_variant_options_keep_counts():
    # paper wording (LeakyReLU, reflection) vs code (ReLU, zero): same parameter count
    base = count_parameters(build_model("hourglass", 3, (256, 256), width=64))
    alt = build_model("hourglass", 3, (256, 256), width=64, act="LeakyReLU", pad="reflection")
    assert count_parameters(alt) == base
    assert any(isinstance(m, nn.ReflectionPad2d) for m in alt.modules())
    assert any(isinstance(m, nn.LeakyReLU) for m in alt.modules())
    # one skip connection (Fig. 7) on the deepest level: conv1x1 64->4 (+bias), BN(4), BN grows by 4
    one_skip = build_model("hourglass", 3, (256, 256), width=64, num_skips=1)
    assert count_parameters(one_skip) - base == (64 * 4 + 4) + 2 * 4 + 2 * 4 + 3 * 3 * 4 * 64
    assert sum(isinstance(m, Concat) for m in one_skip.modules()) == 1


def test_mlp_decoder_without_upsampling_layers():
    counts = {}
    for layers in (6, 5, 4):
        m = build_model("mlp_decoder", 3, (64, 96), upsample="none", layers=layers)
        assert m.input_size == (64, 96)
        assert not any(isinstance(x, nn.Upsample) for x in m.modules())
        counts[layers] = count_parameters(m)
    assert counts[6] == 100_224  # removing upsamplers removes no parameters
    assert counts[6] - counts[5] == counts[5] - counts[4] == 128 * 128 + 2 * 128


def test_count_parameters_excludes_frozen():
    m = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2))
    m[1].weight.requires_grad_(False)
    assert count_parameters(m) == 8 + 2


# --------------------------------------------------------------------------- structure


def test_hourglass_structure_matches_upstream():
    m = build_model("hourglass", 3, (96, 64), width=32)
    assert m.in_channels == 32 and m.input_size == (96, 64)
    ups = [x for x in m.modules() if isinstance(x, nn.Upsample)]
    assert [u.size for u in ups] == [None, (96, 64)]  # inner level x2, outermost to the image size
    assert all(u.mode == "bilinear" and not u.align_corners for u in ups)
    assert ups[0].scale_factor == 2.0
    assert not any(isinstance(x, (Concat, nn.LeakyReLU, nn.ReflectionPad2d)) for x in m.modules())
    convs = [x for x in m.modules() if isinstance(x, nn.Conv2d)]
    assert [c.stride for c in convs].count((2, 2)) == 2
    assert len(convs) == 2 * 4 + 1
    assert isinstance(m.net[-1], nn.Sigmoid)
    assert sum(isinstance(x, nn.BatchNorm2d) for x in m.modules()) == 2 * 5


def test_dip_structure():
    m = build_model("dip", 3, (64, 64))
    assert m.in_channels == 128 and m.input_size == (64, 64)
    assert sum(isinstance(x, Concat) for x in m.modules()) == 5
    slopes = {x.negative_slope for x in m.modules() if isinstance(x, nn.LeakyReLU)}
    assert slopes == {0.2}
    assert any(isinstance(x, nn.ReflectionPad2d) for x in m.modules())


def test_conv_decoder_after_structure():
    m = build_model("conv_decoder_after", 3, (320, 480), width=32)
    assert m.input_size == (80, 120)
    ups = [x for x in m.net if isinstance(x, nn.Upsample)]
    assert [u.size for u in ups] == [(160, 240), (320, 480)]
    # the upsamplers sit before blocks L-3 and L-2 (blocks are conv, act, BN)
    layer_types = [type(x).__name__ for x in m.net]
    assert layer_types[-4:] == ["Conv2d", "BatchNorm2d", "Conv2d", "Sigmoid"]  # head without ReLU
    assert layer_types.index("Upsample") == 9


def test_concat_center_crops():
    c = Concat(nn.Identity(), nn.ZeroPad2d((1, 2, 1, 2)))
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    y = c(x)
    assert y.shape == (1, 2, 4, 4)
    assert torch.equal(y[:, 0], x[:, 0])
    assert torch.equal(y[:, 1], torch.nn.functional.pad(x, (1, 2, 1, 2))[:, 0, 1:5, 1:5])


# --------------------------------------------------------------------------- shapes


def test_registry_names():
    for name in REQUIRED:
        spec = ARCHITECTURES[name]
        assert spec.description and "\n" not in spec.description
        assert isinstance(dict(spec.defaults), dict)


@pytest.mark.parametrize("name", REQUIRED)
def test_forward_shapes(name):
    for size in SIZES:
        opts = {"width": 8}
        if name == "conv_decoder_lpf":
            opts["upsample"] = "L14"
        if name == "dip":
            opts["in_channels"] = 8  # keep the test fast; the default (128) is tested below
        m = build_model(name, 3, size, **opts)
        assert isinstance(m.in_channels, int) and isinstance(m.input_size, tuple)
        assert get_input_shape(name, size, **opts) == (m.in_channels, *m.input_size)
        batch = 2 if size == (64, 64) else 1
        with torch.no_grad():
            out = m(_z(m, batch=batch))
        assert out.shape == (batch, 3, *size)
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@pytest.mark.parametrize("name", REQUIRED)
def test_default_forward_and_input_sizes(name):
    m = build_model(name, 1, (64, 96))
    expected_input = {
        "dip": (64, 96),
        "hourglass": (64, 96),
        "conv_decoder_after": (16, 24),
    }.get(name, (2, 3))
    assert m.input_size == expected_input
    assert m.in_channels == {"dip": 128, "hourglass": 64, "conv_decoder_after": 64}.get(name, 128)
    with torch.no_grad():
        assert m(_z(m)).shape == (1, 1, 64, 96)
    with pytest.raises(ValueError, match="expects input"):
        m(torch.zeros(1, m.in_channels + 1, *m.input_size))


@pytest.mark.parametrize("upsample", ["nearest", "bilinear", "transposed", "none", "L-60", "tri"])
@pytest.mark.parametrize("name", ["deep_decoder", "conv_decoder", "conv_decoder_after", "conv_decoder_lpf"])
def test_decoder_upsamplers(name, upsample):
    size = (256, 192)
    m = build_model(name, 3, size, width=8, upsample=upsample)
    if upsample == "none":
        assert m.input_size == size
    with torch.no_grad():
        assert m(_z(m)).shape == (1, 3, *size)


@pytest.mark.parametrize("upsample", ["nearest", "transposed", "NN", "L-100", "bicubic"])
def test_hourglass_upsamplers(upsample):
    m = build_model("hourglass", 1, (128, 64), width=8, upsample=upsample, levels=3, num_skips=2)
    with torch.no_grad():
        assert m(_z(m)).shape == (1, 1, 128, 64)


def test_eval_mode_equals_train_mode():
    m = build_model("hourglass", 3, (64, 64), width=8)
    z = _z(m)
    with torch.no_grad():
        a = m.train()(z)
        b = m.eval()(z)
    assert torch.equal(a, b)


def test_init_uses_torch_rng_only():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    get_input_shape("dip", (64, 64))
    validate_image_size("conv_decoder", (64, 64))
    assert torch.equal(state, torch.get_rng_state())
    a = build_model("conv_decoder", 3, (64, 64), width=8).state_dict()
    torch.manual_seed(123)
    b = build_model("conv_decoder", 3, (64, 64), width=8).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- dtype / device


@pytest.mark.parametrize("name", REQUIRED)
def test_float64_forward(name):
    opts = {"upsample": "L-60"} if name == "conv_decoder_lpf" else {}
    m = build_model(name, 3, (160, 160), width=8, in_channels=8, **opts)
    m = m.to(torch.float64)
    assert all(b.dtype == torch.float64 for b in m.buffers())
    out = m(_z(m, dtype=torch.float64))
    assert out.dtype == torch.float64 and out.shape == (1, 3, 160, 160)
    out.mean().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float64 for p in m.parameters())


def test_device(model_device):
    m = build_model("conv_decoder_lpf", 3, (256, 192), width=8, upsample="L-60").to(model_device)
    fir = [x for x in m.modules() if isinstance(x, FIRUpsample2d)]
    assert len(fir) == 5 and all(f.kernel.device.type == model_device.type for f in fir)
    out = m(_z(m, device=model_device))
    assert out.device.type == model_device.type and out.shape == (1, 3, 256, 192)
    h = build_model("dip", 3, (64, 64), width=8).to(model_device, torch.float64)
    assert h(_z(h, dtype=torch.float64, device=model_device)).shape == (1, 3, 64, 64)


# --------------------------------------------------------------------------- FIR filters


def test_filter_taps():
    lengths = {"NN": 2, "tri": 3, "L14": 7, "L15": 9, "L-60": 17, "L-100": 17}
    for name, n in lengths.items():
        w = get_filter_taps(name)
        assert w.shape == (n,)
        assert abs(w.sum() - 1.0) < 2e-6, name
        np.testing.assert_array_equal(w, w[::-1])
    # spec values: first taps and centres
    assert get_filter_taps("L-60")[8] == 0.459933 and get_filter_taps("L-60")[0] == -0.001921
    assert get_filter_taps("L-100")[8] == 0.175182 and get_filter_taps("L-100")[16] == 0.000015
    # aliases (upstream names, typographic minus)
    assert np.array_equal(get_filter_taps("LPF5"), get_filter_taps("L-60"))
    assert np.array_equal(get_filter_taps("l\u2212100"), get_filter_taps("LPF6"))
    assert np.array_equal(get_filter_taps("LPF1"), get_filter_taps("NN"))
    with pytest.raises(ValueError, match="known filters"):
        get_filter_taps("L-42")


@pytest.mark.parametrize("name", ["L-60", "L-100", "LPF4"])
def test_filters_match_firwin(name):
    signal = pytest.importorskip("scipy.signal")
    d = FILTER_DESIGNS[name]
    ref = signal.firwin(d["numtaps"], d["cutoff"], window=d["window"])
    np.testing.assert_allclose(get_filter_taps(name), ref, atol=1e-6, rtol=0)


def test_frequency_response_matches_spec_table():
    # spec §4: |H| in dB at f = 0.25, 0.5, 0.75 (1 = Nyquist of the upsampled signal)
    table = {
        "NN": (-0.69, -3.0, -8.3),
        "tri": (-1.4, -6.0, -16.7),
        "L14": (-0.24, -3.0, -12.6),
        "L15": (-0.09, -3.0, -17.5),
        "L-60": (0.02, -9.9, -59.6),
        "L-100": (-13.9, -101.9, -112.6),
    }
    for name, expected in table.items():
        f, db = frequency_response_db(name, num=1025)
        got = [db[round(x * 1024)] for x in (0.25, 0.5, 0.75)]
        np.testing.assert_allclose(got, expected, atol=0.06, err_msg=name)
        assert np.all(np.isfinite(db)) and f[0] == 0.0 and f[-1] == 1.0
    assert set(PAPER_FILTERS) <= set(FILTER_TAPS)


# --------------------------------------------------------------------------- upsamplers


def test_zero_insertion():
    x = torch.randn(2, 3, 4, 5)
    y = zero_insert(x)
    assert y.shape == (2, 3, 8, 10)
    assert torch.equal(y[..., ::2, ::2], x)
    assert y[..., 1::2, :].abs().sum() == 0 and y[..., :, 1::2].abs().sum() == 0


def test_fir_nn_is_shifted_nearest():
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    fir = make_upsampler("NN").to(torch.float64)
    near = nn.functional.interpolate(x, scale_factor=2, mode="nearest")
    y = fir(x)
    assert y.shape == near.shape == (2, 3, 10, 14)
    # PyTorch 'same' padding (0, 1) for the 2-tap filter: advanced by one output sample,
    # last row/column repeated
    i = torch.clamp(torch.arange(10) + 1, max=9)
    j = torch.clamp(torch.arange(14) + 1, max=13)
    torch.testing.assert_close(y, near[:, :, i][:, :, :, j], rtol=0, atol=1e-12)
    # equivalently: nearest upsampling of x shifted by half an input sample
    assert not torch.allclose(y, near)


def test_fir_tri_is_linear_interpolation():
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    y = make_upsampler("tri").to(torch.float64)(x)
    torch.testing.assert_close(y[..., ::2, ::2], x)
    mid = 0.5 * (x[..., :, :-1] + x[..., :, 1:])
    torch.testing.assert_close(y[..., ::2, 1:-1:2], mid)
    torch.testing.assert_close(y[..., ::2, -1], x[..., :, -1])  # reflection at the border


def test_fir_kernel_is_fixed_buffer():
    up = make_upsampler("L-60", size=(32, 32))
    assert list(up.parameters()) == []
    assert up.kernel.shape == (1, 1, 17, 17)
    torch.testing.assert_close(
        up.kernel.sum().double(), torch.tensor(4.0, dtype=torch.float64), atol=1e-5, rtol=0
    )
    assert up(torch.zeros(1, 4, 16, 16)).shape == (1, 4, 32, 32)
    with pytest.raises(RuntimeError, match="exactly 2"):
        up(torch.zeros(1, 4, 10, 10))
    custom = make_upsampler("fir", taps=[0.25, 0.5, 0.25]).double()
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(custom(x), make_upsampler("tri").double()(x))


def test_builtin_and_transposed_upsamplers():
    x = torch.randn(1, 4, 5, 6)
    assert make_upsampler("bilinear", size=(10, 12))(x).shape == (1, 4, 10, 12)
    assert make_upsampler("nearest")(x).shape == (1, 4, 10, 12)
    t = make_upsampler("transposed", 4)
    assert count_parameters(t) == 4 * 4 * 2 * 2 + 4
    assert t(x).shape == (1, 4, 10, 12)
    assert isinstance(make_upsampler("none"), nn.Identity)
    with pytest.raises(ValueError, match="unknown upsample mode"):
        make_upsampler("cubic-ish")
    with pytest.raises(ValueError, match="channels"):
        make_upsampler("transposed")


# --------------------------------------------------------------------------- errors


def test_unknown_option_is_rejected():
    with pytest.raises(ValueError) as err:
        build_model("hourglass", 3, (64, 64), widht=64)
    msg = str(err.value)
    assert "'widht'" in msg and "width" in msg and "upsample" in msg
    with pytest.raises(ValueError, match="pad"):
        build_model("deep_decoder", 3, (64, 64), pad="reflection")  # 1x1 convs: no padding option
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("unet", 3, (64, 64))
    with pytest.raises(ValueError, match="activation"):
        build_model("hourglass", 3, (64, 64), act="swishy")
    with pytest.raises(ValueError, match="padding"):
        build_model("dip", 3, (64, 64), pad="circular")


def test_image_size_validation():
    validate_image_size("dip", (480, 320))
    with pytest.raises(ValueError, match="divisible by 32"):
        validate_image_size("dip", (481, 321))
    with pytest.raises(ValueError, match="too small"):
        build_model("dip", 3, (32, 64))
    with pytest.raises(ValueError, match="divisible by 4"):
        validate_image_size("hourglass", (66, 64))
    with pytest.raises(ValueError, match="divisible by 32"):
        build_model("conv_decoder", 3, (100, 64))
    # 17-tap reflection padding needs >= 5 px before the first upsampler: images >= 160 px
    with pytest.raises(ValueError, match=r"too small.*FIR"):
        validate_image_size("conv_decoder_lpf", (64, 64), upsample="L-60")
    validate_image_size("conv_decoder_lpf", (160, 160), upsample="L-60")
    with pytest.raises(ValueError, match="upsample='none'"):
        validate_image_size("hourglass", (64, 64), upsample="none")
    with pytest.raises(ValueError, match="input_size"):
        build_model("conv_decoder", 3, (64, 64), upsample="transposed", input_size=(4, 4))
    m = build_model("conv_decoder_after", 3, (256, 256), width=8, input_size=(64, 64))
    assert m.input_size == (64, 64) and m(_z(m)).shape == (1, 3, 256, 256)


def test_registry_presets_are_the_torch_free_defaults():
    # one source: the registry's presets are dipkit.architectures' (which the config checks use)
    assert {n: s.defaults for n, s in ARCHITECTURES.items()} == dict(ARCHITECTURE_DEFAULTS)


@pytest.mark.parametrize("name", sorted(ENCODER_DECODERS))
def test_config_size_rule_is_the_networks(name):
    """The size rule the config checks apply (before any job) is the one the networks enforce."""
    levels = ARCHITECTURE_DEFAULTS[name]["levels"]
    assert size_rule(name, {}) == (2**levels, 2 ** (levels + 1))
    for levels in (2, 3):
        multiple, smallest = size_rule(name, {"levels": levels})
        validate_image_size(name, (smallest, smallest + multiple), levels=levels)
        with pytest.raises(ValueError, match=f"not divisible by {multiple}"):
            validate_image_size(name, (smallest + multiple // 2, smallest), levels=levels)
        with pytest.raises(ValueError, match=f"each side must be at least {smallest}"):
            validate_image_size(name, (smallest - multiple, smallest), levels=levels)
    assert size_rule("conv_decoder", {"levels": 3}) is None


def test_cli_table(capsys):
    from dipkit.models.__main__ import main

    assert main([]) == 0
    out = capsys.readouterr().out
    for text in ("2,328,807", "58,339", "231,363", "921,475", "100,224", "887,427", "55,971", "58,273"):
        assert text in out
    for name in REQUIRED:
        assert name in out
