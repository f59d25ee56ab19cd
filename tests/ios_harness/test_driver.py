"""ios_harness/driver.py with a fake ``xcrun devicectl`` / ``ios-deploy``: command construction, device listing and
matching, sha256-skipped pushes, the runner protocol's results and failures, and the benchmark flow
(``python -m runtime_py.bench --device iphone-15-pro``) end to end against the fake.

Nothing iOS runs here. The fake keeps the app's data container in a folder and, on "launch", stands in for the Swift
runner (``IspBenchRunner/Sources/RunnerCore/Runner.swift``): it reads the launch arguments, the inputs, a
``fake.json`` inside the "model" that says what to output, and writes outputs and ``timings.json`` (or
``<timings>.error.json``) as the app does.
"""
from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest

from android_harness.faults import (DeviceNotFound, DeviceStorageFull, DeviceUnauthorized, HarnessError,
                                    RunnerCrashed, RunnerTimeout)
from ios_harness import device as ios_device
from ios_harness import driver
from ios_harness.driver import BUNDLE_ID, DevicectlTool, IosDeployTool, IosDevice, list_ios_devices, open_ios_device
from runtime_py.devices import BUILTIN, DeviceMismatch, DeviceProfile
from tests.runtime_py.bench_fixtures import bench_reference_cache  # noqa: F401 — fixture (shared reference renders)

UDID = "00008130-000A1B2C3D4E5F60"
DEVICES_JSON = {"result": {"devices": [
    {"identifier": "A1", "hardwareProperties": {"udid": UDID, "productType": "iPhone16,1",
                                               "marketingName": "iPhone 15 Pro"},
     "deviceProperties": {"name": "Lab 15 Pro", "osVersionNumber": "17.5"},
     "connectionProperties": {"tunnelState": "connected"}},
    {"identifier": "B2", "hardwareProperties": {"udid": "00008101-OTHER", "productType": "iPhone13,2",
                                               "marketingName": "iPhone 12"},
     "deviceProperties": {"name": "Old 12", "osVersionNumber": "16.7"},
     "connectionProperties": {"tunnelState": "disconnected"}}]}}


def _done(argv, rc=0, out="", err=""):
    return subprocess.CompletedProcess(argv, rc, out, err)


