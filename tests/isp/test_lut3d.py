"""RGB 3-D LUT stage: axis order, grid_sample == tent formulation, golden parity through chroma mapping,
checkpoints (only the five -lut files carry a LUT), functional == module, torch.export."""
from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from isp.checkpoints import count_parameters, read_state_dict
from isp.metrics import psnr
from isp.registry import BuildConfig, build_stage, get_stage
from isp.stages import lut3d as lut3d_mod
from isp.stages.common import rgb_to_ycbcr, ycbcr_to_rgb
from isp.stages.lut3d import (LUT_MODES, RGBLut3D, apply_lut3d, apply_lut3d_grid_sample, apply_lut3d_tent,
                              identity_table)

MIN_DB = 60.0
ALL_CHECKPOINTS = [(0, False)] + [(s, lut) for s in range(1, 6) for lut in (False, True)]


@functools.lru_cache(maxsize=None)
def _stage(weights: str, style: int, mode: str = "grid_sample") -> RGBLut3D:
    return lut3d_mod.build(BuildConfig(weights, style=style, use_lut=True), mode=mode)


def _chroma_map(rgb: torch.Tensor, lut2d: torch.Tensor) -> torch.Tensor:
    """Test-local chroma mapping with a given CbCr LUT (the official operator: Cb indexes the LUT's W axis, Cr its
    H axis; bilinear, align_corners=True). Used only to reach ``processed_lsrgb``, the first golden key after the
    3-D LUT; checked against the style-0 files below, which have no 3-D LUT."""
    ycc = rgb_to_ycbcr(rgb)
    grid = (ycc[:, 1:].clamp(-0.5, 0.5) * 2.0).permute(0, 2, 3, 1)
    cbcr = F.grid_sample(lut2d, grid, mode="bilinear", align_corners=True)
    return ycbcr_to_rgb(torch.cat([ycc[:, :1], cbcr], dim=1))


