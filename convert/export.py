"""Export the ISP's units to one phone runtime: ``python convert/export.py`` or ``python -m convert.export``.

    python convert/export.py --target coreml|tflite|executorch|onnx [--stages all|denoise,gain,...]
        [--precision fp32|fp16|int8|w8 | --policy NAME|FILE.json] [--denoiser lite|base|large]
        [--denoiser-camera s24|generic] [--style N] [--size 12mp|8mp|1080p|WxH] [--tile N] [--overlap 32]
        [--calibration DIR] [--backend xnnpack,vulkan,coreml] [--compute-units all|cpu_and_ne|cpu_and_gpu]
        [--out DIR] [--weights DIR]

One generic recipe per unit (``docs/EXPORT_DESIGN.md``; the per-target differences are rows of
:mod:`convert.recipes`):

    plan (policy x recipe table) -> build the unit (convert.units) -> [calibration tuples] -> convert.targets.<t>
    .export() into a staging folder -> verify (runtime_py.runtimes) -> move into --out -> manifest.json (merged)

* ``--stages`` takes stage ids (``upsample`` = ``downsample,upsample_fit,upsample_slice``) or unit ids.
* int8 needs calibration: ``--calibration DIR`` (a set, or a ``python -m calibration build`` output with
  ``calib/`` and ``eval/``) or, without it, a small set is built from the shipped DNGs at the requested geometry
  into ``OUT/calibration`` (reused by later runs with the same geometry and style).
* Verification: each artifact that runs on this host is run through :func:`runtime_py.runtimes.load` (with the
  recipe's ``verify_options``, e.g. ONNX int8 as float Q/DQ emulation) and compared with the float32 torch unit, on
  a held-out evaluation row when a calibration set is loaded, else on synthetic inputs; ``verify`` in the manifest
  entry says which. An artifact that should run here but does not is a failed export.
* Every artifact is written into a staging folder and moved into ``--out`` only when its export, sidecar and
  verification are complete: a failed export leaves nothing behind (and an earlier artifact of that key intact).
* Exit status: 0 if every unit exported, 1 if any failed (the failing units and targets are named on stderr and
  recorded in ``failures`` of the manifest), 2 for bad arguments or input.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import traceback
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

if __package__ in (None, ""):                     # run as a script: the repository root, not convert/, on the path
    _ROOT = str(Path(__file__).resolve().parent.parent)
    sys.path[:] = [_ROOT] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from isp.hashing import sha256_file, sha256_path  # noqa: E402 (stdlib only; after the path fix above)
from isp.registry import DENOISER_CAMERAS, DENOISER_SIZES  # noqa: E402
from isp.units import COMPUTE_UNITS as _COREML_COMPUTE_UNITS  # noqa: E402

__all__ = ["build_parser", "main", "ExportOptions", "UnitOutcome", "run_export", "summary_table"]

TARGET_CHOICES = ("coreml", "tflite", "litert", "executorch", "onnx")
COMPUTE_UNITS = tuple(_COREML_COMPUTE_UNITS)
EXECUTORCH_BACKENDS = ("xnnpack", "vulkan", "coreml")
#: fp32 artifacts that differ from the torch unit by more than this get a warning
FP32_TOLERANCE = 1e-3


@dataclass
class ExportOptions:
    """Everything one export run needs (what the CLI parses)."""
    target: str
    out: Path
    stages: str = "all"
    precision: str | None = None
    policy: str | None = None
    denoiser: str = "lite"
    denoiser_camera: str = "s24"
    style: int = 0
    size: str = "12mp"
    tile: int | None = None           # None: isp.geometry.auto_tile (528 at 12 MP)
    overlap: int = 32
    calibration: Path | None = None
    calibration_frames: int = 8
    calibration_samples: int = 32
    backends: tuple[str, ...] | None = None
    compute_units: str | None = None
    weights: Path | None = None
    verify: bool = True
    progress: bool = True
    threads: int | None = None


@dataclass
class UnitOutcome:
    """One unit's result in this run (one row of the summary; secondary ExecuTorch backends add rows)."""
    unit: str
    target: str
    precision: str
    status: str                                   # "ok" | "failed" | "skipped"
    file: str | None = None
    bytes: int | None = None
    delegated: int | None = None
    total: int | None = None
    max_abs_err: float | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    entry: dict[str, Any] | None = None


