"""Command line of the calibration-set builder.

    python -m calibration build --dngs DIR --out DIR [--size 12mp|8mp|1080p|WxH] [--tile N] [--overlap 32]
                                [--count 8] [--eval-count 4] [--seed 0] [--style 0] [--denoiser s24_lite]
                                [--tiles-per-frame 4] [--split auto|sources|regions] [--ev-range -1,1]
                                [--no-relight] [--weights DIR] [--threads N] [--force] [--quiet]
    python -m calibration info DIR [--verify]

``build`` writes ``OUT/calib`` and ``OUT/eval`` (see :mod:`calibration.sets`); ``info`` prints a set's geometry,
pipeline and, per stage, every tensor's shape and range (``DIR`` is a set or a build output holding sets).
Exit status: 0 on success, 2 for bad arguments or input (the message says what and how to fix it).
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

__all__ = ["build_parser", "main"]


def _size(text: str) -> tuple[int, int]:
    from calibration.augment import parse_size
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH (e.g. -1,1), got {text!r}") from None
    return lo, hi


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m calibration",
                                description="Calibration / evaluation sets for the exported ISP stages")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="build OUT/calib and OUT/eval from a folder of DNGs")
    b.add_argument("--dngs", type=Path, default=None,
                   help="folder of DNG photos (default: <shared>/data/dng)")
    b.add_argument("--out", type=Path, required=True, help="output folder; sets go to OUT/calib and OUT/eval")
    b.add_argument("--size", type=_size, default="12mp", metavar="12mp|8mp|1080p|WxH",
                   help="frame size of the exported stages (W, H multiples of 4; default 12mp = 4000x3000)")
    b.add_argument("--tile", type=int, default=None,
                   help="tile size of the full-resolution stages (default: as convert/export.py, 528 at 12 MP)")
    b.add_argument("--overlap", type=int, default=32, help="tile overlap in pixels (default 32)")
    b.add_argument("--count", type=int, default=8, help="calibration frames (default 8)")
    b.add_argument("--eval-count", type=int, default=4, help="evaluation frames (default 4; 0 = no eval set)")
    b.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    b.add_argument("--style", type=int, default=0, choices=range(6), help="picture style 0-5 (default 0)")
    b.add_argument("--denoiser", default="s24_lite",
                   help="denoiser <s24|generic>_<lite|base|large> (default s24_lite)")
    b.add_argument("--tiles-per-frame", type=int, default=4,
                   help="full-resolution tiles kept per frame, chosen at random (default 4)")
    b.add_argument("--split", default="auto", choices=("auto", "sources", "regions"),
                   help="keep calib/eval apart by whole DNGs (sources) or by image halves (regions); auto = "
                        "sources when there are >= 2 DNGs")
    b.add_argument("--ev-range", type=_range, default=(-1.0, 1.0), metavar="LOW,HIGH",
                   help="exposure augmentation in stops (default -1,1; 0,0 turns it off)")
    b.add_argument("--no-relight", action="store_true",
                   help="move only the white-balance illuminant (a colour cast), not the raw")
    b.add_argument("--weights", type=Path, default=None,
                   help="official weights folder (default $ISP_WEIGHTS or <shared>/weights/official)")
    b.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    b.add_argument("--force", action="store_true", help="replace existing OUT/calib and OUT/eval")
    b.add_argument("--quiet", action="store_true", help="no progress bar")

    i = sub.add_parser("info", help="print a set's geometry and per-stage tensor shapes and ranges")
    i.add_argument("path", type=Path, help="a set folder (with set.json) or a build output holding calib/ eval/")
    i.add_argument("--verify", action="store_true", help="also check every file's sha256 against set.json")
    return p


def _warn_line(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _build(args) -> int:
    import torch

    from calibration.augment import AugmentConfig, Geometry  # Geometry is isp.geometry.FrameGeometry
    from calibration.sets import build_sets

    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = args.size
    geometry = Geometry(width, height, args.tile, args.overlap)
    augment = AugmentConfig(ev_range=args.ev_range, relight=not args.no_relight)
    print(f"frame {geometry}", file=sys.stderr)
    t0 = time.perf_counter()
    built = build_sets(args.dngs, args.out, geometry=geometry, count=args.count, eval_count=args.eval_count,
                       seed=args.seed, style=args.style, denoiser=args.denoiser,
                       tiles_per_frame=args.tiles_per_frame, augment=augment, split=args.split,
                       weights=args.weights, force=args.force, progress=not args.quiet)
    for kind, path in built.items():
        print(f"{kind}: {path}")
    print(f"done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


def _info(args) -> int:
    from calibration.sets import KINDS, describe_set
    root = args.path
    targets = [root] if (root / "set.json").is_file() else \
        [root / k for k in KINDS if (root / k / "set.json").is_file()]
    if not targets:
        raise ValueError(f"{root}: no calibration set here (expected set.json, or calib/ and eval/ holding one)")
    print("\n\n".join(describe_set(t, verify=args.verify) for t in targets))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = warnings.showwarning
    warnings.showwarning = _warn_line
    try:
        return _build(args) if args.command == "build" else _info(args)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":
    sys.exit(main())
