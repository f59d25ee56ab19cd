"""Digital gain stage: golden parity, checkpoints, shapes, functional == module, torch.export."""
from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from isp.checkpoints import count_parameters, read_state_dict
from isp.metrics import psnr
from isp.registry import BuildConfig, build_stage, get_stage
from isp.stages import gain as gain_mod
from isp.stages.gain import GAIN_MAX, GAIN_MIN, DigitalGain, ScalarNet, apply_gain, avg_pool_to

MIN_DB = 60.0
#: (style, use_lut) for the 11 photofinishing checkpoints of the official release
ALL_CHECKPOINTS = [(0, False)] + [(s, lut) for s in range(1, 6) for lut in (False, True)]


@functools.lru_cache(maxsize=None)
def _stage(weights: str, style: int) -> torch.nn.Module:
    return build_stage("gain", BuildConfig(weights, style=style))


def _rel_err(p: torch.Tensor, ref: torch.Tensor) -> float:
    return ((p - ref).abs() / ref.abs().clamp_min(1e-12)).max().item()


class TestGoldenParity:
    def test_every_golden_file(self, weights_dir, golden_cases):
        failures = []
        for case in golden_cases:
            stage = _stage(str(weights_dir), case.style_id)
            with torch.no_grad():
                img, param = stage(case["lsrgb_ds"])
            db_img, db_par = psnr(img, case["lsrgb_gain"]), psnr(param, case["gain_param"])
            rel = _rel_err(param, case["gain_param"])
            print(f"gain {case.name}: lsrgb_gain {db_img:.1f} dB, gain_param {db_par:.1f} dB (rel err {rel:.1e})")
            if db_img < MIN_DB or db_par < MIN_DB or rel > 1e-4:
                failures.append((case.name, db_img, db_par, rel))
        assert not failures, failures

    def test_apply_golden_param(self, golden_cases):
        for case in golden_cases:
            out = apply_gain(case["lsrgb_ds"], case["gain_param"])
            db = psnr(out, case["lsrgb_gain"])
            print(f"gain apply {case.name}: {db:.1f} dB")
            assert db >= MIN_DB, (case.name, db)


class TestCheckpoints:
    @pytest.mark.parametrize("style,use_lut", ALL_CHECKPOINTS)
    def test_strict_load(self, weights_dir, style, use_lut):
        cfg = BuildConfig(weights_dir, style=style, use_lut=use_lut)
        stage = get_stage("gain").build(cfg)
        assert isinstance(stage, DigitalGain) and not stage.training
        assert count_parameters(stage) == 6587
        sd = read_state_dict(cfg.photofinishing_checkpoint)
        official = sum(v.numel() for k, v in sd.items() if k.startswith("_gain_net."))
        assert official == 6587

    def test_strict_load_rejects_foreign_keys(self, weights_dir):
        path = BuildConfig(weights_dir).photofinishing_checkpoint
        sd = read_state_dict(path)
        sd["_gain_net._net.99.weight"] = torch.zeros(1)
        with pytest.raises(ValueError, match="unexpected"):
            gain_mod.load_from_state_dict(DigitalGain(), sd, path)

    def test_param_count_matches_paper(self):
        assert count_parameters(ScalarNet()) == 6587


class TestShapesAndRanges:
    @pytest.mark.parametrize("shape", [(1, 3, 96, 128), (2, 3, 37, 53), (1, 3, 128, 128)])
    def test_shapes(self, weights_dir, shape):
        torch.manual_seed(0)
        x = torch.rand(shape)
        with torch.no_grad():
            img, gain = _stage(str(weights_dir), 0)(x)
        assert img.shape == x.shape and gain.shape == (shape[0], 1, 1, 1)
        assert ((gain >= GAIN_MIN) & (gain <= GAIN_MAX)).all()

    def test_batch2_equals_singles(self, weights_dir, golden_cases):
        stage = _stage(str(weights_dir), 0)
        x = torch.cat([golden_cases[0]["lsrgb_ds"], golden_cases[1]["lsrgb_ds"]])
        with torch.no_grad():
            img, gain = stage(x)
            singles = [stage(x[i:i + 1]) for i in range(2)]
        for i, (img1, gain1) in enumerate(singles):
            assert torch.allclose(img[i:i + 1], img1, atol=1e-6)
            assert torch.allclose(gain[i:i + 1], gain1, atol=1e-6)

    @pytest.mark.parametrize("size", [1, 4, 16, 32])
    def test_fixed_pool_equals_adaptive(self, size):
        torch.manual_seed(1)
        x = torch.randn(2, 5, 128, 128)
        assert torch.allclose(avg_pool_to(x, size), F.adaptive_avg_pool2d(x, size), atol=1e-6)


class TestFunctional:
    def test_functional_equals_module(self, weights_dir):
        stage = _stage(str(weights_dir), 2)
        torch.manual_seed(2)
        x = torch.rand(2, 3, 40, 60)
        with torch.no_grad():
            img, gain = stage(x)
            p = stage.predict(x)
        assert torch.equal(p, gain)
        assert torch.equal(stage.apply(x, p), apply_gain(x, p))
        assert torch.equal(img, apply_gain(x, p))


class TestExport:
    def test_torch_export(self, weights_dir):
        stage = _stage(str(weights_dir), 0)
        x = torch.rand(1, 3, 96, 128)
        ep = torch.export.export(stage, (x,))
        with torch.no_grad():
            ref = stage(x)
        got = ep.module()(x)
        for a, b in zip(got, ref):
            assert torch.allclose(a, b, atol=1e-6)
        ops = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
        assert not any("adaptive" in op for op in ops), ops
