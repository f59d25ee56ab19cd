"""Make a LiteRT flatbuffer one that the GPU delegate takes whole, and measure what it takes.

LiteRT's GPU delegate (``runtime_py.gpu``; WebGPU on Vulkan here, OpenCL/OpenGL on phones) rejects a few ops the
converter emits; everything after a rejected op then runs on the CPU too (one delegated partition). Rewrites, each
exact:

* ``RELU_0_TO_1`` (the final ``clamp(0, 1)`` of color, chroma, gamma, enhance, upsample_slice) -> ``MAXIMUM`` with
  0 then ``MINIMUM`` with 1 (scalar constants);
* ``DEQUANTIZE`` of a constant float16 tensor (the ``fp16`` precision's weights) -> the float32 constant itself.
  The GPU delegate computes in float16 on its own (its default precision) and rounds float32 weights to float16
  when it uploads them, which is the same number the float16 weight held: the GPU numerics do not change, and the
  delegate no longer meets a ``DEQUANTIZE`` it may refuse (it took them in front of convolutions, not in front of
  other ops). The file's weights are then float32 (twice the bytes); the CPU runs it in float32 as before.

:func:`measured_coverage` compiles the written file on the GPU delegate in a worker child (when this host has an
adapter and ``ISP_NO_GPU_PROBE=1`` is not set; a delegate crash is recorded, never fatal) and returns the manifest
record: ops on the GPU / total and every op type it left to the CPU, with the delegate's reasons.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["rewrite_for_gpu", "measured_coverage"]


def _builtin(fb: Any, code: Any) -> int:
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def _opcode(fb: Any, model: Any, op: int) -> int:
    for i, code in enumerate(model.operatorCodes):
        if _builtin(fb, code) == op:
            return i
    code = fb.OperatorCodeT()
    code.builtinCode = op
    code.deprecatedBuiltinCode = min(op, 127)
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _const(fb: Any, model: Any, sg: Any, value: float, name: str) -> int:
    buf = fb.BufferT()
    buf.data = np.frombuffer(np.asarray([value], np.float32).tobytes(), dtype=np.uint8)
    model.buffers.append(buf)
    t = fb.TensorT()
    t.shape = np.array([], dtype=np.int32)
    t.type = fb.TensorType.FLOAT32
    t.buffer = len(model.buffers) - 1
    t.name = name
    sg.tensors.append(t)
    return len(sg.tensors) - 1


def rewrite_for_gpu(flat: bytes) -> tuple[bytes, dict[str, int]]:
    """``(new flatbuffer, {rewrite: count})``; see the module docstring. A model with external (offset) buffers
    is returned unchanged."""
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    model = fb.ModelT.InitFromPackedBuf(bytearray(flat), 0)
    if any(b.offset for b in model.buffers or []):
        return flat, {}
    counts = {"RELU_0_TO_1 -> MAXIMUM+MINIMUM": 0, "DEQUANTIZE fp16 constant -> fp32 constant": 0}
    relu01 = fb.BuiltinOperator.RELU_0_TO_1
    dequant = fb.BuiltinOperator.DEQUANTIZE
    max_code = min_code = None
    for sg in model.subgraphs or []:
        ops = []
        folded: list[int] = []                  # the float16 constants now held as float32
        for op in sg.operators or []:
            kind = _builtin(fb, model.operatorCodes[op.opcodeIndex])
            if kind == dequant:
                src = sg.tensors[op.inputs[0]]
                buf = model.buffers[src.buffer] if 0 < src.buffer < len(model.buffers) else None
                if src.type == fb.TensorType.FLOAT16 and buf is not None and buf.data is not None and len(buf.data):
                    values = np.frombuffer(bytes(bytearray(buf.data)), dtype=np.float16).astype(np.float32)
                    new_buf = fb.BufferT()
                    new_buf.data = np.frombuffer(values.tobytes(), dtype=np.uint8)
                    model.buffers.append(new_buf)
                    out = sg.tensors[op.outputs[0]]
                    out.buffer = len(model.buffers) - 1                  # the output becomes the constant
                    out.type = fb.TensorType.FLOAT32
                    folded.append(int(op.inputs[0]))
                    counts["DEQUANTIZE fp16 constant -> fp32 constant"] += 1
                    continue
            if kind == relu01:
                if max_code is None:
                    max_code = _opcode(fb, model, fb.BuiltinOperator.MAXIMUM)
                    min_code = _opcode(fb, model, fb.BuiltinOperator.MINIMUM)
                x, y = int(op.inputs[0]), int(op.outputs[0])
                zero = _const(fb, model, sg, 0.0, f"gpu_clamp_zero_{len(sg.tensors)}")
                one = _const(fb, model, sg, 1.0, f"gpu_clamp_one_{len(sg.tensors)}")
                mid = fb.TensorT()
                src = sg.tensors[x]
                mid.shape = None if src.shape is None else np.array(src.shape, dtype=np.int32)
                mid.shapeSignature = None if src.shapeSignature is None else np.array(src.shapeSignature,
                                                                                      dtype=np.int32)
                mid.type = src.type
                mid.buffer = 0
                mid.name = f"gpu_clamp_mid_{len(sg.tensors)}"
                sg.tensors.append(mid)
                m = len(sg.tensors) - 1
                for code, ins, outs in ((max_code, [x, zero], [m]), (min_code, [m, one], [y])):
                    new = fb.OperatorT()
                    new.opcodeIndex = code
                    new.inputs = np.array(ins, dtype=np.int32)
                    new.outputs = np.array(outs, dtype=np.int32)
                    new.builtinOptionsType = fb.BuiltinOptions.MaximumMinimumOptions
                    new.builtinOptions = fb.MaximumMinimumOptionsT()
                    ops.append(new)
                counts["RELU_0_TO_1 -> MAXIMUM+MINIMUM"] += 1
                continue
            ops.append(op)
        sg.operators = ops
        used = {int(i) for o in ops for i in (o.inputs if o.inputs is not None else [])}
        for t in folded:
            if t not in used:                   # drop the float16 copy no op reads any more
                model.buffers[sg.tensors[t].buffer].data = None
    counts = {k: v for k, v in counts.items() if v}
    if not counts:
        return flat, {}
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), counts


def measured_coverage(path: str | Path) -> dict[str, Any]:
    """The GPU delegate's own coverage of ``path`` (fp16, as a phone runs it) for the manifest's
    ``backend_coverage["gpu"]``: ``{"measured": True, "fraction", "total_ops", "delegated_ops", "cpu_ops",
    "fallback" (op type -> count), "rejected" (op type -> reason), "adapter", "method"}``, or ``{"measured":
    False, "reason"}`` where this host has no GPU adapter, ``ISP_NO_GPU_PROBE=1`` is set, or the delegate crashed
    or hung on the file (it is compiled in a worker child, :mod:`convert.gpu_worker`, so the export goes on)."""
    from convert import gpu_delegate as gpu

    path = Path(path)
    if os.environ.get("ISP_NO_GPU_PROBE") == "1":
        return {"measured": False, "reason": "not measured: ISP_NO_GPU_PROBE=1"}
    reason = gpu.skip_reason()
    if reason:
        return {"measured": False, "reason": reason}
    try:
        cov = gpu.measure_coverage(path)
    except gpu.GpuWorkerCrash as exc:
        how = f"signal {exc.signal}" if exc.signal else f"exit status {exc.returncode}"
        return {"measured": False, "reason": f"not measured: delegate crashed ({how}) on {path.name}",
                "detail": str(exc)}
    except gpu.GpuWorkerTimeout as exc:
        return {"measured": False, "reason": f"not measured: delegate timed out on {path.name}", "detail": str(exc)}
    except gpu.GpuUnavailable as exc:
        return {"measured": False, "reason": str(exc)}
    return {"measured": True, "delegate": "gpu", "fraction": round(cov.fraction, 4), "total_ops": cov.total_ops,
            "delegated_ops": cov.gpu_ops, "cpu_ops": cov.cpu_ops, "fully_accelerated": cov.fully_accelerated,
            "fallback": dict(cov.cpu_op_counts), "rejected": dict(cov.rejected), "adapter": cov.adapter,
            "method": cov.method}
