"""The device a benchmark runs on, opened through one table keyed by the profile's platform, and the runners.

:data:`PLATFORMS` says, per platform (``runtime_py.devices.PLATFORMS``): how to open the device (an
``android_harness.device.AndroidDevice`` over adb / adb-shell, the same over :class:`LocalTransport` for ``host``, an
``ios_harness.device.IosDevice``), which runners it can run (the first is what ``--runner auto`` falls back to),
where a native runner build for it lives, whether ``--runner host`` needs a Python on the device, and the per-unit
runner arguments (the Core ML compute units of an iPhone), its own entries for a runner name (Android's ``native``
is the arm64 push bundle of :mod:`runtime_py.bench.native`: ExecuTorch and LiteRT runners), what ``--runner auto``
picks outright, and how to tell an emulated device (its timings are labelled). :data:`RUNNERS` says, per runner,
which artifact files it loads and how it is started. The benchmark itself never asks which platform or runner it
has: it reads these tables, and asks the opened device what it can do (a device with ``run_sets`` runs a chain
step's tiles itself).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from android_harness.device import AndroidDevice, DeviceInfo, RunnerSpec, host_runner_spec, native_runner_spec
from android_harness.faults import CommandTimeout, DeviceMismatch, DeviceStorageFull
from android_harness.transport import ShellResult
from isp.atomic import replace_path
from runtime_py.bench import native
from runtime_py.bench.options import EXIT_USAGE, BenchError, BenchOptions
from runtime_py.devices import DeviceProfile, open_android_device, select_artifacts

__all__ = ["LocalTransport", "Platform", "PLATFORMS", "Runner", "RUNNERS", "RUNNER_SUFFIXES", "BATCH_RUNNER",
           "open_device", "choose_runner", "runner_entry", "runner_spec", "batch_spec", "emulation"]

BATCH_RUNNER = Path(__file__).resolve().parent.parent / "batch_runner.py"
_BUILD = Path(__file__).resolve().parents[2] / "build"


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
        try:
            replace_path(local, lambda tmp: shutil.copyfile(remote, tmp))
        except FileNotFoundError as exc:
            from android_harness.faults import TransferFailed
            raise TransferFailed(self.serial, f"pull {remote}", str(exc)) from exc


def _host_info() -> DeviceInfo:
    import platform
    return DeviceInfo(serial="localhost", model=platform.node() or "host", device="host",
                      manufacturer="", soc=platform.processor() or platform.machine(), soc_manufacturer="",
                      sdk=None, release=platform.release(), abi=platform.machine(), fingerprint=platform.platform(),
                      transport="local")


# ---------------------------------------------------------------------------------------------------- openers

def _open_host(profile: DeviceProfile, o: BenchOptions, out: Path) -> tuple[Any, DeviceInfo]:
    root = o.root or str(out / ".host_device" / "isp_bench")
    return AndroidDevice(LocalTransport(), root=root, retries=o.retries), _host_info()


def _open_android(profile: DeviceProfile, o: BenchOptions, out: Path) -> tuple[Any, DeviceInfo]:
    tkw = {"connect_timeout_s": o.connect_timeout_s, "auth_timeout_s": o.auth_timeout_s, **o.transport_kwargs}
    dev = open_android_device(profile, o.serial, o.transport, key_path=o.key, allow_mismatch=o.allow_mismatch,
                              root=o.root or profile.work_dir, transport_kwargs=tkw, retries=o.retries,
                              retry_backoff_s=0.5)
    return dev, dev.info()


def _open_ios(profile: DeviceProfile, o: BenchOptions, out: Path) -> tuple[Any, DeviceInfo]:
    from ios_harness.device import open_ios_device

    dev = open_ios_device(profile, o.serial, tool=o.ios_tool, app=o.ios_app, root=o.root or profile.work_dir,
                          allow_mismatch=o.allow_mismatch, install=o.ios_install)
    return dev, dev.info()


def _ios_unit_args(path: Path, delegate: str | None) -> list[str]:
    from ios_harness.device import compute_units_for

    return ["--compute-units", compute_units_for(delegate)]


def _no_args(path: Path, delegate: str | None) -> list[str]:
    return []


@dataclass(frozen=True)
class Runner:
    """A runner of the runner protocol: the artifact files it loads and how it is started on a device."""
    suffixes: tuple[str, ...]
    spec: Callable[[BenchOptions, Any, Path | None], RunnerSpec]
    batch: bool = False                          # runtime_py/batch_runner.py runs a chain step's tiles in one go
    device_python: bool = False                  # started by a Python on the device (--device-python)
    unit_args: Callable[[Path, str | None], list[str]] = _no_args     # per unit: (artifact, delegate) -> arguments
    formats: str = ""                            # said when no unit of a set can run on it


def _native_spec(o: BenchOptions, dev: Any, binary: Path | None) -> RunnerSpec:
    if binary is None or not binary.is_file():
        raise BenchError(f"--runner native: no runner binary at {binary}; build android_harness/native "
                         f"(android_harness/README.md) or pass --native-runner PATH", EXIT_USAGE)
    return native_runner_spec(binary, o.native_libs, root=dev.root)


def _bundle_spec(o: BenchOptions, dev: Any, binary: Path | None) -> RunnerSpec:
    """The arm64 bundle (built and cached on first use), or the ``--native-runner`` build when one is named."""
    if o.native_runner:
        return _native_spec(o, dev, binary)
    try:
        return native.android_runner_spec(dev.root)
    except RuntimeError as exc:
        raise BenchError(str(exc), EXIT_USAGE) from None


#: Android's ``native``: the arm64 push bundle (android_harness/bundle.py)
ARM64_BUNDLE = Runner(native.BUNDLE_SUFFIXES, _bundle_spec, unit_args=native.unit_runner_args,
                      formats="the native arm64 runners execute .pte and .tflite; --runner host runs .onnx through "
                              "a Python on the device")


@dataclass(frozen=True)
class Platform:
    """How the benchmark reaches and uses the devices of one platform (see the module docstring)."""
    open: Callable[[DeviceProfile, BenchOptions, Path], tuple[Any, DeviceInfo]]
    runners: tuple[str, ...]                     # runners it runs; the first is --runner auto's fallback
    native_build: str | None = None              # build/<folder>/isp_et_runner for this platform
    device_python: bool = False                  # --runner host runs a Python that must exist on the device
    unit_args: Callable[[Path, str | None], list[str]] = _no_args
    describe: str = ""
    own_runners: dict[str, Runner] = field(default_factory=dict)      # replaces RUNNERS[name] on this platform
    auto: str | None = None                      # what --runner auto picks (unless --native-runner names a build)
    emulation: Callable[[Any], str | None] = lambda dev: None         # a line when the device is emulated


PLATFORMS: dict[str, Platform] = {
    "android": Platform(_open_android, ("host", "native"), native_build="native-android", device_python=True,
                        describe="an Android device", own_runners={"native": ARM64_BUNDLE}, auto="native",
                        emulation=native.emulation_note),
    "host": Platform(_open_host, ("host", "native"), native_build="native", describe="this machine"),
    "ios": Platform(_open_ios, ("ios",), unit_args=_ios_unit_args,
                    describe="an iPhone (the Core ML runner app)"),
}


def open_device(profile: DeviceProfile, o: BenchOptions, out: Path) -> tuple[Any, DeviceInfo]:
    """Open the device of ``profile`` through :data:`PLATFORMS`; a device that is not the profile's model is a
    usage error (``BenchError``)."""
    try:
        return PLATFORMS[profile.platform].open(profile, o, out)
    except DeviceMismatch as exc:
        raise BenchError(str(exc), EXIT_USAGE) from None


# ---------------------------------------------------------------------------------------------------- runners

RUNNERS: dict[str, Runner] = {
    "host": Runner((".onnx", ".tflite", ".pte"), lambda o, dev, _b: host_runner_spec(o.device_python, root=dev.root),
                   batch=True, device_python=True),
    "native": Runner((".pte",), _native_spec, formats="isp_et_runner executes .pte"),
    "ios": Runner((".mlpackage", ".mlmodelc", ".mlmodel"), lambda o, dev, _b: RunnerSpec("IspBenchRunner (iOS app)", ())),
}
#: runner -> the artifact files it loads (a platform's own entry may load more: :func:`runner_entry`)
RUNNER_SUFFIXES = {name: r.suffixes for name, r in RUNNERS.items()}


def runner_entry(runner: str, profile: DeviceProfile) -> Runner:
    """``runner`` as ``profile``'s platform has it: the platform's own entry, else :data:`RUNNERS`'."""
    return PLATFORMS[profile.platform].own_runners.get(runner) or RUNNERS[runner]


