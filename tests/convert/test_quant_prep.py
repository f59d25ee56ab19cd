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
    norms = scope_filter(body, exclude=["stage.net.*_norm"])              # a glob: every layer norm
    assert not norms(Node("call_function", stack=block + ("stage.net.encoders.0.0.ffn_norm",)))
    assert not norms(Node("get_attr", "stage.net.encoders.0.0.mix_norm.weight"))
    assert norms(Node("call_function", stack=block + ("stage.net.encoders.0.0.mix_expand",)))


def test_npu_policy_plans_integer_networks_with_per_target_options():
    from convert.policy import Policy, load_policy
    from isp.units import units_for

    p = load_policy(policy="npu")
    for target, key in (("tflite", "int8_method"), ("executorch", "fold_block_scales"), ("coreml", "quantize_exclude")):
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


def test_exposure_bracket_adds_brighter_clipped_copies():
    from convert.quant_prep import exposure_bracket

    rows = [(torch.full((1, 3, 2, 2), 0.3), torch.zeros(1, 3)), (torch.full((1, 3, 2, 2), 0.6), torch.ones(1, 3))]
    assert exposure_bracket(rows, None) == rows and exposure_bracket(rows, [1]) == rows
    out = exposure_bracket(rows, [1, 2])
    assert len(out) == 4 and out[:2] == rows
    assert torch.allclose(out[2][0], torch.full((1, 3, 2, 2), 0.6)) and torch.equal(out[3][0], torch.ones(1, 3, 2, 2))
    assert torch.equal(out[3][1], torch.ones(1, 3))                  # every input of a row, clipped to [0, 1]
    with pytest.raises(ValueError, match="positive"):
        exposure_bracket(rows, [0])


def test_litert_16x8_ranges_cover_every_calibration_sample(tmp_path):
    """aeq16 calibrates min/max ranges over all samples (ai-edge-quantizer's default moving average forgets a bright
    sample that comes after dim ones) and ``calibration_gains`` adds brighter copies: a bright tile outside the
    dim calibration set then converts at 16-bit accuracy; without the bracket its highlights clip."""
    pytest.importorskip("ai_edge_quantizer")
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from convert.targets import export
    from convert.targets.base import ExportRequest

    m = _small_nafnet_unit(seed=1)
    g = torch.Generator().manual_seed(0)
    dim = [(torch.rand(1, 3, 32, 32, generator=g) * 0.45,) for _ in range(6)]
    bright = torch.rand(1, 3, 32, 32, generator=g).clamp(0.0, 1.0) ** 0.5          # up to 1.0

    def psnr_on_bright(gains):
        req = ExportRequest(m, (dim[0][0],), ["raw"], ["denoised_raw"], precision="int8", calibration=dim,
                            options={"int8_method": "aeq16", **({"calibration_gains": gains} if gains else {})},
                            out_dir=tmp_path / str(gains), stem="denoise")
        res = export("litert", req)
        it = Interpreter(model_path=str(res.files[0]))
        it.allocate_tensors()
        i, o = it.get_input_details()[0], it.get_output_details()[0]
        assert i["dtype"] == np.int16 and o["dtype"] == np.int16 and res.details["io_dtype"].startswith("int16")
        s, z = i["quantization"]
        it.set_tensor(i["index"], np.clip(np.round(bright.numpy() / s + z), -32768, 32767).astype(np.int16))
        it.invoke()
        s, z = o["quantization"]
        got = (it.get_tensor(o["index"]).astype(np.float32) - z) * s
        err = float(((got - m(bright)[0].detach().numpy()) ** 2).mean())
        return 10 * np.log10(1.0 / err)

    with_bracket, without = psnr_on_bright([1, 2.5]), psnr_on_bright(None)
    assert with_bracket > 50.0 and with_bracket > without + 20.0, (with_bracket, without)


