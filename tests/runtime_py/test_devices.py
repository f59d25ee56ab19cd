"""runtime_py.devices: built-in profiles, user profile files (JSON / TOML, search path, --profile-file), artifact
selection by preference, and picking the connected device that matches a profile."""
from __future__ import annotations

import json

import pytest

from android_harness.device import DeviceInfo
from android_harness.faults import DeviceNotFound, DeviceUnauthorized
from android_harness.transport import DeviceEntry
from runtime_py import devices
from runtime_py.devices import (BUILTIN, DeviceMismatch, DeviceProfile, Preference, ProfileError, all_profiles,
                                get_profile, load_profile_file, pick_android_device, select_artifacts)

from .bench_fixtures import (  # noqa: F401 — fixtures, used by name
    _start_fake, bench_device, device_tools, dng_folder, host_key)


@pytest.fixture(autouse=True)
def _no_user_profiles(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("ISP_DEVICE_PROFILES", raising=False)


def _info(model, device="", soc="", serial="s"):
    return DeviceInfo(serial=serial, model=model, device=device, manufacturer="", soc=soc, soc_manufacturer="",
                      sdk=34, release="14", abi="arm64-v8a", fingerprint="", transport="adb")


def _art(unit, target, precision, backend="cpu", cov=None, file=None, **extra):
    ext = {"onnx": "onnx", "litert": "tflite", "executorch": "pte", "coreml": "mlpackage"}[target.split("-")[0]]
    a = {"unit": unit, "target": target, "precision": precision, "backend": backend,
         "file": file or f"{unit}_{target}_{precision}.{ext}"}
    if cov is not None:
        a["op_coverage"] = {"total_ops": 100, "delegated_ops": int(cov * 100), "delegate": "gpu-delegate"}
    a.update(extra)
    return a


class TestProfiles:
    def test_builtins(self):
        assert set(BUILTIN) == {"pixel8", "galaxy-s24", "iphone-15-pro", "host"}
        p = BUILTIN["pixel8"]
        assert p.soc == "Google Tensor G3" and p.abi == "arm64-v8a" and p.work_dir == "/data/local/tmp/isp_bench"
        assert (p.preferences[0].target, p.preferences[0].delegate) == ("tflite", "gpu")
        assert p.preferences_for("upsample_fit")[0] == Preference("executorch", "xnnpack")   # the fit needs fp32
        assert BUILTIN["iphone-15-pro"].preferences[0].target == "coreml"
        s24 = BUILTIN["galaxy-s24"]
        assert s24.preferences[0] == Preference("executorch", "xnnpack")

    def test_matching(self):
        assert BUILTIN["pixel8"].matches("Pixel 8") and BUILTIN["pixel8"].matches("Pixel_8")   # adb devices -l
        assert not BUILTIN["pixel8"].matches("Pixel 8 Pro") and not BUILTIN["pixel8"].matches("")
        assert BUILTIN["pixel8"].matches("", "shiba")                    # by code name when the model is unset
        assert BUILTIN["galaxy-s24"].matches("SM-S921B") and BUILTIN["galaxy-s24"].matches("sm-s921u1")
        assert not BUILTIN["galaxy-s24"].matches("SM-S928B")             # the Ultra is another profile
        assert BUILTIN["host"].matches("anything")

    def test_preference_parsing(self):
        assert Preference.parse("tflite/gpu") == Preference("tflite", "gpu")
        assert Preference.parse({"target": "litert", "delegate": "nnapi", "min_coverage": 0.5}) == \
            Preference("tflite", "nnapi", 0.5)
        with pytest.raises(ProfileError, match="target"):
            Preference.parse("tensorrt/gpu")
        with pytest.raises(ProfileError, match="min_coverage"):
            Preference("tflite", "gpu", 2.0)

    def test_toml_file_adds_and_overrides(self, tmp_path):
        f = tmp_path / "mine.toml"
        f.write_text('name = "pixel7"\nplatform = "android"\nmodels = ["Pixel 7"]\nsoc = "Google Tensor G2"\n'
                     'abi = "arm64-v8a"\nprecisions = ["fp16", "fp32"]\n'
                     'preferences = [{target = "tflite", delegate = "gpu"}, "onnx/cpu"]\n'
                     '[units.upsample_fit]\npreferences = ["onnx/cpu"]\n')
        (p,) = load_profile_file(f)
        assert p.name == "pixel7" and p.precisions == ("fp16", "fp32") and p.source == str(f)
        assert p.preferences_for("upsample_fit") == (Preference("onnx", "cpu"),)
        profiles = all_profiles([f])
        assert "pixel7" in profiles and "pixel8" in profiles
        over = tmp_path / "pixel8.json"
        over.write_text(json.dumps({"name": "pixel8", "platform": "android", "models": ["Pixel 8"],
                                    "preferences": ["onnx/cpu"]}))
        assert get_profile("pixel8", [over]).preferences == (Preference("onnx", "cpu"),)

    def test_search_path(self, tmp_path, monkeypatch):
        folder = tmp_path / "xdg" / "isp" / "devices"
        folder.mkdir(parents=True)
        (folder / "lab.json").write_text(json.dumps({"profiles": [
            {"name": "lab-a", "platform": "android", "models": ["A"], "preferences": ["onnx/cpu"]},
            {"name": "lab-b", "platform": "android", "models": ["B"], "preferences": ["onnx/cpu"]}]}))
        extra = tmp_path / "extra.toml"
        extra.write_text('name = "lab-c"\nplatform = "host"\npreferences = ["onnx/cpu"]\n')
        monkeypatch.setenv("ISP_DEVICE_PROFILES", str(extra))
        assert {"lab-a", "lab-b", "lab-c"} <= set(all_profiles())

    @pytest.mark.parametrize("text, match", [
        ('name = "x"\nplatform = "android"\npreferences = ["onnx/cpu"]\n', "needs 'models'"),
        ('name = "x"\nplatform = "symbian"\npreferences = ["onnx/cpu"]\n', "platform"),
        ('name = "x"\nplatform = "host"\n', "at least one preference"),
        ('name = "x"\nplatform = "host"\npreferences = ["onnx/cpu"]\ncolour = "red"\n', "unknown field"),
        ('name = "x"\nplatform = \n', "not valid TOML"),
    ])
    def test_bad_files(self, tmp_path, text, match):
        f = tmp_path / "bad.toml"
        f.write_text(text)
        with pytest.raises(ProfileError, match=match):
            load_profile_file(f)

    def test_unknown_name_lists_known(self):
        with pytest.raises(ProfileError, match="known: galaxy-s24, host, iphone-15-pro, pixel8"):
            get_profile("nokia")


class TestSelection:
    ARTS = [_art("gain", "onnx", "fp32"), _art("gain", "litert", "fp32", cov=1.0),
            _art("gain", "executorch", "fp32", backend="xnnpack"), _art("gain", "litert", "int8", cov=0.5),
            _art("denoise", "onnx", "fp32"), _art("denoise", "executorch", "int8", backend="xnnpack"),
            _art("upsample_fit", "litert", "fp32", cov=1.0), _art("upsample_fit", "executorch", "fp32",
                                                                    backend="xnnpack")]

    def test_pixel8(self):
        chosen, missing = select_artifacts(BUILTIN["pixel8"], self.ARTS)
        assert missing == {}
        # int8 is first in the Pixel 8 precision order, but the int8 LiteRT gain is only 50% GPU-compatible
        assert chosen["gain"].file == "gain_litert_fp32.tflite" and str(chosen["gain"].preference).startswith(
            "tflite/gpu")
        assert chosen["denoise"].file == "denoise_executorch_int8.pte"      # no LiteRT denoiser: ExecuTorch next
        assert chosen["upsample_fit"].file == "upsample_fit_executorch_fp32.pte"   # per-unit override
        assert any("50%" in c for c in chosen["gain"].considered)

    def test_measured_gpu_coverage_wins_over_the_static_guess(self):
        a = _art("gain", "litert", "fp16", cov=1.0)                     # the static check says 100%
        a["backend_coverage"] = {"gpu": {"measured": True, "fraction": 0.8, "total_ops": 10, "delegated_ops": 8}}
        chosen, _ = select_artifacts(BUILTIN["pixel8"], [a, _art("gain", "onnx", "fp32")])
        assert str(chosen["gain"].preference) == "tflite/xnnpack"          # not the GPU: 80% < 90%
        assert any("80% of ops delegated" in c for c in chosen["gain"].considered)

    def test_runner_formats_and_missing_files(self, tmp_path):
        chosen, missing = select_artifacts(BUILTIN["pixel8"], self.ARTS, runnable_suffixes=(".pte",))
        assert chosen["gain"].file == "gain_executorch_fp32.pte"
        (tmp_path / "gain_onnx_fp32.onnx").write_bytes(b"x")
        chosen, missing = select_artifacts(BUILTIN["host"], self.ARTS, folder=tmp_path)
        assert chosen["gain"].file == "gain_onnx_fp32.onnx"
        assert "denoise" in missing and "upsample_fit" in missing          # files absent from the folder

    def test_precision_override_and_units(self):
        chosen, _ = select_artifacts(BUILTIN["galaxy-s24"], self.ARTS, precisions=["fp32"], units=["denoise"])
        assert chosen["denoise"].file == "denoise_onnx_fp32.onnx"           # fp32 only: the ONNX fallback
        chosen, missing = select_artifacts(BUILTIN["galaxy-s24"], self.ARTS, precisions=["int8"],
                                           units=["denoise", "lut3d"])
        assert chosen["denoise"].file == "denoise_executorch_int8.pte" and "lut3d" in missing

    def test_secondary_executorch_backend(self):
        arts = [_art("gain", "executorch-vulkan", "fp32", backend="vulkan", file="gain_vk.pte")]
        prof = DeviceProfile("vk", "host", preferences=(Preference("executorch", "vulkan"),))
        chosen, _ = select_artifacts(prof, arts)
        assert chosen["gain"].file == "gain_vk.pte"


class TestPickDevice:
    def test_with_serial_checks_the_model(self):
        assert pick_android_device(BUILTIN["pixel8"], "X", [], lambda s: _info("Pixel 8")) == "X"
        with pytest.raises(DeviceMismatch, match="is a Pixel 7 .* not a Google Pixel 8"):
            pick_android_device(BUILTIN["pixel8"], "X", [], lambda s: _info("Pixel 7", "panther"))

    def test_without_serial(self):
        entries = [DeviceEntry("A", "device", {"model": "Pixel_7"}), DeviceEntry("B", "device", {"model": "Pixel_8"}),
                   DeviceEntry("C", "offline", {})]
        infos = {"A": _info("Pixel 7"), "B": _info("Pixel 8")}
        assert pick_android_device(BUILTIN["pixel8"], None, entries, infos.__getitem__) == "B"
        with pytest.raises(DeviceMismatch, match="2 connected devices match"):
            pick_android_device(BUILTIN["pixel8"], None, entries + [DeviceEntry("D", "device", {})],
                                lambda s: _info("Pixel 8"))
        with pytest.raises(DeviceMismatch, match="connected: A \\(device, Pixel_7\\)"):
            pick_android_device(BUILTIN["galaxy-s24"], None, entries, infos.__getitem__)
        with pytest.raises(DeviceNotFound, match="lists no device"):
            pick_android_device(BUILTIN["pixel8"], None, [], infos.__getitem__)
        with pytest.raises(DeviceUnauthorized):
            pick_android_device(BUILTIN["pixel8"], None, [DeviceEntry("U", "unauthorized", {})], infos.__getitem__)


@pytest.mark.device
def test_open_without_serial_picks_the_matching_device(bench_device, host_key, tmp_path):
    """A private adb server that knows only the stand-in: ``--device pixel8`` finds it, ``galaxy-s24`` reports what is
    connected instead."""
    from android_harness.transport import AdbClientTransport

    from .bench_fixtures import free_port

    cfg = {"server_port": free_port(), "home": tmp_path / "adbhome", "key_path": host_key}
    t = AdbClientTransport(bench_device.serial, **cfg)
    try:
        t.connect()                                       # adb connect: now `adb devices -l` lists it
        dev = devices.open_android_device(BUILTIN["pixel8"], None, "adb", transport_kwargs=cfg)
        assert dev.serial == bench_device.serial and dev.info().model == "Pixel 8"
        dev.close()
        t.connect()
        with pytest.raises(DeviceMismatch, match=f"no connected device matches profile galaxy-s24.*"
                                                 f"{bench_device.serial} \\(device, Pixel_8\\)"):
            devices.open_android_device(BUILTIN["galaxy-s24"], None, "adb", transport_kwargs=cfg)
        with pytest.raises(DeviceMismatch, match="adb-shell .* cannot list devices"):
            devices.open_android_device(BUILTIN["pixel8"], None, "adb-shell")
    finally:
        t.kill_server()


class TestCli:
    def test_list_and_show(self, capsys):
        assert devices.main(["list"]) == 0
        out = capsys.readouterr().out
        assert "pixel8" in out and "Google Tensor G3" in out and "iphone-15-pro" in out
        assert devices.main(["show", "galaxy-s24"]) == 0
        assert json.loads(capsys.readouterr().out)["models"] == ["SM-S921*"]
        assert devices.main(["show", "nope"]) == 2

    @pytest.mark.device
    def test_detect(self, bench_device, host_key, capsys):
        assert devices.main(["detect", "--serial", bench_device.serial, "--transport", "adb-shell", "--key",
                             str(host_key)]) == 0
        line = capsys.readouterr().out
        assert "Pixel 8" in line and "Tensor G3" in line and "profile: pixel8" in line
