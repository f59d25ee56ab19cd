"""``python -m runtime_py.bench`` without ``--artifacts``: the set it runs, exported first when there is none.

:func:`resolve_artifacts` returns ``--artifacts`` when given; else ``./artifacts`` when it holds a set
(``manifest.json``); else it exports the profile's default set there (:func:`default_export_args`: the first target
of the profile's preferences that the native runners execute, in the profile's first precision — ``int8`` is the
design's int8 policy) and returns it. One command goes from the PyTorch weights to the device report.

* **Geometry.** On a phone the exporter's default (12 MP, tile 528: isp.geometry.auto_tile). On an *emulated* stand-in (the arm64 device of
  ``scripts/arm64_device.sh``, whose timings are labelled emulation) a 12 MP frame would take hours, so the CI
  geometry :data:`EMULATION_GEOMETRY` (512x320, tile 128) is used and said. ``--export-args`` (convert/export.py
  arguments) goes through either way: a ``--size`` or ``--tile`` there is the geometry, a ``--target`` /
  ``--precision`` / ``--policy`` there replaces the profile's choice.
* **Checked first.** ``--export-args`` is parsed by the exporter's own parser and its geometry checked before the
  device is asked anything or a minute is spent (:func:`export_argv`: a typo, a bad size, ``--out``, or a target the
  device's runner cannot load is a :class:`ExportArgsError` naming the argument); the device is probed (model,
  emulation) before the export too, so a wrong ``--serial`` fails at once.
* **Atomic.** The exporter writes into a hidden sibling (``.artifacts.<pid>-<random>.export``), which becomes
  ``./artifacts`` only after the exporter exited 0 with every unit exported (one rename; the manifest's
  calibration paths are rewritten to the final folder first). A failed, interrupted (Ctrl-C) or killed export leaves
  no ``./artifacts``; the staging folder is removed (that of a killed run by the next run), except a complete
  calibration set, kept as ``.artifacts.calibration`` and moved into the next try's staging folder (the exporter
  reuses it when geometry and style match: the reference renders are the larger part of an int8 export).
  ``./artifacts`` that exists without a manifest is not touched: an error says so.
* **Progress.** The exporter's own progress bar and summary table on the terminal, and the export's wall time.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from isp.atomic import publish_dir, temp_sibling
from isp.jsonio import write_json_atomic

log = logging.getLogger("runtime_py.bench")

__all__ = ["EMULATION_GEOMETRY", "ExportArgsError", "default_export_args", "export_argv", "resolve_artifacts",
           "export_default_set", "EXPORTER"]

EXPORTER = Path(__file__).resolve().parents[2] / "convert" / "export.py"
#: exporter target of each profile preference target
_EXPORT_TARGET = {"executorch": "executorch", "tflite": "tflite", "litert": "tflite", "onnx": "onnx"}
#: the geometry of an export for an emulated stand-in device (the CI geometry): size, tile
EMULATION_GEOMETRY = ("512x320", "128")
_STAGING_TAG = "export"


class ExportArgsError(ValueError):
    """``--export-args`` cannot make a set for this benchmark (the message names the argument and the fix)."""


def default_export_args(profile) -> list[str]:
    """The profile's default set: its first preference's target the native runners execute, in the profile's
    first precision (``int8`` → the design's int8 policy, which keeps the precision-critical units in float)."""
    target = next((_EXPORT_TARGET[p.target] for p in profile.preferences if p.target in _EXPORT_TARGET
                   and _EXPORT_TARGET[p.target] != "onnx"), "executorch")
    first = profile.precisions[0] if profile.precisions else "fp32"
    return ["--target", target] + (["--policy", "int8"] if first == "int8" else ["--precision", first])


def _exporter_parser() -> argparse.ArgumentParser:
    """convert/export.py's parser, raising :class:`ExportArgsError` instead of printing usage and exiting."""
    from convert.export import build_parser

    p = build_parser()

    def fail(message: str) -> None:
        raise ExportArgsError(message)

    p.error = fail                                          # type: ignore[method-assign]
    p.exit_on_error = False
    return p


def export_argv(profile, export_args: str = "", emulated: bool = False,
                runnable: Sequence[str] | None = None) -> tuple[list[str], str | None]:
    """The exporter's arguments (without ``--out``) for ``profile``'s default set with ``export_args`` merged in,
    and a note on the geometry chosen (or None). ``runnable``: artifact suffixes the device's runner loads (a target
    outside them is refused). Raises :class:`ExportArgsError` with the reason."""
    try:
        extra = shlex.split(export_args)
    except ValueError as exc:
        raise ExportArgsError(f"--export-args {export_args!r}: {exc} (quote it as one shell word, e.g. "
                              f"--export-args '--size 512x320 --tile 128')") from None
    given = {a.split("=", 1)[0] for a in extra if a.startswith("--")}
    if "--out" in given:
        raise ExportArgsError("--export-args must not set --out: the set goes to ./artifacts (pass --artifacts DIR "
                              "to benchmark a set exported elsewhere)")
    argv = default_export_args(profile)                       # ["--target", T, "--policy"|"--precision", P]
    if "--target" in given:
        argv = argv[2:]
    if given & {"--precision", "--policy"}:
        argv = [a for i, a in enumerate(argv) if a not in ("--policy", "--precision")
                and (i == 0 or argv[i - 1] not in ("--policy", "--precision"))]
    note = None
    if emulated and not given & {"--size", "--tile"}:
        argv += ["--size", EMULATION_GEOMETRY[0], "--tile", EMULATION_GEOMETRY[1]]
        note = (f"the device is an emulated stand-in: exporting at the CI geometry {EMULATION_GEOMETRY[0]}, tile "
                f"{EMULATION_GEOMETRY[1]} (a 12 MP frame takes hours under emulation; --export-args '--size 12mp "
                f"--tile 512' overrides)")
    argv += extra
    try:
        ns = _exporter_parser().parse_args(argv + ["--out", "_"])
    except argparse.ArgumentError as exc:
        raise ExportArgsError(f"--export-args {export_args!r}: {exc}") from None
    except ExportArgsError as exc:
        raise ExportArgsError(f"--export-args {export_args!r}: {exc} (see python convert/export.py --help)") from None
    except SystemExit:                                        # --help / --version print and exit
        raise ExportArgsError(f"--export-args {export_args!r}: give export options, not --help (see python "
                              f"convert/export.py --help)") from None
    from convert.policy import load_policy
    from isp.geometry import FrameGeometry, parse_size
    try:
        FrameGeometry(*parse_size(ns.size), ns.tile, ns.overlap)
        load_policy(ns.precision, ns.policy)
    except (ValueError, FileNotFoundError) as exc:
        raise ExportArgsError(f"--export-args {export_args!r}: {exc}") from None
    if runnable is not None:
        from isp.units import TARGET_EXT, normalize_target
        ext = "." + TARGET_EXT[normalize_target(ns.target)]
        if ext not in runnable:
            raise ExportArgsError(f"--export-args: --target {ns.target} makes {ext} files, which the "
                                  f"{profile.name} runner does not load ({', '.join(runnable)})")
    return argv, note


def _remove_stale_staging(out: Path) -> None:
    """Staging folders of earlier exports into ``out`` whose process is gone (killed before it could clean up)."""
    for p in out.parent.glob(f".{out.name}.*.{_STAGING_TAG}"):
        pid = p.name[len(out.name) + 2:].split("-", 1)[0]
        try:
            os.kill(int(pid), 0)
            continue                                          # still exporting (another bench run)
        except (ValueError, ProcessLookupError):
            pass
        except PermissionError:
            continue
        log.warning("removing the staging folder of an unfinished export: %s", p)
        _keep_calibration(p, out)
        shutil.rmtree(p, ignore_errors=True)


def _calibration_cache(out: Path) -> Path:
    """Where the calibration set of an export that did not finish waits for the next try (hidden sibling)."""
    return out.parent / f".{out.name}.calibration"


def _keep_calibration(staging: Path, out: Path) -> None:
    """Move a complete calibration set out of a failed export's staging folder (the exporter rebuilds it only when
    its geometry or style differs), so the retry does not render the reference frames again."""
    cal = staging / "calibration"
    if (cal / "calib" / "set.json").is_file():
        publish_dir(cal, _calibration_cache(out))
        log.warning("kept the calibration set of the unfinished export for the next try: %s", _calibration_cache(out))


def _relocate_manifest(staging: Path, out: Path) -> None:
    """Point the manifest's calibration paths (written while the set was in ``staging``) at ``out``."""
    path = staging / "manifest.json"
    manifest = json.loads(path.read_text())
    cal = manifest.get("calibration") or {}
    for key in ("path", "eval"):
        if isinstance(cal.get(key), str) and cal[key].startswith(str(staging)):
            cal[key] = str(out) + cal[key][len(str(staging)):]
    write_json_atomic(path, manifest)


def export_default_set(argv: Sequence[str], out: Path, what: str,
                       run: Callable[..., subprocess.CompletedProcess] | None = None) -> float:
    """Run ``convert/export.py ARGV --out STAGING`` and rename the finished set onto ``out`` (see the module
    docstring); returns the export's wall time in seconds. ``RuntimeError`` (with the command) when it fails."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(out)
    staging = temp_sibling(out, _STAGING_TAG)
    shown = [sys.executable, str(EXPORTER), *argv, "--out", str(out)]
    print(f"[export] no --artifacts and no set in {out}: exporting {what} first (progress below; the set appears "
          f"in {out} only when complete):\n  {' '.join(shlex.quote(c) for c in shown)}", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    cached = _calibration_cache(out)
    try:
        if (cached / "calib" / "set.json").is_file():
            staging.mkdir()
            os.replace(cached, staging / "calibration")
            print(f"[export] reusing the calibration set of an earlier, unfinished export ({cached.name})",
                  file=sys.stderr, flush=True)
        r = (run or subprocess.run)([sys.executable, str(EXPORTER), *argv, "--out", str(staging)])
        seconds = time.monotonic() - t0
        manifest = staging / "manifest.json"
        failures = json.loads(manifest.read_text()).get("failures") if manifest.is_file() else None
        if r.returncode != 0 or not manifest.is_file() or failures:
            why = (f"exit {r.returncode}" + (f"; failed: {', '.join(f['unit'] for f in failures)}" if failures else "")
                   + ("" if manifest.is_file() else "; no manifest written"))
            raise RuntimeError(f"the export of {what} failed ({why}) after {seconds:.0f} s; nothing was written to "
                               f"{out}. Run it yourself to see why: {' '.join(shlex.quote(c) for c in shown)}")
        _relocate_manifest(staging, out)
        publish_dir(staging, out)
    finally:
        if staging.exists():
            _keep_calibration(staging, out)
            shutil.rmtree(staging, ignore_errors=True)
    print(f"[export] done in {seconds:.0f} s: {out}", file=sys.stderr, flush=True)
    return seconds


def resolve_artifacts(artifacts: Path | None, profile, export_args: str = "", out: Path = Path("artifacts"),
                      probe: Callable[[], bool] | None = None, runnable: Sequence[str] | None = None
                      ) -> tuple[Path, dict | None]:
    """``(folder, export record or None)``: ``artifacts`` itself, or ``out`` when it holds a set, or ``out`` after
    exporting the profile's default set into it. ``probe()`` (called only when an export is needed, after the
    arguments are checked) opens the device and says whether it is emulated; ``runnable``: see
    :func:`export_argv`."""
    if artifacts is not None or (out / "manifest.json").is_file():
        found = Path(artifacts) if artifacts is not None else out
        if export_args.strip():
            print(f"warning: --export-args ignored: nothing is exported, the set in {found.resolve()} is used "
                  f"(move it away to export a new one)", file=sys.stderr, flush=True)
        if artifacts is None:
            log.warning("no --artifacts: using the set in %s", out.resolve())
        return found, None
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportArgsError(f"no --artifacts, and {out.resolve()} exists but holds no artifact set (no "
                              f"manifest.json); move it away, or pass --artifacts DIR")
    export_argv(profile, export_args, False, runnable)          # bad arguments fail before the device is asked
    emulated = bool(probe()) if probe is not None else False
    argv, note = export_argv(profile, export_args, emulated, runnable)
    if note:
        print(f"[export] {note}", file=sys.stderr, flush=True)
    seconds = export_default_set(argv, out, f"the {profile.name} default set")
    return out, {"argv": argv, "seconds": round(seconds, 1), "note": note, "emulated": emulated}
