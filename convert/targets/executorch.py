"""ExecuTorch target: ``torch.export`` -> [PT2E quantize] -> ``to_edge_transform_and_lower`` -> ``.pte``.

Precisions (all with XNNPACK unless another backend is asked for):

* ``fp32`` — the module as is.
* ``fp16`` — a deep copy in ``half()`` wrapped so the program keeps float32 I/O (``x.half()`` on entry,
  ``.float()`` on exit; the casts run as two small portable kernels outside the delegate). XNNPACK lowers the
  fp16 graph and the pybindings run it on x86 (XNNPACK's fp16 kernels). ``options["fp16_io"] = True`` exports
  with half inputs/outputs instead (the runner casts).
* ``int8`` — torchao ``prepare_pt2e``/``convert_pt2e`` with ExecuTorch's ``XNNPACKQuantizer``, symmetric,
  per-channel weights, static per-tensor activations, calibrated on ``request.calibration``.
* ``w8`` — the same quantizer with ``is_dynamic=True``: int8 per-channel weights, activations quantized at run
  time per tensor (XNNPACK "qd8" kernels). XNNPACK has dynamic kernels for conv and linear; every other op stays
  fp32. There is no weight-only int8 path for convolutions in XNNPACK; this is the weight-int8 option.

Backends (``request.backends``, default ``("xnnpack",)``): ``xnnpack``, ``vulkan``
(``executorch.backends.vulkan.partitioner.vulkan_partitioner.VulkanPartitioner``), ``coreml``
(``executorch.backends.apple.coreml.partition.CoreMLPartitioner``). Each backend gives its own ``.pte``:
``<stem>_executorch_<precision>.pte`` for XNNPACK, ``<stem>_executorch-<backend>_<precision>.pte`` for the others.
The first backend is the primary artifact: its failure raises :class:`ExportError`; the others' outcomes (file or
exact error) are in ``result.backends``. The pybindings shipped here register ``XnnpackBackend`` (plus QNN and
OpenVINO stubs) only, so Vulkan and Core ML programs lower and save but cannot run on this host.

Op coverage: call_function nodes of the lowered graph. Delegated ops are the nodes inside each
``executorch_call_delegate``'s lowered module; fallback ops are the nodes left in the top-level graph (portable
CPU kernels). ``getitem`` and the quantize/dequantize/choose_qparams nodes are not counted as ops (inside a
delegate they are fused; a non-delegated one is listed in ``fallback`` under its own name but not counted).

Options: ``fp16_io`` (bool, default False); ``vulkan_options`` (dict passed as ``compile_options``);
``coreml_compute_unit`` / ``coreml_minimum_deployment_target`` (for the Core ML partitioner's compile specs);
``quantize_modules`` (list of submodule names: int8/w8 quantize only ops traced inside them, the rest stays fp32 —
see :func:`convert.targets.base.scope_filter`); ``quantize_exclude`` (submodules of that scope kept float:
mixed precision, same syntax); ``observer_eps`` (smallest activation/weight scale, default 2^-12);
``fold_block_scales`` (fold NAF block scales into their projections first: :mod:`convert.quant_prep`);
``calibration_gains`` (calibrate on the samples at these exposure gains too: :func:`convert.quant_prep.exposure_bracket`);
``split_weights`` (those convolutions as an int8-grid part plus its residual: :func:`convert.quant_prep.split_weights`).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from convert.pad_lowering import lower_reflect_pads
from convert.quant_prep import xnnpack_pt2e

from .base import (BackendReport, ExportError, ExportRequest, ExportResult, OpCoverage, Recorder, artifact_path,
                   atomic_save, count_by, export_program, finish, path_sha256, path_size, quantize_scope,
                   short_error)

TARGET = "executorch"
EXT = "pte"
#: options this target reads (``quantize_modules``: int8/w8 quantize only those submodules)
SUPPORTED_OPTIONS = ("fp16_io", "vulkan_options", "coreml_compute_unit", "coreml_minimum_deployment_target",
                     "quantize_modules", "quantize_exclude", "observer_eps", "fold_block_scales",
                     "calibration_gains", "split_weights")
BACKENDS = ("xnnpack", "vulkan", "coreml")
_BACKEND_IDS = {"xnnpack": "XnnpackBackend", "vulkan": "VulkanBackend", "coreml": "CoreMLBackend"}
_NOT_OPS = ("getitem", "executorch_call_delegate")
_QDQ_PREFIXES = ("quantized_decomposed.", "torchao.quantize_affine", "torchao.dequantize_affine",
                 "torchao.choose_qparams")


class _CastIO(nn.Module):
    """Runs a half() module behind float32 inputs/outputs."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *xs: torch.Tensor):
        outs = self.inner(*(x.half() for x in xs))
        if isinstance(outs, torch.Tensor):
            return outs.float()
        return tuple(o.float() for o in outs)


