"""The float16-safe GTM curve (isp.stages.common.log_softplus / tone_curve_log_c, used by GlobalToneMapping):
equal to the reference formulation in float32, and accurate in float16 where ``softplus`` of the head's
pre-activation (GTM's ``c`` is ~1e-6..2e-5 on the shipped DNGs) is rounded or flushed away."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from isp.stages.common import EPS, log_softplus, tone_curve, tone_curve_log_c
from isp.stages.gtm import GlobalToneMapping, apply_gtm

_H = torch.linspace(-40.0, 30.0, 20001, dtype=torch.float64)


def _truth(h: torch.Tensor) -> torch.Tensor:
    """log(softplus(h)) in float64 without underflow: h + log(log1p(e^h) / e^h) below 0."""
    h = h.double()
    u = torch.exp(h.clamp_max(0.0))
    return torch.where(h < 0, h + torch.log(torch.log1p(u) / u), torch.log(F.softplus(h)))


def test_log_softplus_equals_the_plain_formula():
    assert (log_softplus(_H) - _truth(_H)).abs().max().item() < 1e-8             # float64: the series' tail
    got = log_softplus(_H.float()).double()
    plain = torch.log(F.softplus(_H.float())).double()
    ok = plain.isfinite()
    assert (got - _truth(_H)).abs().max().item() < 4e-6                          # float32 rounding
    assert (got - plain)[ok].abs().max().item() < 4e-6


def test_log_softplus_in_float16():
    want = _truth(_H)
    naive = torch.log(F.softplus(_H.half().float()).half().float())             # softplus's result in fp16
    assert not naive[_H < -18].isfinite().all()                                 # underflows to 0 -> -inf
    got = log_softplus(_H.half()).double()
    assert got.isfinite().all()
    assert ((got - want).abs() / want.abs().clamp_min(1.0)).max().item() < 1e-2


def test_tone_curve_log_c_equals_tone_curve():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 16, 24, generator=g) * 1.3                             # gain-scaled: may exceed 1
    x[0, 0, 0, :4] = torch.tensor([0.0, EPS, 1.0 - 1e-9, 1.0])
    for a, b, c in ((1.1, 0.09, 2.1e-5), (1.4, 0.055, 1.6e-6), (0.7, 2.5, 3.0), (3.0, 0.5, 1e-12), (1.0, 1.0, 1.0)):
        at, bt, ct = (torch.tensor(v).reshape(1, 1, 1, 1) for v in (a, b, c))
        want = tone_curve(x, at, bt, ct)
        got = tone_curve_log_c(x, at, bt, torch.log(ct))
        assert (got - want).abs().max().item() < 2e-6, (a, b, c)


def test_gtm_forward_equals_apply_gtm():
    torch.manual_seed(0)
    m = GlobalToneMapping().eval()
    with torch.no_grad():
        m.net.head.bias.copy_(torch.tensor([0.1, -2.4, -12.0]))                  # c = softplus(-12) ~ 6e-6
        x = torch.rand(2, 3, 40, 64) * 1.2
        out, params = m(x)
        want_params = m.net(x)
        assert (params - want_params).abs().max().item() <= 1e-6 * want_params.abs().max().item()
        assert params[:, 2].max().item() < 1e-4
        assert (out - apply_gtm(x, want_params)).abs().max().item() < 2e-6
        assert math.isfinite(out.double().sum().item())


def test_block_group_norm_equals_group_norm():
    from isp.stages.common import BlockGroupNorm

    g = torch.Generator().manual_seed(1)
    for groups, c, h, w, scale, offset in ((2, 12, 96, 128, 1.0, 0.0), (4, 24, 48, 40, 20.0, 3.0), (2, 4, 7, 5, 1, 1)):
        ref = torch.nn.GroupNorm(groups, c)
        with torch.no_grad():
            ref.weight.copy_(torch.rand(c, generator=g) + 0.5)
            ref.bias.copy_(torch.randn(c, generator=g))
        mine = BlockGroupNorm(groups, c)
        mine.load_state_dict(ref.state_dict())
        x = torch.randn(2, c, h, w, generator=g) * scale + offset
        with torch.no_grad():
            assert (mine(x) - ref(x)).abs().max().item() < 2e-5, (groups, c, h, w)
