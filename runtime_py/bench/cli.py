"""``python -m runtime_py.bench``: the command line and :func:`run_bench`, which maps every expected fault to an exit
code (the partial report is written)."""
from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path
from typing import Sequence

from android_harness.device import add_adb_args
from android_harness.faults import DeviceLost, DeviceNotFound, DeviceStorageFull, DeviceUnauthorized, HarnessError
from runtime_py.bench.options import (EXIT_DEVICE, EXIT_FAILED, EXIT_OK, EXIT_USAGE, BenchError, BenchOptions)
from runtime_py.bench.run import Run

log = logging.getLogger("runtime_py.bench")

__all__ = ["run_bench", "build_parser", "main"]


def run_bench(opts: BenchOptions) -> tuple[int, dict | None]:
    """Run the whole benchmark; returns ``(exit code, results dict or None)``. Raises nothing for expected faults:
    they are logged and mapped to exit codes (the partial report is written)."""
    run = Run(opts)
    try:
        run.setup()
        run.connect()
    except BenchError as exc:
        log.error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return exc.code, None
    except (DeviceNotFound, DeviceUnauthorized, DeviceLost, HarnessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DEVICE, None
    try:
        run.check_runner()
        run.run_units()
        with run.phase("chain"):
            run.run_chain()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code, None
    except (DeviceLost, DeviceStorageFull, DeviceUnauthorized, DeviceNotFound, HarnessError) as exc:
        done = [u for u, r in run.results.items() if r.get("status") == "ok"]
        pending = [u for u in run.plans if u not in done]
        msg = (f"{exc}\nFinished units ({len(done)}): {', '.join(done) or 'none'} — kept in {run.out / 'units'} "
               f"and skipped when the same command is run again. Not finished: {', '.join(pending) or 'none'}"
               f"{' (and the end-to-end chain)' if opts.chain else ''}.")
        run.fault = msg
        print(f"error: {msg}", file=sys.stderr)
        if hasattr(run, "ref"):
            run.write_reports()
        return EXIT_DEVICE, None
    finally:
        if run.dev is not None:
            run.dev.close()
    summary = run.write_reports()
    failed = [r["unit"] for r in summary["units"] if r.get("status") != "ok"]
    ok = len(summary["units"]) - len(failed)
    if run.chain_failed:
        print(f"error: the end-to-end chain {run.chain_note}", file=sys.stderr)
        failed.append("(end-to-end chain)")
    measured = summary.get("measured_frame_ms")
    est = summary.get("estimate_frame_ms")
    if run.emulation:
        print(run.emulation, file=sys.stderr)
    print(f"{ok}/{len(summary['units'])} unit(s) on {summary['device'].get('model')} ({run.runner} runner); "
          f"frame {summary['frame'][1]}x{summary['frame'][0]}: measured "
          f"{'%.2f ms' % measured if measured is not None else '—'}, estimate "
          f"{'%.2f ms' % est if est is not None else '—'}; report {run.out / 'report.html'}")
    print("wall time per phase: " + ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in run.phases.items()))
    if failed:
        print(f"failed unit(s): {', '.join(failed)} (see {run.out / 'results.json'})", file=sys.stderr)
        return EXIT_FAILED, summary
    return EXIT_OK, summary


