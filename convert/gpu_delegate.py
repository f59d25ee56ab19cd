"""LiteRT's GPU delegate on this host: WebGPU on Vulkan (Mesa's software driver lavapipe where no GPU exists).

The runner, its coverage and the adapter probe; in ``convert`` (beside :mod:`convert.runtimes`) because the exporter
measures each GPU artifact's coverage for the manifest. :mod:`runtime_py.gpu` adds the artifact sets and the CLI.

Runtimes (``--runtime`` of :mod:`runtime_py.drift`, :mod:`runtime_py.render`, ``benchmarks/export_latency.py``):

==================  ==========================================================================================
``litert-gpu``      ``CompiledModel`` on ``HardwareAccelerator.GPU``, the delegate's default fp16 compute (what a
                    phone runs)
``litert-gpu-f32``  the same with ``GpuOptions(enforce_f32=True)``: the delegate's kernels in fp32
==================  ==========================================================================================

Never a silent CPU fallback: the model is compiled with GPU|CPU so that the delegate reports what it takes (its log
lines ``Following operations are not supported by GPU delegate: OP: reason`` and ``N operations will run on the
GPU, and the remaining M operations will run on the CPU`` are read from the process's stderr while compiling), and
unless ``allow_cpu_fallback`` is given a model that is not fully accelerated raises :class:`GpuFallbackError`
naming the rejected ops. With ``allow_cpu_fallback`` the runner's :attr:`LiteRTGpuRunner.coverage` says what ran
where. The count M includes ops the delegate supports but left to the CPU because they sit outside its partition
(after a rejected op); the rejected op types are the ones named.

Every compile and run happens in a worker child (:mod:`convert.gpu_worker`), never in the calling process: a
delegate that crashes (signal) or hangs raises :class:`GpuWorkerCrash` / :class:`GpuWorkerTimeout` naming the file,
and the caller (pytest, an export, a drift run) lives on. :class:`LiteRTGpuRunner` holds one worker for its model;
:func:`measure_coverage` and :func:`adapter` use a short-lived one.

The WebGPU environment needs ``XDG_RUNTIME_DIR`` to be an existing folder; :func:`ensure_runtime_dir` sets it (to a
private folder under the temp dir) when it is unset or missing. ``scripts/setup_vulkan.sh`` installs lavapipe.
"""
from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from convert.gpu_worker import GpuWorkerCrash, GpuWorkerTimeout, Worker, default_timeout, ensure_runtime_dir
from convert.runtimes import TensorSpec, _Base, _require, _reorder, _tflite_io_metadata

__all__ = ["GPU_RUNTIMES", "GPU_PROFILE", "GpuFallbackError", "GpuUnavailable", "GpuCoverage", "GpuWorkerCrash",
           "GpuWorkerTimeout", "LiteRTGpuRunner", "adapter", "ensure_runtime_dir", "measure_coverage", "open_runner",
           "skip_reason"]

#: runtime name -> enforce_f32
GPU_RUNTIMES = {"litert-gpu": False, "litert-gpu-f32": True}
GPU_PROFILE = "pixel8"

_UNSUPPORTED_HEAD = "Following operations are not supported by GPU delegate"
_SPLIT = re.compile(r"(\d+) operations will run on the GPU, and the remaining (\d+) operations? will run on the CPU")
_ADAPTER = re.compile(r"Selected adapter: (.*)")
_REJECTED = re.compile(r"^([A-Z][A-Z0-9_]*(?::[A-Za-z0-9_]+)?):(?:\s+(.*))?$")


class GpuUnavailable(RuntimeError):
    """No GPU adapter (no Vulkan driver, too old a Mesa) or LiteRT's GPU accelerator is missing."""


class GpuFallbackError(RuntimeError):
    """A model that must run wholly on the GPU does not: the message names the ops the delegate rejected."""

    def __init__(self, message: str, coverage: "GpuCoverage") -> None:
        super().__init__(message)
        self.coverage = coverage
        self.worker_extra = asdict(coverage)            # what the worker child sends back with the message


@contextlib.contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """Collect what native code writes to file descriptor 2 (LiteRT logs there) into the yielded list's one
    string, and pass it on to the real stderr only when ``ISP_GPU_LOG`` is set."""
    out: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            out.append(text)
            if os.environ.get("ISP_GPU_LOG"):
                sys.stderr.write(text)


