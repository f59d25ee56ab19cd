"""GPU rewrites of LiteRT flatbuffers (convert.targets.litert_gpu): exact on the CPU, and whole on the GPU delegate
where this host has one (skipped with the probe's reason otherwise)."""
from __future__ import annotations

import numpy as np
import pytest

from convert.targets.litert import read_ops
from convert.targets.litert_gpu import measured_coverage, rewrite_for_gpu
from convert import gpu_delegate as gpu
from runtime_py.runtimes import LiteRTRunner

X = np.linspace(-1.5, 2.0, 256, dtype=np.float32).reshape(1, 8, 8, 4)


def _dequant_add_model(weights: np.ndarray) -> bytes:
    """y = x + DEQUANTIZE(fp16 constant): the fp16 precision's weight pattern."""
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    m = fb.ModelT()
    m.version = 3
    const = fb.BufferT()
    const.data = np.frombuffer(weights.astype(np.float16).tobytes(), dtype=np.uint8)
    m.buffers = [fb.BufferT(), fb.BufferT(), const, fb.BufferT(), fb.BufferT()]
    codes = []
    for op in (fb.BuiltinOperator.DEQUANTIZE, fb.BuiltinOperator.ADD):
        c = fb.OperatorCodeT()
        c.builtinCode = c.deprecatedBuiltinCode = op
        c.version = 1
        codes.append(c)
    m.operatorCodes = codes
    sg = fb.SubGraphT()
    sg.tensors = []
    for name, typ, buf in (("x", fb.TensorType.FLOAT32, 1), ("w16", fb.TensorType.FLOAT16, 2),
                           ("w", fb.TensorType.FLOAT32, 3), ("y", fb.TensorType.FLOAT32, 4)):
        t = fb.TensorT()
        t.shape = np.array(X.shape, dtype=np.int32)
        t.type, t.buffer, t.name = typ, buf, name
        sg.tensors.append(t)
    deq, add = fb.OperatorT(), fb.OperatorT()
    deq.opcodeIndex, deq.inputs, deq.outputs = 0, np.array([1], np.int32), np.array([2], np.int32)
    add.opcodeIndex, add.inputs, add.outputs = 1, np.array([0, 2], np.int32), np.array([3], np.int32)
    add.builtinOptionsType, add.builtinOptions = fb.BuiltinOptions.AddOptions, fb.AddOptionsT()
    sg.operators = [deq, add]
    sg.inputs, sg.outputs = np.array([0], np.int32), np.array([3], np.int32)
    m.subgraphs = [sg]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(m))


def _run(flat: bytes, tmp_path, name: str) -> np.ndarray:
    path = tmp_path / name
    path.write_bytes(flat)
    return LiteRTRunner(path).run([X])[0]


def test_clamp_rewrite_is_exact(tmp_path):
    flat = gpu._tiny_model("RELU_0_TO_1")
    new, counts = rewrite_for_gpu(flat)
    assert counts == {"RELU_0_TO_1 -> MAXIMUM+MINIMUM": 1}
    assert [o["op"] for o in read_ops(new)] == ["MAXIMUM", "MINIMUM"]
    np.testing.assert_array_equal(_run(new, tmp_path, "new.tflite"), _run(flat, tmp_path, "old.tflite"))
    np.testing.assert_array_equal(_run(new, tmp_path, "new.tflite"), np.clip(X, 0, 1))
    assert rewrite_for_gpu(new) == (new, {})                                   # idempotent


def test_fp16_weights_folded_to_the_same_values(tmp_path):
    w = np.random.default_rng(0).normal(size=X.shape).astype(np.float32)
    flat = _dequant_add_model(w)
    new, counts = rewrite_for_gpu(flat)
    assert counts == {"DEQUANTIZE fp16 constant -> fp32 constant": 1}
    assert [o["op"] for o in read_ops(new)] == ["ADD"]
    got = _run(new, tmp_path, "new.tflite")
    np.testing.assert_array_equal(got, _run(flat, tmp_path, "old.tflite"))
    np.testing.assert_array_equal(got, X + w.astype(np.float16).astype(np.float32))


def test_rewritten_models_run_wholly_on_the_gpu(tmp_path):
    reason = gpu.skip_reason()
    if reason:
        pytest.skip(reason)
    for name, flat in (("clamp", gpu._tiny_model("RELU_0_TO_1")),
                       ("dequant", _dequant_add_model(np.ones(X.shape, np.float32)))):
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(rewrite_for_gpu(flat)[0])
        cov = measured_coverage(path)
        assert cov["measured"] and cov["fully_accelerated"] and cov["fraction"] == 1.0, (name, cov)


def test_probe_skipped_on_request(tmp_path, monkeypatch):
    path = tmp_path / "clamp.tflite"
    path.write_bytes(gpu._tiny_model("ADD"))
    monkeypatch.setenv("ISP_NO_GPU_PROBE", "1")
    assert measured_coverage(path) == {"measured": False, "reason": "not measured: ISP_NO_GPU_PROBE=1"}


def test_delegate_crash_is_recorded_not_fatal(tmp_path, monkeypatch):
    """The coverage probe compiles in a worker child: a segfault there (forced) is a recorded reason naming the
    file, and this process (pytest, an export) goes on."""
    reason = gpu.skip_reason()
    if reason:
        pytest.skip(reason)
    path = tmp_path / "add.tflite"
    path.write_bytes(gpu._tiny_model("ADD"))
    monkeypatch.setenv("ISP_GPU_TEST_CRASH", "coverage")
    cov = measured_coverage(path)
    assert cov["measured"] is False
    assert cov["reason"] == "not measured: delegate crashed (signal 11) on add.tflite", cov
    assert "SIGSEGV" in cov["detail"] and str(path) in cov["detail"]
    monkeypatch.delenv("ISP_GPU_TEST_CRASH")
    assert measured_coverage(path)["fully_accelerated"]