class FakeIos:
    """Answers devicectl / ios-deploy command lines against a folder standing for the app's data container."""

    def __init__(self, root: Path, devices=DEVICES_JSON, launch_delay_s: float = 0.0):
        self.container = root / "container"
        self.container.mkdir(parents=True)
        self.devices = devices
        self.calls: list[list[str]] = []
        self.fail_next: str | None = None
        self.launch_delay_s = launch_delay_s

    def __call__(self, argv, timeout_s):
        argv = list(argv)
        self.calls.append(argv)
        if self.fail_next is not None:
            msg, self.fail_next = self.fail_next, None
            return _done(argv, 1, "", msg)
        if argv[:2] == ["xcrun", "devicectl"]:
            return self._devicectl(argv, timeout_s)
        if argv[0] == "ios-deploy":
            return self._ios_deploy(argv, timeout_s)
        raise AssertionError(f"unexpected command {argv}")

    def _opt(self, argv, name):
        return argv[argv.index(name) + 1]

    def _devicectl(self, argv, timeout_s):
        cmd = argv[2:]
        if cmd[:2] == ["list", "devices"]:
            Path(self._opt(argv, "--json-output")).write_text(json.dumps(self.devices))
            return _done(argv)
        assert self._opt(argv, "--device") == UDID
        if cmd[:3] == ["device", "copy", "to"]:
            assert self._opt(argv, "--domain-identifier") == BUNDLE_ID
            dst = self.container / self._opt(argv, "--destination")
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(Path(self._opt(argv, "--source")).read_bytes())
            return _done(argv)
        if cmd[:3] == ["device", "copy", "from"]:
            src = self.container / self._opt(argv, "--source")
            if not src.is_file():
                return _done(argv, 1, "", f"ERROR: The file couldn't be opened because there is no such file ({src.name})")
            Path(self._opt(argv, "--destination")).write_bytes(src.read_bytes())
            return _done(argv)
        if cmd[:3] == ["device", "process", "launch"]:
            assert "--console" in argv and argv[argv.index("--") - 1] == BUNDLE_ID
            return self._launch(argv, argv[argv.index("--") + 1:], timeout_s)
        if cmd[:3] == ["device", "install", "app"]:
            return _done(argv)
        raise AssertionError(f"unexpected devicectl command {argv}")

    def _ios_deploy(self, argv, timeout_s):
        if "--detect" in argv:
            lines = [json.dumps({"Event": "DeviceDetected", "Device": {
                "DeviceIdentifier": UDID, "DeviceName": "Lab 15 Pro", "ProductType": "iPhone16,1",
                "ProductVersion": "17.5", "modelName": "iPhone 15 Pro"}})]
            return _done(argv, 0, "\n".join(lines))
        if "--upload" in argv:
            dst = self.container / self._opt(argv, "--to").lstrip("/")
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(Path(self._opt(argv, "--upload")).read_bytes())
            return _done(argv)
        if any(a.startswith("--download=") for a in argv):
            src = self.container / next(a for a in argv if a.startswith("--download=")).split("=", 1)[1].lstrip("/")
            if not src.is_file():
                return _done(argv, 1, "", "Error: file not found")
            Path(self._opt(argv, "--to")).write_bytes(src.read_bytes())
            return _done(argv)
        if "--args" in argv:
            return self._launch(argv, shlex.split(self._opt(argv, "--args")), timeout_s)
        raise AssertionError(f"unexpected ios-deploy command {argv}")

    # -- the runner app, as RunnerCore does it ---------------------------------------------------------------------
    def _launch(self, argv, args, timeout_s):
        if self.launch_delay_s and timeout_s is not None and self.launch_delay_s > timeout_s:
            raise subprocess.TimeoutExpired(argv, timeout_s)
        opts = dict(zip(args[::2], args[1::2]))
        docs = self.container / "Documents"
        timings = docs / opts["--timings"]
        model = docs / opts["--model"]
        spec = json.loads((model / "fake.json").read_text()) if (model / "fake.json").is_file() else {}
        if "fail" in spec:
            timings.parent.mkdir(parents=True, exist_ok=True)
            (timings.parent / (timings.name + ".error.json")).write_text(json.dumps(spec["fail"]))
            return _done(argv, 0, "", "")
        if spec.get("silent"):
            return _done(argv, 0, "", "App terminated due to signal 9")
        in_dir = docs / opts["--inputs"]
        sets = sorted(p for p in in_dir.iterdir() if p.is_dir()) if not list(in_dir.glob("*.npy")) else [in_dir]
        warm, timed, per = [], [], []
        for k, d in enumerate(sets):
            x = {p.stem: np.load(p) for p in d.glob("*.npy")}
            out_dir = docs / opts["--outputs"] / (d.name if d != in_dir else "")
            out_dir.mkdir(parents=True, exist_ok=True)
            written = []
            for name, rule in spec.get("outputs", {}).items():
                kind, _, arg = rule.partition(":")
                arr = x[arg] * 1.0 if kind == "identity" else np.ones([int(s) for s in arg.split(",")], np.float32)
                np.save(out_dir / f"{name}.npy", arr.astype(np.float32))
                written.append({"name": name, "file": f"{name}.npy", "shape": list(arr.shape), "dtype": "<f4"})
            ms = [0.5 + 0.01 * i for i in range(int(opts["--iterations"]))]
            if k == 0:
                warm = [2.0] * int(opts["--warmup"])
                first = written
            timed += ms
            per.append({"name": d.name, "iteration_ms": ms, "outputs": written})
        record = {"schema": "isp_bench.timings/1", "runner": "IspBenchRunner", "model": model.name,
                  "format": "mlpackage", "runtime": "coreml", "runtime_version": "iOS 17.5",
                  "backend": f"MLComputeUnits.{opts.get('--compute-units', 'all')}", "warmup": int(opts["--warmup"]),
                  "iterations": int(opts["--iterations"]), "load_ms": 12.0, "compile_ms": 80.0, "warmup_ms": warm,
                  "iteration_ms": timed, "peak_rss_bytes": 50 << 20, "outputs": first}
        if sets[0] != in_dir:
            record["sets"] = per
        timings.parent.mkdir(parents=True, exist_ok=True)
        timings.write_text(json.dumps(record))
        return _done(argv, 0, "IspBenchRunner: done", "")