def _probe_inputs() -> torch.Tensor:
    """(2, 3, 24, 40) RGB with values in [-0.5, 1.5]: exact 0 and 1, every node k/10, and out-of-range values."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, 24, 40) * 2.0 - 0.5
    x[0, :, 0, :11] = torch.linspace(0, 1, 11)
    x[0, :, 1, :] = 0.0
    x[0, :, 2, :] = 1.0
    x[1, 0, 0, :] = -0.25
    x[1, 1, 0, :] = 1.25
    x[1, :, 1, :] = torch.rand(3, 40)
    return x


class TestAxisOrder:
    @pytest.mark.parametrize("mode", LUT_MODES)
    def test_identity_table_is_identity(self, mode):
        x = _probe_inputs()
        out = apply_lut3d(x, identity_table(), mode)
        assert (out - x.clamp(0, 1)).abs().max() < 1e-6

    @pytest.mark.parametrize("mode", LUT_MODES)
    def test_which_channel_indexes_which_axis(self, mode):
        # table[0, c, d, h, w]: a table depending on one axis only reveals which input channel reads that axis
        k = torch.linspace(0, 1, 11)
        along_d = k.reshape(11, 1, 1).expand(11, 11, 11)
        along_h = k.reshape(1, 11, 1).expand(11, 11, 11)
        along_w = k.reshape(1, 1, 11).expand(11, 11, 11)
        table = torch.stack([along_d, along_h, along_w ** 2]).unsqueeze(0)
        x = torch.rand(1, 3, 5, 7)
        out = apply_lut3d(x, table, mode)
        r, g, b = x[:, 0], x[:, 1], x[:, 2]
        assert torch.allclose(out[:, 0], b, atol=1e-6)      # D axis <- blue
        assert torch.allclose(out[:, 1], g, atol=1e-6)      # H axis <- green
        # W axis <- red (piecewise-linear interpolation of r^2 between nodes)
        lo = torch.floor(r * 10) / 10
        hi = torch.clamp(lo + 0.1, max=1.0)
        t = (r - lo) * 10
        assert torch.allclose(out[:, 2], lo ** 2 + t * (hi ** 2 - lo ** 2), atol=1e-5)


class TestTentEqualsGridSample:
    def test_trained_tables(self, weights_dir):
        x = _probe_inputs()
        for style in range(1, 6):
            table = _stage(str(weights_dir), style).table.detach()
            ref = apply_lut3d_grid_sample(x, table)
            got = apply_lut3d_tent(x, table)
            err = (got - ref).abs().max().item()
            print(f"lut3d tent vs grid_sample style {style}: max abs diff {err:.2e}")
            assert err < 1e-5

    def test_random_table(self):
        torch.manual_seed(5)
        table = torch.rand(1, 3, 11, 11, 11) * 2
        x = _probe_inputs()
        assert (apply_lut3d_tent(x, table) - apply_lut3d_grid_sample(x, table)).abs().max() < 1e-5

    def test_modules_agree(self, weights_dir):
        x = _probe_inputs()
        with torch.no_grad():
            a = _stage(str(weights_dir), 3, "grid_sample")(x)
            b = _stage(str(weights_dir), 3, "tent")(x)
        assert (a - b).abs().max() < 1e-5


class TestGoldenParity:
    def test_chroma_helper_on_style0_files(self, golden_cases):
        cases = [c for c in golden_cases if c.style_id == 0]
        assert cases
        for case in cases:
            db = psnr(_chroma_map(case["lsrgb_ltm"], case["chroma_lut_param"]), case["processed_lsrgb"])
            assert db >= MIN_DB, (case.name, db)

    @pytest.mark.parametrize("mode", LUT_MODES)
    def test_lut_styles_reach_processed_lsrgb(self, weights_dir, golden_cases, mode):
        cases = [c for c in golden_cases if BuildConfig(weights_dir, style=c.style_id).lut]
        if not cases:
            pytest.skip("no golden file of a -lut style")
        for case in cases:
            stage = _stage(str(weights_dir), case.style_id, mode)
            with torch.no_grad():
                x_lut = stage(case["lsrgb_ltm"])
                x_swapped = stage(case["lsrgb_ltm"].flip(1))
            lut2d = case["chroma_lut_param"]
            db = psnr(_chroma_map(x_lut, lut2d), case["processed_lsrgb"])
            db_without = psnr(_chroma_map(case["lsrgb_ltm"], lut2d), case["processed_lsrgb"])
            db_swapped = psnr(_chroma_map(x_swapped, lut2d), case["processed_lsrgb"])
            print(f"lut3d[{mode}] {case.name}: processed_lsrgb {db:.1f} dB "
                  f"(without LUT {db_without:.1f} dB, R<->B swapped {db_swapped:.1f} dB)")
            assert db >= MIN_DB, (case.name, db)
            assert db_without < 40 and db_swapped < 40


class TestCheckpoints:
    @pytest.mark.parametrize("style,use_lut", ALL_CHECKPOINTS)
    def test_lut_only_in_lut_checkpoints(self, weights_dir, style, use_lut):
        cfg = BuildConfig(weights_dir, style=style, use_lut=use_lut)
        sd = read_state_dict(cfg.photofinishing_checkpoint)
        keys = [k for k in sd if k.startswith("_3d_lut.")]
        if use_lut:
            assert keys == ["_3d_lut._lut"] and sd["_3d_lut._lut"].numel() == 3993
            stage = get_stage("lut3d").build(cfg)
            assert isinstance(stage, RGBLut3D) and not stage.training
            assert count_parameters(stage) == 3993
            assert stage.table.shape == (1, 3, 11, 11, 11) and (stage.table > 0).all()
        else:
            assert keys == []
            with pytest.raises(ValueError, match="no 3-D LUT"):
                get_stage("lut3d").build(cfg)

    def test_default_style0_config_rejected(self, weights_dir):
        with pytest.raises(ValueError, match="lut3d"):
            build_stage("lut3d", BuildConfig(weights_dir, style=0))

    def test_spec_checkpoint(self, weights_dir):
        spec = get_stage("lut3d")
        assert spec.checkpoint(BuildConfig(weights_dir, style=0)) is None
        assert spec.checkpoint(BuildConfig(weights_dir, style=2)).name == "photofinishing_s24-style-2-lut.pth"

    def test_bad_mode(self):
        with pytest.raises(ValueError, match="mode"):
            RGBLut3D(mode="nearest")


class TestShapesAndFunctional:
    @pytest.mark.parametrize("mode", LUT_MODES)
    def test_batch2_and_odd_sizes(self, weights_dir, mode):
        stage = _stage(str(weights_dir), 1, mode)
        x = _probe_inputs()[:, :, :23, :37]
        with torch.no_grad():
            out = stage(x)
            singles = torch.cat([stage(x[i:i + 1]) for i in range(2)])
        assert out.shape == x.shape
        assert torch.allclose(out, singles, atol=1e-6)

    @pytest.mark.parametrize("mode", LUT_MODES)
    def test_functional_equals_module(self, weights_dir, mode):
        stage = _stage(str(weights_dir), 4, mode)
        x = _probe_inputs()
        with torch.no_grad():
            out = stage(x)
            table = stage.table
        assert torch.equal(table, F.softplus(stage.logits))
        assert torch.equal(out, apply_lut3d(x, table, mode))
        assert torch.equal(out, stage.apply(x, table))


class TestExport:
    @pytest.mark.parametrize("mode", LUT_MODES)
    def test_torch_export(self, weights_dir, mode):
        stage = _stage(str(weights_dir), 3, mode)
        x = _probe_inputs()[:1]
        ep = torch.export.export(stage, (x,))
        with torch.no_grad():
            ref = stage(x)
        assert torch.allclose(ep.module()(x), ref, atol=1e-6)
        ops = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
        if mode == "tent":
            assert not any("grid_sampler" in op or "gather" in op or "index" in op for op in ops), ops
