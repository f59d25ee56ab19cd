"""Export units (convert/units.py): every unit equals its reference stage, the position-independent BGU slice
stitches to the whole-frame slice, and every unit exports with ``torch.export`` free of grid_sample, linalg and
tensor-exponent pow.

Fast (about half a minute on 2 cores): quarter units run on the golden files' quarter-resolution tensors
(384x512 crops -> geometry 512x384), full-resolution units on 128x128 tiles cut from them, the graph checks at the
CI geometry 512x320 / tile 128.
"""
from __future__ import annotations

import collections

import numpy as np
import pytest
import torch

from isp.units import AUX_UNITS
from convert.units import (UNIT_ORDER, UNITS, Geometry, SliceUnit, build_unit, expand_stages, slice_operands,
                           slice_tiles, slice_window_size, units_for)
from isp.registry import BuildConfig
from isp.stages import upsample as up

CI = Geometry(512, 320, 128, 32)
GOLDEN = Geometry(512, 384, 128, 32)          # the golden crops are 384x512: quarter 96x128

#: max |unit - reference| on the reference's own inputs. Units whose stage has no export mode are the stage itself
#: (0); the others differ by float rounding of the export formulation (tent weights / exp-log vs grid_sample / pow).
TOLERANCE = {"denoise": 0.0, "color": 0.0, "downsample": 0.0, "gain": 0.0, "gtm": 0.0, "ltm": 2e-5, "lut3d": 1e-5,
             "chroma": 1e-5, "gamma": 1e-5, "enhance": 0.0}

#: ops that must not appear in any unit graph (substring of the aten op name)
FORBIDDEN = ("grid_sampler", "linalg", "pow.Tensor_Tensor", "pow.Scalar", "scatter", "nonzero")
#: known pow ops with a scalar exponent (none: the exported chroma histogram, cbcr_histogram_mobile, squares by
#: products; the reference cbcr_histogram's ``** 2`` is not in any exported graph)
KNOWN_POW: dict[str, int] = {}


def _max_err(a, b) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def cfgs(weights_dir):
    return {0: BuildConfig(weights_dir, style=0), 3: BuildConfig(weights_dir, style=3)}


@pytest.fixture(scope="module")
def golden_units(cfgs):
    """Units at the golden geometry, per style, built lazily."""
    cache: dict = {}

    def get(unit: str, style: int):
        if (unit, style) not in cache:
            cache[unit, style] = build_unit(unit, cfgs[style], GOLDEN)
        return cache[unit, style]
    return get


def _golden_inputs(unit_id: str, case, lut_unit=None) -> tuple[torch.Tensor, ...]:
    t = case.tensors
    tile = (slice(None), slice(None), slice(64, 192), slice(128, 256))
    if unit_id == "denoise":
        return (t["raw"][tile],)
    if unit_id == "color":
        return t["denoised_raw"][tile], t["illum"].reshape(1, 3), t["ccm"].reshape(1, 3, 3)
    if unit_id == "enhance":
        return (t["srgb_upsampled"][tile],)
    if unit_id == "downsample":
        return (t["lsrgb"],)
    if unit_id == "chroma" and lut_unit is not None:
        return lut_unit.reference(t["lsrgb_ltm"])
    names = {"gain": ("lsrgb_ds",), "gtm": ("lsrgb_gain",), "ltm": ("lsrgb_gain", "lsrgb_gtm"),
             "lut3d": ("lsrgb_ltm",), "chroma": ("lsrgb_ltm",), "gamma": ("processed_lsrgb",),
             "upsample_fit": ("lsrgb_ds", "gamma_out")}[unit_id]
    return tuple(t[n] for n in names)


# ------------------------------------------------------------------------------------------------------- tables

class TestTable:
    def test_every_unit_has_a_spec(self):
        assert tuple(UNITS) == UNIT_ORDER + AUX_UNITS        # the chain, then the auxiliary units
        assert units_for(lut=False) == [u for u in UNIT_ORDER if u != "lut3d"]

    def test_expand_stages(self):
        assert expand_stages("upsample", lut=False) == ["downsample", "upsample_fit", "upsample_slice"]
        assert expand_stages("gain,denoise", lut=False) == ["denoise", "gain"]
        assert expand_stages("all", lut=True) == list(UNIT_ORDER)
        assert expand_stages("enhance,upsample_fit", lut=False) == ["upsample_fit", "enhance"]
        with pytest.raises(ValueError, match="lut3d exists only"):
            expand_stages("lut3d", lut=False)
        with pytest.raises(ValueError, match="unknown stage or unit"):
            expand_stages("denoize", lut=False)

    def test_io_ranges_come_from_the_specs(self, cfgs):
        unit = build_unit("gamma", cfgs[0], CI)
        ins, outs = unit.io()
        assert [i["name"] for i in ins] == ["processed_lsrgb"] and ins[0]["range"] == [0.0, 1.0]
        assert outs[1]["name"] == "gamma_param" and outs[1]["range"] == pytest.approx([1 / 3.0, 1 / 1.2])
        assert ins[0]["shape"] == [1, 3, 80, 128] and ins[0]["layout"] == "NCHW"

    def test_chroma_of_a_lut_style_reads_the_lut_output(self, cfgs):
        assert build_unit("chroma", cfgs[3], CI).input_names == ("lsrgb_lut",)
        assert build_unit("chroma", cfgs[0], CI).input_names == ("lsrgb_ltm",)

    def test_lut3d_needs_a_lut_style(self, cfgs):
        with pytest.raises(ValueError, match="-lut styles"):
            build_unit("lut3d", cfgs[0], CI)


