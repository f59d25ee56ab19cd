"""Run an exported ISP artifact set on a device and measure latency and drift there.

    python -m runtime_py.bench --device PROFILE [--serial S] [--transport adb|adb-shell] [--artifacts DIR]
           [--iterations N] [--warmup N] [--out DIR] [--eval-set DIR | --eval-dng FILE] [--frames N]
           [--runner auto|host|native|ios] [--units a,b] [--precision p,q] [--force] [--no-chain] [--retries N]
           [--timeout-s S] [--reference-cache DIR] [--profile-file F] [--allow-mismatch] [--chain-only]
           [--export-args ARGS] [-v]

What happens (``docs/EXPORT_DESIGN.md`` is the contract for units, tiling and the manifest):

1. **Device.** ``--device`` names a profile (:mod:`runtime_py.devices`). Without ``--serial`` the one connected
   device that matches it is used (``adb devices -l`` + ``getprop ro.product.model``); with ``--serial`` the device is
   checked against the profile (a mismatch is an error naming both, unless ``--allow-mismatch``). ``--device host``
   runs everything in a local folder instead (no adb), as a baseline; an iPhone profile (``iphone-15-pro``) goes
   through ``ios_harness.driver`` (the Core ML runner app; ``--ios-tool``, ``--ios-app``).
2. **Selection.** One artifact per unit of the manifest: the profile's target/delegate preferences, then its
   precision order (``--precision`` overrides), restricted to what the runner executes (``--runner native``:
   ``.pte``; ``host``: ``.onnx``, ``.tflite``, ``.pte``; ``ios``: Core ML). Each chosen file's sha256 and declared
   shapes are checked (``runtime_py.artifacts``). ``--runner host`` is ``android_harness/host_runner.py`` run by a
   Python *on the device* (``--device-python``; the stand-in device sees the venv read-only, a phone needs e.g.
   Termux); ``native`` — the default on Android — is the arm64 push bundle (``android_harness/bundle.py``:
   ``isp_et_runner`` for ``.pte``, ``isp_litert_runner`` for ``.tflite``, with their own loader and libc), or
   ``--native-runner`` for another build. Without ``--artifacts``: ``./artifacts``, or the profile's default set
   exported there first (``runtime_py.bench_native``). A stand-in device's timings are labelled as emulation.
3. **Reference.** The float32 PyTorch reference (``runtime_py.drift.Reference``: :class:`isp.pipeline.Pipeline`
   with the set's style / denoiser / weights, tiled at its geometry) renders ``--frames`` evaluation frames: from
   ``--eval-set`` (a ``python -m calibration build`` set at this geometry) or a centre crop of ``--eval-dng``
   (default: the first shipped DNG large enough). Every unit's reference inputs and outputs come from it: frame and
   quarter units get the reference's own intermediate tensors; tiled units get the middle window of their tile
   plan, with the reference stage evaluated on that window (``upsample_slice``: the crop of the whole-frame
   reference slice). Cached in ``--reference-cache`` (default ``OUT/reference``).
4. **Push once.** Runner, every selected artifact (+ sidecars, + a names-only io spec for ``.pte``) and every unit's
   inputs go in one push (``AndroidDevice.push``: ``df`` check first, sha256 skip — a re-run sends nothing).
5. **Per unit** (manifest order): ``--warmup`` + ``--iterations`` through the runner protocol
   (``android_harness/runner_protocol.md``), outputs and timings pulled, latency p50/p90/p99/min/mean, peak RSS, and
   drift of every output against the reference (PSNR, SSIM, ΔE2000 mean/p95/max, max |Δ|). Each finished unit is
   saved at once, atomically, in ``OUT/units/<unit>/`` (``result.json`` written last).
6. **End to end, measured** (unless ``--no-chain``; needs every unit of the render): the whole chain runs on the
   device unit by unit, each unit fed the previous units' *device* outputs, tiled exactly as the host artifact
   pipeline tiles (:func:`runtime_py.pipeline.run_unit`: ``overlap`` units feathered windows, ``tiles`` units plain
   windows, the BGU slice with each tile's grid window and interpolation matrices). All tiles of a unit go to the
   device at once (one tar each way) and run in one runner process (``runtime_py/batch_runner.py`` for the Python
   runner, the app's batch mode on iOS; the native runner is started per tile by a shell loop): one warm-up on the
   first tile, then one timed inference per tile. The measured frame time is the sum of
   those inferences over every call of the frame; the wall time (transfers, runner start-up, host-side tiling)
   is reported beside it. Each finished step is saved in ``OUT/chain/``. The **estimate** is Σ p50 x calls per
   frame from step 5. The final image is compared with the reference render (PSNR, SSIM, ΔE2000), and every
   intermediate with the reference's.
7. **Report**: ``OUT/results.json`` and ``OUT/report.html`` (self-contained: tables, reference | device | ΔE heat
   map images).

Resume. A re-run with the same ``--out`` skips every unit and chain step whose saved result was made with the same
artifact (sha256 of the file), runner, iterations, reference frames and device model (``--force`` redoes them);
pushes are skipped by sha256, so nothing is sent twice.

Faults. No device, an unauthorized host, a device gone for good (after ``--retries`` reconnects per unit), a full
device: exit 3 with the harness's message, what finished (kept in ``OUT``, skipped on the re-run) and what is
pending; the partial report is written. A runner that crashes or times out (``--timeout-s``; killed on the device)
fails that unit only: it is recorded with the runner's stderr tail, the others go on, exit 1.

Exit codes: 0 all done; 1 some unit or chain step failed (results written); 2 bad arguments, profile, artifact set or
device mismatch; 3 device fault.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from android_harness.device import (AndroidDevice, DeviceInfo, RunnerSpec, add_adb_args, host_runner_spec,
                                    native_runner_spec)
from android_harness.faults import (CommandTimeout, DeviceLost, DeviceNotFound, DeviceStorageFull,
                                    DeviceUnauthorized, HarnessError, RunnerCrashed, RunnerTimeout)
from android_harness.host_runner import sanitize_name
from android_harness.transport import ShellResult
from isp.hashing import sha256_path
from isp.jsonio import write_json_atomic
from runtime_py.devices import (DeviceMismatch, DeviceProfile, ProfileError, Selection, get_profile,
                                open_android_device, select_artifacts)

log = logging.getLogger("runtime_py.bench")

__all__ = ["SCHEMA", "BenchOptions", "BenchError", "LocalTransport", "latency_stats", "compare_outputs",
           "run_bench", "build_parser", "main", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_DEVICE"]

SCHEMA = "isp_bench.results/1"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DEVICE = 0, 1, 2, 3
RUNNER_SUFFIXES = {"host": (".onnx", ".tflite", ".pte"), "native": (".pte",),
                   "ios": (".mlpackage", ".mlmodelc", ".mlmodel")}
BATCH_RUNNER = Path(__file__).with_name("batch_runner.py")
#: tensors in camera-raw space: PSNR, SSIM and max |Δ| only (a colour difference of raw RGB has no meaning)
RAW_SPACE = ("raw", "denoised_raw")
#: report colouring: within budget green, outside red (informative; nothing fails on them)
DRIFT_BUDGETS = {"psnr": 35.0, "de2000_mean": 1.0}


class BenchError(RuntimeError):
    """A benchmark that cannot go on; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


@dataclass
class BenchOptions:
    """What the CLI parses (see ``build_parser`` for every field's meaning)."""

    device: str
    artifacts: Path | None
    out: Path = Path("bench_out")
    serial: str | None = None
    transport: str = "adb"
    key: str | None = None
    iterations: int = 10
    warmup: int = 3
    eval_set: Path | None = None
    eval_dng: Path | None = None
    frames: int = 1
    runner: str = "auto"
    device_python: str = sys.executable
    native_runner: Path | None = None
    native_libs: tuple[str, ...] = ()
    units: tuple[str, ...] | None = None
    precision: tuple[str, ...] | None = None
    force: bool = False
    chain: bool = True
    retries: int = 2
    timeout_s: float = 600.0
    threads: int | None = None
    runner_args: tuple[str, ...] = ()
    profile_files: tuple[str, ...] = ()
    allow_mismatch: bool = False
    root: str | None = None
    connect_timeout_s: float = 10.0
    auth_timeout_s: float = 10.0
    weights: Path | None = None
    reference_cache: Path | None = None
    ios_tool: str = "devicectl"
    ios_app: str | None = None
    ios_install: bool = False
    transport_kwargs: dict = field(default_factory=dict)
    export_args: str = ""
    chain_only: bool = False


# ====================================================================================================== local device