@dataclass
class GpuCoverage:
    """What the GPU delegate took of one model, as it reported while compiling."""

    total_ops: int
    gpu_ops: int
    cpu_ops: int
    fully_accelerated: bool
    rejected: dict[str, str] = field(default_factory=dict)      # op type -> the delegate's reasons (" | ")
    cpu_op_counts: dict[str, int] = field(default_factory=dict)  # op type -> count of the model's ops of that type
    adapter: str | None = None
    enforce_f32: bool = False
    method: str = "LiteRT CompiledModel GPU|CPU compile: delegate log + is_fully_accelerated()"

    @property
    def fraction(self) -> float:
        return self.gpu_ops / self.total_ops if self.total_ops else 0.0

    def describe(self) -> str:
        if self.fully_accelerated:
            return f"all {self.total_ops} ops on the GPU"
        names = ", ".join(f"{k} ({v})" for k, v in self.rejected.items()) or "none named"
        return (f"{self.gpu_ops} of {self.total_ops} ops on the GPU, {self.cpu_ops} on the CPU; rejected: {names}")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["fraction"] = round(self.fraction, 4)
        return d


def _parse_log(text: str) -> tuple[dict[str, str], tuple[int, int] | None, str | None]:
    rejected: dict[str, str] = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if _UNSUPPORTED_HEAD in line:
            for nxt in lines[i + 1:]:
                m = _REJECTED.match(nxt.strip())
                if not m:
                    break
                reason = (m.group(2) or "").strip() or "not supported"
                have = rejected.get(m.group(1))
                if have is None:
                    rejected[m.group(1)] = reason
                elif reason not in have.split(" | "):
                    rejected[m.group(1)] = f"{have} | {reason}"
    split = None
    for m in _SPLIT.finditer(text):
        split = (int(m.group(1)), int(m.group(2)))
    a = _ADAPTER.search(text)
    return rejected, split, (a.group(1).strip() if a else None)


def _op_counts(path: Path) -> dict[str, int]:
    """Op type -> count over every subgraph of the flatbuffer (builtin names; ``CUSTOM:name``)."""
    from ai_edge_litert import schema_py_generated as fb

    model = fb.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}
    counts: dict[str, int] = {}
    for sg in model.subgraphs or []:
        for op in sg.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")
            if name == "CUSTOM":
                custom = code.customCode
                name = "CUSTOM:" + (custom.decode() if isinstance(custom, bytes) else str(custom))
            counts[name] = counts.get(name, 0) + 1
    return counts


def _compile(path: Path, enforce_f32: bool, allow_cpu: bool) -> tuple[Any, str]:
    """``(CompiledModel or None, the native log)``; raises :class:`GpuUnavailable` when no adapter exists."""
    ensure_runtime_dir()
    cm_mod = _require("ai_edge_litert.compiled_model", "ai-edge-litert")
    accel = cm_mod.HardwareAccelerator.GPU | (cm_mod.HardwareAccelerator.CPU if allow_cpu else 0)
    opts = cm_mod.Options(hardware_accelerators=accel, gpu_options=cm_mod.GpuOptions(enforce_f32=enforce_f32))
    model, error = None, None
    with _captured_stderr() as log:
        try:
            model = cm_mod.CompiledModel.from_file(str(path), options=opts)
        except RuntimeError as exc:
            error = exc
    text = log[0] if log else ""
    if "No adapters found" in text or "Failed to initialize WebGPU" in text:
        raise GpuUnavailable(f"LiteRT's GPU accelerator found no adapter (install a Vulkan driver: "
                             f"bash scripts/setup_vulkan.sh; Debian 12 needs Mesa >= 23 from bookworm-backports)")
    if error is not None and model is None and not _parse_log(text)[0]:
        raise GpuUnavailable(f"{path.name}: the GPU delegate could not compile the model: {error}")
    return model, text


