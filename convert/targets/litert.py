"""LiteRT (TFLite) target: ``litert_torch.convert`` -> [quantize] -> ``.tflite``.

Precisions:

* ``fp32`` — ``litert_torch.convert`` of the module behind a keyword wrapper, so the signature
  (``serving_default``) carries ``request.input_names`` / ``request.output_names``. Layout stays NCHW at the
  signature; the converter inserts TRANSPOSEs around NHWC kernels.
* ``fp16`` — the precision of the GPU path: ai-edge-quantizer ``float_casting`` (16-bit float weights) on the fp32
  flatbuffer, then :func:`convert.targets.litert_gpu.rewrite_for_gpu` folds each fp16 weight's DEQUANTIZE back
  into a float32 constant holding the same (fp16-rounded) values: the GPU delegate computes in fp16 and rounds
  weights to fp16 itself, and it refused DEQUANTIZE in front of non-convolution ops. The CPU (XNNPACK) runs the
  graph in fp32. The file's weights are float32 (twice TFLite's "float16 quantization" size).
* ``int8`` — full-integer static W8A8. ``options["int8_method"]``: ``"pt2e"``: litert-torch's
  ``PT2EQuantizer`` (symmetric, per-channel weights, static activations) with torchao ``prepare_pt2e`` /
  ``convert_pt2e``, calibrated on ``request.calibration``, int literals rewritten to floats first (the
  "histogram_cpu … Long" pitfall), then ``litert_torch.convert(..., quant_config=QuantConfig(pt2e_quantizer=…))``.
  ``"aeq"``: ai-edge-quantizer ``static_wi8_ai8`` on the fp32 flatbuffer, calibrated through the interpreter.
  ``"auto"`` (default): PT2E, and aeq when PT2E fails (the PT2E error goes into ``warnings`` and
  ``details["int8_pt2e_error"]``; ``details["int8_method"]`` says which one made the file). PT2E fails, e.g.,
  on ``sigmoid(x) * y`` ("'tfl.transpose' op quantization parameters violate the same scale constraint").
  ``"aeq16"``: ai-edge-quantizer ``static_wi8_ai16`` (LiteRT's 16x8 mode: int8 per-channel weights, int16
  activations and int16 I/O) over the whole unit — ``quantize_modules`` is not applied (recorded in ``details``):
  16-bit activations carry the unit's image tensors at ~1.5e-5 resolution, so no part needs to stay float.
  Ranges are the min/max over all calibration samples (not ai-edge-quantizer's moving average, which clipped the
  highlights of the denoiser's brighter tiles: 20 -> 41 dB end to end), and ``options["calibration_gains"]``
  (e.g. ``[1, 2]``) adds the samples at brighter exposures, clipped to [0, 1]
  (:func:`convert.quant_prep.exposure_bracket`). ``options["split_weights"]`` (module paths) splits those
  convolutions into an int8-grid part and its rounding residual first (:func:`convert.quant_prep.split_weights`:
  ~15-bit weights on int8 kernels for the layers the int8 weights hurt most); ``fold_block_scales`` as ExecuTorch.
  The ai-edge-quantizer modes give **int8 (int16) input and output tensors** (:mod:`runtime_py.runtimes`
  quantizes/dequantizes with the tensors' scale and zero point); PT2E scoped to the NAFNet body keeps a float32
  signature. The manifest's I/O dtype is read from the file (:func:`signature_io_dtype`).
* ``w8`` — ai-edge-quantizer ``dynamic_wi8_afp32``: int8 per-channel weights, activations quantized at run time
  (TFLite "dynamic range"). ``options["w8_mode"] = "weight_only"`` gives ``weight_only_wi8_afp32`` instead
  (int8 weights dequantized to fp32, float compute).

Float sets (fp32, fp16) also get the other GPU rewrites of :mod:`convert.targets.litert_gpu` (the final clamp as
MAXIMUM/MINIMUM instead of RELU_0_TO_1) and their GPU coverage **measured by the delegate** where this host has an
adapter (``details["gpu_coverage"]``, copied to the manifest's ``backend_coverage["gpu"]``; device profiles use it).

Op coverage (``op_coverage``) is a **static check** of the written flatbuffer: builtin ops by type, and which of them the TFLite GPU
delegate accepts, per the allow-list and conditions of TensorFlow's
``tensorflow/lite/tools/versioning/gpu_compatibility.cc`` (``CheckGpuDelegateCompatibility``) reproduced in
:data:`GPU_OPS`, plus "runtime tensors of rank <= 4" (the delegate's BHWC layout; SLICE/STRIDED_SLICE are
3-/4-D only there). The GPU check built into the pip ``ai_edge_litert`` analyzer reports every op as compatible
(RANDOM_UNIFORM, GATHER_ND and 5-D BROADCAST_TO included), so it is not used. A pass here is not a guarantee: the
delegate can still reject a node at run time.

``options["quantize_modules"]`` (submodule names): int8 and w8 then go through litert-torch PT2E (static /
dynamic) with the annotation limited to ops traced inside those submodules; no ai-edge-quantizer fallback (its
recipes select TFLite ops by name, and TFLite names carry no module paths).

The onnx2tf route (``options["converter"] = "onnx2tf"``) is not implemented: it needs its own calibration files
offline, flips every 4-D input to NHWC and once produced silently wrong output after a batch-changing reshape
(``shared/toolchain/README.md``); litert-torch covers every probe op family without it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from convert.quant_prep import exposure_bracket, prepare_for_quantization

from .base import (ExportError, ExportRequest, ExportResult, OpCoverage, Recorder, artifact_path, atomic_save, count_by,
                   finish, pt2e_quantize, quantize_scope, scope_filter, short_error)

TARGET = "litert"
EXT = "tflite"
#: options this target reads (``quantize_modules``: int8/w8 quantize only those submodules, via PT2E)
SUPPORTED_OPTIONS = ("int8_method", "w8_mode", "converter", "quantize_modules", "calibration_gains",
                     "fold_block_scales", "split_weights")
SIGNATURE = "serving_default"
#: ``options["int8_method"]``: ``auto`` (PT2E, AEQ W8A8 if PT2E fails), ``pt2e``, ``aeq`` (AEQ W8A8), ``aeq16``
#: (AEQ 16x8: int8 weights, int16 activations — the mode NPU delegates take for image networks; whole unit)
INT8_METHODS = ("auto", "pt2e", "aeq", "aeq16")

#: TFLite builtin ops the GPU delegate accepts (gpu_compatibility.cc); op-specific conditions in _gpu_reason().
GPU_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "BATCH_MATMUL", "CAST", "CONCATENATION", "CONV_2D", "DENSIFY",
    "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE", "DEQUANTIZE", "FULLY_CONNECTED", "HARD_SWISH", "LSTM", "MAX_POOL_2D",
    "MEAN", "MUL", "PACK", "QUANTIZE", "RELU_N1_TO_1", "PRELU", "RESHAPE", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH",
    "SPLIT", "SPLIT_V", "STRIDED_SLICE", "TILE", "TRANSPOSE", "TRANSPOSE_CONV", "RESIZE_BILINEAR",
    "RESIZE_NEAREST_NEIGHBOR", "RELU", "RELU6", "LEAKY_RELU", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "SUM",
    "PAD", "MIRROR_PAD", "ABS", "COS", "ELU", "EXP", "FLOOR", "LOG", "LOGISTIC", "NEG", "RSQRT", "SIN", "SQRT",
    "SQUARE", "TANH", "DIV", "EQUAL", "FLOOR_DIV", "FLOOR_MOD", "GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL",
    "MAXIMUM", "MINIMUM", "NOT_EQUAL", "POW", "SQUARED_DIFFERENCE", "SUB",
})
GPU_CUSTOM_OPS = frozenset({"Convolution2DTransposeBias", "MaxPoolingWithArgmax2D", "MaxUnpooling2D", "Resampler"})
IO_METADATA = "isp.io_names"
GPU_CHECK = "gpu-delegate (static check: gpu_compatibility.cc allow-list + rank <= 4)"


class _Named(nn.Module):
    """Keyword inputs and a dict of outputs, so the LiteRT signature carries the request's tensor names."""

    def __init__(self, inner: nn.Module, input_names: Sequence[str], output_names: Sequence[str]) -> None:
        super().__init__()
        self.inner = inner
        self.input_names = list(input_names)
        self.output_names = list(output_names)

    def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        outs = self.inner(*(inputs[n] for n in self.input_names))
        if isinstance(outs, torch.Tensor):
            outs = (outs,)
        return {n: o for n, o in zip(self.output_names, outs)}


