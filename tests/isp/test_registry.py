"""Registry contract: every stage is registered, builds, and honours its declared inputs/outputs."""
import pytest
import torch

from isp.checkpoints import count_parameters
from isp.registry import STAGE_ORDER, BuildConfig, all_stages, build_stage, get_stage

EXPECTED_PARAMS = {"gain": 6_587, "gtm": 28_369, "ltm": 120_215, "chroma": 45_466, "gamma": 6_587,
                   "lut3d": 3_993, "enhance": 50_635, "color": 0, "upsample": 0, "denoise": 245_223}


def test_every_stage_registered_in_order():
    assert [s.id for s in all_stages()] == list(STAGE_ORDER)
    with pytest.raises(KeyError, match="unknown stage"):
        get_stage("sharpen")


@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_builds_with_expected_parameter_count_and_io(stage, weights_dir, golden_cases):
    cfg = BuildConfig(weights_dir, style=3 if stage == "lut3d" else 0)
    module = build_stage(stage, cfg)
    assert not module.training
    assert count_parameters(module) == EXPECTED_PARAMS[stage]
    spec = get_stage(stage)
    if stage == "lut3d":
        return
    case = golden_cases[0]
    inputs = [case[n] if case[n].ndim == 4 else case[n][None] for n in spec.input_names]
    with torch.inference_mode():
        outs = module(*inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    assert len(outs) == len(spec.outputs)
    for t, ts in zip(outs, spec.outputs):
        assert t.shape == case[ts.name].shape or t.numel() == case[ts.name].numel()


def test_build_config_validation(weights_dir):
    for bad in (dict(style=6), dict(denoiser="s24_huge"), dict(denoiser="phone_lite"), dict(style=0, use_lut=True)):
        with pytest.raises(ValueError):
            BuildConfig(weights_dir, **bad)
    assert BuildConfig(weights_dir, style=2).lut and not BuildConfig(weights_dir, style=2, use_lut=False).lut
