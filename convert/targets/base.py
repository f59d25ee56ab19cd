"""The contract every export target shares: the request, the result, the error, and the steps common to all.

One generic recipe, per target module (``convert/targets/<target>.py``)::

    build (the caller) -> torch.export -> quantize -> lower/convert -> save (atomic) -> [verify]

* :class:`ExportRequest` — what to export: an ``nn.Module`` in eval mode with fixed-shape float32 tensor inputs
  (4-D ``(B, C, H, W)`` is the verified case), the I/O names, the precision (``fp32``, ``fp16``, ``int8`` = int8
  weights and activations, static, calibrated; ``w8`` = int8 weights, float or dynamically quantized activations),
  calibration samples, target options and where to write.
* :class:`ExportResult` — what came out: files, size and sha256 of the primary artifact, op coverage (what the
  accelerator/delegate takes and what falls back), per-backend outcomes, warnings, timings and tool versions.
* :class:`ExportError` — raised by every target's ``export()`` with the target, precision, step and the
  underlying error (``__cause__`` is set too).

Helpers here import only ``torch`` and the standard library; backend packages are imported lazily inside the
target modules. :func:`verify` runs an artifact back through :mod:`runtime_py.runtimes` and compares it with torch.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from isp.atomic import replace_path
from isp.metrics import psnr as _psnr
from isp.units import PRECISIONS
from isp.versions import tool_versions as read_versions

__all__ = [
    "PRECISIONS", "TOOL_DISTRIBUTIONS", "ExportRequest", "ExportResult", "OpCoverage", "BackendReport",
    "ExportError", "UnsupportedExportError", "Recorder", "artifact_path", "atomic_save", "path_size", "path_sha256",
    "tool_versions", "export_program", "pt2e_quantize", "float_literals_pass", "verify", "psnr", "SCOPE_OPTION",
    "quantize_scope", "scope_filter", "in_scope", "short_error",
]


#: Distributions whose versions go into every result (``importlib.metadata`` names).
TOOL_DISTRIBUTIONS = ("torch", "executorch", "torchao", "coremltools", "litert-torch", "ai-edge-litert",
                      "ai-edge-quantizer", "onnx", "onnxruntime", "onnxscript", "numpy")


# --------------------------------------------------------------------------------------------------- request

@dataclass
class ExportRequest:
    """One export job. Validated on construction (``ValueError`` says what was expected, what came, the fix).

    ``example_inputs``: tuple of float32 tensors with the fixed shapes the artifact will have.
    ``calibration``: list of input tuples shaped like ``example_inputs``; required for ``int8`` (8-32 representative
    samples is typical), ignored otherwise. ``backends``: target-specific delegate list (ExecuTorch: ``xnnpack``
    (default), ``vulkan``, ``coreml``; the first is the primary artifact, the others are attempted and reported).
    ``options``: target-specific knobs, documented in each target module. Artifacts are written to
    ``out_dir/<stem>_<target>_<precision>.<ext>``.
    """

    module: nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    input_names: Sequence[str] | None = None
    output_names: Sequence[str] | None = None
    precision: str = "fp32"
    calibration: list[tuple[torch.Tensor, ...]] = field(default_factory=list)
    backends: Sequence[str] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    out_dir: Path | str = Path("artifacts")
    stem: str = "model"

    def __post_init__(self) -> None:
        if not isinstance(self.module, nn.Module):
            raise ValueError(f"ExportRequest.module: expected a torch.nn.Module, got {type(self.module).__name__}")
        if isinstance(self.example_inputs, torch.Tensor):
            self.example_inputs = (self.example_inputs,)
        self.example_inputs = tuple(self.example_inputs)
        if not self.example_inputs:
            raise ValueError("ExportRequest.example_inputs: expected at least one tensor, got none")
        for i, t in enumerate(self.example_inputs):
            if not isinstance(t, torch.Tensor) or t.dtype != torch.float32:
                got = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"ExportRequest.example_inputs[{i}]: expected a float32 tensor, got {got}; "
                                 f"cast with .float() (precision is chosen with precision=..., not the input dtype)")
        n_in = len(self.example_inputs)
        self.input_names = list(self.input_names) if self.input_names else [f"input_{i}" for i in range(n_in)]
        if len(self.input_names) != n_in:
            raise ValueError(f"ExportRequest.input_names: expected {n_in} names (one per example input), got "
                             f"{len(self.input_names)}: {self.input_names}")
        if self.output_names is None:
            with torch.no_grad():
                outs = _as_tuple(self.module.eval()(*self.example_inputs))
            self.output_names = [f"output_{i}" for i in range(len(outs))]
        self.output_names = list(self.output_names)
        for kind, names in (("input_names", self.input_names), ("output_names", self.output_names)):
            bad = [n for n in names if not (isinstance(n, str) and n.isidentifier())]
            if bad or len(set(names)) != len(names):
                raise ValueError(f"ExportRequest.{kind}: expected unique Python identifiers (they become tensor "
                                 f"names in every runtime), got {names}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"ExportRequest.precision: expected one of {PRECISIONS}, got {self.precision!r}")
        self.calibration = [tuple(c) if not isinstance(c, torch.Tensor) else (c,) for c in self.calibration]
        for j, sample in enumerate(self.calibration):
            shapes = [tuple(t.shape) for t in sample]
            want = [tuple(t.shape) for t in self.example_inputs]
            if shapes != want or any(t.dtype != torch.float32 for t in sample):
                raise ValueError(f"ExportRequest.calibration[{j}]: expected float32 tensors shaped {want}, got "
                                 f"{[(tuple(t.shape), str(t.dtype)) for t in sample]}")
        if self.precision == "int8" and not self.calibration:
            raise ValueError("ExportRequest.calibration: int8 is static quantization and needs calibration samples, "
                             "got none; pass calibration=[(x1,), (x2,), ...] with representative inputs "
                             "(8-32 is typical)")
        self.backends = tuple(self.backends) if self.backends else None
        self.options = dict(self.options or {})
        quantize_scope(self)            # ValueError now for unknown submodule names in options["quantize_modules"]
        self.out_dir = Path(self.out_dir)
        if not self.stem or "/" in self.stem or self.stem.startswith("."):
            raise ValueError(f"ExportRequest.stem: expected a plain file-name stem such as 'denoise', got "
                             f"{self.stem!r}")

    def reference_outputs(self, inputs: Sequence[torch.Tensor] | None = None) -> list[np.ndarray]:
        """The float32 torch outputs for ``inputs`` (default: the example inputs), as numpy arrays."""
        with torch.no_grad():
            outs = _as_tuple(self.module.eval()(*(inputs if inputs is not None else self.example_inputs)))
        return [o.detach().float().cpu().numpy() for o in outs]


def _as_tuple(outs: Any) -> tuple[torch.Tensor, ...]:
    if isinstance(outs, torch.Tensor):
        return (outs,)
    if isinstance(outs, dict):
        return tuple(outs.values())
    return tuple(outs)


# ---------------------------------------------------------------------------------------------------- result

@dataclass
class OpCoverage:
    """How much of the graph the accelerator path takes.

    ``delegate``: what "delegated" means for this artifact (an ExecuTorch backend id, ``"gpu-delegate (static
    check)"`` for LiteRT, ``"neural-engine (heuristic)"`` for Core ML, ``"ort-nnapi-ep (static list)"`` ...).
    ``total_ops`` / ``delegated_ops``: compute ops counted by ``method``; ``fallback``: op name -> count of ops
    that stay outside; ``ops``: every op type -> count; ``partitions``: number of delegated subgraphs where known.
    """

    delegate: str
    total_ops: int
    delegated_ops: int
    fallback: dict[str, int] = field(default_factory=dict)
    ops: dict[str, int] = field(default_factory=dict)
    partitions: int | None = None
    method: str = ""
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return 1.0 if self.total_ops == 0 else self.delegated_ops / self.total_ops


@dataclass
class BackendReport:
    """The outcome for one backend/delegate of a target (ExecuTorch: one per partitioner)."""

    name: str
    ok: bool
    file: Path | None = None
    size: int | None = None
    sha256: str | None = None
    op_coverage: OpCoverage | None = None
    runnable_here: bool | None = None
    note: str = ""
    error: str | None = None


@dataclass
class ExportResult:
    """The outcome of one ``export()``. ``files[0]`` is the primary artifact; ``size``/``sha256`` describe it
    (a directory such as ``.mlpackage``: total bytes, and a hash over relative paths + contents)."""

    target: str
    precision: str
    files: list[Path]
    size: int
    sha256: str
    op_coverage: OpCoverage
    backends: dict[str, BackendReport] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    tool_versions: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    runnable_here: bool = True
    not_runnable_reason: str | None = None

    @property
    def path(self) -> Path:
        return self.files[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (paths as strings)."""
        def conv(v: Any) -> Any:
            if isinstance(v, Path):
                return str(v)
            if dataclasses.is_dataclass(v) and not isinstance(v, type):
                d = {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
                if isinstance(v, OpCoverage):
                    d["fraction"] = round(v.fraction, 4)
                return d
            if isinstance(v, dict):
                return {str(k): conv(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [conv(x) for x in v]
            if isinstance(v, float) and not math.isfinite(v):
                return str(v)
            return v
        return conv(self)


class ExportError(RuntimeError):
    """An export failed. ``target``, ``precision``, ``step`` and ``cause`` (the underlying exception) are kept;
    ``reports`` holds per-backend outcomes when some backends were attempted before the failure."""

    def __init__(self, target: str, precision: str, step: str, cause: BaseException | str,
                 reports: dict[str, BackendReport] | None = None) -> None:
        self.target, self.precision, self.step, self.cause = target, precision, step, cause
        self.reports = reports or {}
        detail = cause if isinstance(cause, str) else short_error(cause)
        super().__init__(f"{target}/{precision} export failed at step '{step}': {detail}")


class UnsupportedExportError(ExportError):
    """The combination is known not to work with these tool versions; the message says why and what to use."""


def _first_lines(text: str, n: int = 6, width: int = 600) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    out = " | ".join(lines[:n])
    return out if len(out) <= width else out[: width - 3] + "..."


def short_error(exc: BaseException) -> str:
    """``Type: first lines of the message`` — for tables and reports; a chained root cause (``__cause__`` /
    ``__context__``, e.g. the KeyError inside an ExecuTorch pass failure) is appended after `` <- ``."""
    text = f"{type(exc).__name__}: {_first_lines(str(exc), n=3, width=300)}"
    root, seen = exc, {id(exc)}
    while True:
        nxt = root.__cause__ or root.__context__
        if nxt is None or id(nxt) in seen:
            break
        seen.add(id(nxt))
        root = nxt
    if root is not exc:
        text += f" <- {type(root).__name__}: {_first_lines(str(root), n=3, width=300)}"
    return text


class Recorder:
    """Times named steps and turns any exception inside one into :class:`ExportError` (once)."""

    def __init__(self, target: str, precision: str) -> None:
        self.target, self.precision = target, precision
        self.timings: dict[str, float] = {}
        self.warnings: list[str] = []

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        except ExportError:
            raise
        except Exception as exc:  # noqa: BLE001 — every backend failure is reported as ExportError
            raise ExportError(self.target, self.precision, name, exc) from exc
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - t0, 3)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def fail(self, step: str, message: str, unsupported: bool = True) -> ExportError:
        cls = UnsupportedExportError if unsupported else ExportError
        return cls(self.target, self.precision, step, message)


# ------------------------------------------------------------------------------------------------ file helpers

def artifact_path(req: ExportRequest, target: str, ext: str) -> Path:
    """``out_dir/<stem>_<target>_<precision>.<ext>``."""
    return req.out_dir / f"{req.stem}_{target}_{req.precision}.{ext.lstrip('.')}"


#: write a file or folder (``.mlpackage``) atomically through a writer given a temporary path
atomic_save = replace_path


def path_size(p: Path) -> int:
    p = Path(p)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size


def path_sha256(p: Path) -> str:
    """sha256 of a file, or of a directory as (relative path, content) pairs in sorted order
    (:func:`isp.hashing.sha256_path`, the digest every manifest records)."""
    from isp.hashing import sha256_path
    return sha256_path(p)


def tool_versions() -> dict[str, str]:
    """Versions of :data:`TOOL_DISTRIBUTIONS` (:func:`isp.versions.tool_versions`)."""
    return read_versions(TOOL_DISTRIBUTIONS, python=False)


# ------------------------------------------------------------------------------------------ quantizer scoping

#: ``options[SCOPE_OPTION]``: submodule names (``["stage.net"]``); int8/w8 then quantize only ops inside them.
SCOPE_OPTION = "quantize_modules"


def quantize_scope(req: ExportRequest) -> list[str] | None:
    """The request's ``options["quantize_modules"]`` checked against the module's submodules (None: everything)."""
    names = req.options.get(SCOPE_OPTION)
    if names is None:
        return None
    names = [names] if isinstance(names, str) else list(names)
    known = {n for n, _ in req.module.named_modules() if n}
    missing = [n for n in names if n not in known]
    if missing or not names:
        raise ValueError(f"options['{SCOPE_OPTION}']: expected names of submodules of "
                         f"{type(req.module).__name__}, got {names}; its submodules include "
                         f"{sorted(n for n, _ in req.module.named_children())}")
    return names


def in_scope(path: str, scope: Sequence[str]) -> bool:
    """``path`` is one of ``scope`` or inside one; an entry with ``*``/``?``/``[`` is a glob (``fnmatch``) over the
    path or its prefixes (``stage.net.*_norm``: every NAFNet layer norm)."""
    from fnmatch import fnmatchcase
    return any(path == s or path.startswith(s + ".") or
               (any(c in s for c in "*?[") and (fnmatchcase(path, s) or fnmatchcase(path, s + ".*"))) for s in scope)


def scope_filter(scope: Sequence[str], exclude: Sequence[str] = ()) -> Callable[[torch.fx.Node], bool]:
    """PT2E annotation filter: an op is quantized when it was traced inside a scoped submodule
    (``nn_module_stack``); a weight/buffer ``get_attr`` when its path is inside one; synthetic constants (the
    quantizers' ``_tensor_constant*`` scalars) follow the op that uses them. torchao's
    ``set_module_name`` cannot be used here: ``torch.export`` leaves weight nodes without ``nn_module_stack``,
    so its filter rejects every conv pattern (nothing gets quantized).

    ``exclude`` (mixed precision) keeps parts of the scope float: ``"path"`` every op and weight inside that
    submodule, ``"path:"`` only the ops traced directly in it (not in its children: a NAF block's gate products,
    attention mean, residual scale and add, without its convolutions and norms)."""
    direct = {e[:-1] for e in exclude if e.endswith(":")}
    nested = [e for e in exclude if not e.endswith(":")]

    def keep(node: torch.fx.Node) -> bool:
        if node.op == "get_attr":
            target = str(node.target)
            if target.startswith("_"):
                return True
            owner = target.rpartition(".")[0]
            return in_scope(target, scope) and not in_scope(target, nested) and owner not in direct
        stack = node.meta.get("nn_module_stack") or {}
        paths = [str(path) for path, _ in stack.values()]
        if not any(in_scope(p, scope) for p in paths):
            return False
        if any(in_scope(p, nested) for p in paths):
            return False
        return not (paths and paths[-1] in direct)
    return keep


# ------------------------------------------------------------------------------------------- torch-side steps

def export_program(module: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> torch.export.ExportedProgram:
    """``torch.export.export`` (non-strict) of ``module`` in eval mode (a PT2E-converted ``GraphModule`` is
    exported as it is: it refuses ``.eval()``)."""
    if not isinstance(module, torch.fx.GraphModule):
        module = module.eval()
    return torch.export.export(module, tuple(example_inputs), strict=False)


#: aten ops whose Python-number operands the PT2E quantizers turn into tensors (ints become int64 tensors that
#: histogram observers cannot take — the litert-torch "histogram_cpu ... Long" pitfall).
_FLOAT_ARITH = ("add", "sub", "mul", "div", "rsub", "pow", "maximum", "minimum", "clamp", "where", "fmod",
                "remainder")


def float_literals_pass(gm: torch.fx.GraphModule) -> int:
    """Rewrite int (not bool) literal operands of floating-point arithmetic nodes to floats, in place.
    Returns the number of operands changed. Values are unchanged; only the literal type is."""
    changed = 0
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        name = getattr(getattr(node.target, "_overloadpacket", None), "__name__", str(node.target))
        if name.rstrip("_") not in _FLOAT_ARITH:
            continue
        val = node.meta.get("val")
        if not (isinstance(val, torch.Tensor) and val.is_floating_point()):
            continue
        new_args = []
        for a in node.args:
            if isinstance(a, int) and not isinstance(a, bool):
                a = float(a)
                changed += 1
            new_args.append(a)
        node.args = tuple(new_args)
    if changed:
        gm.recompile()
    return changed


def pt2e_quantize(module: nn.Module, example_inputs: tuple[torch.Tensor, ...], quantizer: Any,
                  calibration: Sequence[tuple[torch.Tensor, ...]], *, fold_quantize: bool = True,
                  float_literals: bool = False) -> torch.fx.GraphModule:
    """torchao PT2E: export -> ``prepare_pt2e(quantizer)`` -> run every calibration sample -> ``convert_pt2e``.
    Dynamic configs need no calibration (the example inputs are run once so observers have shapes)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    gm = export_program(copy.deepcopy(module), example_inputs).module()
    if float_literals:
        float_literals_pass(gm)
    prepared = prepare_pt2e(gm, quantizer)
    with torch.no_grad():
        for sample in (calibration or [example_inputs]):
            prepared(*sample)
    return convert_pt2e(prepared, fold_quantize=fold_quantize)


def count_by(items: Sequence[str]) -> dict[str, int]:
    return dict(sorted(Counter(items).items(), key=lambda kv: (-kv[1], kv[0])))


def finish(target: str, req: ExportRequest, rec: Recorder, files: list[Path], coverage: OpCoverage, *,
           backends: dict[str, BackendReport] | None = None, details: dict[str, Any] | None = None,
           runnable_here: bool = True, not_runnable_reason: str | None = None) -> ExportResult:
    """Assemble the :class:`ExportResult` for the primary artifact ``files[0]``."""
    return ExportResult(
        target=target, precision=req.precision, files=files, size=path_size(files[0]),
        sha256=path_sha256(files[0]), op_coverage=coverage, backends=backends or {},
        warnings=list(rec.warnings), tool_versions=tool_versions(), timings=dict(rec.timings),
        details=details or {}, runnable_here=runnable_here, not_runnable_reason=not_runnable_reason)


# ----------------------------------------------------------------------------------------------------- verify

def psnr(pred: np.ndarray, ref: np.ndarray) -> float:
    """PSNR in dB with the reference's peak-to-peak range as the signal range (1.0 if the reference is flat):
    :func:`isp.metrics.psnr` with ``data_range="reference"``."""
    return _psnr(pred, ref, data_range="reference")


def verify(path: Path | str, req: ExportRequest, inputs: Sequence[torch.Tensor] | None = None,
           **load_kwargs: Any) -> dict[str, Any]:
    """Run the artifact on ``inputs`` (default: the example inputs) with :func:`runtime_py.runtimes.load` and
    compare every output with torch. Returns ``{"ran", "max_abs_err", "psnr_db", "per_output", "error"}``;
    ``ran`` is False (with ``error``) when the runtime cannot execute it here (e.g. Core ML on Linux)."""
    from convert.runtimes import load

    inputs = tuple(inputs) if inputs is not None else req.example_inputs
    refs = req.reference_outputs(inputs)
    try:
        runner = load(path, input_names=req.input_names, output_names=req.output_names, **load_kwargs)
        outs = runner.run([t.detach().cpu().numpy() for t in inputs])
    except Exception as exc:  # noqa: BLE001 — reported, not raised
        return {"ran": False, "max_abs_err": None, "psnr_db": None, "per_output": [], "error": short_error(exc)}
    if len(outs) != len(refs):
        return {"ran": True, "max_abs_err": None, "psnr_db": None, "per_output": [],
                "error": f"output count {len(outs)} != torch's {len(refs)}"}
    per = []
    for name, o, r in zip(req.output_names, outs, refs):
        if o.shape != r.shape:
            per.append({"name": name, "error": f"shape {o.shape} != torch's {r.shape}"})
            continue
        per.append({"name": name, "max_abs_err": float(np.max(np.abs(o.astype(np.float64) - r))),
                    "psnr_db": psnr(o, r)})
    bad = [p for p in per if "error" in p]
    if bad:
        return {"ran": True, "max_abs_err": None, "psnr_db": None, "per_output": per, "error": bad[0]["error"]}
    return {"ran": True, "max_abs_err": max(p["max_abs_err"] for p in per),
            "psnr_db": min(p["psnr_db"] for p in per), "per_output": per, "error": None}
