"""What ``python -m runtime_py.bench`` needs for an Android phone beyond the harness: the native arm64 runners and,
without ``--artifacts``, an artifact set. :mod:`runtime_py.bench.device` puts these in its tables (Android's own
``native`` runner entry, its emulation check); nothing here asks which platform it is on.

* :func:`android_runner_spec` — the arm64 push bundle (:mod:`android_harness.bundle`: ``isp_et_runner`` for ``.pte``,
  ``isp_litert_runner`` for ``.tflite``, with the glibc loader and libraries they need), built on first use and
  cached; pushed to ``<root>/arm64`` once (sha256 skip) and started through its launcher script.
* :func:`emulation_note` — a stand-in device's timings labelled as emulation.
* :func:`resolve_artifacts` — ``--artifacts`` when given; else ``./artifacts`` when it holds a set; else the
  profile's default set is exported there first (``convert/export.py``, its progress on the terminal).
"""
from __future__ import annotations

import logging
import shlex
import subprocess
import sys
from pathlib import Path

from android_harness.device import RunnerSpec

log = logging.getLogger("runtime_py.bench")

#: formats the arm64 bundle runs (ExecuTorch and LiteRT runners)
BUNDLE_SUFFIXES = (".pte", ".tflite")
#: exporter target of each profile preference target
_EXPORT_TARGET = {"executorch": "executorch", "tflite": "tflite", "litert": "tflite", "onnx": "onnx"}


def android_runner_spec(root: str) -> RunnerSpec:
    """The arm64 bundle as a runner (built and cached on first use: ``python -m android_harness.bundle``)."""
    from android_harness.bundle import BundleError, bundle_runner_spec, ensure_bundle
    try:
        folder = ensure_bundle()
    except BundleError as exc:
        raise RuntimeError(f"--runner native needs the arm64 runner bundle: {exc}") from None
    log.info("arm64 runner bundle: %s", folder)
    return bundle_runner_spec(folder, root=root)


def unit_runner_args(path: Path, delegate: str | None) -> list[str]:
    """Runner flags a unit's artifact needs: the LiteRT runner asks for the GPU accelerator when the profile chose
    the GPU delegate (it falls back to the CPU, and says so, where the device has no GPU)."""
    if path.suffix == ".tflite" and delegate == "gpu":
        return ["--accelerator", "gpu"]
    return []


def default_export_args(profile) -> list[str]:
    """The profile's default set: its first preference's target the native runners execute, in the profile's
    first precision (``int8`` → the design's int8 policy, which keeps the precision-critical units in float)."""
    target = next((_EXPORT_TARGET[p.target] for p in profile.preferences if p.target in _EXPORT_TARGET
                   and _EXPORT_TARGET[p.target] != "onnx"), "executorch")
    first = profile.precisions[0] if profile.precisions else "fp32"
    return ["--target", target] + (["--policy", "int8"] if first == "int8" else ["--precision", first])


def resolve_artifacts(artifacts: Path | None, profile, export_args: str = "", out: Path = Path("artifacts")
                      ) -> Path:
    """``artifacts`` itself, or ``./artifacts`` when it holds a set, or that folder after exporting the profile's
    default set into it (``export_args`` are added to the exporter's command line, e.g. ``--size 512x320``; a
    ``--target`` or ``--precision``/``--policy`` there replaces the profile's)."""
    if artifacts is not None:
        return Path(artifacts)
    if (out / "manifest.json").is_file():
        log.warning("no --artifacts: using the set in %s", out.resolve())
        return out
    extra = shlex.split(export_args)
    defaults = default_export_args(profile)            # ["--target", T, "--policy"|"--precision", P]
    if "--target" in extra:
        defaults = defaults[2:]
    if "--precision" in extra or "--policy" in extra:
        defaults = [a for i, a in enumerate(defaults) if a not in ("--policy", "--precision")
                    and (i == 0 or defaults[i - 1] not in ("--policy", "--precision"))]
    cmd = [sys.executable, str(Path(__file__).resolve().parents[2] / "convert" / "export.py"),
           *defaults, *extra, "--out", str(out)]
    print(f"no --artifacts and no set in {out}: exporting the {profile.name} default set first:\n  "
          f"{' '.join(shlex.quote(c) for c in cmd)}", file=sys.stderr, flush=True)
    r = subprocess.run(cmd)
    if r.returncode != 0 or not (out / "manifest.json").is_file():
        raise RuntimeError(f"the export for {profile.name} failed (exit {r.returncode}); run it yourself: "
                           f"{' '.join(shlex.quote(c) for c in cmd)}")
    return out


def emulation_note(dev) -> str | None:
    """A line saying the device's timings come from emulation, or None for a phone. Android's emulator convention
    ``ro.kernel.qemu=1`` (the stand-in sets it in arm64 mode) or a kernel release without ``android`` (every
    phone kernel has it) mark a stand-in; the CPU model comes from the device's ``/proc/cpuinfo``."""
    res = dev.shell("getprop ro.kernel.qemu; uname -r; uname -m", retry=True)
    lines = (res.text.splitlines() + ["", "", ""])[:3]
    qemu, release, machine = (x.strip() for x in lines)
    if qemu != "1" and "android" in release.lower():
        return None
    why = "ro.kernel.qemu=1" if qemu == "1" else f"kernel {release or '?'} is not an Android kernel"
    return (f"EMULATION: {machine or '?'} code on a stand-in device ({why}), e.g. qemu-user on an x86 host — "
            f"timings are not a phone's (typically 10-100x slower); drift is the ARM kernels' own")