def _convert(module: nn.Module, req: ExportRequest, quant_config: Any = None) -> bytes:
    import litert_torch

    named = _Named(module, req.input_names, req.output_names)
    if not isinstance(module, torch.fx.GraphModule):
        named = named.eval()
    kwargs = dict(zip(req.input_names, req.example_inputs))
    model = litert_torch.convert(named, sample_kwargs=kwargs, quant_config=quant_config)
    flat = bytes(model.model_content())
    tagged = with_io_metadata(flat, req.input_names, req.output_names)
    return flat if tagged is None else tagged


def with_io_metadata(flat: bytes, input_names: Sequence[str], output_names: Sequence[str]) -> bytes | None:
    """Add ``isp.io_names`` metadata (JSON: declared input and output order) to a flatbuffer whose buffers are
    inline; LiteRT orders signature outputs by tensor index, not by declaration. Returns None for a model with
    offset (external) buffers, which this repacking would break."""
    import json

    import numpy as np
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    model = fb.ModelT.InitFromPackedBuf(bytearray(flat), 0)
    if any(b.offset for b in model.buffers or []):
        return None
    payload = json.dumps({"inputs": list(input_names), "outputs": list(output_names)}).encode()
    buffer = fb.BufferT()
    buffer.data = np.frombuffer(payload, dtype=np.uint8)
    model.buffers.append(buffer)
    meta = fb.MetadataT()
    meta.name = IO_METADATA
    meta.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name not in (IO_METADATA, IO_METADATA.encode())]
    model.metadata.append(meta)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def signature_io_dtype(flat: bytes) -> str:
    """The one dtype of the signature's inputs and outputs as the flatbuffer declares them (``float32``, ``int8``,
    ``int16``): PT2E scoped to the NAFNet body keeps a float32 signature, ai-edge-quantizer's whole-unit modes make
    it integer. The manifest records it; a device runner's caller encodes the tensors by it."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=flat).get_signature_runner(SIGNATURE)
    found = {np.dtype(d["dtype"]).name for part in (runner.get_input_details(), runner.get_output_details())
             for d in part.values()}
    if len(found) != 1:
        raise ExportError(TARGET, "int8", "io", ValueError(f"signature mixes tensor types {sorted(found)}; the "
                                                           f"manifest describes one I/O dtype per unit"))
    return found.pop()


def _aeq(float_model: bytes, recipe: Any, req: ExportRequest | None = None,
         calibration_samples: Sequence[tuple[torch.Tensor, ...]] | None = None, min_max: bool = False) -> bytes:
    """ai-edge-quantizer on a float flatbuffer; calibrates through the interpreter when the recipe needs it, on
    ``calibration_samples`` (default ``req.calibration``). ``min_max``: each tensor's range is the min/max over all
    samples instead of ai-edge-quantizer's default moving average (smoothing 0.95: dominated by the first samples,
    so a bright tile late in the set is clipped)."""
    from ai_edge_quantizer import calibrator, quantizer
    from ai_edge_quantizer.utils import qsv_utils

    q = quantizer.Quantizer(bytearray(float_model), recipe)
    calibration = None
    if q.need_calibration:
        rows = req.calibration if calibration_samples is None else calibration_samples
        samples = [{n: t.numpy() for n, t in zip(req.input_names, sample)} for sample in rows]
        if min_max:
            cal = calibrator.Calibrator(bytes(float_model), num_threads=1, qsv_update_func=qsv_utils.min_max_update)
            cal.calibrate({SIGNATURE: samples}, q._recipe_manager)
            calibration = cal.get_model_qsvs()
        else:
            calibration = q.calibrate({SIGNATURE: samples}, num_threads=1)
    result = q.quantize(calibration, enable_progress_report=False)
    return bytes(result.quantized_model)


def _pt2e_quantizer(dynamic: bool, scope: list[str] | None) -> Any:
    """litert-torch's PT2EQuantizer (symmetric, per-channel), limited to ``scope`` submodules when given (its
    ``set_module_name`` cannot match torch.export graphs: see :func:`convert.targets.base.scope_filter`)."""
    from litert_torch.quantize import pt2e_quantizer as pq

    cfg = pq.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic)
    if scope is None:
        return pq.PT2EQuantizer().set_global(cfg)
    keep = scope_filter(scope)

    class ScopedPT2EQuantizer(pq.PT2EQuantizer):
        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            if dynamic:
                self._annotate_all_dynamic_patterns(model, cfg, keep)
            else:
                self._annotate_all_static_patterns(model, cfg, keep)
            pq.propagate_annotation(model)
            return model

    return ScopedPT2EQuantizer().set_global(cfg)


def _fp16_recipe() -> list[dict[str, Any]]:
    return [{"regex": ".*", "operation": op, "algorithm_key": "float_casting",
             "op_config": {"weight_tensor_config": {"num_bits": 16, "dtype": "FLOAT", "symmetric": True,
                                                    "granularity": "TENSORWISE"},
                           "compute_precision": "FLOAT", "explicit_dequantize": True}}
            for op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "CONV_2D_TRANSPOSE")]


def export(req: ExportRequest) -> ExportResult:
    """Export ``req`` to ``<stem>_litert_<precision>.tflite``; see the module docstring."""
    rec = Recorder(TARGET, req.precision)
    if req.options.get("converter", "litert-torch") != "litert-torch":
        raise rec.fail("convert", f"converter {req.options['converter']!r} is not implemented; only "
                                  f"'litert-torch' (see convert.targets.litert docstring for why not onnx2tf)")
    if req.backends:
        raise ValueError(f"litert: backends are chosen at run time (delegates), not at export; got {req.backends}")
    details: dict[str, Any] = {"converter": "litert-torch", "signature": SIGNATURE, "io_dtype": "float32"}
    with rec.step("import"):
        import litert_torch  # noqa: F401
    module = req.module.eval()
    if req.precision == "int8":                  # float-equal rewrites the recipe asks for (convert.quant_prep)
        module, prep = prepare_for_quantization(module, req.options)
        details.update(prep)
    int8_method = req.options.get("int8_method", "auto")
    if int8_method not in INT8_METHODS:
        raise ValueError(f"litert int8_method: expected one of {', '.join(INT8_METHODS)}, got {int8_method!r}")
    flat = None
    scope = quantize_scope(req) if req.precision in ("int8", "w8") else None
    if req.precision == "int8" and int8_method == "aeq16":
        if scope is not None:       # 16-bit activations carry the image tensors too: the whole unit is integer
            details["quantize_modules_not_applied"] = scope
            scope = None
    if scope is not None and req.precision == "int8" and int8_method == "aeq":
        raise rec.fail("quantize", "quantize_modules needs int8_method 'pt2e' or 'auto' (ai-edge-quantizer "
                                   "recipes select TFLite ops by name, which carry no module paths)")
    if (req.precision == "int8" and int8_method in ("auto", "pt2e")) or scope is not None:
        dynamic = req.precision == "w8"
        try:
            with rec.step("quantize"):
                from litert_torch.quantize.quant_config import QuantConfig
                quantizer = _pt2e_quantizer(dynamic, scope)
                converted = pt2e_quantize(module, req.example_inputs, quantizer,
                                          [] if dynamic else req.calibration, fold_quantize=False,
                                          float_literals=True)
            with rec.step("convert"):
                flat = _convert(converted, req, QuantConfig(pt2e_quantizer=quantizer))
            details["int8_method"] = "pt2e"
            details["quantization"] = (
                "litert-torch PT2EQuantizer symmetric per-channel " +
                ("dynamic (w8)" if dynamic else f"W8A8 static, {len(req.calibration)} calibration samples") +
                "; int literals made float")
            if scope is not None:
                details["quantize_modules"] = scope
        except ExportError as exc:
            if int8_method == "pt2e" or scope is not None:
                raise
            rec.warn(f"int8 via litert-torch PT2E failed ({exc}); fell back to ai-edge-quantizer static_wi8_ai8")
            details["int8_pt2e_error"] = short_error(exc.cause)
    if flat is None:
        with rec.step("convert"):
            flat = _convert(module, req)
        if req.precision != "fp32":
            with rec.step("quantize"):
                from ai_edge_quantizer import recipe as aeq_recipe
                if req.precision == "fp16":
                    flat = _aeq(flat, _fp16_recipe())
                    details["quantization"] = "ai-edge-quantizer float_casting: fp16 weights, DEQUANTIZE to fp32"
                elif req.precision == "w8":
                    mode = req.options.get("w8_mode", "dynamic")
                    if mode not in ("dynamic", "weight_only"):
                        raise ValueError(f"litert w8_mode: expected 'dynamic' or 'weight_only', got {mode!r}")
                    name = "dynamic_wi8_afp32" if mode == "dynamic" else "weight_only_wi8_afp32"
                    flat = _aeq(flat, getattr(aeq_recipe, name)())
                    details["quantization"] = f"ai-edge-quantizer {name}: int8 per-channel weights"
                elif int8_method == "aeq16":
                    gains = req.options.get("calibration_gains")
                    rows = exposure_bracket(req.calibration, gains)
                    flat = _aeq(flat, aeq_recipe.static_wi8_ai16(), req, rows, min_max=True)
                    details["int8_method"] = "aeq16"
                    details["quantization"] = (f"ai-edge-quantizer static_wi8_ai16 (16x8: int8 per-channel weights, "
                                               f"int16 activations) over the whole unit, ranges min/max over "
                                               f"{len(rows)} calibration samples"
                                               + (f" ({len(req.calibration)} at exposure gains {list(gains)})"
                                                  if gains else ""))
                else:
                    flat = _aeq(flat, aeq_recipe.static_wi8_ai8(), req)
                    details["int8_method"] = "aeq"
                    details["quantization"] = (f"ai-edge-quantizer static_wi8_ai8 (W8A8), "
                                               f"{len(req.calibration)} calibration samples")
    if req.precision == "int8":                  # as the file declares them: scoped PT2E keeps float32 I/O
        io = signature_io_dtype(flat)
        details["io_dtype"] = io if io == "float32" else f"{io} (runtime_py quantizes/dequantizes)"
    if req.precision in ("fp32", "fp16"):
        with rec.step("gpu-rewrite"):            # the float sets are the GPU path: ops the delegate takes whole
            from .litert_gpu import rewrite_for_gpu
            flat, rewrites = rewrite_for_gpu(flat)
        if rewrites:
            details["gpu_rewrites"] = rewrites
            if req.precision == "fp16" and any(k.startswith("DEQUANTIZE") for k in rewrites):
                details["quantization"] = ("float32 weights; the GPU delegate computes in float16 (its default) "
                                           "and rounds them to float16 itself (convert.targets.litert_gpu)")
    dest = artifact_path(req, TARGET, EXT)
    with rec.step("save"):
        atomic_save(dest, lambda tmp: Path(tmp).write_bytes(flat))
    if req.precision in ("fp32", "fp16"):
        with rec.step("gpu-coverage"):           # measured by the delegate itself where this host has an adapter
            from .litert_gpu import measured_coverage
            details["gpu_coverage"] = measured_coverage(dest)
        gc = details["gpu_coverage"]
        if gc.get("measured") and not gc.get("fully_accelerated"):
            rec.warn(f"GPU delegate (measured) leaves {gc['cpu_ops']} of {gc['total_ops']} ops on the CPU; "
                     f"rejected: {gc['rejected']}")
        elif "detail" in gc:                     # the delegate crashed or hung on it (in its worker child)
            rec.warn(f"{gc['reason']}: {gc['detail']}")
    with rec.step("coverage"):
        cov = coverage(flat)
    if cov.fallback:
        rec.warn(f"GPU delegate (static check) would leave {sum(cov.fallback.values())} of {cov.total_ops} ops on "
                 f"the CPU: {cov.fallback}")
    return finish(TARGET, req, rec, [dest], cov, details=details)


# ------------------------------------------------------------------------------------------------ op coverage

def _names(cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


def read_ops(flat: bytes) -> list[dict[str, Any]]:
    """Every operator of every subgraph: ``{"op", "subgraph", "index", "gpu_reason"}`` (reason None = GPU ok)."""
    from ai_edge_litert import schema_py_generated as fb

    model = fb.ModelT.InitFromPackedBuf(bytearray(flat), 0)
    op_names = _names(fb.BuiltinOperator)
    type_names = _names(fb.TensorType)
    buffers = model.buffers or []

    def const(tensor: Any) -> bool:
        b = buffers[tensor.buffer] if 0 < tensor.buffer < len(buffers) else None
        return b is not None and (b.data is not None and len(b.data) > 0 or b.offset > 0)

    out = []
    for s_idx, sg in enumerate(model.subgraphs or []):
        for o_idx, op in enumerate(sg.operators or []):
            code = model.operatorCodes[op.opcodeIndex]
            builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
            name = op_names.get(builtin, f"BUILTIN_{builtin}")
            if name == "CUSTOM":
                custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
                name = f"CUSTOM:{custom}"
            tensors = [sg.tensors[i] for i in list(op.inputs if op.inputs is not None else []) +
                       list(op.outputs if op.outputs is not None else []) if i >= 0]
            runtime = [t for t in tensors if not const(t)]
            out.append({"op": name, "subgraph": s_idx, "index": o_idx,
                        "gpu_reason": _gpu_reason(name, op, sg, runtime, type_names, fb)})
    return out


def _gpu_reason(name: str, op: Any, sg: Any, runtime: list[Any], type_names: dict[int, str], fb: Any
                ) -> str | None:
    if name.startswith("CUSTOM:"):
        return None if name[7:] in GPU_CUSTOM_OPS else f"custom op {name[7:]} not supported"
    if name not in GPU_OPS:
        return "op not in the GPU delegate's list"
    ranks = [len(t.shape) if t.shape is not None else 0 for t in runtime]
    if ranks and max(ranks) > 4:
        return f"rank-{max(ranks)} tensor (GPU delegate layout is BHWC)"
    if name in ("SLICE", "STRIDED_SLICE"):
        first = sg.tensors[op.inputs[0]]
        if len(first.shape) not in (3, 4):
            return f"{name} on a {len(first.shape)}-D tensor (3-/4-D only)"
    if name == "CAST":
        src = type_names.get(sg.tensors[op.inputs[0]].type, "?")
        dst = type_names.get(sg.tensors[op.outputs[0]].type, "?")
        if not (src == "BOOL" and dst in ("FLOAT32", "FLOAT16")):
            return f"CAST {src}->{dst} (only BOOL->float)"
    if name == "MIRROR_PAD":
        opts = op.builtinOptions
        if opts is not None and getattr(opts, "mode", 0) != fb.MirrorPadMode.REFLECT:
            return "MIRROR_PAD symmetric (reflect only)"
    if name == "DEQUANTIZE" and type_names.get(sg.tensors[op.inputs[0]].type) == "INT16":
        return "int16 DEQUANTIZE"
    return None


def coverage(flat: bytes) -> OpCoverage:
    ops = read_ops(flat)
    names = [o["op"] for o in ops]
    rejected = [o for o in ops if o["gpu_reason"] is not None]
    reasons: dict[str, str] = {}
    for o in rejected:
        reasons.setdefault(o["op"], o["gpu_reason"])
    subgraphs = {o["subgraph"] for o in ops}
    notes = [f"{k}: {v}" for k, v in sorted(reasons.items())]
    if len(subgraphs) > 1:
        notes.append(f"{len(subgraphs)} subgraphs (ops of all are counted)")
    return OpCoverage(
        delegate=GPU_CHECK, total_ops=len(ops), delegated_ops=len(ops) - len(rejected),
        fallback=count_by([o["op"] for o in rejected]), ops=count_by(names), partitions=None,
        method="flatbuffer operators; GPU acceptance per gpu_compatibility.cc allow-list (static, heuristic)",
        notes=notes, extra={"gpu_rejections": reasons})
