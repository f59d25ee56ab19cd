"""Render a DNG with an exported artifact set on this host.

    python -m runtime_py.render IN.dng -o OUT.jpg --artifacts DIR [--prefer executorch,tflite,onnx]
        [--precision-prefer int8,fp16,fp32] [--select UNIT=TARGET:PRECISION,...] [--fit exact|crop]
        [--quality 95] [--no-orientation] [--ort-int8 emulate|host] [--threads N] [--quiet]
        [--runtime cpu|litert-gpu|litert-gpu-f32|openvino|openvino-bf16] [--allow-cpu-fallback]

The artifacts have the fixed frame size they were exported for. ``--fit exact`` (default) requires the DNG to have
that size and otherwise says how to re-export (``--size WxH``); ``--fit crop`` renders the centred window of the
export size (cut before demosaicing). One artifact per unit is chosen by ``--prefer`` (targets, first wins; default
executorch, tflite, onnx), ``--precision-prefer`` (default: the set's policy for the unit, then fp32, fp16, w8,
int8) and ``--select`` (explicit per unit, e.g. ``denoise=onnx:int8``), see :mod:`runtime_py.artifacts`. The image
is written atomically: ``.jpg``/``.jpeg`` 8-bit, ``.png`` 16-bit. The per-unit seconds are printed.
``--runtime litert-gpu`` runs the ``pixel8`` profile's GPU units on LiteRT's GPU delegate (fp16; ``litert-gpu-f32``:
enforce_f32), preferring tflite artifacts, and fails a unit the delegate does not take whole unless
``--allow-cpu-fallback`` (:mod:`runtime_py.gpu`). ``--runtime openvino`` runs the ONNX artifacts with OpenVINO's
CPU kernels instead of ONNX Runtime's (float32; ``openvino-bf16``: the enhancer in bfloat16 on AMX/AVX512-BF16, the BGU slice in float16),
preferring onnx artifacts (:mod:`runtime_py.openvino`): the fastest host set on an x86 CPU.

The frame is streamed through the full-resolution units (:func:`runtime_py.stream.render_streaming`: about three
full-frame buffers, each runner released after its last use) and every runtime runs ``--threads`` threads (default:
the CPUs this process may run on).

Exit status: 0 on success, 2 for bad arguments or input (the message says what and how to fix it), 1 when an
artifact fails while running.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["build_parser", "main", "render_file"]


def _csv(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def build_parser() -> argparse.ArgumentParser:
    from runtime_py.artifacts import add_ort_int8_arg

    p = argparse.ArgumentParser(prog="python -m runtime_py.render",
                                description="Render a DNG with exported artifacts (ExecuTorch, LiteRT, ONNX Runtime)")
    p.add_argument("input", type=Path, help="input DNG")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .jpg/.jpeg (8-bit) or .png (16-bit)")
    p.add_argument("--artifacts", type=Path, required=True, help="folder with manifest.json (convert/export.py)")
    p.add_argument("--prefer", type=_csv, default=None, metavar="T,T,...",
                   help="targets in order of preference (executorch, tflite, onnx; default in that order)")
    p.add_argument("--precision-prefer", type=_csv, default=None, metavar="P,P,...",
                   help="precisions in order of preference (int8, w8, fp16, fp32); default: the set's policy for "
                        "each unit, then fp32, fp16, w8, int8")
    p.add_argument("--select", default=None, metavar="UNIT=TARGET:PRECISION,...",
                   help="explicit choice for some units, e.g. denoise=onnx:int8,enhance=tflite:fp16")
    p.add_argument("--fit", choices=("exact", "crop"), default="exact",
                   help="exact (default): the DNG must have the export size; crop: centre-crop to it")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality (default 95)")
    p.add_argument("--no-orientation", action="store_true", help="ignore the EXIF orientation of the DNG")
    p.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the chosen artifacts")
    add_ort_int8_arg(p)
    p.add_argument("--runtime", choices=("cpu", "litert-gpu", "litert-gpu-f32", "openvino", "openvino-bf16"),
                   default="cpu", help="cpu (default: each artifact's own runtime), LiteRT's GPU delegate for the GPU "
                                       "units (fp16, or enforce_f32), or OpenVINO for the ONNX artifacts (float32, "
                                       "or the enhancer in bfloat16 and the slice in float16)")
    p.add_argument("--allow-cpu-fallback", action="store_true",
                   help="GPU runtime: let the delegate leave ops to the CPU instead of failing")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads of every runtime (ONNX Runtime intra-op, LiteRT, ExecuTorch's pool) and torch; "
                        "default: the CPUs this process may run on")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no timing table")
    return p


def render_file(args: argparse.Namespace) -> dict[str, Any]:
    """Open the set, choose, decode, run, write; returns what was done (selection, timings, output)."""
    from isp.io.dng import apply_orientation
    from isp.io.image import write_image
    from runtime_py.artifacts import ArtifactSet, parse_selection
    from runtime_py.pipeline import ArtifactPipeline, read_frame
    from runtime_py.stream import render_streaming, streaming_calls

    t0 = time.perf_counter()
    aset = ArtifactSet.open(args.artifacts)
    explicit = parse_selection(args.select) if args.select else None
    runtime = getattr(args, "runtime", "cpu")
    ov_rt = runtime.startswith("openvino")
    gpu_rt = runtime != "cpu" and not ov_rt
    prefer = args.prefer or (["tflite", "executorch", "onnx"] if gpu_rt else
                             ["onnx", "tflite", "executorch"] if ov_rt else None)
    sel = aset.select(prefer, args.precision_prefer, explicit, verify=not args.no_verify, ort_int8=args.ort_int8)
    if gpu_rt:
        from runtime_py import gpu
        sel = gpu.on_gpu(sel, args.runtime, args.allow_cpu_fallback)
    elif ov_rt:
        from runtime_py.openvino import on_openvino
        sel = on_openvino(sel, runtime)
    raw, illum, ccm, img = read_frame(args.input, aset.geometry, args.fit)
    orientation, crop = img.orientation, img.crop
    del img                                          # the decoded HWC copy: raw (1,3,H,W) is all the run needs
    pipe = ArtifactPipeline(sel)
    show = not args.quiet and sys.stderr.isatty()
    bar = None
    if show:
        from tqdm import tqdm
        bar = tqdm(total=streaming_calls(pipe), desc="artifact pipeline", unit="call", dynamic_ncols=True,
                   leave=False)
    try:
        frame = [raw]
        del raw                                      # render_streaming frees the frame after the denoiser
        srgb = render_streaming(pipe, frame, illum, ccm, progress=bar.update if bar is not None else None,
                                release=True)
    except (ValueError, FileNotFoundError):
        raise
    except Exception as exc:  # noqa: BLE001 — a runtime failure: exit 1 with the unit named by the runner
        raise RuntimeError(f"the artifact pipeline failed: {type(exc).__name__}: {exc}") from exc
    finally:
        if bar is not None:
            bar.close()
    if not args.no_orientation:
        srgb = np.ascontiguousarray(apply_orientation(srgb, orientation))
    write_image(args.output, srgb, quality=args.quality)
    return {"input": str(args.input), "output": str(args.output), "selection": sel, "timings": pipe.timings,
            "crop": crop, "seconds": time.perf_counter() - t0, "pipeline_seconds": pipe.total_seconds,
            "phases": dict(pipe.phases)}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from runtime_py.runtimes import set_default_threads
    torch.set_num_threads(set_default_threads(args.threads))
    from runtime_py.artifacts import NotRunnableError
    try:
        info = render_file(args)
    except (ValueError, FileNotFoundError, NotRunnableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sel = info["selection"]
    if not args.quiet:
        print(f"{'unit':<15} {'artifact':<34} {'calls':>5} {'seconds':>8}")
        for unit, t in info["timings"].items():
            a = sel[unit]
            print(f"{unit:<15} {a.file:<34} {int(t['calls']):>5} {t['seconds']:>8.3f}")
    crop = f", centre crop {info['crop']}" if info["crop"] else ""
    print(f"wrote {info['output']} ({sel.label}{crop}; units {info['pipeline_seconds']:.2f} s, total "
          f"{info['seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
