"""Drift of an exported artifact set against the float32 PyTorch reference: per unit and end to end.

    python -m runtime_py.drift --artifacts DIR [--dng FILE ...] [--eval-set DIR] [--json OUT] [--html OUT]
                               [--budget ci|npu|none|FILE] [--fit crop|exact] [--targets onnx,tflite]
                               [--max-frames N] [--max-tiles N] [--ort-int8 emulate|host] [--threads N] [--quiet]
                               [--runtime cpu,litert-gpu,litert-gpu-f32] [--allow-cpu-fallback]
    python -m runtime_py.drift --explain denoise|enhance --calibration DIR [...]   (runtime_py.quant_debug)

What is measured (``docs/EXPORT_DESIGN.md``, "Execution"):

(a) **per unit**, every artifact of the set that runs here (ExecuTorch, LiteRT, ONNX Runtime), on the reference's
    own inputs. The reference is :class:`isp.pipeline.Pipeline` built like the set (style, denoiser, 3-D LUT,
    weights, tiles of the geometry) and run on each frame; its intermediates are the inputs and expected outputs.

    * ``frame`` scope: the unit over the whole frame, tiled as the artifact pipeline tiles it (feathered stitch for
      denoise/enhance, plain tiles for color/upsample_slice), against the reference's full-frame output. With an
      evaluation set the quarter-frame units read the set's stored per-stage inputs and outputs instead.
    * ``tiles`` scope (tiled units): each tile's output before stitching against the reference stage on that tile
      (the tile-local units), or the crop of the reference output (``upsample_slice``, whose result depends on the
      tile's place). With ``--eval-set`` the tiles are the set's stored tiles; otherwise up to ``--max-tiles``
      evenly spaced windows of the tile plan.
    * ``upsample_fit`` is judged by its effect: its grid sliced by the reference slicer against the reference
      ``srgb_upsampled`` (the row ``srgb_upsampled (sliced)``). The raw grid is reported too, unbudgeted: the
      float32 reference fit itself is only 40-75 dB from the exact solution (ill-conditioned cells; see
      :mod:`isp.stages.upsample`).
    * ``upsample_slice`` receives the reference's own grid (the reference-mode fit) cropped per tile.

(b) **end to end**: for every runnable target and every precision present, the artifact pipeline
    (:class:`runtime_py.pipeline.ArtifactPipeline`, a selection preferring that target and precision, falling back
    to fp32/other precisions — e.g. the int8 policy's float units — and to other targets for units the target
    lacks) against the reference on the same frame: the final ``srgb`` and, as a chain table, every intermediate.

(c) **on the GPU** (``--runtime litert-gpu`` fp16 as a phone runs it, ``litert-gpu-f32``): per unit and end to end,
    the ``pixel8`` GPU units on LiteRT's GPU delegate (:mod:`runtime_py.gpu` says how; budget class ``gpu-fp16``).

Metrics are :func:`runtime_py.metrics.compare`: PSNR, SSIM, ΔE2000 mean/p95/max for images (``srgb`` kind after
gamma, ``linear`` before), PSNR and max-abs (``data``) for parameters, the raw-domain ``denoised_raw`` and the grid.

ONNX int8 artifacts that the exporter flagged (x86 without VNNI: onnxruntime's integer kernels saturate) run as
float Q/DQ emulation unless ``--ort-int8 host`` (:meth:`runtime_py.artifacts.Artifact.load_options`); the report
records the runner options of every unit.

Core ML artifacts are listed as "not run on this OS" with their structural check (:mod:`runtime_py.runtimes`);
other artifacts that cannot run here (a Vulkan ``.pte``) likewise. Export failures of the manifest are listed.

Budgets (``--budget``; ``ci`` is the project's, ``npu`` the npu policy's (>= 40 dB, mean ΔE2000 <= 0.5), ``none``
checks nothing, or a JSON file of the same shape)::

    {"unit": {"fp32": {"psnr_min": 60}},
     "end_to_end": {"fp32": {"psnr_min": 60}, "fp16": {"psnr_min": 45},
                    "int8": {"psnr_min": 38, "de2000_mean_max": 1.0},
                    "gpu-fp16": {"psnr_min": 45, "de2000_mean_max": 0.5}}}

A unit budget applies to artifacts of that precision, on every budgeted output, both scopes, every frame (worst
case). An end-to-end budget applies by the chain's class: ``int8`` if any unit is int8 or w8, else ``fp16`` if any
is fp16, else ``fp32``. Limits: ``psnr_min``, ``ssim_min``, ``de2000_mean_max``, ``de2000_p95_max``,
``de2000_max_max``, ``max_abs_max``. An artifact or chain that does not run fails whatever its budget.

Outputs: the JSON report (``--json``; non-finite numbers, e.g. the PSNR of identical images, are written as
``null``) and a self-contained HTML page (``--html``): per unit reference | artifact | error heat map, end-to-end
images, tables coloured by budget. Exit status: 0 within budget, 1 when a budget is violated or something did not
run (each failure named on stderr: unit, target, precision, metric), 2 for bad arguments or input.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from runtime_py import gpu
from runtime_py import metrics as M
from isp.geometry import FrameGeometry
from isp.io.capture import read_capture_data
from isp.units import AUX_UNITS, UNITS, frame_inputs, window_of
from runtime_py.artifacts import (PRECISIONS, RUNNABLE_TARGETS, Artifact, ArtifactSet, Selection,
                                  UnitMissingError, NotRunnableError, add_ort_int8_arg, target_family)
from runtime_py.drift_budgets import (CI_BUDGETS, EXTRA_METRICS, LIMITS, METRICS, NPU_BUDGETS,  # noqa: F401
                                     check_budgets, kind_of, load_budgets)
from runtime_py.drift_report import html_sections, write_reports  # noqa: F401  (re-exported)
from runtime_py.drift_aux import AuxReference
from runtime_py.pipeline import ArtifactPipeline, read_frame, run_unit

__all__ = ["CI_BUDGETS", "NPU_BUDGETS", "LIMITS", "load_budgets", "kind_of", "EvalFrame", "Reference",
           "frames_from_dngs", "frames_from_eval_set", "check_eval_set", "evaluate_unit", "end_to_end_selections",
           "evaluate_end_to_end",
           "check_budgets", "run_drift", "DriftResult", "html_sections", "write_reports", "build_parser", "main"]

FORMAT = "isp-drift/1"


# ------------------------------------------------------------------------------------------------------ kinds

def _compare(pred: torch.Tensor, ref: torch.Tensor, name: str) -> dict[str, Any]:
    out = M.compare(pred, ref, kind_of(name))
    if name == "illum":                      # an AWB unit's estimate: also the illuminant angular error (degrees)
        from isp.parity_awb import angular_error_deg
        out["angle_deg"] = angular_error_deg(pred, ref)
    return out


def _budgeted(unit: str, name: str) -> bool:
    return not (unit == "upsample_fit" and name == "bgu_grid")


# ------------------------------------------------------------------------------------------------------ frames

@dataclass
class EvalFrame:
    """One frame at the export geometry and where it came from."""
    name: str
    raw: torch.Tensor                   # (1, 3, H, W)
    illum: torch.Tensor                 # (1, 3)
    ccm: torch.Tensor                   # (1, 3, 3)
    source: dict[str, Any] = field(default_factory=dict)
    stored_srgb: torch.Tensor | None = None     # the evaluation set's reference output
    index: int | None = None            # row in the evaluation set


def frames_from_dngs(files: Sequence[str | Path], geometry: FrameGeometry, fit: str = "crop") -> list[EvalFrame]:
    """Decode DNGs at the export geometry (:func:`runtime_py.pipeline.read_frame`)."""
    frames = []
    for f in files:
        raw, illum, ccm, img = read_frame(f, geometry, fit)
        cap = read_capture_data(img.metadata)                # for the S24 AWB unit (runtime_py.drift_aux)
        frames.append(EvalFrame(name=Path(f).name, raw=raw, illum=illum, ccm=ccm,
                                source={"kind": "dng", "file": str(f), "crop": list(img.crop) if img.crop else None,
                                        "full_size": list(img.full_size), "iso": cap.iso,
                                        "exposure_time": cap.exposure_time}))
    return frames


def frames_from_eval_set(cs: Any, limit: int | None = None) -> list[EvalFrame]:
    """The frames of a :mod:`calibration` evaluation set (``load_set``)."""
    frames = []
    samples = cs.samples
    for i, fr in enumerate(cs.frames()):
        if limit is not None and i >= limit:
            break
        src = samples[i].get("source") if i < len(samples) else None
        label = src if isinstance(src, str) else (src or {}).get("file") if isinstance(src, dict) else None
        frames.append(EvalFrame(name=f"{Path(cs.root).name}#{i}" + (f" ({label})" if label else ""),
                                raw=fr.raw.float(), illum=fr.illum.float(), ccm=fr.ccm.float(),
                                source={"kind": "eval-set", "set": str(cs.root), "index": i},
                                stored_srgb=fr.srgb.float(), index=i))
    return frames


def check_eval_set(cs: Any, aset: ArtifactSet) -> None:
    g, a = cs.geometry, aset.geometry
    if (g.width, g.height, tuple(g.tile_shape), g.overlap) != (a.width, a.height, a.tile_shape, a.overlap):
        raise ValueError(f"evaluation set {cs.root} is for {g}, the artifacts for {a.describe()}; build one with "
                         f"python -m calibration build --size {a.width}x{a.height} --tile {a.tile} --overlap "
                         f"{a.overlap} --style {aset.style}")
    p = cs.manifest.get("pipeline", {})
    for key, want in (("style", aset.style), ("denoiser", aset.denoiser), ("lut", aset.lut)):
        if key in p and p[key] != want:
            raise ValueError(f"evaluation set {cs.root} was captured with {key} {p[key]!r}, the artifacts are "
                             f"{key} {want!r}; build a set with the artifacts' settings")


# ------------------------------------------------------------------------------------------------------ reference

class Reference:
    """The float32 PyTorch reference of an artifact set: :class:`isp.pipeline.Pipeline` built like the set,
    per-frame intermediates (cached) and per-tile stage outputs (cached)."""

    def __init__(self, aset: ArtifactSet, weights: str | Path | None = None) -> None:
        from isp import paths
        from isp.pipeline import Pipeline

        w = weights or aset.weights
        if w is None or not Path(w).is_dir():
            w = paths.weights_root()
        self.aset = aset
        self.geometry = aset.geometry
        self.pipeline = Pipeline(w, style=aset.style, denoiser=aset.denoiser,
                                 use_lut=aset.lut if aset.style else None, tile=aset.geometry.tile,
                                 overlap=aset.geometry.overlap)
        self._frames: dict[str, dict[str, torch.Tensor]] = {}
        self._tiles: dict[tuple, tuple[torch.Tensor, ...]] = {}
        self._grids: dict[Any, torch.Tensor] = {}
        self.aux = AuxReference(w)

    @torch.inference_mode()
    def intermediates(self, frame: EvalFrame) -> dict[str, torch.Tensor]:
        """Every intermediate of the reference on ``frame`` (golden names), plus ``bgu_grid`` (reference fit)."""
        if frame.name not in self._frames:
            out = dict(self.pipeline.run(frame.raw, frame.illum, frame.ccm))
            out["bgu_grid"] = self.pipeline.upsample.fit(out["lsrgb_ds"], out["gamma_out"])
            self._frames[frame.name] = out
        return self._frames[frame.name]

    def adopt(self, frame: EvalFrame, intermediates: Mapping[str, torch.Tensor]) -> None:
        """Use ``intermediates`` (a render of ``frame`` by this reference, e.g. from a cache) instead of rendering
        the frame again."""
        self._frames[frame.name] = dict(intermediates)

    def grid(self, key: Any, lsrgb_ds: torch.Tensor, gamma_out: torch.Tensor) -> torch.Tensor:
        if key not in self._grids:
            with torch.inference_mode():
                self._grids[key] = self.pipeline.upsample.fit(lsrgb_ds, gamma_out)
        return self._grids[key]

    def unit_io(self, unit: str, ref: Mapping[str, torch.Tensor], frame: EvalFrame
                ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """A unit's frame-level inputs and expected outputs from the reference intermediates (the auxiliary units:
        :mod:`runtime_py.drift_aux`)."""
        if unit in AUX_UNITS:
            return self.aux.io(unit, ref, frame)
        ins = frame_inputs(unit, {**ref, "illum": frame.illum, "ccm": frame.ccm})
        return ins, tuple(ref[n] for n in UNITS[unit].outputs)

    @torch.inference_mode()
    def tile_output(self, unit: str, frame: EvalFrame, origin: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        """The reference output of ``unit`` on the tile at ``origin`` (tile-local units: the stage on the tile;
        ``upsample_slice``: the crop of the full-frame output)."""
        key = (frame.name, unit, origin)
        if key not in self._tiles:
            ref = self.intermediates(frame)
            (y0, x0), (th, tw) = origin, self.geometry.tile_shape
            crop = lambda t: t[..., y0:y0 + th, x0:x0 + tw]         # noqa: E731
            p = self.pipeline
            if unit == "denoise":
                out = _channels_last(p.denoise, crop(ref["raw"]))
            elif unit == "enhance":
                out = _channels_last(p.enhance, crop(ref["srgb_upsampled"]))
            elif unit == "color":
                out = p.color(crop(ref["denoised_raw"]), frame.illum, frame.ccm)
            elif unit == "upsample_slice":
                out = crop(ref["srgb_upsampled"])
            else:
                raise ValueError(f"{unit} is not a tiled unit")
            self._tiles[key] = (out,)
        return self._tiles[key]


def _channels_last(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return module(x.contiguous(memory_format=torch.channels_last)).contiguous()


# ------------------------------------------------------------------------------------------------- per unit

def _even_pick(n: int, k: int | None) -> list[int]:
    if k is None or k <= 0 or k >= n:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)}) if k > 1 else [0]


def _runner_call(runner: Any, stats: dict[str, float]) -> Callable[[list[torch.Tensor]], list[torch.Tensor]]:
    def call(arrays: list[torch.Tensor]) -> list[torch.Tensor]:
        t0 = time.perf_counter()
        outs = runner.run([a.detach().float().contiguous().numpy() for a in arrays])
        stats["infer_seconds"] += time.perf_counter() - t0
        stats["calls"] += 1
        return [torch.from_numpy(np.ascontiguousarray(o, dtype=np.float32)) for o in outs]
    return call


def _row(frame: str, scope: str, output: str, metrics: Mapping[str, Any], budgeted: bool,
         tile: tuple[int, int] | None = None) -> dict[str, Any]:
    return {"frame": frame, "scope": scope, "tile": list(tile) if tile is not None else None, "output": output,
            "budgeted": budgeted, **{k: metrics.get(k) for k in ("kind", *METRICS, "de_space")},
            **{k: metrics[k] for k in EXTRA_METRICS if k in metrics}}


@dataclass
class _UnitImage:
    """A unit's image output on the first frame, for the page."""
    unit: str
    label: str
    reference: torch.Tensor
    artifact: torch.Tensor
    name: str


