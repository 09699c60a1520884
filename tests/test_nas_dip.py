"""Tests of the NAS-DIP network (dipkit.models.nas_dip) and its search space
(dipkit.nas_search_space): parameter counts, cell-index decoding, skip matrices, shapes,
ISNAS-DIP-style sampling, options and validation."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from dipkit.models import (
    ARCHITECTURES,
    NASArchitecture,
    UpsampleCell,
    build_model,
    count_parameters,
    get_input_shape,
    sample_nas_architecture,
    validate_image_size,
)
from dipkit.models.nas_dip import NASUpsampleCell
from dipkit.nas_search_space import (
    INVALID_CELL_INDICES,
    ISNAS_NUM_CELL_INDICES,
    NUM_CELL_INDICES,
    cell_index,
    decode_cell_index,
    describe,
    is_valid_cell_index,
    nas_dip_architecture,
    nas_dip_skips,
)

NAS_DIP_BITS = "1111101111001110001100001"


def _z(model, batch=1):
    return 0.1 * torch.rand(batch, *model.input_shape)  # NAS-DIP / ISNAS-DIP: U[0, 0.1)


def _hand_count(out_channels: int, cin: int = 32, c: int = 128, k: int = 3, cell_k: int = 5) -> dict:
    """Parameter count of upstream's model_denoising.Model(model_index=158), block by block."""
    conv = lambda i, o, kk: i * o * kk * kk + o  # noqa: E731  (with bias)
    bn = 2 * c
    enc = (conv(cin, c, k) + bn + conv(c, c, k) + bn) + 4 * (2 * (conv(c, c, k) + bn))
    same = (conv(cin, c, 1) + bn) + 4 * (conv(c, c, 1) + bn)
    cells = 9 * (c // 4) * c * cell_k * cell_k  # 4 skip_up + 5 up; split-stack-sum conv, no bias
    down = (conv(cin, c, k) + bn) + 3 * (conv(c, c, k) + bn)  # upstream's unused skip_down blocks
    dec = 5 * (bn + 2 * (conv(c, c, k) + bn) + conv(c, c, 1) + bn)
    out = conv(c, out_channels, 1)
    return dict(total=enc + same + cells + down + dec + out, unused=down)


# --------------------------------------------------------------------------- parameter counts


def test_parameter_counts_match_upstream():
    # upstream model_denoising.Model(model_index=158): 4,405,635 (RGB), Table 2: "4.4M"
    rgb = build_model("nas_dip", 3, (64, 64))
    gray = build_model("nas_dip", 1, (64, 64))
    assert count_parameters(rgb) == 4_405_635 == _hand_count(3)["total"]
    assert count_parameters(gray) == 4_405_377 == _hand_count(1)["total"]
    # without upstream's never-used downsampling skip blocks
    pruned = build_model("nas_dip", 3, (64, 64), keep_unused=False)
    assert _hand_count(3)["unused"] == 480_768
    assert count_parameters(pruned) == 3_924_867 == 4_405_635 - 480_768
    assert all(m is None for m in pruned.net.down)


def test_unused_blocks_get_no_gradient():
    m = build_model("nas_dip", 3, (64, 64), width=16, in_channels=4)
    out = m(_z(m))
    out.mean().backward()
    unused = {id(p) for block in m.net.down for p in block.parameters()}
    for p in m.parameters():
        assert (p.grad is None) == (id(p) in unused)


# --------------------------------------------------------------------------- search space


def test_cell_index_decoding():
    # rows of upstream's NAS/index_to_model_mapping.log (row i = model_index i)
    expected = {
        0: ("bilinear", "conv", 1, "none", False),
        32: ("bilinear", "split_stack_sum", 5, "LeakyReLU", False),
        60: ("bilinear", "identity", 1, "none", False),
        158: ("nearest", "split_stack_sum", 5, "LeakyReLU", False),
        236: ("pixel_shuffle", "sep_conv", 7, "LeakyReLU", False),
        249: ("pixel_shuffle", "identity", 1, "none", False),
        252: ("pixel_shuffle", "conv", 1, "none", True),
        299: ("pixel_shuffle", "sep_conv", 7, "LeakyReLU", True),
        312: ("trans_conv", "identity", 1, "none", False),
        320: ("trans_conv", "identity", 5, "LeakyReLU", False),
        323: ("trans_conv", "identity", 7, "LeakyReLU", False),
    }
    for i, (prim, conv, k, act, first) in expected.items():
        assert decode_cell_index(i) == UpsampleCell(prim, conv, k, act, conv_first=first), i
    # the table is a bijection on 0..323, and invalid cells are exactly the 27 known ones
    cells = [decode_cell_index(i) for i in range(NUM_CELL_INDICES)]
    assert len(set(cells)) == NUM_CELL_INDICES
    assert all(cell_index(c) == i and c.index == i for i, c in enumerate(cells))
    assert {i for i in range(NUM_CELL_INDICES) if not is_valid_cell_index(i, 128)} == set(
        INVALID_CELL_INDICES
    )
    assert len(INVALID_CELL_INDICES) == 27 and ISNAS_NUM_CELL_INDICES == 321
    assert UpsampleCell("trans_conv", "conv", 3, "ReLU").index is None  # not in upstream's table
    for bad in (-1, 324, 1.5, "158", True):
        with pytest.raises(ValueError):
            decode_cell_index(bad)


@pytest.mark.parametrize("index", [0, 20, 45, 101, 158, 213, 230, 262, 281, 294, 318])
def test_cells_upsample_by_two(index):
    cell = NASUpsampleCell(decode_cell_index(index), 16)
    with torch.no_grad():
        assert cell(torch.randn(2, 16, 5, 3)).shape == (2, 16, 10, 6)


def test_cell_158_structure():
    cell = NASUpsampleCell(decode_cell_index(158), 128)
    kinds = [type(m).__name__ for m in cell]
    assert kinds == ["Upsample", "LeakyReLU", "_SplitStackSum", "Conv2d", "LeakyReLU"]
    conv = cell[3]
    assert conv.in_channels == 32 and conv.out_channels == 128 and conv.kernel_size == (5, 5)
    assert conv.bias is None and conv.padding == (2, 2) and cell[0].mode == "nearest"
    # split-stack-sum adds the four channel groups
    x = torch.randn(1, 8, 2, 2)
    torch.testing.assert_close(cell[2](x), x[:, 0:2] + x[:, 2:4] + x[:, 4:6] + x[:, 6:8])


def test_invalid_cells_raise():
    for i in (237, 248, 249, 251, 300, 311):
        with pytest.raises(ValueError, match="cannot be built"):
            build_model("nas_dip", 3, (64, 64), model_index=i)
        with pytest.raises(ValueError, match="cannot be built"):
            validate_image_size("nas_dip", (64, 64), model_index=i)
    with pytest.raises(ValueError, match="model_index"):
        build_model("nas_dip", 3, (64, 64), model_index=324)
    with pytest.raises(ValueError, match="divisible by 4"):
        build_model("nas_dip", 3, (64, 64), model_index=276, width=18)  # pixel shuffle


def test_nas_dip_architecture_and_skips():
    arch = nas_dip_architecture()
    assert arch.model_index == 158 and arch.levels == 5 and arch.num_skips == 15
    assert arch.skip_bits == NAS_DIP_BITS and arch.skips == nas_dip_skips(5)
    assert arch.token == "158:" + NAS_DIP_BITS
    assert arch.isnas_name == "0_158_iteration_4000_sigma_25_skip_" + NAS_DIP_BITS
    assert nas_dip_skips(3) == ((1, 1, 1), (0, 1, 1), (0, 0, 1))
    text = describe()
    assert "cell 158" in text and "nearest x2 -> LeakyReLU -> split_stack_sum 5x5 -> LeakyReLU" in text
    assert "11111 01111 00111 00011 00001" in text
    # all spellings of the same architecture
    for spec in (
        arch,
        158,
        "158",
        arch.token,
        arch.isnas_name,
        arch.to_dict(),
        {"model_index": 158},
        {
            "cell": {
                "primitive": "nearest",
                "conv": "split_stack_sum",
                "kernel_size": 5,
                "activation": "LeakyReLU",
            }
        },
        {"model_index": 158, "skips": np.triu(np.ones((5, 5), dtype=int))},
        "nearest/split_stack_sum/5/LeakyReLU:11111|01111|00111|00011|00001",
    ):
        assert NASArchitecture.from_spec(spec) == arch, spec
    odd = NASArchitecture(UpsampleCell("trans_conv", "conv", 3, "ReLU"), "1101")
    assert odd.levels == 2 and odd.model_index is None
    assert NASArchitecture.from_spec(odd.token) == odd
    with pytest.raises(ValueError, match="ISNAS"):
        _ = odd.isnas_name
    for bad in ("158:0101", "foo", {"skips": NAS_DIP_BITS}, {"model_index": 158, "skips": "2" * 25}, 1.0):
        with pytest.raises(ValueError):
            NASArchitecture.from_spec(bad, levels=5)


# --------------------------------------------------------------------------- sampling (ISNAS-DIP)


def test_search_space_imports_without_torch():
    # configs and the ISNAS-DIP search read architectures without torch
    code = (
        "import sys, dipkit.nas_search_space as space; "
        "token = space.sample_nas_architecture(7).token; "
        "assert 'torch' not in sys.modules, 'torch was imported'; print(token)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == sample_nas_architecture(7).token


def test_sampling_is_deterministic_and_covers_the_space():
    a = [sample_nas_architecture(np.random.default_rng(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng1, rng2 = np.random.default_rng(11), np.random.default_rng(11)
    seq1 = [sample_nas_architecture(rng1) for _ in range(200)]
    seq2 = [sample_nas_architecture(rng2) for _ in range(200)]
    assert seq1 == seq2
    assert sample_nas_architecture(3) == sample_nas_architecture(np.random.default_rng(3))
    assert len({sample_nas_architecture(s) for s in range(10)}) == 10
    idx = [x.model_index for x in seq1]
    assert all(0 <= i < ISNAS_NUM_CELL_INDICES and i not in INVALID_CELL_INDICES for i in idx)
    assert len(set(idx)) > 100
    assert {x.cell.primitive for x in seq1} == {
        "bilinear",
        "bicubic",
        "nearest",
        "pixel_shuffle",
        "trans_conv",
    }
    assert {x.cell.conv for x in seq1} == {
        "conv",
        "trans_conv",
        "split_stack_sum",
        "sep_conv",
        "depth_wise_conv",
        "identity",
    }
    assert any(x.cell.conv_first for x in seq1) and any(
        x.cell.primitive == "pixel_shuffle" and not x.cell.conv_first for x in seq1
    )
    bits = np.array([[int(b) for b in x.skip_bits] for x in seq1])
    assert (
        bits.shape == (200, 25)
        and 0.4 < bits.mean() < 0.6
        and bits.min(0).max() == 0
        and bits.max(0).min() == 1
    )
    small = sample_nas_architecture(np.random.default_rng(0), levels=3)
    assert small.levels == 3 and len(small.skip_bits) == 9


@pytest.mark.parametrize("seed", range(6))
def test_sampled_architectures_build_and_run(seed):
    arch = sample_nas_architecture(np.random.default_rng(seed))
    torch.manual_seed(seed)
    # ISNAS-DIP's random search feeds noise with the image's channel count; width 32 keeps it fast
    m = build_model("nas_dip", 3, (64, 64), genotype=arch, in_channels=3, width=32)
    assert (
        m.genotype == arch
        and m.config["genotype"] == arch.token
        and m.config["model_index"] == arch.model_index
    )
    with torch.no_grad():
        out = m(_z(m))
    assert out.shape == (1, 3, 64, 64)
    assert torch.isfinite(out).all() and float(out.min()) > 0.0 and float(out.max()) < 1.0
    assert arch.describe() in m.describe()
    # same architecture through model_index/skips: same modules, same weights for the same seed
    torch.manual_seed(seed)
    m2 = build_model(
        "nas_dip", 3, (64, 64), model_index=arch.model_index, skips=arch.skip_bits, in_channels=3, width=32
    )
    a, b = m.state_dict(), m2.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sampled_architecture_full_width():
    arch = sample_nas_architecture(np.random.default_rng(2024))
    m = build_model("nas_dip", 1, (64, 64), genotype=arch.isnas_name, in_channels=1)
    with torch.no_grad():
        out = m(_z(m))
    assert out.shape == (1, 1, 64, 64) and torch.isfinite(out).all()


# --------------------------------------------------------------------------- shapes, registry


def test_registry_entry():
    spec = ARCHITECTURES["nas_dip"]
    assert spec.description and "\n" not in spec.description and "model_denoising" in spec.source
    d = dict(spec.defaults)
    assert d["model_index"] == 158 and d["skips"] is None and d["genotype"] is None
    assert d["levels"] == 5 and d["width"] == 128 and d["in_channels"] == 32
    assert d["act"] == "LeakyReLU" and d["pad"] == "reflection" and d["keep_unused"] is True
    assert get_input_shape("nas_dip", (512, 256)) == (32, 512, 256)


@pytest.mark.parametrize("size", [(64, 64), (64, 128)])
def test_default_forward_shapes(size):
    torch.manual_seed(0)
    m = build_model("nas_dip", 3, size)
    assert m.in_channels == 32 and m.input_size == size and m.image_size == size and m.out_channels == 3
    assert m.input_shape == (32, *size)
    with torch.no_grad():
        out = m(_z(m, batch=2 if size == (64, 64) else 1))
    assert out.shape[1:] == (3, *size)
    assert torch.isfinite(out).all() and float(out.min()) > 0.0 and float(out.max()) < 1.0
    c = m.config
    assert c["architecture"] == "nas_dip" and c["model_index"] == 158 and c["skips"] == NAS_DIP_BITS
    assert c["cell"]["conv"] == "split_stack_sum" and c["width"] == 128
    with pytest.raises(ValueError, match="expects input"):
        m(torch.zeros(1, 3, *size))


def test_options_shapes_and_modes():
    opts = dict(width=16, in_channels=8)
    m = build_model("nas_dip", 1, (128, 64), levels=3, skips="101010011", pad="zero", act="ReLU", **opts)
    assert m.genotype.levels == 3 and len(m.net.enc) == 3 and m.config["skips"] == "101010011"
    with torch.no_grad():
        assert m(_z(m)).shape == (1, 1, 128, 64)
    m = build_model("nas_dip", 3, (64, 64), need1x1_up=False, need_sigmoid=False, downsample="avg", **opts)
    with torch.no_grad():
        assert m(_z(m)).shape == (1, 3, 64, 64)
    z = _z(m)
    with torch.no_grad():
        assert torch.equal(m.train()(z), m.eval()(z))  # BatchNorm always uses batch statistics


def test_image_size_validation():
    validate_image_size("nas_dip", (64, 64))
    validate_image_size("nas_dip", (480, 320))
    with pytest.raises(ValueError, match="divisible by 32"):
        validate_image_size("nas_dip", (100, 64))
    with pytest.raises(ValueError, match="divisible by 32"):
        build_model("nas_dip", 3, (481, 321))
    with pytest.raises(ValueError, match="too small"):
        build_model("nas_dip", 3, (32, 64))
    validate_image_size("nas_dip", (72, 64), levels=3)
    with pytest.raises(ValueError, match="divisible by 8"):
        validate_image_size("nas_dip", (68, 64), levels=3)


def test_option_errors():
    with pytest.raises(ValueError, match="5x5"):
        build_model("nas_dip", 3, (64, 64), skips="1111")
    with pytest.raises(ValueError, match="either genotype or model_index"):
        build_model("nas_dip", 3, (64, 64), genotype="12:" + NAS_DIP_BITS, model_index=13)
    with pytest.raises(ValueError, match="either genotype or skips"):
        build_model("nas_dip", 3, (64, 64), genotype=158, skips="1" * 25)
    with pytest.raises(ValueError, match="levels"):
        build_model("nas_dip", 3, (64, 64), genotype="158:111101111")  # 3x3 matrix, levels=5
    with pytest.raises(ValueError, match="padding"):
        build_model("nas_dip", 3, (64, 64), pad="circular")
    with pytest.raises(ValueError, match="unknown option"):
        build_model("nas_dip", 3, (64, 64), architecture="x")
