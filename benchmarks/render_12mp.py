"""A 12-megapixel DNG rendered by the reference and by exported artifact sets: wall time, peak RSS, per-stage time.

    .venv/bin/python benchmarks/render_12mp.py [SET[@RUNTIME] ...] [--rounds 2] [--size 4000x3000] [--dng PATH]
        [--no-reference] [--json OUT.json] [--text OUT.txt]

``SET`` is an artifact folder (``convert/export.py --out DIR``; its ``manifest.json``) or a folder of such folders
(``/tmp/sets`` holding ``onnx_fp32/``, ``litert_int8/`` ...); each set is rendered with its own policy
(``python -m runtime_py.render --artifacts SET``); ``SET@RUNTIME`` renders it with ``--runtime RUNTIME`` (e.g.
``/tmp/sets/onnx_fp32@openvino-bf16``; a set may be named several times with different runtimes). The reference
is ``python -m isp render`` (style 0, lite denoiser, its default 1024-px tiles).

The input is one synthetic Bayer DNG, made once and cached (``--dng``, default
``~/.cache/isp-bench/synthetic_WxH.dng``): the demosaiced raw of the shipped astronaut DNG mirror-tiled to the size
(as ``benchmarks/reference_12mp.py`` does), sampled through an RGGB mosaic at 12 bits and written with that DNG's
colour tags (:func:`isp.io.dng_write.write_cfa_dng`).

Every render is its own process, started the way a user starts it (the CLI's parser and ``render_file``); the
parent takes wall time from start to exit and the child's peak RSS from ``wait4`` (``ru_maxrss``), and the child
reports its per-stage seconds. Rounds are interleaved (each round runs every command once, in an order that rotates
from round to round), so a change of machine load hits all alike; the table shows the median over rounds and the
ratio of each command to the reference *of the same round* (median). The 1-minute load average is recorded before
and after. Each output JPEG is compared with the reference's (PSNR, 8-bit) as a sanity check.

Exit status: 0 when every render succeeded, 1 otherwise (the failures are in the table), 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from isp.versions import cpu_model  # noqa: E402  (after the path set-up)

RESULTS = REPO / "benchmarks" / "results"
REFERENCE = "reference"
#: 12-bit DNs, as the shipped synthetic phone DNGs use
BLACK, WHITE = 256, 4095


def cpu_features() -> list[str]:
    """The SIMD features that matter for the integer / half kernels (from /proc/cpuinfo)."""
    try:
        flags = next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")).split()
    except (OSError, StopIteration):
        return []
    want = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_int8", "amx_bf16")
    return [f for f in want if f in flags]


# ------------------------------------------------------------------------------------------------- the input

def make_dng(path: Path, width: int, height: int) -> Path:
    """Write the synthetic ``width x height`` RGGB DNG at ``path`` (see the module docstring); returns it."""
    import numpy as np

    from benchmarks.reference_12mp import mirror_tiled
    from isp.io.dng_write import write_cfa_dng

    if width % 2 or height % 2:
        raise ValueError(f"the synthetic DNG needs an even size, got {width}x{height}")
    frame, img = mirror_tiled(width, height)
    mosaic = np.empty((height, width), dtype=np.float32)
    for dy, dx, c in ((0, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 2)):           # RGGB
        mosaic[dy::2, dx::2] = frame[dy::2, dx::2, c]
    del frame
    dn = np.rint(BLACK + np.clip(mosaic, 0.0, 1.0) * (WHITE - BLACK)).astype(np.uint16)
    del mosaic
    tags = img.color_matrices()
    extra = {}
    if "ColorMatrix2" in tags:
        extra[50722] = (10, [v for x in tags["ColorMatrix2"].ravel() for v in (int(round(x * 10000)), 10000)])
    if "CalibrationIlluminant1" in tags:
        extra[50778] = (3, [tags["CalibrationIlluminant1"]])
    if "CalibrationIlluminant2" in tags:
        extra[50779] = (3, [tags["CalibrationIlluminant2"]])
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_cfa_dng(path, dn, cfa=(0, 1, 1, 2), black=BLACK, white=WHITE,
                         color_matrix1=tags["ColorMatrix1"].ravel(), as_shot_neutral=img.as_shot_neutral,
                         extra=extra)


def default_dng(width: int, height: int) -> Path:
    from isp.paths import user_cache
    return user_cache("isp-bench") / f"synthetic_{width}x{height}.dng"


# ------------------------------------------------------------------------------------------------- the child

def child(kind: str, argv: list[str], report: Path) -> int:
    """Run one render in this process as its CLI would and write ``{"stages": {...}, "seconds": ...}``."""
    from isp.jsonio import write_json_atomic

    if kind == REFERENCE:
        from isp.cli import build_parser, render_file
        args = build_parser().parse_args(["render", *argv])
        info = render_file(args)
        stages = dict(info["stage_seconds"])
    else:
        import torch

        from runtime_py.render import build_parser, render_file
        from runtime_py.runtimes import set_default_threads
        args = build_parser().parse_args(argv)
        torch.set_num_threads(set_default_threads(args.threads))      # as runtime_py.render's main does
        info = render_file(args)
        stages = {u: t["seconds"] for u, t in info["timings"].items()}
        stages.update({k: v for k, v in (info.get("phases") or {}).items()})
    write_json_atomic(report, {"stages": stages, "seconds": info["seconds"]})
    return 0


def run_child(kind: str, argv: list[str], tmp: Path) -> dict[str, Any]:
    """One render in a fresh process: wall seconds, peak RSS (MiB), the child's stage seconds, or its error."""
    report = tmp / f"report_{time.monotonic_ns()}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--report", str(report), "--", *argv]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    out: dict[str, Any] = {"wall_seconds": wall, "peak_rss_mib": usage.ru_maxrss / 1024.0, "rc": proc.returncode}
    if proc.returncode != 0 or not report.is_file():
        out["error"] = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {proc.returncode}"
        return out
    data = json.loads(report.read_text())
    report.unlink()
    out["stages"] = data["stages"]
    out["render_seconds"] = data["seconds"]
    return out