# --------------------------------------------------------------------------------------------- unit == reference

@pytest.mark.parametrize("unit_id", [u for u in UNIT_ORDER if u not in ("upsample_fit", "upsample_slice")])
def test_unit_equals_reference_on_golden_inputs(unit_id, golden_units, golden_cases):
    errors = {}
    for case in golden_cases:
        style = 3 if case.style_id else 0
        if UNITS[unit_id].lut_only and not style:
            continue
        unit = golden_units(unit_id, style)
        lut_unit = golden_units("lut3d", style) if unit_id == "chroma" and style else None
        inputs = _golden_inputs(unit_id, case, lut_unit)
        assert tuple(tuple(t.shape) for t in inputs) == unit.input_shapes
        out = unit(*inputs)
        assert tuple(tuple(t.shape) for t in out) == unit.output_shapes
        errors[case.name] = _max_err(out, unit.reference(*inputs))
    assert errors, f"no golden file exercises {unit_id}"
    print(f"\n{unit_id} max |unit - reference|: " + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    assert max(errors.values()) <= TOLERANCE[unit_id], errors


def test_upsample_fit_equals_the_exact_fit(golden_units, golden_cases):
    """The fit is compared where it is well defined: sliced, against the reference algorithm in float64 (the
    float32 reference carries up to 3e-2 of summation-order noise, isp/stages/upsample.py Numerics)."""
    unit = golden_units("upsample_fit", 0)
    errors = {}
    for case in golden_cases[:3]:
        lsrgb, ds, go = case["lsrgb"], case["lsrgb_ds"], case["gamma_out"]
        (grid,) = unit(ds, go)
        assert tuple(grid.shape) == unit.output_shapes[0]
        exact = up.bgu_slice_reference(up.bgu_fit_reference(ds, go, dtype=torch.float64), lsrgb.double())
        errors[case.name] = float((up.bgu_slice_reference(grid, lsrgb) - exact).abs().max())
    print("\nupsample_fit sliced vs float64 exact: " + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    assert max(errors.values()) <= 1e-3, errors


# ---------------------------------------------------------------------------------------------- slice proof

class TestSlice:
    @pytest.mark.parametrize("tile,overlap", [(128, 32), (96, 16), (200, 0)])
    def test_tiles_stitch_to_the_whole_frame_slice(self, golden_cases, tile, overlap):
        case = golden_cases[0]
        lsrgb, ds, go = case["lsrgb"], case["lsrgb_ds"], case["gamma_out"]
        h, w = lsrgb.shape[-2:]
        geometry = Geometry(w, h, tile, overlap)
        window = slice_window_size(geometry)
        grid = up.bgu_fit_mobile(ds, go)
        unit = SliceUnit(window)
        with torch.no_grad():
            stitched = slice_tiles(unit, grid, lsrgb, geometry, window)
            mobile = up.bgu_slice_mobile(grid, lsrgb)
            reference = up.bgu_slice_reference(grid, lsrgb)
        err_mobile = float((stitched - mobile).abs().max())
        err_ref = float((stitched - reference).abs().max())
        print(f"\nslice tiles {tile}/{overlap}, window {window}: vs bgu_slice_mobile {err_mobile:.2e}, "
              f"vs bgu_slice_reference {err_ref:.2e}")
        assert err_mobile <= 2e-6
        assert err_ref <= 2e-5

    @pytest.mark.parametrize("geometry", [Geometry(512, 320, 128, 32), Geometry(1000, 752, 96, 8),
                                          Geometry(1920, 1080, 256, 32)])
    def test_window_size_is_the_widest_over_all_starts(self, geometry):
        th, tw = geometry.tile_shape
        qh, qw = geometry.quarter
        gh, gw, _ = up.grid_shape(qh, qw)

        def brute(n_full, n_tile, n_cells, step):
            widths = [up._slice_window(s, n_tile, n_full, n_cells, np.float32)[:2]
                      for s in [*range(0, n_full - n_tile + 1, step), n_full - n_tile]]
            return max(c1 - c0 for c0, c1 in widths)

        step = 1 if geometry.width <= 1000 else 3
        assert slice_window_size(geometry) == (brute(geometry.height, th, gh, step), brute(geometry.width, tw, gw, step))

    def test_every_tile_position_fits_the_window(self):
        """(R, C) covers every start, not only the windows of one plan (runtimes may tile with overlap 0)."""
        geometry = Geometry(512, 320, 128, 32)
        r, c = slice_window_size(geometry)
        grid = torch.zeros(1, 12, 16, *up.grid_shape(80, 128)[:2])
        for y0 in range(0, 320 - 128 + 1, 7):
            for x0 in range(0, 512 - 128 + 1, 13):
                window, iy, ixt = slice_operands(grid, (y0, x0), (128, 128), (320, 512), r, c)
                assert window.shape == (1, 12, 16, r, c) and iy.shape == (128, r) and ixt.shape == (c, 128)
                assert torch.allclose(iy.sum(1), torch.ones(128)) and torch.allclose(ixt.sum(0), torch.ones(128))
        too_small = 0
        for y0 in range(0, 320 - 128 + 1):
            try:
                slice_operands(grid, (y0, 0), (128, 128), (320, 512), r - 1, c)
            except ValueError as exc:
                assert "grid window" in str(exc)
                too_small += 1
        assert too_small, "R is larger than any tile needs"

    def test_unit_matches_its_reference_callable(self, cfgs, golden_cases):
        case = golden_cases[0]
        lsrgb, ds, go = case["lsrgb"], case["lsrgb_ds"], case["gamma_out"]
        unit = build_unit("upsample_slice", cfgs[0], GOLDEN)
        grid = up.bgu_fit_mobile(ds, go)
        stitched = slice_tiles(unit.module, grid, lsrgb, GOLDEN, unit.window, run=lambda *x: unit(*x)[0])
        (ref,) = unit.reference(lsrgb, grid)
        assert float((stitched - ref).abs().max()) <= 2e-5


# ------------------------------------------------------------------------------------------- export graphs

@pytest.fixture(scope="module")
def ci_graph_ops(weights_dir):
    """aten op -> count of every unit's ``torch.export`` graph at the CI geometry (style 3: with the 3-D LUT)."""
    cfg = BuildConfig(weights_dir, style=3)
    out = {}
    for uid in UNIT_ORDER:
        unit = build_unit(uid, cfg, CI)
        ep = torch.export.export(unit.module, unit.example_inputs(), strict=False)
        out[uid] = collections.Counter(str(n.target) for n in ep.graph.nodes if n.op == "call_function")
    return out


@pytest.mark.parametrize("unit_id", UNIT_ORDER)
def test_export_graph_is_mobile_friendly(unit_id, ci_graph_ops):
    ops = ci_graph_ops[unit_id]
    bad = {op: n for op, n in ops.items() if any(f in op for f in FORBIDDEN)}
    assert not bad, f"{unit_id}: forbidden ops in the exported graph: {bad}"
    pows = sum(n for op, n in ops.items() if "pow" in op)
    assert pows == KNOWN_POW.get(unit_id, 0), (
        f"{unit_id}: {pows} pow ops (known: {KNOWN_POW.get(unit_id, 0)}); update KNOWN_POW if a stage changed")
    print(f"\n{unit_id}: " + ", ".join(f"{op.replace('aten.', '')} {n}" for op, n in sorted(ops.items())))


# -------------------------------------------------------------------------------- int8 scope of the NAFNet units

def _small_nafnet_unit(seed: int = 0):
    """A unit shaped like ``denoise`` / ``enhance`` (StageUnit -> stage.net = NAFNet), small and random."""
    from convert.units import StageUnit
    from isp.stages.denoise import RawDenoiser
    from isp.stages.nafnet import NAFNetConfig

    torch.manual_seed(seed)
    m = StageUnit(RawDenoiser(NAFNetConfig(width=4, middle_block_num=1, encoder_block_nums=(1, 1),
                                           decoder_block_nums=(1, 1)))).eval()
    with torch.no_grad():                       # the NAF blocks' scales start at 0 (identity blocks): wake them up
        for name, p in m.named_parameters():
            if name.endswith(("mix_scale", "ffn_scale")):
                p.uniform_(0.2, 0.5)
    return m


@pytest.mark.parametrize("unit_id", ["denoise", "enhance"])
def test_nafnet_units_scope_int8_to_the_body(unit_id):
    """int8 of denoise/enhance quantizes the NAFNet body only (stem, head, skip adds, global residual stay float) on
    every target that can scope; w8 keeps quantizing every weight."""
    from convert import recipes
    from convert.units import NAFNET_BODY

    assert UNITS[unit_id].network == NAFNET_BODY
    m = _small_nafnet_unit()
    names = {n for n, _ in m.named_modules()}
    assert set(NAFNET_BODY) <= names and {"stage.net.stem", "stage.net.head"} <= names
    for target in recipes.TARGETS:
        r, _ = recipes.resolve(unit_id, target, "int8")
        assert r.supported and r.options[recipes.SCOPE_OPTION] == list(NAFNET_BODY), (target, r)
        assert recipes.recipe(unit_id, target, "w8").quant_scope is None


def _conv_weight_quantized(model) -> dict[str, bool]:
    """ONNX Conv node -> its module (``name_scopes`` ends with the module path, then the op name) and whether its
    weight is dequantized int8."""
    import ast
    producers = {o: n for n in model.graph.node for o in n.output}
    out = {}
    for n in model.graph.node:
        if n.op_type != "Conv":
            continue
        meta = {p.key: p.value for p in n.metadata_props}
        scope = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "['?', '?']"))[-2]
        w = producers.get(n.input[1])
        out[f"{scope}#{n.name}"] = w is not None and w.op_type == "DequantizeLinear"
    return out