def _op_name(target: Any) -> str:
    name = getattr(target, "__name__", None) or str(target)
    for attr in ("_name", "name"):
        v = getattr(target, attr, None)
        if isinstance(v, str):
            name = v
            break
    if callable(getattr(target, "name", None)):
        try:
            name = target.name()
        except Exception:  # noqa: BLE001
            pass
    name = name.replace("::", ".")
    if name.startswith("aten.") and name.endswith(".default"):
        name = name[: -len(".default")]
    return name


def _is_cast(name: str) -> bool:
    return name.endswith(("_to_dim_order_copy", "_to_copy")) or name.startswith("aten._to_copy")


def _is_qdq(name: str) -> bool:
    return name.startswith(_QDQ_PREFIXES)


def coverage(edge: Any, backend: str) -> OpCoverage:
    """Delegated vs. remaining ops of a lowered ``EdgeProgramManager``."""
    gm = edge.exported_program().graph_module
    io_casts = [n for n in gm.graph.nodes if n.op == "call_function" and _is_cast(_op_name(n.target)) and (
        any(a.op == "placeholder" for a in n.all_input_nodes) or any(u.op == "output" for u in n.users))]
    top = [_op_name(n.target) for n in gm.graph.nodes if n.op == "call_function" and n not in io_casts]
    delegated: list[str] = []
    partitions = 0
    for _, sub in gm.named_children():
        original = getattr(sub, "original_module", None)
        if original is None:
            continue
        partitions += 1
        delegated += [_op_name(n.target) for n in original.graph.nodes if n.op == "call_function"]
    fallback_all = [n for n in top if n not in _NOT_OPS]
    fallback = [n for n in fallback_all if not _is_qdq(n)]
    deleg = [n for n in delegated if n not in _NOT_OPS and not _is_qdq(n)]
    notes = []
    if io_casts:
        notes.append(f"{len(io_casts)} dtype casts at the program inputs/outputs (float32 I/O of an fp16 program) "
                     f"run outside the delegate and are not counted")
    qdq_out = [n for n in fallback_all if _is_qdq(n)]
    if qdq_out:
        notes.append(f"{len(qdq_out)} quantize/dequantize nodes run outside the delegate (not counted as ops)")
    return OpCoverage(
        delegate=_BACKEND_IDS.get(backend, backend), total_ops=len(deleg) + len(fallback),
        delegated_ops=len(deleg), fallback=count_by(fallback_all), ops=count_by(deleg + fallback),
        partitions=partitions, notes=notes,
        method="call_function nodes inside lowered delegate modules vs. left in the top-level edge graph "
               "(getitem and q/dq excluded)")


def _variant(backend: str, precision: str) -> str:
    """Which program a backend lowers for a precision: ``float``, ``half``, ``pt2e-static``, ``pt2e-dynamic``.
    Core ML does fp16 and w8 itself (compute precision and weight quantization compile specs) on the float
    program; XNNPACK and Vulkan take a half() program for fp16."""
    if precision == "int8":
        return "pt2e-static"
    if backend == "coreml":
        return "float"
    return {"fp32": "float", "fp16": "half", "w8": "pt2e-dynamic"}[precision]


