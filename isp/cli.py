"""Command line of the reference ISP.

    python -m isp render IN.dng -o OUT.jpg [--style N] [--denoiser lite|base|large] [--awb ROUTE [--awb-pref]] [edits …]
    python -m isp render IN.jpg|IN.png -o OUT.jpg …   (stored raw re-rendered, other images linearized first)
    python -m isp render IN.dng -o OUT.jpg --store-raw [--raw-quality 25|50|75|95]
    python -m isp params [--weights DIR]
    python -m isp.parity GOLDEN_DIR …            (see isp/parity.py)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from isp import paths
from isp.edits import EDIT_RANGES, Edits
from isp.registry import DENOISER_CAMERAS, DENOISER_SIZES

__all__ = ["build_parser", "main", "render_file", "parameter_table"]


def _add_edit_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("edits (ranges are enforced)")
    flag_names = {"denoise": "denoise-strength", "enhance": "enhance-strength"}
    for name, (lo, hi, neutral, help_) in EDIT_RANGES.items():
        flag = "--" + flag_names.get(name, name.replace("_", "-"))
        g.add_argument(flag, dest=f"edit_{name}", type=float, default=neutral, metavar="X",
                       help=f"{help_}; range [{lo:g}, {hi:g}], default {neutral:g}")


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("models")
    g.add_argument("--weights", type=Path, default=None,
                   help="official weights folder (default $ISP_WEIGHTS or <shared>/weights/official)")
    g.add_argument("--style", type=int, default=0, choices=range(6), help="picture style 0-5 (default 0)")
    g.add_argument("--denoiser", default="lite", choices=DENOISER_SIZES, help="denoiser size")
    g.add_argument("--denoiser-camera", default="auto", choices=("auto", *DENOISER_CAMERAS),
                   help="S24-specific or generic denoiser; auto = S24 model for Galaxy S24 DNGs, else generic")
    g.add_argument("--no-lut", action="store_true", help="styles 1-5: use the checkpoints without the 3-D LUT")
    g.add_argument("--style-mix", default=None, metavar="S:W,…",
                   help="blend styles for every photofinishing stage, e.g. '1:0.5,5:0.5'")
    for stage in ("gain", "gtm", "ltm", "chroma", "gamma"):
        g.add_argument(f"--{stage}-mix", default=None, metavar="S:W,…", help=f"style weights for the {stage} stage")
    g.add_argument("--ltm-refine", action="store_true",
                   help="multi-scale LTM with bilateral-solver refinement (reduces halos, slower)")
    g.add_argument("--solver-iters", type=int, default=80, help="bilateral solver iterations (with --ltm-refine)")
    g.add_argument("--no-enhance", action="store_true", help="skip the detail-enhancement network")
    g.add_argument("--tile", type=int, default=1024,
                   help="run the full-resolution networks in tiles of this size to bound memory (0 = whole frame)")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    _add_awb_flags(p)


def _add_awb_flags(p: argparse.ArgumentParser) -> None:
    from isp.awb import ROUTES
    g = p.add_argument_group("white balance (isp/awb.py)")
    g.add_argument("--awb", default="metadata", metavar="ROUTE",
                   help="where the illuminant comes from: metadata (the DNG's as-shot white balance, default), c5 "
                        "(cross-camera AWB model), s24 or s24-VARIANT (S24 time-aware AWB; needs ISO and exposure "
                        f"time). Routes: {', '.join(ROUTES)}")
    g.add_argument("--awb-pref", action="store_true",
                   help="map the AWB estimate to the user-preferred illuminant (with --awb c5|s24…)")
    g.add_argument("--iso", type=float, default=None,
                   help="ISO for the S24 AWB models when the DNG does not record it (used as given)")
    g.add_argument("--exposure-time", type=float, default=None, metavar="SECONDS",
                   help="exposure time in seconds for the S24 AWB models when the DNG does not record it")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m isp", description="Modular Neural ISP — PyTorch reference")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="render a DNG to JPEG or 16-bit PNG")
    r.add_argument("input", type=Path, help="input DNG (Bayer RGGB/GRBG/GBRG/BGGR or LinearRaw), a JPEG with a stored "
                   "raw (re-rendered from it), or any other JPEG/PNG (linearized first)")
    r.add_argument("-o", "--output", type=Path, required=True, help="output .jpg/.jpeg (8-bit) or .png (16-bit)")
    r.add_argument("--quality", type=int, default=95, help="JPEG quality (default 95)")
    r.add_argument("--store-raw", action="store_true",
                   help="store the input raw inside the output JPEG (Raw-JPEG adapter) so it can be re-rendered")
    r.add_argument("--raw-quality", type=int, default=None, choices=(25, 50, 75, 95),
                   help="with --store-raw: JPEG quality of the stored raw, picks the adapter model (default 95)")
    r.add_argument("--no-orientation", action="store_true", help="ignore the EXIF orientation of the DNG")
    r.add_argument("--save-intermediates", type=Path, default=None, metavar="DIR",
                   help="also write every intermediate stage output as 16-bit PNG into DIR")
    _add_model_flags(r)
    _add_edit_flags(r)
    q = sub.add_parser("params", help="print parameter counts per stage, read from the checkpoints")
    q.add_argument("--weights", type=Path, default=None)
    q.add_argument("--json", type=Path, default=None, help="also write the table as JSON")
    return p


def _edits_from_args(args) -> Edits:
    return Edits(**{name: getattr(args, f"edit_{name}") for name in EDIT_RANGES})


def _mix_from_args(args):
    from isp.pipeline import StyleMix
    per_stage = {s: getattr(args, f"{s}_mix") for s in ("gain", "gtm", "ltm", "chroma", "gamma")
                 if getattr(args, f"{s}_mix")}
    if not args.style_mix and not per_stage:
        return None
    if not args.style_mix and len(per_stage) < 5:
        missing = [s for s in ("gain", "gtm", "ltm", "chroma", "gamma") if s not in per_stage]
        per_stage.update({s: f"{args.style}:1" for s in missing})
    return StyleMix.parse(args.style_mix, per_stage)


def _denoiser_name(args, raw_image) -> str:
    camera = args.denoiser_camera
    if camera == "auto":
        camera = "s24" if raw_image.is_galaxy_s24 else "generic"
    return f"{camera}_{args.denoiser}"


def render_file(args) -> dict:
    """Decode, render and write one file; returns timings and the settings used."""
    from tqdm import tqdm

    from isp.io.dng import apply_orientation
    from isp.io.image import write_image
    from isp.pipeline import Pipeline
    from isp.sources import load_source, store_raw

    edits = _edits_from_args(args)
    mix = _mix_from_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.store_raw and args.output.suffix.lower() not in (".jpg", ".jpeg"):
        raise ValueError(f"{args.output}: --store-raw needs a .jpg/.jpeg output")
    if args.raw_quality is not None and not args.store_raw:
        raise ValueError("--raw-quality applies only with --store-raw")
    raw_quality = args.raw_quality or 95
    t0 = time.perf_counter()
    img, source = load_source(args.input, args.weights)
    if source == "srgb" and getattr(args, "awb", "metadata") != "metadata":
        raise ValueError(f"{args.input}: --awb {args.awb} needs raw data (a DNG or a JPEG with a stored raw); "
                         "a linearized sRGB image is rendered with --awb metadata")
    awb_fn, awb_info = _awb_from_args(args, img)
    denoiser = _denoiser_name(args, img)
    pipe = Pipeline(args.weights or paths.weights_root(), style=args.style, denoiser=denoiser, mix=mix,
                    use_lut=False if args.no_lut else None, ltm_refine=args.ltm_refine,
                    solver_iters=args.solver_iters, tile=args.tile or None, enhance=not args.no_enhance)
    raw = torch.from_numpy(np.ascontiguousarray(img.rgb.transpose(2, 0, 1)))[None].float()
    illum = torch.as_tensor(img.illum, dtype=torch.float32)[None]
    ccm = torch.as_tensor(img.ccm, dtype=torch.float32)[None]
    orientation = img.orientation
    if not args.store_raw:                   # --store-raw encodes it after the render
        del img                              # its (H, W, 3) copy of the frame: 144 MB at 12 MP
    timings = {}
    with tqdm(total=len(pipe.steps) + (awb_fn is not None), desc=args.input.name, unit="stage", file=sys.stderr, disable=None) as bar:
        last = [None, time.perf_counter()]

        def on_stage(name: str) -> None:
            now = time.perf_counter()
            if last[0] is not None:
                timings[last[0]] = now - last[1]
                bar.update(1)
            last[0], last[1] = name, now
            bar.set_postfix_str(name)

        out = pipe.run(raw, illum, ccm, edits, progress=on_stage, awb=awb_fn,
                       keep=None if args.save_intermediates else {"srgb"})
        timings[last[0]] = time.perf_counter() - last[1]
        bar.update(1)
    srgb = out["srgb"][0].permute(1, 2, 0).numpy()
    del raw
    if not args.save_intermediates:
        del out                              # the raw frame: 144 MB at 12 MP, not written
    if not args.no_orientation:
        srgb = apply_orientation(srgb, orientation)
    if args.store_raw:
        store_raw(args.output, srgb, img, raw_quality=raw_quality, quality=args.quality, weights=args.weights)
    else:
        write_image(args.output, srgb, quality=args.quality)
    if args.save_intermediates:
        args.save_intermediates.mkdir(parents=True, exist_ok=True)
        from isp.units import chain_tensors
        # every image of the reference render but the quarter-size copy of lsrgb
        for i, key in enumerate(n for n in chain_tensors(lut=False) if n != "lsrgb_ds"):
            arr = out[key][0].clamp(0, 1).permute(1, 2, 0).numpy()
            write_image(args.save_intermediates / f"{args.input.stem}-{i}-{key}.png", arr)
    return {"input": str(args.input), "source": source, "output": str(args.output), "denoiser": denoiser,
            "stored_raw_quality": raw_quality if args.store_raw else None, "style": args.style,
            "edits": edits.as_dict(), "seconds": time.perf_counter() - t0, "stage_seconds": timings,
            "awb": awb_info}


def _awb_from_args(args, img) -> tuple:
    """``(awb callable for Pipeline.run or None, info dict)``; capture data is checked before any model runs."""
    from isp.awb import AwbEstimator, ColorCalibration, parse_route
    from isp.io.capture import read_capture_data

    route = parse_route(getattr(args, "awb", "metadata"))
    if route == "metadata":
        if getattr(args, "awb_pref", False):
            raise ValueError("--awb-pref maps an AWB estimate: use it with --awb c5 or --awb s24[-VARIANT]")
        info = {"route": "metadata", "illum": [float(v) for v in img.illum]}
        info["text"] = "AWB metadata: as-shot illuminant (" + ", ".join(f"{v:.4f}" for v in img.illum) + ")"
        return None, info
    est = AwbEstimator(args.weights or paths.weights_root(), route, user_pref=args.awb_pref)
    capture = read_capture_data(img.metadata, args.iso, args.exposure_time)
    if est.capture_needs:
        est.check_capture(capture, args.input)
    calib = ColorCalibration.from_tags(img.color_matrices(), img.ccm)
    info: dict = {"route": est.route}

    def awb(noisy: torch.Tensor, denoised: torch.Tensor):
        res = est.estimate(noisy, denoised, calib, capture if est.capture_needs else None)
        info.update(route=res.route, illum=res.illum.tolist(), ccm=res.ccm.tolist(), cct=res.cct, tint=res.tint,
                    estimate=res.estimate.tolist(), capture=res.capture, notes=res.notes, text=res.describe())
        return torch.from_numpy(res.illum)[None], torch.from_numpy(res.ccm)[None]
    return awb, info


def parameter_table(weights: Path) -> list[dict]:
    """Trainable parameters of every stage, built from the official checkpoints."""
    from isp.checkpoints import count_parameters
    from isp.registry import BuildConfig, build_stage

    rows = []
    # every camera's lite and base denoiser (the official release has no large weights)
    for denoiser in (f"{cam}_{size}" for cam in DENOISER_CAMERAS for size in ("lite", "base")):
        m = build_stage("denoise", BuildConfig(weights, denoiser=denoiser))
        rows.append({"stage": "denoise", "variant": denoiser, "params": count_parameters(m)})
    for style, lut in ((0, False), (1, True)):
        cfg = BuildConfig(weights, style=style, use_lut=lut)
        for sid in ("gain", "gtm", "ltm", "chroma", "gamma") + (("lut3d",) if lut else ()):
            m = build_stage(sid, cfg)
            rows.append({"stage": sid, "variant": cfg.photofinishing_checkpoint.stem,
                         "params": count_parameters(m)})
    from isp.stages.denoise import build_denoiser
    rows.append({"stage": "denoise", "variant": "large (config only; no weights here)",
                 "params": count_parameters(build_denoiser("large"))})
    m = build_stage("enhance", BuildConfig(weights))
    rows.append({"stage": "enhance", "variant": "enhancement_s24-style-0", "params": count_parameters(m)})
    rows += _awb_parameter_rows(weights)
    m = build_stage("linearize", BuildConfig(weights))
    rows.append({"stage": "linearize", "variant": "cie_xyz_net", "params": count_parameters(m)})
    for q in (25, 50, 75, 95):
        m = build_stage("raw_jpeg_encode", BuildConfig(weights, raw_quality=q))
        rows.append({"stage": "raw_jpeg_encode", "variant": f"raw_jpeg_adapter_q_{q}", "params": count_parameters(m)})
    for sid in ("color", "upsample", "raw_jpeg_decode"):
        m = build_stage(sid, BuildConfig(weights))
        rows.append({"stage": sid, "variant": "(no weights)", "params": count_parameters(m)})
    return rows


def _awb_parameter_rows(weights: Path) -> list[dict]:
    """C5, the eight S24 variants and the user-preference mapping (issue 13)."""
    from isp.checkpoints import count_parameters
    from isp.stages.awb import AWB_MODELS, build_awb
    from isp.stages.awb_pref import build_pref
    rows = [{"stage": "awb", "variant": m, "params": count_parameters(build_awb(weights, m))} for m in AWB_MODELS]
    rows.append({"stage": "awb_pref", "variant": "c5_neutral_to_s24_user_pref",
                 "params": count_parameters(build_pref(weights))})
    return rows


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "render":
            info = render_file(args)
            style = f"style mix {args.style_mix}" if args.style_mix else f"style {info['style']}"
            route = {"dng": "", "stored-raw": "; re-rendered from its stored raw",
                     "srgb": "; sRGB input linearized"}[info["source"]]
            stored = f"; raw stored at quality {info['stored_raw_quality']}" if info["stored_raw_quality"] else ""
            print(f"wrote {info['output']} ({info['seconds']:.1f} s; denoiser {info['denoiser']}, {style}{route}"
                  f"{stored})")
            print(info["awb"]["text"])
            return 0
        if args.command == "params":
            rows = parameter_table(args.weights or paths.weights_root())
            for r in rows:
                print(f"{r['stage']:<15} {r['variant']:<34} {r['params']:>9,}")
            pf = [r for r in rows if r["variant"] == "photofinishing_s24-style-0"]
            print(f"{'photofinishing total (style 0)':<50} {sum(r['params'] for r in pf):>9,}")
            if args.json:
                from isp.jsonio import write_json_atomic
                write_json_atomic(args.json, rows)
            return 0
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1
