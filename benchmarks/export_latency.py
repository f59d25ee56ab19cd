"""Latency of every exported unit on this CPU, per target and precision, next to the float32 PyTorch unit.

    .venv/bin/python benchmarks/export_latency.py SET [SET ...] [--threads N] [--repeat 10] [--warmup 2]
        [--units denoise,enhance] [--targets onnx,litert] [--precisions fp32,int8] [--ort-int8 host|emulate]
        [--torch-layout pipeline|contiguous] [--json OUT.json] [--markdown OUT.md] [--no-isolate] [--quiet]
        [--runtime cpu|litert-gpu|litert-gpu-f32]

``SET`` is a folder written by ``python convert/export.py --out DIR`` (its ``manifest.json``), or a folder whose
sub-folders are such sets (e.g. ``/tmp/bench12`` holding ``onnx_fp32/``, ``litert_int8/``, ...). All sets must
share one frame geometry, style, denoiser and weights: they are compared with one PyTorch baseline.

What is measured, per unit of the manifests (denoise, color, downsample, gain, gtm, ltm, [lut3d], chroma, gamma,
upsample_fit, upsample_slice, enhance):

* every artifact of that unit in the sets (one per target and precision; files with the same sha256 are timed
  once), loaded with :meth:`runtime_py.artifacts.Artifact.load` (``runtime_py.runtimes``), and the float32 torch
  unit from :func:`convert.units.build_unit` (the module the artifacts were exported from), all on the unit's fixed
  input shape (a tile for tiled units, the quarter frame for quarter units, the whole frame for ``downsample``) and
  on the *same* inputs (:meth:`convert.units.ExportUnit.example_inputs`);
* in one process, at one thread count (torch intra-op threads, ONNX Runtime ``intra_op_num_threads``, LiteRT
  ``num_threads``, the ExecuTorch threadpool), **interleaved**: ``--warmup`` rounds, then ``--repeat`` rounds in
  each of which the torch unit and every artifact run once (the order rotates from round to round), so a change of
  machine load hits all of them alike; the median per call is reported;
* per frame: per-call median x calls per frame (tiles of the frame's tile plan, ``isp.units.calls_per_frame``:
  feathered windows for ``overlap`` units, plain windows for ``tiles`` units, 1 otherwise);
* ratio = artifact / torch (below 1: the artifact is faster), per unit and end to end (the sum over the units of a
  chain: one target and requested precision; units an int8 policy keeps in float are that chain's fp32 artifacts,
  marked in the table).

The torch baseline runs as the reference pipeline runs it (``--torch-layout pipeline``: denoise and enhance
channels-last, as ``isp.pipeline.Pipeline`` does; ``contiguous``: the unit module as built). ONNX int8 artifacts run
ONNX Runtime's integer kernels (``--ort-int8 host``, the default here: a latency benchmark times the real kernels);
``emulate`` would time the float Q/DQ emulation the drift tools use.

Robustness: each unit is measured in a child process (``--no-isolate``: in this process); an artifact that fails to
load or run is reported with its error, and a child that dies (a native crash) is retried one artifact at a time,
so only the culprit is marked failed. Core ML artifacts are listed as not runnable on Linux.

Output: a markdown table (ready for the README) on stdout, with the CPU model, thread count, load average and the
tool versions above it; ``--json`` writes everything (per-call samples included) atomically
(:func:`isp.jsonio.write_json_atomic`), ``--markdown`` the table alone. Numbers are ratios from one run on one
machine; a benchmark prints them, tests never assert them.

Exit status: 0 when every runnable artifact was timed, 1 when some failed (they are in the table), 2 for bad
arguments or sets.

The README table (12 MP, style 0, lite denoiser; one folder per target and precision; the int8 runs share one
calibration set, built first — the shipped DNGs are smaller than 12 MP, so its frames are mirror-tiled and the
manifests say so)::

    B=/tmp/bench12
    .venv/bin/python -m calibration build --out $B/calibration --size 12mp --count 8 --eval-count 1 --style 0
    for t in onnx tflite executorch; do
      for p in fp32 fp16; do
        .venv/bin/python convert/export.py --target $t --precision $p --size 12mp --out $B/${t}_$p --quiet
      done
      .venv/bin/python convert/export.py --target $t --policy int8 --size 12mp --calibration $B/calibration \\
          --out $B/${t}_int8 --quiet
    done
    .venv/bin/python benchmarks/export_latency.py $B --threads $(nproc) --json $B/latency.json \\
        --markdown $B/latency.md
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Mapping, Sequence

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from isp.units import calls_per_frame  # noqa: E402  (after the path set-up)
from isp.versions import cpu_model  # noqa: E402
from benchmarks.latency_sets import (Chain, Item, build_chains, collect_items, expand_sets,  # noqa: E402,F401
                                     open_sets, _names)

SCHEMA = "isp.export_latency/1"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: full-resolution networks the reference pipeline runs channels-last (isp.pipeline.Pipeline._full_res)
CHANNELS_LAST_UNITS = ("denoise", "enhance")
TOOL_DISTRIBUTIONS = ("torch", "numpy", "onnxruntime", "ai-edge-litert", "executorch", "onnx", "coremltools")


# ------------------------------------------------------------------------------------------------------ host

def tool_versions() -> dict[str, str]:
    from isp.versions import tool_versions as read_versions
    return read_versions(TOOL_DISTRIBUTIONS, missing=None)


def host_info(threads: int) -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "machine": platform.machine(),
            "system": f"{platform.system()} {platform.release()}", "threads": threads,
            "loadavg_start": [round(v, 2) for v in load] if load else None, "versions": tool_versions()}


# ---------------------------------------------------------------------------------------------------- worker

def _set_threads(threads: int, executorch: bool = True) -> None:
    import torch
    torch.set_num_threads(threads)
    if not executorch:                        # importing the pybindings costs seconds: only when needed
        return
    try:
        from executorch.extension.pybindings import portable_lib
        portable_lib._unsafe_reset_threadpool(threads)
    except Exception:  # noqa: BLE001 — ExecuTorch not installed, or a build without a threadpool
        pass


def _runner_options(target: str, threads: int, runtime: str = "cpu") -> dict[str, Any]:
    from isp.units import target_family
    fam = target_family(target)
    if fam == "litert" and runtime != "cpu":         # LiteRT's GPU delegate (runtime_py.gpu); no thread count
        return {"runtime": runtime}
    if fam == "onnx":
        return {"intra_op_threads": threads}
    if fam == "litert":
        return {"num_threads": threads}
    return {}


def _stats(samples: Sequence[float]) -> dict[str, Any]:
    ms = [s * 1e3 for s in samples]
    if not ms:
        return {"median": None, "min": None, "max": None, "n": 0, "samples": []}
    return {"median": statistics.median(ms), "min": min(ms), "max": max(ms), "n": len(ms),
            "samples": [round(v, 4) for v in ms]}


def measure_unit(spec: Mapping[str, Any], progress=None) -> dict[str, Any]:
    """Time the torch unit and the artifacts of one unit, interleaved (the work of one child process).

    ``spec``: unit, identity (geometry, style, denoiser, weights), items (key, root, file, target), threads,
    warmup, repeat, ort_int8, torch_layout, verify. Returns ``{"torch": {...}, "artifacts": {key: {...}}}``; an
    artifact that fails to load or run gets ``status`` and ``error`` instead of timings."""
    import numpy as np
    import torch

    from convert.units import build_unit
    from isp.geometry import FrameGeometry
    from isp.registry import BuildConfig
    from runtime_py.artifacts import ArtifactSet

    unit_id = spec["unit"]
    threads = int(spec["threads"])
    _set_threads(threads, any(str(it["target"]).startswith("executorch") for it in spec["items"]))
    ident = spec["identity"]
    g = ident["geometry"]
    geometry = FrameGeometry(g["width"], g["height"], g["tile"], g["overlap"])
    cfg = BuildConfig(Path(spec["weights"]), style=int(ident["style"]), denoiser=ident["denoiser"],
                      use_lut=bool(ident["lut"]) if ident["style"] != 0 else None)
    result: dict[str, Any] = {"unit": unit_id, "artifacts": {}}
    say = progress or (lambda *_a: None)

    t0 = time.perf_counter()
    unit = build_unit(unit_id, cfg, geometry)
    inputs = unit.example_inputs()
    arrays = [t.detach().float().numpy().copy() for t in inputs]
    module = unit.module
    channels_last = spec["torch_layout"] == "pipeline" and unit_id in CHANNELS_LAST_UNITS
    if channels_last:
        module = module.to(memory_format=torch.channels_last)

    def torch_call():
        with torch.inference_mode():
            xs = [x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x
                  for x in inputs]
            out = module(*xs)
            outs = (out,) if isinstance(out, torch.Tensor) else tuple(out)
            return [o.contiguous() for o in outs]

    result["torch"] = {"layout": "channels_last" if channels_last else "contiguous",
                       "build_seconds": round(time.perf_counter() - t0, 3),
                       "input_shapes": [list(t.shape) for t in inputs]}
    reference = [o.float().numpy() for o in torch_call()]

    calls: dict[str, Any] = {"torch": torch_call}
    sets: dict[str, Any] = {}
    for it in spec["items"]:
        key = it["key"]
        rec: dict[str, Any] = {"status": "ok"}
        result["artifacts"][key] = rec
        try:
            aset = sets.get(it["root"]) or sets.setdefault(it["root"], ArtifactSet.open(it["root"]))
            art = next(a for a in aset.artifacts if a.file == it["file"])
            art.check_file(bool(spec.get("verify", True)))
            t_load = time.perf_counter()
            runtime = spec.get("runtime", "cpu") if unit_id in spec.get("gpu_units", ()) else "cpu"
            runner = art.load(spec["ort_int8"], **_runner_options(art.target, threads, runtime))
            rec["runtime"] = runtime if art.family == "litert" else "cpu"
            rec["load_seconds"] = round(time.perf_counter() - t_load, 3)
            rec["input_dtypes"] = [s.dtype for s in runner.inputs]
        except Exception as exc:  # noqa: BLE001 — reported, the others go on
            rec.update(status="load failed", error=f"{type(exc).__name__}: {exc}"[:600])
            continue
        try:
            outs = runner.run(arrays)
            errs = [float(np.max(np.abs(np.asarray(o, dtype=np.float32) - r))) if np.shape(o) == r.shape else None
                    for o, r in zip(outs, reference)]
            rec["max_abs_err_vs_torch"] = errs
        except Exception as exc:  # noqa: BLE001
            rec.update(status="run failed", error=f"{type(exc).__name__}: {exc}"[:600])
            continue
        calls[key] = (lambda r=runner: r.run(arrays))

    names = list(calls)
    samples: dict[str, list[float]] = {k: [] for k in names}
    warmup, repeat = int(spec["warmup"]), int(spec["repeat"])
    for rnd in range(warmup + repeat):
        k = rnd % len(names)
        order = names[k:] + names[:k]
        for name in order:
            if name not in calls:
                continue
            try:
                t = time.perf_counter()
                calls[name]()
                dt = time.perf_counter() - t
            except Exception as exc:  # noqa: BLE001 — a call that fails later (memory, ...) drops the artifact
                result["artifacts"][name].update(status="run failed", error=f"{type(exc).__name__}: {exc}"[:600])
                calls.pop(name)
                continue
            if rnd >= warmup:
                samples[name].append(dt)
        say(rnd + 1, warmup + repeat)
    result["torch"]["per_call_ms"] = _stats(samples["torch"])
    for key, rec in result["artifacts"].items():
        if rec["status"] == "ok":
            rec["per_call_ms"] = _stats(samples[key])
    return result


def _worker_main(spec_path: str, out_path: str) -> int:
    """Child entry point: measure one unit, progress as JSON lines on stdout, the result into ``out_path``."""
    from isp.jsonio import write_json_atomic

    spec = json.loads(Path(spec_path).read_text())

    def progress(done: int, total: int) -> None:
        print(json.dumps({"progress": done, "total": total}), flush=True)

    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            res = measure_unit(spec, progress)
        except Exception as exc:  # noqa: BLE001 — the torch side failed: the whole unit is lost
            res = {"unit": spec["unit"], "error": f"{type(exc).__name__}: {exc}"[:800],
                   "traceback": traceback.format_exc()[-3000:]}
    write_json_atomic(out_path, res)
    return 0


def run_isolated(spec: Mapping[str, Any], on_progress=None, timeout_s: float | None = None) -> dict[str, Any]:
    """:func:`measure_unit` in a child process; ``{"crashed": reason}`` when the child dies without a result."""
    env = dict(os.environ)
    t = str(spec["threads"])
    env.update(OMP_NUM_THREADS=t, MKL_NUM_THREADS=t, OPENBLAS_NUM_THREADS=t, PYTHONWARNINGS="ignore",
               TF_CPP_MIN_LOG_LEVEL="3")
    with tempfile.TemporaryDirectory(prefix="isp-latency-") as tmp:
        spec_path, out_path, err_path = Path(tmp) / "spec.json", Path(tmp) / "result.json", Path(tmp) / "stderr"
        spec_path.write_text(json.dumps(spec))
        with open(err_path, "w") as err:
            proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--_worker", str(spec_path),
                                     str(out_path)], stdout=subprocess.PIPE, stderr=err, text=True, env=env,
                                    cwd=str(REPO))
            assert proc.stdout is not None

            def read(stream=proc.stdout) -> None:
                for line in stream:
                    try:
                        msg = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if on_progress and "progress" in msg:
                        on_progress(msg["progress"], msg["total"])
            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            timed_out = False
            try:
                rc = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
                timed_out = True
            reader.join(timeout=5)
        if timed_out:
            return {"unit": spec["unit"], "crashed": f"killed after --unit-timeout {timeout_s:g} s"}
        if out_path.is_file():
            return json.loads(out_path.read_text())
        tail = err_path.read_text(errors="replace")[-1500:].strip()
        return {"unit": spec["unit"], "crashed": f"child exited with status {rc}" + (f": {tail}" if tail else "")}


# ------------------------------------------------------------------------------------------------------- run

def benchmark(opts: argparse.Namespace) -> dict[str, Any]:
    from tqdm import tqdm

    paths = expand_sets(opts.sets)
    names = _names(paths)
    sets, ident = open_sets(paths)
    geometry = sets[0].geometry
    units_all = list(sets[0].required_units)
    units = [u for u in units_all if not opts.units or u in opts.units]
    if opts.units:
        unknown = [u for u in opts.units if u not in units_all]
        if unknown:
            raise ValueError(f"--units: {', '.join(unknown)} not in this pipeline ({', '.join(units_all)})")
    by_unit, by_file, failures = collect_items(sets, names, units, opts.targets)
    gpu_set: list[str] = []
    if opts.runtime != "cpu":                 # LiteRT artifacts of the GPU units run on the GPU delegate
        from runtime_py import gpu
        reason = gpu.skip_reason()
        if reason:
            raise ValueError(f"--runtime {opts.runtime}: {reason}")
        gpu_set = list(gpu.gpu_units())
    chains = build_chains(sets, names, units, by_file, failures, opts.targets)
    if opts.precisions:                       # keep those columns, and time only what they use
        chains = [c for c in chains if c.precision in opts.precisions]
        used = {id(it) for c in chains for it in c.units.values()}
        by_unit = {u: [it for it in items if id(it) in used] for u, items in by_unit.items()}
        failures = [f for f in failures if f.get("precision") in opts.precisions]
    weights = str(opts.weights or ident.get("weights") or "")
    if not weights:
        from isp import paths as isp_paths
        weights = str(isp_paths.weights_root())

    report: dict[str, Any] = {
        "schema": SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "host": host_info(opts.threads),
        "settings": {"threads": opts.threads, "warmup": opts.warmup, "repeat": opts.repeat, "ort_int8": opts.ort_int8,
                     "torch_layout": opts.torch_layout, "isolate": not opts.no_isolate, "statistic": "median"},
        "sets": [{"name": n, "path": str(p), "policy": (s.manifest.get("policy") or {}).get("name"),
                  "targets": s.targets} for n, p, s in zip(names, paths, sets)],
        "identity": ident, "geometry_text": geometry.describe(), "export_failures": failures,
        "units": {}, "chains": [],
    }
    rounds = opts.warmup + opts.repeat
    bar = tqdm(total=len(units) * rounds, desc="latency", unit="round", disable=opts.quiet, file=sys.stderr,
               dynamic_ncols=True)
    for unit in units:
        items = by_unit.get(unit, [])
        runnable = [it for it in items if it.runnable]
        bar.set_postfix_str(f"{unit} ({len(runnable)} artifacts)")
        base = bar.n

        def on_progress(done: int, total: int, base=base) -> None:
            bar.n = base + done * rounds // max(total, 1)
            bar.refresh()

        spec = {"unit": unit, "identity": ident, "weights": weights, "threads": opts.threads, "warmup": opts.warmup,
                "runtime": opts.runtime, "gpu_units": gpu_set,
                "repeat": opts.repeat, "ort_int8": opts.ort_int8, "torch_layout": opts.torch_layout,
                "verify": not opts.no_verify,
                "items": [{"key": it.key, "root": it.root, "file": it.file, "target": it.target} for it in runnable]}
        if opts.no_isolate:
            try:
                res = measure_unit(spec, on_progress)
            except Exception as exc:  # noqa: BLE001
                res = {"unit": unit, "error": f"{type(exc).__name__}: {exc}"[:800]}
        else:
            res = run_isolated(spec, on_progress, opts.unit_timeout)
            if "crashed" in res and runnable:
                # find the culprit: each artifact alone (with its own torch baseline)
                merged: dict[str, Any] = {"unit": unit, "artifacts": {}, "note": f"first attempt: {res['crashed']}; "
                                          "artifacts were then timed one per process"}
                for it in runnable:
                    one = run_isolated({**spec, "items": [spec["items"][runnable.index(it)]]}, None, opts.unit_timeout)
                    if "crashed" in one or "error" in one:
                        merged["artifacts"][it.key] = {"status": "crashed" if "crashed" in one else "run failed",
                                                       "error": one.get("crashed") or one.get("error")}
                        continue
                    merged["artifacts"].update(one["artifacts"])
                    rec = merged["artifacts"][it.key]
                    rec["torch_per_call_ms"] = one["torch"]["per_call_ms"]     # its own interleaved baseline
                    merged.setdefault("torch", one["torch"])
                res = merged
        bar.n = base + rounds
        bar.refresh()
        report["units"][unit] = _unit_record(unit, res, items, geometry)
    bar.close()
    report["chains"] = [_chain_record(c, report["units"], units) for c in chains]
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    report["host"]["loadavg_end"] = [round(v, 2) for v in load] if load else None
    return report


def _unit_record(unit: str, res: Mapping[str, Any], items: Sequence[Item], geometry: Any) -> dict[str, Any]:
    calls = calls_per_frame(geometry, unit)
    torch_rec = dict(res.get("torch") or {})
    t_med = (torch_rec.get("per_call_ms") or {}).get("median")
    rec: dict[str, Any] = {"calls_per_frame": calls, "torch": torch_rec,
                           "torch_frame_ms": t_med * calls if t_med is not None else None, "artifacts": {}}
    for key in ("error", "crashed", "note", "traceback"):
        if key in res:
            rec[key] = res[key]
    measured = res.get("artifacts") or {}
    for it in items:
        a: dict[str, Any] = {"set": it.set_name, "file": it.file, "target": it.target, "precision": it.precision,
                             "requested_precision": it.requested, "sha256": it.sha256, "aliases": it.aliases}
        if not it.runnable:
            a.update(status="not runnable here", error=it.reason)
        elif it.key in measured:
            a.update(measured[it.key])
        else:
            a.update(status="not measured", error=res.get("error") or res.get("crashed") or "unknown")
        med = (a.get("per_call_ms") or {}).get("median")
        base = (a.get("torch_per_call_ms") or {}).get("median", t_med) if a.get("torch_per_call_ms") else t_med
        if a.get("status") == "ok" and med is not None:
            a["frame_ms"] = med * calls
            a["ratio"] = med / base if base else None
        rec["artifacts"][it.key] = a
    return rec


def _chain_record(c: Chain, units: Mapping[str, Any], order: Sequence[str]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    total = torch_total = 0.0
    complete = True
    for unit in order:
        u = units.get(unit, {})
        if unit in c.missing:
            rows[unit] = {"status": c.missing[unit]}
            complete = False
            continue
        it = c.units[unit]
        a = u.get("artifacts", {}).get(it.key, {})
        row = {"key": it.key, "precision": it.precision, "status": a.get("status"), "frame_ms": a.get("frame_ms"),
               "ratio": a.get("ratio"), "error": a.get("error")}
        rows[unit] = row
        if a.get("frame_ms") is None or u.get("torch_frame_ms") is None:
            complete = False
            continue
        total += a["frame_ms"]
        torch_total += u["torch_frame_ms"]
    return {"label": c.label, "target": c.target, "precision": c.precision, "sets": c.sets, "units": rows,
            "complete": complete, "frame_ms": total if complete else None,
            "torch_frame_ms": torch_total if complete else None,
            "ratio": total / torch_total if complete and torch_total else None,
            "partial_frame_ms": total, "partial_torch_frame_ms": torch_total}


# ---------------------------------------------------------------------------------------------------- report

def _ms(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v / 1000:.2f} s" if v >= 1000 else f"{v:.0f} ms" if v >= 10 else f"{v:.1f} ms"


def _cell(row: Mapping[str, Any], chain_precision: str) -> str:
    st = row.get("status")
    if st != "ok":
        text = str(st or "–")
        return "n/a (Core ML, not run on Linux)" if "Core ML" in str(row.get("error") or "") else text
    mark = f" [{row['precision']}]" if row.get("precision") != chain_precision else ""
    ratio = row.get("ratio")
    ms = _ms(row.get("frame_ms"))
    return f"{ms} ({ratio:.2f}×){mark}" if ratio is not None else f"{ms}{mark}"


def markdown(report: Mapping[str, Any]) -> str:
    host, st = report["host"], report["settings"]
    v = host["versions"]
    vers = ", ".join(f"{k} {v[k]}" for k in ("torch", "onnxruntime", "ai-edge-litert", "executorch", "numpy", "python")
                     if k in v)
    ident = report["identity"]
    lines = [
        f"Export latency per frame of {report['geometry_text']}; style {ident.get('style')}, denoiser "
        f"{ident.get('denoiser')}.",
        f"CPU: {host['cpu']} ({host['logical_cpus']} logical CPUs), {st['threads']} thread(s) for every runtime; "
        f"load average {host.get('loadavg_start')} at start, {host.get('loadavg_end')} at end.",
        f"Versions: {vers}.",
        f"Median of {st['repeat']} interleaved rounds after {st['warmup']} warm-up; per frame = per call × calls per "
        f"frame; (r×) = artifact / float32 PyTorch unit (torch layout: {st['torch_layout']}), below 1 = faster. "
        f"ONNX int8 runs {'the integer kernels' if st['ort_int8'] == 'host' else 'as float Q/DQ emulation'}; "
        "[fp32] / [fp16] mark a unit the column's precision policy keeps in another precision.",
        "",
    ]
    chains = report["chains"]
    head = ["unit", "calls/frame", "PyTorch fp32"] + [c["label"] for c in chains]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    for unit, u in report["units"].items():
        torch_cell = _ms(u.get("torch_frame_ms")) if u.get("torch_frame_ms") is not None else \
            f"failed: {str(u.get('error') or u.get('crashed') or '')[:60]}"
        cells = [unit, str(u["calls_per_frame"]), torch_cell]
        cells += [_cell(c["units"].get(unit, {}), c["precision"]) for c in chains]
        lines.append("| " + " | ".join(cells) + " |")
    total_torch = sum(u["torch_frame_ms"] for u in report["units"].values() if u.get("torch_frame_ms") is not None)
    frame = ["**frame**", "", f"**{_ms(total_torch)}**"]
    for c in chains:
        if c["complete"]:
            frame.append(f"**{_ms(c['frame_ms'])} ({c['ratio']:.2f}×)**")
        else:
            missing = [u for u, r in c["units"].items() if r.get("status") != "ok"]
            frame.append(f"incomplete ({len(missing)} unit{'s' if len(missing) > 1 else ''} missing)")
    lines.append("| " + " | ".join(frame) + " |")
    problems = []
    for unit, u in report["units"].items():
        if u.get("error") or u.get("crashed"):
            problems.append(f"- {unit} (torch): {u.get('error') or u.get('crashed')}")
        for a in u["artifacts"].values():
            if a.get("status") not in ("ok", "not runnable here"):
                problems.append(f"- {unit} {a['target']}/{a['precision']} ({a['set']}/{a['file']}): {a['status']}: "
                                f"{str(a.get('error'))[:300]}")
    for f in report.get("export_failures", []):
        problems.append(f"- {f.get('unit')} {f.get('target')}/{f.get('precision')} ({f.get('set')}): export failed: "
                        f"{str(f.get('error'))[:200]}")
    if problems:
        lines += ["", "Failures:", *problems]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------- CLI

def _csv(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python benchmarks/export_latency.py",
                                description="Latency of exported units per target and precision vs the float32 "
                                            "PyTorch unit, on this CPU (ratios from one run)")
    p.add_argument("sets", nargs="*", help="artifact set folders (manifest.json), or folders of such sets")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="threads of every runtime and of torch (default: all logical CPUs, %(default)s here)")
    p.add_argument("--repeat", type=int, default=10, help="timed rounds per unit (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="warm-up rounds per unit (default 2)")
    p.add_argument("--units", type=_csv, default=None, help="comma list of units (default: all of the pipeline)")
    p.add_argument("--targets", type=_csv, default=None, help="comma list of targets (default: all in the sets)")
    p.add_argument("--precisions", type=_csv, default=None, help="comma list of precisions (default: all)")
    p.add_argument("--ort-int8", choices=("host", "emulate"), default="host",
                   help="ONNX int8: ORT's integer kernels (host, default) or float Q/DQ emulation")
    p.add_argument("--runtime", choices=("cpu", "litert-gpu", "litert-gpu-f32"), default="cpu",
                   help="LiteRT artifacts of the pixel8 GPU units on the CPU (default) or LiteRT's GPU delegate "
                        "(fp16 / enforce_f32; here: lavapipe, a software Vulkan: not a phone's latency)")
    p.add_argument("--torch-layout", choices=("pipeline", "contiguous"), default="pipeline",
                   help="torch baseline: as the reference pipeline runs it (denoise/enhance channels-last) or the "
                        "unit module as built")
    p.add_argument("--weights", type=Path, default=None, help="weights folder (default: the manifest's)")
    p.add_argument("--json", type=Path, default=None, help="write the full report here (atomic)")
    p.add_argument("--markdown", type=Path, default=None, help="write the table here too")
    p.add_argument("--no-isolate", action="store_true", help="measure in this process (no child per unit)")
    p.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the artifact files")
    p.add_argument("--unit-timeout", type=float, default=None, help="seconds before a unit's child is killed")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--from-json", type=Path, default=None, help="print the table of a saved --json report (no run)")
    p.add_argument("--_worker", nargs=2, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args._worker:
        return _worker_main(*args._worker)
    if args.from_json:
        print(markdown(json.loads(args.from_json.read_text())))
        return EXIT_OK
    if not args.sets:
        build_parser().error("give at least one artifact set folder")
    if args.threads < 1 or args.repeat < 1 or args.warmup < 0:
        build_parser().error("--threads and --repeat must be >= 1, --warmup >= 0")
    try:
        report = benchmark(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    table = markdown(report)
    report["markdown"] = table
    print(table)
    if args.json:
        from isp.jsonio import write_json_atomic
        write_json_atomic(args.json, report)
        print(f"\nreport: {args.json}", file=sys.stderr)
    if args.markdown:
        from isp.atomic import write_bytes_atomic
        write_bytes_atomic(args.markdown, (table + "\n").encode())
    bad = [a for u in report["units"].values() for a in u["artifacts"].values()
           if a.get("status") not in ("ok", "not runnable here")]
    bad += [u for u in report["units"].values() if u.get("error") or u.get("crashed")]
    return EXIT_FAILED if bad else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