def _fake_model(folder: Path, name: str, spec: dict) -> Path:
    m = folder / name
    (m / "Data" / "com.apple.CoreML").mkdir(parents=True)
    (m / "Data" / "com.apple.CoreML" / "model.mlmodel").write_bytes(b"\x08\x07 not really a model")
    (m / "fake.json").write_text(json.dumps(spec))
    return m


@pytest.fixture
def fake(tmp_path):
    return FakeIos(tmp_path / "phone")


def _dev(fake, tool=None, **kw):
    return IosDevice(UDID, tool or DevicectlTool(), run=fake, **kw)


# ------------------------------------------------------------------------------------------------- commands

def test_devicectl_commands():
    t = DevicectlTool()
    assert t.copy_to_cmd(UDID, BUNDLE_ID, "/tmp/a.npy", "Documents/isp_bench/x/a.npy") == [
        "xcrun", "devicectl", "device", "copy", "to", "--device", UDID, "--domain-type", "appDataContainer",
        "--domain-identifier", BUNDLE_ID, "--source", "/tmp/a.npy", "--destination", "Documents/isp_bench/x/a.npy"]
    assert t.launch_cmd(UDID, BUNDLE_ID, ["--model", "m"]) == [
        "xcrun", "devicectl", "device", "process", "launch", "--device", UDID, "--terminate-existing", "--console",
        BUNDLE_ID, "--", "--model", "m"]
    assert t.install_cmd(UDID, "R.app")[-4:] == ["app", "--device", UDID, "R.app"]


def test_ios_deploy_commands():
    t = IosDeployTool()
    assert t.copy_from_cmd(UDID, BUNDLE_ID, "Documents/isp_bench/t.json", "/tmp/t.json") == [
        "ios-deploy", "--id", UDID, "--bundle_id", BUNDLE_ID, "--download=/Documents/isp_bench/t.json", "--to",
        "/tmp/t.json"]
    assert t.launch_cmd(UDID, BUNDLE_ID, ["--model", "a b"], app="R.app")[-2:] == ["--args", "--model 'a b'"]
    with pytest.raises(HarnessError, match="--app"):
        t.launch_cmd(UDID, BUNDLE_ID, [], app=None)


# ------------------------------------------------------------------------------------------------- devices

def test_list_and_open(fake):
    entries = list_ios_devices(DevicectlTool(), fake)
    assert [(e.udid, e.product_type, e.model, e.state) for e in entries][0] == (UDID, "iPhone16,1", "iPhone 15 Pro",
                                                                               "connected")
    dev = open_ios_device(BUILTIN["iphone-15-pro"], run=fake)
    assert dev.serial == UDID and dev.root == "Documents/isp_bench"
    info = dev.info()
    assert info.model == "iPhone 15 Pro" and info.device == "iPhone16,1" and info.transport == "devicectl"
    with pytest.raises(DeviceMismatch, match="iPhone 15 Pro, not a"):
        open_ios_device(DeviceProfile(name="iphone12", platform="ios", models=("iPhone13,2",),
                                      preferences=BUILTIN["iphone-15-pro"].preferences), UDID, run=fake)
    with pytest.raises(DeviceNotFound, match="lists"):
        open_ios_device(BUILTIN["iphone-15-pro"], "nope", run=fake)
    assert open_ios_device(BUILTIN["iphone-15-pro"], tool="ios-deploy", run=fake).serial == UDID


def test_no_iphone_and_no_xcrun(tmp_path):
    empty = FakeIos(tmp_path / "p", devices={"result": {"devices": []}})
    with pytest.raises(DeviceNotFound, match="Trust This Computer"):
        open_ios_device(BUILTIN["iphone-15-pro"], run=empty)

    def missing(argv, timeout_s):
        return ios_device._subprocess_run(["/nonexistent/xcrun"] + list(argv[1:]), timeout_s)
    with pytest.raises(HarnessError, match="macOS with Xcode"):
        list_ios_devices(DevicectlTool(), missing)


