"""Core ML target: ``torch.export`` -> ``coremltools.convert`` -> ML program (``.mlpackage``).

The ``ExportedProgram`` path is tried first (``run_decompositions({})``, as coremltools documents); when it fails,
``torch.jit.trace`` is converted instead and ``details["conversion_path"]`` says which one made the file (the first
error is kept in ``details["export_path_error"]``). Inputs and outputs are float32 ``TensorType``s with the request's
names (casts to/from fp16 are inside the program).

Precisions:

* ``fp32`` — ``compute_precision=FLOAT32`` (never runs on the Neural Engine, which computes in fp16).
* ``fp16`` — ``compute_precision=FLOAT16``.
* ``w8`` — FLOAT16 program, then ``coremltools.optimize.coreml.linear_quantize_weights`` (int8, symmetric,
  per-channel, ``weight_threshold`` from ``options``, default 0 = every weight): int8 weights, fp16 compute.
* ``int8`` — W8A8: torchao ``prepare_pt2e``/``convert_pt2e`` with ExecuTorch's ``XNNPACKQuantizer`` annotations
  (symmetric per-channel weights, static per-tensor activations, calibrated on ``request.calibration``; the same
  :func:`convert.quant_prep.xnnpack_pt2e` as the ExecuTorch target, with its options ``quantize_exclude``,
  ``observer_eps``, ``fold_block_scales``, ``calibration_gains``, ``split_weights``: the npu policy's mixed
  precision), then converted; the program carries int8 ``quantize``/``dequantize`` on activations and
  ``constexpr_affine_dequantize`` int8 weights (needs ``minimum_deployment_target`` >= iOS17); the layers left
  float compute in FLOAT16. coremltools' own ``CoreMLQuantizer`` is not used: it
  imports ``torch.ao.quantization.quantizer``, which torch 2.13 no longer has.

Options: ``compute_units`` — ``"all"`` (default), ``"cpu_and_ne"``, ``"cpu_and_gpu"``, ``"cpu_only"``; Core ML
picks the units when the app loads the model, so this is recorded in the package metadata
(``isp.compute_units``) for the harness and :class:`runtime_py.runtimes.CoreMLStructuralCheck` to read.
``minimum_deployment_target`` — ``"iOS16"``, ``"iOS17"`` (default), ``"iOS18"``. ``weight_threshold`` (w8).
``conversion_path`` — ``"auto"`` (default), ``"export"``, ``"jit"``. ``quantize_modules`` — submodule names: int8
quantizes only ops traced inside them (PT2E filter); w8 quantizes only the conv/linear weights that belong to them
(matched by shape and values, as MIL keeps no module paths).

Op coverage (a **heuristic**, static): MIL ops by type (``const`` excluded). "Delegated" means "no known reason to
leave the Neural Engine": flagged are op types known or widely reported not to run there — ``gather*``,
``scatter*`` (hollance/neural-engine, docs/unsupported-layers.md), ``resample``/``crop_resize`` (2-D
``grid_sample``; CPU only on device per ``shared/toolchain/README.md``), RNN layers, dilated convolutions
(hollance), control flow and NMS — and, for a FLOAT32 program, every op (the ANE computes in fp16 only). Only a
device profile (Xcode performance report) says what really runs where.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from isp.units import COMPUTE_UNITS  # CLI name -> coremltools.ComputeUnit member (declared once)

from .base import (ExportError, ExportRequest, ExportResult, OpCoverage, Recorder, artifact_path, atomic_save,
                   count_by, export_program, finish, quantize_scope, short_error)

TARGET = "coreml"
EXT = "mlpackage"
#: options this target reads (``quantize_modules``: int8/w8 quantize only those submodules)
SUPPORTED_OPTIONS = ("compute_units", "minimum_deployment_target", "weight_threshold", "conversion_path",
                     "quantize_modules", "quantize_exclude", "observer_eps", "fold_block_scales", "calibration_gains",
                     "split_weights")
ANE_HEURISTIC = "neural-engine (heuristic: known-unsupported op types, dilation, fp32)"

#: MIL op types that typically leave the Neural Engine (see the module docstring for sources).
ANE_UNFRIENDLY = {
    "gather": "gather (hollance/neural-engine)", "gather_nd": "gather (hollance/neural-engine)",
    "gather_along_axis": "gather (hollance/neural-engine)", "scatter": "scatter", "scatter_nd": "scatter",
    "scatter_along_axis": "scatter",
    "resample": "grid_sample -> resample runs on CPU on device", "crop_resize": "crop_resize",
    "lstm": "RNN layer", "gru": "RNN layer", "rnn": "RNN layer",
    "while_loop": "control flow", "cond": "control flow", "non_maximum_suppression": "NMS",
}


def _io(req: ExportRequest, ct: Any) -> tuple[list[Any], list[Any]]:
    ins = [ct.TensorType(name=n, shape=tuple(t.shape), dtype=np.float32)
           for n, t in zip(req.input_names, req.example_inputs)]
    outs = [ct.TensorType(name=n, dtype=np.float32) for n in req.output_names]
    return ins, outs


def _convert(module: torch.nn.Module, req: ExportRequest, rec: Recorder, ct: Any, precision: Any,
             unit: Any, target: Any, details: dict[str, Any]) -> Any:
    ins, outs = _io(req, ct)
    kwargs = dict(inputs=ins, outputs=outs, convert_to="mlprogram", compute_precision=precision,
                  compute_units=unit, minimum_deployment_target=target)
    path = req.options.get("conversion_path", "auto")
    if path not in ("auto", "export", "jit"):
        raise ValueError(f"coreml conversion_path: expected 'auto', 'export' or 'jit', got {path!r}")
    if path in ("auto", "export"):
        try:
            with rec.step("torch.export"):
                ep = export_program(module, req.example_inputs).run_decompositions({})
                dropped = drop_aliases(ep)
                if dropped:
                    details["aliases_dropped"] = dropped
            with rec.step("convert"):
                ml = ct.convert(ep, **kwargs)
            details["conversion_path"] = "torch.export"
            return ml
        except ExportError as exc:
            if path == "export":
                raise
            details["export_path_error"] = short_error(exc.cause)
            rec.warn(f"Core ML conversion from the ExportedProgram failed ({exc}); trying torch.jit.trace")
    with rec.step("torch.jit.trace"):
        traced = torch.jit.trace(module, tuple(req.example_inputs), strict=False)
    with rec.step("convert"):
        ml = ct.convert(traced, **kwargs)
    details["conversion_path"] = "torch.jit.trace"
    return ml


def drop_aliases(ep: torch.export.ExportedProgram) -> int:
    """Remove ``aten.alias`` nodes (no-op views, e.g. from a zero-size pad) in place: coremltools 9 rejects them
    ("Unsupported fx node alias"). Returns the number removed."""
    graph = ep.graph_module.graph
    n = 0
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target in (torch.ops.aten.alias.default,
                                                         torch.ops.aten.alias_copy.default):
            src = node.args[0]
            for spec in ep.graph_signature.output_specs:     # keep the signature pointing at a live node
                if getattr(spec.arg, "name", None) == node.name:
                    spec.arg.name = src.name
            node.replace_all_uses_with(src)
            graph.erase_node(node)
            n += 1
    if n:
        graph.lint()
        ep.graph_module.recompile()
    return n


def export(req: ExportRequest) -> ExportResult:
    """Export ``req`` to ``<stem>_coreml_<precision>.mlpackage``; see the module docstring."""
    rec = Recorder(TARGET, req.precision)
    if req.backends:
        raise ValueError(f"coreml: compute units go in options['compute_units'], not backends; got {req.backends}")
    unit_key = str(req.options.get("compute_units", "all")).lower()
    if unit_key not in COMPUTE_UNITS:
        raise ValueError(f"coreml compute_units: expected one of {sorted(COMPUTE_UNITS)}, got {unit_key!r}")
    with rec.step("import"):
        import coremltools as ct
    target_name = str(req.options.get("minimum_deployment_target", "iOS17"))
    target = getattr(ct.target, target_name, None)
    if target is None:
        raise ValueError(f"coreml minimum_deployment_target: expected e.g. 'iOS16', 'iOS17', got {target_name!r}")
    if req.precision == "int8" and target < ct.target.iOS17:
        raise rec.fail("convert", f"int8 (W8A8) needs minimum_deployment_target >= iOS17, got {target_name}")
    precision_name = "FLOAT32" if req.precision == "fp32" else "FLOAT16"
    precision = getattr(ct.precision, precision_name)
    unit = getattr(ct.ComputeUnit, COMPUTE_UNITS[unit_key])
    details: dict[str, Any] = {"compute_precision": precision_name, "compute_units": COMPUTE_UNITS[unit_key],
                               "minimum_deployment_target": target_name, "io_dtype": "float32"}
    module: torch.nn.Module = req.module.eval()
    if req.precision == "int8":
        with rec.step("quantize"):
            from convert.quant_prep import xnnpack_pt2e
            module = xnnpack_pt2e(module, req.example_inputs, req.calibration, req.options, quantize_scope(req),
                                  details)
        details["quantization"] = (f"W8A8: torchao PT2E with XNNPACKQuantizer annotations (symmetric, per-channel "
                                   f"weights, static activations), {details['calibration_samples']} calibration "
                                   f"samples" + (f"; float layers: {', '.join(details['float_layers'])} (FLOAT16 "
                                                 f"compute)" if details.get("float_layers") else ""))
    ml = _convert(module, req, rec, ct, precision, unit, target, details)
    if req.precision == "w8":
        with rec.step("quantize"):
            import coremltools.optimize.coreml as cto
            op_cfg = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                                 weight_threshold=int(req.options.get("weight_threshold", 0)))
            scope = quantize_scope(req)
            if scope is None:
                cfg = cto.OptimizationConfig(global_config=op_cfg)
            else:   # MIL op names carry no module path: quantize the consts that hold the scoped weights
                cfg = cto.OptimizationConfig(global_config=None, op_name_configs={
                    name: op_cfg for name in _scoped_weight_ops(ml, req, scope)})
                details["quantize_modules"] = scope
            ml = cto.linear_quantize_weights(ml, cfg)
        details["quantization"] = "linear_quantize_weights: int8 symmetric per-channel weights, fp16 compute"
    ml.user_defined_metadata.update({
        "isp.compute_units": COMPUTE_UNITS[unit_key], "isp.compute_precision": precision_name,
        "isp.precision": req.precision, "isp.conversion_path": details["conversion_path"],
        "isp.input_names": ",".join(req.input_names), "isp.output_names": ",".join(req.output_names)})
    with rec.step("coverage"):
        cov = coverage(ml, precision_name)
    dest = artifact_path(req, TARGET, EXT)
    with rec.step("save"):
        atomic_save(dest, lambda tmp: ml.save(str(tmp)))
    return finish(TARGET, req, rec, [dest], cov, details=details, runnable_here=False,
                  not_runnable_reason="Core ML models only predict on macOS; runtime_py gives a structural check")


def _scoped_weight_ops(ml: Any, req: ExportRequest, scope: list[str]) -> list[str]:
    """Names of the MIL ops (conv/linear/matmul) whose weight const matches a parameter of a scoped submodule, by
    shape and values (MIL keeps no module paths)."""
    from .base import in_scope

    params = [p.detach().cpu().numpy() for n, p in req.module.named_parameters() if in_scope(n.rpartition(".")[0],
                                                                                            scope)]
    names = []
    for op in _mil_ops(ml):
        if op.op_type not in ("conv", "conv_transpose", "linear", "matmul"):
            continue
        w = getattr(op, "weight", None) if op.op_type != "matmul" else getattr(op, "y", None)
        val = getattr(w, "val", None)
        if val is None:
            continue
        val = np.asarray(val, dtype=np.float32)
        if any(p.shape == val.shape and np.allclose(p, val, rtol=1e-3, atol=1e-6) for p in params):
            names.append(op.name)
    return names


def _mil_ops(ml: Any) -> list[Any]:
    out: list[Any] = []

    def walk(block: Any) -> None:
        for op in block.operations:
            out.append(op)
            for nested in getattr(op, "blocks", []) or []:
                walk(nested)

    for fn in ml._mil_program.functions.values():
        walk(fn)
    return out


def _dilated(op: Any) -> bool:
    d = getattr(op, "dilations", None)
    val = getattr(d, "val", None)
    return val is not None and any(int(v) > 1 for v in np.ravel(val))


def coverage(ml: Any, compute_precision: str) -> OpCoverage:
    """MIL op counts and the Neural Engine heuristic (see the module docstring)."""
    all_ops = [op for op in _mil_ops(ml) if op.op_type != "const"]
    ops = [op for op in all_ops if not _is_qdq(op.op_type)]
    names = [op.op_type for op in ops]
    flagged: list[str] = []
    reasons: dict[str, str] = {}
    for op in ops:
        why = ANE_UNFRIENDLY.get(op.op_type)
        if why is None and op.op_type in ("conv", "conv_transpose") and _dilated(op):
            why = "dilated convolution (hollance/neural-engine)"
        if why is not None:
            key = op.op_type + ("(dilated)" if why.startswith("dilated") else "")
            flagged.append(key)
            reasons.setdefault(key, why)
    notes = [f"{k}: {v}" for k, v in sorted(reasons.items())]
    qdq = len(all_ops) - len(ops)
    if qdq:
        notes.append(f"{qdq} quantize/dequantize/constexpr ops (activation and weight (de)quantization) not counted")
    fallback = count_by(flagged)
    delegated = len(ops) - len(flagged)
    if compute_precision == "FLOAT32":
        notes.insert(0, "FLOAT32 program: the Neural Engine computes in fp16 only, so none of it runs there "
                        "(ops that would otherwise be flagged: " + (", ".join(fallback) or "none") + ")")
        fallback, delegated = {"all ops (FLOAT32 program)": len(ops)}, 0
    return OpCoverage(
        delegate=ANE_HEURISTIC, total_ops=len(ops), delegated_ops=delegated, fallback=fallback,
        ops=count_by(names), partitions=None,
        method="MIL operations over all functions and nested blocks (const and q/dq excluded); heuristic ANE flags",
        notes=notes, extra={"ane_flags": reasons})


def _is_qdq(op_type: str) -> bool:
    return op_type in ("quantize", "dequantize") or op_type.startswith("constexpr_")