def _partitioner(backend: str, req: ExportRequest) -> Any:
    if backend == "xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        return XnnpackPartitioner()
    if backend == "vulkan":
        from executorch.backends.vulkan.partitioner.vulkan_partitioner import VulkanPartitioner
        return VulkanPartitioner(compile_options=dict(req.options.get("vulkan_options", {})) or None)
    if backend == "coreml":
        import coremltools as ct
        from executorch.backends.apple.coreml.compiler import CoreMLBackend
        from executorch.backends.apple.coreml.partition import CoreMLPartitioner
        unit = str(req.options.get("coreml_compute_unit", "ALL")).upper()
        target = req.options.get("coreml_minimum_deployment_target", "iOS17")
        precision = ct.precision.FLOAT32 if req.precision == "fp32" else ct.precision.FLOAT16
        w8 = ({"mode": "linear_symmetric", "dtype": "int8", "granularity": "per_channel"}
              if req.precision == "w8" else None)
        specs = CoreMLBackend.generate_compile_specs(
            compute_unit=getattr(ct.ComputeUnit, unit), compute_precision=precision,
            minimum_deployment_target=getattr(ct.target, target), op_linear_quantizer_config=w8)
        return CoreMLPartitioner(compile_specs=specs)
    raise ValueError(f"executorch backend: expected one of {BACKENDS}, got {backend!r}")


def _program(req: ExportRequest, rec: Recorder, variant: str, details: dict[str, Any]
             ) -> torch.export.ExportedProgram:
    """torch.export (+ PT2E quantization) of the request's module for one program variant."""
    module = req.module.eval()
    inputs = req.example_inputs
    if variant == "half":
        half = copy.deepcopy(module).half().eval()
        if req.options.get("fp16_io", False):
            module, inputs = half, tuple(x.half() for x in inputs)
            details["io_dtype"] = "float16"
        else:
            module = _CastIO(half).eval()
            details["io_dtype"] = "float32 (cast to half inside the program)"
    elif variant.startswith("pt2e"):
        dynamic = variant == "pt2e-dynamic"
        with rec.step("quantize"):
            module = xnnpack_pt2e(module, inputs, req.calibration, req.options, quantize_scope(req), details,
                                  dynamic=dynamic)
            if dynamic:
                n = rank_match_constants(module)
                if n:
                    details["rank_matched_constants"] = n
        details["quantization"] = (
            "XNNPACKQuantizer symmetric, per-channel int8 weights, " +
            ("dynamic per-tensor int8 activations (conv/linear only)" if dynamic else
             f"static per-tensor int8 activations, {details['calibration_samples']} calibration samples"))
    with rec.step("torch.export"):
        program = export_program(module, inputs)
    with rec.step("reflect pads"):         # as slices + cat, which XNNPACK takes (convert/pad_lowering.py)
        program, pads = lower_reflect_pads(program)
    if pads:
        details["reflect_pads_as_slices"] = pads
    return program


_ELEMENTWISE_BINARY = ("add", "sub", "mul", "div", "rsub", "maximum", "minimum", "pow")


def _get_attr(gm: torch.fx.GraphModule, target: str) -> tuple[nn.Module, str, Any]:
    owner, _, attr = target.rpartition(".")
    holder = gm.get_submodule(owner) if owner else gm
    return holder, attr, getattr(holder, attr, None)


