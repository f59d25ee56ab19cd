"""Colour correction stage (isp/stages/color.py): golden parity, shapes, semantics, export, validation."""
from __future__ import annotations

import pytest
import torch

from isp.metrics import psnr
from isp.registry import BuildConfig, get_stage
from isp.stages import color
from isp.stages.color import ColorCorrection, check_inputs, raw_to_lsrgb

MIN_PSNR = 60.0


def _inputs(b: int = 1, h: int = 8, w: int = 10, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    raw = torch.rand(b, 3, h, w, generator=g)
    illum = torch.nn.functional.normalize(torch.rand(b, 3, generator=g) + 0.2, dim=1)
    ccm = torch.eye(3).expand(b, 3, 3) + 0.3 * torch.randn(b, 3, 3, generator=g)
    return raw, illum, ccm


class TestColorCorrection:
    def test_golden_parity(self, golden_cases):
        results = {}
        for case in golden_cases:
            out = raw_to_lsrgb(case["denoised_raw"], case["illum"][None], case["ccm"][None])
            results[case.name] = psnr(out, case["lsrgb"])
        print("\ncolour golden PSNR (dB): " + ", ".join(f"{k} {v:.2f}" for k, v in results.items()))
        low = {k: v for k, v in results.items() if v < MIN_PSNR}
        assert not low, f"colour parity below {MIN_PSNR} dB: {low}"

    def test_white_balance_then_ccm(self):
        raw, illum, ccm = _inputs(b=1)
        gains = illum[0, 1] / (illum[0] + 1e-8)
        expected = torch.einsum("ij,jhw->ihw", ccm[0] @ torch.diag(gains), raw[0]).clamp(0, 1)
        torch.testing.assert_close(raw_to_lsrgb(raw, illum, ccm)[0], expected, rtol=0, atol=1e-6)

    def test_illuminant_scale_does_not_matter(self):
        raw, illum, ccm = _inputs()
        torch.testing.assert_close(raw_to_lsrgb(raw, 3.0 * illum, ccm), raw_to_lsrgb(raw, illum, ccm),
                                   rtol=0, atol=1e-6)

    def test_output_clipped(self):
        raw, illum, ccm = _inputs()
        out = raw_to_lsrgb(4.0 * raw - 1.0, illum, 3.0 * ccm)
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert (out == 0).any() and (out == 1).any()

    def test_functional_equals_module(self):
        raw, illum, ccm = _inputs(b=2)
        assert torch.equal(ColorCorrection()(raw, illum, ccm), raw_to_lsrgb(raw, illum, ccm))

    def test_batch2_equals_single(self):
        raw, illum, ccm = _inputs(b=2)
        batched = raw_to_lsrgb(raw, illum, ccm)
        for i in range(2):
            torch.testing.assert_close(batched[i:i + 1], raw_to_lsrgb(raw[i:i + 1], illum[i:i + 1], ccm[i:i + 1]),
                                       rtol=0, atol=1e-7)

    @pytest.mark.parametrize("hw", [(1, 1), (5, 7), (3, 1), (37, 50)])
    def test_odd_sizes(self, hw):
        raw, illum, ccm = _inputs(b=2, h=hw[0], w=hw[1])
        assert raw_to_lsrgb(raw, illum, ccm).shape == (2, 3, *hw)

    def test_export(self):
        raw, illum, ccm = _inputs(b=1, h=16, w=24)
        ep = torch.export.export(ColorCorrection().eval(), (raw, illum, ccm))
        assert torch.equal(ep.module()(raw, illum, ccm), raw_to_lsrgb(raw, illum, ccm))

    def test_check_inputs(self):
        raw, illum, ccm = _inputs(b=2)
        check_inputs(raw, illum, ccm)
        with pytest.raises(ValueError, match=r"illum: expected \(B, 3\), got \(3,\)"):
            check_inputs(raw, illum[0], ccm)
        with pytest.raises(ValueError, match=r"ccm: expected \(B, 3, 3\), got \(3, 3\)"):
            check_inputs(raw, illum, ccm[0])
        with pytest.raises(ValueError, match=r"denoised_raw: expected \(B, 3, H, W\), got \(2, 4, 8, 10\)"):
            check_inputs(torch.rand(2, 4, 8, 10), illum, ccm)
        with pytest.raises(ValueError, match="batch sizes differ"):
            check_inputs(raw[:1], illum, ccm)

    def test_spec(self, tmp_path):
        spec = get_stage("color")
        assert spec is color.SPEC
        assert spec.input_names == ("denoised_raw", "illum", "ccm")
        assert spec.output_names == ("lsrgb",)
        assert spec.resolution == "full"
        module = spec.build(BuildConfig(weights=tmp_path))
        assert isinstance(module, ColorCorrection) and not module.training