def test_onnx_int8_of_the_nafnet_body_leaves_stem_head_and_residual_float(tmp_path):
    """Graph-level: the ONNX int8 export of a NAFNet unit with the recipe's scope has int8 weights on every body
    conv, float weights on the stem and head convs, and no Q/DQ on the image input or the output (the global
    residual ``head(f) + x`` runs in float)."""
    import onnx

    from convert import recipes
    from convert.targets import export
    from convert.targets.base import ExportRequest

    m = _small_nafnet_unit()
    x = torch.rand(1, 3, 32, 32)
    r, _ = recipes.resolve("denoise", "onnx", "int8")
    calib = [(torch.rand(1, 3, 32, 32),) for _ in range(4)]
    req = ExportRequest(m, (x,), ["raw"], ["denoised_raw"], precision="int8", calibration=calib,
                        options=dict(r.options), out_dir=tmp_path, stem="nafnet")
    res = export("onnx", req)
    model = onnx.load(str(res.path))
    convs = _conv_weight_quantized(model)
    head_stem = {k: v for k, v in convs.items() if k.startswith(("stage.net.stem#", "stage.net.head#"))}
    body = {k: v for k, v in convs.items() if k not in head_stem}
    assert len(head_stem) == 2 and not any(head_stem.values()), head_stem
    assert body and all(body.values()), {k: v for k, v in body.items() if not v}
    consumers = collections.defaultdict(list)
    for n in model.graph.node:
        for i in n.input:
            consumers[i].append(n.op_type)
    assert "QuantizeLinear" not in consumers["raw"], consumers["raw"]
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    assert producers["denoised_raw"] != "DequantizeLinear"
    # the global residual: an Add fed by the (float) head conv
    head_out = [o for n in model.graph.node if n.op_type == "Conv" and
                "stage.net.head" in dict((p.key, p.value) for p in n.metadata_props).get(
                    "pkg.torch.onnx.name_scopes", "") for o in n.output]
    assert head_out and consumers[head_out[0]] == ["Add"], consumers[head_out[0]]


