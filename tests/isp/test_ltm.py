"""Local tone mapping stage (isp/stages/ltm.py): golden parity, strict loading, shapes, the export-friendly slicing,
torch.export, and the optional multi-scale + bilateral-solver refinement."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from isp.checkpoints import count_parameters
from isp.metrics import psnr
from isp.registry import BuildConfig, get_stage
from isp.stages import ltm

MIN_PSNR = 60.0
PARAM_COUNT = 120_215


def _param_range(ref: torch.Tensor) -> float:
    return float(ref.max() - ref.min())


@pytest.fixture(scope="module")
def checkpoints(weights_dir):
    files = sorted((weights_dir / "photofinishing" / "models").glob("photofinishing_s24-style-*.pth"))
    assert len(files) == 11, f"expected the 11 official photofinishing checkpoints, found {len(files)}"
    return files


@pytest.fixture(scope="module")
def golden_runs(golden_cases, weights_dir):
    """Per golden file: the reference module, its guide and grid, and its outputs on the golden inputs.

    The outputs are assembled from the pure functions (slice, apply); ``test_functional_equals_module`` checks
    once that this equals ``module(...)``, which keeps the fixture at one network pass per file.
    """
    runs = []
    modules: dict[int, ltm.LocalToneMapping] = {}
    for case in golden_cases:
        if case.style_id not in modules:
            modules[case.style_id] = get_stage("ltm").build(BuildConfig(weights_dir, style=case.style_id)).eval()
        m = modules[case.style_id]
        x_gain, x_gtm = case["lsrgb_gain"], case["lsrgb_gtm"]
        with torch.no_grad():
            guide = m.guidance(x_gain[:, 0:1])
            grid = m.grid(m._grid_input(x_gain, x_gtm))
        param = ltm.slice_grid_reference(grid, guide)
        out = ltm.apply_ltm(x_gain, x_gtm, param)
        runs.append(dict(case=case, module=m, guide=guide, grid=grid, out=out, param=param))
    return runs


@pytest.fixture(scope="module")
def refine_case(golden_runs):
    """A natural image at the smallest size the refinement accepts, run once through a 0-iteration refine module
    whose multi-scale average is recorded on the way."""
    r = golden_runs[0]
    up = dict(size=(192, 256), mode="bilinear", align_corners=False)
    x_gain = F.interpolate(r["case"]["lsrgb_gain"], **up)
    x_gtm = F.interpolate(r["case"]["lsrgb_gtm"], **up)
    m0 = ltm.LocalToneMapping(refine=True, solver_iters=0)
    m0.load_state_dict(r["module"].state_dict())
    m0.eval()
    seen = []
    multiscale = m0.predict_multiscale

    def recording(*args):
        seen.append(multiscale(*args))
        return seen[-1]

    m0.predict_multiscale = recording
    guide_sizes, grid_calls = [], []
    hooks = [m0.guidance.register_forward_hook(lambda _m, args, _o: guide_sizes.append(tuple(args[0].shape[-2:]))),
             m0.grid.register_forward_hook(lambda _m, args, _o: grid_calls.append(tuple(args[0].shape[-2:])))]
    with torch.no_grad():
        out0, param0 = m0(x_gain, x_gtm)
    for h in hooks:
        h.remove()
    assert len(seen) == 1
    return dict(x_gain=x_gain, x_gtm=x_gtm, ms=seen[0], out0=out0, param0=param0, guide_sizes=guide_sizes,
                grid_calls=grid_calls)


class TestLTM:
    def test_param_count(self):
        assert count_parameters(ltm.LocalToneMapping()) == PARAM_COUNT

    def test_strict_load_every_checkpoint(self, checkpoints):
        for path in checkpoints:
            m = ltm.load_ltm(path)
            assert count_parameters(m) == PARAM_COUNT, path.name

    def test_golden_parity(self, golden_runs):
        failures = []
        for r in golden_runs:
            case = r["case"]
            p_img = psnr(r["out"], case["lsrgb_ltm"])
            p_par = psnr(r["param"], case["ltm_param"], data_range=_param_range(case["ltm_param"]))
            print(f"ltm {case.name}: lsrgb_ltm {p_img:.1f} dB, ltm_param {p_par:.1f} dB")
            if p_img < MIN_PSNR or p_par < MIN_PSNR:
                failures.append(f"{case.name}: image {p_img:.1f} dB, param {p_par:.1f} dB")
        assert not failures, "below 60 dB: " + "; ".join(failures)

    def test_apply_on_golden_param(self, golden_runs):
        for r in golden_runs:
            case = r["case"]
            out = r["module"].apply(case["lsrgb_gain"], case["lsrgb_gtm"], case["ltm_param"])
            p = psnr(out, case["lsrgb_ltm"])
            print(f"ltm apply {case.name}: {p:.1f} dB")
            assert p >= MIN_PSNR, case.name

    def test_functional_equals_module(self, golden_runs):
        r = golden_runs[0]
        case = r["case"]
        with torch.no_grad():
            out, param = r["module"](case["lsrgb_gain"], case["lsrgb_gtm"])
        torch.testing.assert_close(param, r["param"], rtol=0, atol=0)
        torch.testing.assert_close(out, r["out"], rtol=0, atol=0)
        torch.testing.assert_close(r["module"].apply(case["lsrgb_gain"], case["lsrgb_gtm"], param), out,
                                   rtol=0, atol=0)

    def test_output_ranges(self, golden_runs):
        for r in golden_runs:
            assert r["out"].min() >= 0.0 and r["out"].max() <= 1.0
            assert r["param"].min() >= 0.0 and torch.isfinite(r["param"]).all()
            assert r["guide"].abs().max() <= 1.0

    def test_batch2_odd_size(self, golden_runs):
        m = golden_runs[0]["module"]
        g = torch.Generator().manual_seed(0)
        x_gain = torch.rand(2, 3, 60, 84, generator=g) * 1.5
        x_gtm = torch.rand(2, 3, 60, 84, generator=g)
        with torch.no_grad():
            out, param = m(x_gain, x_gtm)
            out1, param1 = m(x_gain[1:], x_gtm[1:])
        assert out.shape == (2, 3, 60, 84) and param.shape == (2, 5, 60, 84)
        torch.testing.assert_close(out[1:], out1, rtol=0, atol=1e-5)
        torch.testing.assert_close(param[1:], param1, rtol=0, atol=1e-4)


class TestMobileSlicing:
    def test_equals_reference_on_golden(self, golden_runs):
        for r in golden_runs:
            ref = ltm.slice_grid_reference(r["grid"], r["guide"])
            mob = ltm.slice_grid_mobile(r["grid"], r["guide"])
            err = (ref - mob).abs().max().item()
            print(f"ltm slicing {r['case'].name}: max |mobile - reference| = {err:.2e}")
            assert err <= 2e-5, r["case"].name

    @pytest.mark.parametrize("shape", [(1, 96, 128), (2, 37, 53), (1, 1, 9)])
    def test_equals_reference_on_random(self, shape):
        b, h, w = shape
        g = torch.Generator().manual_seed(h * w)
        grid = torch.rand(b, 5, ltm.GRID_DEPTH, ltm.GRID_SIZE, ltm.GRID_SIZE, generator=g) * 2.0
        guide = torch.rand(b, 1, h, w, generator=g) * 2.6 - 1.3     # beyond [-1, 1]: border clamping
        guide[..., 0, 0] = 1.0
        guide[..., -1, -1] = -1.0
        ref = ltm.slice_grid_reference(grid, guide)
        mob = ltm.slice_grid_mobile(grid, guide)
        assert mob.shape == (b, 5, h, w)
        torch.testing.assert_close(mob, ref, rtol=0, atol=2e-5)

    def test_mobile_module_equals_reference_module(self, golden_runs):
        r = golden_runs[0]
        case = r["case"]
        mob = ltm.LocalToneMapping(slicing="mobile")
        mob.load_state_dict(r["module"].state_dict())
        with torch.no_grad():
            out, param = mob.eval()(case["lsrgb_gain"], case["lsrgb_gtm"])
        torch.testing.assert_close(param, r["param"], rtol=0, atol=2e-5)
        torch.testing.assert_close(out, r["out"], rtol=0, atol=2e-5)

    def test_torch_export(self):
        m = ltm.LocalToneMapping(slicing="mobile").eval()
        g = torch.Generator().manual_seed(1)
        args = (torch.rand(1, 3, 20, 28, generator=g) * 2.0, torch.rand(1, 3, 20, 28, generator=g))
        ep = torch.export.export(m, args)
        targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
        assert not any("grid_sampler" in t for t in targets), targets
        with torch.no_grad():
            got = ep.module()(*args)
            want = m(*args)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


class TestRefinement:
    """Multi-scale averaging + bilateral solver (supp. A, B.1); not covered by the golden files."""

    def test_zero_iterations_returns_multiscale_average(self, refine_case):
        rc = refine_case
        assert rc["param0"].shape == (1, 5, 192, 256) and rc["out0"].shape == (1, 3, 192, 256)
        torch.testing.assert_close(rc["param0"], rc["ms"], rtol=0, atol=1e-6)
        torch.testing.assert_close(ltm.bilateral_solver(rc["x_gain"], rc["ms"], 0), rc["ms"], rtol=0, atol=0)
        # one guidance + one grid prediction per scale 1, 1/2, 1/4, 1/8, 1/16
        assert rc["guide_sizes"] == [(192, 256), (96, 128), (48, 64), (24, 32), (12, 16)]
        assert rc["grid_calls"] == [(ltm.NET_INPUT_SIZE, ltm.NET_INPUT_SIZE)] * len(ltm.REFINE_SCALES)

    def test_solver_shape_finite_and_smoother(self, refine_case):
        rc = refine_case
        m = ltm.LocalToneMapping(refine=True, solver_iters=10)
        refined = m.refine_maps(rc["x_gain"], rc["ms"])
        assert refined.shape == rc["ms"].shape and torch.isfinite(refined).all()
        out = m.apply(rc["x_gain"], rc["x_gtm"], refined)
        assert torch.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
        before = ltm.map_roughness(rc["ms"], rc["x_gain"]).item()
        after = ltm.map_roughness(refined, rc["x_gain"]).item()
        print(f"ltm refinement: roughness in flat regions {before:.5f} -> {after:.5f}")
        assert after < 0.7 * before

    def test_build_config_selects_mode(self, weights_dir):
        m = get_stage("ltm").build(BuildConfig(weights_dir, style=0, ltm_refine=True, solver_iters=7))
        assert m.refine and m.solver_iters == 7 and not m.training


class TestSpec:
    def test_spec(self):
        spec = get_stage("ltm")
        assert spec.id == "ltm" and spec.resolution == "quarter"
        assert spec.input_names == ("lsrgb_gain", "lsrgb_gtm")
        assert spec.output_names == ("lsrgb_ltm", "ltm_param")

    def test_checkpoint_path(self, weights_dir):
        cfg = BuildConfig(weights_dir, style=3)
        assert get_stage("ltm").checkpoint(cfg) == cfg.photofinishing_checkpoint
        assert cfg.photofinishing_checkpoint.is_file()

    def test_bad_modes(self):
        with pytest.raises(ValueError, match="slicing"):
            ltm.LocalToneMapping(slicing="fast")
        with pytest.raises(ValueError, match="solver_iters"):
            ltm.LocalToneMapping(solver_iters=-1)
