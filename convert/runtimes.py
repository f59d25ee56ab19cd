"""Run exported artifacts on this host: one adapter per runtime behind ``load(path) -> Runner``.

The exporter verifies artifacts with it and :mod:`runtime_py` runs them (``runtime_py.runtimes`` re-exports it).

=================  =========================================  ======================================================
artifact           runtime                                    notes
=================  =========================================  ======================================================
``.pte``           ``executorch.runtime`` (pybindings)        XNNPACK delegate only here; a Vulkan or Core ML
                                                              program fails to load with a message naming the
                                                              backend. Tensor names are not stored in a ``.pte``:
                                                              pass ``input_names``/``output_names`` or get
                                                              ``input_0``… ``output_0``…
``.tflite``        ``ai_edge_litert.interpreter``             the ``serving_default`` signature (names from it);
                                                              int8/int16 I/O tensors are quantized/dequantized with
                                                              their scale and zero point
``.onnx``          ``onnxruntime`` (CPU EP)                   names from the graph; ``optimization="disable"``
                                                              runs QDQ models as float Q/DQ emulation
``.mlpackage``     ``coremltools`` (no prediction)            :class:`CoreMLStructuralCheck`: op types, compute
                                                              precision, declared compute units, I/O; ``run()``
                                                              raises (Core ML predicts only on macOS)
=================  =========================================  ======================================================

Every runner takes and returns float32 ``numpy`` arrays in the artifact's input/output order
(``run(list[np.ndarray]) -> list[np.ndarray]``) and converts to/from the artifact's tensor dtypes (fp16, int8 with
scale/zero point) itself. Backend packages are imported on first use; a missing one raises ``RuntimeError``
naming the package.
"""
from __future__ import annotations

import json
import queue
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

__all__ = ["Runner", "TensorSpec", "ExecuTorchRunner", "LiteRTRunner", "OnnxRunner", "CoreMLStructuralCheck",
           "OpenVinoRunner", "load", "RUNNERS", "default_threads", "set_default_threads"]

_DEFAULT_THREADS: int | None = None


def default_threads() -> int:
    """CPU threads a runner uses when not told: :func:`set_default_threads`'s value, else the CPUs this process
    may run on (its affinity mask; ``os.cpu_count()`` where there is none). ONNX Runtime's own default counts
    physical cores only and LiteRT's is one thread."""
    from isp.versions import usable_cpus
    return _DEFAULT_THREADS or usable_cpus()


def set_default_threads(n: int | None) -> int:
    """Set (``n``) or reset (``None``) the thread count of runners loaded from now on; returns the count in force."""
    global _DEFAULT_THREADS
    if n is not None and int(n) < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    _DEFAULT_THREADS = int(n) if n else None
    return default_threads()


@dataclass(frozen=True)
class TensorSpec:
    """One input or output as the artifact declares it (``dtype`` is the artifact's, e.g. ``float16``, ``int8``)."""

    name: str
    shape: tuple[int, ...]
    dtype: str


class Runner(Protocol):
    path: Path
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    @property
    def input_names(self) -> list[str]: ...

    @property
    def output_names(self) -> list[str]: ...

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]: ...


def _require(package: str, dist: str) -> Any:
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise RuntimeError(f"{package} is needed to run this artifact; install {dist} (the project's "
                           f"[export] extra): {exc}") from exc


def _names(given: Sequence[str] | None, n: int, prefix: str, declared: list[str] | None = None) -> list[str]:
    if given is not None:
        given = list(given)
        if len(given) != n:
            raise ValueError(f"expected {n} {prefix} names for this artifact, got {len(given)}: {given}")
        return given
    return declared if declared is not None else [f"{prefix}_{i}" for i in range(n)]


def _reorder(path: Path, kind: str, declared: list[str], wanted: Sequence[str] | None) -> list[int]:
    """Indices into ``declared`` in the order of ``wanted`` (identity when None); the names must match."""
    if wanted is None:
        return list(range(len(declared)))
    wanted = list(wanted)
    if sorted(wanted) != sorted(declared):
        raise ValueError(f"{path.name}: the artifact's {kind}s are {declared}, the caller expects {wanted}")
    return [declared.index(n) for n in wanted]


