"""The recipe table: ``(unit, target, precision) -> how to export it``, or why it is not exported.

Every difference between targets, units and precisions lives here as data, so the exporter has no
``if target == ...`` chains. A :class:`Recipe` says which ``convert.targets`` module converts the unit, with which
delegates/backends and options (ExecuTorch ``backends``, Core ML ``compute_units``, LiteRT ``int8_method``), which
quantizer runs and on which part of the unit it should run, and — for rows that are not exported — the reason.

The table is built from four small tables:

* :data:`TARGETS` — per target: the module, the artifact extension, the converter, default backends/options, the
  quantizer per precision and the quantizer's scoping API;
* :data:`UNSUPPORTED` — ``(unit, precision) -> reason`` for every target (the maths does not survive the
  precision, or the unit has nothing to quantize);
* :data:`TARGET_UNSUPPORTED` — ``(unit, target, precision) -> reason``: measured target-specific failures;
* :data:`SCOPED_INT8` — units that mix a network with parameter-application maths; in int8 (and w8) only the
  network is quantized (``UnitSpec.network``): whole-unit int8 measured 0.04-1.05 max error on them (the reasons
  are in the table), so an int8 row of such a unit needs a target that can scope its quantizer.

Quantizer scoping. All four targets' quantizers can be scoped (PT2E: ``XNNPACKQuantizer.set_module_name`` /
``PT2EQuantizer.set_module_name``; ONNX Runtime: ``quantize_static(nodes_to_quantize=...)``), but the target
modules (``convert/targets/*.py``) quantize the whole graph (``set_global``). A target that honours the request
declares ``SUPPORTED_OPTIONS`` containing :data:`SCOPE_OPTION` (module names, e.g. ``["stage.net"]``) and then
gets that option (all four do since 2026-11-22); without it :func:`resolve` marks those int8 rows unsupported
(the policy falls back to fp32) and w8 rows warn that all weights are quantized.

NAFNet units (``denoise``, ``enhance``): int8 quantizes the U-Net body only (``convert.units.NAFNET_BODY``); the
3-channel stem/head convolutions, skip additions and the global residual stay float (:data:`SCOPED_INT8`). The
default int8 policy (``convert/policies/int8.json``) runs the enhancer in int8 and keeps the raw denoiser in fp16
and the gain/GTM parameter networks in fp32; :data:`INT8_POLICY_FLOAT` says why, with the measurements.

Precision fallback (what ``--precision X`` does for an unsupported row) is the policy's job
(:mod:`convert.policy`); this module only answers "supported, and how" or "not, because".
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace
from typing import Any

from convert.units import UNIT_ORDER, UNITS
from isp.units import PRECISIONS, TARGET_ALIASES, TARGET_EXT
from isp.units import TARGETS as TARGETS_ORDER

__all__ = ["PRECISIONS", "TARGET_NAMES", "TARGET_ALIASES", "SCOPE_OPTION", "TargetInfo", "TARGETS", "UNSUPPORTED",
           "TARGET_UNSUPPORTED", "SCOPED_INT8", "INT8_ONLY_SCOPE", "INT8_POLICY_FLOAT", "FP16_POLICY_FLOAT", "Recipe", "RECIPES", "recipe",
           "resolve", "target_honours_scope", "canonical_target", "table_rows"]

#: precisions, target names and their accepted spellings are declared once, in :mod:`isp.units`
TARGET_NAMES = TARGETS_ORDER
SCOPE_OPTION = "quantize_modules"


@dataclass(frozen=True)
class TargetInfo:
    module: str                                   # convert.targets.<module>
    ext: str
    converter: str
    quantizer: dict[str, str]                     # precision -> what quantizes / casts
    scope_api: str                                # how that quantizer can be limited to submodules
    backends: tuple[str, ...] | None = None       # ExecuTorch partitioners (first = primary artifact)
    options: dict[str, Any] = field(default_factory=dict)
    verify_options: dict[str, dict[str, Any]] = field(default_factory=dict)   # precision -> runtime load kwargs
    runs_here: str = "yes"


TARGETS: dict[str, TargetInfo] = {
    "executorch": TargetInfo(
        module="executorch", ext=TARGET_EXT["executorch"], converter="torch.export -> to_edge_transform_and_lower -> .pte",
        quantizer={"fp32": "none", "fp16": "half() program behind float32 I/O",
                   "int8": "XNNPACKQuantizer static W8A8 (per-channel weights), torchao PT2E, calibrated",
                   "w8": "XNNPACKQuantizer dynamic (int8 weights, per-tensor dynamic activations; conv/linear)"},
        scope_api="XNNPACKQuantizer.set_module_name(name, config)", backends=("xnnpack",),
        runs_here="XNNPACK programs only (Vulkan / Core ML delegates lower but do not run on this host)"),
    "litert": TargetInfo(
        module="litert", ext=TARGET_EXT["litert"], converter="litert_torch.convert -> .tflite (serving_default signature)",
        quantizer={"fp32": "none", "fp16": "ai-edge-quantizer float_casting (fp16 weights)",
                   "int8": "litert-torch PT2EQuantizer W8A8, ai-edge-quantizer static_wi8_ai8 if PT2E fails",
                   "w8": "ai-edge-quantizer dynamic_wi8_afp32"},
        scope_api="PT2EQuantizer.set_module_name(name, config)", options={"int8_method": "auto"}),
    "coreml": TargetInfo(
        module="coreml", ext=TARGET_EXT["coreml"], converter="torch.export (or jit.trace) -> coremltools.convert (mlprogram)",
        quantizer={"fp32": "none (FLOAT32 compute)", "fp16": "FLOAT16 compute precision",
                   "int8": "torchao PT2E with XNNPACKQuantizer annotations (W8A8), calibrated",
                   "w8": "linear_quantize_weights int8 per-channel, fp16 compute"},
        scope_api="XNNPACKQuantizer.set_module_name(name, config)",
        options={"compute_units": "all", "minimum_deployment_target": "iOS17"},
        runs_here="no (Core ML predicts only on macOS; structural check)"),
    "onnx": TargetInfo(
        module="onnx", ext=TARGET_EXT["onnx"], converter="torch.onnx.export(dynamo=True), opset 18",
        quantizer={"fp32": "none", "fp16": "convert_float_to_float16(keep_io_types=True)",
                   "int8": "onnxruntime quantize_static QDQ (per-channel int8 weights, int8 activations, MinMax)",
                   "w8": "onnxruntime quantize_dynamic (ConvInteger / MatMulInteger)"},
        scope_api="quantize_static(nodes_to_quantize=...) over the exported node names",
        # x86 hosts without VNNI saturate in ORT's u8s8 integer kernels: judge int8 as float Q/DQ emulation
        verify_options={"int8": {"optimization": "disable"}}),
}

_NO_WEIGHTS = "the unit has no weights: w8 would be the fp32 artifact"
_GRID_INT8 = ("grid/LUT-like maths: int8 gave 0.25-3.7 max error on [0,1] data for these op families "
              "(shared/toolchain/README.md); kept in float")
_FIT_FLOAT = ("BGU fit needs float32: its regulariser mu = 1e-7 (n + 1) sits at the float32 rounding level of the "
              "moments and vanishes in fp16/int8 (isp/stages/upsample.py, Numerics)")

#: (unit, precision) -> reason, for every target
UNSUPPORTED: dict[tuple[str, str], str] = {
    ("upsample_fit", "fp16"): _FIT_FLOAT,
    ("upsample_fit", "int8"): _FIT_FLOAT,
    ("upsample_fit", "w8"): _NO_WEIGHTS,
    ("upsample_slice", "int8"): _GRID_INT8 + "; the slice multiplies grid coefficients (|gamma| up to ~20) by pixels",
    ("upsample_slice", "w8"): _NO_WEIGHTS,
    ("lut3d", "int8"): _GRID_INT8,
    ("lut3d", "w8"): "the only weight is the 11^3 LUT table itself (4k values): int8 would quantize the LUT",
    ("color", "int8"): ("parameter-free colour maths (3x3 matrix per pixel): int8 only quantizes the image, "
                        "nothing to accelerate"),
    ("color", "w8"): _NO_WEIGHTS,
    ("downsample", "int8"): ("parameter-free bilinear resize of the whole frame: int8 only quantizes the image; "
                             "calibration sets hold no whole full-resolution frames"),
    ("downsample", "w8"): _NO_WEIGHTS,
}

_ET_W8_SHAPES = ("the ExecuTorch w8 (XNNPACK dynamic qd8) program exports but does not run: '[XNNExecutor.cpp:169] "
                 "Internal Error: Propagating input shapes failed with code: xnn_status_invalid_parameter' "
                 "(executorch 1.5.1 pybindings; rank_match_constants does not cure it for this unit)")
_ET_W8_LAYOUT = ("the ExecuTorch w8 (XNNPACK dynamic qd8) program exports but does not run: '[tensor_impl.cpp:135] "
                 "Attempted to resize a static tensor. Expected shape (1, 3, 128, 128), but received (1, 128, 128, 3)' "
                 "— the delegate hands back its channels-last output (executorch 1.5.1)")

#: (unit, target, precision) -> reason: measured target-specific failures (CI geometry, targets of 2026-11-22)
TARGET_UNSUPPORTED: dict[tuple[str, str, str], str] = {
    **{(u, "executorch", "w8"): _ET_W8_SHAPES for u in ("gain", "gtm", "ltm", "gamma")},
    **{(u, "executorch", "w8"): _ET_W8_LAYOUT for u in ("denoise", "enhance")},
    ("chroma", "executorch", "w8"): (
        "torch.export of the quantized program fails: 'aten::pow() Expected a value of type 'number' for argument "
        "'exponent'' — convert/targets/executorch.py rank_match_constants turns the scalar exponent of "
        "pow.Tensor_Scalar (chroma's histogram squares with ** 2) into a tensor"),
}

#: units that mix a network with parameter-application maths: int8 must quantize only ``UnitSpec.network``.
#: The value is why (measured at the CI geometry on a held-out evaluation frame, whole unit quantized).
SCOPED_INT8: dict[str, str] = {
    "gain": ("lsrgb_gain = x * gain is one static per-tensor int8 activation whose calibrated range does not cover "
             "frames gained up more than the calibration frames: 0.73 (ONNX) / 0.91 (LiteRT) max error at gain 2.4"),
    "gtm": ("the tone curve's exp/log on int8 activations: 0.04 (ONNX), 0.19 (XNNPACKQuantizer PT2E), 1.05 "
            "(LiteRT) max error; 0.003 with the quantizer scoped to stage.net"),
    "gamma": "the exp/log power on int8 activations (as gtm: 0.04-0.19 max error unscoped)",
    "ltm": _GRID_INT8 + " (grid slicing and the tone curve of the local operator)",
    "chroma": _GRID_INT8 + " (the CbCr LUT application and the Y'CbCr conversions)",
    "denoise": ("whole-unit int8 puts the denoised raw image itself (the global residual head(f) + raw) on one "
                "per-tensor int8 activation; colour correction and digital gain then amplify that error (ONNX, "
                "style 0, CI geometry: denoised_raw 34.0 dB / 25.2 dB worst tile, end to end 26.9 dB, mean dE00 "
                "5.3); int8 covers the NAFNet body, the 3-channel stem/head convs, skip adds and the residual stay "
                "float"),
    "enhance": ("as denoise: whole-unit int8 quantizes the output sRGB image (ONNX: 47.8 dB, mean dE00 0.56 for the "
                "unit alone); int8 covers the NAFNet body, the stem/head convs and the global residual stay float"),
}

#: why the default int8 policy (``convert/policies/int8.json``) keeps a unit that has an int8 row in float. The units
#: without an int8 row (colour maths, grids/LUTs, the BGU) are explained by :data:`UNSUPPORTED` / :data:`SCOPED_INT8`.
#: Measured with ``runtime_py.drift --budget ci`` (end to end vs. the float32 reference; budget >= 38 dB, mean
#: dE00 <= 1.0), ONNX, style 0, CI geometry 512x320 tile 128, evaluation frame lg-g4_linear_real.dng.
INT8_POLICY_FLOAT: dict[str, str] = {
    "denoise": (
        "fp16: no int8 formulation of the raw denoiser met the end-to-end budget. Its error is amplified by white "
        "balance, the colour matrix and the digital gain (x10 in PSNR terms from denoised_raw to lsrgb on a dark "
        "frame): whole-unit int8 denoised_raw 34.0 dB -> end to end 26.9 dB; int8 scoped to the NAFNet body "
        "49.2 dB -> 31.0 dB (gain/gtm fp32); body without the full-resolution stages 53.3 dB -> 34.5 dB. fp16: "
        "denoised_raw 90.6 dB, end to end 48.1 dB / mean dE00 0.51 with the int8 enhancer"),
    "gain": (
        "fp32: a 6.6k-parameter network on a 128x128 thumbnail (nothing to gain from int8) whose one scalar sets "
        "the exposure of the whole frame; scoped int8 missed the gain by 0.057 (gain_param 24.9 dB, lsrgb_gain "
        "mean dE00 0.47 on its own)"),
    "gtm": (
        "fp32: as gain, a small parameter network on the thumbnail whose 3 scalars set the global tone curve; "
        "scoped int8: 0.047 max error on gtm_param (31.1 dB), lsrgb_gtm mean dE00 0.54 on its own"),
}

#: why the fp16 policy (``convert/policies/fp16.json``) keeps units in float32 (besides ``upsample_fit``, whose fp16 row
#: is unsupported). Measured with ``runtime_py.drift`` on the unit's reference inputs, CI geometry, every shipped DNG.
FP16_POLICY_FLOAT: dict[str, str] = {
    "gtm": ("fp32: the tone curve's exp/log applied to the thumbnail in half precision: ExecuTorch fp16 (a half() "
            "program) gave lsrgb_gtm 23.4 dB with gtm_param at 68 dB (the parameters are right, their application "
            "is not), ONNX fp16 40.5 dB; end to end ExecuTorch fp16 fell to 28.5-38.2 dB on the shipped DNGs"),
    "chroma": ("fp32: the CbCr histogram and the 2-D LUT lookup in half precision: ExecuTorch fp16 processed_lsrgb "
               "31.5 dB, chroma_lut_param 32.9 dB on their own"),
}

#: scoped in int8 only: their w8 rows (weights only, activations float/dynamic) quantize every weight as before
INT8_ONLY_SCOPE = frozenset({"denoise", "enhance"})


@dataclass(frozen=True)
class Recipe:
    """How to export one ``(unit, target, precision)`` — or ``supported=False`` and ``reason``."""
    unit: str
    target: str
    precision: str
    supported: bool
    reason: str = ""
    module: str = ""                               # convert.targets.<module>
    ext: str = ""
    converter: str = ""
    quantizer: str = ""
    backends: tuple[str, ...] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    quant_scope: tuple[str, ...] | None = None     # submodules to quantize (int8 of a mixed unit); None = all
    scope_required: bool = False
    verify_options: dict[str, Any] = field(default_factory=dict)   # runtime_py.runtimes.load kwargs for checks
    notes: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str, str]:
        return self.unit, self.target, self.precision

    def to_json(self) -> dict[str, Any]:
        return {"unit": self.unit, "target": self.target, "precision": self.precision, "supported": self.supported,
                "reason": self.reason, "converter": self.converter, "quantizer": self.quantizer,
                "backends": list(self.backends) if self.backends else None, "options": dict(self.options),
                "quant_scope": list(self.quant_scope) if self.quant_scope else None, "notes": list(self.notes)}


def _row(unit: str, target: str, precision: str) -> Recipe:
    info = TARGETS[target]
    spec = UNITS[unit]
    reason = UNSUPPORTED.get((unit, precision)) or TARGET_UNSUPPORTED.get((unit, target, precision), "")
    scope = None
    notes: list[str] = []
    if (precision == "int8" or precision == "w8" and unit not in INT8_ONLY_SCOPE) and unit in SCOPED_INT8:
        scope = spec.network
        notes.append(f"{precision} quantizes only {', '.join(scope)} (the network), not the parameter application"
                     + (f": {SCOPED_INT8[unit]}" if precision == "int8" else "") + f"; scoping API: {info.scope_api}")
    return Recipe(unit=unit, target=target, precision=precision, supported=not reason, reason=reason,
                  module=info.module, ext=info.ext, converter=info.converter, quantizer=info.quantizer[precision],
                  backends=info.backends, options=dict(info.options), quant_scope=scope,
                  scope_required=bool(scope) and precision == "int8", verify_options=dict(info.verify_options.get(precision, {})),
                  notes=tuple(notes))


#: the whole table (every unit x target x precision)
RECIPES: dict[tuple[str, str, str], Recipe] = {
    (u, t, p): _row(u, t, p) for u in UNIT_ORDER for t in TARGETS for p in PRECISIONS}


def canonical_target(name: str) -> str:
    """``tflite`` -> ``litert``; ``ValueError`` lists the accepted names."""
    if name not in TARGET_ALIASES:
        raise ValueError(f"target: expected one of {', '.join(sorted(TARGET_ALIASES))}, got {name!r}")
    return TARGET_ALIASES[name]


def recipe(unit: str, target: str, precision: str) -> Recipe:
    """The static table row (no check of what the installed target modules can do)."""
    key = (unit, canonical_target(target), precision)
    if key not in RECIPES:
        raise ValueError(f"no recipe for unit={unit!r}, precision={precision!r}; units are {', '.join(UNIT_ORDER)},"
                         f" precisions {', '.join(PRECISIONS)}")
    return RECIPES[key]


def target_honours_scope(target: str) -> bool:
    """Whether ``convert.targets.<target>`` declares support for :data:`SCOPE_OPTION`."""
    mod = importlib.import_module(f"convert.targets.{TARGETS[canonical_target(target)].module}")
    return SCOPE_OPTION in tuple(getattr(mod, "SUPPORTED_OPTIONS", ()))


def resolve(unit: str, target: str, precision: str, *, backends: tuple[str, ...] | None = None,
            options: dict[str, Any] | None = None) -> tuple[Recipe, list[str]]:
    """The row as it will run here: CLI ``backends``/``options`` merged in, quantizer scoping checked against the
    target module. Returns ``(recipe, warnings)``; an unsupported recipe carries its reason."""
    r = recipe(unit, target, precision)
    warnings: list[str] = []
    if not r.supported:
        return r, warnings
    opts = dict(r.options)
    opts.update(options or {})
    r = replace(r, backends=tuple(backends) if backends and r.backends is not None else r.backends, options=opts)
    if r.quant_scope is not None:
        if target_honours_scope(r.target):
            r = replace(r, options={**r.options, SCOPE_OPTION: list(r.quant_scope)})
        elif r.scope_required:
            return replace(r, supported=False, reason=(
                f"int8 must quantize only the network ({', '.join(r.quant_scope)}): whole-unit int8 breaks the "
                f"parameter application ({SCOPED_INT8[unit]}); convert/targets/{r.module}.py quantizes the whole "
                f"graph (no '{SCOPE_OPTION}' option; the quantizer could: {TARGETS[r.target].scope_api})")), warnings
        else:
            warnings.append(f"{precision} quantizes the weights of the whole unit: convert/targets/{r.module}.py has "
                            f"no '{SCOPE_OPTION}' option to limit it to {', '.join(r.quant_scope)}")
    return r, warnings


def table_rows() -> list[dict[str, Any]]:
    """The table as JSON-able rows (for docs and ``--list-recipes``)."""
    return [r.to_json() for r in RECIPES.values()]
