"""Several input sets through one model in one process: the tiles of a frame, as an app runs them.

    python batch_runner.py --model m.onnx --inputs SETS/ --outputs OUT/ --warmup 1 --iterations 1 --timings t.json

``SETS/`` holds one sub-folder per input set (``000/``, ``001/`` …, each with ``<input name>.npy`` as in
``android_harness/runner_protocol.md``); ``OUT/<set>/<output name>.npy`` receive the outputs. The model is loaded
once, ``--warmup`` untimed inferences run on the first set (the model is warm from then on, as in an app that keeps
it loaded), then every set runs ``--iterations`` timed inferences. The timings JSON is the protocol's record
(``isp_bench.timings/1``: ``iteration_ms`` = every timed inference of every set, in order) plus
``"sets": [{"name", "iteration_ms", "outputs"}]``. Exit codes as in the protocol.

Why: ``runtime_py.bench`` runs a frame unit by unit on the device, tiles included — 50+ inferences for a 512x320
frame. With ``host_runner.py`` each would start Python and load the runtime and the model again (0.4–3 s), which
measures nothing a phone does. This wrapper is pushed next to ``host_runner.py`` (it imports it from its own folder:
the same loaders, input checks and file conventions) and is only used with the Python runner; the native runner is
started once per set (its start-up is milliseconds).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import host_runner as hr  # noqa: E402  (pushed next to this file)

RUNNER_NAME = "batch_runner.py"


def run(args: argparse.Namespace) -> dict:
    import numpy as np

    model_path = Path(args.model)
    ext = model_path.suffix.lower()
    if ext not in hr.LOADERS:
        raise hr.RunnerError(hr.EXIT_USAGE, f"unknown model format {ext!r}; expected one of {', '.join(hr.LOADERS)}")
    if not model_path.is_file():
        raise hr.RunnerError(hr.EXIT_LOAD, f"model file {model_path} does not exist")
    sets_dir = Path(args.inputs)
    sets = sorted(p for p in sets_dir.iterdir() if p.is_dir()) if sets_dir.is_dir() else []
    if not sets:
        raise hr.RunnerError(hr.EXIT_INPUTS, f"no input set folders in {sets_dir}")
    if args.debug_sleep_s:
        time.sleep(args.debug_sleep_s)
    io = hr.read_io_spec(model_path, Path(args.io_spec) if args.io_spec else None)
    rss_start = hr._current_rss_bytes()
    t0 = time.perf_counter()
    model = hr.LOADERS[ext](model_path, args.threads, io)
    startup_ms = (time.perf_counter() - t0) * 1e3
    rss_loaded = hr._current_rss_bytes()
    out_root = Path(args.outputs)
    warm, timed, per_set = [], [], []
    for k, set_dir in enumerate(sets):
        feeds = hr.load_inputs(model, set_dir)
        prepared = model.prepare(feeds)
        ms, outs = [], None
        try:
            for i in range((args.warmup if k == 0 else 0) + args.iterations):
                t = time.perf_counter()
                outs = model.run(prepared)
                dt = (time.perf_counter() - t) * 1e3
                (warm if k == 0 and i < args.warmup else ms).append(dt)
            if outs is None:
                outs = model.run(prepared)
        except Exception as exc:  # noqa: BLE001
            raise hr.RunnerError(hr.EXIT_INFER, f"inference failed on set {set_dir.name}: {type(exc).__name__}: "
                                                f"{exc}") from exc
        written = []
        try:
            (out_root / set_dir.name).mkdir(parents=True, exist_ok=True)
            for (name, _, _), arr in zip(model.outputs, outs):
                arr = np.asarray(arr)
                fname = hr.sanitize_name(name) + ".npy"
                hr._atomic_write(out_root / set_dir.name / fname, lambda f, a=arr: np.save(f, a, allow_pickle=False))
                written.append({"name": name, "file": fname, "shape": list(arr.shape), "dtype": str(arr.dtype)})
        except OSError as exc:
            raise hr.RunnerError(hr.EXIT_WRITE, f"cannot write outputs to {out_root / set_dir.name}: {exc}") from exc
        timed += ms
        per_set.append({"name": set_dir.name, "iteration_ms": ms, "outputs": written})
    peak_rss = hr._peak_rss_bytes()
    record = {
        "schema": hr.SCHEMA, "runner": RUNNER_NAME, "model": model_path.name,
        "model_bytes": model_path.stat().st_size, "format": ext.lstrip("."), "runtime": model.runtime,
        "runtime_version": model.version, "backend": model.backend, "threads": args.threads,
        "warmup": args.warmup, "iterations": args.iterations, "startup_ms": startup_ms, "load_ms": model.load_ms,
        "warmup_ms": warm, "iteration_ms": timed, "summary": hr.summarize(timed), "peak_rss_bytes": peak_rss,
        "rss_start_bytes": rss_start, "rss_after_load_bytes": rss_loaded,
        "outputs": per_set[0]["outputs"] if per_set else [], "sets": per_set,
        "notes": "batch_runner.py over host_runner.py: one process and one model load for every set",
    }
    if isinstance(model, hr.ExecuTorchModel):
        _sha, found = hr.scan_file(model_path, getattr(model, "registered_backends", ()))
        record["backend"] = "+".join(found) if found else "portable/optimized CPU kernels (no delegate)"
    try:
        hr._atomic_write(Path(args.timings), lambda f: f.write(json.dumps(record, indent=1).encode()))
    except OSError as exc:
        raise hr.RunnerError(hr.EXIT_WRITE, f"cannot write timings to {args.timings}: {exc}") from exc
    return record


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="batch_runner.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--inputs", required=True, help="folder of input-set folders")
    p.add_argument("--outputs", required=True, help="receives one folder of outputs per set")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs on the first set")
    p.add_argument("--iterations", type=int, default=1, help="timed runs per set")
    p.add_argument("--timings", required=True)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--io-spec", default=None)
    p.add_argument("--debug-sleep-s", type=float, default=0.0, help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.warmup < 0 or args.iterations < 0:
        print("runner: error: --warmup and --iterations must be >= 0", file=sys.stderr)
        return hr.EXIT_USAGE
    try:
        record = run(args)
    except hr.RunnerError as exc:
        print(f"runner: error: {exc}", file=sys.stderr)
        return exc.code
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        return hr.EXIT_INTERNAL
    print(f"{record['model']}: {len(record['sets'])} sets, {record['runtime']} [{record['backend']}], "
          f"median {record['summary'].get('median_ms', float('nan')):.3f} ms")
    return hr.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
