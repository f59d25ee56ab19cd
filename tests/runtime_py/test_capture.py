"""``python -m runtime_py.capture`` against the stand-in Pixel 8: the pushed ``isp_capture`` stand-in (no ``am``), the
``am start`` path (a fake ``am`` in /system/bin speaking the capture app's protocol), failures, and a pulled DNG
that renders with ``python -m isp render``."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from runtime_py import capture
from runtime_py.capture import CAPTURE_ACTIVITY, CAPTURE_PACKAGE, DEVICE_DIR, STAND_IN_SCRIPT, capture_command

from .bench_fixtures import (  # noqa: F401 — fixtures, used by name
    _start_fake, adb_env, adb_server, bench_device, device_tools, dng_folder, host_key)

SOURCE = "lg-g4_linear_real.dng"             # the smallest shipped DNG (600x338 LinearRaw)


def _sha(p) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_capture_command_is_am_start():
    argv = capture_command("am", "/sdcard/DCIM/isp_capture/a.dng", camera_id="0", iso=100, exposure_ns=10_000_000)
    assert argv == ["am", "start", "-W", "-n", f"{CAPTURE_PACKAGE}/{CAPTURE_ACTIVITY}", "--es", "output",
                    "/sdcard/DCIM/isp_capture/a.dng", "--es", "camera_id", "0", "--ei", "iso", "100", "--el",
                    "exposure_ns", "10000000"]
    assert STAND_IN_SCRIPT.is_file()


def test_bad_arguments_exit_2(adb_env, host_key, tmp_path, capsys):
    assert capture.main(["--device", "nokia-3310", "-o", str(tmp_path)]) == 2
    assert "unknown device profile" in capsys.readouterr().err


@pytest.mark.device
@pytest.mark.parametrize("kind", ["adb", "adb-shell"])
def test_stand_in_capture_pulls_a_dng_that_renders(kind, bench_device, dng_folder, adb_env, host_key, tmp_path,
                                                    capsys):
    out = tmp_path / "shots"
    argv = ["--device", "pixel8", "--serial", bench_device.serial, "--transport", kind, "--key", str(host_key),
            "-o", str(out), "--name", f"shot_{kind}", "--fake-name", SOURCE, "--iso", "200", "--exposure-ns",
            "8000000"]
    assert capture.main(argv) == 0, capsys.readouterr().err
    dng, meta_path = out / f"shot_{kind}.dng", out / f"shot_{kind}.json"
    assert _sha(dng) == _sha(dng_folder / SOURCE)
    meta = json.loads(meta_path.read_text())
    assert meta["launcher"] == "isp_capture" and meta["device"]["model"] == "Pixel 8"
    assert meta["sha256"] == _sha(dng) and meta["dng"]["width"] == 600 and meta["dng"]["height"] == 338
    assert meta["device_sidecar"]["iso"] == 200 and meta["device_sidecar"]["exposure_ns"] == 8000000
    assert meta["command"][:4] == ["sh", f"{'/data/local/tmp/isp_bench'}/bin/isp_capture", "start", "-W"]
    assert sorted(p.name for p in out.iterdir()) == [dng.name, meta_path.name]      # no temporary files left
    assert not bench_device.host_path(f"{DEVICE_DIR}/shot_{kind}.dng").exists()     # removed from the device
    if kind == "adb-shell":
        return                                            # one render is enough
    jpg = tmp_path / "shot.jpg"
    proc = subprocess.run([sys.executable, "-m", "isp", "render", str(dng), "-o", str(jpg), "--no-enhance",
                           "--denoise-strength", "0"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from isp.io.image import read_image
    img = read_image(jpg)
    assert img.shape[:2] == (338, 600) and 0.02 < float(img.mean()) < 0.98


@pytest.mark.device
def test_am_start_path(bench_device, dng_folder, adb_env, host_key, tmp_path):
    """A device with ``am``: capture.py grants the permissions and starts the activity with ``am start``; here a fake
    ``am`` in /system/bin answers with the capture app's file protocol."""
    am = bench_device.host_path("/system/bin/am")
    impl = bench_device.host_path("/data/local/tmp/am_impl.sh")
    impl.parent.mkdir(parents=True, exist_ok=True)
    impl.write_text(STAND_IN_SCRIPT.read_text())
    am.write_text(f"#!/bin/sh\necho \"$@\" >> /data/local/tmp/am_calls.log\n"
                  f"ISP_CAPTURE_SOURCE={dng_folder / SOURCE} exec sh /data/local/tmp/am_impl.sh \"$@\"\n")
    am.chmod(0o755)
    try:
        argv = ["--device", "pixel8", "--serial", bench_device.serial, "--key", str(host_key), "-o",
                str(tmp_path), "--name", "via_am", "--camera-id", "2"]
        assert capture.main(argv) == 0
        meta = json.loads((tmp_path / "via_am.json").read_text())
        assert meta["launcher"] == "am" and meta["command"][0] == "am"
        assert meta["device_sidecar"]["camera_id"] == "2"
        calls = bench_device.host_path("/data/local/tmp/am_calls.log").read_text()
        assert f"start -W -n {CAPTURE_PACKAGE}/{CAPTURE_ACTIVITY} --es output {DEVICE_DIR}/via_am.dng" in calls
    finally:
        am.unlink(missing_ok=True)


@pytest.mark.device
def test_capture_failure_is_reported_and_leaves_nothing(bench_device, adb_env, host_key, tmp_path, capsys):
    argv = ["--device", "pixel8", "--serial", bench_device.serial, "--key", str(host_key), "-o", str(tmp_path),
            "--name", "nothing", "--fake-name", "no_such_file.dng"]
    assert capture.main(argv) == 4
    assert "no source DNG" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.device
def test_not_a_dng_is_rejected(bench_device, adb_env, host_key, tmp_path, capsys):
    """The device produced a file that is not a DNG: exit 5, nothing published."""
    fake_src = bench_device.host_path("/data/local/tmp/fake_src")
    fake_src.mkdir(parents=True, exist_ok=True)
    (fake_src / "broken.dng").write_bytes(b"II*\x00 not really a tiff")
    out = tmp_path / "out"
    argv = ["--device", "pixel8", "--serial", bench_device.serial, "--key", str(host_key), "-o", str(out),
            "--name", "broken", "--fake-source", "/data/local/tmp/fake_src", "--fake-name", "broken.dng"]
    assert capture.main(argv) == 5
    assert "does not decode" in capsys.readouterr().err
    assert list(out.iterdir()) == []
