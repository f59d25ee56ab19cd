"""Each fault of the stand-in device maps to its typed error, through both transports."""
from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest

from android_harness.device import AndroidDevice, host_runner_spec
from android_harness.faults import (
    DeviceLost,
    DeviceNotFound,
    DeviceStorageFull,
    DeviceUnauthorized,
    RunnerCrashed,
    RunnerTimeout,
)

from .conftest import free_port

pytestmark = pytest.mark.device

ROOT = "/data/local/tmp/isp_bench"


def _files(tmp_path, n, size):
    rng = np.random.default_rng(2)
    out = []
    for i in range(n):
        p = tmp_path / f"f{i}.bin"
        p.write_bytes(rng.bytes(size))
        out.append((p, f"{ROOT}/models/f{i}.bin"))
    return out


def test_no_device(make_transport, kind):
    t0 = time.monotonic()
    with pytest.raises(DeviceNotFound) as err:
        make_transport(kind, f"127.0.0.1:{free_port()}", connect_timeout_s=2.0).connect()
    assert time.monotonic() - t0 < 6
    assert "adb connect" in str(err.value)


def test_unauthorized(fake_device, other_key, make_transport, kind):
    fake = fake_device(keys=other_key)  # the device only knows another host's key and never shows a prompt
    t0 = time.monotonic()
    with pytest.raises(DeviceUnauthorized) as err:
        make_transport(kind, fake, auth_timeout_s=1.5).connect()
    assert time.monotonic() - t0 < 6
    assert "Allow USB debugging" in str(err.value)


def test_device_lost_mid_push_retries_and_recovers(fake_device, make_transport, kind, tmp_path):
    fake = fake_device("--drop-after-bytes", str(3 << 20))
    retries = []
    dev = AndroidDevice.open(make_transport(kind, fake), retry_backoff_s=0.1,
                             on_retry=lambda n, e: retries.append(e))
    files = _files(tmp_path, 3, 2 << 20)
    report = dev.push(files)
    assert len(retries) == 1 and report.retries == 1
    assert len(report.pushed) == 3
    for local, remote in files:
        assert fake.host_path(remote).read_bytes() == local.read_bytes()
    assert not list(fake.host_path(ROOT).rglob("*.part"))
    dev.close()


def test_device_lost_for_good_keeps_finished(fake_device, make_transport, kind, tmp_path):
    fake = fake_device("--drop-after-bytes", str(3 << 20))
    dev = AndroidDevice.open(make_transport(kind, fake, connect_timeout_s=1.0), retries=2, retry_backoff_s=0.05,
                             on_retry=lambda n, e: fake.stop())  # the cable stays unplugged
    files = _files(tmp_path, 3, 2 << 20)
    with pytest.raises(DeviceLost) as err:
        dev.push(files)
    e = err.value
    assert e.attempts == 3
    assert e.completed == [files[0][1]] and e.pending == [files[1][1], files[2][1]]
    assert fake.host_path(files[0][1]).read_bytes() == files[0][0].read_bytes()  # finished file kept, complete
    assert not fake.host_path(files[1][1]).exists()  # the interrupted one is not there under its name
    assert "finished" in str(e)
    dev.close()


def test_device_lost_mid_command(fake_device, make_transport, kind):
    """The phone vanishes while a command runs: DeviceLost, not an empty success (adb's v2 client exits 0 then)."""
    fake = fake_device()
    dev = AndroidDevice.open(make_transport(kind, fake))
    threading.Timer(1.0, fake.stop).start()
    t0 = time.monotonic()
    with pytest.raises(DeviceLost):
        dev.run(["sleep", "10"], timeout_s=30)
    assert time.monotonic() - t0 < 8
    dev.close()


def test_storage_full(fake_device, make_transport, kind, tmp_path):
    fake = fake_device("--storage-limit", str(1 << 20))
    dev = AndroidDevice.open(make_transport(kind, fake))
    (local, remote), = _files(tmp_path, 1, 2 << 20)
    with pytest.raises(DeviceStorageFull) as err:
        dev.push([(local, remote)])
    assert err.value.path == remote and "Free space" in str(err.value)
    leftovers = [p for p in fake.host_path("/data").rglob("*") if p.is_file()]
    assert leftovers == []  # no partial file, not even the .part
    dev.close()


def test_storage_precheck_with_df(pixel8, make_transport, kind, tmp_path):
    """df says there is not enough room (margin set absurdly high): refused before any byte is sent."""
    dev = AndroidDevice.open(make_transport(kind, pixel8), root=f"{ROOT}_df_{kind.replace('-', '_')}",
                             free_space_margin_bytes=1 << 60)
    p = tmp_path / "x.bin"
    p.write_bytes(b"x" * 1000)
    with pytest.raises(DeviceStorageFull) as err:
        dev.push([(p, f"{dev.root}/x.bin")])
    assert err.value.free_bytes is not None and err.value.needed_bytes > err.value.free_bytes
    assert not pixel8.host_path(dev.root).exists()
    dev.close()


def test_runner_crash(pixel8_device, tiny, tmp_path):
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"\x08\x07garbage, not a protobuf")
    with pytest.raises(RunnerCrashed) as err:
        pixel8_device.run_model(host_runner_spec(sys.executable, pixel8_device.root), bad, {"image": tiny.example},
                                timeout_s=60)
    assert err.value.returncode == 3
    assert "could not load" in err.value.stderr_tail and "model failed to load" in str(err.value)


def test_runner_timeout_kills_the_process(pixel8_device, tiny, tmp_path):
    model = tmp_path / "any.onnx"  # --debug-sleep-s sleeps before the model is opened, so any file will do
    model.write_bytes(b"x")
    t0 = time.monotonic()
    with pytest.raises(RunnerTimeout) as err:
        pixel8_device.run_model(host_runner_spec(sys.executable, pixel8_device.root), model,
                                {"image": tiny.example}, timeout_s=3, extra_args=["--debug-sleep-s", "60"])
    assert time.monotonic() - t0 < 20
    e = err.value
    assert e.killed and e.pid is not None
    assert pixel8_device.process_state(e.pid) in ("", "Z")  # gone (or a zombie awaiting its reaper)
    assert pixel8_device.shell("echo alive").text == "alive\n"  # the connection is usable afterwards
