"""``python -m runtime_py.bench`` against the stand-in Pixel 8 (shared/device/fakeadbd.py), both transports.

The artifact set is the exporter's (``bench_artifacts``: every unit ONNX fp32 + ``gain`` LiteRT fp32, 512x320,
tile 128). The Python host runner runs inside the stand-in device (it sees the venv read-only). Timings on the
stand-in say nothing about a phone; these tests check the flow, the numbers' plumbing, resume and the faults.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from runtime_py import bench
from runtime_py.bench import EXIT_DEVICE, EXIT_FAILED, EXIT_OK, EXIT_USAGE, latency_stats

from .bench_fixtures import (  # noqa: F401 — fixtures, used by name
    _start_fake, adb_env, adb_server, bench_artifacts, bench_device, bench_reference_cache, device_tools, dng_folder,
    fake_at, fake_device, free_port, host_key, native_runner, onnx_set, other_key, pte_artifacts, stub_artifacts)

ROOT = "/data/local/tmp/isp_bench"


def _argv(fake, kind, artifacts, out, refcache, *extra, key=None):
    argv = ["--device", "pixel8", "--serial", fake.serial, "--transport", kind, "--artifacts", str(artifacts),
            "--out", str(out), "--iterations", "3", "--warmup", "1", "--runner", "host",
            "--reference-cache", str(refcache), "--connect-timeout-s", "5", "--auth-timeout-s", "5"]
    if key is not None:
        argv += ["--key", str(key)]
    return argv + list(extra)


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


# ------------------------------------------------------------------------------------------------- pure functions

def test_latency_stats():
    s = latency_stats([4.0, 1.0, 3.0, 2.0, 100.0])
    assert s["n"] == 5 and s["min"] == 1.0 and s["max"] == 100.0 and s["p50"] == 3.0
    assert s["p90"] == pytest.approx(61.6) and s["p99"] == pytest.approx(96.16)
    assert latency_stats([])["p50"] is None


def test_compare_outputs_kinds():
    rng = np.random.default_rng(0)
    ref = rng.random((1, 3, 32, 32), dtype=np.float32)
    pred = ref + 1e-3
    srgb = bench.compare_outputs("srgb", pred, ref)
    assert srgb["kind"] == "srgb" and srgb["de2000_mean"] > 0 and srgb["psnr"] == pytest.approx(60, abs=0.1)
    raw = bench.compare_outputs("denoised_raw", pred, ref)
    assert raw["kind"] == "data" and raw["de2000_mean"] is None and raw["ssim"] is not None
    assert bench.compare_outputs("gain_param", np.ones((1, 1, 1, 1)), np.ones((1, 1, 1, 1)))["psnr"] == float("inf")
    assert "shape" in bench.compare_outputs("srgb", pred[..., :16], ref)["error"]


# ------------------------------------------------------------------------------------------------- full runs

@pytest.mark.device
@pytest.mark.parametrize("kind", ["adb", pytest.param("adb-shell", marks=pytest.mark.slow)])
def test_full_report_and_resume(kind, bench_device, bench_artifacts, bench_reference_cache, adb_env, host_key,
                                tmp_path, capsys):
    out = tmp_path / "out"
    argv = _argv(bench_device, kind, bench_artifacts, out, bench_reference_cache,
                 "--root", f"{ROOT}_{kind.replace('-', '_')}", key=host_key)
    assert bench.main(argv) == EXIT_OK, capsys.readouterr().err
    s = _results(out)
    assert (out / "report.html").stat().st_size > 10_000
    page = (out / "report.html").read_text()
    assert "End to end on the device" in page and "data:image/png;base64," in page
    assert s["device"]["model"] == "Pixel 8" and s["device"]["transport"] == kind
    units = {r["unit"]: r for r in s["units"]}
    assert set(units) == {"denoise", "color", "downsample", "gain", "gtm", "ltm", "chroma", "gamma",
                          "upsample_fit", "upsample_slice", "enhance"}
    # Pixel 8 prefers LiteRT on the GPU where converted: the LiteRT gain wins; the host runner ran it on XNNPACK
    assert units["gain"]["file"] == "gain_litert_fp32.tflite" and units["gain"]["preferred"].startswith("tflite/gpu")
    assert "XNNPACK" in units["gain"]["backend"]
    assert units["denoise"]["file"] == "denoise_onnx_fp32.onnx" and units["denoise"]["calls_per_frame"] == 15
    assert units["color"]["calls_per_frame"] == 12 and units["gtm"]["calls_per_frame"] == 1
    for r in units.values():
        assert r["status"] == "ok" and r["latency_ms"]["n"] == 3
        lat = r["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"]
        assert r["peak_rss_bytes"] > 0
        for d in r["drift"]:
            floor = 30 if d["name"] == "bgu_grid" else 60     # fp32 everywhere; the BGU fit is mobile vs official
            assert d["identical"] or d["psnr"] > floor, (r["unit"], d)
    chain = s["chain"][0]
    assert [st["unit"] for st in chain["steps"]] == list(units)
    assert all(st["warmup"] == 1 for st in chain["steps"])          # --warmup 1: each chain call warmed once
    assert sum(st["calls"] for st in chain["steps"]) == 15 + 12 + 1 + 5 + 1 + 12 + 15      # quarter units: gain gtm ltm chroma gamma
    assert s["measured_frame_ms"] == pytest.approx(sum(st["sum_ms"] for st in chain["steps"]))
    assert s["measured_frame_ms"] > 0
    est = sum(r["latency_ms"]["p50"] * r["calls_per_frame"] for r in units.values())
    assert s["estimate_frame_ms"] == pytest.approx(est)
    final = chain["final"]
    assert final["name"] == "srgb" and final["psnr"] > 40 and final["de2000_mean"] < 0.5
    assert s["push"]["pushed"] > 0 and s["push"]["bytes_pushed"] > 1_000_000
    first_seconds = s["seconds"]

    # the same command again: nothing pushed, every unit and chain step taken from the first run
    assert bench.main(argv) == EXIT_OK
    s2 = _results(out)
    assert s2["push"]["bytes_pushed"] == 0 and s2["push"]["pushed"] == 0
    assert all(r.get("resumed") for r in s2["units"])
    assert all(st.get("resumed") for st in s2["chain"][0]["steps"])
    assert s2["measured_frame_ms"] == s["measured_frame_ms"]
    assert s2["seconds"] < first_seconds


@pytest.mark.device
def test_adb_shell_transport_units_and_resume(bench_device, bench_artifacts, bench_reference_cache, host_key,
                                              tmp_path):
    """The adb-shell (PyPI) transport end to end on a few units (the whole chain over adb-shell: -m slow)."""
    out = tmp_path / "out"
    argv = _argv(bench_device, "adb-shell", bench_artifacts, out, bench_reference_cache, "--units", "gain,gamma",
                 "--no-chain", "--root", f"{ROOT}_adb_shell_units", key=host_key)
    assert bench.main(argv) == EXIT_OK
    s = _results(out)
    assert s["device"]["transport"] == "adb-shell" and s["chain_note"] == "skipped (--no-chain)"
    assert [(r["unit"], r["status"]) for r in s["units"]] == [("gain", "ok"), ("gamma", "ok")]
    assert s["units"][0]["file"] == "gain_litert_fp32.tflite" and s["estimate_frame_ms"] is None
    assert all(d["identical"] or d["psnr"] > 60 for r in s["units"] for d in r["drift"])
    assert bench.main(argv) == EXIT_OK
    s2 = _results(out)
    assert s2["push"]["bytes_pushed"] == 0 and all(r.get("resumed") for r in s2["units"])

    # a re-exported gamma (same graph, new bytes): its result is stale, gain's is not
    changed = tmp_path / "changed"
    changed.mkdir()
    manifest = json.loads((bench_artifacts / "manifest.json").read_text())
    for f in bench_artifacts.iterdir():
        if f.is_file() and f.name != "manifest.json" and not f.name.startswith("."):
            (changed / f.name).symlink_to(f.resolve())
    import hashlib

    import onnx
    g = [a for a in manifest["artifacts"] if a["unit"] == "gamma" and a["target"] == "onnx"][0]
    (changed / g["file"]).unlink()
    model = onnx.load(str(bench_artifacts / g["file"]))
    model.doc_string = "re-exported"
    onnx.save(model, str(changed / g["file"]))
    g["sha256"] = hashlib.sha256((changed / g["file"]).read_bytes()).hexdigest()
    (changed / "manifest.json").write_text(json.dumps(manifest))
    argv[argv.index("--artifacts") + 1] = str(changed)
    assert bench.main(argv) == EXIT_OK
    s3 = {r["unit"]: r for r in _results(out)["units"]}
    assert s3["gain"].get("resumed") and not s3["gamma"].get("resumed") and s3["gamma"]["sha256"] == g["sha256"]


@pytest.mark.device
@pytest.mark.slow
def test_native_runner_inside_the_device(bench_device, pte_artifacts, native_runner, bench_reference_cache,
                                         host_key, tmp_path):
    """``--runner native``: the C++ ExecuTorch runner (host build; the stand-in sees the wheel's libraries through
    --host-ro) with the names-only io spec the benchmark writes for every .pte."""
    out = tmp_path / "out"
    argv = _argv(bench_device, "adb-shell", pte_artifacts, out, bench_reference_cache, "--no-chain", "--root",
                 f"{ROOT}_native", key=host_key)
    argv[argv.index("host")] = "native"
    argv += ["--native-runner", str(native_runner)]
    assert bench.main(argv) == EXIT_OK
    s = _results(out)
    assert s["runner"] == "native" and [r["unit"] for r in s["units"]] == ["gain", "gamma"]
    for r in s["units"]:
        assert r["file"].endswith(".pte") and r["backend"] == "XnnpackBackend"
        assert r["peak_rss_bytes"] < 200 << 20                   # no Python in the process
        assert all(d["identical"] or d["psnr"] > 60 for d in r["drift"])


# ------------------------------------------------------------------------------------------------- faults

@pytest.mark.device
def test_device_killed_mid_run_keeps_finished_and_resumes(fake_at, bench_artifacts, bench_reference_cache, adb_env,
                                                          host_key, tmp_path, capsys):
    """The phone disappears after a few units: clear error, finished units kept; the same phone back (same storage,
    new port) and the same command again: nothing pushed again, finished units skipped, the rest done."""
    root = tmp_path / "devroot"
    fake = fake_at(root)
    out = tmp_path / "out"
    units = "color,downsample,gain,gtm,chroma,gamma"
    argv = _argv(fake, "adb", bench_artifacts, out, bench_reference_cache, "--retries", "1", "--no-chain",
                 "--units", units, key=host_key)
    code: list[int] = []
    t = threading.Thread(target=lambda: code.append(bench.main(argv)))
    t.start()
    deadline = time.monotonic() + 240
    while len(list((out / "units").glob("*/result.json"))) < 2 and t.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    fake.stop()                                       # the cable is pulled
    t.join(120)
    assert not t.is_alive() and code == [EXIT_DEVICE]
    err = capsys.readouterr().err
    assert "lost device" in err and "Finished units" in err and "run again" in err
    kept = {p.parent.name for p in (out / "units").glob("*/result.json")}
    assert 2 <= len(kept) < 6
    assert _results(out)["fault"]                     # the partial report records the fault
    for f in (out / "units").glob("*/result.json"):   # every kept result is complete
        assert json.loads(f.read_text())["status"] == "ok"

    again = fake_at(root)                             # the same phone, reconnected (new port)
    argv2 = _argv(again, "adb", bench_artifacts, out, bench_reference_cache, "--no-chain", "--units", units,
                  key=host_key)
    assert bench.main(argv2) == EXIT_OK
    s = _results(out)
    assert s["push"]["bytes_pushed"] == 0             # everything was pushed before the loss, once
    resumed = {r["unit"] for r in s["units"] if r.get("resumed")}
    assert resumed == kept and len(s["units"]) == 6 and all(r["status"] == "ok" for r in s["units"])


@pytest.mark.device
def test_storage_full(fake_at, bench_artifacts, bench_reference_cache, adb_env, host_key, tmp_path, capsys):
    fake = fake_at(tmp_path / "devroot", "--storage-limit", str(1 << 20))
    out = tmp_path / "out"
    code = bench.main(_argv(fake, "adb", bench_artifacts, out, bench_reference_cache, key=host_key))
    assert code == EXIT_DEVICE
    err = capsys.readouterr().err
    assert "storage is full" in err and "Free space" in err
    assert not list(fake.host_path(ROOT).rglob("*.part"))
    assert _results(out)["fault"] and not list((out / "units").glob("*/result.json"))


@pytest.mark.device
@pytest.mark.parametrize("kind", ["adb", "adb-shell"])
def test_unauthorized(kind, fake_device, other_key, stub_artifacts, adb_env, host_key, tmp_path, capsys):
    fake = fake_device(keys=other_key)                # the phone knows another host's key and shows no prompt
    argv = ["--device", "pixel8", "--serial", fake.serial, "--transport", kind, "--artifacts", str(stub_artifacts),
            "--out", str(tmp_path / "out"), "--runner", "host", "--auth-timeout-s", "1.5", "--key", str(host_key)]
    t0 = time.monotonic()
    assert bench.main(argv) == EXIT_DEVICE
    assert time.monotonic() - t0 < 20
    assert "Allow USB debugging" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["adb", "adb-shell"])
def test_no_device(kind, stub_artifacts, adb_env, host_key, tmp_path, capsys):
    argv = ["--device", "pixel8", "--serial", f"127.0.0.1:{free_port()}", "--transport", kind, "--artifacts",
            str(stub_artifacts), "--out", str(tmp_path / "out"), "--connect-timeout-s", "2", "--key", str(host_key),
            "--runner", "host"]                        # the stub set is ONNX: the Python runner's format
    assert bench.main(argv) == EXIT_DEVICE
    assert "no Android device answers" in capsys.readouterr().err


@pytest.mark.device
def test_wrong_profile_is_a_clear_mismatch(bench_device, stub_artifacts, adb_env, host_key, tmp_path, capsys):
    argv = ["--device", "galaxy-s24", "--serial", bench_device.serial, "--artifacts", str(stub_artifacts),
            "--out", str(tmp_path / "out"), "--key", str(host_key), "--runner", "host"]
    assert bench.main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "is a Pixel 8" in err and "Samsung Galaxy S24" in err and "--allow-mismatch" in err


@pytest.mark.device
def test_runner_crash_is_recorded(bench_device, stub_artifacts, bench_reference_cache, adb_env, host_key, tmp_path,
                                  capsys):
    out = tmp_path / "out"
    argv = _argv(bench_device, "adb", stub_artifacts, out, bench_reference_cache, "--root", f"{ROOT}_crash",
                 key=host_key)
    assert bench.main(argv) == EXIT_FAILED
    (r,) = _results(out)["units"]
    assert (r["unit"], r["status"], r["failure"]) == ("gain", "failed", "crash")
    assert "exited with 3 (model failed to load)" in r["error"] and "could not load" in r["error"]
    assert "failed unit(s): gain" in capsys.readouterr().err
    assert (out / "units" / "gain.failed.json").is_file() and not (out / "units" / "gain").exists()


@pytest.mark.device
def test_runner_timeout_fails_the_unit_only(bench_device, bench_artifacts, bench_reference_cache, adb_env, host_key,
                                            tmp_path, capsys):
    out = tmp_path / "out"
    argv = _argv(bench_device, "adb", bench_artifacts, out, bench_reference_cache, "--units", "gtm,gamma",
                 "--no-chain", "--timeout-s", "3", "--runner-args", "--debug-sleep-s 60", "--root",
                 f"{ROOT}_timeout", key=host_key)
    t0 = time.monotonic()
    assert bench.main(argv) == EXIT_FAILED
    assert time.monotonic() - t0 < 90
    s = _results(out)
    assert [(r["unit"], r["status"], r["failure"]) for r in s["units"]] == [("gtm", "failed", "timeout"),
                                                                          ("gamma", "failed", "timeout")]
    assert "was killed" in s["units"][0]["error"]
    assert "failed unit(s): gtm, gamma" in capsys.readouterr().err
    assert (out / "report.html").is_file()