class _Base:
    path: Path
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.outputs]

    def _check(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        if len(arrays) != len(self.inputs):
            raise ValueError(f"{self.path.name}: expected {len(self.inputs)} inputs {self.input_names}, got "
                             f"{len(arrays)}")
        out = []
        for spec, a in zip(self.inputs, arrays):
            a = np.asarray(a)
            if tuple(a.shape) != tuple(spec.shape):
                raise ValueError(f"{self.path.name}: input {spec.name!r} expects shape {spec.shape}, got "
                                 f"{tuple(a.shape)} (exported artifacts have fixed shapes; re-export for others)")
            out.append(np.ascontiguousarray(a, dtype=np.float32))
        return out

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.path.name}, inputs={[(s.name, s.shape, s.dtype) for s in self.inputs]}"
                f", outputs={[(s.name, s.shape, s.dtype) for s in self.outputs]})")


# ------------------------------------------------------------------------------------------------- ExecuTorch

class ExecuTorchRunner(_Base):
    """``.pte`` through ``executorch.runtime``; fp16 programs get their inputs cast to half and outputs back."""

    def __init__(self, path: Path, input_names: Sequence[str] | None = None,
                 output_names: Sequence[str] | None = None, method: str = "forward") -> None:
        self.path = Path(path)
        rt_mod = _require("executorch.runtime", "executorch")
        self._torch = _require("torch", "torch")
        runtime = rt_mod.Runtime.get()
        _executorch_threads(default_threads())
        self.registered_backends = sorted(runtime.backend_registry.registered_backend_names)
        program = runtime.load_program(self.path)
        try:
            self._method = program.load_method(method)
        except RuntimeError as exc:
            raise RuntimeError(
                f"{self.path.name}: executorch could not load method {method!r} ({exc}). The pybindings here "
                f"register {self.registered_backends}; a program delegated to another backend (Vulkan, Core ML) "
                f"runs only on a runtime built with it.") from exc
        meta = self._method.metadata
        ins = [meta.input_tensor_meta(i) for i in range(meta.num_inputs())]
        outs = [meta.output_tensor_meta(i) for i in range(meta.num_outputs())]
        in_names = _names(input_names, len(ins), "input")
        out_names = _names(output_names, len(outs), "output")
        self.inputs = [TensorSpec(n, tuple(m.sizes()), self._dtype_name(m.dtype())) for n, m in zip(in_names, ins)]
        self.outputs = [TensorSpec(n, tuple(m.sizes()), self._dtype_name(m.dtype()))
                        for n, m in zip(out_names, outs)]

    @staticmethod
    def _dtype_name(dtype: Any) -> str:
        s = str(dtype).split(".")[-1].lower()
        return {"float": "float32", "half": "float16", "char": "int8", "byte": "uint8", "long": "int64",
                "int": "int32", "double": "float64"}.get(s, s)

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        torch = self._torch
        tensors = []
        for spec, a in zip(self.inputs, self._check(inputs)):
            t = torch.from_numpy(a)
            tensors.append(t.half() if spec.dtype == "float16" else t)
        outs = self._method.execute(tensors)
        return [o.detach().float().numpy().copy() for o in outs]


def _executorch_threads(n: int) -> None:
    """Size ExecuTorch's shared CPU thread pool (XNNPACK runs on it) to ``n`` threads, once per count."""
    try:
        from executorch.extension.pybindings import portable_lib as pl
        if pl._threadpool_get_thread_count() != n:
            pl._unsafe_reset_threadpool(n)
    except (ImportError, AttributeError, RuntimeError):   # an older runtime: its own default
        pass


# ----------------------------------------------------------------------------------------------------- LiteRT

