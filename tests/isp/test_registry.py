"""Registry contract: every stage is registered in order, builds with its parameter count and honours its SPEC."""
import pytest
import torch

from isp.checkpoints import count_parameters
from isp.registry import STAGE_ORDER, BuildConfig, all_stages, build_stage, get_stage

PARAMS = {"denoise": 245_223, "color": 0, "gain": 6_587, "gtm": 28_369, "ltm": 120_215, "lut3d": 3_993,
          "chroma": 45_466, "gamma": 6_587, "upsample": 0, "enhance": 50_635}


@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_stage_contract(stage, weights_dir, golden_cases):
    assert [s.id for s in all_stages()] == list(STAGE_ORDER) == list(PARAMS)
    module, spec = build_stage(stage, BuildConfig(weights_dir, style=3 if stage == "lut3d" else 0)), get_stage(stage)
    assert not module.training and count_parameters(module) == PARAMS[stage]
    if stage != "lut3d":                               # the golden files hold no -lut render
        g = golden_cases[0]
        with torch.inference_mode():
            outs = module(*[g[n] if g[n].ndim == 4 else g[n][None] for n in spec.input_names])
        outs = outs if isinstance(outs, tuple) else (outs,)
        assert [t.numel() for t in outs] == [g[ts.name].numel() for ts in spec.outputs]


def test_unknown_stage_and_bad_build_config(weights_dir):
    with pytest.raises(KeyError, match="unknown stage"):
        get_stage("sharpen")
    for bad in (dict(style=6), dict(denoiser="s24_huge"), dict(denoiser="phone_lite"), dict(style=0, use_lut=True)):
        with pytest.raises(ValueError):
            BuildConfig(weights_dir, **bad)
    assert BuildConfig(weights_dir, style=2).lut and not BuildConfig(weights_dir, style=2, use_lut=False).lut