class LocalTransport:
    """``AdbTransport`` over this machine's shell and file system: ``--device host`` runs the same protocol code
    (push with sha256 skip, runner with timeout and kill by pid, pull) against a local folder."""

    name = "local"

    def __init__(self) -> None:
        self.serial = "localhost"

    def connect(self) -> None:
        pass

    def reconnect(self) -> None:
        pass

    def close(self) -> None:
        pass

    def shell(self, command: str, timeout_s: float | None = None) -> ShellResult:
        t0 = time.monotonic()
        try:
            proc = subprocess.run(["sh", "-c", command], capture_output=True, timeout=timeout_s,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise CommandTimeout(self.serial, command, float(timeout_s)) from exc
        return ShellResult(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0)

    def push(self, local: Path, remote: str, *, executable: bool = False) -> None:
        Path(remote).parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(local, remote)
        except OSError as exc:
            if exc.errno == 28:
                raise DeviceStorageFull(self.serial, remote, detail=str(exc)) from exc
            raise
        os.chmod(remote, 0o755 if executable else 0o644)

    def pull(self, remote: str, local: Path) -> None:
        local = Path(local)
        tmp = local.with_name(local.name + f".part-{os.getpid()}")
        try:
            shutil.copyfile(remote, tmp)
            os.replace(tmp, local)
        except FileNotFoundError as exc:
            from android_harness.faults import TransferFailed
            raise TransferFailed(self.serial, f"pull {remote}", str(exc)) from exc
        finally:
            tmp.unlink(missing_ok=True)


def _host_info() -> DeviceInfo:
    import platform
    return DeviceInfo(serial="localhost", model=platform.node() or "host", device="host",
                      manufacturer="", soc=platform.processor() or platform.machine(), soc_manufacturer="",
                      sdk=None, release=platform.release(), abi=platform.machine(), fingerprint=platform.platform(),
                      transport="local")


# ====================================================================================================== helpers

def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _q(s: str) -> str:
    return shlex.quote(str(s))


def latency_stats(ms: Sequence[float]) -> dict[str, float | int | None]:
    """p50 / p90 / p99 / min / max / mean / stdev of per-inference milliseconds (linear-interpolated percentiles)."""
    a = np.asarray(list(ms), dtype=np.float64)
    if a.size == 0:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "min": None, "max": None, "mean": None, "stdev": None}
    return {"n": int(a.size), "p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "min": float(a.min()), "max": float(a.max()), "mean": float(a.mean()),
            "stdev": float(a.std(ddof=1)) if a.size > 1 else 0.0}


def _kind(name: str, arr: np.ndarray) -> str:
    """``runtime_py.drift.kind_of`` (the host drift tool's choice), ``data`` for anything not an RGB image."""
    from runtime_py.drift import kind_of
    kind = kind_of(name)
    return kind if arr.ndim == 4 and arr.shape[1] == 3 else "data"


def compare_outputs(name: str, pred: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    """Drift of one tensor: :func:`runtime_py.metrics.compare` with a kind chosen by name (sRGB, linear, data);
    camera-raw images also get SSIM. A shape mismatch is reported, not raised."""
    from runtime_py.metrics import compare, ssim

    pred, ref = np.asarray(pred, dtype=np.float32), np.asarray(ref, dtype=np.float32)
    if pred.shape != ref.shape:
        return {"name": name, "error": f"shape {list(pred.shape)} vs reference {list(ref.shape)}"}
    if not np.isfinite(pred).all():
        return {"name": name, "error": f"{int((~np.isfinite(pred)).sum())} non-finite values in the device output"}
    kind = _kind(name, ref)
    m = compare(pred, ref, kind)
    m["identical"] = m["max_abs"] == 0.0          # PSNR is then inf, which JSON writes as null
    if kind == "data" and name in RAW_SPACE and ref.ndim == 4 and ref.shape[1] == 3 and min(ref.shape[2:]) >= 11:
        m["ssim"] = ssim(pred, ref)
    return {"name": name, **m}


class _Codec:
    """float32 arrays <-> the artifact's tensor dtypes (float16 casts; int8/uint8 with LiteRT's scale/zero point)."""

    def __init__(self, path: Path, inputs: Sequence[Mapping[str, Any]], outputs: Sequence[Mapping[str, Any]]):
        self.in_dtypes = {t["name"]: str(t.get("dtype") or "float32") for t in inputs}
        self.out_dtypes = {t["name"]: str(t.get("dtype") or "float32") for t in outputs}
        self.quant: dict[str, tuple[float, int]] = {}
        if any(d.startswith(("int", "uint")) for d in (*self.in_dtypes.values(), *self.out_dtypes.values())):
            self.quant = self._litert_quant(path)

    @staticmethod
    def _litert_quant(path: Path) -> dict[str, tuple[float, int]]:
        if path.suffix != ".tflite":
            return {}
        from ai_edge_litert.interpreter import Interpreter
        interp = Interpreter(model_path=str(path))
        runner = interp.get_signature_runner(next(iter(interp.get_signature_list())))
        out = {}
        for details in (runner.get_input_details(), runner.get_output_details()):
            for name, d in details.items():
                scale, zero = d.get("quantization", (0.0, 0))
                if scale:
                    out[name] = (float(scale), int(zero))
        return out

    def encode(self, name: str, a: np.ndarray) -> np.ndarray:
        dtype = np.dtype(self.in_dtypes.get(name, "float32"))
        a = np.ascontiguousarray(np.asarray(a, dtype=np.float32))
        if dtype.kind in "iu":
            if name not in self.quant:
                raise BenchError(f"input {name} is {dtype} but its quantization parameters are unknown")
            scale, zero = self.quant[name]
            info = np.iinfo(dtype)
            return np.clip(np.round(a / scale + zero), info.min, info.max).astype(dtype)
        return a.astype(dtype)

    def decode(self, name: str, a: np.ndarray) -> np.ndarray:
        a = np.asarray(a)
        if a.dtype.kind in "iu" and name in self.quant:
            scale, zero = self.quant[name]
            return ((a.astype(np.float32) - zero) * scale).astype(np.float32)
        return a.astype(np.float32)


# ====================================================================================================== plan

@dataclass
class UnitPlan:
    """One unit as the benchmark runs it: the chosen artifact (``runtime_py.artifacts.Artifact``), why it was
    chosen, its codec, and a names-only io spec for ``.pte`` files."""

    unit: str
    selection: Selection
    artifact: Any
    codec: _Codec
    io_spec: Path | None = None        # names-only io spec (runner protocol format) for .pte

    @property
    def entry(self) -> Mapping[str, Any]:
        return self.selection.artifact

    @property
    def path(self) -> Path:
        return self.artifact.path

    @property
    def sha256(self) -> str:
        return self.artifact.sha256

    @property
    def input_names(self) -> list[str]:
        return list(self.artifact.input_names)

    @property
    def output_names(self) -> list[str]:
        return list(self.artifact.output_names)

    @property
    def output_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(int(d) for d in s) for s in self.artifact.output_shapes]


def _plan(geometry, unit: str):
    """The tile plan a unit runs on (None for frame / quarter units): ``overlap`` units the geometry's feathered
    windows, ``tiles`` units plain windows (as :func:`runtime_py.pipeline.run_unit`)."""
    from runtime_py.artifacts import TILING
    mode = TILING[unit]
    return geometry.plan() if mode == "overlap" else geometry.plan(overlap=0) if mode == "tiles" else None


def calls_per_frame(geometry, unit: str) -> int:
    plan = _plan(geometry, unit)
    return 1 if plan is None else len(plan)


def _plan_units(aset, profile: DeviceProfile, runner: str, opts: BenchOptions, work: Path
                ) -> tuple[dict[str, UnitPlan], dict[str, str]]:
    from runtime_py.bench_native import runnable_suffixes
    from runtime_py.artifacts import ArtifactIntegrityError, normalize_target

    units = list(opts.units) if opts.units else None
    if units:
        unknown = [u for u in units if u not in {a.unit for a in aset.artifacts}]
        if unknown:
            raise BenchError(f"--units: the set has no artifact for {', '.join(unknown)}; it has "
                             f"{', '.join(sorted({a.unit for a in aset.artifacts}))}", EXIT_USAGE)
    chosen, missing = select_artifacts(profile, aset.manifest.get("artifacts", []),
                                       runnable_suffixes=runnable_suffixes(runner, profile.platform, RUNNER_SUFFIXES),
                                       precisions=opts.precision,
                                       folder=aset.root, units=units)
    plans: dict[str, UnitPlan] = {}
    for unit, sel in chosen.items():
        e = sel.artifact
        art = aset.find(unit, normalize_target(str(e["target"]).split("-")[0]) if "-" not in str(e["target"])
                        else str(e["target"]), str(e["precision"]))
        if art is None:                                  # secondary ExecuTorch backends keep their own target name
            art = next(a for a in aset.artifacts if a.file == e["file"])
        try:
            art.check_file(verify=True)
            art.check_geometry(aset.geometry)
        except (ArtifactIntegrityError, ValueError, FileNotFoundError) as exc:
            raise BenchError(str(exc), EXIT_USAGE) from None
        io_spec = None
        if art.path.suffix == ".pte":
            # the runners read {"inputs": [names], "outputs": [names]} (runner_protocol.md)
            io_spec = work / "io" / f"{art.path.name}.runner-io.json"
            write_json_atomic(io_spec, {"inputs": list(art.input_names), "outputs": list(art.output_names)})
        plans[unit] = UnitPlan(unit, sel, art, _Codec(art.path, e["inputs"], e["outputs"]), io_spec)
    return plans, missing


# ====================================================================================================== reference

@dataclass
class Reference:
    """Reference data: per frame the reference intermediates (numpy, batch 1); per unit the timed run's inputs and
    expected outputs (frame 0, in the unit's positional order) and the tile they were cut from; a key for all of it."""

    key: str
    frames: list[dict[str, np.ndarray]]
    unit_inputs: dict[str, list[np.ndarray]]
    unit_outputs: dict[str, list[np.ndarray]]
    unit_window: dict[str, list[int] | None]
    source: str


