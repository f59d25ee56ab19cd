"""Host build of the device-side runner, in Python (the contract is runner_protocol.md).

    python host_runner.py --model m.onnx --inputs in/ --outputs out/ --warmup 3 --iterations 20 --timings t.json

Loads the model by extension: ``.pte`` through the ExecuTorch runtime pybindings, ``.tflite`` through
``ai_edge_litert.interpreter``, ``.onnx`` through ``onnxruntime``. Reads ``<inputs>/<input name>.npy``, runs
``--warmup`` untimed then ``--iterations`` timed inferences (``time.perf_counter``; one iteration = bind inputs, run,
fetch outputs, as an app does), writes ``<outputs>/<output name>.npy`` and the timings JSON (per-iteration ms, peak RSS
from ``resource.getrusage``, runtime name/version/backend). Files are written to a temporary name then renamed.

This file is self-contained on purpose (stdlib at import time; numpy and the runtime inside functions): the device
layer pushes it as one file and runs it with whatever Python the device offers. It is a host tool: its timings and
memory include the Python interpreter and say nothing about a phone's native runner.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import resource
import statistics
import sys
import time
import traceback
from pathlib import Path

SCHEMA = "isp_bench.timings/1"
RUNNER_NAME = "host_runner.py"

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_LOAD = 3
EXIT_INPUTS = 4
EXIT_INFER = 5
EXIT_WRITE = 6
EXIT_RUNTIME = 7

_FORMATS = (".pte", ".tflite", ".onnx")


class RunnerError(Exception):
    """A failure with its protocol exit code."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def sanitize_name(name: str) -> str:
    """Tensor name → file stem: characters outside ``[A-Za-z0-9._-]`` become ``_``; a leading ``.`` too."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", name) or "unnamed"
    return "_" + stem[1:] if stem.startswith(".") else stem


def read_io_spec(model: Path, explicit: Path | None) -> dict | None:
    """``--io-spec`` or the sidecar ``<model file>.io.json``: ``{"inputs": [names], "outputs": [names]}``."""
    path = explicit or model.with_name(model.name + ".io.json")
    if not path.exists():
        if explicit is not None:
            raise RunnerError(EXIT_USAGE, f"--io-spec {explicit} does not exist")
        return None
    try:
        spec = json.loads(path.read_text())
        return {"inputs": [str(n) for n in spec.get("inputs", [])], "outputs": [str(n) for n in spec.get("outputs", [])]}
    except (OSError, ValueError, AttributeError) as exc:
        raise RunnerError(EXIT_USAGE, f"cannot read the io spec {path}: {exc}") from exc


def _version(dist: str, module=None) -> str:
    try:
        from importlib.metadata import version
        return version(dist)
    except Exception:  # noqa: BLE001 - any metadata problem just means "unknown"
        return str(getattr(module, "__version__", "unknown"))


# ----------------------------------------------------------------------------------------------------------------------
# one small adapter per runtime: inputs / outputs (name, shape, dtype), run(feeds) -> list of arrays (output order)

class OnnxModel:
    runtime = "onnxruntime"

    def __init__(self, path: Path, threads: int | None, io: dict | None):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise RunnerError(EXIT_RUNTIME, f"onnxruntime is not installed ({exc}): pip install onnxruntime") from exc
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        t = time.perf_counter()
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises several unrelated types for a bad file
            raise RunnerError(EXIT_LOAD, f"onnxruntime could not load {path}: {exc}") from exc
        self.load_ms = (time.perf_counter() - t) * 1e3
        self.version = ort.__version__
        self.backend = self.session.get_providers()[0]
        type_map = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
                    "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8",
                    "tensor(uint8)": "uint8", "tensor(bool)": "bool"}
        self.inputs = [(i.name, [d if isinstance(d, int) else None for d in i.shape], type_map.get(i.type, i.type))
                       for i in self.session.get_inputs()]
        self.outputs = [(o.name, [d if isinstance(d, int) else None for d in o.shape], type_map.get(o.type, o.type))
                        for o in self.session.get_outputs()]

    def prepare(self, feeds: dict) -> dict:
        return feeds

    def run(self, prepared: dict) -> list:
        return self.session.run(None, prepared)


class LiteRTModel:
    runtime = "litert"

    def __init__(self, path: Path, threads: int | None, io: dict | None):
        try:
            import ai_edge_litert
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise RunnerError(EXIT_RUNTIME, f"ai-edge-litert is not installed ({exc}): pip install ai-edge-litert") \
                from exc
        t = time.perf_counter()
        try:
            self.interp = Interpreter(model_path=str(path), num_threads=threads or None)
            signatures = self.interp.get_signature_list()
        except Exception as exc:  # noqa: BLE001
            raise RunnerError(EXIT_LOAD, f"LiteRT could not load {path}: {exc}") from exc
        self.load_ms = (time.perf_counter() - t) * 1e3
        self.version = _version("ai-edge-litert", ai_edge_litert)
        self.backend = "XNNPACK (CPU, default delegate)"
        if len(signatures) == 1:  # names from the single signature: args_0 / output_0 style, stable across converters
            key = next(iter(signatures))
            self.runner = self.interp.get_signature_runner(key)
            ins, outs = self.runner.get_input_details(), self.runner.get_output_details()
            self.inputs = [(n, [int(s) for s in d["shape"]], str(d["dtype"].__name__)) for n, d in ins.items()]
            self.outputs = [(n, [int(s) for s in d["shape"]], str(d["dtype"].__name__)) for n, d in outs.items()]
        else:  # no or several signatures: tensor names and the plain interpreter
            self.runner = None
            self.interp.allocate_tensors()
            self._in = self.interp.get_input_details()
            self._out = self.interp.get_output_details()
            self.inputs = [(d["name"], [int(s) for s in d["shape"]], d["dtype"].__name__) for d in self._in]
            self.outputs = [(d["name"], [int(s) for s in d["shape"]], d["dtype"].__name__) for d in self._out]

    def prepare(self, feeds: dict) -> dict:
        return feeds

    def run(self, prepared: dict) -> list:
        if self.runner is not None:
            result = self.runner(**prepared)
            return [result[name] for name, _, _ in self.outputs]
        for d in self._in:
            self.interp.set_tensor(d["index"], prepared[d["name"]])
        self.interp.invoke()
        return [self.interp.get_tensor(d["index"]).copy() for d in self._out]


_ET_DTYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 7: "float64",
              11: "bool", 15: "bfloat16"}


class ExecuTorchModel:
    runtime = "executorch"

    def __init__(self, path: Path, threads: int | None, io: dict | None):
        try:
            import torch  # noqa: F401 - the pybindings need torch loaded first
        except ImportError as exc:
            raise RunnerError(EXIT_RUNTIME, f"the ExecuTorch pybindings need torch ({exc})") from exc
        # The pybindings extension directly: `executorch.runtime` wraps the same extension but imports executorch.exir
        # (about 5 s and 130 MB more here), which would dominate the start-up and the peak RSS of a tiny model.
        try:
            from executorch.extension.pybindings import _C as et
            self._api = "executorch.extension.pybindings"
        except ImportError:
            et = None
        self.version = _version("executorch")
        t = time.perf_counter()
        try:
            if et is not None:
                if threads:
                    et._unsafe_reset_threadpool(threads)
                t = time.perf_counter()
                self.module = et._load_for_executorch(str(path))
                meta = self.module.method_meta("forward")
                backends = list(et._get_registered_backend_names())
                self._run = lambda args: self.module.run_method("forward", args)
            else:
                from executorch.runtime import Runtime
                self._api = "executorch.runtime"
                rt = Runtime.get()
                t = time.perf_counter()
                method = rt.load_program(str(path)).load_method("forward")
                meta = method.metadata
                backends = list(rt.backend_registry.registered_backend_names)
                self._run = method.execute
        except ImportError as exc:
            raise RunnerError(EXIT_RUNTIME, f"the ExecuTorch runtime is not installed ({exc}): pip install "
                                            "executorch") from exc
        except Exception as exc:  # noqa: BLE001 - the pybindings raise RuntimeError / ValueError for bad programs
            raise RunnerError(EXIT_LOAD, f"ExecuTorch could not load {path}: {exc}") from exc
        self.load_ms = (time.perf_counter() - t) * 1e3
        self.registered_backends = backends
        self.backend = "ExecuTorch CPU"  # refined by describe_delegates() once timing is over
        n_in, n_out = meta.num_inputs(), meta.num_outputs()
        names_in = (io or {}).get("inputs") or [f"input_{i}" for i in range(n_in)]
        names_out = (io or {}).get("outputs") or [f"output_{i}" for i in range(n_out)]
        if len(names_in) != n_in or len(names_out) != n_out:
            raise RunnerError(EXIT_USAGE, f"io spec names {len(names_in)} inputs / {len(names_out)} outputs, the "
                                          f"program has {n_in} / {n_out}")
        self.inputs, self.outputs = [], []
        for i, name in enumerate(names_in):
            t = meta.input_tensor_meta(i)
            self.inputs.append((name, list(t.sizes()), _ET_DTYPES.get(int(t.dtype()), str(t.dtype()))))
        for i, name in enumerate(names_out):
            t = meta.output_tensor_meta(i)
            self.outputs.append((name, list(t.sizes()), _ET_DTYPES.get(int(t.dtype()), str(t.dtype()))))

    def prepare(self, feeds: dict) -> tuple:
        import torch
        return tuple(torch.from_numpy(feeds[name]) for name, _, _ in self.inputs)

    def run(self, prepared: tuple) -> list:
        return [o.numpy() if hasattr(o, "numpy") else o for o in self._run(prepared)]


LOADERS = {".pte": ExecuTorchModel, ".tflite": LiteRTModel, ".onnx": OnnxModel}


# ----------------------------------------------------------------------------------------------------------------------

def load_inputs(model, inputs_dir: Path) -> dict:
    """Read ``<inputs_dir>/<sanitized input name>.npy`` for every model input; check shape (static dims) and dtype."""
    import numpy as np

    feeds, problems = {}, []
    for name, shape, dtype in model.inputs:
        f = inputs_dir / (sanitize_name(name) + ".npy")
        if not f.exists():
            problems.append(f"missing {f.name} (input {name!r}, shape {shape}, {dtype})")
            continue
        try:
            arr = np.load(f, allow_pickle=False)
        except (OSError, ValueError) as exc:
            problems.append(f"{f.name}: not a readable .npy ({exc})")
            continue
        if dtype in ("float32", "float16", "float64", "int8", "uint8", "int32", "int64", "bool") and \
                str(arr.dtype) != dtype:
            problems.append(f"{f.name}: dtype {arr.dtype}, the model wants {dtype}")
        if len(shape) != arr.ndim or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
            problems.append(f"{f.name}: shape {list(arr.shape)}, the model wants {shape}")
        feeds[name] = np.ascontiguousarray(arr)
    if problems:
        raise RunnerError(EXIT_INPUTS, "inputs do not match the model: " + "; ".join(problems))
    return feeds


def scan_file(path: Path, needles=(), chunk: int = 1 << 20) -> tuple:
    """(sha256 hex, the needles found in the bytes), streaming so a large model is never held in memory."""
    h, found, tail = hashlib.sha256(), set(), b""
    keep = max((len(n) for n in needles), default=1)
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
            window = tail + block
            found.update(n for n in needles if n.encode() in window)
            tail = window[-keep:]
    return h.hexdigest(), sorted(found)


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux / Android


def _current_rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def summarize(ms: list) -> dict:
    if not ms:
        return {}
    s = sorted(ms)
    return {"mean_ms": statistics.fmean(s), "median_ms": statistics.median(s), "min_ms": s[0], "max_ms": s[-1],
            "p90_ms": s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))],
            "stdev_ms": statistics.stdev(s) if len(s) > 1 else 0.0}


def run(args: argparse.Namespace) -> dict:
    """The whole protocol; returns the timings record (also written to ``--timings``)."""
    import numpy as np

    model_path = Path(args.model)
    if args.debug_sleep_s:
        time.sleep(args.debug_sleep_s)  # test hook: simulates a hung runner (RunnerTimeout tests)
    ext = model_path.suffix.lower()
    if ext not in LOADERS:
        raise RunnerError(EXIT_USAGE, f"unknown model format {ext!r}; expected one of {', '.join(_FORMATS)}")
    if not model_path.is_file():
        raise RunnerError(EXIT_LOAD, f"model file {model_path} does not exist")
    io = read_io_spec(model_path, Path(args.io_spec) if args.io_spec else None)
    rss_start = _current_rss_bytes()
    t0 = time.perf_counter()
    model = LOADERS[ext](model_path, args.threads, io)
    startup_ms = (time.perf_counter() - t0) * 1e3  # runtime import + model load
    rss_loaded = _current_rss_bytes()
    feeds = load_inputs(model, Path(args.inputs))
    prepared = model.prepare(feeds)

    warm, timed, outs = [], [], None
    try:
        for i in range(args.warmup + args.iterations):
            t = time.perf_counter()
            outs = model.run(prepared)
            dt = (time.perf_counter() - t) * 1e3
            (warm if i < args.warmup else timed).append(dt)
    except Exception as exc:  # noqa: BLE001
        raise RunnerError(EXIT_INFER, f"inference failed: {type(exc).__name__}: {exc}") from exc
    if outs is None:  # --warmup 0 --iterations 0: still produce outputs once, untimed
        try:
            outs = model.run(prepared)
        except Exception as exc:  # noqa: BLE001
            raise RunnerError(EXIT_INFER, f"inference failed: {type(exc).__name__}: {exc}") from exc

    out_dir = Path(args.outputs)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for (name, _, _), arr in zip(model.outputs, outs):
            arr = np.asarray(arr)
            fname = sanitize_name(name) + ".npy"
            _atomic_write(out_dir / fname, lambda f, a=arr: np.save(f, a, allow_pickle=False))
            written.append({"name": name, "file": fname, "shape": list(arr.shape), "dtype": str(arr.dtype)})
    except OSError as exc:
        raise RunnerError(EXIT_WRITE, f"cannot write outputs to {out_dir}: {exc}") from exc

    peak_rss = _peak_rss_bytes()  # before hashing the model file, which must not count
    sha256, found = scan_file(model_path, getattr(model, "registered_backends", ()))
    if isinstance(model, ExecuTorchModel):
        # delegate ids are stored as strings in the program: name the registered ones it uses
        model.backend = "+".join(found) if found else "portable/optimized CPU kernels (no delegate)"
    record = {
        "schema": SCHEMA,
        "runner": RUNNER_NAME,
        "model": model_path.name,
        "model_bytes": model_path.stat().st_size,
        "model_sha256": sha256,
        "format": ext.lstrip("."),
        "runtime": model.runtime,
        "runtime_version": model.version,
        "backend": model.backend,
        "threads": args.threads,
        "warmup": args.warmup,
        "iterations": args.iterations,
        "startup_ms": startup_ms,
        "load_ms": model.load_ms,
        "warmup_ms": warm,
        "iteration_ms": timed,
        "summary": summarize(timed),
        "peak_rss_bytes": peak_rss,
        "rss_start_bytes": rss_start,
        "rss_after_load_bytes": rss_loaded,
        "inputs": [{"name": n, "file": sanitize_name(n) + ".npy", "shape": list(feeds[n].shape),
                    "dtype": str(feeds[n].dtype)} for n, _, _ in model.inputs],
        "outputs": written,
        "host": {"python": platform.python_version(), "machine": platform.machine(), "system": platform.system(),
                 "pid": os.getpid()},
        "notes": "host_runner.py: Python runner; peak RSS includes the interpreter and the runtime's Python module",
    }
    if isinstance(model, ExecuTorchModel):
        record["executorch_api"] = model._api
    try:
        Path(args.timings).parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(Path(args.timings), lambda f: f.write(json.dumps(record, indent=1).encode()))
    except OSError as exc:
        raise RunnerError(EXIT_WRITE, f"cannot write timings to {args.timings}: {exc}") from exc
    return record


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="host_runner.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model file: .pte (ExecuTorch), .tflite (LiteRT), .onnx (ONNX)")
    p.add_argument("--inputs", required=True, help="folder of <input name>.npy")
    p.add_argument("--outputs", required=True, help="folder for <output name>.npy (created)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs before timing (default 3)")
    p.add_argument("--iterations", type=int, default=10, help="timed runs (default 10)")
    p.add_argument("--timings", required=True, help="timings JSON to write")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the runtime (default: its own)")
    p.add_argument("--io-spec", default=None,
                   help="JSON {inputs: [names], outputs: [names]} for .pte (default: <model>.io.json if present)")
    p.add_argument("--debug-sleep-s", type=float, default=0.0, help=argparse.SUPPRESS)  # tests: simulate a hang
    return p


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help
        return int(exc.code or 0)
    if args.warmup < 0 or args.iterations < 0:
        print("runner: error: --warmup and --iterations must be >= 0", file=sys.stderr)
        return EXIT_USAGE
    try:
        record = run(args)
    except RunnerError as exc:
        print(f"runner: error: {exc}", file=sys.stderr)
        return exc.code
    except Exception:  # noqa: BLE001 - report, with the protocol's code for "unexpected"
        traceback.print_exc()
        return EXIT_INTERNAL
    s = record["summary"]
    print(f"{record['model']}: {record['runtime']} {record['runtime_version']} [{record['backend']}] "
          f"median {s.get('median_ms', float('nan')):.3f} ms over {record['iterations']} iterations, "
          f"peak RSS {record['peak_rss_bytes'] / 2**20:.1f} MiB")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
