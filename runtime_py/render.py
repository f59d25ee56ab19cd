"""Render a DNG with an exported artifact set on this host.

    python -m runtime_py.render IN.dng -o OUT.jpg --artifacts DIR [--prefer executorch,tflite,onnx]
        [--precision-prefer int8,fp16,fp32] [--select UNIT=TARGET:PRECISION,...] [--fit exact|crop]
        [--quality 95] [--no-orientation] [--ort-int8 emulate|host] [--threads N] [--quiet]
        [--runtime cpu|litert-gpu|litert-gpu-f32] [--allow-cpu-fallback]

The artifacts have the fixed frame size they were exported for. ``--fit exact`` (default) requires the DNG to have
that size and otherwise says how to re-export (``--size WxH``); ``--fit crop`` renders the centred window of the
export size (cut before demosaicing). One artifact per unit is chosen by ``--prefer`` (targets, first wins; default
executorch, tflite, onnx), ``--precision-prefer`` (default: the set's policy for the unit, then fp32, fp16, w8,
int8) and ``--select`` (explicit per unit, e.g. ``denoise=onnx:int8``), see :mod:`runtime_py.artifacts`. The image
is written atomically: ``.jpg``/``.jpeg`` 8-bit, ``.png`` 16-bit. The per-unit seconds are printed.
``--runtime litert-gpu`` runs the ``pixel8`` profile's GPU units on LiteRT's GPU delegate (fp16; ``litert-gpu-f32``:
enforce_f32), preferring tflite artifacts, and fails a unit the delegate does not take whole unless
``--allow-cpu-fallback`` (:mod:`runtime_py.gpu`).

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
    p.add_argument("--runtime", choices=("cpu", "litert-gpu", "litert-gpu-f32"), default="cpu",
                   help="cpu (default) or LiteRT's GPU delegate for the GPU units (fp16, or enforce_f32)")
    p.add_argument("--allow-cpu-fallback", action="store_true",
                   help="GPU runtime: let the delegate leave ops to the CPU instead of failing")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (tiling and stitching)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no timing table")
    return p


def render_file(args: argparse.Namespace) -> dict[str, Any]:
    """Open the set, choose, decode, run, write; returns what was done (selection, timings, output)."""
    from isp.io.dng import apply_orientation
    from isp.io.image import write_image
    from runtime_py.artifacts import ArtifactSet, parse_selection
    from runtime_py.pipeline import ArtifactPipeline, read_frame

    t0 = time.perf_counter()
    aset = ArtifactSet.open(args.artifacts)
    explicit = parse_selection(args.select) if args.select else None
    gpu_rt = getattr(args, "runtime", "cpu") != "cpu"
    prefer = args.prefer or (["tflite", "executorch", "onnx"] if gpu_rt else None)
    sel = aset.select(prefer, args.precision_prefer, explicit, verify=not args.no_verify, ort_int8=args.ort_int8)
    if gpu_rt:
        from runtime_py import gpu
        sel = gpu.on_gpu(sel, args.runtime, args.allow_cpu_fallback)
    raw, illum, ccm, img = read_frame(args.input, aset.geometry, args.fit)
    pipe = ArtifactPipeline(sel, progress=not args.quiet and sys.stderr.isatty())
    try:
        out = pipe.run(raw, illum, ccm)
    except (ValueError, FileNotFoundError):
        raise
    except Exception as exc:  # noqa: BLE001 — a runtime failure: exit 1 with the unit named by the runner
        raise RuntimeError(f"the artifact pipeline failed: {type(exc).__name__}: {exc}") from exc
    srgb = out["srgb"][0].permute(1, 2, 0).numpy()
    if not args.no_orientation:
        srgb = apply_orientation(srgb, img.orientation)
    # contiguous: isp.io.image's 16-bit PNG encoder cannot view a transposed array as bytes
    write_image(args.output, np.ascontiguousarray(srgb), quality=args.quality)
    return {"input": str(args.input), "output": str(args.output), "selection": sel, "timings": pipe.timings,
            "crop": img.crop, "seconds": time.perf_counter() - t0, "pipeline_seconds": pipe.total_seconds}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
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