def test_pt2e_int8_of_the_nafnet_body_leaves_stem_and_head_float():
    """Graph-level, the PT2E path of ExecuTorch / Core ML / LiteRT (``scope_filter``): after ``convert_pt2e`` the
    body convs read dequantized int8 weights, the stem and head convs their float weights."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                         get_symmetric_quantization_config)

    from convert.targets.base import pt2e_quantize, scope_filter
    from convert.units import NAFNET_BODY

    m = _small_nafnet_unit()
    x = torch.rand(1, 3, 32, 32)
    q = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    q.set_filter_function(scope_filter(list(NAFNET_BODY)))
    gm = pt2e_quantize(m, (x,), q, [(torch.rand(1, 3, 32, 32),) for _ in range(2)])
    convs = {}
    for n in gm.graph.nodes:
        if n.op == "call_function" and "conv2d" in str(n.target):
            w = n.args[1]
            path = [str(p) for p, _ in (n.meta.get("nn_module_stack") or {}).values()]
            convs[path[-1] if path else n.name] = w.op == "call_function" and "dequantize" in str(w.target)
    outer = {k: v for k, v in convs.items() if k.endswith(("net.stem", "net.head"))}
    assert len(outer) == 2 and not any(outer.values()), outer
    body = {k: v for k, v in convs.items() if k not in outer}
    assert body and all(body.values()), {k: v for k, v in body.items() if not v}
