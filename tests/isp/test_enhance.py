"""Detail enhancer: golden parity, checkpoints of every style, size, shapes and range, functional, export."""
from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from isp.checkpoints import count_parameters, read_state_dict
from isp.metrics import psnr
from isp.registry import NUM_STYLES, BuildConfig, build_stage, get_stage
from isp.stages.enhance import (ENHANCER_CONFIG, DetailEnhancer, build_enhancer, clamp_unit,
                                load_enhancer_weights)
from isp.stages.nafnet import read_nafnet_config

MIN_DB = 60.0
PARAMS = 50_635


@functools.lru_cache(maxsize=None)
def _stage(weights: str, style: int) -> torch.nn.Module:
    return build_stage("enhance", BuildConfig(weights, style=style))


class TestGoldenParity:
    def test_every_golden_file(self, weights_dir, golden_cases):
        failures = []
        for case in golden_cases:
            stage = _stage(str(weights_dir), case.style_id)
            with torch.no_grad():
                out = stage(case["srgb_upsampled"])
            db = psnr(out, case["srgb"])
            print(f"enhance {case.name} (style {case.style_id}): srgb {db:.2f} dB")
            if db < MIN_DB:
                failures.append((case.name, db))
        assert not failures, failures


class TestCheckpoints:
    @pytest.mark.parametrize("style", range(NUM_STYLES))
    def test_strict_load(self, weights_dir, style):
        cfg = BuildConfig(weights_dir, style=style)
        stage = get_stage("enhance").build(cfg)
        assert isinstance(stage, DetailEnhancer) and not stage.training
        assert count_parameters(stage) == PARAMS
        assert sum(v.numel() for v in read_state_dict(cfg.enhancement_checkpoint).values()) == PARAMS
        assert read_nafnet_config(cfg.enhancement_config) == ENHANCER_CONFIG

    def test_renamed_key_names_file(self, weights_dir, tmp_path):
        sd = read_state_dict(BuildConfig(weights_dir).enhancement_checkpoint)
        sd["decoder_blocks.1.1.betta"] = sd.pop("decoder_blocks.1.1.beta")
        bad = tmp_path / "renamed.pth"
        torch.save(sd, bad)
        with pytest.raises(ValueError, match=str(bad)) as info:
            load_enhancer_weights(DetailEnhancer(), bad)
        assert "missing" in str(info.value) and "unexpected" in str(info.value)

    def test_corrupt_file_names_file(self, tmp_path):
        bad = tmp_path / "corrupt.pth"
        bad.write_bytes(b"\x00" * 64)
        with pytest.raises(ValueError, match=str(bad)):
            build_enhancer(checkpoint=bad)

    def test_missing_file_names_path(self, tmp_path):
        path = tmp_path / "enhancement" / "models" / "enhancement_s24-style-0.pth"
        with pytest.raises(FileNotFoundError, match=str(path)):
            build_enhancer(checkpoint=path)

    def test_denoiser_checkpoint_is_rejected(self, weights_dir):
        path = BuildConfig(weights_dir).denoiser_checkpoint
        with pytest.raises(ValueError, match=str(path)):
            build_enhancer(checkpoint=path)


class TestSize:
    def test_parameter_count(self):
        assert count_parameters(build_enhancer()) == PARAMS

    def test_structure(self):
        net = build_enhancer().net
        assert net.stem.out_channels == 8 and net.config.bottleneck_width == 32 and net.multiple == 4
        assert [len(e) for e in net.encoders] == [2, 2] and [len(d) for d in net.decoders] == [2, 2]
        assert len(net.middle) == 4


class TestShapesAndRange:
    @pytest.mark.parametrize("shape", [(2, 3, 37, 53), (1, 3, 4, 4), (1, 3, 1, 3), (1, 3, 50, 33)])
    def test_shapes_and_range(self, weights_dir, shape):
        torch.manual_seed(0)
        x = torch.rand(shape)
        with torch.no_grad():
            y = _stage(str(weights_dir), 0)(x)
        assert y.shape == x.shape
        assert y.min() >= 0.0 and y.max() <= 1.0

    def test_batch2_equals_singles(self, weights_dir, golden_cases):
        stage = _stage(str(weights_dir), 3)
        x = torch.cat([golden_cases[0]["srgb_upsampled"], golden_cases[-1]["srgb_upsampled"]])[..., :45, :71]
        with torch.no_grad():
            both = stage(x)
            singles = torch.cat([stage(x[i:i + 1]) for i in range(2)])
        assert torch.allclose(both, singles, atol=1e-6)

    def test_odd_size_is_padded_then_cropped(self, weights_dir, golden_cases):
        stage = _stage(str(weights_dir), 0)
        x = golden_cases[-1]["srgb_upsampled"][..., :37, :53]
        with torch.no_grad():
            got = stage(x)
            ref = stage(F.pad(x, (0, 3, 0, 3)))[..., :37, :53]        # 40x56: what the module pads to itself
        assert torch.allclose(got, ref, atol=1e-6)


class TestFunctional:
    def test_module_equals_clamped_body(self, weights_dir):
        stage = _stage(str(weights_dir), 5)
        torch.manual_seed(1)
        x = torch.rand(2, 3, 24, 20) * 1.2 - 0.1            # reach outside [0, 1] so the clamp matters
        with torch.no_grad():
            raw = stage.net(x)
            assert (raw < 0).any() or (raw > 1).any()
            assert torch.equal(stage(x), clamp_unit(raw))
            assert torch.equal(clamp_unit(raw), raw.clamp(0, 1))


class TestExport:
    def test_torch_export(self, weights_dir):
        stage = _stage(str(weights_dir), 0)
        x = torch.rand(1, 3, 37, 53)
        ep = torch.export.export(stage, (x,))
        with torch.no_grad():
            assert torch.allclose(ep.module()(x), stage(x), atol=1e-5)
        ops = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
        assert not any("adaptive" in op or "reflect" in op or op.endswith("_.Tensor") for op in ops), ops

    def test_spec(self):
        spec = get_stage("enhance")
        assert spec.input_names == ("srgb_upsampled",) and spec.output_names == ("srgb",)
        assert spec.resolution == "full"
