"""The float16-safe NAFNet statistics (isp.stages.nafnet): equal to the textbook formulation in float32, and
finite and accurate where float16 breaks that one (large activations, flat pixels, big spatial sums)."""
from __future__ import annotations

import torch

from isp.stages.nafnet import LAYER_NORM_EPS, channel_layer_norm, channel_layer_norm_reference, spatial_mean


def _case(seed: int, c: int = 32, h: int = 24, w: int = 40, scale: float = 1.0, offset: float = 0.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, c, h, w, generator=g, dtype=torch.float64) * scale + offset
    return x, torch.rand(c, generator=g, dtype=torch.float64) + 0.5, torch.randn(c, generator=g, dtype=torch.float64)


def test_layer_norm_equals_reference_in_float32():
    for seed, scale, offset in ((0, 1.0, 0.0), (1, 30.0, 5.0), (2, 1e-3, 2.0), (3, 300.0, -100.0)):
        x, wt, b = _case(seed, scale=scale, offset=offset)
        want = channel_layer_norm_reference(x, wt, b)                      # float64 truth
        got = channel_layer_norm(x.float(), wt.float(), b.float()).double()
        ref32 = channel_layer_norm_reference(x.float(), wt.float(), b.float()).double()
        err, err_ref = (got - want).abs().max().item(), (ref32 - want).abs().max().item()
        assert err < 2e-5 or err <= err_ref, (seed, err, err_ref)       # as close as float32 allows


def test_layer_norm_flat_pixels_and_float16():
    x, wt, b = _case(4, scale=200.0, offset=50.0)                           # squares overflow fp16 (> 256^2)
    x[:, :, :4] = 7.0                                                       # exactly flat pixels: y = bias
    x[:, :, 4:8] = 7.0 + 1e-4 * torch.randn_like(x[:, :, 4:8])              # nearly flat (below sqrt(eps))
    x, wt, b = x.half().double(), wt.half().double(), b.half().double()     # the inputs float16 can hold
    truth = channel_layer_norm_reference(x, wt, b)
    new16 = channel_layer_norm(x.half(), wt.half(), b.half()).double()
    old16 = channel_layer_norm_reference(x.half(), wt.half(), b.half()).double()
    assert torch.isfinite(new16).all()
    assert (new16 - truth).abs().max().item() < 0.05
    assert (old16 - truth).abs().max().item() > 1.0 or not torch.isfinite(old16).all()   # why it exists
    assert torch.allclose(new16[:, :, :4], b.view(1, -1, 1, 1).expand_as(new16[:, :, :4]).double(), atol=1e-2)


def test_spatial_mean_equals_mean_and_survives_float16():
    for h, w in ((24, 40), (128, 128), (17, 19), (6, 6), (192, 160)):
        x = torch.rand(1, 4, h, w, dtype=torch.float64) + 1.0
        torch.testing.assert_close(spatial_mean(x), x.mean(dim=(2, 3), keepdim=True), rtol=1e-12, atol=1e-12)
    x = torch.rand(1, 2, 512, 512, dtype=torch.float64) * 0.2 + 0.9
    truth = x.mean(dim=(2, 3), keepdim=True)
    got = spatial_mean(x.half()).double()
    # float16 spacing at 1.0 is 2^-10: a mean of block means stays within a few of them
    assert (got - truth).abs().max().item() < 4 * 2 ** -10
    assert x.half().sum(dim=(2, 3)).isinf().all() or x.half().sum(dim=(2, 3)).max() >= 65504   # the naive sum


def test_eps_is_the_official_one():
    assert LAYER_NORM_EPS == 1e-5


def test_with_statistics_switches_forms_on_a_copy():
    from isp.stages.nafnet import NAFNet, NAFNetConfig, with_statistics
    torch.manual_seed(0)
    net = NAFNet(NAFNetConfig(width=8, middle_block_num=1, encoder_block_nums=(1, 1), decoder_block_nums=(1, 1))).eval()
    for p in net.parameters():                                  # block scales start at zero: make every path count
        p.data.add_(0.1 * torch.randn_like(p))
    x = torch.rand(1, 3, 32, 48)
    text = with_statistics(net, "textbook")
    assert text is not net and with_statistics(net, "fp16_safe") is net
    assert {m.statistics for m in net.modules() if hasattr(m, "statistics")} == {"fp16_safe"}   # argument untouched
    assert {m.statistics for m in text.modules() if hasattr(m, "statistics")} == {"textbook"}
    with torch.no_grad():
        a, b = net(x), text(x)
    assert (a - b).abs().max().item() < 1e-5 and (a - x).abs().max().item() > 1e-3
    try:
        with_statistics(net, "int8")
    except ValueError as exc:
        assert "statistics" in str(exc)
    else:
        raise AssertionError("an unknown form must be refused")