class LiteRTRunner(_Base):
    """``.tflite`` through ``ai_edge_litert.interpreter`` (CPU, XNNPACK) and its first signature."""

    def __init__(self, path: Path, input_names: Sequence[str] | None = None,
                 output_names: Sequence[str] | None = None, num_threads: int | None = None) -> None:
        self.path = Path(path)
        interp_mod = _require("ai_edge_litert.interpreter", "ai-edge-litert")
        self._interp = interp_mod.Interpreter(model_path=str(self.path),
                                              num_threads=num_threads if num_threads else default_threads())
        sigs = self._interp.get_signature_list()
        if sigs:
            self.signature = next(iter(sigs))
            self._runner = self._interp.get_signature_runner(self.signature)
            in_det = sorted(self._runner.get_input_details().items(), key=lambda kv: kv[1]["index"])
            out_det = sorted(self._runner.get_output_details().items(), key=lambda kv: kv[1]["index"])
        else:  # no signature: plain tensor order
            self.signature = None
            self._runner = None
            self._interp.allocate_tensors()
            in_det = [(d["name"], d) for d in self._interp.get_input_details()]
            out_det = [(d["name"], d) for d in self._interp.get_output_details()]
        self._in_keys = [k for k, _ in in_det]
        self._out_keys = [k for k, _ in out_det]
        self._in_det = [d for _, d in in_det]
        self._out_det = [d for _, d in out_det]
        declared = _tflite_io_metadata(self.path)       # the export's declared order, when recorded
        if declared is not None:
            input_names = declared["inputs"] if input_names is None else input_names
            output_names = declared["outputs"] if output_names is None else output_names
        if output_names is not None:
            idx = _reorder(self.path, "output", self._out_keys, output_names)
            self._out_keys = [self._out_keys[i] for i in idx]
            self._out_det = [self._out_det[i] for i in idx]
        if input_names is not None:
            idx = _reorder(self.path, "input", self._in_keys, input_names)
            self._in_keys = [self._in_keys[i] for i in idx]
            self._in_det = [self._in_det[i] for i in idx]
        in_names, out_names = list(self._in_keys), list(self._out_keys)
        self.inputs = [TensorSpec(n, tuple(int(s) for s in d["shape"]), np.dtype(d["dtype"]).name)
                       for n, d in zip(in_names, self._in_det)]
        self.outputs = [TensorSpec(n, tuple(int(s) for s in d["shape"]), np.dtype(d["dtype"]).name)
                        for n, d in zip(out_names, self._out_det)]

    @staticmethod
    def _to_tensor(a: np.ndarray, det: dict[str, Any]) -> np.ndarray:
        dtype = np.dtype(det["dtype"])
        if dtype.kind in "iu":
            scale, zero = det["quantization"]
            if scale == 0:
                raise ValueError(f"input {det['name']} is {dtype.name} without quantization parameters")
            info = np.iinfo(dtype)
            return np.clip(np.round(a / scale + zero), info.min, info.max).astype(dtype)
        return a.astype(dtype)

    @staticmethod
    def _from_tensor(a: np.ndarray, det: dict[str, Any]) -> np.ndarray:
        a = np.asarray(a)
        if a.dtype.kind in "iu":
            scale, zero = det["quantization"]
            if scale != 0:
                return ((a.astype(np.float32) - zero) * scale).astype(np.float32)
        return a.astype(np.float32)

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        arrays = [self._to_tensor(a, d) for a, d in zip(self._check(inputs), self._in_det)]
        if self._runner is not None:
            res = self._runner(**dict(zip(self._in_keys, arrays)))
            return [self._from_tensor(res[k], d).copy() for k, d in zip(self._out_keys, self._out_det)]
        for a, d in zip(arrays, self._in_det):
            self._interp.set_tensor(d["index"], a)
        self._interp.invoke()
        return [self._from_tensor(self._interp.get_tensor(d["index"]), d).copy() for d in self._out_det]


def _tflite_io_metadata(path: Path) -> dict[str, list[str]] | None:
    """The ``isp.io_names`` metadata that ``convert.targets.litert`` writes (declared I/O order), if present."""
    try:
        from ai_edge_litert import schema_py_generated as fb
        buf = path.read_bytes()
        model = fb.Model.GetRootAs(buf, 0)
        for i in range(model.MetadataLength()):
            meta = model.Metadata(i)
            name = meta.Name()
            if (name.decode() if isinstance(name, bytes) else name) == "isp.io_names":
                data = model.Buffers(meta.Buffer())
                if data.Offset() > 0:
                    raw = buf[data.Offset(): data.Offset() + data.Size()]
                else:
                    raw = data.DataAsNumpy().tobytes()
                out = json.loads(bytes(raw).decode())
                return {"inputs": list(out["inputs"]), "outputs": list(out["outputs"])}
    except Exception:  # noqa: BLE001 — metadata is optional
        return None
    return None


# ------------------------------------------------------------------------------------------------------- ONNX

