"""ONNX target: ``torch.onnx.export(dynamo=True)`` -> [onnxruntime quantization / fp16] -> ``.onnx``.

Precisions:

* ``fp32`` — the dynamo exporter (onnxscript), opset ``options["opset"]`` (default 18, at least 18), with the
  request's input/output names, fixed shapes, ONNX optimizer on.
* ``fp16`` — ``onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True)``: fp16 weights and
  compute, float32 graph inputs/outputs (Cast nodes at the edges).
* ``int8`` — ``onnxruntime.quantization.quantize_static``: QDQ format, per-channel symmetric int8 weights, int8
  activations (MinMax calibration through a ``CalibrationDataReader`` over ``request.calibration``).
  On an x86 host without VNNI, onnxruntime's optimized integer kernels can saturate on such full-range weights
  (measured here: a conv probe at 16 dB vs. 49 dB for the same file run as float Q/DQ emulation); the export then
  adds ``details["host_int8_caveat"]``. ``options["reduce_range"] = True`` quantizes weights to 7 bits instead.
* ``w8`` — ``onnxruntime.quantization.quantize_dynamic`` (per-channel int8 weights): it does quantize convs
  (Conv -> ``ConvInteger`` with ``DynamicQuantizeLinear`` on the activation; MatMul -> ``MatMulInteger``), so
  this is dynamic-range quantization, not weight-only. ORT's CPU EP runs it; the NNAPI and Core ML EPs take
  neither ``ConvInteger`` nor ``DynamicQuantizeLinear`` (see ``result.backends``).

``options["quantize_modules"]`` (submodule names): int8/w8 quantize only the nodes whose exporter name scopes
(``pkg.torch.onnx.name_scopes`` metadata) lie inside those submodules (``nodes_to_quantize``). Before quantizing,
``value_info`` entries of initializers are dropped (the dynamo exporter writes them; ``quantize_dynamic``'s shape
inference then fails on a Linear exported as Gemm: "Inferred shape and existing shape differ").

Op coverage: ONNX node op types. The CPU execution provider runs every op (``op_coverage`` delegated = total);
``result.backends["nnapi"]`` and ``["coreml"]`` estimate what the ORT NNAPI and Core ML (ML program) EPs would
take, from the op lists that onnxruntime ships with its mobile usability checker
(``onnxruntime/tools/mobile_helpers/*.md``, ``usability_checker.check_partitioning``): op-type level only, the
caveats per op (e.g. "Only 2D Conv") are listed in the notes and not checked.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import (BackendReport, ExportRequest, ExportResult, OpCoverage, Recorder, artifact_path, atomic_save,
                   count_by, finish, in_scope, quantize_scope)

TARGET = "onnx"
EXT = "onnx"
#: options this target reads (``quantize_modules``: int8/w8 quantize only nodes traced inside those submodules)
SUPPORTED_OPTIONS = ("opset", "reduce_range", "quantize_modules")
MIN_OPSET = 18


def _save_model(model: Any, dest: Path) -> None:
    import onnx

    atomic_save(dest, lambda tmp: onnx.save_model(model, str(tmp)))


def export(req: ExportRequest) -> ExportResult:
    """Export ``req`` to ``<stem>_onnx_<precision>.onnx``; see the module docstring."""
    rec = Recorder(TARGET, req.precision)
    if req.backends:
        raise ValueError(f"onnx: execution providers are chosen at run time, not at export; got {req.backends}")
    opset = int(req.options.get("opset", MIN_OPSET))
    if opset < MIN_OPSET:
        raise ValueError(f"onnx opset: expected >= {MIN_OPSET}, got {opset}")
    with rec.step("import"):
        import onnx
        import torch
    details: dict[str, Any] = {"opset": opset, "exporter": "torch.onnx.export(dynamo=True)", "io_dtype": "float32"}
    dest = artifact_path(req, TARGET, EXT)
    with rec.step("torch.export"):
        program = torch.onnx.export(req.module.eval(), tuple(req.example_inputs), dynamo=True, opset_version=opset,
                                    input_names=list(req.input_names), output_names=list(req.output_names),
                                    optimize=True, verbose=False)
        model = program.model_proto
    if req.precision == "fp32":
        with rec.step("save"):
            _save_model(model, dest)
    elif req.precision == "fp16":
        with rec.step("quantize"):
            from onnxruntime.transformers.float16 import convert_float_to_float16
            model = convert_float_to_float16(model, keep_io_types=True)
            toposort(model)
        details["quantization"] = "convert_float_to_float16(keep_io_types=True)"
        with rec.step("save"):
            _save_model(model, dest)
    else:
        with rec.step("quantize"):
            _quantize(req, model, dest, details)
    with rec.step("coverage"):
        model = onnx.load(str(dest), load_external_data=False)
        cov, reports = coverage(model)
    if "host_int8_caveat" in details:
        rec.warn(details["host_int8_caveat"])
    return finish(TARGET, req, rec, [dest], cov, backends=reports, details=details)


def _quantize(req: ExportRequest, model: Any, dest: Path, details: dict[str, Any]) -> None:
    import tempfile

    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)

    # the dynamo exporter writes value_info for initializers too; quantize_dynamic's shape inference then clashes
    # with the quantized weights ("Inferred shape and existing shape differ", e.g. on a Linear exported as Gemm)
    inits = {i.name for i in model.graph.initializer}
    kept = [v for v in model.graph.value_info if v.name not in inits]
    if len(kept) != len(model.graph.value_info):
        del model.graph.value_info[:]
        model.graph.value_info.extend(kept)
    scope = quantize_scope(req)
    nodes = None
    if scope is not None:
        nodes = scoped_nodes(model, scope)
        if not nodes:
            raise ValueError(f"options['quantize_modules']={scope}: no ONNX node carries those module scopes")
        details["quantize_modules"] = scope
        details["nodes_to_quantize"] = len(nodes)
    with tempfile.TemporaryDirectory(prefix="onnx-quant-") as tmpdir:
        src = Path(tmpdir) / "float.onnx"
        onnx.save_model(model, str(src))
        if req.precision == "int8":
            names = list(req.input_names)
            samples = [{n: t.numpy() for n, t in zip(names, sample)} for sample in req.calibration]

            class Reader(CalibrationDataReader):
                def __init__(self) -> None:
                    self._it = iter(samples)

                def get_next(self) -> dict[str, Any] | None:
                    return next(self._it, None)

            reduce_range = bool(req.options.get("reduce_range", False))
            atomic_save(dest, lambda tmp: quantize_static(
                str(src), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                reduce_range=reduce_range, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                nodes_to_quantize=nodes))
            details["quantization"] = (f"quantize_static QDQ, per-channel int8 weights"
                                       f"{' (7-bit range)' if reduce_range else ''}, int8 activations (MinMax), "
                                       f"{len(samples)} calibration samples")
            if not reduce_range and not _cpu_has_vnni():
                details["host_int8_caveat"] = X86_SATURATION
        else:
            atomic_save(dest, lambda tmp: quantize_dynamic(
                str(src), str(tmp), per_channel=True, weight_type=QuantType.QInt8, nodes_to_quantize=nodes))
            details["quantization"] = ("quantize_dynamic per-channel int8 weights: Conv->ConvInteger, "
                                       "MatMul->MatMulInteger, activations quantized at run time")


def toposort(model: Any) -> None:
    """Reorder ``model.graph.node`` topologically, in place (``convert_float_to_float16`` appends its input Casts
    after their consumers; onnxruntime runs that, but graph tools such as the EP usability checker reject it)."""
    nodes = list(model.graph.node)
    available = {i.name for i in model.graph.input} | {i.name for i in model.graph.initializer} | {""}
    ordered, pending = [], nodes
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:          # a cycle or a dangling input: leave the rest as it was
            ordered += pending
            break
        ready_ids = {id(n) for n in ready}
        for n in ready:
            ordered.append(n)
            available.update(n.output)
        pending = [n for n in pending if id(n) not in ready_ids]
    copies = [type(n)() for n in ordered]
    for dst, src in zip(copies, ordered):
        dst.CopyFrom(src)
    del model.graph.node[:]
    model.graph.node.extend(copies)


def scoped_nodes(model: Any, scope: list[str]) -> list[str]:
    """Names of the nodes the dynamo exporter traced inside the ``scope`` submodules (its
    ``pkg.torch.onnx.name_scopes`` metadata)."""
    import ast

    out = []
    for node in model.graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        try:
            scopes = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))
        except (ValueError, SyntaxError):
            continue
        if any(in_scope(str(s), scope) for s in scopes):
            out.append(node.name)
    return out


X86_SATURATION = (
    "this x86 CPU has no VNNI: onnxruntime's u8s8 integer kernels (VPMADDUBSW) can saturate on full-range int8 "
    "weights, so a host run of this model can be far worse than on ARM/NNAPI/Core ML; judge the quantization with "
    "runtime_py.runtimes.load(path, optimization='disable') (float Q/DQ emulation), or export with "
    "options['reduce_range']=True (7-bit weights) for x86 deployment")


def _cpu_has_vnni() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True                     # not Linux/x86: assume no saturation issue
    return "vnni" in flags or "avx" not in flags


def coverage(model: Any) -> tuple[OpCoverage, dict[str, BackendReport]]:
    """All node op types (the CPU EP runs them all) and the NNAPI / Core ML EP estimates as backend reports."""
    nodes = list(model.graph.node)
    ops = count_by([n.op_type for n in nodes])
    cpu = OpCoverage(delegate="onnxruntime CPUExecutionProvider", total_ops=len(nodes), delegated_ops=len(nodes),
                     ops=ops, partitions=1, method="ONNX graph nodes (top-level graph)")
    reports = {"cpu": BackendReport(name="cpu", ok=True, op_coverage=cpu, runnable_here=True)}
    for name, label in (("nnapi", "onnxruntime NNAPI EP (op-type list)"),
                        ("coreml", "onnxruntime Core ML EP, ML program (op-type list)")):
        try:
            reports[name] = BackendReport(name=name, ok=True, op_coverage=_ep_coverage(model, name, label),
                                          runnable_here=False, note="static estimate; EP not available on this host")
        except Exception as exc:  # noqa: BLE001 — the estimate is optional
            reports[name] = BackendReport(name=name, ok=False, error=f"{type(exc).__name__}: {exc}")
    return cpu, reports


def _ep_coverage(model: Any, ep: str, label: str) -> OpCoverage:
    from onnxruntime.tools.mobile_helpers import usability_checker as uc

    if ep == "nnapi":
        info = uc.check_nnapi_partitions(model, require_fixed_input_sizes=False)
    else:
        info = uc.check_coreml_partitions(model, require_fixed_input_sizes=False,
                                          config_filename="coreml_supported_mlprogram_ops.md")
    checker = info.supported_ops_checker
    rejected = [n.op_type for n in model.graph.node if not checker.is_op_supported(n)]
    notes = [c for c in checker.get_caveats()]
    if info.num_unsupported_nodes_due_to_rank:
        notes.append(f"{info.num_unsupported_nodes_due_to_rank} nodes exceed the EP's max rank: "
                     f"{sorted(info.ops_with_unsupported_rank)}")
    return OpCoverage(
        delegate=label, total_ops=info.num_nodes, delegated_ops=info.num_supported_nodes,
        fallback=count_by(rejected), ops=count_by([n.op_type for n in model.graph.node]),
        partitions=info.num_partitions,
        method="onnxruntime.tools.mobile_helpers.usability_checker (op type lists shipped with onnxruntime)",
        notes=notes)