def build_parser() -> argparse.ArgumentParser:
    from runtime_py import bench

    p = argparse.ArgumentParser(prog="python -m runtime_py.bench", description=bench.__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="See the module docstring (python -c 'import runtime_py.bench as b; "
                                       "help(b)') for the whole flow, resume and fault handling.")
    p.add_argument("--device", required=True, help="device profile: pixel8, galaxy-s24, iphone-15-pro, host, or one "
                                                   "from --profile-file / the user profile folder")
    p.add_argument("--artifacts", type=Path, default=None,
                   help="exported artifact folder (manifest.json); default ./artifacts, exported there first (the "
                        "profile's default set; at the CI geometry 512x320/tile 128 when the device is an emulated "
                        "stand-in) when it holds no set")
    p.add_argument("--export-args", default="", help="extra convert/export.py arguments for that export "
                                                     "(shell-quoted, e.g. '--size 12mp --tile 512'); checked first")
    p.add_argument("--out", type=Path, default=Path("bench_out"), help="results folder (default bench_out); a "
                                                                     "re-run with the same folder resumes")
    add_adb_args(p)
    p.add_argument("--iterations", type=int, default=10, help="timed inferences per unit (default 10)")
    p.add_argument("--warmup", type=int, default=3,
                   help="untimed inferences before timing (default 3; the chain warms each call once, none with 0)")
    p.add_argument("--eval-set", type=Path, default=None,
                   help="calibration eval set at the artifacts' geometry (python -m calibration build)")
    p.add_argument("--eval-dng", type=Path, default=None,
                   help="DNG to centre-crop into the evaluation frame (default: a shipped DNG)")
    p.add_argument("--frames", type=int, default=1, help="evaluation frames for the end-to-end chain (default 1)")
    p.add_argument("--runner", choices=("auto", "host", "native", "ios"), default="auto",
                   help="host: android_harness/host_runner.py (needs a Python with the runtimes on the device); "
                        "native: on Android the arm64 bundle (isp_et_runner .pte + isp_litert_runner .tflite, "
                        "android_harness/bundle.py), elsewhere isp_et_runner; ios: the Core ML runner app "
                        "(iPhone profiles); auto: native for Android, "
                        "ios for an iPhone, else native when it is built and covers every unit, else host")
    p.add_argument("--device-python", default=sys.executable, help="device path of the Python for --runner host")
    p.add_argument("--native-runner", type=Path, default=None, help="isp_et_runner binary for the device")
    p.add_argument("--native-lib", action="append", default=[], help="shared library the native runner needs")
    p.add_argument("--units", default=None, help="comma list of units to run (default: every unit)")
    p.add_argument("--precision", default=None, help="precision preference, comma list (default: the profile's)")
    p.add_argument("--force", action="store_true", help="redo units and chain steps finished in an earlier run")
    p.add_argument("--no-chain", action="store_true", help="skip the measured end-to-end run")
    p.add_argument("--chain-only", action="store_true", help="only the measured end-to-end run (its steps carry the "
                                                            "per-unit device time and drift); for slow devices")
    p.add_argument("--retries", type=int, default=2, help="reconnects after a lost device, per step (default 2)")
    p.add_argument("--timeout-s", type=float, default=600.0, help="runner timeout per invocation (default 600)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the runtime")
    p.add_argument("--runner-args", default="", help="extra runner arguments (shell-quoted string)")
    p.add_argument("--profile-file", action="append", default=[], help="extra device profile file (.json/.toml)")
    p.add_argument("--allow-mismatch", action="store_true", help="benchmark --serial even if it is another model")
    p.add_argument("--root", default=None, help="device work folder (default: the profile's work_dir)")
    p.add_argument("--connect-timeout-s", type=float, default=10.0)
    p.add_argument("--auth-timeout-s", type=float, default=10.0,
                   help="how long to wait for the phone to accept this host's key (default 10)")
    p.add_argument("--weights", type=Path, default=None, help="reference weights (default: the manifest's)")
    p.add_argument("--ios-tool", choices=("devicectl", "ios-deploy"), default="devicectl",
                   help="iPhone profiles: how to reach the device (ios_harness/driver.py)")
    p.add_argument("--ios-app", default=None, help="iPhone profiles: the IspBenchRunner.app bundle")
    p.add_argument("--ios-install", action="store_true", help="iPhone profiles: install --ios-app first")
    p.add_argument("--reference-cache", type=Path, default=None,
                   help="folder caching the reference renders (default OUT/reference); shareable between runs")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    if args.iterations < 1 or args.warmup < 0 or args.frames < 1 or args.retries < 0:
        print("error: need --iterations >= 1, --warmup >= 0, --frames >= 1, --retries >= 0", file=sys.stderr)
        return EXIT_USAGE
    opts = BenchOptions(
        device=args.device, artifacts=args.artifacts, out=args.out, serial=args.serial, transport=args.transport,
        key=args.key, iterations=args.iterations, warmup=args.warmup, eval_set=args.eval_set,
        eval_dng=args.eval_dng, frames=args.frames, runner=args.runner, device_python=args.device_python,
        native_runner=args.native_runner, native_libs=tuple(args.native_lib),
        units=tuple(u.strip() for u in args.units.split(",") if u.strip()) if args.units else None,
        precision=tuple(p.strip() for p in args.precision.split(",") if p.strip()) if args.precision else None,
        force=args.force, chain=not args.no_chain, retries=args.retries, timeout_s=args.timeout_s,
        threads=args.threads, runner_args=tuple(shlex.split(args.runner_args)),
        profile_files=tuple(args.profile_file), allow_mismatch=args.allow_mismatch, root=args.root,
        connect_timeout_s=args.connect_timeout_s, auth_timeout_s=args.auth_timeout_s, weights=args.weights,
        reference_cache=args.reference_cache, ios_tool=args.ios_tool, ios_app=args.ios_app,
        ios_install=args.ios_install, export_args=args.export_args, chain_only=args.chain_only)
    code, _ = run_bench(opts)
    return code