@pytest.mark.parametrize("stderr, error", [
    ("ERROR: The device is locked. (com.apple.dt.CoreDeviceError error 4000)", HarnessError),
    ("ERROR: The device is not paired with this host", DeviceUnauthorized),
    ("ERROR: No space left on device", DeviceStorageFull),
    ("ERROR: Unable to find device matching identifier", DeviceNotFound),
])
def test_tool_errors_are_typed(fake, tmp_path, stderr, error):
    dev = _dev(fake)
    f = tmp_path / "x.npy"
    np.save(f, np.zeros(3, np.float32))
    dev._index = {}
    fake.fail_next = stderr
    with pytest.raises(error) as e:
        dev.push([(f, "Documents/isp_bench/x.npy")])
    if "locked" in stderr:
        assert "Unlock it" in str(e.value)


# ------------------------------------------------------------------------------------------------- files + runs

def test_push_skips_by_sha256(fake, tmp_path):
    model = _fake_model(tmp_path, "m.mlpackage", {})
    dev = _dev(fake)
    first = dev.push([(model, "Documents/isp_bench/models/m.mlpackage")])
    assert len(first.pushed) == 2 and first.bytes_pushed > 0
    assert (fake.container / "Documents/isp_bench/models/m.mlpackage/fake.json").is_file()
    again = _dev(fake).push([(model, "Documents/isp_bench/models/m.mlpackage")])   # index read back from the phone
    assert again.pushed == [] and len(again.skipped) == 2
    copies = [c for c in fake.calls if c[3:5] == ["copy", "to"]]
    assert len(copies) == 3                                                       # 2 files + the index, once


@pytest.mark.parametrize("tool", [DevicectlTool(), IosDeployTool()], ids=["devicectl", "ios-deploy"])
def test_run_model(fake, tmp_path, tool):
    model = _fake_model(tmp_path, "gain_coreml_fp16.mlpackage",
                        {"outputs": {"lsrgb_gain": "identity:lsrgb_ds", "gain_param": "const:1,1,1,1"}})
    x = np.random.default_rng(0).random((1, 3, 8, 8), dtype=np.float32)
    dev = _dev(fake, tool, app=str(tmp_path / "IspBenchRunner.app"))
    res = dev.run_model(None, model, {"lsrgb_ds": x}, warmup=2, iterations=4,
                        extra_args=["--compute-units", "cpu_and_ne"], out_dir=tmp_path / "out")
    np.testing.assert_array_equal(res.outputs["lsrgb_gain"], x)
    assert res.outputs["gain_param"].shape == (1, 1, 1, 1)
    assert len(res.timings["iteration_ms"]) == 4 and res.timings["backend"] == "MLComputeUnits.cpu_and_ne"
    launch = next(c for c in fake.calls if "launch" in c or "--args" in c)
    args = launch[launch.index("--") + 1:] if tool.name == "devicectl" else shlex.split(launch[-1])
    assert args[:2] == ["--model", "isp_bench/models/gain_coreml_fp16.mlpackage"]      # relative to Documents


def test_runner_failures(fake, tmp_path):
    dev = _dev(fake)
    x = {"a": np.zeros((1, 3, 4, 4), np.float32)}
    bad = _fake_model(tmp_path, "bad.mlpackage", {"fail": {"code": 3, "message": "Core ML could not load bad"}})
    with pytest.raises(RunnerCrashed) as e:
        dev.run_model(None, bad, x, out_dir=tmp_path / "o1")
    assert e.value.returncode == 3 and "could not load" in str(e.value)
    silent = _fake_model(tmp_path, "silent.mlpackage", {"silent": True})
    with pytest.raises(RunnerCrashed, match="signal 9"):
        dev.run_model(None, silent, x, out_dir=tmp_path / "o2")
    slow = FakeIos(tmp_path / "slowphone", launch_delay_s=10)
    ok = _fake_model(tmp_path, "ok.mlpackage", {"outputs": {"y": "identity:a"}})
    with pytest.raises(RunnerTimeout):
        _dev(slow).run_model(None, ok, x, timeout_s=1, out_dir=tmp_path / "o3")