def evaluate_unit(artifact: Artifact, frames: Sequence[EvalFrame], reference: Reference, *,
                  eval_set: Any = None, max_tiles: int | None = 16, images: list | None = None,
                  ort_int8: str = "emulate", runtime: str = "cpu", allow_cpu_fallback: bool = False
                  ) -> dict[str, Any]:
    """Drift of one artifact on the reference's inputs (see the module docstring). Returns the JSON record;
    appends a :class:`_UnitImage` for the page to ``images`` (first frame, first image output). ``runtime``: a
    GPU runtime of :mod:`runtime_py.gpu` runs the ``.tflite`` on LiteRT's GPU delegate (the record then has its
    budget class and what the delegate took)."""
    from isp.stages.upsample import bgu_slice_reference

    rec: dict[str, Any] = {**artifact.summary(), "status": "ok", "error": None, "rows": [], "seconds": {},
                           "runner_options": artifact.load_options(ort_int8), "runtime": runtime}
    label = artifact.label if runtime == "cpu" else f"{artifact.label} on {runtime}"
    unit = artifact.unit
    geo = reference.geometry
    stats = {"infer_seconds": 0.0, "calls": 0}
    t0 = time.perf_counter()
    try:
        runner = (artifact.load(ort_int8) if runtime == "cpu"
                  else gpu.load_artifact(artifact, runtime, allow_cpu_fallback, record=rec))
    except Exception as exc:  # noqa: BLE001 — reported as "did not run", named
        rec.update(status="error", error=f"could not load: {type(exc).__name__}: {exc}", summary=[])
        return rec
    rec["seconds"]["load"] = round(time.perf_counter() - t0, 4)
    call = _runner_call(runner, stats)
    spec = UNITS[unit]
    window = window_of(unit, artifact.input_shapes)
    names = list(spec.outputs)
    tiled = spec.tiled
    # quarter-frame units that are a whole stage read the set's stored rows of that stage
    quarter_from_set = eval_set is not None and spec.tiling == "quarter" and spec.stage == unit
    t_run = time.perf_counter()
    try:
        for fi, frame in enumerate(frames):
            ref = reference.intermediates(frame)
            ins, expected = reference.unit_io(unit, ref, frame)
            if quarter_from_set and frame.index is not None:
                ins = tuple(t.float() for t in eval_set.stage_inputs(unit)[frame.index])
                expected = tuple(t.float() for t in eval_set.stage_outputs(unit)[frame.index])
            with torch.inference_mode():
                outs, info = run_unit(call, unit, geo, *ins, window=window,
                                      keep_tiles=tiled and (eval_set is None or frame.index is None))
            for name, o, r in zip(names, outs, expected):
                rec["rows"].append(_row(frame.name, "frame", name, _compare(o, r, name), _budgeted(unit, name)))
            if unit == "upsample_fit":
                sliced = bgu_slice_reference(outs[0], ref["lsrgb"])
                rec["rows"].append(_row(frame.name, "frame", "srgb_upsampled (sliced)",
                                        _compare(sliced, ref["srgb_upsampled"], "srgb_upsampled (sliced)"), True))
                if images is not None and fi == 0:
                    images.append(_UnitImage(unit, label, ref["srgb_upsampled"], sliced,
                                             "srgb_upsampled (sliced)"))
            elif images is not None and fi == 0:
                k = next((i for i, n in enumerate(names) if kind_of(n) != "data" or n == "denoised_raw"), None)
                if k is not None:
                    images.append(_UnitImage(unit, label, expected[k], outs[k], names[k]))
            if tiled:
                for origin, tile_outs, tile_refs in _tile_cases(unit, frame, info, reference, eval_set, call,
                                                                geo, window, max_tiles):
                    for name, o, r in zip(names, tile_outs, tile_refs):
                        rec["rows"].append(_row(frame.name, "tiles", name, _compare(o, r, name),
                                                _budgeted(unit, name), origin))
    except Exception as exc:  # noqa: BLE001 — a unit that does not run is reported and fails the budget
        rec.update(status="error", error=f"did not run: {type(exc).__name__}: {exc}")
    rec["seconds"].update(run=round(time.perf_counter() - t_run, 4), infer=round(stats["infer_seconds"], 4),
                          calls=stats["calls"])
    rec["summary"] = _summarize(rec["rows"])
    return rec