class OnnxRunner(_Base):
    """``.onnx`` through ``onnxruntime`` with the CPU execution provider (or ``providers``)."""

    _ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int8)": "int8",
                  "tensor(uint8)": "uint8", "tensor(int64)": "int64", "tensor(int32)": "int32"}

    def __init__(self, path: Path, input_names: Sequence[str] | None = None,
                 output_names: Sequence[str] | None = None, providers: Sequence[str] | None = None,
                 intra_op_threads: int | None = None, optimization: str = "all", memory_arena: bool = False) -> None:
        self.path = Path(path)
        ort = _require("onnxruntime", "onnxruntime")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads or default_threads()
        # without the arena each run's intermediates go back when it ends: with it a session keeps its peak for
        # good, rounded up to powers of two (the 12 MP LTM: +1.6 GB held against +0.9 GB at the peak of a run, and
        # ~3 GB over the quarter units of a render); no measurable cost on the tiles (enhance 512x512 either way)
        opts.enable_cpu_mem_arena = memory_arena
        opts.enable_mem_pattern = memory_arena
        levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
        if optimization not in levels:
            raise ValueError(f"onnxruntime optimization: expected one of {sorted(levels)}, got {optimization!r}")
        # "disable" keeps QDQ models as float Q/DQ emulation: the reference numerics of the quantized model,
        # free of x86 integer-kernel effects (see convert.targets.onnx on u8s8 saturation)
        opts.graph_optimization_level = levels[optimization]
        self._sess = ort.InferenceSession(str(self.path), sess_options=opts,
                                          providers=list(providers or ["CPUExecutionProvider"]))
        ins, outs = self._sess.get_inputs(), self._sess.get_outputs()
        declared_in, declared_out = [i.name for i in ins], [o.name for o in outs]
        self._in_keys = [declared_in[i] for i in _reorder(self.path, "input", declared_in, input_names)]
        self._out_keys = [declared_out[i] for i in _reorder(self.path, "output", declared_out, output_names)]
        by_name = {i.name: i for i in ins} | {o.name: o for o in outs}
        in_names, out_names = self._in_keys, self._out_keys
        self.inputs = [TensorSpec(n, tuple(by_name[k].shape), self._ORT_TYPES.get(by_name[k].type, by_name[k].type))
                       for n, k in zip(in_names, self._in_keys)]
        self.outputs = [TensorSpec(n, tuple(by_name[k].shape), self._ORT_TYPES.get(by_name[k].type, by_name[k].type))
                        for n, k in zip(out_names, self._out_keys)]

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        feeds = {}
        for key, spec, a in zip(self._in_keys, self.inputs, self._check(inputs)):
            feeds[key] = a.astype(np.float16) if spec.dtype == "float16" else a
        outs = self._sess.run(self._out_keys, feeds)
        return [np.asarray(o, dtype=np.float32) for o in outs]


# ----------------------------------------------------------------------------------------------------- Core ML

