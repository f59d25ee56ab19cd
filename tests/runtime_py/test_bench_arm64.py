"""``python -m runtime_py.bench --device galaxy-s24`` on the arm64 stand-in: the arm64 bundle pushed into a
busybox-only userland, every unit and the end-to-end chain run by the native runners on ARM kernels under qemu-user
(Cortex-A76: fp16 arithmetic, dot product), at the CI geometry (512x320, tile 128), one iteration.

The fp16 and int8 policy sets (the same cached ExecuTorch sets ``test_budget`` exports, so CI exports nothing more)
carry the CI budget on ARM (``budget``: final sRGB >= 45 dB for fp16, >= 38 dB with mean ΔE2000 <= 1.0 for int8,
``runtime_py.drift.CI_BUDGETS``), measured with ``--chain-only`` (one frame; each step's device time and drift) with
``--warmup 0`` (no untimed run before each chain call: drift does not need it, and under emulation it doubled the
time). The int8 set met its budget only once its NAFNet was quantized in the textbook statistics form (30.07 dB on
ARM before, 29.55 dB on x86 with the same artifacts: README, "ARM kernels"). The fp32 set (every unit, then the
chain) is ``slow`` only: too long for CI under emulation. Timings here are emulation and are only checked to be
labelled so."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime_py import bench
from runtime_py.bench import EXIT_OK
from tests.android_harness.arm64 import S24_ARM64_PROPS, arm64_bundle, arm64_fakeadbd_args, arm64_userland
from tests.android_harness.conftest import PIXEL8_PROPS
from tests.runtime_py.artifact_sets import cached_set
from tests.runtime_py.bench_fixtures import (  # noqa: F401 — fixtures, used by name
    _start_fake, adb_server, bench_reference_cache, device_tools, host_key)

#: (precision, final sRGB PSNR floor in dB, mean ΔE2000 ceiling or None)
BUDGET = {"policy:fp16": (45.0, None), "policy:int8": (38.0, 1.0), "fp32": (45.0, None)}


@pytest.fixture(scope="module")
def s24_arm64(device_tools, _start_fake):  # noqa: F811
    rootfs = arm64_userland()
    arm64_bundle()                                   # built (or taken from the cache) before the clock of a test
    return _start_fake(*arm64_fakeadbd_args(rootfs, device_tools), props=S24_ARM64_PROPS, host_ro=False)


def _run(request, tmp_path_factory, s24_arm64, reference_cache, key, precision, tmp_path, *extra: str) -> dict:
    aset = cached_set(request, tmp_path_factory, "executorch", precision)
    out = tmp_path / "out"
    argv = ["--device", "galaxy-s24", "--serial", s24_arm64.serial, "--transport", "adb-shell", "--key", str(key),
            "--artifacts", str(aset), "--out", str(out), "--iterations", "1", "--warmup", "0",
            "--reference-cache", str(reference_cache), "--root", "/data/local/tmp/isp_bench_arm64",
            "--timeout-s", "900", *extra]
    assert bench.main(argv) == EXIT_OK, (out / "results.json").read_text()[-3000:] \
        if (out / "results.json").exists() else "no results"
    s = json.loads((out / "results.json").read_text())
    assert (out / "report.html").is_file() and "TIMINGS FROM EMULATION" in (out / "report.html").read_text()
    return s


def _check(s: dict, precision: str) -> None:
    assert s["runner"] == "native" and s["device"]["abi"] == "arm64-v8a"
    assert s["emulation"] and "EMULATION" in s["emulation"]
    assert all(r["status"] == "ok" for r in s["units"]), [r.get("error") for r in s["units"]]
    for r in s["units"]:
        assert r["file"].endswith(".pte") and r["latency_ms"]["p50"] > 0
    steps = s["chain"][0]["steps"]
    from runtime_py.artifacts import ArtifactSet
    assert [st["unit"] for st in steps] == list(ArtifactSet.open(Path(s["artifacts"])).required_units)
    assert all(st["file"].endswith(".pte") and st["sum_ms"] > 0 and st["backend"] for st in steps)
    assert all(st["warmup"] == 0 for st in steps)           # --warmup 0: no untimed run per chain call (emulation)
    final = s["chain"][0]["final"]
    floor, de_max = BUDGET[precision]
    assert final["psnr"] >= floor, f"{precision} on arm64: final sRGB {final['psnr']:.2f} dB < {floor} dB"
    if de_max is not None:
        assert final["de2000_mean"] <= de_max, f"{precision} on arm64: mean ΔE2000 {final['de2000_mean']:.3f}"


@pytest.mark.device
@pytest.mark.slow
@pytest.mark.parametrize("precision", [
    pytest.param("policy:fp16", marks=pytest.mark.budget),     # in CI (CI=true selects budget, slow or not)
    pytest.param("policy:int8", marks=pytest.mark.budget),
])
def test_arm64_budget(request, tmp_path_factory, s24_arm64, bench_reference_cache, host_key, precision,  # noqa: F811
                      tmp_path):
    # the chain only (each step: the unit's device time per call and its drift), to keep CI's time in bounds
    s = _run(request, tmp_path_factory, s24_arm64, bench_reference_cache, host_key, precision, tmp_path,
             "--chain-only")
    assert s["units"] == []
    _check(s, precision)


@pytest.mark.device
@pytest.mark.slow
def test_arm64_fp32(request, tmp_path_factory, s24_arm64, bench_reference_cache, host_key, tmp_path):  # noqa: F811
    s = _run(request, tmp_path_factory, s24_arm64, bench_reference_cache, host_key, "fp32", tmp_path)
    assert {r["unit"] for r in s["units"]} == {st["unit"] for st in s["chain"][0]["steps"]}
    _check(s, "fp32")


@pytest.mark.device
@pytest.mark.slow
@pytest.mark.budget
def test_pixel8_without_artifacts_exports_first(device_tools, _start_fake, bench_reference_cache, host_key,  # noqa: F811
                                                tmp_path, monkeypatch):
    """``--device pixel8`` with no --artifacts and no ./artifacts on the arm64 Pixel 8 stand-in: the profile's
    default set (LiteRT, int8 policy) is exported by the real exporter — at the CI geometry because the device is
    emulated — into ./artifacts (renamed into place when complete), then pushed and run with the native LiteRT
    runner. ``--stages gain`` keeps it to one small fp32 unit (no calibration, no chain) so CI can afford it; a second
    run uses the set it finds."""
    rootfs = arm64_userland()
    arm64_bundle()
    dev = _start_fake(*arm64_fakeadbd_args(rootfs, device_tools), host_ro=False,
                      props={**PIXEL8_PROPS, "ro.kernel.qemu": "1"})
    monkeypatch.chdir(tmp_path)
    argv = ["--device", "pixel8", "--serial", dev.serial, "--transport", "adb-shell", "--key", str(host_key),
            "--out", "out", "--iterations", "1", "--warmup", "0", "--reference-cache", str(bench_reference_cache),
            "--root", "/data/local/tmp/isp_bench_p8", "--export-args", "--stages gain --quiet"]
    assert bench.main(argv) == EXIT_OK
    manifest = json.loads((tmp_path / "artifacts" / "manifest.json").read_text())
    assert manifest["geometry"]["width"] == 512 and manifest["geometry"]["tile"] == 128    # emulated: CI geometry
    assert manifest["policy"]["name"] == "int8" and [a["file"] for a in manifest["artifacts"]] == \
        ["gain_litert_fp32.tflite"]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".artifacts.")]   # no staging left
    s = json.loads((tmp_path / "out" / "results.json").read_text())
    assert s["export"]["emulated"] and s["export"]["argv"][:4] == ["--target", "tflite", "--policy", "int8"]
    assert s["phases"]["export_s"] > 0 and s["runner"] == "native" and s["emulation"]
    assert [(r["unit"], r["status"], r["file"]) for r in s["units"]] == [("gain", "ok", "gain_litert_fp32.tflite")]
    # the set is there now: used as it is, nothing exported
    assert bench.main(argv) == EXIT_OK
    again = json.loads((tmp_path / "out" / "results.json").read_text())
    assert again["export"] is None and "export_s" not in again["phases"]