def jpeg_psnr(a: Path, b: Path) -> float | None:
    import numpy as np
    from PIL import Image

    try:
        x = np.asarray(Image.open(a), dtype=np.float32)
        y = np.asarray(Image.open(b), dtype=np.float32)
    except OSError:
        return None
    if x.shape != y.shape:
        return None
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


# ------------------------------------------------------------------------------------------------- the table

def find_sets(paths: list[str]) -> list[tuple[Path, str | None]]:
    """``[(set folder, runtime or None)]`` from ``SET[@RUNTIME]`` arguments (a folder of sets expands)."""
    sets: list[tuple[Path, str | None]] = []
    for arg in paths:
        text, _, runtime = str(arg).partition("@")
        p = Path(text)
        if (p / "manifest.json").is_file():
            sets.append((p, runtime or None))
        elif p.is_dir():
            found = sorted(q.parent for q in p.glob("*/manifest.json"))
            if not found:
                raise ValueError(f"{p}: neither an artifact set (manifest.json) nor a folder of sets")
            sets.extend((q, runtime or None) for q in found)
        else:
            raise ValueError(f"{p}: no such artifact folder")
    return sets


def summarise(names: list[str], rounds: list[dict[str, dict]]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for name in names:
        runs = [r[name] for r in rounds if name in r]
        ok = [r for r in runs if "error" not in r]
        row: dict[str, Any] = {"runs": runs, "failed": len(runs) - len(ok)}
        if ok:
            row["wall_seconds"] = statistics.median(r["wall_seconds"] for r in ok)
            row["peak_rss_mib"] = max(r["peak_rss_mib"] for r in ok)
            stages = {k for r in ok for k in r["stages"]}
            row["stages"] = {k: statistics.median(r["stages"].get(k, 0.0) for r in ok) for k in stages}
            ratios = [r[REFERENCE]["wall_seconds"] / r[name]["wall_seconds"] for r in rounds
                      if name in r and REFERENCE in r and "error" not in r[name] and "error" not in r[REFERENCE]]
            if ratios:
                row["speedup_vs_reference"] = statistics.median(ratios)
            psnrs = [r[name].get("psnr_vs_reference") for r in rounds if name in r]
            psnrs = [p for p in psnrs if p is not None]
            if psnrs:
                row["psnr_vs_reference"] = min(psnrs)
        else:
            row["error"] = runs[-1].get("error") if runs else "not run"
        out[name] = row
    return out


def render_table(summary: dict[str, dict], header: str) -> str:
    lines = [header, "",
             "| command | wall s (median) | speed-up vs reference (same round) | peak RSS MiB | JPEG PSNR vs reference |"
             " slowest stages (s) |", "|---|---:|---:|---:|---:|---|"]
    for name, row in summary.items():
        if "error" in row:
            lines.append(f"| {name} | failed: {row['error'][:120]} | | | | |")
            continue
        stages = sorted(row["stages"].items(), key=lambda kv: -kv[1])[:4]
        sp = row.get("speedup_vs_reference")
        ps = row.get("psnr_vs_reference")
        lines.append(f"| {name} | {row['wall_seconds']:.1f} | {'—' if sp is None else f'{sp:.2f}x'} | "
                     f"{row['peak_rss_mib']:.0f} | {'—' if ps is None else f'{ps:.1f} dB'} | "
                     + ", ".join(f"{k} {v:.1f}" for k, v in stages) + " |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sets", nargs="*", help="artifact sets, or folders of sets; SET@RUNTIME: with --runtime RUNTIME")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    p.add_argument("--size", default="4000x3000", help="WIDTHxHEIGHT of the synthetic DNG (default 12 MP)")
    p.add_argument("--dng", type=Path, default=None, help="the DNG to render (made here when missing)")
    p.add_argument("--no-reference", action="store_true", help="skip the reference render")
    p.add_argument("--json", type=Path, default=RESULTS / "render_12mp.json")
    p.add_argument("--text", type=Path, default=RESULTS / "render_12mp.txt")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--report", type=Path, default=None, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--child" in argv:                                    # internal: one render, its argv after "--"
        sep = argv.index("--")
        args = build_parser().parse_args(argv[:sep])
        return child(args.child, argv[sep + 1:], args.report)
    args = build_parser().parse_args(argv)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
        sets = find_sets(args.sets)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    dng = args.dng or default_dng(width, height)
    if not dng.is_file():
        print(f"writing the synthetic {width}x{height} DNG to {dng}", file=sys.stderr)
        make_dng(dng, width, height)
    commands: dict[str, tuple[str, list[str]]] = {}
    with tempfile.TemporaryDirectory(prefix="render12_") as tmpd:
        tmp = Path(tmpd)
        if not args.no_reference:
            commands[REFERENCE] = (REFERENCE, [str(dng), "-o", str(tmp / f"{REFERENCE}.jpg"), "--style", "0",
                                               "--denoiser", "lite"])
        for s, runtime in sets:
            name = s.name + (f"@{runtime}" if runtime else "")
            commands[name] = ("artifacts", [str(dng), "-o", str(tmp / f"{name}.jpg"), "--artifacts", str(s),
                                            "--quiet", *(["--runtime", runtime] if runtime else [])])
        names = list(commands)
        load_before = os.getloadavg()
        rounds: list[dict[str, dict]] = []
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            result: dict[str, dict] = {}
            for name in order:
                kind, cargv = commands[name]
                print(f"round {r + 1}/{args.rounds}: {name} ...", file=sys.stderr, flush=True)
                res = run_child(kind, cargv, tmp)
                res["load_average_1min"] = os.getloadavg()[0]
                result[name] = res
                msg = res.get("error") or f"{res['wall_seconds']:.1f} s, {res['peak_rss_mib']:.0f} MiB"
                print(f"    {msg}", file=sys.stderr, flush=True)
            if REFERENCE in result and "error" not in result[REFERENCE]:
                for name in names:
                    if name != REFERENCE and "error" not in result[name]:
                        result[name]["psnr_vs_reference"] = jpeg_psnr(tmp / f"{REFERENCE}.jpg", tmp / f"{name}.jpg")
            rounds.append(result)
        load_after = os.getloadavg()
    summary = summarise(names, rounds)
    import torch
    feats = ", ".join(cpu_features()) or "none"
    header = (f"Render of one synthetic {width}x{height} Bayer DNG ({width * height / 1e6:.1f} MP), each command its "
              f"own process, {args.rounds} interleaved round(s), median; CPU: {cpu_model()} ({os.cpu_count()} "
              f"logical CPUs; {feats}); torch {torch.__version__}; 1-min load average "
              f"{load_before[0]:.2f} at start, {load_after[0]:.2f} at end.")
    text = render_table(summary, header)
    print(text)
    from isp.jsonio import write_json_atomic
    payload = {"dng": str(dng), "width": width, "height": height, "rounds": args.rounds, "cpu": cpu_model(),
               "cpu_features": cpu_features(), "logical_cpus": os.cpu_count(), "load_average_start": load_before,
               "load_average_end": load_after, "commands": {n: c[1] for n, c in commands.items()},
               "sets": [str(s) + (f"@{r}" if r else "") for s, r in sets], "summary": summary}
    if args.json:
        write_json_atomic(args.json, payload)
    if args.text:
        args.text.parent.mkdir(parents=True, exist_ok=True)
        tmp_text = args.text.with_name(f".{args.text.name}.tmp")
        tmp_text.write_text(text + "\n")
        os.replace(tmp_text, args.text)
    return 0 if all("error" not in row for row in summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