def emulation(profile: DeviceProfile, dev: Any) -> str | None:
    """A line saying the opened device's timings come from emulation (a stand-in), or ``None``."""
    return PLATFORMS[profile.platform].emulation(dev)


def native_binary(profile: DeviceProfile, o: BenchOptions) -> Path | None:
    """The native runner for ``profile``'s platform: ``--native-runner`` or the build folder's."""
    if o.native_runner:
        return Path(o.native_runner)
    folder = PLATFORMS[profile.platform].native_build
    return _BUILD / folder / "isp_et_runner" if folder else None


def choose_runner(profile: DeviceProfile, o: BenchOptions, manifest: dict, artifacts: Path) -> str:
    """``--runner`` checked against the platform, or for ``auto``: the platform's ``auto`` runner (Android: the arm64
    bundle, built on demand), else the native runner when it is built and covers every unit, else the first."""
    plat = PLATFORMS[profile.platform]
    if o.runner != "auto":
        if o.runner not in RUNNERS:
            raise BenchError(f"--runner must be auto or one of {', '.join(RUNNERS)}, got {o.runner!r}", EXIT_USAGE)
        if o.runner not in plat.runners:
            raise BenchError(f"--runner {o.runner}: profile {profile.name} is {plat.describe or profile.platform}, "
                             f"which runs {' or '.join(plat.runners)} (or --runner auto)", EXIT_USAGE)
        return o.runner
    if plat.auto is not None and not o.native_runner:
        return plat.auto
    if "native" in plat.runners:
        binary = native_binary(profile, o)
        if binary is not None and binary.exists():
            _, missing = select_artifacts(profile, manifest.get("artifacts", []),
                                          runnable_suffixes=runner_entry("native", profile).suffixes,
                                          precisions=o.precision,
                                          folder=artifacts, units=o.units)
            if not missing:
                return "native"
    return plat.runners[0]


def needs_device_python(runner: str, profile: DeviceProfile) -> bool:
    """Whether ``runner`` on ``profile``'s device needs a Python there that the benchmark should check for."""
    return runner_entry(runner, profile).device_python and PLATFORMS[profile.platform].device_python


def runner_spec(runner: str, profile: DeviceProfile, o: BenchOptions, dev: Any) -> RunnerSpec:
    return runner_entry(runner, profile).spec(o, dev, native_binary(profile, o))


def batch_spec(runner: str, o: BenchOptions, dev: Any) -> RunnerSpec | None:
    """The one-process batch runner next to host_runner.py (runners with ``batch``), else ``None``."""
    if not RUNNERS[runner].batch:
        return None
    base = host_runner_spec(o.device_python, root=dev.root)
    remote = f"{dev.root}/bin/batch_runner.py"
    return RunnerSpec("batch_runner.py", (o.device_python, "-u", remote), base.files + ((BATCH_RUNNER, remote, False),),
                      base.env)