# ------------------------------------------------------------------------------------------------- calibration

def _open_sets(root: Path) -> tuple[Any, Any | None]:
    """``(calib, eval or None)`` from a set folder or a build output holding ``calib/`` (and ``eval/``)."""
    from calibration import load_set
    root = Path(root)
    if (root / "set.json").is_file():
        return load_set(root), None
    if (root / "calib" / "set.json").is_file():
        ev = load_set(root / "eval") if (root / "eval" / "set.json").is_file() else None
        return load_set(root / "calib"), ev
    raise ValueError(f"--calibration {root}: no calibration set here (expected set.json, or calib/ from "
                     f"python -m calibration build)")


def _check_set(cs: Any, geometry: Any, style: int) -> None:
    g = cs.geometry
    if (g.width, g.height, g.tile_shape) != (geometry.width, geometry.height, geometry.tile_shape):
        raise ValueError(f"calibration set {cs.root} is for {g}, this export for {geometry}; build one with "
                         f"python -m calibration build --size {geometry.width}x{geometry.height} --tile "
                         f"{geometry.tile} --overlap {geometry.overlap} --style {style}")
    set_style = cs.manifest.get("pipeline", {}).get("style")
    if set_style is not None and int(set_style) != style:
        raise ValueError(f"calibration set {cs.root} was captured with style {set_style}, this export is style "
                         f"{style}; the photofinishing inputs depend on the style — build a set with --style {style}")


#: tile windows per axis (at most) of the automatic calibration capture when every int8 unit is tile-local
CAPTURE_WINDOWS = (4, 3)


