"""The npu policy's float-equivalent rewrites, mixed-precision scoping, and the policy's per-unit options."""
from __future__ import annotations

import pytest
import torch

from tests.convert.test_units import _small_nafnet_unit


def test_folding_the_block_scales_into_the_projections_is_equal():
    from convert.quant_prep import fold_block_scales, prepare_for_quantization

    m = _small_nafnet_unit(seed=3)
    with torch.no_grad():                         # per-channel scales spanning three decades, like the trained nets
        for name, p in m.named_parameters():
            if name.endswith(("mix_scale", "ffn_scale")):
                p.copy_(torch.logspace(-4, -1, p.numel()).reshape(p.shape) * torch.sign(torch.randn(p.shape)))
    x = torch.rand(1, 3, 40, 48)
    ref = m(x)
    folded, done = prepare_for_quantization(m, {"fold_block_scales": True})
    blocks = sum(type(b).__name__ == "NAFBlock" for b in m.modules())
    assert folded is not m and done == {"fold_block_scales": 2 * blocks} and blocks == 5   # two halves a block
    assert torch.allclose(folded(x), ref, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(folded.stage.net.encoders[0][0].mix_project.weight,
                              m.stage.net.encoders[0][0].mix_project.weight)
    assert all(bool((p == 1).all()) for n, p in folded.named_parameters() if n.endswith(("mix_scale", "ffn_scale")))
    assert torch.equal(m(x), ref)                 # the unit itself is untouched
    assert prepare_for_quantization(m, {})[0] is m
    assert fold_block_scales(torch.nn.Conv2d(3, 3, 1)) == 0


def test_scope_filter_excludes_submodules_and_direct_ops():
    from convert.targets.base import scope_filter

    class Node:                                    # the two fields scope_filter reads
        def __init__(self, op, target="", stack=()):
            self.op, self.target = op, target
            self.meta = {"nn_module_stack": {str(i): (p, "T") for i, p in enumerate(stack)}}

    body = ["stage.net.encoders"]
    block = ("stage", "stage.net", "stage.net.encoders", "stage.net.encoders.0", "stage.net.encoders.0.0")
    keep = scope_filter(body, exclude=["stage.net.encoders.0.0.mix_norm", "stage.net.encoders.0.0:"])
    assert keep(Node("call_function", stack=block + ("stage.net.encoders.0.0.mix_expand",)))
    assert not keep(Node("call_function", stack=block + ("stage.net.encoders.0.0.mix_norm",)))
    assert not keep(Node("call_function", stack=block))                     # the block's own gate/scale/add ops
    assert keep(Node("get_attr", "stage.net.encoders.0.0.mix_expand.weight"))
    assert not keep(Node("get_attr", "stage.net.encoders.0.0.mix_norm.weight"))
    assert not keep(Node("get_attr", "stage.net.encoders.0.0.mix_scale"))   # owned by the block itself
    assert not keep(Node("call_function", stack=("stage", "stage.net", "stage.net.stem")))
    assert scope_filter(body)(Node("call_function", stack=block))


def test_npu_policy_plans_integer_networks_with_per_target_options():
    from convert.policy import Policy, load_policy
    from isp.units import units_for

    p = load_policy(policy="npu")
    for target, key in (("tflite", "int8_method"), ("executorch", "fold_block_scales")):
        plan = {u.unit: u for u in p.plan(units_for(False), target)}
        for unit in ("denoise", "enhance"):
            assert plan[unit].precision == "int8" and key in plan[unit].recipe.options, plan[unit]
        assert plan["denoise"].recipe.options != {} and any("npu" in w for w in plan["denoise"].warnings)
        floats = [u for u, pu in plan.items() if pu.precision != "int8"]
        assert all(any(w.startswith("policy npu:") for w in plan[u].warnings) for u in ("gain", "gtm")), floats
    assert p.plan(["denoise"], "tflite")[0].recipe.options["int8_method"] == "aeq16"
    assert Policy.from_json(p.to_json(), "again").options == p.options
    with pytest.raises(ValueError, match="unknown units"):
        Policy.from_json({"default": "fp32", "options": {"nope": {"litert": {}}}})
    with pytest.raises(ValueError, match="target"):
        Policy.from_json({"default": "fp32", "options": {"denoise": {"gpu": {}}}})
    with pytest.raises(ValueError, match="unknown keys"):
        Policy.from_json({"default": "fp32", "extra": 1})
