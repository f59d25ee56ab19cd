"""Fixtures for the device harness: the stand-in device (fakeadbd.py), keys, a private adb server, tiny models.

The stand-in device needs ``adb`` (for AdbClientTransport) and ``bubblewrap`` (its shell sandbox) plus the shared
folder's ``device/fakeadbd.py``; without them the device tests skip with the reason, except under CI (env ``CI``)
where a missing tool is an error.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
import torch

from android_harness.device import AndroidDevice
from android_harness.transport import AdbClientTransport, AdbShellTransport, ensure_adb_key

PIXEL8_PROPS = {
    "ro.product.model": "Pixel 8",
    "ro.product.device": "shiba",
    "ro.product.name": "shiba",
    "ro.product.manufacturer": "Google",
    "ro.soc.manufacturer": "Google",
    "ro.soc.model": "Tensor G3",
    "ro.build.version.sdk": "34",
    "ro.build.version.release": "14",
    "ro.product.cpu.abi": "arm64-v8a",
}
TRANSPORTS = ("adb-shell", "adb")


def _skip_or_fail(reason: str):
    if os.environ.get("CI"):
        pytest.fail(reason + " (CI is set, so this is an error, not a skip)")
    pytest.skip(reason)


def _fakeadbd_path() -> Path | None:
    env = os.environ.get("ISP_FAKEADBD")
    if env:
        return Path(env)
    try:
        from isp import paths
        p = paths.shared_root() / "device" / "fakeadbd.py"
    except FileNotFoundError:
        return None
    return p if p.exists() else None


@pytest.fixture(scope="session")
def device_tools():
    """Checks that the stand-in device can run here; returns the fakeadbd.py path."""
    missing = [t for t in ("adb", "bwrap") if shutil.which(t) is None]
    if missing:
        _skip_or_fail(f"device tests need {' and '.join(missing)} (Debian: apt-get install adb bubblewrap)")
    probe = subprocess.run(["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        _skip_or_fail(f"bubblewrap cannot create a sandbox here (user namespaces off?): {probe.stderr.strip()}")
    fake = _fakeadbd_path()
    if fake is None:
        _skip_or_fail("device tests need fakeadbd.py: set ISP_FAKEADBD or ISP_SHARED (shared/device/fakeadbd.py)")
    return fake


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class FakeDevice:
    """A running fakeadbd.py; ``host_path`` maps a device path to the file on this machine."""

    port: int
    root: Path
    proc: subprocess.Popen
    log: Path

    @property
    def serial(self) -> str:
        return f"127.0.0.1:{self.port}"

    def host_path(self, device_path: str) -> Path:
        return self.root / device_path.lstrip("/")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _host_ro_paths() -> list[str]:
    """The venv and its base interpreter, so host_runner.py can run inside the device."""
    paths = {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}
    return sorted(paths)


@pytest.fixture(scope="session")
def host_key(tmp_path_factory) -> Path:
    return ensure_adb_key(tmp_path_factory.mktemp("keys") / "adbkey")


@pytest.fixture(scope="session")
def other_key(tmp_path_factory) -> Path:
    return ensure_adb_key(tmp_path_factory.mktemp("otherkeys") / "adbkey")


def launch_fakeadbd(fakeadbd: Path, root: Path, port_file: Path, log: Path, *extra: str, adb_key: Path,
                    props: dict | None = None, host_ro: bool = True) -> FakeDevice:
    """Start fakeadbd.py serving the device folder ``root`` and wait for the port it writes to ``port_file``.

    ``adb_key``: the private key whose ``.pub`` it accepts; ``props``: getprop values (default a Pixel 8);
    ``host_ro``: the venv visible read-only (for host_runner.py); ``extra``: more fakeadbd flags; stderr -> ``log``.
    The caller stops the returned device."""
    argv = [sys.executable, str(fakeadbd), "--root", str(root), "--port", "0", "--port-file", str(port_file),
            "--adb-keys", str(adb_key) + ".pub", "-v"]
    for k, v in (props or PIXEL8_PROPS).items():
        argv += ["--prop", f"{k}={v}"]
    if host_ro:
        for p in _host_ro_paths():
            argv += ["--host-ro", p]
    argv += list(extra)
    with open(log, "wb") as logf:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=logf)
    deadline = time.monotonic() + 10
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"fakeadbd did not start: {log.read_text()[-2000:]}")
        time.sleep(0.02)
    return FakeDevice(int(port_file.read_text()), Path(root), proc, log)


def stopped_after(launch: Callable[..., FakeDevice]) -> Iterator[Callable[..., FakeDevice]]:
    """The body of a factory fixture (``yield from stopped_after(launch)``): yields ``launch``, remembering every
    device it starts, and stops them all at the fixture's teardown."""
    started: list[FakeDevice] = []

    def start(*args, **kwargs) -> FakeDevice:
        dev = launch(*args, **kwargs)
        started.append(dev)
        return dev

    yield start
    for dev in started:
        dev.stop()


