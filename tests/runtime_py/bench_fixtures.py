"""Fixtures of the device benchmark and capture tests (test_bench, test_capture, test_devices import them by name).

The stand-in device, keys and the private adb server come from ``tests/android_harness/conftest.py`` (imported by
name; its autouse model-export and native-build fixtures are deliberately not imported). Added here:

* ``bench_artifacts`` — the ONNX fp32 set at the CI geometry (512x320, tile 128, overlap 32) of
  ``artifact_sets.onnx_set`` (exported once and cached in pytest's cache folder), plus ``gain`` exported to LiteRT
  fp32 next to it, so a Pixel 8 selection mixes targets. The mixed folder (symlinks to the ONNX set + the
  ``.tflite``, merged manifest) is cached in pytest's cache folder too, keyed by the ONNX set's key.
* ``bench_reference_cache`` — one folder for the reference renders, shared by every bench run of the session.
* ``bench_device`` — a Pixel 8 stand-in that also sees the shared DNG folder read-only (for the capture stand-in).
* ``fake_at(root, *flags)`` — a stand-in serving a given device folder, so a test can stop "the phone" and bring it
  back (same storage, new port).
* ``stub_artifacts`` — a one-unit manifest with a dummy file, for runs that fail before anything runs.
* ``adb_env`` — the private adb server's port, HOME and key in the environment (for CLI runs of the adb client).
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import AbstractSet, Iterator

import pytest

from tests.android_harness.conftest import (  # noqa: F401 — fixtures, used by name
    FakeDevice, _start_fake, adb_server, device_tools, fake_device, free_port, host_key, launch_fakeadbd,
    make_transport, other_key, stopped_after)
from tests.runtime_py.artifact_sets import cache_dir, onnx_set  # noqa: F401 — onnx_set is a fixture

REPO = Path(__file__).resolve().parents[2]
EXTRA_EXPORTS = (("tflite", "gain"),)


def _export(target: str, stages: str, out: Path) -> None:
    """convert/export.py: ``stages`` to ``target`` in fp32 at the CI geometry into ``out``; fails the test on error."""
    proc = subprocess.run([sys.executable, str(REPO / "convert" / "export.py"), "--target", target, "--stages",
                           stages, "--precision", "fp32", "--size", "512x320", "--tile", "128", "--overlap", "32",
                           "--out", str(out), "--quiet"],
                          capture_output=True, text=True, cwd=REPO, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        pytest.fail(f"exporting {stages} to {target} for the bench tests failed:\n{proc.stderr[-3000:]}")


@contextlib.contextmanager
def _staged(folder: Path) -> Iterator[Path]:
    """A staging path next to ``folder`` (not created); when the block succeeds it replaces ``folder``."""
    staging = folder.parent / f".staging-{uuid.uuid4().hex[:8]}"
    try:
        yield staging
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _valid(folder: Path, needs: AbstractSet[tuple[str, str]] = frozenset()) -> bool:
    """The cached set in ``folder`` opens, its files check out and it holds every (unit, target) of ``needs``."""
    from runtime_py.artifacts import ArtifactSet
    try:
        aset = ArtifactSet.open(folder)
        for a in aset.artifacts:
            a.check_file(verify=True)
        return needs <= {(a.unit, a.target) for a in aset.artifacts}
    except Exception:  # noqa: BLE001 — any problem: build again
        return False


@pytest.fixture(scope="session")
def bench_artifacts(request, tmp_path_factory, onnx_set) -> Path:  # noqa: F811
    """The ONNX fp32 test set plus a LiteRT fp32 ``gain`` (cached; see the module docstring)."""
    base = cache_dir(request, tmp_path_factory, "runtime_py-bench")
    folder = base / f"{Path(onnx_set).name}-tflite-gain"
    if (folder / "manifest.json").is_file() and _valid(folder, {("gain", "litert")}):
        return folder
    with _staged(folder) as staging:
        staging.mkdir()
        for f in Path(onnx_set).iterdir():
            if f.is_file() and not f.name.startswith("."):
                if f.name == "manifest.json":
                    shutil.copy2(f, staging / f.name)
                else:
                    (staging / f.name).symlink_to(f.resolve())
        for target, stages in EXTRA_EXPORTS:
            _export(target, stages, staging)
    for old in base.iterdir():                          # keep one cached set
        if old != folder and not old.name.startswith("."):
            shutil.rmtree(old, ignore_errors=True)
    return folder


@pytest.fixture(scope="session")
def bench_reference_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench_reference")


@pytest.fixture(scope="session")
def dng_folder(shared_root) -> Path:
    from isp import paths
    return paths.dng_dir()


@pytest.fixture(scope="session")
def bench_device(_start_fake, dng_folder) -> FakeDevice:  # noqa: F811
    """A Pixel 8 stand-in (RSA auth with the test key, the venv visible for host_runner.py) that also sees the
    shared DNG folder read-only."""
    return _start_fake("--host-ro", str(dng_folder))


@pytest.fixture
def adb_env(adb_server, host_key, monkeypatch):  # noqa: F811
    """The private adb server for CLI runs: the adb client reads its port, HOME and key from the environment."""
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(adb_server["server_port"]))
    monkeypatch.setenv("HOME", str(adb_server["home"]))
    monkeypatch.setenv("ADB_VENDOR_KEYS", str(host_key))
    return adb_server


@pytest.fixture
def fake_at(device_tools, host_key, tmp_path, dng_folder):  # noqa: F811
    """fake_at(root, *extra) -> a stand-in Pixel 8 serving the device folder ``root``; stopped after the test."""
    n = itertools.count()

    def launch(root: Path, *extra: str) -> FakeDevice:
        i = next(n)
        return launch_fakeadbd(device_tools, root, tmp_path / f"port{i}", tmp_path / f"fakeadbd{i}.log",
                               "--host-ro", str(dng_folder), *extra, adb_key=host_key)

    yield from stopped_after(launch)


@pytest.fixture
def stub_artifacts(tmp_path, shared_root) -> Path:
    """A manifest with one ONNX ``gain`` artifact whose file is not a model (its sha256 is right): the runner fails
    to load it. Same pipeline settings as the exported sets, so the reference renders are shared."""
    from isp import paths
    folder = tmp_path / "stub_artifacts"
    folder.mkdir()
    f = folder / "gain_onnx_fp32.onnx"
    f.write_bytes(b"not a model")
    entry = {"unit": "gain", "stage": "gain", "target": "onnx", "backend": "cpu", "precision": "fp32",
             "file": f.name, "bytes": f.stat().st_size, "sha256": hashlib.sha256(f.read_bytes()).hexdigest(),
             "inputs": [{"name": "lsrgb_ds", "shape": [1, 3, 80, 128], "dtype": "float32"}],
             "outputs": [{"name": "lsrgb_gain", "shape": [1, 3, 80, 128], "dtype": "float32"},
                         {"name": "gain_param", "shape": [1, 1, 1, 1], "dtype": "float32"}],
             "tiling": {"mode": "quarter"}, "op_coverage": {"total_ops": 1, "delegated_ops": 1}}
    manifest = {"format": "isp-artifacts/1", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "geometry": {"width": 512, "height": 320, "quarter": [80, 128], "tile": 128, "overlap": 32},
                "style": 0, "lut": False, "denoiser": "s24_lite", "weights": str(paths.weights_root()),
                "policy": {"default": "fp32"},
                "artifacts": [entry], "failures": []}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture(scope="session")
def pte_artifacts(request, tmp_path_factory) -> Path:
    """``gain`` and ``gamma`` exported to ExecuTorch (XNNPACK) fp32 at the CI geometry (cached like the others)."""
    base = cache_dir(request, tmp_path_factory, "runtime_py-bench-pte")
    src = sorted((REPO / "convert").rglob("*.py")) + sorted((REPO / "isp").rglob("*.py"))
    key = hashlib.sha256(b"".join(f.read_bytes() for f in src)).hexdigest()[:16]
    folder = base / key
    if (folder / "manifest.json").is_file() and _valid(folder):
        return folder
    with _staged(folder) as staging:
        _export("executorch", "gain,gamma", staging)
    return folder


@pytest.fixture(scope="session")
def native_runner(tmp_path_factory) -> Path:
    """``isp_et_runner`` for this host: ``$ISP_NATIVE_RUNNER``, else ``build/native/isp_et_runner`` if built (the
    android_harness README's build folder), else built now with cmake into a temporary folder."""
    import importlib.util
    env = os.environ.get("ISP_NATIVE_RUNNER")
    if env:
        return Path(env)
    built = REPO / "build" / "native" / "isp_et_runner"
    if built.is_file() and os.access(built, os.X_OK):
        return built
    spec = importlib.util.find_spec("executorch")
    if spec is None or shutil.which("cmake") is None or shutil.which("c++") is None:
        pytest.skip("the native runner needs cmake, a C++ compiler and the executorch wheel")
    et_dir = list(spec.submodule_search_locations)[0]
    build = tmp_path_factory.mktemp("native_build")
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    for argv in (["cmake", "-S", str(REPO / "android_harness" / "native"), "-B", str(build), *gen,
                  f"-DCMAKE_PREFIX_PATH={et_dir}", "-DCMAKE_CXX_FLAGS=-Wno-deprecated-declarations"],
                 ["cmake", "--build", str(build), "-j2"]):
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.fail(f"building the native runner failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return build / "isp_et_runner"
