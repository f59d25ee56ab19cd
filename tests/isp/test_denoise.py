"""Raw denoiser (and the shared NAFNet body): golden parity, checkpoints, sizes, shapes, functional parts, export."""
from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from isp.checkpoints import count_parameters, read_state_dict
from isp.metrics import psnr
from isp.registry import BuildConfig, build_stage, get_stage
from isp.stages.denoise import DENOISER_CONFIGS, RawDenoiser, build_denoiser, load_denoiser_weights
from isp.stages.nafnet import (LAYER_NORM_EPS, NAFBlock, NAFNetConfig, channel_layer_norm,
                               pad_to_multiple, read_nafnet_config, simple_gate)

MIN_DB = 60.0
SHIPPED = ("s24_lite", "s24_base", "generic_lite", "generic_base")
PARAMS = {"lite": 245_223, "base": 932_683, "large": 3_634_323}


@functools.lru_cache(maxsize=None)
def _stage(weights: str, denoiser: str) -> torch.nn.Module:
    return build_stage("denoise", BuildConfig(weights, denoiser=denoiser))


class TestGoldenParity:
    def test_every_golden_file(self, weights_dir, golden_cases):
        failures = []
        for case in golden_cases:
            stage = _stage(str(weights_dir), case.denoiser)
            with torch.no_grad():
                out = stage(case["raw"])
            db = psnr(out, case["denoised_raw"])
            print(f"denoise {case.name} ({case.denoiser}): denoised_raw {db:.2f} dB")
            if db < MIN_DB:
                failures.append((case.name, db))
        assert not failures, failures


class TestCheckpoints:
    @pytest.mark.parametrize("denoiser", SHIPPED)
    def test_strict_load(self, weights_dir, denoiser):
        cfg = BuildConfig(weights_dir, denoiser=denoiser)
        stage = get_stage("denoise").build(cfg)
        assert isinstance(stage, RawDenoiser) and not stage.training
        size = denoiser.split("_")[1]
        assert count_parameters(stage) == PARAMS[size]
        assert sum(v.numel() for v in read_state_dict(cfg.denoiser_checkpoint).values()) == PARAMS[size]

    def test_large_checkpoint_missing_names_path(self, weights_dir):
        cfg = BuildConfig(weights_dir, denoiser="s24_large")
        if cfg.denoiser_checkpoint.exists():
            pytest.skip(f"{cfg.denoiser_checkpoint} exists in this weights folder")
        assert cfg.denoiser_config.is_file()            # the release ships the large config only
        with pytest.raises(FileNotFoundError, match=str(cfg.denoiser_checkpoint)):
            build_stage("denoise", cfg)

    def test_renamed_key_names_file(self, weights_dir, tmp_path):
        sd = read_state_dict(BuildConfig(weights_dir).denoiser_checkpoint)
        sd["middle_blocks.0.conv9.weight"] = sd.pop("middle_blocks.0.conv1.weight")
        bad = tmp_path / "renamed.pth"
        torch.save(sd, bad)
        with pytest.raises(ValueError, match=str(bad)) as info:
            load_denoiser_weights(RawDenoiser(DENOISER_CONFIGS["lite"]), bad)
        assert "missing" in str(info.value) and "unexpected" in str(info.value)

    def test_corrupt_file_names_file(self, tmp_path):
        bad = tmp_path / "corrupt.pth"
        bad.write_bytes(b"not a zip archive")
        with pytest.raises(ValueError, match=str(bad)):
            build_denoiser("lite", bad)

    def test_wrong_size_names_file(self, weights_dir):
        path = BuildConfig(weights_dir, denoiser="s24_base").denoiser_checkpoint
        with pytest.raises(ValueError, match=str(path)) as info:
            build_denoiser("lite", path)
        assert "shape of" in str(info.value)

    @pytest.mark.parametrize("size", ["lite", "base", "large"])
    def test_shipped_config_matches_builtin(self, weights_dir, size):
        path = weights_dir / "denoising" / "configs" / f"{size}.json"
        assert read_nafnet_config(path) == DENOISER_CONFIGS[size]


class TestSizes:
    @pytest.mark.parametrize("size", ["lite", "base", "large"])
    def test_parameter_count(self, size):
        assert count_parameters(build_denoiser(size)) == PARAMS[size]

    def test_large_structure(self):
        net = build_denoiser("large").net
        assert net.stem.out_channels == 16 and net.config.bottleneck_width == 256
        assert [len(e) for e in net.encoders] == [2, 2, 4, 8]
        assert [len(d) for d in net.decoders] == [2, 2, 2, 2]
        assert len(net.middle) == 4
        assert [d.out_channels for d in net.downsamplers] == [32, 64, 128, 256]
        assert [e[0].mix_norm.weight.numel() for e in net.encoders] == [16, 32, 64, 128]
        assert [d[0].mix_norm.weight.numel() for d in net.decoders] == [128, 64, 32, 16]
        assert net.multiple == 16

    def test_build_from_dict(self):
        m = build_denoiser({"width": 4, "middle_block_num": 1, "encoder_block_nums": [1], "decoder_block_nums": [1]})
        assert m.net.multiple == 2 and len(m.net.middle) == 1

    def test_bad_config(self):
        with pytest.raises(ValueError, match="same length"):
            NAFNetConfig(4, 1, (1, 1), (1,))
        with pytest.raises(ValueError, match="lacks"):
            NAFNetConfig.from_dict({"width": 4})
        with pytest.raises(ValueError, match="size"):
            build_denoiser("huge")