def test_run_sets(fake, tmp_path):
    model = _fake_model(tmp_path, "slice.mlpackage", {"outputs": {"y": "identity:a"}})
    sets = tmp_path / "sets"
    for i in range(3):
        (sets / f"{i:03d}").mkdir(parents=True)
        np.save(sets / f"{i:03d}" / "a.npy", np.full((2, 2), i, np.float32))
    outs, ms, backend = _dev(fake).run_sets(model, sets, out_dir=tmp_path / "out")
    assert [float(o["y"][0, 0]) for o in outs] == [0.0, 1.0, 2.0] and len(ms) == 3 and backend.startswith("MLCompute")


# ------------------------------------------------------------------------------------------------- the bench flow

def test_bench_on_fake_iphone(fake, tmp_path, monkeypatch, bench_reference_cache):
    """``runtime_py.bench --device iphone-15-pro`` with a Core ML ``gain``: selection, push, run, pull, report."""
    from runtime_py import bench
    from runtime_py.artifacts import file_sha256

    art = tmp_path / "art"
    art.mkdir()
    model = _fake_model(art, "gain_coreml_fp16.mlpackage",
                        {"outputs": {"lsrgb_gain": "identity:lsrgb_ds", "gain_param": "const:1,1,1,1"}})
    q = [1, 3, 80, 128]
    manifest = {"format": "isp-artifacts/1", "geometry": {"width": 512, "height": 320, "quarter": [80, 128],
                                                          "tile": 128, "overlap": 32},
                "style": 0, "lut": False, "denoiser": "s24_lite", "weights": None, "policy": {"default": "fp16"},
                "artifacts": [{"unit": "gain", "stage": "gain", "target": "coreml", "backend": "all",
                               "precision": "fp16", "file": model.name, "sha256": file_sha256(model),
                               "inputs": [{"name": "lsrgb_ds", "shape": q, "dtype": "float32"}],
                               "outputs": [{"name": "lsrgb_gain", "shape": q, "dtype": "float32"},
                                           {"name": "gain_param", "shape": [1, 1, 1, 1], "dtype": "float32"}],
                               "tiling": {"mode": "quarter"}, "runnable_here": False}],
                "failures": []}
    (art / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(ios_device, "_subprocess_run", fake)   # the device module runs the tools
    out = tmp_path / "out"
    argv = ["--device", "iphone-15-pro", "--artifacts", str(art), "--out", str(out), "--iterations", "4",
            "--warmup", "1", "--reference-cache", str(bench_reference_cache)]
    code = bench.main(argv)
    assert code == 0
    s = json.loads((out / "results.json").read_text())
    (unit,) = s["units"]
    assert unit["unit"] == "gain" and unit["status"] == "ok" and unit["runner"] == "ios"
    assert unit["preferred"] == "coreml/ane" and unit["backend"] == "MLComputeUnits.cpu_and_ne"
    assert unit["latency_ms"]["n"] == 4 and s["device"]["model"] == "iPhone 15 Pro"
    assert {d["name"] for d in unit["drift"]} == {"lsrgb_gain", "gain_param"}   # identity "gain": drift measured
    assert "not run" in s["chain_note"] and (out / "report.html").is_file()
    # the re-run sends nothing and runs nothing
    n_calls = len(fake.calls)
    assert bench.main(argv) == 0
    assert not any("launch" in c or "--args" in c for c in fake.calls[n_calls:])
    assert json.loads((out / "results.json").read_text())["units"][0]["resumed"]


def test_profile_delegates_map_to_core_ml_compute_units():
    """Every delegate a profile may name becomes one of the Core ML compute units the exporter declares."""
    from isp.units import COMPUTE_UNITS

    assert set(ios_device.COMPUTE_UNITS.values()) <= set(COMPUTE_UNITS)
    assert ios_device.compute_units_for("ane") == "cpu_and_ne" and ios_device.compute_units_for(None) == "all"
