"""Gamma correction stage: golden parity, checkpoints, pow formulations, functional == module, torch.export."""
from __future__ import annotations

import functools

import pytest
import torch

from isp.checkpoints import count_parameters, read_state_dict
from isp.metrics import psnr
from isp.registry import BuildConfig, build_stage, get_stage
from isp.stages import gamma as gamma_mod
from isp.stages.gamma import GAMMA_MAX, GAMMA_MIN, GammaCorrection, apply_gamma, pow_exp_log

MIN_DB = 60.0
ALL_CHECKPOINTS = [(0, False)] + [(s, lut) for s in range(1, 6) for lut in (False, True)]


@functools.lru_cache(maxsize=None)
def _stage(weights: str, style: int, pow_mode: str = "pow") -> torch.nn.Module:
    return gamma_mod.build(BuildConfig(weights, style=style), pow_mode=pow_mode)


def _unit_inputs() -> torch.Tensor:
    """[0, 1] values with the edge cases: exact 0 and 1, denormals, the smallest normal, dense mid-range."""
    torch.manual_seed(0)
    special = torch.tensor([0.0, 1.0, 1e-45, 1e-40, 1.1754944e-38, 1e-30, 1e-12, 1e-7, 1e-3, 0.5, 1 - 1e-7])
    return torch.cat([special, torch.rand(4000), torch.rand(1000) ** 8])


class TestGoldenParity:
    @pytest.mark.parametrize("pow_mode", ["pow", "exp_log"])
    def test_every_golden_file(self, weights_dir, golden_cases, pow_mode):
        failures = []
        for case in golden_cases:
            stage = _stage(str(weights_dir), case.style_id, pow_mode)
            with torch.no_grad():
                img, param = stage(case["processed_lsrgb"])
            db_img, db_par = psnr(img, case["gamma_out"]), psnr(param, case["gamma_param"])
            print(f"gamma[{pow_mode}] {case.name}: gamma_out {db_img:.1f} dB, gamma_param {db_par:.1f} dB")
            if db_img < MIN_DB or db_par < MIN_DB:
                failures.append((case.name, db_img, db_par))
        assert not failures, failures

    @pytest.mark.parametrize("pow_mode", ["pow", "exp_log"])
    def test_apply_golden_param(self, golden_cases, pow_mode):
        for case in golden_cases:
            out = apply_gamma(case["processed_lsrgb"], case["gamma_param"], pow_mode)
            db = psnr(out, case["gamma_out"])
            print(f"gamma apply[{pow_mode}] {case.name}: {db:.1f} dB")
            assert db >= MIN_DB, (case.name, db)


class TestCheckpoints:
    @pytest.mark.parametrize("style,use_lut", ALL_CHECKPOINTS)
    def test_strict_load(self, weights_dir, style, use_lut):
        cfg = BuildConfig(weights_dir, style=style, use_lut=use_lut)
        stage = get_stage("gamma").build(cfg)
        assert isinstance(stage, GammaCorrection) and not stage.training
        assert count_parameters(stage) == 6587
        sd = read_state_dict(cfg.photofinishing_checkpoint)
        assert sum(v.numel() for k, v in sd.items() if k.startswith("_gamma_net.")) == 6587

    def test_gain_and_gamma_nets_are_distinct(self, weights_dir):
        cfg = BuildConfig(weights_dir)
        g = build_stage("gain", cfg).net.state_dict()
        m = build_stage("gamma", cfg).net.state_dict()
        assert g.keys() == m.keys()
        assert any(not torch.equal(g[k], m[k]) for k in g)

    def test_bad_pow_mode(self):
        with pytest.raises(ValueError, match="pow_mode"):
            GammaCorrection(pow_mode="fast")


class TestPowFormulations:
    @pytest.mark.parametrize("exponent", [1 / GAMMA_MAX, 0.45, 1 / 2.2, 0.6, 0.75, 1 / GAMMA_MIN, 1.0])
    def test_exp_log_equals_pow_on_unit_interval(self, exponent):
        x = _unit_inputs()
        e = torch.tensor(exponent)
        ref = torch.pow(x, e)
        got = pow_exp_log(x, e)
        assert got[0] == 0.0 and got[1] == 1.0          # x = 0 -> exactly 0, x = 1 -> exactly 1
        assert (got - ref).abs().max() < 1e-6
        assert torch.allclose(got, ref, rtol=2e-6, atol=1e-12)

    def test_apply_modes_agree_per_sample_exponent(self):
        torch.manual_seed(1)
        x = torch.rand(2, 3, 9, 11)
        x[0, 0, 0, 0] = 0.0
        x[1, 2, 3, 4] = 1.0
        e = torch.tensor([1 / 2.4, 1 / 1.3]).reshape(2, 1, 1, 1)
        a, b = apply_gamma(x, e, "pow"), apply_gamma(x, e, "exp_log")
        assert (a - b).abs().max() < 1e-6
        assert b[0, 0, 0, 0] == 0.0 and b[1, 2, 3, 4] == 1.0


class TestShapesAndRanges:
    @pytest.mark.parametrize("shape", [(1, 3, 96, 128), (2, 3, 37, 53)])
    def test_shapes(self, weights_dir, shape):
        torch.manual_seed(0)
        x = torch.rand(shape)
        with torch.no_grad():
            img, e = _stage(str(weights_dir), 0)(x)
        assert img.shape == x.shape and e.shape == (shape[0], 1, 1, 1)
        assert ((e >= 1 / GAMMA_MAX - 1e-6) & (e <= 1 / GAMMA_MIN + 1e-6)).all()
        assert img.min() >= 0.0 and img.max() <= 1.0

    def test_batch2_equals_singles(self, weights_dir, golden_cases):
        stage = _stage(str(weights_dir), 0)
        x = torch.cat([golden_cases[0]["processed_lsrgb"], golden_cases[1]["processed_lsrgb"]])
        with torch.no_grad():
            img, e = stage(x)
            singles = [stage(x[i:i + 1]) for i in range(2)]
        for i, (img1, e1) in enumerate(singles):
            assert torch.allclose(img[i:i + 1], img1, atol=1e-6)
            assert torch.allclose(e[i:i + 1], e1, atol=1e-6)


class TestFunctional:
    @pytest.mark.parametrize("pow_mode", ["pow", "exp_log"])
    def test_functional_equals_module(self, weights_dir, pow_mode):
        stage = _stage(str(weights_dir), 5, pow_mode)
        torch.manual_seed(4)
        x = torch.rand(2, 3, 40, 60)
        with torch.no_grad():
            img, e = stage(x)
            p = stage.predict(x)
        assert torch.equal(p, e)
        assert torch.equal(stage.apply(x, p), apply_gamma(x, p, pow_mode))
        assert torch.equal(img, apply_gamma(x, p, pow_mode))


class TestExport:
    @pytest.mark.parametrize("pow_mode", ["pow", "exp_log"])
    def test_torch_export(self, weights_dir, pow_mode):
        stage = _stage(str(weights_dir), 0, pow_mode)
        x = torch.rand(1, 3, 96, 128)
        ep = torch.export.export(stage, (x,))
        with torch.no_grad():
            ref = stage(x)
        got = ep.module()(x)
        for a, b in zip(got, ref):
            assert torch.allclose(a, b, atol=1e-6)
        ops = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
        assert not any("adaptive" in op for op in ops), ops
        if pow_mode == "exp_log":
            assert not any("pow" in op for op in ops), ops