def rank_match_constants(gm: torch.fx.GraphModule) -> int:
    """Make every constant operand of an elementwise binary op a tensor of the op's output rank: Python numbers
    (``y / 3``) become ``(1, 1, 1, 1)`` constants, lower-rank constant tensors get leading 1-dims. Broadcasting
    makes this a no-op numerically. XNNPACK's dynamically quantized (w8) programs otherwise fail at run time
    ("Propagating input shapes failed with code: xnn_status_invalid_parameter") when such an op sits between
    quantized convs (ExecuTorch 1.5.1). Returns the number of operands changed."""
    changed = 0
    graph = gm.graph
    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        packet = getattr(node.target, "_overloadpacket", None)
        name = getattr(packet, "__name__", "").rstrip("_")
        val = node.meta.get("val")
        if name not in _ELEMENTWISE_BINARY or not isinstance(val, torch.Tensor) or not val.is_floating_point():
            continue
        rank = val.dim()
        args = list(node.args)
        for i, a in enumerate(args[:2]):
            if isinstance(a, (int, float)) and not isinstance(a, bool):
                const = torch.full((1,) * rank, float(a), dtype=val.dtype)
                attr = f"_rank_matched_{changed}_{node.name}"
                gm.register_buffer(attr, const)
                with graph.inserting_before(node):
                    args[i] = graph.get_attr(attr)
                    args[i].meta["val"] = const
                changed += 1
            elif isinstance(a, torch.fx.Node) and a.op == "get_attr":
                holder, attr, value = _get_attr(gm, a.target)
                if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dim() < rank \
                        and len(a.users) == 1:
                    new = value.reshape((1,) * (rank - value.dim()) + tuple(value.shape))
                    if isinstance(value, nn.Parameter):
                        new = nn.Parameter(new, requires_grad=False)
                    setattr(holder, attr, new)
                    changed += 1
        if args != list(node.args):
            node.args = tuple(args)
            tensor_overload = getattr(packet, "Tensor", None)
            if tensor_overload is not None and node.target is not tensor_overload:
                node.target = tensor_overload
    if changed:
        graph.lint()
        gm.recompile()
    return changed


def _registered_backends() -> set[str]:
    try:
        from executorch.runtime import Runtime
        return set(Runtime.get().backend_registry.registered_backend_names)
    except Exception:  # noqa: BLE001
        return set()


def export(req: ExportRequest) -> ExportResult:
    """Export ``req`` to one ``.pte`` per requested backend; see the module docstring."""
    rec = Recorder(TARGET, req.precision)
    backends = tuple(req.backends or ("xnnpack",))
    for b in backends:
        if b not in BACKENDS:
            raise ValueError(f"executorch backends: expected names from {BACKENDS}, got {b!r}")
    with rec.step("import"):
        from executorch.exir import to_edge_transform_and_lower
    details: dict[str, Any] = {"io_dtype": "float32"}
    programs: dict[str, torch.export.ExportedProgram] = {}
    registered = _registered_backends()
    reports: dict[str, BackendReport] = {}
    for i, backend in enumerate(backends):
        name = TARGET if backend == "xnnpack" else f"{TARGET}-{backend}"
        dest = artifact_path(req, name, EXT)
        try:
            variant = _variant(backend, req.precision)
            details.setdefault("program_per_backend", {})[backend] = variant
            if variant not in programs:
                programs[variant] = _program(req, rec, variant, details)
            with rec.step(f"lower[{backend}]"):
                edge = to_edge_transform_and_lower(copy.deepcopy(programs[variant]),
                                                   partitioner=[_partitioner(backend, req)])
                cov = coverage(edge, backend)
            with rec.step(f"save[{backend}]"):
                buffer = edge.to_executorch().buffer
                atomic_save(dest, lambda tmp: Path(tmp).write_bytes(buffer))
        except ExportError as exc:  # recorded per backend; the primary backend's failure is raised
            reports[backend] = BackendReport(name=backend, ok=False, error=short_error(exc.cause))
            if i == 0:
                exc.reports = reports
                raise
            continue
        backend_id = _BACKEND_IDS[backend]
        runnable = backend_id in registered
        if cov.delegated_ops == 0:
            rec.warn(f"{backend}: nothing was delegated; the program runs on portable CPU kernels only")
        reports[backend] = BackendReport(
            name=backend, ok=True, file=dest, size=path_size(dest), sha256=path_sha256(dest), op_coverage=cov,
            runnable_here=runnable,
            note="" if runnable else f"{backend_id} is not registered in this host's executorch pybindings "
                                      f"(registered: {sorted(registered)}); run it on a device build")
    primary = reports[backends[0]]
    files = [r.file for r in reports.values() if r.ok and r.file is not None]
    details["backends_requested"] = list(backends)
    return finish(TARGET, req, rec, files, primary.op_coverage, backends=reports, details=details,
                  runnable_here=bool(primary.runnable_here),
                  not_runnable_reason=None if primary.runnable_here else primary.note)