def measure_coverage(path: str | Path, enforce_f32: bool = False, timeout: float | None = None) -> GpuCoverage:
    """Compile ``path`` with GPU|CPU in a worker child and read what the delegate took (see the module docstring).
    :class:`GpuWorkerCrash` / :class:`GpuWorkerTimeout` (naming the file) when the delegate crashes or hangs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model")
    worker = Worker(__name__)
    try:
        return _call(worker, path, "coverage", {"path": str(path), "enforce_f32": enforce_f32},
                     default_timeout(300.0) if timeout is None else timeout, "measuring the GPU coverage of")
    finally:
        worker.close()


def _measure_here(path: str, enforce_f32: bool) -> GpuCoverage:
    p = Path(path)
    model, text = _compile(p, enforce_f32, allow_cpu=True)
    return _coverage(p, model, text, enforce_f32)


def _coverage(path: Path, model: Any, text: str, enforce_f32: bool) -> GpuCoverage:
    rejected, split, adapter_name = _parse_log(text)
    counts = _op_counts(path)
    total = sum(counts.values())
    full = bool(model is not None and model.is_fully_accelerated()) and not rejected
    if full:
        gpu, cpu = total, 0
    elif split is not None:
        gpu, cpu = split
    else:
        gpu, cpu = 0, total
    cpu_counts = {k: counts.get(k, 0) for k in rejected}
    return GpuCoverage(total_ops=total, gpu_ops=gpu, cpu_ops=cpu, fully_accelerated=full, rejected=rejected,
                       cpu_op_counts=cpu_counts, adapter=adapter_name, enforce_f32=enforce_f32)


class _LocalModel(_Base):
    """A ``.tflite`` compiled on the GPU delegate in this process: used only inside the worker child."""

    def __init__(self, path: Path, input_names: Sequence[str] | None = None,
                 output_names: Sequence[str] | None = None, enforce_f32: bool = False,
                 allow_cpu_fallback: bool = False) -> None:
        self.path = Path(path)
        self.enforce_f32 = enforce_f32
        self.runtime = "litert-gpu-f32" if enforce_f32 else "litert-gpu"
        model, text = _compile(self.path, enforce_f32, allow_cpu=True)
        self.coverage = _coverage(self.path, model, text, enforce_f32)
        if not self.coverage.fully_accelerated and not allow_cpu_fallback:
            raise GpuFallbackError(
                f"{self.path.name}: not wholly on the GPU delegate ({self.coverage.describe()}); re-export for the "
                f"GPU (convert/export.py --target tflite) or allow mixed execution (--allow-cpu-fallback)",
                self.coverage)
        if model is None:
            raise GpuUnavailable(f"{self.path.name}: the GPU delegate did not compile the model")
        self._model = model
        sigs = model.get_signature_list()
        self.signature = next(iter(sigs))
        sig = sigs[self.signature]
        in_det = model.get_input_tensor_details(self.signature)
        out_det = model.get_output_tensor_details(self.signature)
        in_keys, out_keys = list(sig["inputs"]), list(sig["outputs"])
        declared = _tflite_io_metadata(self.path)
        if declared is not None:
            input_names = declared["inputs"] if input_names is None else input_names
            output_names = declared["outputs"] if output_names is None else output_names
        if input_names is not None:
            in_keys = [in_keys[i] for i in _reorder(self.path, "input", in_keys, input_names)]
        if output_names is not None:
            out_keys = [out_keys[i] for i in _reorder(self.path, "output", out_keys, output_names)]
        self._in_keys, self._out_keys = in_keys, out_keys
        self.inputs = [self._spec(k, in_det[k]) for k in in_keys]
        self.outputs = [self._spec(k, out_det[k]) for k in out_keys]
        for s in self.inputs + self.outputs:
            if s.dtype not in ("float32",):
                raise ValueError(f"{self.path.name}: tensor {s.name} is {s.dtype}; the GPU runner takes float32 I/O "
                                 f"(export --precision fp16 or fp32 for the GPU)")
        self._in_buf = {k: model.create_input_buffer_by_name(self.signature, k) for k in in_keys}
        self._out_buf = {k: model.create_output_buffer_by_name(self.signature, k) for k in out_keys}

    @staticmethod
    def _spec(name: str, det: Mapping[str, Any]) -> TensorSpec:
        dtype = det.get("dtype")
        dtype = np.dtype(dtype).name if dtype is not None and not isinstance(dtype, str) else str(dtype)
        return TensorSpec(name, tuple(int(s) for s in det["shape"]), dtype)

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        for k, a in zip(self._in_keys, self._check(inputs)):
            self._in_buf[k].write(a)
        with _captured_stderr() as log:
            try:
                self._model.run_by_name(self.signature, self._in_buf, self._out_buf)
                failed = None
            except RuntimeError as exc:
                failed = exc
        if failed is not None:                   # name the delegate's own complaint (e.g. DEADLINE_EXCEEDED)
            said = [ln.strip() for ln in (log[0] if log else "").splitlines()
                    if "ERROR" in ln or "DEADLINE" in ln or "failed" in ln.lower()]
            raise RuntimeError(f"{self.path.name} on {self.runtime}: {failed}"
                               + (f" ({' / '.join(said[:4])})" if said else "")) from failed
        out = []
        for k, spec in zip(self._out_keys, self.outputs):
            n = int(np.prod(spec.shape))
            out.append(np.asarray(self._out_buf[k].read(n, np.float32), dtype=np.float32).reshape(spec.shape).copy())
        return out


_ERRORS = {"GpuUnavailable": GpuUnavailable, "ValueError": ValueError, "FileNotFoundError": FileNotFoundError}


def _call(worker: Worker, path: Path, op: str, kwargs: dict[str, Any], timeout: float, what: str) -> Any:
    """``op`` in ``worker`` about the model ``path``; the child's errors come back as this module's exceptions
    and a crash or hang as :class:`GpuWorkerCrash` / :class:`GpuWorkerTimeout` naming the file."""
    try:
        reply = worker.call(op, kwargs, timeout, f"{what} {path.name}")
    except GpuWorkerCrash as exc:
        raise GpuWorkerCrash(f"{path}: {exc}", exc.signal, exc.returncode) from None
    except GpuWorkerTimeout as exc:
        raise GpuWorkerTimeout(f"{path}: {exc}") from None
    if reply[0] == "ok":
        return reply[1]
    _, kind, message, extra = reply
    if kind == "GpuFallbackError":
        raise GpuFallbackError(message, GpuCoverage(**extra))
    raise _ERRORS.get(kind, RuntimeError)(message)


class LiteRTGpuRunner(_Base):
    """``.tflite`` on LiteRT's GPU delegate (``CompiledModel``), fp16 compute unless ``enforce_f32``; compiled and
    run in a worker child of its own (:mod:`convert.gpu_worker`), closed with :meth:`close` or when collected.

    Raises :class:`GpuFallbackError` when the delegate does not take the whole model, unless
    ``allow_cpu_fallback``; :attr:`coverage` records what ran where. A delegate crash raises
    :class:`GpuWorkerCrash`, a hang (``timeout`` s per compile or run; ``ISP_GPU_TIMEOUT``) :class:`GpuWorkerTimeout`."""

    def __init__(self, path: Path, input_names: Sequence[str] | None = None,
                 output_names: Sequence[str] | None = None, enforce_f32: bool = False,
                 allow_cpu_fallback: bool = False, timeout: float | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"artifact not found: {self.path}")
        self.enforce_f32 = enforce_f32
        self.runtime = "litert-gpu-f32" if enforce_f32 else "litert-gpu"
        self.timeout = default_timeout() if timeout is None else timeout
        self._worker = Worker(__name__)
        try:
            info = _call(self._worker, self.path, "open",
                         {"path": str(self.path), "input_names": None if input_names is None else list(input_names),
                          "output_names": None if output_names is None else list(output_names),
                          "enforce_f32": enforce_f32, "allow_cpu_fallback": allow_cpu_fallback},
                         self.timeout, "compiling")
        except BaseException:
            self._worker.close()
            raise
        self.coverage: GpuCoverage = info["coverage"]
        self.inputs, self.outputs = info["inputs"], info["outputs"]

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        return _call(self._worker, self.path, "run", {"inputs": self._check(inputs)}, self.timeout,
                     f"running ({self.runtime})")

    def close(self) -> None:
        """Stop the worker child (also done when the runner is collected)."""
        self._worker.close()


def open_runner(path: str | Path, runtime: str, input_names: Sequence[str] | None = None,
                output_names: Sequence[str] | None = None, allow_cpu_fallback: bool = False) -> LiteRTGpuRunner:
    if runtime not in GPU_RUNTIMES:
        raise ValueError(f"unknown GPU runtime {runtime!r}; expected one of {', '.join(GPU_RUNTIMES)}")
    return LiteRTGpuRunner(Path(path), input_names, output_names, enforce_f32=GPU_RUNTIMES[runtime],
                           allow_cpu_fallback=allow_cpu_fallback)


# ---------------------------------------------------------------------------------------------- the adapter

def _tiny_model(op: str = "ADD") -> bytes:
    """A one-op float32 model (flatbuffer): ``ADD`` of two [1, 8, 8, 4] inputs (the adapter probe) or a unary op
    of one (``RELU_0_TO_1``, which the GPU delegate rejects)."""
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    n_in = 2 if op == "ADD" else 1
    m = fb.ModelT()
    m.version = 3
    m.buffers = [fb.BufferT() for _ in range(n_in + 2)]
    code = fb.OperatorCodeT()
    code.builtinCode = getattr(fb.BuiltinOperator, op)
    code.deprecatedBuiltinCode = min(code.builtinCode, 127)
    code.version = 1
    m.operatorCodes = [code]
    sg = fb.SubGraphT()
    sg.tensors = []
    for i in range(n_in + 1):
        t = fb.TensorT()
        t.shape = np.array([1, 8, 8, 4], dtype=np.int32)
        t.type = fb.TensorType.FLOAT32
        t.buffer = i + 1
        t.name = f"x{i}" if i < n_in else "y"
        sg.tensors.append(t)
    o = fb.OperatorT()
    o.opcodeIndex = 0
    o.inputs = np.arange(n_in, dtype=np.int32)
    o.outputs = np.array([n_in], dtype=np.int32)
    if op == "ADD":
        o.builtinOptionsType = fb.BuiltinOptions.AddOptions
        o.builtinOptions = fb.AddOptionsT()
    sg.operators = [o]
    sg.inputs = np.arange(n_in, dtype=np.int32)
    sg.outputs = np.array([n_in], dtype=np.int32)
    m.subgraphs = [sg]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(m))


def _probe_here() -> dict[str, Any]:
    """Compile and run the tiny model on the GPU in this process (the worker child)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "probe.tflite"
        path.write_bytes(_tiny_model())
        model = _LocalModel(path)
        a = np.random.default_rng(0).random((1, 8, 8, 4), dtype=np.float32)
        y = model.run([a, a])[0]
        if not np.allclose(y, 2 * a, atol=1e-2):
            raise GpuUnavailable(f"the GPU adapter ({model.coverage.adapter}) computed a wrong sum on a probe model")
    return {"available": True, "adapter": model.coverage.adapter, "reason": None}