class TestShapes:
    @pytest.mark.parametrize("shape", [(2, 3, 37, 53), (1, 3, 16, 16), (1, 3, 1, 1), (1, 3, 50, 33)])
    def test_shapes(self, weights_dir, shape):
        torch.manual_seed(0)
        x = torch.rand(shape)
        with torch.no_grad():
            y = _stage(str(weights_dir), "s24_lite")(x)
        assert y.shape == x.shape and torch.isfinite(y).all()

    def test_batch2_equals_singles(self, weights_dir, golden_cases):
        stage = _stage(str(weights_dir), "s24_lite")
        x = torch.cat([golden_cases[0]["raw"], golden_cases[-1]["raw"]])[..., :61, :83]
        with torch.no_grad():
            both = stage(x)
            singles = torch.cat([stage(x[i:i + 1]) for i in range(2)])
        assert torch.allclose(both, singles, atol=1e-6)

    def test_odd_size_is_padded_then_cropped(self, weights_dir, golden_cases):
        stage = _stage(str(weights_dir), "s24_lite")
        x = golden_cases[0]["raw"][..., :37, :53]
        with torch.no_grad():
            got = stage(x)
            ref = stage(F.pad(x, (0, 11, 0, 11)))[..., :37, :53]      # 48x64: what the module pads to itself
        assert torch.allclose(got, ref, atol=1e-6)


class TestFunctional:
    def test_channel_layer_norm_equals_layer_norm(self):
        torch.manual_seed(3)
        x, w, b = torch.randn(2, 6, 5, 7), torch.randn(6), torch.randn(6)
        ref = F.layer_norm(x.permute(0, 2, 3, 1), (6,), w, b, LAYER_NORM_EPS).permute(0, 3, 1, 2)
        assert torch.allclose(channel_layer_norm(x, w, b), ref, atol=1e-5)

    def test_simple_gate(self):
        x = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3, 1)
        assert torch.equal(simple_gate(x), x[:, :2] * x[:, 2:])

    @pytest.mark.parametrize("h,w,m,ph,pw", [(37, 53, 16, 48, 64), (32, 32, 16, 32, 32), (5, 4, 4, 8, 4)])
    def test_pad_to_multiple(self, h, w, m, ph, pw):
        x = torch.ones(1, 3, h, w)
        y = pad_to_multiple(x, m)
        assert y.shape[-2:] == (ph, pw) and y.sum() == x.sum()

    def test_zero_scales_make_identity(self):
        # freshly initialised NAF blocks have zero residual scales, so a block starts as the identity
        torch.manual_seed(4)
        x = torch.randn(2, 8, 9, 11)
        assert torch.equal(NAFBlock(8)(x), x)

    def test_module_equals_functional_parts(self, weights_dir):
        # one block written out with the pure functions, weights from the shipped checkpoint
        blk = _stage(str(weights_dir), "s24_lite").net.encoders[1][0]
        torch.manual_seed(5)
        x = torch.randn(2, 8, 12, 10)
        t = simple_gate(blk.mix_depthwise(blk.mix_expand(channel_layer_norm(x, blk.mix_norm.weight, blk.mix_norm.bias))))
        t = t * blk.mix_attention(F.adaptive_avg_pool2d(t, 1))
        y = x + blk.mix_project(t) * blk.mix_scale
        t = simple_gate(blk.ffn_expand(channel_layer_norm(y, blk.ffn_norm.weight, blk.ffn_norm.bias)))
        ref = y + blk.ffn_project(t) * blk.ffn_scale
        with torch.no_grad():
            assert torch.allclose(blk(x), ref, atol=1e-5)


class TestExport:
    def test_torch_export(self, weights_dir):
        stage = _stage(str(weights_dir), "s24_lite")
        x = torch.rand(1, 3, 37, 53)
        ep = torch.export.export(stage, (x,))
        with torch.no_grad():
            assert torch.allclose(ep.module()(x), stage(x), atol=1e-5)
        ops = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
        assert not any("adaptive" in op or "reflect" in op or op.endswith("_.Tensor") for op in ops), ops

    def test_spec(self):
        spec = get_stage("denoise")
        assert spec.input_names == ("raw",) and spec.output_names == ("denoised_raw",)
        assert spec.resolution == "full"