@pytest.fixture(scope="session")
def _start_fake(device_tools, tmp_path_factory, host_key):
    def launch(*extra: str, keys: Path | None = None, props: dict | None = None, host_ro: bool = True) -> FakeDevice:
        base = tmp_path_factory.mktemp("fakedev")
        return launch_fakeadbd(device_tools, base / "root", base / "port", base / "fakeadbd.log", *extra,
                               adb_key=keys or host_key, props=props, host_ro=host_ro)

    yield from stopped_after(launch)


@pytest.fixture
def fake_device(_start_fake):
    """Factory: a fresh stand-in device with extra fakeadbd flags, stopped after the test."""
    yield from stopped_after(_start_fake)


@pytest.fixture(scope="session")
def pixel8(_start_fake) -> FakeDevice:
    """A well-behaved Pixel 8 stand-in shared by the non-fault tests (RSA auth on, with our key)."""
    return _start_fake()


@pytest.fixture(scope="session")
def adb_server(device_tools, tmp_path_factory, host_key):
    """A private adb server (own port, HOME, key), killed at the end of the session."""
    cfg = {"server_port": free_port(), "home": tmp_path_factory.mktemp("adbhome"), "key_path": host_key}
    yield cfg
    AdbClientTransport("", **cfg).kill_server()


@pytest.fixture(scope="session")
def make_transport(adb_server, host_key):
    """make_transport(kind, fake_or_serial, **overrides) with short test timeouts."""

    def make(kind: str, target, **overrides):
        serial = target.serial if isinstance(target, FakeDevice) else str(target)
        if kind == "adb-shell":
            host, _, port = serial.rpartition(":")
            kw = dict(key_path=host_key, connect_timeout_s=5.0, auth_timeout_s=5.0, io_timeout_s=20.0)
            kw.update(overrides)
            return AdbShellTransport(host, int(port), **kw)
        kw = dict(adb_server, connect_timeout_s=5.0, auth_timeout_s=5.0, io_timeout_s=60.0)
        kw.update(overrides)
        return AdbClientTransport(serial, **kw)

    return make


@pytest.fixture(params=TRANSPORTS)
def kind(request) -> str:
    return request.param


@pytest.fixture
def pixel8_device(pixel8, make_transport, kind):
    """An AndroidDevice on the shared Pixel 8 stand-in through the parametrized transport; root cleaned after."""
    dev = AndroidDevice.open(make_transport(kind, pixel8), root=f"/data/local/tmp/isp_bench_{kind.replace('-', '_')}")
    yield dev
    try:
        dev.cleanup()
    finally:
        dev.close()


# ----------------------------------------------------------------------------------------------------------------------
# tiny models: one 3x3 conv + ReLU, exported once per session by a background process (tiny_models.py), so the
# device tests that need no model run while the exporters work