def _probe_or_reason() -> dict[str, Any]:
    try:
        return _probe_here()
    except (GpuUnavailable, GpuFallbackError, RuntimeError, ImportError) as exc:
        return {"available": False, "adapter": None, "reason": str(exc)}


@functools.lru_cache(maxsize=1)
def adapter() -> dict[str, Any]:
    """``{"available", "adapter", "reason"}``: whether LiteRT's GPU delegate runs here, on which adapter, else why
    not. Probed once per process in a worker child (a broken driver cannot take this one down)."""
    worker = Worker(__name__)
    try:
        reply = worker.call("probe", {}, default_timeout(180.0), "probing the GPU adapter")
    except (GpuWorkerCrash, GpuWorkerTimeout) as exc:
        return {"available": False, "adapter": None, "reason": f"the GPU probe failed: {exc}"}
    finally:
        worker.close()
    if reply[0] == "ok":
        return reply[1]
    return {"available": False, "adapter": None, "reason": f"the GPU probe failed: {reply[2]}"}


# ------------------------------------------------------------------------------------- the worker child's side

_OPEN: dict[str, _LocalModel] = {}


def _worker_open(path: str, input_names: list[str] | None, output_names: list[str] | None, enforce_f32: bool,
                 allow_cpu_fallback: bool) -> dict[str, Any]:
    model = _LocalModel(Path(path), input_names, output_names, enforce_f32, allow_cpu_fallback)
    _OPEN["model"] = model
    return {"coverage": model.coverage, "inputs": model.inputs, "outputs": model.outputs}


def _worker_run(inputs: list[np.ndarray]) -> list[np.ndarray]:
    if "model" not in _OPEN:
        raise RuntimeError("the GPU worker has no model open")
    return _OPEN["model"].run(inputs)


def _crash_hook(op: str, fn: Any) -> Any:
    """``fn``, or (when ``ISP_GPU_TEST_CRASH`` names ``op``) one that kills this child with SIGSEGV first: how the
    tests prove that a delegate crash is reported and the caller survives."""
    def crashing(**kwargs: Any) -> Any:
        if op in os.environ.get("ISP_GPU_TEST_CRASH", "").split(","):
            import signal
            os.kill(os.getpid(), signal.SIGSEGV)
        return fn(**kwargs)
    return crashing


#: the requests a :class:`convert.gpu_worker.Worker` child serves
WORKER_OPS = {op: _crash_hook(op, fn) for op, fn in (("open", _worker_open), ("run", _worker_run),
                                                       ("coverage", _measure_here), ("probe", _probe_or_reason))}


def skip_reason() -> str | None:
    """None when the GPU delegate runs here, else why not (for ``pytest.skip``)."""
    a = adapter()
    return None if a["available"] else f"no GPU adapter for LiteRT: {a['reason']}"