def _eval_frames(opts: BenchOptions, aset) -> tuple[list, str]:
    """The evaluation frames (``runtime_py.drift.EvalFrame``) and a description of where they came from."""
    from runtime_py import drift

    g = aset.geometry
    if opts.eval_set is not None:
        from calibration import load_set
        root = Path(opts.eval_set)
        if not (root / "set.json").is_file() and (root / "eval" / "set.json").is_file():
            root = root / "eval"
        try:
            cs = load_set(root, verify=False)
            drift._check_eval_set(cs, aset)
        except ValueError as exc:
            raise BenchError(f"--eval-set: {exc}", EXIT_USAGE) from None
        frames = drift.frames_from_eval_set(cs, limit=opts.frames)
        return frames, f"evaluation set {root}, frame(s) 0..{len(frames) - 1}"
    from isp import paths
    from runtime_py.pipeline import center_crop_box
    from isp.io.dng import read_dng
    candidates = [Path(opts.eval_dng)] if opts.eval_dng else sorted(paths.dng_dir().glob("*.dng"))
    usable = []
    for f in candidates:
        try:
            full = read_dng(f, crop=[0, 0, 4, 4]).full_size            # the size only
            center_crop_box(full, g.size)
        except (ValueError, FileNotFoundError) as exc:
            if opts.eval_dng:
                raise BenchError(f"--eval-dng: {exc}", EXIT_USAGE) from None
            continue
        usable.append(f)
        if len(usable) >= opts.frames:
            break
    if not usable:
        raise BenchError(f"no DNG of at least {g.width}x{g.height} for an evaluation frame; pass --eval-dng or "
                         f"--eval-set", EXIT_USAGE)
    frames = drift.frames_from_dngs(usable, g, fit="crop")
    return frames, f"centre {g.width}x{g.height} crop of {', '.join(f.name for f in usable)}"