@dataclass
class TinyModels:
    module: torch.nn.Module
    example: np.ndarray
    folder: Path
    proc: subprocess.Popen

    def reference(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.module(torch.from_numpy(x)).numpy()

    def wait(self, fmt: str, timeout_s: float = 400.0) -> Path:
        deadline = time.monotonic() + timeout_s
        while True:
            for state in ("done", "skip", "error"):
                f = self.folder / f"{fmt}.{state}"
                if f.exists():
                    if state == "skip":
                        pytest.skip(f.read_text())
                    if state == "error":
                        pytest.fail(f"exporting the tiny model to .{fmt} failed:\n{f.read_text()}")
                    return self.folder / f"tiny.{fmt}"
            if self.proc.poll() is not None and not (self.folder / f"{fmt}.done").exists():
                pytest.fail(f"the model export process exited ({self.proc.returncode}) without a .{fmt}: "
                            f"{(self.folder / 'export.log').read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"exporting the tiny model to .{fmt} took more than {timeout_s:g} s")
            time.sleep(0.1)


@pytest.fixture(scope="session", autouse=True)
def tiny(tmp_path_factory):
    """Starts the exports at the first test of this folder; ``tiny.wait(fmt)`` / ``tiny_models(fmt)`` wait for one."""
    from tests.android_harness.tiny_models import TinyConv

    torch.manual_seed(0)
    m = TinyConv().eval()
    folder = tmp_path_factory.mktemp("tinymodels")
    torch.save(m.state_dict(), folder / "tiny.pt")
    x = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)
    script = Path(__file__).with_name("tiny_models.py")
    with open(folder / "export.log", "wb") as logf:
        proc = subprocess.Popen([sys.executable, str(script), "--weights", str(folder / "tiny.pt"), "--out",
                                 str(folder)], stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    yield TinyModels(m, x, folder, proc)
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


@pytest.fixture(scope="session")
def tiny_models(tiny):
    """tiny_models(fmt) -> path of tiny.<fmt> ("onnx", "pte", "tflite"); skips when its exporter is missing."""
    return tiny.wait


@pytest.fixture(scope="session")
def tiny_onnx(tiny) -> Path:
    return tiny.wait("onnx")


# ----------------------------------------------------------------------------------------------------------------------
# the native ExecuTorch runner (android_harness/native), built for this host in the background

NATIVE_SRC = Path(__file__).resolve().parents[2] / "android_harness" / "native"


@dataclass
class NativeBuild:
    binary: Path | None
    proc: subprocess.Popen | None
    log: Path | None
    reason: str = ""

    def wait(self, timeout_s: float = 300.0) -> Path:
        if self.proc is not None:
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                pytest.fail(f"building the native runner took more than {timeout_s:g} s")
            if self.proc.returncode != 0:
                pytest.fail(f"building the native runner failed:\n{self.log.read_text()[-4000:]}")
        if self.binary is None or not self.binary.exists():
            pytest.skip(self.reason or "the native runner was not built")
        return self.binary


@pytest.fixture(scope="session", autouse=True)
def native_build(tmp_path_factory):
    """$ISP_NATIVE_RUNNER if set, else a host build (cmake + the executorch wheel) started now, awaited by tests."""
    import importlib.util

    env = os.environ.get("ISP_NATIVE_RUNNER")
    if env:
        yield NativeBuild(Path(env), None, None)
        return
    spec = importlib.util.find_spec("executorch")
    missing = [t for t in ("cmake", "c++") if shutil.which(t) is None]
    if missing or spec is None or not spec.submodule_search_locations:
        yield NativeBuild(None, None, None, f"building the native runner needs {', '.join(missing) or 'executorch'}")
        return
    et_dir = list(spec.submodule_search_locations)[0]
    build = tmp_path_factory.mktemp("native_build")
    log = build / "build.log"
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    script = (f"cmake -S {NATIVE_SRC} -B {build} {' '.join(gen)} -DCMAKE_PREFIX_PATH={et_dir} "
              f"-DCMAKE_CXX_FLAGS=-Wno-deprecated-declarations && cmake --build {build} -j2")
    with open(log, "wb") as f:
        proc = subprocess.Popen(["sh", "-c", script], stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    yield NativeBuild(build / "isp_et_runner", proc, log)
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