def _tile_cases(unit: str, frame: EvalFrame, info: Mapping[str, Any], reference: Reference, eval_set: Any,
                call: Callable, geo: FrameGeometry, window: tuple[int, int] | None, max_tiles: int | None
                ) -> Iterable[tuple[tuple[int, int], tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]]:
    """``(origin, artifact outputs, reference outputs)`` per tile: the stored tiles of the evaluation set, or the
    tiles of the frame run (evenly spaced, at most ``max_tiles``)."""
    if eval_set is None or frame.index is None:
        tiles = list(info.get("tiles", []))
        for i in _even_pick(len(tiles), max_tiles):
            origin, outs = tiles[i]
            yield origin, outs, reference.tile_output(unit, frame, origin)
        return
    from convert.units import slice_operands

    spec = UNITS[unit]
    stage = spec.stage
    rows_in, rows_out = eval_set.stage_inputs(stage), eval_set.stage_outputs(stage)
    origins = eval_set.tile_origins(stage)
    picked = [i for i, (f, _y, _x) in enumerate(origins) if f == frame.index]
    for i in [picked[j] for j in _even_pick(len(picked), max_tiles)]:
        _f, y0, x0 = origins[i]
        ins = tuple(t.float() for t in rows_in[i])
        if spec.windowed:
            grid = reference.grid(("eval", frame.index), ins[1], ins[2])
            ins = (ins[0], *slice_operands(grid, (y0, x0), geo.tile_shape, geo.size, *window))
        with torch.inference_mode():
            outs = tuple(call(list(ins)))
        yield (y0, x0), outs, tuple(t.float() for t in rows_out[i])