def capture_geometry(geometry: Any, int8_units: Sequence[str]) -> Any:
    """The geometry of the automatic calibration set: ``geometry`` itself, or, when every int8 unit is tile-local,
    a frame of at most :data:`CAPTURE_WINDOWS` tile windows with the same tile and overlap (1952x1472 for 12 MP at
    512/32: a quarter of the pixels, so a quarter of the reference renders' time) where that halves the pixels. The shipped DNGs are 1024 px and
    smaller, so a 12 MP frame is their mirror tiling: its tiles have the capture's local statistics either way."""
    from convert.units import tile_local
    if not int8_units or not all(tile_local(u) for u in int8_units):
        return geometry
    step = geometry.tile - geometry.overlap
    w, h = (min(full, (geometry.tile + (n - 1) * step) // 4 * 4)
            for full, n in ((geometry.width, CAPTURE_WINDOWS[0]), (geometry.height, CAPTURE_WINDOWS[1])))
    if 2 * w * h > geometry.width * geometry.height:          # not worth a second geometry (CI's 512x320)
        return geometry
    return type(geometry)(w, h, geometry.tile, geometry.overlap)


def prepare_calibration(opts: ExportOptions, geometry: Any, denoiser: str, int8_units: Sequence[str] = ()
                        ) -> tuple[Any, Any | None, Path]:
    """Load ``--calibration`` or build (or reuse) a small set in ``OUT/calibration`` (at :func:`capture_geometry`)."""
    if opts.calibration is not None:
        calib, ev = _open_sets(opts.calibration)
        _check_set(calib, geometry, opts.style)
        return calib, ev, Path(opts.calibration)
    from calibration import build_sets
    root = opts.out / "calibration"
    capture = capture_geometry(geometry, int8_units)
    if (root / "calib" / "set.json").is_file():
        try:
            calib, ev = _open_sets(root)
            _check_set(calib, capture, opts.style)
            return calib, ev, root
        except ValueError as exc:
            print(f"rebuilding {root}: {exc}", file=sys.stderr)
    print(f"building a calibration set ({opts.calibration_frames} frames + 1 evaluation frame) at {capture} into "
          f"{root}" + ("" if capture == geometry else f" (int8 units {', '.join(int8_units)} are tile-local: "
                                                      f"same tiles as {geometry})"), file=sys.stderr)
    build_sets(None, root, geometry=capture, count=opts.calibration_frames, eval_count=1, style=opts.style,
               denoiser=denoiser, weights=opts.weights, force=True, progress=opts.progress)
    calib, ev = _open_sets(root)
    return calib, ev, root


def calibration_placement(samples: Sequence[dict[str, Any]], geometry: Any) -> dict[str, Any]:
    """How a calibration set's frames cover the export geometry (recorded in the manifest's ``calibration``).

    A frame is cropped from a capture at least as large as the geometry, or mirror-tiled on an axis where the
    capture is smaller (:mod:`calibration.augment`, step 2): the shipped DNGs are 1024 px and smaller, so every
    frame of a 12 MP set is mirror-tiled. Its local statistics (noise, texture) are the capture's, its content
    repeats; the ``note`` says so, and that full-size captures should calibrate a production export."""
    mirrored: list[str] = []
    for s in samples:
        aug = s.get("augmentation") or {}
        if "mirror" in ((aug.get("rows") or {}).get("mode"), (aug.get("cols") or {}).get("mode")):
            mirrored.append(str(s.get("source")))
    out: dict[str, Any] = {"frames": len(samples), "cropped": len(samples) - len(mirrored),
                           "mirror_tiled": len(mirrored)}
    if mirrored:
        out["note"] = (f"{len(mirrored)} of {len(samples)} calibration frames were mirror-tiled up to "
                       f"{geometry.width}x{geometry.height} from smaller DNGs ({', '.join(sorted(set(mirrored)))}): "
                       f"local statistics are the captures', the content repeats; calibrate on full-size captures "
                       f"(python -m calibration build --dngs DIR) for a production export")
    return out


# --------------------------------------------------------------------------------------------------- staging

def _promote(staged: Path, dest: Path) -> None:
    """Move a finished file or ``.mlpackage`` folder from the staging folder onto ``dest`` atomically."""
    from convert.targets.base import atomic_save
    atomic_save(dest, lambda tmp: os.replace(staged, tmp))


def _short(exc: BaseException) -> str:
    from convert.targets.base import short_error
    return short_error(exc)


def _io_dtype(details: dict[str, Any]) -> str:
    io = str(details.get("io_dtype", "float32"))
    return next((t for t in ("int8", "int16", "float16") if io.startswith(t)), "float32")


def _coverage_json(cov: Any) -> dict[str, Any]:
    if cov is None:
        return {"total_ops": 0, "delegated_ops": 0, "delegate": None, "fallback": {}}
    return {"total_ops": cov.total_ops, "delegated_ops": cov.delegated_ops, "delegate": cov.delegate,
            "fallback": dict(cov.fallback), "fraction": round(cov.fraction, 4), "partitions": cov.partitions,
            "method": cov.method, "notes": list(cov.notes)}


# ------------------------------------------------------------------------------------------------------ export

def _verify_inputs(unit: Any, calib: Any, ev: Any) -> tuple[tuple[Any, ...], str]:
    for cs, label in ((ev, "evaluation set row 0"), (calib, "calibration set row 0")):
        if cs is None:
            continue
        try:
            rows = unit.calibration_inputs(cs, limit=1)
        except (ValueError, KeyError):
            continue
        # a set captured at a smaller frame (capture_geometry) has other quarter-frame shapes
        if rows and [tuple(t.shape) for t in rows[0]] == [tuple(t.shape) for t in unit.example_inputs()]:
            return tuple(t.float() for t in rows[0]), label
    return unit.example_inputs(), "synthetic"


def nafnet_statistics(target: str, precision: str) -> str:
    """How an exported NAFNet computes its layer norms and attention means (:func:`isp.stages.nafnet.with_statistics`;
    a recipe option ``nafnet_statistics`` overrides): the textbook forms (equal in float32) for integer units, whose
    per-tensor ranges the float16-safe form's per-pixel rescale defeats (int8 enhancer 28.9 vs 48.6 dB), and for
    ONNX float32, which runs float32 CPU kernels where the safe form's extra element-wise ops only cost time; the
    float16-safe forms wherever float16 arithmetic may meet the unit (fp16 on any target; LiteRT float32, which the
    GPU delegate runs in float16; ExecuTorch and Core ML float32, lowered to GPU/Neural Engine backends too)."""
    if precision == "int8" or (target == "onnx" and precision == "fp32"):
        return "textbook"
    return "fp16_safe"


def _export_one(planned: Any, unit: Any, opts: ExportOptions, staging: Path, calib: Any, ev: Any
                ) -> list[UnitOutcome]:
    """Export one unit with its recipe into ``staging``, verify, promote into ``opts.out``; manifest entries."""
    from convert import targets
    from convert.manifest import SIDECAR_SUFFIX, write_io_sidecar
    from convert.targets import ExportRequest

    rec = planned.recipe
    t0 = time.perf_counter()
    calibration: list[tuple[Any, ...]] = []
    if rec.precision == "int8":
        if calib is None:
            raise ValueError("int8 needs a calibration set (--calibration DIR)")
        calibration = unit.calibration_inputs(calib, limit=opts.calibration_samples)
        if not calibration:
            raise ValueError(f"the calibration set {calib.root} holds no inputs for {unit.id}")
    verify_inputs, verify_source = _verify_inputs(unit, calib, ev)
    options = dict(rec.options)
    module, tuned = unit.module, None
    if options.get("weight_finetune") is not None and rec.precision == "int8":   # convert.qat: before quantizing
        from convert.qat import finetuned_module
        module, tuned = finetuned_module(unit, options["weight_finetune"], calibration,
                                         split_weights=options.get("split_weights") or ())
    options.pop("weight_finetune", None)
    from isp.stages.nafnet import ChannelLayerNorm, with_statistics
    statistics = options.pop("nafnet_statistics", nafnet_statistics(rec.target, rec.precision))
    module = with_statistics(module, statistics)
    has_nafnet = any(isinstance(m, ChannelLayerNorm) for m in module.modules())
    request = ExportRequest(module=module, example_inputs=verify_inputs, input_names=unit.input_names,
                            output_names=unit.output_names, precision=rec.precision, calibration=calibration,
                            backends=rec.backends, options=options, out_dir=staging, stem=unit.id)
    result = targets.export(rec.module, request)
    if tuned is not None:
        result.details["weight_finetune"] = tuned
    if has_nafnet:
        result.details["nafnet_statistics"] = statistics
    seconds = round(time.perf_counter() - t0, 3)
    io_in, io_out = unit.io(_io_dtype(result.details))
    base_warnings = list(planned.warnings) + list(result.warnings)
    lowered = {name: ("ok" if r.ok else f"error: {r.error}") for name, r in result.backends.items()
               if r.file is not None or not r.ok} or {rec.target: "ok"}
    backend_coverage = {name: {"delegate": r.op_coverage.delegate, "total_ops": r.op_coverage.total_ops,
                               "delegated_ops": r.op_coverage.delegated_ops}
                        for name, r in result.backends.items() if r.op_coverage is not None}
    if (result.details.get("gpu_coverage") or {}).get("measured"):      # LiteRT: the GPU delegate's own count
        backend_coverage["gpu"] = dict(result.details["gpu_coverage"])

    # one manifest entry per produced file: the primary artifact, plus other ExecuTorch backends' programs
    produced: list[tuple[str, str, Path, Any, bool, str | None]] = []
    primary_backend = rec.backends[0] if rec.backends else str(rec.options.get("compute_units", "cpu"))
    produced.append((rec.target, primary_backend, result.path, result.op_coverage, result.runnable_here,
                     result.not_runnable_reason))
    for name, r in result.backends.items():
        if r.ok and r.file is not None and Path(r.file) != result.path:
            produced.append((f"{rec.target}-{name}", name, Path(r.file), r.op_coverage, bool(r.runnable_here),
                             r.note or None))

    outcomes = []
    for target_name, backend, staged, cov, runnable, why_not in produced:
        dest = opts.out / staged.name
        entry_warnings = list(base_warnings)
        verify: dict[str, Any] = {"ran": False, "inputs": verify_source}
        if opts.verify and runnable:
            from convert.targets.base import verify as run_verify
            verify["options"] = dict(rec.verify_options)
            verify.update(run_verify(staged, request, **rec.verify_options))
            if verify.get("error"):               # declared runnable here, but it does not run: not an artifact
                raise RuntimeError(f"the exported {staged.name} does not run on this host's {rec.target} runtime: "
                                   f"{verify['error']}")
            if rec.precision == "fp32" and (verify.get("max_abs_err") or 0.0) > FP32_TOLERANCE:
                entry_warnings.append(f"fp32 artifact differs from the torch unit by {verify['max_abs_err']:.3g} "
                                      f"(> {FP32_TOLERANCE})")
        elif not runnable:
            verify["error"] = why_not or "not runnable on this host"
        if staged.suffix == ".pte":
            write_io_sidecar(staged, io_in, io_out)
        entry = {
            "unit": unit.id, "stage": unit.stage, "target": target_name, "backend": backend,
            "precision": rec.precision, "requested_precision": planned.requested, "file": dest.name,
            "bytes": _size(staged), "sha256": _sha(staged), "inputs": io_in, "outputs": io_out,
            "tiling": unit.tiling(), "op_coverage": _coverage_json(cov), "backend_coverage": backend_coverage,
            "lowered": lowered, "runnable_here": bool(runnable), "export_seconds": seconds,
            "warnings": entry_warnings, "verify": verify,
            "quantization": result.details.get("quantization"),
            "recipe": {"converter": rec.converter, "quantizer": rec.quantizer,
                       "quant_scope": list(rec.quant_scope) if rec.quant_scope else None,
                       "options": {k: v for k, v in rec.options.items() if _jsonable(v)}},
            "details": {k: v for k, v in result.details.items() if _jsonable(v)},
        }
        if staged.suffix == ".pte":
            entry["sidecar"] = dest.name + SIDECAR_SUFFIX
        outcomes.append(UnitOutcome(unit=unit.id, target=target_name, precision=rec.precision, status="ok",
                                    file=dest.name, bytes=entry["bytes"], delegated=entry["op_coverage"]["delegated_ops"],
                                    total=entry["op_coverage"]["total_ops"], max_abs_err=verify.get("max_abs_err"),
                                    warnings=entry_warnings, seconds=seconds, entry=entry))
    # everything is complete: move the files into place (sidecar first, so a .pte never lacks its names)
    for (_t, _b, staged, *_rest), outcome in zip(produced, outcomes):
        if staged.suffix == ".pte":
            side = staged.with_name(staged.name + SIDECAR_SUFFIX)
            _promote(side, opts.out / side.name)
        _promote(staged, opts.out / staged.name)
    return outcomes


def _jsonable(v: Any) -> bool:
    import json
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def _size(p: Path) -> int:
    from convert.targets.base import path_size
    return path_size(p)


def _sha(p: Path) -> str:
    return sha256_path(p)


def run_export(opts: ExportOptions) -> tuple[list[UnitOutcome], dict[str, Any]]:
    """Run one export (see the module docstring). Returns the outcomes and the merged manifest.

    Raises ``ValueError`` for bad options before anything is written."""
    import torch
    from tqdm import tqdm

    from isp.geometry import FrameGeometry as Geometry
    from isp.geometry import parse_size
    from convert import manifest as mf
    from convert.policy import load_policy
    from convert.recipes import TARGETS, canonical_target
    from convert.units import build_unit, expand_stages
    from isp import paths
    from isp.registry import BuildConfig

    if opts.threads:
        torch.set_num_threads(opts.threads)
    target = canonical_target(opts.target)
    info = TARGETS[target]
    if opts.backends and info.backends is None:
        raise ValueError(f"--backend selects ExecuTorch delegates; target {opts.target} has none (use "
                         f"--compute-units for coreml)")
    for b in opts.backends or ():
        if b not in EXECUTORCH_BACKENDS:
            raise ValueError(f"--backend: expected names from {', '.join(EXECUTORCH_BACKENDS)}, got {b!r}")
    options: dict[str, Any] = {}
    if opts.compute_units:
        if "compute_units" not in info.options:
            raise ValueError(f"--compute-units applies to coreml, not {opts.target}")
        options["compute_units"] = opts.compute_units
    width, height = parse_size(opts.size)
    geometry = Geometry(width, height, opts.tile, opts.overlap)
    weights = Path(opts.weights) if opts.weights else paths.weights_root()
    denoiser = f"{opts.denoiser_camera}_{opts.denoiser}"
    cfg = BuildConfig(weights, style=opts.style, denoiser=denoiser)
    unit_ids = expand_stages(opts.stages, cfg.lut)
    policy = load_policy(opts.precision, opts.policy)
    plan = policy.plan(unit_ids, target, backends=opts.backends, options=options)
    opts.out = Path(opts.out)
    opts.out.mkdir(parents=True, exist_ok=True)

    calib = ev = None
    calib_record = None
    if any(p.recipe.supported and p.precision == "int8" for p in plan) or opts.calibration is not None:
        int8_units = [p.unit for p in plan if p.recipe.supported and p.precision == "int8"]
        calib, ev, calib_root = prepare_calibration(opts, geometry, denoiser, int8_units)
        calib_record = {"path": str(calib.root), "frames": len(calib),
                        "sha256": sha256_file(Path(calib.root) / "set.json"),
                        "eval": str(ev.root) if ev is not None else None,
                        "placement": calibration_placement(calib.samples, geometry)}
        if calib_record["placement"].get("note"):
            print(f"note: {calib_record['placement']['note']}", file=sys.stderr)

    versions = mf.versions()
    run = mf.new_manifest(geometry=geometry.to_manifest(),
                          style=opts.style, lut=cfg.lut, denoiser=denoiser, weights=str(weights),
                          policy=policy.to_json(), calibration=calib_record, tool_versions=versions)
    run["policy"]["name"] = policy.name
    outcomes: list[UnitOutcome] = []
    staging = opts.out / f".staging-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        bar = tqdm(plan, desc=f"export {target}", unit="unit", disable=not opts.progress, file=sys.stderr,
                   dynamic_ncols=True)
        for planned in bar:
            rec = planned.recipe
            bar.set_postfix_str(f"{planned.unit} {rec.precision}")
            t0 = time.perf_counter()
            if not rec.supported:
                outcomes.append(UnitOutcome(planned.unit, rec.target, rec.precision, "failed",
                                            error=f"unsupported: {rec.reason}", warnings=list(planned.warnings)))
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    unit = build_unit(planned.unit, cfg, geometry)
                    outcomes += _export_one(planned, unit, opts, staging, calib, ev)
            except Exception as exc:  # noqa: BLE001 — one unit's failure is recorded, the others go on
                if os.environ.get("ISP_EXPORT_TRACEBACK"):
                    traceback.print_exc()
                outcomes.append(UnitOutcome(planned.unit, rec.target, rec.precision, "failed", error=_short(exc),
                                            warnings=list(planned.warnings),
                                            seconds=round(time.perf_counter() - t0, 3)))
            finally:
                for leftover in staging.iterdir():
                    shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink()
        bar.close()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    run["artifacts"] = [o.entry for o in outcomes if o.entry is not None]
    run["failures"] = [{"unit": o.unit, "target": o.target, "precision": o.precision, "error": o.error}
                       for o in outcomes if o.status == "failed"]
    merged = mf.update_manifest(opts.out, run)
    return outcomes, merged


