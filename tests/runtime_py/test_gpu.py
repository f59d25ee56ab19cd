"""LiteRT's GPU delegate (runtime_py.gpu): adapter probe, runner, and no silent CPU fallback.

Skips with the probe's reason where no GPU adapter exists (``bash scripts/setup_vulkan.sh`` installs lavapipe);
CI installs it, so these run there."""
from __future__ import annotations

import os

import numpy as np
import pytest

from convert import gpu_delegate
from runtime_py import gpu, runtimes


@pytest.fixture(scope="module")
def adapter():
    reason = gpu.skip_reason()
    if reason:
        pytest.skip(reason)
    return gpu.adapter()["adapter"]


def test_runtime_dir_is_set_when_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "gone"))
    got = gpu.ensure_runtime_dir()
    assert os.path.isdir(got) and os.environ["XDG_RUNTIME_DIR"] == got and got != str(tmp_path / "gone")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert gpu.ensure_runtime_dir() == str(tmp_path)


def test_log_parsing():
    log = ("ERROR: Following operations are not supported by GPU delegate:\nRELU_0_TO_1: Not supported op "
           "RELU_0_TO_1\nDEQUANTIZE: \nRESHAPE: Tensor dimensions must be less than 5. a\nRESHAPE: Tensor dimensions must "
           "be less than 5. b\n476 operations will run on the GPU, and the "
           "remaining 80 operations will run on the CPU.\nI0000 environment.cc:532] Selected adapter: llvmpipe x\n")
    rejected, split, name = gpu_delegate._parse_log(log)
    assert rejected == {"RELU_0_TO_1": "Not supported op RELU_0_TO_1", "DEQUANTIZE": "not supported",
                        "RESHAPE": "Tensor dimensions must be less than 5. a | Tensor dimensions must be less than 5. b"}
    assert split == (476, 80) and name == "llvmpipe x"


def test_gpu_units_of_pixel8():
    units = gpu.gpu_units("pixel8")
    assert "denoise" in units and "upsample_fit" not in units


def test_gpu_runner_runs_and_fp16(adapter, tmp_path):
    path = tmp_path / "add.tflite"
    path.write_bytes(gpu_delegate._tiny_model("ADD"))
    x = np.full((1, 8, 8, 4), 1.0 + 2 ** -13, np.float32)          # representable in fp32, not in fp16
    fp16 = runtimes.load(path, runtime="litert-gpu")
    f32 = runtimes.load(path, runtime="litert-gpu-f32")
    assert fp16.coverage.fully_accelerated and fp16.coverage.fraction == 1.0 and fp16.coverage.adapter == adapter
    assert np.all(f32.run([x, x])[0] == 2 * x[0, 0, 0, 0])             # fp32 kernels keep the low bit
    assert np.all(fp16.run([x, x])[0] == 2.0)                          # fp16 compute rounds it away


def test_no_silent_cpu_fallback(adapter, tmp_path):
    path = tmp_path / "clamp.tflite"
    path.write_bytes(gpu_delegate._tiny_model("RELU_0_TO_1"))
    with pytest.raises(gpu_delegate.GpuFallbackError, match="RELU_0_TO_1"):
        runtimes.load(path, runtime="litert-gpu")
    mixed = runtimes.load(path, runtime="litert-gpu", allow_cpu_fallback=True)
    cov = mixed.coverage
    assert not cov.fully_accelerated and "RELU_0_TO_1" in cov.rejected and cov.cpu_ops == 1 and cov.gpu_ops == 0
    x = np.linspace(-1, 2, 256, dtype=np.float32).reshape(1, 8, 8, 4)
    np.testing.assert_allclose(mixed.run([x])[0], np.clip(x, 0, 1), atol=1e-3)


@pytest.mark.parametrize("stage", ["open", "run"])
def test_delegate_crash_raises_and_the_caller_lives(adapter, tmp_path, monkeypatch, stage):
    """Compile and run happen in the runner's worker child: a segfault there (forced) raises GpuWorkerCrash with
    the signal and the file, in compile or in run, and this process goes on."""
    path = tmp_path / "add.tflite"
    path.write_bytes(gpu_delegate._tiny_model("ADD"))
    monkeypatch.setenv("ISP_GPU_TEST_CRASH", stage)
    x = np.ones((1, 8, 8, 4), np.float32)
    with pytest.raises(gpu_delegate.GpuWorkerCrash, match=r"add\.tflite.*crashed \(signal 11, SIGSEGV\)") as err:
        runner = runtimes.load(path, runtime="litert-gpu")
        runner.run([x, x])
    assert err.value.signal == 11
    monkeypatch.delenv("ISP_GPU_TEST_CRASH")
    assert np.all(runtimes.load(path, runtime="litert-gpu").run([x, x])[0] == 2.0)


def test_hung_delegate_times_out(tmp_path):
    path = tmp_path / "add.tflite"
    path.write_bytes(gpu_delegate._tiny_model("ADD"))
    with pytest.raises(gpu_delegate.GpuWorkerTimeout, match=r"add\.tflite.*within the timeout"):
        gpu_delegate.LiteRTGpuRunner(path, timeout=0.05)


def test_gpu_selection_load_errors(monkeypatch, tmp_path):
    """A GPU unit's runner comes from the GPU loader through Selection.runner's cache: the delegate's own errors
    (which name the file) come out as they are, anything else is wrapped naming the unit and the runtime, and a
    loaded runner is reused."""
    from types import SimpleNamespace

    art = SimpleNamespace(family="litert", target="tflite", precision="fp16", path=tmp_path / "denoise.tflite")
    calls = []

    def fake_load(artifact, runtime, allow_cpu_fallback=False, record=None):
        calls.append(runtime)
        if len(calls) == 1:
            raise gpu_delegate.GpuFallbackError("denoise.tflite: 3 ops on the CPU", gpu_delegate.GpuCoverage(4, 1, 3, False))
        if len(calls) == 2:
            raise OSError("no device memory")
        return "runner"

    monkeypatch.setattr(gpu, "load_artifact", fake_load)
    sel = gpu._selection_class()(SimpleNamespace(), {"denoise": art}, "litert-gpu", ["denoise"])
    with pytest.raises(gpu_delegate.GpuFallbackError, match="3 ops on the CPU"):
        sel.runner("denoise")
    with pytest.raises(RuntimeError, match=r"unit denoise: could not load denoise\.tflite \(tflite/fp16 on "
                                           r"litert-gpu\): OSError: no device memory"):
        sel.runner("denoise")
    assert sel.runner("denoise") == "runner" and sel.runner("denoise") == "runner"
    assert calls == ["litert-gpu"] * 3