def _middle(plan) -> tuple[int, int]:
    wins = list(plan.windows())
    _, _, y0, x0 = wins[len(wins) // 2]
    return y0, x0


def build_reference(aset, opts: BenchOptions, cache: Path) -> Reference:
    """Render the evaluation frames with the PyTorch reference (``runtime_py.drift.Reference``: the pipeline built
    like the set, tiled at its geometry) and cut every unit's inputs and expected outputs.

    Cached in ``cache``: the frame renders keyed by the frames and the set's pipeline settings (style, 3-D LUT,
    denoiser, weights, geometry), each unit's reference keyed by that and the unit's input shapes — so another
    artifact set of the same pipeline reuses the renders and only cuts its own units."""
    frames, source = _eval_frames(opts, aset)
    g = aset.geometry
    frames_key = _digest({"frames": [hashlib.sha256(f.raw.numpy().tobytes()).hexdigest() for f in frames],
                          "illum": [f.illum.tolist() for f in frames], "ccm": [f.ccm.tolist() for f in frames],
                          "geometry": [g.width, g.height, g.tile, g.overlap], "style": aset.style, "lut": aset.lut,
                          "denoiser": aset.denoiser, "weights": str(opts.weights or aset.weights), "version": 3})
    present = {}
    for a in aset.artifacts:
        present.setdefault(a.unit, _digest({"frames": frames_key, "unit": a.unit, "inputs": a.input_shapes}))
    meta: dict[str, Any] = {}
    try:
        meta = json.loads((cache / "reference.json").read_text())
    except (OSError, ValueError):
        pass
    ref = None
    if meta.get("frames_key") == frames_key:
        try:
            ref = _load_reference(cache, meta, {u: k for u, k in present.items()
                                                if meta.get("units", {}).get(u, {}).get("key") == k})
        except (OSError, ValueError, KeyError) as exc:
            log.warning("reference cache unreadable (%s); recomputing", exc)
            meta, ref = {}, None
    missing = [u for u in present if ref is None or u not in ref.unit_inputs]
    if ref is not None and not missing:
        ref.key = _digest({"frames": frames_key, "units": present})
        return ref
    t0 = time.monotonic()
    if ref is None:
        log.info("rendering %d reference frame(s) with the PyTorch pipeline (%s)", len(frames), source)
    ref = _compute_reference(aset, frames, opts.weights, missing, cached=ref)
    ref.source = source
    _save_reference(cache, ref, frames_key, {u: present[u] for u in missing}, meta if meta.get("frames_key") ==
                    frames_key else {})
    ref.key = _digest({"frames": frames_key, "units": present})
    log.info("reference ready in %.1f s (cached in %s)", time.monotonic() - t0, cache)
    return ref


def _compute_reference(aset, frames, weights, units: Sequence[str], cached: Reference | None = None) -> Reference:
    import torch

    from convert.units import slice_operands
    from runtime_py import drift
    from runtime_py.artifacts import UNIT_IO, UNITS

    dref = drift.Reference(aset, weights=weights)
    if cached is not None and isinstance(getattr(dref, "_frames", None), dict):
        for fr, arrays in zip(frames, cached.frames):        # reuse the cached renders (no second pipeline run)
            dref._frames[fr.name] = {n: torch.from_numpy(np.ascontiguousarray(v)) for n, v in arrays.items()
                                     if n not in ("illum", "ccm")}
    g = aset.geometry
    h, w = g.size
    th, tw = g.tile_shape
    out_frames: list[dict[str, np.ndarray]] = []
    unit_inputs: dict[str, list[np.ndarray]] = dict(cached.unit_inputs) if cached else {}
    unit_outputs: dict[str, list[np.ndarray]] = dict(cached.unit_outputs) if cached else {}
    unit_window: dict[str, list[int] | None] = dict(cached.unit_window) if cached else {}
    with torch.inference_mode():
        for k, fr in enumerate(frames):
            inter = dict(dref.intermediates(fr))
            inter["illum"], inter["ccm"] = fr.illum, fr.ccm
            out_frames.append({n: v.detach().float().numpy() for n, v in inter.items()
                               if isinstance(v, torch.Tensor)})
            if k:
                continue
            for unit in (u for u in UNITS if u in units):
                ins, outs = drift.Reference.unit_io(unit, inter, fr)
                plan = _plan(g, unit)
                if plan is None:
                    unit_window[unit] = None
                else:
                    y0, x0 = _middle(plan)
                    unit_window[unit] = [y0, x0, th, tw]
                    crop = lambda t: t[..., y0:y0 + th, x0:x0 + tw]             # noqa: E731
                    if unit == "upsample_slice":
                        art = next(a for a in aset.artifacts if a.unit == unit)
                        r, c = art.input_shapes[1][3], art.input_shapes[1][4]
                        ins = (crop(ins[0]), *slice_operands(ins[1].float(), (y0, x0), (th, tw), (h, w), r, c))
                    else:
                        ins = tuple(crop(t) if t.ndim == 4 and tuple(t.shape[-2:]) == (h, w) else t for t in ins)
                    outs = dref.tile_output(unit, fr, (y0, x0))
                unit_inputs[unit] = [t.detach().float().numpy() for t in ins]
                unit_outputs[unit] = [t.detach().float().numpy() for t in outs]
                if len(unit_outputs[unit]) != len(UNIT_IO[unit][1]):
                    raise RuntimeError(f"reference of {unit}: {len(unit_outputs[unit])} outputs, expected "
                                       f"{len(UNIT_IO[unit][1])}")
    return Reference("", out_frames, unit_inputs, unit_outputs, unit_window, "")


def _save_reference(cache: Path, ref: Reference, frames_key: str, new_units: Mapping[str, str],
                    meta: Mapping[str, Any]) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    if meta.get("frames_key") != frames_key:
        for k, f in enumerate(ref.frames):
            _savez_atomic(cache / f"frame{k}.npz", f)
    units = dict(meta.get("units", {})) if meta.get("frames_key") == frames_key else {}
    for unit, key in new_units.items():
        _savez_atomic(cache / f"unit_{unit}.npz", {**{f"in{i}": v for i, v in enumerate(ref.unit_inputs[unit])},
                                                   **{f"out{i}": v for i, v in enumerate(ref.unit_outputs[unit])}})
        units[unit] = {"key": key, "window": ref.unit_window.get(unit)}
    write_json_atomic(cache / "reference.json", {"frames_key": frames_key, "frames": len(ref.frames),
                                                 "source": ref.source, "units": units})


def _load_reference(cache: Path, meta: Mapping[str, Any], units: Mapping[str, str]) -> Reference:
    frames = [dict(np.load(cache / f"frame{k}.npz")) for k in range(int(meta["frames"]))]
    ui, uo, win = {}, {}, {}
    for unit in units:
        d = np.load(cache / f"unit_{unit}.npz")
        ui[unit] = [d[f"in{i}"] for i in range(sum(1 for k in d.files if k.startswith("in")))]
        uo[unit] = [d[f"out{i}"] for i in range(sum(1 for k in d.files if k.startswith("out")))]
        win[unit] = meta["units"][unit].get("window")
    return Reference("", frames, ui, uo, win, meta.get("source", ""))


def _savez_atomic(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_npys(folder: Path, arrays: Mapping[str, np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, a in arrays.items():
        np.save(folder / (sanitize_name(name) + ".npy"), np.ascontiguousarray(a), allow_pickle=False)


def _chain_inputs(unit: str, board: Mapping[str, Any]) -> tuple:
    """A unit's frame-level inputs from the chain so far (as ``runtime_py.pipeline.ArtifactPipeline`` feeds them)."""
    from runtime_py.artifacts import UNIT_IO
    if unit == "color":
        return board["denoised_raw"], board["illum"], board["ccm"]
    if unit == "chroma":
        return (board["lsrgb_lut"] if "lsrgb_lut" in board else board["lsrgb_ltm"],)
    if unit == "upsample_slice":
        return board["lsrgb"], board["bgu_grid"]
    return tuple(board[n] for n in UNIT_IO[unit][0])


# ====================================================================================================== state

class State:
    """``OUT/units/<unit>/`` and ``OUT/chain/frame<k>/<unit>/``: each a folder renamed into place when complete,
    ``result.json`` inside; a folder whose key differs from the current run is stale and redone."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def unit_dir(self, unit: str) -> Path:
        return self.out / "units" / unit

    def step_dir(self, frame: int, unit: str) -> Path:
        return self.out / "chain" / f"frame{frame}" / unit

    @staticmethod
    def read(folder: Path) -> dict | None:
        try:
            return json.loads((folder / "result.json").read_text())
        except (OSError, ValueError):
            return None

    @staticmethod
    def staging(folder: Path) -> Path:
        tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        return tmp

    @staticmethod
    def publish(tmp: Path, folder: Path, result: Mapping[str, Any]) -> None:
        """``result.json`` last into ``tmp``, then ``tmp`` renamed to ``folder`` (an older one moved aside first)."""
        write_json_atomic(tmp / "result.json", result)
        old = None
        if folder.exists():
            old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


# ====================================================================================================== the run

class _Run:
    """One benchmark run; methods in the order they happen."""

    def __init__(self, opts: BenchOptions) -> None:
        self.opts = opts
        self.out = Path(opts.out).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = self.out / ".work"
        self.state = State(self.out)
        self.t0 = time.monotonic()
        self.dev: AndroidDevice | None = None
        self.info: DeviceInfo | None = None
        self.results: dict[str, dict] = {}
        self.chain: list[dict] = []
        self.chain_note: str | None = None
        self.chain_failed = False
        self.push_report: dict | None = None
        self.events: list[str] = []
        self.fault: str | None = None
        self.emulation: str | None = None

    # ------------------------------------------------------------------------------------------------ setup
    def setup(self) -> None:
        o = self.opts
        try:
            self.profile = get_profile(o.device, o.profile_files)
        except ProfileError as exc:
            raise BenchError(str(exc), EXIT_USAGE) from None
        from runtime_py.artifacts import ArtifactSet
        from runtime_py.bench_native import resolve_artifacts
        try:
            self.artifacts = resolve_artifacts(o.artifacts, self.profile, o.export_args).resolve()
        except RuntimeError as exc:
            raise BenchError(str(exc), EXIT_USAGE) from None
        try:
            self.aset = ArtifactSet.open(self.artifacts)
        except (ValueError, FileNotFoundError) as exc:
            raise BenchError(str(exc), EXIT_USAGE) from None
        self.manifest = self.aset.manifest
        self.geometry = self.aset.geometry
        self.height, self.width = self.geometry.size
        self.runner = self._choose_runner()
        self.plans, self.missing = _plan_units(self.aset, self.profile, self.runner, o, self.work)
        if not self.plans:
            hint = (" (the native arm64 runners execute .pte and .tflite; --runner host runs .onnx through a Python "
                    "on the device)" if self.runner == "native" and self.profile.platform == "android" else "")
            raise BenchError("no unit of the artifact set can run here: " + "; ".join(
                f"{u}: {why}" for u, why in self.missing.items()) + hint, EXIT_USAGE)
        for u, why in self.missing.items():
            log.warning("unit %s skipped: %s", u, why)

    def _choose_runner(self) -> str:
        o = self.opts
        if self.profile.platform == "ios":
            if o.runner not in ("auto", "ios"):
                raise BenchError(f"an iPhone runs the Core ML runner app (--runner auto), not --runner {o.runner}",
                                 EXIT_USAGE)
            return "ios"
        if o.runner == "ios":
            raise BenchError(f"--runner ios needs an iOS device profile; {self.profile.name} is "
                             f"{self.profile.platform}", EXIT_USAGE)
        if o.runner in ("host", "native"):
            return o.runner
        if o.runner != "auto":
            raise BenchError(f"--runner must be auto, host or native, got {o.runner!r}", EXIT_USAGE)
        if self.profile.platform == "android" and not o.native_runner:
            return "native"                           # the arm64 bundle (android_harness/bundle.py)
        binary = self._native_binary()
        if binary is not None and binary.exists():
            from runtime_py.devices import select_artifacts as sel
            _, missing = sel(self.profile, self.manifest.get("artifacts", []), runnable_suffixes=(".pte",),
                             precisions=o.precision, folder=self.artifacts, units=o.units)
            if not missing:
                return "native"
        return "host"

    def _native_binary(self) -> Path | None:
        if self.opts.native_runner:
            return Path(self.opts.native_runner)
        root = Path(__file__).resolve().parents[1] / "build"
        return root / ("native" if self.profile.platform == "host" else "native-android") / "isp_et_runner"

    def connect(self) -> None:
        o = self.opts
        if self.profile.platform == "ios":
            from ios_harness.driver import open_ios_device
            try:
                self.dev = open_ios_device(self.profile, o.serial, tool=o.ios_tool, app=o.ios_app,
                                           root=o.root or self.profile.work_dir, allow_mismatch=o.allow_mismatch,
                                           install=o.ios_install)
            except DeviceMismatch as exc:
                raise BenchError(str(exc), EXIT_USAGE) from None
            self.info = self.dev.info()
            return
        if self.profile.platform == "host":
            root = o.root or str(self.out / ".host_device" / "isp_bench")
            self.dev = AndroidDevice(LocalTransport(), root=root, retries=o.retries)
            self.info = _host_info()
            return
        tkw = {"connect_timeout_s": o.connect_timeout_s, "auth_timeout_s": o.auth_timeout_s, **o.transport_kwargs}
        try:
            self.dev = open_android_device(self.profile, o.serial, o.transport, key_path=o.key,
                                           allow_mismatch=o.allow_mismatch, root=o.root or self.profile.work_dir,
                                           transport_kwargs=tkw, retries=o.retries, retry_backoff_s=0.5)
        except DeviceMismatch as exc:
            raise BenchError(str(exc), EXIT_USAGE) from None
        self.info = self.dev.info()
        from runtime_py.bench_native import emulation_note
        self.emulation = emulation_note(self.dev)
        if self.emulation:
            log.warning("%s", self.emulation)

    @property
    def device_key(self) -> str:
        i = self.info
        return f"{self.profile.name}|{i.model}|{i.device}|{i.abi}|{i.fingerprint}"

    def runner_spec(self) -> RunnerSpec:
        if self.runner == "ios":
            return RunnerSpec("IspBenchRunner (iOS app)", ())
        if self.runner == "native" and self.profile.platform == "android" and not self.opts.native_runner:
            if getattr(self, "_bundle_spec", None) is None:
                from runtime_py.bench_native import android_runner_spec
                try:
                    self._bundle_spec = android_runner_spec(self.dev.root)
                except RuntimeError as exc:
                    raise BenchError(str(exc), EXIT_USAGE) from None
            return self._bundle_spec
        if self.runner == "native":
            binary = self._native_binary()
            if binary is None or not binary.is_file():
                raise BenchError(f"--runner native: no runner binary at {binary}; build android_harness/native "
                                 f"(android_harness/README.md) or pass --native-runner PATH", EXIT_USAGE)
            return native_runner_spec(binary, self.opts.native_libs, root=self.dev.root)
        return host_runner_spec(self.opts.device_python, root=self.dev.root)

    def batch_spec(self) -> RunnerSpec | None:
        """The one-process batch runner next to host_runner.py (Python runner only)."""
        if self.runner != "host":
            return None
        base = host_runner_spec(self.opts.device_python, root=self.dev.root)
        remote = f"{self.dev.root}/bin/batch_runner.py"
        return RunnerSpec("batch_runner.py", (self.opts.device_python, "-u", remote),
                          base.files + ((BATCH_RUNNER, remote, False),), base.env)

    def check_runner(self) -> None:
        if self.runner == "host" and self.profile.platform != "host":
            py = self.opts.device_python
            res = self.dev.shell(f"test -x {_q(py)} && echo ok || echo missing")
            if res.text.strip() != "ok":
                raise BenchError(
                    f"--runner host needs a Python with numpy and the runtimes on the device at {py}; there is none "
                    f"on {self.dev.serial}. On a phone install one (e.g. Termux) and pass --device-python, or use "
                    f"--runner native with the NDK build of android_harness/native (.pte artifacts).", EXIT_USAGE)

    # ------------------------------------------------------------------------------------------------ keys
    def runner_key(self) -> str:
        spec = self.runner_spec()
        return _digest({"runner": spec.name, "argv0": spec.argv[0] if spec.argv else "",
                        "files": [sha256_path(f) for f, _, _ in spec.files],
                        "batch": sha256_path(BATCH_RUNNER), "threads": self.opts.threads,
                        "args": list(self.opts.runner_args)})

    def unit_key(self, up: UnitPlan) -> str:
        o = self.opts
        return _digest({"artifact": up.sha256, "file": up.path.name, "runner": self.runner_key(),
                        "warmup": o.warmup, "iterations": o.iterations, "device": self.device_key,
                        "reference": self.ref.key})

    # ------------------------------------------------------------------------------------------------ push
    def remote_model(self, up: UnitPlan) -> str:
        return f"{self.dev.root}/models/{up.path.name}"

    def unit_files(self, up: UnitPlan) -> list[tuple[Path, str, bool]]:
        root = self.dev.root
        files = [(up.path, self.remote_model(up), False)]
        files += [(p, f"{root}/models/{p.name}", False) for p in up.path.parent.glob(up.path.name + ".*")
                  if p.is_file()]
        if up.io_spec is not None:
            files.append((up.io_spec, f"{root}/models/{up.io_spec.name}", False))
        in_dir = self.input_dir(up)
        files += [(p, f"{root}/inputs/{up.path.stem}/{p.name}", False) for p in sorted(in_dir.glob("*.npy"))]
        return files

    def input_dir(self, up: UnitPlan) -> Path:
        d = self.work / "inputs" / self.ref.key / up.unit / up.path.name     # per reference and artifact (codec)
        if not d.is_dir() or not any(d.glob("*.npy")):
            tmp = d.with_name(d.name + f".tmp-{uuid.uuid4().hex[:6]}")
            _write_npys(tmp, {n: up.codec.encode(n, a) for n, a in zip(up.input_names, self.ref.unit_inputs[up.unit])})
            if d.exists():
                shutil.rmtree(d)
            os.replace(tmp, d)
        return d

    def push_all(self, todo: Sequence[UnitPlan]) -> None:
        """Runner, artifacts, sidecars and inputs of the units still to run, in one push (df check, sha256 skip)."""
        files = list(self.runner_spec().files)
        batch = self.batch_spec()
        if batch is not None and self.opts.chain:
            files += [f for f in batch.files if f not in files]
        for up in todo:
            files += self.unit_files(up)
        t0 = time.monotonic()
        rep = self.with_retries("push artifacts and inputs", lambda: self.dev.push(files), pending=[
            u.unit for u in todo])
        self.push_report = {"files": len(files), "pushed": len(rep.pushed), "skipped": len(rep.skipped),
                            "bytes_pushed": rep.bytes_pushed, "seconds": round(time.monotonic() - t0, 3),
                            "mb_per_s": rep.mb_per_s, "retries": rep.retries}
        log.info("push: %d file(s) sent (%.1f MB), %d already on the device", len(rep.pushed),
                 rep.bytes_pushed / 1e6, len(rep.skipped))

    # ------------------------------------------------------------------------------------------------ retries
    def with_retries(self, what: str, fn: Callable[[], Any], pending: Sequence[str] = ()) -> Any:
        """``fn()``; on a lost device reconnect and try again, ``--retries`` times, then ``DeviceLost``."""
        last: BaseException | None = None
        for attempt in range(self.opts.retries + 1):
            if attempt:
                delay = 0.5 * attempt
                log.warning("%s: device lost during %s (%s); reconnecting in %.1f s (attempt %d/%d)",
                            self.dev.serial, what, last, delay, attempt, self.opts.retries)
                self.events.append(f"retry {attempt} of {what}: {last}")
                time.sleep(delay)
                try:
                    self.dev.transport.reconnect()
                except (DeviceNotFound, DeviceLost) as exc:
                    last = exc
                    continue
            try:
                return fn()
            except DeviceLost as exc:
                last = exc
        raise DeviceLost(self.dev.serial, what, str(getattr(last, "detail", "") or last),
                         completed=[u for u, r in self.results.items() if r.get("status") == "ok"],
                         pending=list(pending), attempts=self.opts.retries + 1) from last

    # ------------------------------------------------------------------------------------------------ units
    def run_units(self) -> None:
        self.ref = build_reference(self.aset, self.opts, Path(self.opts.reference_cache or self.out / "reference"))
        todo = []
        for unit, up in ({} if self.opts.chain_only else self.plans).items():
            prev = self.state.read(self.state.unit_dir(unit))
            if prev is not None and prev.get("status") == "ok" and prev.get("key") == self.unit_key(up) \
                    and not self.opts.force:
                prev["resumed"] = True
                self.results[unit] = prev
                log.info("%s: done in an earlier run (same artifact, runner and device); skipped", unit)
            else:
                if prev is not None and prev.get("status") == "ok":
                    log.info("%s: the earlier result was made with another artifact/runner/device%s; re-running",
                             unit, " (--force)" if self.opts.force else "")
                todo.append(up)
        chain_pending = self.opts.chain and self.chain_possible() is None
        if todo or chain_pending:
            self.push_all(todo)
        else:
            self.push_report = {"files": 0, "pushed": 0, "skipped": 0, "bytes_pushed": 0, "seconds": 0.0,
                                "mb_per_s": None, "retries": 0, "note": "every unit was done in an earlier run"}
        for up in todo:
            pending = [u.unit for u in todo if u.unit not in self.results]
            self.results[up.unit] = self.with_retries(f"unit {up.unit}", lambda up=up: self.run_unit(up), pending)

    def run_unit(self, up: UnitPlan) -> dict:
        o = self.opts
        folder = self.state.unit_dir(up.unit)
        tmp = State.staging(folder)
        extra = list(o.runner_args)
        if self.runner == "ios":
            from ios_harness.driver import compute_units_for
            extra += ["--compute-units", compute_units_for(up.selection.preference.delegate)]
        extra_files = []
        from runtime_py.bench_native import unit_runner_args
        extra += unit_runner_args(up.path, up.selection.preference.delegate)
        if up.io_spec is not None:
            extra += ["--io-spec", f"{self.dev.root}/models/{up.io_spec.name}"]
            extra_files.append(up.io_spec)
        base = self.result_base(up)
        t0 = time.monotonic()
        try:
            res = self.dev.run_model(self.runner_spec(), up.path, self.input_dir(up), warmup=o.warmup,
                                     iterations=o.iterations, timeout_s=o.timeout_s, threads=o.threads,
                                     extra_args=extra, out_dir=tmp, extra_files=extra_files)
        except (RunnerCrashed, RunnerTimeout) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            kind = "timeout" if isinstance(exc, RunnerTimeout) else "crash"
            log.error("%s: runner %s: %s", up.unit, kind, str(exc).splitlines()[0])
            result = {**base, "status": "failed", "failure": kind, "error": str(exc),
                      "seconds": round(time.monotonic() - t0, 3)}
            write_json_atomic(self.out / "units" / f"{up.unit}.failed.json", result)
            return result
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        outputs = self._named_outputs(up, res.outputs, res.timings)
        drift = [compare_outputs(n, outputs[n], ref) if n in outputs
                 else {"name": n, "error": "the runner did not produce this output"}
                 for n, ref in zip(up.output_names, self.ref.unit_outputs[up.unit])]
        t = res.timings
        result = {**base, "status": "ok", "key": self.unit_key(up), "latency_ms": latency_stats(t["iteration_ms"]),
                  "warmup_ms": t.get("warmup_ms", []), "load_ms": t.get("load_ms"), "startup_ms": t.get("startup_ms"),
                  "peak_rss_bytes": t.get("peak_rss_bytes"), "rss_after_load_bytes": t.get("rss_after_load_bytes"),
                  "runtime": t.get("runtime"), "runtime_version": t.get("runtime_version"),
                  "backend": t.get("backend"), "threads": t.get("threads"), "drift": drift,
                  "wall_s": round(res.wall_s, 3), "push_bytes": res.push.bytes_pushed,
                  "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (self.out / "units" / f"{up.unit}.failed.json").unlink(missing_ok=True)
        State.publish(tmp, folder, result)
        s = result["latency_ms"]
        log.info("%s: p50 %.3f ms (min %.3f) on %s; drift %s", up.unit, s["p50"] or math.nan, s["min"] or math.nan,
                 result["backend"], ", ".join(f"{d['name']} {d.get('psnr', math.nan):.1f} dB" for d in drift
                                              if "psnr" in d))
        return result

    def result_base(self, up: UnitPlan) -> dict:
        a = up.entry
        return {"unit": up.unit, "file": up.path.name, "sha256": up.sha256, "target": a.get("target"),
                "backend_exported": a.get("backend"), "precision": a.get("precision"),
                "preferred": str(up.selection.preference), "preference_rank": up.selection.rank,
                "runner": self.runner, "tiling": up.artifact.tiling,
                "calls_per_frame": calls_per_frame(self.geometry, up.unit),
                "reference_window": self.ref.unit_window.get(up.unit), "warmup": self.opts.warmup,
                "iterations": self.opts.iterations}

    @staticmethod
    def _named_outputs(up: UnitPlan, outputs: Mapping[str, np.ndarray], timings: Mapping[str, Any]
                       ) -> dict[str, np.ndarray]:
        got = dict(outputs)
        if set(got) != set(up.output_names) and len(got) == len(up.output_names):
            order = [o["name"] for o in timings.get("outputs", [])] or list(got)
            got = {want: got[have] for want, have in zip(up.output_names, order)}   # positional fallback
        return {n: up.codec.decode(n, a) for n, a in got.items()}

    # ------------------------------------------------------------------------------------------------ chain
    def chain_units(self) -> list[str]:
        return list(self.aset.required_units)

    def chain_possible(self) -> str | None:
        need = self.chain_units()
        missing = [u for u in need if u not in self.plans]
        if missing:
            return f"the selection lacks unit(s) {', '.join(missing)} (" + "; ".join(
                f"{u}: {self.missing.get(u, 'not requested')}" for u in missing) + ")"
        failed = [] if self.opts.chain_only else [u for u in need if self.results.get(u, {}).get("status") != "ok"]
        if failed:
            return f"unit(s) {', '.join(failed)} failed on the device"
        return None

    def run_chain(self) -> None:
        if not self.opts.chain:
            self.chain_note = "skipped (--no-chain)"
            return
        why = self.chain_possible()
        if why is not None:
            self.chain_note = f"not run: {why}"
            log.warning("end-to-end chain %s", self.chain_note)
            return
        for k in range(len(self.ref.frames)):
            try:
                self.chain.append(self.run_frame(k))
            except (RunnerCrashed, RunnerTimeout) as exc:
                self.chain_failed = True
                self.chain_note = f"failed on frame {k}: {exc}"
                log.error("end-to-end chain %s", self.chain_note.splitlines()[0])
                return

    def run_frame(self, k: int) -> dict:
        """The whole chain on the device for evaluation frame ``k``: every unit fed the device outputs of the units
        before it, tiled by :func:`runtime_py.pipeline.run_unit` (the host artifact pipeline's tiling). Each unit runs
        twice through ``run_unit``: once recording the calls it makes (the tiles), then, after the device has run
        all of them in one go, replaying the device outputs so ``run_unit`` stitches them."""
        import torch

        from runtime_py.artifacts import UNIT_IO
        from runtime_py.pipeline import run_unit

        ref = self.ref.frames[k]
        board: dict[str, torch.Tensor] = {n: torch.from_numpy(np.ascontiguousarray(ref[n]))
                                          for n in ("raw", "illum", "ccm")}
        steps = []
        hashes: list[str] = []
        wall0 = time.monotonic()
        window = None
        if "upsample_slice" in self.plans:
            shp = self.plans["upsample_slice"].artifact.input_shapes[1]
            window = (int(shp[3]), int(shp[4]))
        for unit in self.chain_units():
            up = self.plans[unit]
            hashes.append(up.sha256)
            key = _digest({"frame": k, "reference": self.ref.key, "artifacts": hashes, "runner": self.runner_key(),
                           "device": self.device_key})
            folder = self.state.step_dir(k, unit)
            prev = self.state.read(folder)
            if prev is not None and prev.get("key") == key and not self.opts.force:
                board.update({n: torch.from_numpy(v) for n, v in np.load(folder / "outputs.npz").items()})
                prev["resumed"] = True
                steps.append(prev)
                continue
            ins = _chain_inputs(unit, board)
            recorded: list[list[np.ndarray]] = []

            def record(arrays, up=up):
                recorded.append([a.detach().float().numpy() for a in arrays])
                return [torch.zeros(shape) for shape in up.output_shapes]

            with torch.inference_mode():
                run_unit(record, unit, self.geometry, *ins, window=window)
            sets = [{n: up.codec.encode(n, a) for n, a in zip(up.input_names, arrays)} for arrays in recorded]
            t0 = time.monotonic()
            outs_per_set, call_ms, backend = self.with_retries(
                f"chain frame {k} unit {unit}", lambda: self.run_sets(up, sets, f"f{k}"),
                pending=[f"chain {u}" for u in self.chain_units()[len(steps):]])
            replay = iter(outs_per_set)

            def play(_arrays, up=up):
                o = next(replay)
                return [torch.from_numpy(up.codec.decode(n, o[n])) for n in up.output_names]

            with torch.inference_mode():
                outs, _info = run_unit(play, unit, self.geometry, *ins, window=window)
            merged = {name: t.detach().float().numpy() for name, t in zip(UNIT_IO[unit][1], outs)}
            board.update({n: torch.from_numpy(v) for n, v in merged.items()})
            step = {"frame": k, "unit": unit, "key": key, "file": up.path.name, "calls": len(sets),
                    "call_ms": call_ms, "sum_ms": float(sum(call_ms)), "latency_ms": latency_stats(call_ms),
                    "backend": backend, "wall_s": round(time.monotonic() - t0, 3),
                    "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            tmp = State.staging(folder)
            _savez_atomic(tmp / "outputs.npz", merged)
            State.publish(tmp, folder, step)
            steps.append(step)
            log.info("chain frame %d %s: %d call(s), %.2f ms on the device", k, unit, len(sets), step["sum_ms"])
        drift = []
        for name in ("denoised_raw", "lsrgb", "lsrgb_ds", "lsrgb_gain", "lsrgb_gtm", "lsrgb_ltm", "lsrgb_lut",
                     "processed_lsrgb", "gamma_out", "bgu_grid", "srgb_upsampled", "srgb"):
            if name in board and name in ref:
                drift.append(compare_outputs(name, board[name].numpy(), ref[name]))
        _savez_atomic(self.out / "chain" / f"frame{k}" / "final.npz", {"srgb": board["srgb"].numpy()})
        measured = float(sum(s["sum_ms"] for s in steps))
        return {"frame": k, "steps": steps, "measured_ms": measured, "wall_s": round(time.monotonic() - wall0, 3),
                "drift": drift, "final": next((d for d in drift if d["name"] == "srgb"), None)}

    def run_sets(self, up: UnitPlan, sets: Sequence[Mapping[str, np.ndarray]], tag: str
                 ) -> tuple[list[dict[str, np.ndarray]], list[float], str | None]:
        """Run ``sets`` through the unit's artifact on the device in one go; (outputs per set, ms per set, backend).

        The sets travel as one uncompressed tar each way (``tar`` is in toybox): a frame's 15 tiles are then two
        transfers and three shell commands instead of thirty of each."""
        import tarfile

        root = self.dev.root
        local = self.work / "chain" / tag / up.unit
        shutil.rmtree(local, ignore_errors=True)
        names = [f"{i:03d}" for i in range(len(sets))]
        for name, arrays in zip(names, sets):
            _write_npys(local / "in" / name, arrays)
        if self.runner == "ios":                      # the runner app has a batch mode; no shell on an iPhone
            from ios_harness.driver import compute_units_for
            extra = ["--compute-units", compute_units_for(up.selection.preference.delegate)]
            outs, ms, backend = self.dev.run_sets(up.path, local / "in", warmup=1, iterations=1,
                                                  timeout_s=self.opts.timeout_s, extra_args=extra,
                                                  out_dir=local / "out")
            named = [self._named_outputs(up, o, {}) for o in outs]
            shutil.rmtree(local, ignore_errors=True)
            return named, ms, backend
        with tarfile.open(local / "in.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
            for name in names:
                tar.add(local / "in" / name, arcname=name)
        r_in = f"{root}/inputs/chain/{up.unit}"
        r_run = f"{root}/runs/chain-{up.unit}-{uuid.uuid4().hex[:6]}"
        files = list(self.runner_spec().files)
        batch = self.batch_spec()
        if batch is not None:
            files += [f for f in batch.files if f not in files]
        files += self.unit_files(up)
        files.append((local / "in.tar", f"{r_run}/in.tar", False))
        self.dev.shell(f"rm -rf {_q(r_in)} {_q(r_run)} && mkdir -p {_q(r_in)} {_q(r_run)}/out", check=True)
        self.dev.push(files)
        self.dev.shell(f"tar -xf {_q(r_run)}/in.tar -C {_q(r_in)} && rm -f {_q(r_run)}/in.tar", check=True)
        from runtime_py.bench_native import unit_runner_args
        common = ["--model", self.remote_model(up)] + unit_runner_args(up.path, up.selection.preference.delegate)
        if up.io_spec is not None:
            common += ["--io-spec", f"{root}/models/{up.io_spec.name}"]
        if self.opts.threads:
            common += ["--threads", str(self.opts.threads)]
        common += list(self.opts.runner_args)
        if batch is not None:
            argv = list(batch.argv) + common + ["--inputs", r_in, "--outputs", f"{r_run}/out", "--warmup", "1",
                                                "--iterations", "1", "--timings", f"{r_run}/out/timings.json"]
            env = batch.env
        else:
            spec = self.runner_spec()
            one = " ".join(_q(a) for a in spec.argv + tuple(common))
            loop = (f"for s in {' '.join(names)}; do mkdir -p {_q(r_run)}/out/$s && {one} --inputs {_q(r_in)}/$s "
                    f"--outputs {_q(r_run)}/out/$s --warmup 1 --iterations 1 --timings {_q(r_run)}/out/$s/t.json "
                    f">/dev/null || exit $?; done")
            argv, env = ["sh", "-c", loop], spec.env
        res = self.dev.run(argv, timeout_s=self.opts.timeout_s, env=env, cwd=r_run)
        if res.returncode != 0:
            raise RunnerCrashed(self.dev.serial, res.returncode, res.stderr_tail(), up.path.name)
        self.dev.shell(f"cd {_q(r_run)}/out && tar -cf ../out.tar .", check=True)
        self.dev.pull(f"{r_run}/out.tar", local / "out.tar")
        pulled = local / "out"
        with tarfile.open(local / "out.tar") as tar:
            tar.extractall(pulled, filter="data")
        if batch is not None:
            timings = json.loads((pulled / "timings.json").read_text())
            per = timings["sets"]
            backend = timings.get("backend")
        else:
            per, backend = [], None
            for name in names:
                t = json.loads((pulled / name / "t.json").read_text())
                per.append({"name": name, "iteration_ms": t["iteration_ms"], "outputs": t["outputs"]})
                backend = t.get("backend")
        outs, ms = [], []
        for entry in per:
            arrays = {o["name"]: np.load(pulled / entry["name"] / o["file"], allow_pickle=False)
                      for o in entry["outputs"]}
            outs.append(self._named_outputs(up, arrays, {"outputs": entry["outputs"]}))
            ms.append(float(entry["iteration_ms"][0]) if entry["iteration_ms"] else math.nan)
        self.dev.shell(f"rm -rf {_q(r_run)}")
        shutil.rmtree(local, ignore_errors=True)
        return outs, ms, backend

    # ------------------------------------------------------------------------------------------------ report
    def summary(self) -> dict:
        h, w = self.height, self.width
        units = []
        estimate, complete = 0.0, True
        for unit in self.plans:
            r = self.results.get(unit)
            if r is None or r.get("status") != "ok":
                complete = False
                continue
            estimate += (r["latency_ms"]["p50"] or 0.0) * r["calls_per_frame"]
        for unit, r in self.results.items():
            units.append(r)
        chain_units = set(self.chain_units())
        est_complete = complete and chain_units <= set(self.results)
        info = self.info.as_dict() if self.info else None
        return {
            "schema": SCHEMA, "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "profile": self.profile.to_json(), "device": info, "transport": self.opts.transport,
            "runner": self.runner, "artifacts": str(self.artifacts),
            "manifest": {k: self.manifest.get(k) for k in ("geometry", "style", "lut", "denoiser", "policy",
                                                            "created", "updated")},
            "options": {"iterations": self.opts.iterations, "warmup": self.opts.warmup, "frames": self.opts.frames,
                        "threads": self.opts.threads, "timeout_s": self.opts.timeout_s, "retries": self.opts.retries},
            "reference": {"key": self.ref.key, "source": self.ref.source} if hasattr(self, "ref") else None,
            "push": self.push_report, "units": units, "skipped_units": self.missing,
            "estimate_frame_ms": estimate if est_complete else None,
            "estimate_note": ("Σ p50 × calls per frame over every unit of the render" if est_complete else
                              "incomplete: some unit of the render has no result"),
            "chain": self.chain, "chain_note": self.chain_note,
            "measured_frame_ms": float(np.mean([f["measured_ms"] for f in self.chain])) if self.chain else None,
            "chain_failed": self.chain_failed,
            "peak_rss_bytes": max((r.get("peak_rss_bytes") or 0 for r in units if r.get("status") == "ok"),
                                  default=None),
            "events": self.events, "fault": self.fault, "seconds": round(time.monotonic() - self.t0, 3),
            "frame": [h, w], "emulation": self.emulation,
        }

    def write_reports(self) -> dict:
        summary = self.summary()
        write_json_atomic(self.out / "results.json", summary)
        try:
            _write_html(self.out / "report.html", summary, self)
        except Exception as exc:  # noqa: BLE001 — the JSON is the record; a page problem must not lose it
            log.error("could not write the HTML report: %s", exc)
        return summary


# ====================================================================================================== HTML

def _fmt_mib(b: Any) -> Any:
    return None if not b else b / 2 ** 20


def _display(name: str, a: np.ndarray) -> np.ndarray:
    """An image tensor (1, 3, H, W) as an (H, W, 3) picture; linear data sRGB-encoded for viewing."""
    from runtime_py.metrics import linear_to_srgb
    img = np.clip(np.asarray(a, dtype=np.float64)[0].transpose(1, 2, 0), 0.0, 1.0)
    from runtime_py.drift import kind_of
    return linear_to_srgb(img) if kind_of(name) == "linear" or name in RAW_SPACE else img


def _write_html(path: Path, s: Mapping[str, Any], run: "_Run") -> None:
    from runtime_py.metrics import error_heatmap, error_map
    from runtime_py.report import Budget, Section, comparison_row, tool_versions, write_html_report

    d = s.get("device") or {}
    prof = s["profile"]
    sections = []
    meta = [{"field": "profile", "value": f"{prof['name']} ({prof.get('display_name')}, SoC {prof.get('soc')})"},
            {"field": "device", "value": f"{d.get('model')} / {d.get('device')} / {d.get('soc')} / {d.get('abi')} "
                                         f"SDK {d.get('sdk')} ({d.get('serial')} via {d.get('transport')})"},
            {"field": "runner", "value": s["runner"]}, {"field": "artifacts", "value": s["artifacts"]},
            {"field": "frame", "value": f"{s['frame'][1]}x{s['frame'][0]}, tile {s['manifest']['geometry'].get('tile')}"
                                        f", overlap {s['manifest']['geometry'].get('overlap')}"},
            {"field": "reference", "value": (s.get("reference") or {}).get("source")},
            {"field": "iterations / warm-up", "value": f"{s['options']['iterations']} / {s['options']['warmup']}"},
            {"field": "push", "value": json.dumps(s.get("push"))}]
    if s.get("fault"):
        meta.insert(0, {"field": "RUN ABORTED", "value": s["fault"]})
    if s.get("emulation"):
        meta.insert(0, {"field": "TIMINGS FROM EMULATION", "value": s["emulation"]})
    sections.append(Section("Device and run", table=meta,
                            text="Timings are the device runner's own clock around each inference; the Python host "
                                 "runner's peak RSS includes the interpreter and the runtime module."))
    rows = []
    for r in s["units"]:
        lat = r.get("latency_ms") or {}
        rows.append({"unit": r["unit"], "status": r["status"] + (" (resumed)" if r.get("resumed") else ""),
                     "file": r["file"], "precision": r.get("precision"), "preferred": r.get("preferred"),
                     "ran on": r.get("backend") or r.get("error", "")[:120], "calls/frame": r.get("calls_per_frame"),
                     "p50 ms": lat.get("p50"), "p90 ms": lat.get("p90"), "p99 ms": lat.get("p99"),
                     "min ms": lat.get("min"), "mean ms": lat.get("mean"),
                     "p50 × calls": (lat.get("p50") or 0) * (r.get("calls_per_frame") or 0) if lat.get("p50")
                     else None, "peak RSS MiB": _fmt_mib(r.get("peak_rss_bytes")), "load ms": r.get("load_ms")})
    est = s.get("estimate_frame_ms")
    sections.append(Section("Latency per unit (reference inputs)", table=rows,
                            formats={c: ".3f" for c in ("p50 ms", "p90 ms", "p99 ms", "min ms", "mean ms",
                                                        "p50 × calls")} | {"peak RSS MiB": ".1f", "load ms": ".1f"},
                            text=f"Estimated frame time Σ p50 × calls: "
                                 f"{'%.2f ms' % est if est is not None else '— (' + s['estimate_note'] + ')'}"))
    drift_rows, images = [], []
    for r in s["units"]:
        for m in r.get("drift", []):
            drift_rows.append({"unit": r["unit"], "output": m["name"], "kind": m.get("kind"),
                               "psnr": m.get("psnr"), "ssim": m.get("ssim"), "de2000_mean": m.get("de2000_mean"),
                               "de2000_p95": m.get("de2000_p95"), "de2000_max": m.get("de2000_max"),
                               "max_abs": m.get("max_abs"), "error": m.get("error")})
        if r.get("status") != "ok":
            continue
        folder = run.state.unit_dir(r["unit"]) / "outputs"
        up = run.plans.get(r["unit"])
        refs = run.ref.unit_outputs.get(r["unit"], [])
        for name, ref in zip(up.output_names if up else [], refs):
            f = folder / (sanitize_name(name) + ".npy")
            if ref is None or not f.is_file() or ref.ndim != 4 or ref.shape[1] != 3 or min(ref.shape[2:]) < 8:
                continue
            dev = run.plans[r["unit"]].codec.decode(name, np.load(f))
            if dev.shape != ref.shape:
                continue
            err = error_map(_display(name, dev), _display(name, ref))
            vmax = max(float(err.max()), 1e-6)
            images.append(comparison_row(_display(name, ref), _display(name, dev),
                                         error_heatmap(_display(name, dev), _display(name, ref), vmax=vmax),
                                         f"{r['unit']}.{name}", vmax=vmax, unit="|ΔRGB|"))
            break
    sections.append(Section("Drift per unit (device vs PyTorch reference, on the reference's inputs)",
                            table=drift_rows, budgets={"psnr": Budget(min=DRIFT_BUDGETS["psnr"]),
                                                       "de2000_mean": Budget(max=DRIFT_BUDGETS["de2000_mean"])},
                            image_rows=images[:12],
                            text="Tiled units: the middle window of the tile plan. sRGB images: ΔE2000 on the values; "
                                 "linear images: ΔE2000 of the sRGB-encoded values; raw and parameters: PSNR (peak 1) "
                                 "and max |Δ|. Images: linear data sRGB-encoded for display."))
    if s.get("chain"):
        for fr in s["chain"]:
            step_rows = [{"unit": st["unit"], "calls": st["calls"], "Σ ms (measured)": st["sum_ms"],
                          "p50 ms": st["latency_ms"]["p50"], "ran on": st.get("backend"), "wall s": st["wall_s"],
                          "resumed": bool(st.get("resumed"))} for st in fr["steps"]]
            final = fr.get("final") or {}
            text = (f"Measured frame time (Σ of every inference of the frame on the device): {fr['measured_ms']:.2f} ms;"
                    f" estimate Σ p50 × calls: {'%.2f ms' % est if est is not None else '—'}; wall time of the chain "
                    f"(transfers, runner start-up, host tiling included): {fr['wall_s']:.1f} s. Final image vs the "
                    f"reference render: PSNR {format(final.get('psnr'), '.2f') if final.get('psnr') is not None else '—'}"
                    f" dB, ΔE2000 mean {format(final.get('de2000_mean'), '.3f') if final.get('de2000_mean') is not None else '—'}.")
            imgs = []
            fin = run.out / "chain" / f"frame{fr['frame']}" / "final.npz"
            if fin.is_file():
                dev_img = np.load(fin)["srgb"]
                ref_img = run.ref.frames[fr["frame"]]["srgb"]
                de = error_map(_display("srgb", dev_img), _display("srgb", ref_img), mode="de2000")
                vmax = max(float(np.percentile(de, 99.9)), 0.5)
                imgs.append(comparison_row(_display("srgb", ref_img), _display("srgb", dev_img),
                                           error_heatmap(_display("srgb", dev_img), _display("srgb", ref_img),
                                                         vmax=vmax, mode="de2000"),
                                           f"frame {fr['frame']}", vmax=vmax, unit="ΔE00"))
            sections.append(Section(f"End to end on the device, frame {fr['frame']}", table=step_rows,
                                    formats={"Σ ms (measured)": ".2f", "p50 ms": ".3f", "wall s": ".1f"},
                                    text=text, image_rows=imgs))
            sections.append(Section(f"Chain drift, frame {fr['frame']} (device chain vs reference intermediates)",
                                    table=[{"tensor": m["name"], "kind": m.get("kind"), "psnr": m.get("psnr"),
                                            "ssim": m.get("ssim"), "de2000_mean": m.get("de2000_mean"),
                                            "de2000_p95": m.get("de2000_p95"), "de2000_max": m.get("de2000_max"),
                                            "max_abs": m.get("max_abs"), "error": m.get("error")}
                                           for m in fr["drift"]],
                                    budgets={"psnr": Budget(min=DRIFT_BUDGETS["psnr"]),
                                             "de2000_mean": Budget(max=DRIFT_BUDGETS["de2000_mean"])}))
    else:
        sections.append(Section("End to end on the device", text=f"The chain was {s.get('chain_note') or 'not run'}."))
    if s.get("skipped_units"):
        sections.append(Section("Units not run", table=[{"unit": u, "why": why}
                                                       for u, why in s["skipped_units"].items()]))
    if s.get("events"):
        sections.append(Section("Events", table=[{"event": e} for e in s["events"]]))
    title = f"ISP on {prof.get('display_name') or prof['name']} ({d.get('serial', '?')}) — {Path(s['artifacts']).name}"
    write_html_report(path, title, sections, versions=tool_versions("onnxruntime", "executorch"))


# ====================================================================================================== entry points

def run_bench(opts: BenchOptions) -> tuple[int, dict | None]:
    """Run the whole benchmark; returns ``(exit code, results dict or None)``. Raises nothing for expected faults:
    they are logged and mapped to exit codes (the partial report is written)."""
    run = _Run(opts)
    try:
        run.setup()
        run.connect()
    except BenchError as exc:
        log.error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return exc.code, None
    except (DeviceNotFound, DeviceUnauthorized, DeviceLost, HarnessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DEVICE, None
    try:
        run.check_runner()
        run.run_units()
        run.run_chain()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code, None
    except (DeviceLost, DeviceStorageFull, DeviceUnauthorized, DeviceNotFound, HarnessError) as exc:
        done = [u for u, r in run.results.items() if r.get("status") == "ok"]
        pending = [u for u in run.plans if u not in done]
        msg = (f"{exc}\nFinished units ({len(done)}): {', '.join(done) or 'none'} — kept in {run.out / 'units'} "
               f"and skipped when the same command is run again. Not finished: {', '.join(pending) or 'none'}"
               f"{' (and the end-to-end chain)' if opts.chain else ''}.")
        run.fault = msg
        print(f"error: {msg}", file=sys.stderr)
        if hasattr(run, "ref"):
            run.write_reports()
        return EXIT_DEVICE, None
    finally:
        if run.dev is not None:
            run.dev.close()
    summary = run.write_reports()
    failed = [r["unit"] for r in summary["units"] if r.get("status") != "ok"]
    ok = len(summary["units"]) - len(failed)
    if run.chain_failed:
        print(f"error: the end-to-end chain {run.chain_note}", file=sys.stderr)
        failed.append("(end-to-end chain)")
    measured = summary.get("measured_frame_ms")
    est = summary.get("estimate_frame_ms")
    if run.emulation:
        print(run.emulation, file=sys.stderr)
    print(f"{ok}/{len(summary['units'])} unit(s) on {summary['device'].get('model')} ({run.runner} runner); "
          f"frame {summary['frame'][1]}x{summary['frame'][0]}: measured "
          f"{'%.2f ms' % measured if measured is not None else '—'}, estimate "
          f"{'%.2f ms' % est if est is not None else '—'}; report {run.out / 'report.html'}")
    if failed:
        print(f"failed unit(s): {', '.join(failed)} (see {run.out / 'results.json'})", file=sys.stderr)
        return EXIT_FAILED, summary
    return EXIT_OK, summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runtime_py.bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="See the module docstring (python -c 'import runtime_py.bench as b; "
                                       "help(b)') for the whole flow, resume and fault handling.")
    p.add_argument("--device", required=True, help="device profile: pixel8, galaxy-s24, iphone-15-pro, host, or one "
                                                   "from --profile-file / the user profile folder")
    p.add_argument("--artifacts", type=Path, default=None,
                   help="exported artifact folder (manifest.json); default ./artifacts, exported there first for "
                        "the profile when it holds no set")
    p.add_argument("--export-args", default="", help="extra convert/export.py arguments for that export "
                                                     "(shell-quoted, e.g. '--size 512x320 --tile 128')")
    p.add_argument("--out", type=Path, default=Path("bench_out"), help="results folder (default bench_out); a "
                                                                     "re-run with the same folder resumes")
    add_adb_args(p)
    p.add_argument("--iterations", type=int, default=10, help="timed inferences per unit (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed inferences before timing (default 3)")
    p.add_argument("--eval-set", type=Path, default=None,
                   help="calibration eval set at the artifacts' geometry (python -m calibration build)")
    p.add_argument("--eval-dng", type=Path, default=None,
                   help="DNG to centre-crop into the evaluation frame (default: a shipped DNG)")
    p.add_argument("--frames", type=int, default=1, help="evaluation frames for the end-to-end chain (default 1)")
    p.add_argument("--runner", choices=("auto", "host", "native", "ios"), default="auto",
                   help="host: android_harness/host_runner.py (needs a Python with the runtimes on the device); "
                        "native: on Android the arm64 bundle (isp_et_runner .pte + isp_litert_runner .tflite, "
                        "android_harness/bundle.py), elsewhere isp_et_runner; ios: the Core ML runner app "
                        "(iPhone profiles); auto: native for Android, "
                        "ios for an iPhone, else native when it is built and covers every unit, else host")
    p.add_argument("--device-python", default=sys.executable, help="device path of the Python for --runner host")
    p.add_argument("--native-runner", type=Path, default=None, help="isp_et_runner binary for the device")
    p.add_argument("--native-lib", action="append", default=[], help="shared library the native runner needs")
    p.add_argument("--units", default=None, help="comma list of units to run (default: every unit)")
    p.add_argument("--precision", default=None, help="precision preference, comma list (default: the profile's)")
    p.add_argument("--force", action="store_true", help="redo units and chain steps finished in an earlier run")
    p.add_argument("--no-chain", action="store_true", help="skip the measured end-to-end run")
    p.add_argument("--chain-only", action="store_true", help="only the measured end-to-end run (its steps carry the "
                                                            "per-unit device time and drift); for slow devices")
    p.add_argument("--retries", type=int, default=2, help="reconnects after a lost device, per step (default 2)")
    p.add_argument("--timeout-s", type=float, default=600.0, help="runner timeout per invocation (default 600)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the runtime")
    p.add_argument("--runner-args", default="", help="extra runner arguments (shell-quoted string)")
    p.add_argument("--profile-file", action="append", default=[], help="extra device profile file (.json/.toml)")
    p.add_argument("--allow-mismatch", action="store_true", help="benchmark --serial even if it is another model")
    p.add_argument("--root", default=None, help="device work folder (default: the profile's work_dir)")
    p.add_argument("--connect-timeout-s", type=float, default=10.0)
    p.add_argument("--auth-timeout-s", type=float, default=10.0,
                   help="how long to wait for the phone to accept this host's key (default 10)")
    p.add_argument("--weights", type=Path, default=None, help="reference weights (default: the manifest's)")
    p.add_argument("--ios-tool", choices=("devicectl", "ios-deploy"), default="devicectl",
                   help="iPhone profiles: how to reach the device (ios_harness/driver.py)")
    p.add_argument("--ios-app", default=None, help="iPhone profiles: the IspBenchRunner.app bundle")
    p.add_argument("--ios-install", action="store_true", help="iPhone profiles: install --ios-app first")
    p.add_argument("--reference-cache", type=Path, default=None,
                   help="folder caching the reference renders (default OUT/reference); shareable between runs")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    if args.iterations < 1 or args.warmup < 0 or args.frames < 1 or args.retries < 0:
        print("error: need --iterations >= 1, --warmup >= 0, --frames >= 1, --retries >= 0", file=sys.stderr)
        return EXIT_USAGE
    opts = BenchOptions(
        device=args.device, artifacts=args.artifacts, out=args.out, serial=args.serial, transport=args.transport,
        key=args.key, iterations=args.iterations, warmup=args.warmup, eval_set=args.eval_set,
        eval_dng=args.eval_dng, frames=args.frames, runner=args.runner, device_python=args.device_python,
        native_runner=args.native_runner, native_libs=tuple(args.native_lib),
        units=tuple(u.strip() for u in args.units.split(",") if u.strip()) if args.units else None,
        precision=tuple(p.strip() for p in args.precision.split(",") if p.strip()) if args.precision else None,
        force=args.force, chain=not args.no_chain, retries=args.retries, timeout_s=args.timeout_s,
        threads=args.threads, runner_args=tuple(shlex.split(args.runner_args)),
        profile_files=tuple(args.profile_file), allow_mismatch=args.allow_mismatch, root=args.root,
        connect_timeout_s=args.connect_timeout_s, auth_timeout_s=args.auth_timeout_s, weights=args.weights,
        reference_cache=args.reference_cache, ios_tool=args.ios_tool, ios_app=args.ios_app,
        ios_install=args.ios_install, export_args=args.export_args, chain_only=args.chain_only)
    code, _ = run_bench(opts)
    return code


if __name__ == "__main__":
    sys.exit(main())