@dataclass
class CoreMLStructuralCheck(_Base):
    """What can be checked about an ``.mlpackage`` without predicting (Core ML predicts only on macOS).

    ``op_types``: MIL op type -> count over all functions and nested blocks (``const`` included);
    ``compute_precision``: from the export metadata (``isp.compute_precision``) when present, otherwise inferred
    from the op output dtypes (``FLOAT16`` if any fp16 tensor is computed, else ``FLOAT32``);
    ``compute_units``: the units declared at export (``isp.compute_units`` metadata; Core ML itself picks units at
    load time, the package does not store them); ``metadata``: the user-defined metadata; ``tensor_dtypes``: dtype ->
    count of the computed (non-const) op outputs (``INT8``/``UINT8``: quantized activations); ``weight_dtypes``: dtype
    -> count of the stored data of ``constexpr_*`` ops (``INT8``: int8 weights dequantized at load).
    """

    path: Path
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)
    op_types: dict[str, int] = field(default_factory=dict)
    compute_precision: str = "unknown"
    compute_units: str = "unknown"
    spec_version: int = 0
    model_type: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    tensor_dtypes: dict[str, int] = field(default_factory=dict)
    weight_dtypes: dict[str, int] = field(default_factory=dict)

    @classmethod
    def open(cls, path: Path | str, input_names: Sequence[str] | None = None,
             output_names: Sequence[str] | None = None) -> "CoreMLStructuralCheck":
        path = Path(path)
        ct = _require("coremltools", "coremltools")
        model = ct.models.MLModel(str(path), skip_model_load=True)
        spec = model.get_spec()
        desc = spec.description

        def tensors(features: Any) -> list[TensorSpec]:
            out = []
            for f in features:
                kind = f.type.WhichOneof("Type")
                if kind == "multiArrayType":
                    arr = f.type.multiArrayType
                    dt = ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(arr.dataType).lower()
                    out.append(TensorSpec(f.name, tuple(int(s) for s in arr.shape), dt))
                else:
                    out.append(TensorSpec(f.name, (), kind or "unknown"))
            return out

        meta = dict(desc.metadata.userDefined)
        ops: Counter[str] = Counter()
        dtypes: Counter[str] = Counter()
        weights: Counter[str] = Counter()
        kind = spec.WhichOneof("Type") or ""
        if kind == "mlProgram":
            def walk(block: Any) -> None:
                for op in block.operations:
                    ops[op.type] += 1
                    if op.type != "const":
                        for o in op.outputs:
                            tt = o.type.tensorType
                            if o.type.WhichOneof("type") == "tensorType":
                                dtypes[ct.proto.MIL_pb2.DataType.Name(tt.dataType)] += 1
                    if op.type.startswith("constexpr_"):
                        for name in ("quantized_data", "data"):
                            if name in op.attributes:
                                dt = op.attributes[name].type.tensorType.dataType
                                weights[ct.proto.MIL_pb2.DataType.Name(dt)] += 1
                    for nested in op.blocks:
                        walk(nested)
            for fn in spec.mlProgram.functions.values():
                for blk in fn.block_specializations.values():
                    walk(blk)
        inferred = "FLOAT16" if dtypes.get("FLOAT16", 0) else "FLOAT32"
        check = cls(path=path, inputs=tensors(desc.input), outputs=tensors(desc.output),
                    op_types=dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
                    compute_precision=meta.get("isp.compute_precision", inferred),
                    compute_units=meta.get("isp.compute_units", "unknown (not declared at export)"),
                    spec_version=int(spec.specificationVersion), model_type=kind, metadata=meta,
                    tensor_dtypes=dict(dtypes), weight_dtypes=dict(weights))
        if input_names is not None and list(input_names) != check.input_names:
            raise ValueError(f"{path.name}: inputs are {check.input_names}, expected {list(input_names)}")
        if output_names is not None and list(output_names) != check.output_names:
            raise ValueError(f"{path.name}: outputs are {check.output_names}, expected {list(output_names)}")
        return check

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        raise RuntimeError(f"{self.path.name}: Core ML models only predict on macOS (this host is not); use the "
                           f"structural check here (op_types, compute_precision, compute_units, inputs/outputs) "
                           f"and run it with ios_harness on a device or a Mac")

    def summary(self) -> dict[str, Any]:
        return {"path": str(self.path), "model_type": self.model_type, "spec_version": self.spec_version,
                "inputs": [s.__dict__ for s in self.inputs], "outputs": [s.__dict__ for s in self.outputs],
                "op_types": self.op_types, "compute_precision": self.compute_precision,
                "compute_units": self.compute_units, "tensor_dtypes": self.tensor_dtypes}

    def __str__(self) -> str:
        return json.dumps(self.summary(), indent=1)


# -------------------------------------------------------------------------------------------------------- load

