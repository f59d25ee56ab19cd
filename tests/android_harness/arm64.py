"""The arm64 stand-in for tests: ``scripts/arm64_device.sh`` (busybox-only userland, qemu-user via binfmt) and the
arm64 runner bundle (``android_harness.bundle``), both cached across sessions; fakeadbd.py started in arm64 mode.

Missing pieces (no qemu / binfmt / cross toolchain) skip with the reason, or fail under CI (where setup.sh installs
them)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.android_harness.conftest import _skip_or_fail

ROOT = Path(__file__).resolve().parents[2]
#: getprop values of the arm64 stand-in: a Galaxy S24 that says it is an emulator (ro.kernel.qemu=1, Android's own
#: emulator convention), so the bench labels its timings as emulation
S24_ARM64_PROPS = {
    "ro.product.model": "SM-S921B", "ro.product.device": "e1s", "ro.product.name": "e1sxeea",
    "ro.product.manufacturer": "samsung", "ro.soc.manufacturer": "Samsung", "ro.soc.model": "s5e9945",
    "ro.build.version.sdk": "34", "ro.build.version.release": "14", "ro.product.cpu.abi": "arm64-v8a",
    "ro.kernel.qemu": "1",
}


def arm64_userland() -> Path:
    """``scripts/arm64_device.sh`` into ``$ISP_ARM64_CACHE/device`` (made once); the rootfs folder."""
    from android_harness.bundle import cache_root
    if shutil.which("qemu-aarch64-static") is None and not os.environ.get("CI"):
        pytest.skip("the arm64 stand-in needs qemu-user-static + binfmt (bash scripts/arm64_device.sh DIR as root)")
    folder = cache_root() / "device"
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "arm64_device.sh"), str(folder)], capture_output=True,
                          text=True, timeout=900)
    if proc.returncode != 0:
        _skip_or_fail(f"scripts/arm64_device.sh failed: {proc.stderr.strip()[-1500:]}")
    return folder / "rootfs"


def arm64_bundle() -> Path:
    from android_harness.bundle import BundleError, ensure_bundle
    try:
        return ensure_bundle()
    except BundleError as exc:
        _skip_or_fail(f"the arm64 runner bundle cannot be built here: {exc}")


def arm64_fakeadbd_args(rootfs: Path, fakeadbd: Path) -> list[str]:
    return ["--rootfs", str(rootfs), "--cpuinfo", str(fakeadbd.with_name("arm64-cpuinfo.txt")),
            "--qemu-cpu", "cortex-a76"]