def _worst(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in METRICS + tuple(m for m in EXTRA_METRICS if any(m in r for r in rows)):
        vals = [float(r[k]) for r in rows if r.get(k) is not None]
        if not vals:
            out[k] = None
            continue
        higher_is_better = k in ("psnr", "ssim")
        out[k] = min(vals) if higher_is_better else max(vals)
    out["kind"] = rows[0].get("kind") if rows else None
    return out


def _summarize(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Worst case per (output, scope) over frames and tiles; ``where`` names the frame/tile of the worst PSNR."""
    groups: dict[tuple[str, str], list] = {}
    for r in rows:
        groups.setdefault((r["output"], r["scope"]), []).append(r)
    out = []
    for (name, scope), rs in groups.items():
        worst = _worst(rs)
        finite = [r for r in rs if r.get("psnr") is not None]
        w = min(finite, key=lambda r: r["psnr"]) if finite else rs[0]
        where = w["frame"] + (f" tile {tuple(w['tile'])}" if w.get("tile") else "")
        out.append({"output": name, "scope": scope, "n": len(rs), "budgeted": rs[0]["budgeted"], **worst,
                    "where": where})
    return out


# ------------------------------------------------------------------------------------------------ end to end

def end_to_end_selections(aset: ArtifactSet, targets: Sequence[str] | None = None, ort_int8: str = "emulate"
                          ) -> list[tuple[str, Selection | Exception]]:
    """One selection per runnable target and precision present (deduplicated): ``[(name, Selection or the
    error that prevented it)]``. See the module docstring for the preference order."""
    runnable = [t for t in aset.targets if t in RUNNABLE_TARGETS and (targets is None or t in targets)]
    out: list[tuple[str, Selection | Exception]] = []
    seen = set()
    for t in runnable:
        present = [p for p in PRECISIONS if any(a.target == t and a.precision == p and a.unit in
                                                aset.required_units for a in aset.artifacts)]
        prefer = [t] + [x for x in RUNNABLE_TARGETS if x != t and x in aset.targets]
        # first the manifest's policy as exported (each unit at the precision the policy gave it), then one chain
        # per precision present (that precision wherever it exists, float elsewhere)
        for p in [None, *present]:
            order = None if p is None else [p] + [x for x in ("fp32", "fp16", "w8", "int8") if x != p]
            name = f"{t} {p or 'policy'}"
            try:
                sel = aset.select(prefer=prefer, precision_prefer=order, verify=True, ort_int8=ort_int8)
            except (UnitMissingError, NotRunnableError, ValueError, FileNotFoundError) as exc:
                if p is not None:
                    out.append((name, exc))
                continue
            key = json.dumps(sel.as_dict(), sort_keys=True)
            if key in seen or (p is not None and p not in sel.precisions):
                continue
            seen.add(key)
            out.append((sel.label, sel))
    return out


def evaluate_end_to_end(name: str, selection: Selection | Exception, frames: Sequence[EvalFrame],
                        reference: Reference, images: list | None = None) -> dict[str, Any]:
    """The artifact pipeline of ``selection`` against the reference on every frame."""
    if isinstance(selection, Exception):
        return {"name": name, "status": "error", "error": f"{type(selection).__name__}: {selection}",
                "class": None, "selection": None, "frames": []}
    rec: dict[str, Any] = {"name": name, "status": "ok", "error": None, "class": selection.precision_class,
                           "selection": selection.as_dict(), "frames": []}
    try:
        pipe = ArtifactPipeline(selection)
        for fi, frame in enumerate(frames):
            ref = reference.intermediates(frame)
            t0 = time.perf_counter()
            out = pipe.run(frame.raw, frame.illum, frame.ccm)
            seconds = time.perf_counter() - t0
            # every golden intermediate both produce (the BGU grid is left out: coefficients of ill-conditioned
            # cells, not an image; its effect is srgb_upsampled)
            chain = {n: _compare(out[n], ref[n], n) for n in ref if n in out and n not in ("raw", "bgu_grid")}
            rec["frames"].append({"frame": frame.name, "srgb": chain["srgb"], "chain": chain,
                                  "seconds": round(seconds, 4),
                                  "timings": {u: {k: (int(v) if k == "calls" else round(float(v), 4))
                                                  for k, v in t.items()} for u, t in pipe.timings.items()}})
            if images is not None and fi == 0:
                images.append((name, ref["srgb"], out["srgb"], frame.name))
        if hasattr(selection, "coverage"):                  # a GPU chain: what the delegate took, per unit
            rec["gpu_coverage"] = selection.coverage()
    except Exception as exc:  # noqa: BLE001 — named as a failure
        rec.update(status="error", error=f"did not run: {type(exc).__name__}: {exc}")
    if rec["frames"]:
        rec["summary"] = _worst([f["srgb"] for f in rec["frames"]])
    return rec


# ------------------------------------------------------------------------------------------------ the run

@dataclass
class DriftResult:
    report: dict[str, Any]
    unit_images: list = field(default_factory=list)     # _UnitImage of the first frame, per artifact
    e2e_images: list = field(default_factory=list)      # (config, reference srgb, artifact srgb, frame)

    @property
    def violations(self) -> list[str]:
        return list(self.report.get("violations", []))

    @property
    def passed(self) -> bool:
        return bool(self.report.get("passed", True))


def _coreml_record(a: Artifact) -> dict[str, Any]:
    rec = {**a.summary(), "status": "not run on this OS", "reason": a.not_runnable_reason}
    if a.family != "coreml":
        return rec
    try:
        a.check_file(verify=True)
        check = a.load()
        s = check.summary()
        rec["structural"] = {"model_type": s["model_type"], "spec_version": s["spec_version"],
                             "compute_precision": s["compute_precision"], "compute_units": s["compute_units"],
                             "inputs": s["inputs"], "outputs": s["outputs"], "op_count": sum(s["op_types"].values()),
                             "op_types": s["op_types"], "tensor_dtypes": s["tensor_dtypes"]}
    except Exception as exc:  # noqa: BLE001 — the structural check is informative only
        rec["structural_error"] = f"{type(exc).__name__}: {exc}"
    return rec


def run_drift(artifacts: str | Path, *, dngs: Sequence[str | Path] | None = None,
              eval_set: str | Path | None = None, fit: str = "crop", budgets: Mapping[str, Any] | None = None,
              targets: Sequence[str] | None = None, max_frames: int | None = None, max_tiles: int | None = 16,
              weights: str | Path | None = None, ort_int8: str = "emulate", progress: bool = False,
              say: Callable[[str], None] | None = None, runtimes: Sequence[str] = ("cpu",),
              allow_cpu_fallback: bool = False, per_unit: bool = True) -> DriftResult:
    """Measure a set (see the module docstring). Frames: ``dngs`` (cropped/checked with ``fit``) and/or
    ``eval_set``; with neither, the evaluation set recorded in the manifest's calibration, else ``ValueError``.
    ``runtimes``: ``cpu`` (every artifact on its host runner) and/or the GPU runtimes of :mod:`runtime_py.gpu`
    (:func:`runtime_py.gpu.drift_jobs`, :func:`runtime_py.gpu.end_to_end_selections`); ``allow_cpu_fallback`` lets
    the delegate leave ops to the CPU (reported) instead of failing. ``per_unit=False``: end-to-end chains only."""
    from isp.units import normalize_target

    t_start = time.perf_counter()
    say = say or (lambda _s: None)
    gpu_runtimes, gpu_info = gpu.plan_runtimes(runtimes)
    aset = ArtifactSet.open(artifacts)
    targets = [normalize_target(t) for t in targets] if targets else None
    cs = None
    if eval_set is None and not dngs:
        recorded = (aset.manifest.get("calibration") or {}).get("eval")
        if recorded and Path(recorded).is_dir():
            eval_set = recorded
        else:
            raise ValueError("no frames: pass --dng FILE ... (cropped to the export geometry) or --eval-set DIR "
                             "(python -m calibration build ... at the export geometry)")
    frames: list[EvalFrame] = []
    if eval_set is not None:
        from calibration import load_set
        cs = load_set(eval_set)
        check_eval_set(cs, aset)
        frames += frames_from_eval_set(cs, max_frames)
    if dngs:
        frames += frames_from_dngs(dngs, aset.geometry, fit)
    if max_frames is not None:
        frames = frames[:max_frames]
    if not frames:
        raise ValueError("no frames to evaluate (the evaluation set is empty)")
    reference = Reference(aset, weights)

    result = DriftResult(report={})
    units, not_run = [], []
    runnable = [a for a in aset.artifacts if a.unit in aset.required_units or a.unit in AUX_UNITS]
    evaluated = [a for a in runnable if a.runnable_here and (targets is None or target_family(a.target) in targets
                                                              or a.target in targets)]
    jobs = gpu.drift_jobs(aset, evaluated, runtimes) if per_unit else []     # [(artifact, runtime)]
    for a in runnable:
        if not a.runnable_here:
            not_run.append(_coreml_record(a))
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(jobs) + len(frames), desc="drift", unit="step", dynamic_ncols=True, leave=False)
    try:
        for frame in frames:
            if bar is not None:
                bar.set_postfix_str(f"reference {frame.name}")
            say(f"reference: {frame.name}")
            reference.intermediates(frame)
            if bar is not None:
                bar.update(1)
        for a, rt in jobs:
            if bar is not None:
                bar.set_postfix_str(a.label)
            say(f"unit: {a.label}" + (f" on {rt}" if rt != "cpu" else ""))
            try:
                a.check_file(verify=True)
            except (FileNotFoundError, ValueError) as exc:
                units.append({**a.summary(), "status": "error", "error": str(exc), "rows": [], "summary": []})
                continue
            units.append(evaluate_unit(a, frames, reference, eval_set=cs, max_tiles=max_tiles,
                                       images=result.unit_images, ort_int8=ort_int8, runtime=rt,
                                       allow_cpu_fallback=allow_cpu_fallback))
            if bar is not None:
                bar.update(1)
        e2e = []
        chains = end_to_end_selections(aset, targets, ort_int8) if "cpu" in runtimes else []
        for r in gpu_runtimes:
            chains += gpu.end_to_end_selections(aset, r, allow_cpu_fallback)
        for name, sel in chains:
            if bar is not None:
                bar.set_postfix_str(f"end to end {name}")
            say(f"end to end: {name}")
            e2e.append(evaluate_end_to_end(name, sel, frames, reference, images=result.e2e_images))
    finally:
        if bar is not None:
            bar.close()

    reproducibility = []
    for f in frames:
        if f.stored_srgb is not None:
            c = M.compare(reference.intermediates(f)["srgb"], f.stored_srgb, "srgb")
            reproducibility.append({"frame": f.name, "psnr": c["psnr"], "de2000_mean": c["de2000_mean"]})
    report: dict[str, Any] = {
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "artifacts": str(aset.root),
        "set": {"geometry": aset.geometry.to_manifest(),
                "style": aset.style, "lut": aset.lut, "denoiser": aset.denoiser, "targets": aset.targets,
                "artifacts": len(aset.artifacts), "policy": aset.manifest.get("policy")},
        "frames": [{"name": f.name, **f.source} for f in frames],
        "reference": {"pipeline": f"isp.pipeline.Pipeline(style={aset.style}, denoiser={aset.denoiser}, "
                                  f"tile={aset.geometry.tile}, overlap={aset.geometry.overlap})",
                      "eval_set_reproducibility": reproducibility},
        "budget": budgets,
        "ort_int8": ort_int8,
        "runtimes": list(runtimes),
        "gpu": gpu_info,
        "units": units,
        "end_to_end": e2e,
        "not_run": not_run,
        "export_failures": aset.failures,
        "versions": _versions(),
    }
    report["violations"] = check_budgets(report, budgets)
    report["passed"] = not report["violations"]
    report["seconds"] = round(time.perf_counter() - t_start, 3)
    result.report = report
    return result


def _versions() -> dict[str, str]:
    """Python, platform and the runtime distributions (from package metadata: importing coremltools or LiteRT
    just to read a version would load TensorFlow)."""
    from isp.versions import tool_versions

    return tool_versions(("numpy", "torch", "onnxruntime", "executorch", "ai-edge-litert", "coremltools"),
                         system=True)


# ------------------------------------------------------------------------------------------------------- CLI

def _csv(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runtime_py.drift",
                                description="Drift of an exported artifact set against the PyTorch reference: per "
                                            "unit on the reference's inputs, and end to end from the raw frame")
    p.add_argument("--artifacts", type=Path, required=True, help="folder with manifest.json (convert/export.py)")
    p.add_argument("--dng", type=Path, nargs="+", default=None, metavar="FILE",
                   help="DNG frames (cropped to the export geometry, see --fit)")
    p.add_argument("--eval-set", type=Path, default=None, metavar="DIR",
                   help="evaluation set at the export geometry (python -m calibration build; DIR/eval)")
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help="write the JSON report here")
    p.add_argument("--html", type=Path, default=None, metavar="OUT", help="write the HTML page here")
    p.add_argument("--budget", default="none", metavar="ci|npu|none|FILE",
                   help="budgets to enforce (exit 1 when violated): ci (the project's), npu (the npu policy's: "
                        ">= 40 dB, mean ΔE00 <= 0.5 end to end), none (default), or JSON")
    p.add_argument("--fit", choices=("crop", "exact"), default="crop",
                   help="DNGs larger than the geometry: centre-crop (default) or refuse (exact)")
    p.add_argument("--targets", type=_csv, default=None, metavar="T,T",
                   help="evaluate only these targets (executorch, tflite/litert, onnx); default all runnable")
    p.add_argument("--max-frames", type=int, default=None, help="at most this many frames")
    p.add_argument("--max-tiles", type=int, default=16,
                   help="per frame and tiled unit, at most this many tiles in the per-tile comparison (0 = all)")
    p.add_argument("--weights", type=Path, default=None, help="reference weights (default: the manifest's)")
    add_ort_int8_arg(p)
    gpu.add_runtime_args(p, several=True)
    p.add_argument("--end-to-end-only", action="store_true", help="skip the per-unit measurements")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a == "--explain" or a.startswith("--explain=") for a in argv):    # the quantization debugger
        from runtime_py import quant_debug
        return quant_debug.main(argv)
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        budgets = load_budgets(args.budget)
        if args.eval_set is not None and (args.eval_set / "eval" / "set.json").is_file() and \
                not (args.eval_set / "set.json").is_file():
            args.eval_set = args.eval_set / "eval"
        result = run_drift(args.artifacts, dngs=args.dng, eval_set=args.eval_set, fit=args.fit, budgets=budgets,
                           targets=args.targets, max_frames=args.max_frames, max_tiles=args.max_tiles or None,
                           weights=args.weights, ort_int8=args.ort_int8, runtimes=args.runtime,
                           allow_cpu_fallback=args.allow_cpu_fallback, per_unit=not args.end_to_end_only,
                           progress=not args.quiet and sys.stderr.isatty(),
                           say=None if args.quiet else (lambda s: print(f"drift: {s}", file=sys.stderr)))
    except (ValueError, FileNotFoundError, NotRunnableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_reports(result, args.json, args.html)
    rep = result.report
    for e in rep["end_to_end"]:
        if e["status"] == "ok":
            s = e["summary"]
            print(f"end to end {e['name']:<40} psnr {s['psnr']:.2f} dB  ssim {s['ssim']:.5f}  ΔE00 mean "
                  f"{s['de2000_mean']:.3f} p95 {s['de2000_p95']:.3f} max {s['de2000_max']:.3f}")
        else:
            print(f"end to end {e['name']:<40} {e['error']}")
    for r in rep["not_run"]:
        print(f"not run    {r['unit']} {r['target']}/{r['precision']}: {r['status']}")
    for path in (args.json, args.html):
        if path is not None:
            print(f"wrote {path}")
    if rep["violations"]:
        print(f"drift: {len(rep['violations'])} budget violation(s) ({rep['budget']['name']}):", file=sys.stderr)
        for v in rep["violations"]:
            print(f"  {v}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
