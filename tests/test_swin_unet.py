"""Tests of the Swin-UNet DIP network (paper Fig. 12): shapes, parameter counts, shifted-window
attention, gradients, dtype, registry integration and image-size validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dipkit.models import ARCHITECTURES, build_model, count_parameters, get_input_shape, validate_image_size
from dipkit.models.swin_unet import (
    MASK_VALUE,
    BilinearExpand,
    PatchExpand,
    SwinBlock,
    shifted_window_mask,
    swin_unet_geometry,
)

UPSAMPLERS = ("bilinear", "patch_expand")
#: a small configuration that keeps the tests fast (3 stages, 2 blocks in stage 0 -> shifted windows)
SMALL = dict(embed_dim=8, depths=(2, 1, 1), heads=(2, 4, 4), window=4, mlp_ratio=2, in_channels=3)


def _z(model, batch=1, dtype=torch.float32):
    return 0.2 * torch.rand(batch, *model.input_shape, dtype=dtype)  # upstream: U[0, 1) / 5


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("upsample", UPSAMPLERS)
@pytest.mark.parametrize("size", [(64, 64), (64, 128), (128, 64)])
def test_forward_shapes_small(upsample, size):
    m = build_model("swin_unet", 3, size, upsample=upsample, **SMALL)
    assert m.in_channels == 3 and m.input_size == size and m.image_size == size
    assert get_input_shape("swin_unet", size, upsample=upsample, **SMALL) == m.input_shape == (3, *size)
    with torch.no_grad():
        out = m(_z(m, batch=2))
    assert out.shape == (2, 3, *size)
    assert float(out.min()) > 0.0 and float(out.max()) < 1.0
    assert m.config["architecture"] == "swin_unet" and m.config["upsample"] == upsample
    with pytest.raises(ValueError, match="expects input"):
        m(torch.zeros(1, 4, *size))


def test_non_square_windows_are_per_axis():
    # 64x128, patch 4, window 8: grids 16x32, 8x16, 4x8, 2x4; a side <= 8 is one window, unshifted
    m = build_model("swin_unet", 1, (64, 128), embed_dim=8, heads=(1, 1, 1, 1), depths=(2, 2, 2, 2))
    assert m.config["grids"] == [[16, 32], [8, 16], [4, 8], [2, 4]]
    assert m.config["windows"] == [[8, 8], [8, 8], [4, 8], [2, 4]]
    # blocks alternate unshifted / shifted; the shift is window // 2 along sides longer than 8
    shifts = {0: [(0, 0), (4, 4)], 1: [(0, 0), (0, 4)], 2: [(0, 0), (0, 0)], 3: [(0, 0), (0, 0)]}
    for s, stage in enumerate(m.net.encoder):
        assert [b.shift for b in stage] == shifts[s]
    for t, stage in enumerate(m.net.decoder):
        assert [b.shift for b in stage] == shifts[t]
    with torch.no_grad():
        assert m(_z(m)).shape == (1, 1, 64, 128)


def test_default_forward_256():
    m = build_model("swin_unet", 3, (256, 256))
    assert m.input_shape == (32, 256, 256)
    with torch.no_grad():
        out = m(_z(m))
    assert out.shape == (1, 3, 256, 256)
    assert float(out.min()) > 0.0 and float(out.max()) < 1.0


# --------------------------------------------------------------------------- parameter counts


def test_default_parameter_counts_match_upstream():
    # Counted on upstream's SwinTransformerSys (img_size=512, in_chans=32) with the same options:
    # transformer.py (bilinear, its defaults) and transformer2.py with embed_dim=108, heads=[4,8,8,6].
    rgb = {u: count_parameters(build_model("swin_unet", 3, (512, 512), upsample=u)) for u in UPSAMPLERS}
    gray = {u: count_parameters(build_model("swin_unet", 1, (512, 512), upsample=u)) for u in UPSAMPLERS}
    print(f"swin_unet 512x512 RGB parameters: {rgb}")
    assert rgb == {"bilinear": 17_930_682, "patch_expand": 19_539_882}
    assert gray == {"bilinear": 17_930_466, "patch_expand": 19_539_666}
    # transformer2.py's own defaults (embed_dim 96, 4 heads everywhere)
    orig = build_model("swin_unet", 3, (512, 512), upsample="patch_expand", embed_dim=96, heads=(4, 4, 4, 4))
    assert count_parameters(orig) == 15_446_652
    # difference = the upsamplers only: 1.5 d^2 per decoder expand (d = 8C, 4C, 2C), 12C^2 - 4C final
    C = 108
    assert (
        rgb["patch_expand"] - rgb["bilinear"]
        == sum(3 * d * d // 2 for d in (8 * C, 4 * C, 2 * C)) + 12 * C * C - 4 * C
    )


def test_parameter_count_by_hand():
    # SMALL at 64x64, RGB, patch 4: grids 16, 8, 4; window 4 everywhere -> 7*7 = 49 table rows.
    def block(d, heads):  # LN + qkv + proj + rel. bias table + LN + fc1 + fc2 (mlp_ratio 2)
        return (
            2 * d
            + (3 * d * d + 3 * d)
            + (d * d + d)
            + 49 * heads
            + 2 * d
            + (2 * d * d + 2 * d)
            + (2 * d * d + d)
        )

    assert (block(8, 2), block(16, 4), block(32, 4)) == (698, 2420, 8740)
    encoder = (
        (3 * 8 * 4 * 4 + 8 + 2 * 8)  # patch embedding conv 4x4 (3 -> 8) + LayerNorm(8): 408
        + 2 * block(8, 2)  # stage 0, 2 blocks: 1396
        + (2 * 32 + 32 * 16)  # merging 8: LayerNorm(32) + Linear(32 -> 16, no bias): 576
        + block(16, 4)  # stage 1: 2420
        + (2 * 64 + 64 * 32)  # merging 16: 2176
        + block(32, 4)  # stage 2 (bottleneck): 8740
        + 2 * 32  # bottleneck LayerNorm(32)
    )
    decoder_common = (
        (32 * 16 + 16)  # skip fuse Linear(32 -> 16)
        + block(16, 4)  # stage-1 decoder block
        + (16 * 8 + 8)  # skip fuse Linear(16 -> 8)
        + 2 * block(8, 2)  # stage-0 decoder blocks
        + 2 * 8  # decoder LayerNorm(8)
        + 8 * 3  # output conv 1x1 (8 -> 3), no bias
    )
    patch_expand = (
        (32 * 64 + 2 * 16)  # expand 32: Linear(32 -> 64, no bias) + LayerNorm(16)
        + (16 * 32 + 2 * 8)  # expand 16: Linear(16 -> 32) + LayerNorm(8)
        + (8 * 128 + 2 * 8)  # final x4: Linear(8 -> 16*8, no bias) + LayerNorm(8)
    )
    bilinear = (
        (32 * 16 + 2 * 16)  # expand 32: Linear(32 -> 16, no bias) + BatchNorm(16)
        + (16 * 8 + 2 * 8)  # expand 16: Linear(16 -> 8) + BatchNorm(8)
        + (8 * 32 + 32 + 2 * 8)  # final: conv 1x1 (8 -> 32, bias) + BatchNorm(8)
    )
    assert (encoder, decoder_common, patch_expand, bilinear) == (15_780, 4_520, 3_648, 992)
    counts = {
        u: count_parameters(build_model("swin_unet", 3, (64, 64), upsample=u, **SMALL)) for u in UPSAMPLERS
    }
    print(f"swin_unet SMALL 64x64 RGB parameters: {counts}")
    assert counts == {"patch_expand": 23_948, "bilinear": 21_292}


def test_structure_of_the_upsamplers():
    bil = build_model("swin_unet", 3, (128, 128), upsample="bilinear", embed_dim=16, heads=(1, 1, 1, 1))
    pe = build_model("swin_unet", 3, (128, 128), upsample="patch_expand", embed_dim=16, heads=(1, 1, 1, 1))
    ups = [m for m in bil.modules() if isinstance(m, nn.Upsample)]
    assert [(u.scale_factor, u.mode, u.align_corners) for u in ups] == [(2.0, "bilinear", True)] * 3 + [
        (2.0, "bilinear", False)
    ]
    assert sum(isinstance(m, BilinearExpand) for m in bil.modules()) == 3
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bil.modules()) == 4
    assert any(isinstance(m, nn.PixelShuffle) for m in bil.modules())
    assert sum(isinstance(m, PatchExpand) for m in pe.modules()) == 3
    assert not any(isinstance(m, (nn.Upsample, nn.BatchNorm2d, BilinearExpand)) for m in pe.modules())
    for m in (bil, pe):
        assert isinstance(m.net.sigmoid, nn.Sigmoid) and m.net.output.bias is None
        assert not any(isinstance(x, nn.Dropout) for x in m.modules())

    # same encoder for both variants: the comparison differs only in the upsamplers
    def encoder(m):
        return [(n, p.shape) for n, p in m.named_parameters() if ".encoder." in n or ".merge." in n]

    assert encoder(bil) == encoder(pe)


# --------------------------------------------------------------------------- shifted windows


def test_toy_shift_mask():
    mask = shifted_window_mask((4, 4), (2, 2), (1, 1))
    assert mask.shape == (4, 4, 4)
    M = MASK_VALUE
    assert torch.equal(mask[0], torch.zeros(4, 4))  # top-left window: one region
    # top-right window: columns 2 (region 1) and 3 (wrapped, region 2); tokens (0,2),(0,3),(1,2),(1,3)
    assert torch.equal(mask[1], torch.tensor([[0, M, 0, M], [M, 0, M, 0], [0, M, 0, M], [M, 0, M, 0]]))
    assert torch.equal(mask[2], torch.tensor([[0, 0, M, M], [0, 0, M, M], [M, M, 0, 0], [M, M, 0, 0]]))
    assert torch.equal(mask[3], M * (1 - torch.eye(4)))  # bottom-right: four regions
    assert shifted_window_mask((4, 4), (2, 2), (0, 0)) is None


def _dense_reference(block: SwinBlock, x: torch.Tensor) -> torch.Tensor:
    """The block computed without rolling or window partitioning: full attention over all tokens,
    restricted to pairs inside the same (shifted, not wrapped) window, plus the relative bias."""
    _, h, w, C = x.shape
    (wh, ww), (sh, sw) = block.window, block.shift
    attn = block.attn
    heads, hd = attn.heads, C // attn.heads
    y = block.norm1(x).reshape(h * w, C)
    q, k, v = attn.qkv(y).reshape(h * w, 3, heads, hd).permute(1, 2, 0, 3)
    logits = (q * hd**-0.5) @ k.transpose(-2, -1)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    yy, xx = yy.reshape(-1), xx.reshape(-1)
    # window id in original coordinates: windows start at the shift, wrapped part is its own window
    gy = torch.div(yy - sh, wh, rounding_mode="floor")
    gx = torch.div(xx - sw, ww, rounding_mode="floor")
    same = (gy[:, None] == gy[None, :]) & (gx[:, None] == gx[None, :])
    dy = (yy[:, None] - yy[None, :]).clamp(-wh + 1, wh - 1) + wh - 1
    dx = (xx[:, None] - xx[None, :]).clamp(-ww + 1, ww - 1) + ww - 1
    bias = attn.relative_position_bias_table[dy * (2 * ww - 1) + dx].permute(2, 0, 1)
    logits = (logits + bias).masked_fill(~same, float("-inf"))
    out = (logits.softmax(-1) @ v).transpose(0, 1).reshape(1, h, w, C)
    x = x + attn.proj(out)
    return x + block.mlp(block.norm2(x))


@pytest.mark.parametrize(
    "grid,shifted,expected_shift",
    [((8, 12), True, (2, 2)), ((8, 12), False, (0, 0)), ((4, 12), True, (0, 2)), ((12, 8), True, (2, 2))],
)
def test_shifted_window_attention_matches_dense_reference(grid, shifted, expected_shift):
    torch.manual_seed(0)
    block = SwinBlock(8, grid, heads=2, window=4, shifted=shifted, mlp_ratio=2).to(torch.float64)
    nn.init.normal_(block.attn.relative_position_bias_table)  # make the bias matter
    assert block.shift == expected_shift
    x = torch.randn(1, *grid, 8, dtype=torch.float64)
    torch.testing.assert_close(block(x), _dense_reference(block, x), rtol=1e-10, atol=1e-10)


def test_window_covering_the_grid_disables_the_shift():
    torch.manual_seed(0)
    shifted = SwinBlock(8, (4, 4), heads=2, window=8, shifted=True, mlp_ratio=2)
    plain = SwinBlock(8, (4, 4), heads=2, window=8, shifted=False, mlp_ratio=2)
    plain.load_state_dict(shifted.state_dict())
    assert shifted.window == (4, 4) and shifted.shift == (0, 0) and shifted.attn_mask is None
    x = torch.randn(2, 4, 4, 8)
    assert torch.equal(shifted(x), plain(x))


def test_shift_is_not_a_no_op():
    torch.manual_seed(0)
    shifted = SwinBlock(8, (8, 8), heads=2, window=4, shifted=True, mlp_ratio=2)
    plain = SwinBlock(8, (8, 8), heads=2, window=4, shifted=False, mlp_ratio=2)
    plain.load_state_dict(shifted.state_dict())
    x = torch.randn(1, 8, 8, 8)
    assert not torch.allclose(shifted(x), plain(x))


# --------------------------------------------------------------------------- training, dtype


@pytest.mark.parametrize("upsample", UPSAMPLERS)
def test_gradients_flow_and_adam_reduces_mse(upsample):
    torch.manual_seed(0)
    m = build_model("swin_unet", 3, (32, 32), upsample=upsample, **SMALL)
    z = _z(m)
    g = torch.linspace(0.1, 0.9, 32)  # a fixed smooth RGB target
    target = torch.stack([g[:, None].expand(32, 32), g[None, :].expand(32, 32), g[:, None] * g[None, :]])[
        None
    ]
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = nn.functional.mse_loss(m(z), target)
        loss.backward()
        if not losses:
            assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
            assert sum(float(p.grad.abs().sum()) > 0 for p in m.parameters()) == len(list(m.parameters()))
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses


@pytest.mark.parametrize("upsample", UPSAMPLERS)
def test_float64(upsample):
    m = build_model("swin_unet", 1, (64, 128), upsample=upsample, **SMALL).to(torch.float64)
    assert all(b.dtype in (torch.float64, torch.long) for b in m.buffers())
    out = m(_z(m, dtype=torch.float64))
    assert out.dtype == torch.float64 and out.shape == (1, 1, 64, 128)
    out.mean().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float64 for p in m.parameters())


def test_deterministic_and_eval_equals_train():
    torch.manual_seed(1)
    state = torch.get_rng_state()
    get_input_shape("swin_unet", (64, 64))
    validate_image_size("swin_unet", (64, 64))
    assert torch.equal(state, torch.get_rng_state())
    a = build_model("swin_unet", 3, (64, 64), **SMALL)
    torch.manual_seed(1)
    b = build_model("swin_unet", 3, (64, 64), **SMALL)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    z = _z(a)
    with torch.no_grad():
        assert torch.equal(a.train()(z), a.train()(z))
        assert torch.equal(a.train()(z), a.eval()(z))


# --------------------------------------------------------------------------- registry, validation


def test_registry_entry():
    spec = ARCHITECTURES["swin_unet"]
    assert spec.description and "\n" not in spec.description and "transformer" in spec.source
    d = dict(spec.defaults)
    assert d["upsample"] == "bilinear" and d["embed_dim"] == 108 and tuple(d["heads"]) == (4, 8, 8, 6)
    assert tuple(d["depths"]) == (1, 1, 1, 1) and d["window"] == 8 and d["patch_size"] == 4
    assert d["in_channels"] == 32 and d["mlp_ratio"] == 4
    assert get_input_shape("swin_unet", (512, 256)) == (32, 512, 256)


def test_cli_lists_both_variants(monkeypatch):
    import dipkit.models.__main__ as cli

    monkeypatch.setattr(cli, "ARCHITECTURES", {"swin_unet": ARCHITECTURES["swin_unet"]})
    rows = cli.parameter_rows((64, 64))
    assert [(r["name"], r["variant"]) for r in rows] == [
        ("swin_unet", "upsample=bilinear"),
        ("swin_unet", "upsample=patch_expand"),
    ]
    assert rows[0]["params_3ch"] < rows[1]["params_3ch"] and rows[0]["input_shape"] == "32x64x64"
    assert cli.parameter_rows((480, 320)) == []  # sizes swin_unet cannot produce are left out


def test_image_size_validation():
    for ok in [(64, 64), (64, 128), (256, 512), (512, 512), (32, 32)]:
        validate_image_size("swin_unet", ok)
    with pytest.raises(
        ValueError, match=r"divisible by patch_size \* 2\*\*\(stages - 1\) = 4 \* 2\*\*3 = 32"
    ):
        validate_image_size("swin_unet", (100, 64))
    with pytest.raises(ValueError, match=r"12x12 token grid at stage 1.*window=8.*<= 8 or a multiple of 8"):
        build_model("swin_unet", 3, (96, 96))
    with pytest.raises(ValueError, match="multiple of 8"):
        validate_image_size("swin_unet", (480, 320))  # CBSD68 size: grid 60x40 at stage 1
    validate_image_size("swin_unet", (480, 320), window=5)
    with pytest.raises(ValueError, match=r"divisible by .* = 16"):
        validate_image_size("swin_unet", (72, 64), depths=(1, 1, 1), heads=(1, 1, 1))
    assert swin_unet_geometry((64, 128), patch_size=4, stages=4, window=8)[3]["window"] == (2, 4)


def test_invalid_options():
    with pytest.raises(ValueError, match="upsample"):
        build_model("swin_unet", 3, (64, 64), upsample="nearest")
    with pytest.raises(ValueError, match=r"stage 3 has 800 channels.*heads\[3\] = 6"):
        validate_image_size("swin_unet", (64, 64), embed_dim=100)
    with pytest.raises(ValueError, match="one entry per stage"):
        validate_image_size("swin_unet", (64, 64), heads=(4, 8, 8))
    with pytest.raises(ValueError, match="at least 2 stages"):
        validate_image_size("swin_unet", (64, 64), depths=(1,), heads=(4,))
    with pytest.raises(ValueError, match="even patch_size"):
        validate_image_size("swin_unet", (96, 96), patch_size=3)
    validate_image_size("swin_unet", (96, 96), patch_size=3, upsample="patch_expand")
    with pytest.raises(ValueError, match="window"):
        validate_image_size("swin_unet", (64, 64), window=0)
    with pytest.raises(ValueError, match="'width'"):
        build_model("swin_unet", 3, (64, 64), width=64)


def test_patch_size_2():
    for up in UPSAMPLERS:
        m = build_model("swin_unet", 3, (32, 64), upsample=up, patch_size=2, **SMALL)
        with torch.no_grad():
            assert m(_z(m)).shape == (1, 3, 32, 64)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("upsample", UPSAMPLERS)
def test_cuda(upsample):
    m = build_model("swin_unet", 3, (128, 256), upsample=upsample).cuda()
    assert all(b.device.type == "cuda" for b in m.buffers())
    out = m(_z(m).cuda())
    assert out.shape == (1, 3, 128, 256) and out.device.type == "cuda"
    out.mean().backward()
    assert all(p.grad is not None for p in m.parameters())