# ------------------------------------------------------------------------------------------------------ report

def _human(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def summary_table(outcomes: Sequence[UnitOutcome]) -> str:
    """Fixed-width table: unit, target, precision, file, size, delegated/total ops, max error, time, status."""
    head = ("unit", "target", "prec", "file", "size", "deleg/total", "max err", "s", "status")
    rows = []
    for o in outcomes:
        ops = f"{o.delegated}/{o.total}" if o.total is not None else "-"
        err = f"{o.max_abs_err:.2e}" if o.max_abs_err is not None else "-"
        status = o.status if o.status != "failed" else f"FAILED: {o.error}"
        if o.status == "ok" and o.warnings:
            status += f" ({len(o.warnings)} warning{'s' if len(o.warnings) > 1 else ''})"
        rows.append((o.unit, o.target, o.precision, o.file or "-", _human(o.bytes), ops, err, f"{o.seconds:.1f}",
                     status))
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head) - 1)]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r[:-1], widths)) + "  " + r[-1] for r in [head, *rows]]
    lines.insert(1, "-" * min(160, max(len(line) for line in lines)))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------- CLI

def _csv(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python convert/export.py",
                                description="Export the ISP's units (docs/EXPORT_DESIGN.md) to one phone runtime, "
                                            "with a merged manifest.json")
    p.add_argument("--target", required=True, choices=TARGET_CHOICES, help="runtime (tflite = litert)")
    p.add_argument("--stages", default="all",
                   help="'all' or a comma list of stages (denoise, color, gain, gtm, ltm, lut3d, chroma, gamma, "
                        "upsample, enhance; upsample = downsample + upsample_fit + upsample_slice) or unit ids; "
                        "'aux' (or awb, awb_c5, awb_s24, raw_jpeg_decode): the units outside the chain, which "
                        "'all' leaves out")
    prec = p.add_mutually_exclusive_group()
    prec.add_argument("--precision", choices=("fp32", "fp16", "int8", "w8"),
                      help="one precision for every unit where supported (others fall back to fp32 with a "
                           "warning); default fp32")
    prec.add_argument("--policy", help="a per-unit precision policy: fp32, fp16, int8, w8, npu (built in: integer "
                                      "denoiser and enhancer for phone NPUs) or FILE.json")
    p.add_argument("--denoiser", default="lite", choices=DENOISER_SIZES, help="denoiser size (default lite)")
    p.add_argument("--denoiser-camera", default="s24", choices=DENOISER_CAMERAS,
                   help="camera-specific (s24) or generic denoiser (default s24)")
    p.add_argument("--style", type=int, default=0, choices=range(6), help="picture style 0-5 (default 0)")
    p.add_argument("--size", default="12mp", help="frame size: 12mp, 8mp, 1080p or WxH (default 12mp)")
    p.add_argument("--tile", type=int, default=None,
                   help="tile of the full-resolution units (default: the multiple of 16 near 512 whose windows cover "
                        "the frame with the fewest pixels, 528 at 12 MP)")
    p.add_argument("--overlap", type=int, default=32, help="tile overlap (default 32)")
    p.add_argument("--calibration", type=Path, default=None,
                   help="calibration set (python -m calibration build output); default for int8: build a small "
                        "one into OUT/calibration")
    p.add_argument("--calibration-frames", type=int, default=8,
                   help="frames of the set built when --calibration is not given (default 8)")
    p.add_argument("--calibration-samples", type=int, default=32,
                   help="at most this many calibration inputs per unit (default 32)")
    p.add_argument("--backend", type=_csv, default=None, metavar="xnnpack,vulkan,coreml",
                   help="ExecuTorch delegates; the first gives the primary artifact (default xnnpack)")
    p.add_argument("--compute-units", choices=COMPUTE_UNITS, default=None,
                   help="Core ML compute units recorded in the package (default all)")
    p.add_argument("--out", type=Path, default=Path("artifacts"), help="output folder (default ./artifacts)")
    p.add_argument("--weights", type=Path, default=None,
                   help="official weights folder (default $ISP_WEIGHTS or <shared>/weights/official)")
    p.add_argument("--no-verify", action="store_true", help="do not run the artifacts here")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    opts = ExportOptions(target=args.target, out=args.out, stages=args.stages, precision=args.precision,
                         policy=args.policy, denoiser=args.denoiser, denoiser_camera=args.denoiser_camera,
                         style=args.style, size=args.size, tile=args.tile, overlap=args.overlap,
                         calibration=args.calibration, calibration_frames=args.calibration_frames,
                         calibration_samples=args.calibration_samples, backends=args.backend,
                         compute_units=args.compute_units, weights=args.weights, verify=not args.no_verify,
                         progress=not args.quiet, threads=args.threads)
    try:
        outcomes, _manifest = run_export(opts)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:                    # a target module (or its backend package) does not import
        print(f"error: cannot export to {opts.target}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(summary_table(outcomes))
    print(f"manifest: {Path(opts.out) / 'manifest.json'}")
    failed = [o for o in outcomes if o.status == "failed"]
    for o in failed:
        print(f"FAILED {o.unit} -> {o.target} ({o.precision}): {o.error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
