"""The C++ ExecuTorch runner (android_harness/native), built for this host: the protocol on the host, then inside
the stand-in Pixel 8 through both transports. (A phone needs the NDK build; see android_harness/README.md.)"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from android_harness.device import native_runner_spec


@pytest.fixture(scope="session")
def native_runner(native_build) -> Path:
    return native_build.wait()


def _host_run(binary, model, tmp_path, x, *extra):
    ins = tmp_path / "in"
    ins.mkdir(exist_ok=True)
    if x is not None:
        np.save(ins / "image.npy", x)
    argv = [str(binary), "--model", str(model), "--inputs", str(ins), "--outputs", str(tmp_path / "out"),
            "--warmup", "1", "--iterations", "5", "--timings", str(tmp_path / "t.json"), *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


class TestNativeRunnerHost:
    def test_outputs_and_timings(self, native_runner, tiny, tiny_models, tmp_path):
        proc = _host_run(native_runner, tiny_models("pte"), tmp_path, tiny.example)
        assert proc.returncode == 0, proc.stderr
        np.testing.assert_allclose(np.load(tmp_path / "out" / "features.npy"), tiny.reference(tiny.example),
                                   rtol=1e-4, atol=1e-5)
        t = json.loads((tmp_path / "t.json").read_text())
        assert t["runner"] == "isp_et_runner" and t["runtime"] == "executorch" and t["backend"] == "XnnpackBackend"
        assert len(t["iteration_ms"]) == 5 and len(t["warmup_ms"]) == 1 and t["peak_rss_bytes"] > 0
        assert t["outputs"] == [{"name": "features", "file": "features.npy", "shape": [1, 4, 16, 16],
                                 "dtype": "float32"}]

    def test_exit_codes(self, native_runner, tiny, tiny_models, tmp_path):
        assert _host_run(native_runner, tiny_models("pte"), tmp_path, None).returncode == 4  # no image.npy
        bad = tmp_path / "bad.pte"
        bad.write_bytes(b"garbage")
        proc = _host_run(native_runner, bad, tmp_path, tiny.example)
        assert proc.returncode == 3 and "could not load" in proc.stderr
        assert subprocess.run([str(native_runner), "--model", "x.pte"], capture_output=True).returncode == 2


@pytest.mark.device
def test_native_runner_inside_device(native_runner, pixel8_device, tiny, tiny_models, tmp_path):
    res = pixel8_device.run_model(native_runner_spec(native_runner, root=pixel8_device.root), tiny_models("pte"),
                                  {"image": tiny.example}, warmup=1, iterations=5, timeout_s=60, out_dir=tmp_path)
    np.testing.assert_allclose(res.outputs["features"], tiny.reference(tiny.example), rtol=1e-4, atol=1e-5)
    assert res.timings["runner"] == "isp_et_runner" and len(res.timings["iteration_ms"]) == 5
