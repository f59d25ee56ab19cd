"""Chroma mapping stage (isp/stages/chroma.py): golden parity (after the 3-D LUT for -lut styles), strict loading,
the LUT axis convention, the histogram, the export-friendly lookup, shapes and torch.export."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from isp.checkpoints import count_parameters, read_state_dict
from isp.metrics import psnr
from isp.registry import BuildConfig, build_stage, get_stage
from isp.stages import chroma
from isp.stages.common import rgb_to_ycbcr

MIN_PSNR = 60.0
PARAM_COUNT = 45_466


def _lut3d_private(rgb: torch.Tensor, checkpoint) -> torch.Tensor:
    """Independent 3-D LUT lookup (softplus of ``_3d_lut._lut``; grid x/y/z = R/G/B index the table's
    last/middle/first spatial axes), used to cross-check ``isp.stages.lut3d``."""
    table = F.softplus(read_state_dict(checkpoint)["_3d_lut._lut"])
    grid = (rgb.clamp(0.0, 1.0) * 2.0 - 1.0).permute(0, 2, 3, 1).unsqueeze(1)
    return F.grid_sample(table.expand(rgb.shape[0], -1, -1, -1, -1), grid, mode="bilinear",
                         align_corners=True)[:, :, 0]


@pytest.fixture(scope="module")
def checkpoints(weights_dir):
    files = sorted((weights_dir / "photofinishing" / "models").glob("photofinishing_s24-style-*.pth"))
    assert len(files) == 11, f"expected the 11 official photofinishing checkpoints, found {len(files)}"
    return files


@pytest.fixture(scope="module")
def golden_runs(golden_cases, weights_dir):
    """Per golden file: the stage input (after the 3-D LUT for -lut styles), the module and its outputs."""
    runs = []
    for case in golden_cases:
        cfg = BuildConfig(weights_dir, style=case.style_id)
        m = get_stage("chroma").build(cfg).eval()
        x = case["lsrgb_ltm"]
        with torch.no_grad():
            if cfg.lut:
                x_lut = build_stage("lut3d", cfg)(x)
                torch.testing.assert_close(x_lut, _lut3d_private(x, cfg.photofinishing_checkpoint),
                                           rtol=0, atol=1e-6)
                x = x_lut
            out, lut = m(x)
        runs.append(dict(case=case, cfg=cfg, module=m, x=x, out=out, lut=lut))
    return runs


class TestChroma:
    def test_param_count(self):
        m = chroma.ChromaMapping()
        assert count_parameters(m) == PARAM_COUNT
        assert "net.bin_grid" not in m.state_dict()          # the identity grid is a rebuilt constant

    def test_strict_load_every_checkpoint(self, checkpoints):
        for path in checkpoints:
            m = chroma.load_chroma(path)
            assert count_parameters(m) == PARAM_COUNT, path.name

    def test_wrong_identity_grid_is_refused(self, checkpoints, tmp_path):
        sd = read_state_dict(checkpoints[0])
        sd["_lut_net.identity_grid"] = sd["_lut_net.identity_grid"].transpose(-1, -2).flip(-1)
        bad = tmp_path / "bad.pth"
        torch.save(sd, bad)
        with pytest.raises(ValueError, match="identity_grid"):
            chroma.load_chroma(bad)

    def test_golden_parity(self, golden_runs):
        failures = []
        for r in golden_runs:
            case = r["case"]
            ref_lut = case["chroma_lut_param"]
            p_img = psnr(r["out"], case["processed_lsrgb"])
            p_lut = psnr(r["lut"], ref_lut, data_range=float(ref_lut.max() - ref_lut.min()))
            tag = " (after lut3d)" if r["cfg"].lut else ""
            print(f"chroma {case.name}{tag}: processed_lsrgb {p_img:.1f} dB, chroma_lut_param {p_lut:.1f} dB")
            if p_img < MIN_PSNR or p_lut < MIN_PSNR:
                failures.append(f"{case.name}: image {p_img:.1f} dB, lut {p_lut:.1f} dB")
        assert not failures, "below 60 dB: " + "; ".join(failures)

    def test_apply_on_golden_param(self, golden_runs):
        for r in golden_runs:
            case = r["case"]
            out = r["module"].apply(r["x"], case["chroma_lut_param"])
            p = psnr(out, case["processed_lsrgb"])
            print(f"chroma apply {case.name}: {p:.1f} dB")
            assert p >= MIN_PSNR, case.name

    def test_functional_equals_module(self, golden_runs):
        r = golden_runs[0]
        m, x = r["module"], r["x"]
        ycc = rgb_to_ycbcr(x)
        with torch.no_grad():
            lut = m.predict(x)
            out_y, lut_y = m.forward_ycbcr(ycc)
        torch.testing.assert_close(lut, r["lut"], rtol=0, atol=0)
        torch.testing.assert_close(lut_y, r["lut"], rtol=0, atol=0)
        torch.testing.assert_close(out_y, r["out"], rtol=0, atol=0)
        torch.testing.assert_close(chroma.apply_chroma(x, lut), r["out"], rtol=0, atol=0)
        torch.testing.assert_close(m.apply_ycbcr(ycc, lut), r["out"], rtol=0, atol=0)
        torch.testing.assert_close(m.predict_ycbcr(ycc), lut, rtol=0, atol=0)

    def test_output_range_and_luma_kept(self, golden_runs):
        for r in golden_runs:
            out = r["out"]
            assert out.min() >= 0.0 and out.max() <= 1.0
            # Y is carried through; only the final RGB clamp can change it
            y_in, y_out = rgb_to_ycbcr(r["x"])[:, 0], rgb_to_ycbcr(out)[:, 0]
            inside = (out > 1e-4).all(dim=1) & (out < 1 - 1e-4).all(dim=1)
            torch.testing.assert_close(y_out[inside], y_in[inside], rtol=0, atol=1e-5)

    def test_batch2_odd_size(self, golden_runs):
        m = golden_runs[0]["module"]
        g = torch.Generator().manual_seed(0)
        x = torch.rand(2, 3, 60, 84, generator=g)
        with torch.no_grad():
            out, lut = m(x)
            out1, lut1 = m(x[1:])
        assert out.shape == (2, 3, 60, 84) and lut.shape == (2, 2, 24, 24)
        torch.testing.assert_close(lut[1:], lut1, rtol=0, atol=1e-5)
        torch.testing.assert_close(out[1:], out1, rtol=0, atol=1e-5)


class TestLutAxes:
    def test_cb_selects_columns_cr_selects_rows(self):
        """A LUT whose channel 0 is the column coordinate and channel 1 the row coordinate is the identity."""
        ident = chroma.identity_cbcr_grid()                     # [0]: row (Cb of the histogram), [1]: column
        lut = ident.flip(1)                                     # [0]: column coordinate, [1]: row coordinate
        g = torch.Generator().manual_seed(3)
        cbcr = torch.rand(1, 2, 7, 9, generator=g) - 0.5
        for apply_lut in (chroma.apply_cbcr_lut_reference, chroma.apply_cbcr_lut_mobile):
            torch.testing.assert_close(apply_lut(cbcr, lut), cbcr, rtol=0, atol=1e-6)
            # and the meshgrid layout the base LUT started from swaps Cb and Cr
            torch.testing.assert_close(apply_lut(cbcr, ident), cbcr.flip(1), rtol=0, atol=1e-6)

    def test_histogram_layout_and_formula(self):
        g = torch.Generator().manual_seed(4)
        cbcr = torch.rand(2, 2, 16, 12, generator=g) - 0.5
        hist = chroma.cbcr_histogram(cbcr)
        assert hist.shape == (2, 1, 24, 24)
        c = chroma.bin_centres()
        cb = cbcr[:, 0].reshape(2, -1, 1, 1)
        cr = cbcr[:, 1].reshape(2, -1, 1, 1)
        dense = torch.exp(-((cb - c.view(1, 1, -1, 1)) ** 2 + (cr - c.view(1, 1, 1, -1)) ** 2)
                          / (2 * chroma.HIST_SIGMA ** 2)).sum(dim=1, keepdim=True)
        dense = torch.sqrt(dense / (dense.sum(dim=(2, 3), keepdim=True) + 1e-8))
        torch.testing.assert_close(hist, dense, rtol=0, atol=1e-6)
        # a single colour peaks at its own (Cb row, Cr column) bin
        one = torch.tensor([-0.5, 0.5]).view(1, 2, 1, 1).expand(1, 2, 4, 4)
        peak = chroma.cbcr_histogram(one)[0, 0]
        assert divmod(int(peak.argmax()), 24) == (0, 23)


class TestMobileLookup:
    def test_equals_reference_on_golden(self, golden_runs):
        for r in golden_runs:
            ycc = rgb_to_ycbcr(r["x"])
            for lut in (r["lut"], r["case"]["chroma_lut_param"]):
                ref = chroma.apply_cbcr_lut_reference(ycc[:, 1:], lut)
                mob = chroma.apply_cbcr_lut_mobile(ycc[:, 1:], lut)
                err = (ref - mob).abs().max().item()
                assert err <= 1e-5, f"{r['case'].name}: {err:.2e}"
            print(f"chroma lookup {r['case'].name}: max |mobile - reference| = {err:.2e}")

    @pytest.mark.parametrize("shape", [(1, 96, 128), (2, 37, 53), (3, 1, 5)])
    def test_equals_reference_on_random(self, shape):
        b, h, w = shape
        g = torch.Generator().manual_seed(h + w)
        cbcr = torch.rand(b, 2, h, w, generator=g) * 1.4 - 0.7          # beyond [-0.5, 0.5]: clamped
        cbcr[..., 0, 0] = 0.5
        cbcr[..., -1, -1] = -0.5
        lut = torch.randn(b, 2, 24, 24, generator=g)
        ref = chroma.apply_cbcr_lut_reference(cbcr, lut)
        mob = chroma.apply_cbcr_lut_mobile(cbcr, lut)
        torch.testing.assert_close(mob, ref, rtol=0, atol=1e-5)

    @pytest.mark.parametrize("shape", [(1, 128, 128), (2, 37, 53), (1, 1, 5)])
    def test_histogram_mobile_equals_reference(self, shape):
        b, h, w = shape
        g = torch.Generator().manual_seed(h * w)
        cbcr = torch.rand(b, 2, h, w, generator=g) - 0.5
        cbcr[:, :, 0, :] = torch.tensor([0.5, -0.5]).view(1, 2, 1)    # the bins at the ends
        torch.testing.assert_close(chroma.cbcr_histogram_mobile(cbcr), chroma.cbcr_histogram(cbcr), rtol=0,
                                   atol=2e-6)

    def test_histogram_mobile_in_float16(self):
        """The mobile form computed in float16 stays near the float32 histogram (no pixel-long accumulation)."""
        g = torch.Generator().manual_seed(7)
        cbcr = (torch.rand(1, 2, 128, 128, generator=g) - 0.5) * 0.6
        want = chroma.cbcr_histogram(cbcr.double()).float()
        got = chroma.cbcr_histogram_mobile(cbcr.half()).float()
        assert (got - want).abs().max().item() < 2e-3

    def test_mobile_module_equals_reference_module(self, golden_runs):
        r = golden_runs[0]
        mob = chroma.ChromaMapping(lookup="mobile")
        mob.load_state_dict(r["module"].state_dict())
        with torch.no_grad():
            out, lut = mob.eval()(r["x"])
        torch.testing.assert_close(lut, r["lut"], rtol=0, atol=1e-5)     # the histogram as means (float32 rounding)
        torch.testing.assert_close(out, r["out"], rtol=0, atol=1e-5)

    def test_torch_export(self, golden_runs):
        m = chroma.ChromaMapping(lookup="mobile")
        m.load_state_dict(golden_runs[0]["module"].state_dict())
        m.eval()
        args = (torch.rand(1, 3, 60, 84, generator=torch.Generator().manual_seed(5)),)
        ep = torch.export.export(m, args)
        targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
        assert not any("grid_sampler" in t for t in targets), targets
        with torch.no_grad():
            got, want = ep.module()(*args), m(*args)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


class TestSpec:
    def test_spec(self, weights_dir):
        spec = get_stage("chroma")
        assert spec.id == "chroma" and spec.resolution == "quarter"
        assert spec.input_names == ("lsrgb_ltm",)
        assert spec.output_names == ("processed_lsrgb", "chroma_lut_param")
        cfg = BuildConfig(weights_dir, style=2)
        assert spec.checkpoint(cfg) == cfg.photofinishing_checkpoint

    def test_bad_mode(self):
        with pytest.raises(ValueError, match="lookup"):
            chroma.ChromaMapping(lookup="fast")