def test_litert_int8_io_dtype_is_the_files(tmp_path):
    """PT2E scoped to the NAFNet body (the int8 policy's enhancer) keeps a float32 signature: the manifest's I/O dtype
    comes from the file, so a device runner's caller sends float32, not int8 codes (it once said int8 and the
    bench stopped: "input srgb_upsampled is int8 but its quantization parameters are unknown")."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from convert.targets import export
    from convert.targets.base import ExportRequest
    from isp.stages.nafnet import with_statistics
    from isp.units import NAFNET_BODY

    m = with_statistics(_small_nafnet_unit(seed=1), "textbook")        # as the exporter makes integer NAFNets
    rows = [(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(k)),) for k in range(2)]
    req = ExportRequest(m, rows[0], ["raw"], ["denoised_raw"], precision="int8", calibration=rows,
                        options={"quantize_modules": list(NAFNET_BODY)},
                        out_dir=tmp_path, stem="denoise")
    res = export("litert", req)
    assert res.details["int8_method"] == "pt2e" and res.details["io_dtype"] == "float32"
    i = Interpreter(model_path=str(res.files[0])).get_input_details()[0]
    assert i["dtype"] == np.float32


def test_split_weights_is_equal_and_each_half_quantizes_to_itself():
    from convert.quant_prep import SplitConv2d, int8_grid, prepare_for_quantization, split_weights

    m = _small_nafnet_unit(seed=5)
    x = torch.rand(1, 3, 40, 48)
    ref = m(x)
    split, done = prepare_for_quantization(m, {"split_weights": ["stage.net.stem", "stage.net.encoders.0"]})
    names = done["split_weights"]
    assert "stage.net.stem" in names and all(n == "stage.net.stem" or n.startswith("stage.net.encoders.0.")
                                             for n in names)
    assert len(names) == 1 + 6 * len(m.stage.net.encoders[0])           # six convolutions a NAF block
    assert torch.allclose(split(x), ref, atol=1e-6, rtol=1e-5)
    stem = split.stage.net.stem
    assert isinstance(stem, SplitConv2d) and stem.lo.bias is None
    assert torch.equal(int8_grid(stem.hi.weight), stem.hi.weight)          # the quantizer leaves hi as it is
    w = m.stage.net.stem.weight
    err_int8 = (int8_grid(w) - w).abs().max()
    err_split = (stem.hi.weight + int8_grid(stem.lo.weight) - w).abs().max()
    assert err_split < err_int8 / 100                                      # ~15-bit weights from two int8 ones
    assert isinstance(m.stage.net.stem, torch.nn.Conv2d)                   # the unit itself is untouched
    with pytest.raises(ValueError, match="no convolution"):
        split_weights(m, ["stage.net.nope"])


def test_npu_policy_split_layers_exist_in_the_lite_denoiser_and_keep_it_equal(weights_dir):
    from convert.policy import load_policy
    from convert.quant_prep import prepare_for_quantization
    from convert.units import build_unit
    from isp.geometry import FrameGeometry
    from isp.registry import BuildConfig

    options = load_policy(policy="npu").unit_options("denoise", "litert")
    assert options["split_weights"] and "weight_finetune" not in options
    unit = build_unit("denoise", BuildConfig(weights_dir, style=0, denoiser="s24_lite"), FrameGeometry(128, 128, 128, 0))
    split, done = prepare_for_quantization(unit.module, options)
    assert len(done["split_weights"]) >= len(options["split_weights"])
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        assert torch.allclose(split(x), unit.module(x), atol=1e-5)


def test_coreml_npu_is_w8a8_with_the_policys_float_layers(tmp_path):
    """``--target coreml --policy npu``: the ML program of a NAFNet unit carries int8 weights (``constexpr`` ops over
    int8 data) and 8-bit activations (``quantize`` ops), quantized by the same PT2E path and options as ExecuTorch's;
    the excluded layers stay float (fewer int8 weights than without the exclusion). Structure only: Core ML
    predicts on macOS alone."""
    pytest.importorskip("coremltools")
    pytest.importorskip("executorch")
    from convert.policy import load_policy
    from convert.runtimes import CoreMLStructuralCheck
    from convert.targets import export
    from convert.targets.base import ExportRequest
    from isp.stages.nafnet import with_statistics
    from isp.units import NAFNET_BODY

    plan = {u.unit: u for u in load_policy(policy="npu").plan(["denoise", "enhance"], "coreml")}
    assert all(plan[u].precision == "int8" and plan[u].recipe.options["quantize_exclude"] for u in plan), plan
    m = with_statistics(_small_nafnet_unit(seed=2), "textbook")
    rows = [(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(k)) * 0.6,) for k in range(3)]
    npu = {k: v for k, v in plan["denoise"].recipe.options.items() if k not in ("quantize_exclude", "compute_units")}

    def program(exclude):
        req = ExportRequest(m, rows[0], ["raw"], ["denoised_raw"], precision="int8", calibration=rows,
                            options={**npu, "quantize_modules": list(NAFNET_BODY), "quantize_exclude": exclude},
                            out_dir=tmp_path / str(len(exclude)), stem="denoise")
        res = export("coreml", req)
        return res, CoreMLStructuralCheck.open(res.files[0], ["raw"], ["denoised_raw"])

    mixed, check = program(["stage.net.*_norm", "stage.net.encoders.0"])
    _, whole = program(["stage.net.*_norm"])
    assert mixed.details["float_layers"] == ["stage.net.*_norm", "stage.net.encoders.0"]
    assert mixed.details["calibration_samples"] == 2 * len(rows) and mixed.details["fold_block_scales"] > 0
    assert check.op_types.get("quantize", 0) > 0 and check.op_types.get("dequantize", 0) > 0, check.op_types
    assert set(check.tensor_dtypes) & {"INT8", "UINT8"}, check.tensor_dtypes        # 8-bit activations
    assert check.weight_dtypes.get("INT8", 0) > 0 and set(check.weight_dtypes) == {"INT8"}, check.weight_dtypes
    assert 0 < check.weight_dtypes["INT8"] < whole.weight_dtypes["INT8"], (check.weight_dtypes, whole.weight_dtypes)
    assert check.compute_precision == "FLOAT16"
