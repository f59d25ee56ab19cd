"""The quantization debugger on a small random NAFNet unit (runtime_py/quant_debug.py)."""
from __future__ import annotations

import math

import torch

from tests.convert.test_units import _small_nafnet_unit


def _graph(calibration, granularity="layer"):
    from convert.quant_prep import quantizer_for
    from isp.stages.nafnet import with_statistics
    from isp.units import NAFNET_BODY
    from runtime_py import quant_debug as qd

    m = with_statistics(_small_nafnet_unit(seed=1), "textbook")      # the form W8A8 exports quantize
    x = calibration[0]
    return m, qd.build_debug_graph(m, x, calibration, quantizer_for(list(NAFNET_BODY)), granularity)


def test_switches_layers_table_and_coverage():
    from runtime_py import quant_debug as qd

    g = torch.Generator().manual_seed(0)
    calib = [(0.1 * torch.rand(1, 3, 32, 32, generator=g),) for _ in range(3)]       # a dark, narrow set
    m, dg = _graph(calib)
    x = (0.1 * torch.rand(1, 3, 32, 32, generator=g),)
    dg.set_bits(0)
    assert torch.allclose(dg(*x), m(*x), atol=1e-6)                                     # all off = the float unit
    assert any(s.kind == "weight" for s in dg.sites.values()) and any(s.kind == "activation" for s in dg.sites.values())
    assert "net.stem" in dg.layers and not any(l.startswith("net.head") for l in dg.layers)   # head stays float
    assert any(":mul#" in l for l in dg.layers) and any(l.endswith("mix_norm") for l in dg.layers)
    p8 = (dg.set_bits(8), qd.unit_psnr(dg, [x]))[1]
    p16 = (dg.set_bits(16), qd.unit_psnr(dg, [x]))[1]
    assert math.isfinite(p8) and p16 > p8 + 10, (p8, p16)                               # 16-bit grid is finer
    rows = qd.layer_table(dg, [x], progress=False)
    assert len(rows) == len(dg.layers) and all(r["unit_psnr_db"] >= rows[0]["unit_psnr_db"] for r in rows)
    assert dg.bits() == {l: 0 for l in dg.layers}                                       # the table restores the state
    wide = [(torch.rand(1, 3, 32, 32, generator=g),) for _ in range(2)]                 # ten times brighter frames
    cov = qd.coverage(dg, calib, wide, frames=3)
    assert cov["verdict"] != "ok" and any("too narrow" in p for p in cov["problems"]), cov["verdict"]
    assert any("too small" in p for p in cov["problems"])
    ok = qd.coverage(dg, calib, [calib[0]], frames=qd.MIN_FRAMES)
    assert not any("too narrow: evaluation inputs" in p for p in ok["problems"]), ok["problems"]


def test_block_granularity_groups_a_naf_block():
    g = torch.Generator().manual_seed(1)
    calib = [(torch.rand(1, 3, 32, 32, generator=g),) for _ in range(2)]
    _m, dg = _graph(calib, "block")
    assert "net.encoders.0.0" in dg.layers and not any(":" in l for l in dg.layers if l.startswith("net.encoders.0.0"))
