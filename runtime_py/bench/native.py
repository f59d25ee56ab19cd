"""What ``python -m runtime_py.bench`` needs for an Android phone beyond the harness: the native arm64 runners.
:mod:`runtime_py.bench.device` puts these in its tables (Android's own ``native`` runner entry, its emulation
check); nothing here asks which platform it is on.

* :func:`android_runner_spec` — the arm64 push bundle (:mod:`android_harness.bundle`: ``isp_et_runner`` for ``.pte``,
  ``isp_litert_runner`` for ``.tflite``, with the glibc loader and libraries they need), built on first use and
  cached; pushed to ``<root>/arm64`` once (sha256 skip) and started through its launcher script.
* :func:`emulation_note` — a stand-in device's timings labelled as emulation.

Without ``--artifacts``, the set (``./artifacts``, or the profile's default set exported there first) comes from
:mod:`runtime_py.bench.default_set`.
"""
from __future__ import annotations

import logging
from pathlib import Path

from android_harness.device import RunnerSpec

log = logging.getLogger("runtime_py.bench")

#: formats the arm64 bundle runs (ExecuTorch and LiteRT runners)
BUNDLE_SUFFIXES = (".pte", ".tflite")


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