class OpenVinoRunner(_Base):
    """``.onnx`` through OpenVINO's CPU plugin (optional package ``openvino``): the same artifact, other kernels.

    ``precision``: ``"f32"`` (default; OpenVINO itself would pick bf16 on a CPU with AMX or AVX512-BF16), ``"bf16"``
    or ``"f16"`` (its inference precision hint: convolutions and most elementwise ops in bfloat16 on
    AMX/AVX512-BF16, or float16 on AVX512-FP16/AMX-FP16; inputs and outputs stay float32). ``streams`` > 1: that
    many OpenVINO streams share the threads and :meth:`run` may be called from as many threads at once
    (``concurrency``), e.g. two tiles on two cores each with one thread, instead of one tile on both. ``threads``
    default to :func:`default_threads`; no CPU pinning (the host is shared). ``cache_dir``: OpenVINO's compiled-model
    cache (created; a later load of the same file and settings skips the compile), one subfolder per precision hint
    (``cache_dir/f16``...): OpenVINO 2026.4's cache key does not tell ``f16`` from ``f32`` and handed an f16 compile
    the f32 blob. Declared fp16 inputs are cast like :class:`OnnxRunner` does.
    """

    _OV_TYPES = {"f32": "float32", "f16": "float16", "i8": "int8", "u8": "uint8", "i64": "int64", "i32": "int32"}
    PRECISIONS = ("f32", "bf16", "f16")

    def __init__(self, path: Path, input_names: Sequence[str] | None = None,
                 output_names: Sequence[str] | None = None, precision: str = "f32",
                 threads: int | None = None, cache_dir: Path | str | None = None, streams: int = 1) -> None:
        self.path = Path(path)
        if precision not in self.PRECISIONS:
            raise ValueError(f"openvino precision: expected one of {self.PRECISIONS}, got {precision!r}")
        if int(streams) < 1:
            raise ValueError(f"openvino streams: expected >= 1, got {streams!r}")
        ov = _require("openvino", "openvino")
        self.precision = precision
        threads = int(threads or default_threads())
        self.concurrency = min(int(streams), threads)
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads,
                                  "ENABLE_CPU_PINNING": False}
        if self.concurrency > 1:
            config["NUM_STREAMS"] = self.concurrency          # the threads split between the streams
        else:
            config["PERFORMANCE_HINT"] = "LATENCY"
        if cache_dir:
            folder = Path(cache_dir) / precision
            folder.mkdir(parents=True, exist_ok=True)
            config["CACHE_DIR"] = str(folder)
        self._compiled = ov.Core().compile_model(str(self.path), "CPU", config)
        self._requests: "queue.SimpleQueue[Any]" = queue.SimpleQueue()   # one per stream: run() is thread-safe
        for _ in range(self.concurrency):
            self._requests.put(self._compiled.create_infer_request())
        ins, outs = self._compiled.inputs, self._compiled.outputs

        def name(port: Any, wanted: Sequence[str] | None) -> str:
            # a port carries every name its tensor had in the graph (a pass-through output, a padded input ...)
            return next((n for n in (wanted or ()) if n in port.get_names()), port.get_any_name())

        declared_in, declared_out = [name(i, input_names) for i in ins], [name(o, output_names) for o in outs]
        self._in_idx = _reorder(self.path, "input", declared_in, input_names)
        self._out_idx = _reorder(self.path, "output", declared_out, output_names)

        def spec(port: Any, n: str) -> TensorSpec:
            t = port.get_element_type().get_type_name()
            return TensorSpec(n, tuple(int(d) for d in port.get_shape()), self._OV_TYPES.get(t, t))

        self.inputs = [spec(ins[i], declared_in[i]) for i in self._in_idx]
        self.outputs = [spec(outs[i], declared_out[i]) for i in self._out_idx]

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        feeds = {}
        for idx, spec, a in zip(self._in_idx, self.inputs, self._check(inputs)):
            feeds[idx] = a.astype(np.float16) if spec.dtype == "float16" else a
        req = self._requests.get()
        try:
            req.infer(feeds)
            return [np.array(req.get_output_tensor(i).data, dtype=np.float32) for i in self._out_idx]
        finally:
            self._requests.put(req)


RUNNERS = {".pte": ExecuTorchRunner, ".tflite": LiteRTRunner, ".onnx": OnnxRunner,
           ".mlpackage": CoreMLStructuralCheck.open, ".mlmodel": CoreMLStructuralCheck.open}


def load(path: Path | str, input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None,
         **options: Any) -> Runner:
    """The runner for ``path`` by suffix (``.pte``, ``.tflite``, ``.onnx``, ``.mlpackage``/``.mlmodel``).

    ``input_names``/``output_names`` name a ``.pte``'s tensors (it stores none) and, for the others, must match
    the artifact's names as a set (they then fix the order). ``options`` go to the runner (``num_threads`` for
    LiteRT, ``providers``/``intra_op_threads``/``memory_arena`` for ONNX Runtime, ``method`` for ExecuTorch); thread
    counts default to :func:`default_threads`.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"artifact not found: {path}")
    factory = RUNNERS.get(path.suffix)
    if factory is None:
        raise ValueError(f"{path.name}: expected one of {sorted(RUNNERS)} artifacts, got suffix {path.suffix!r}")
    return factory(path, input_names=input_names, output_names=output_names, **options)
