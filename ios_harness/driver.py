"""Drive the Core ML runner app (``ios_harness/IspBenchRunner``) on a connected iPhone: deploy, run, collect.

    python -m ios_harness.driver list [--tool devicectl|ios-deploy]
    python -m ios_harness.driver install --app build/IspBenchRunner.app [--udid U]
    python -m ios_harness.driver run --model gain_coreml_fp16.mlpackage --inputs DIR --out DIR [--udid U]
           [--warmup 3 --iterations 10 --compute-units all|cpu_only|cpu_and_gpu|cpu_and_ne]
    python -m ios_harness.driver bench --artifacts DIR [--udid U] [...]    # = python -m runtime_py.bench
                                                                            #   --device iphone-15-pro ...

An iPhone runs no programs except apps, so the runner is an app (bundle id :data:`BUNDLE_ID`) that takes the runner
protocol's flags (``android_harness/runner_protocol.md``) as *launch arguments*, works inside its own data container
(``Documents/isp_bench/...``: models, inputs, runs), writes outputs and ``timings.json`` there — or
``<timings>.error.json`` (``{"code", "message"}``) on failure, since an app's exit status does not reliably reach the
host — and exits. The driver moves files in and out of that container and starts the app:

=================  =====================================================  ==========================================
step               ``xcrun devicectl`` (Xcode 15+, default)               ``ios-deploy`` (older Xcode)
=================  =====================================================  ==========================================
list devices       ``devicectl list devices --json-output F``             ``ios-deploy --detect --json``
install the app    ``devicectl device install app --device U APP``        ``ios-deploy --id U --bundle APP``
push a file        ``devicectl device copy to --device U --domain-type    ``ios-deploy --id U --bundle_id B
                   appDataContainer --domain-identifier B --source L      --upload L --to /R``
                   --destination R``
pull a file        ``devicectl device copy from ... --source R            ``ios-deploy --id U --bundle_id B
                   --destination L``                                      --download=/R --to L``
run                ``devicectl device process launch --device U           ``ios-deploy --id U --bundle APP
                   --terminate-existing --console B -- ARGS``             --noinstall --noninteractive --args "..."``
=================  =====================================================  ==========================================

Directories (``.mlpackage``, ``.mlmodelc``, a run's outputs) are copied file by file. Pushes are skipped by sha256
against an index kept on the device (``Documents/isp_bench/.pushed.json``, pulled first and pushed last), so a re-run
sends nothing; reinstalling the app wipes the container and the index together. ``.mlpackage`` models are compiled
by the app at load time (``compile_ms`` in the timings, kept out of ``load_ms``).

Every command goes through one injectable function (``run(argv, timeout_s) -> CompletedProcess``), so command
construction and protocol parsing are unit-tested here with a fake (``tests/ios_harness/test_driver.py``); nothing
in this file has been run against a real iPhone (``ios_harness/README.md``).

Failures map to the Android harness's typed errors: no device → ``DeviceNotFound``; not paired / trust not accepted
→ ``DeviceUnauthorized``; locked → ``HarnessError`` asking to unlock; disconnected mid-command → ``DeviceLost``;
no space → ``DeviceStorageFull``; ``<timings>.error.json`` or no timings → ``RunnerCrashed``; past the timeout →
``RunnerTimeout``.

The device itself (:class:`IosDevice`, :func:`open_ios_device`, the tools) is :mod:`ios_harness.device`; this module
is its command line and re-exports it.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from android_harness.faults import HarnessError
from ios_harness import device as _device
from ios_harness.device import *  # noqa: F401,F403  (the device API under the driver's name)
from ios_harness.device import TOOLS, list_ios_devices, make_tool, open_ios_device
from isp.units import COMPUTE_UNITS as CORE_ML_COMPUTE_UNITS

__all__ = [*_device.__all__, "build_parser", "main"]


# ====================================================================================================== CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ios_harness.driver", description=__doc__.split("\n\n")[0])
    p.add_argument("--tool", choices=tuple(TOOLS), default="devicectl")
    p.add_argument("--udid", default=None, help="device UDID (default: the one connected iPhone)")
    p.add_argument("--app", default=None, help="IspBenchRunner.app bundle (install; launch with ios-deploy)")
    p.add_argument("--device", default="iphone-15-pro", help="device profile (runtime_py.devices)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="connected iPhones")
    sub.add_parser("install", help="install the runner app (--app)")
    r = sub.add_parser("run", help="one model through the runner protocol")
    r.add_argument("--model", required=True, type=Path)
    r.add_argument("--inputs", required=True, type=Path, help="folder of <input name>.npy")
    r.add_argument("--out", required=True, type=Path)
    r.add_argument("--warmup", type=int, default=3)
    r.add_argument("--iterations", type=int, default=10)
    r.add_argument("--compute-units", default="all", choices=tuple(CORE_ML_COMPUTE_UNITS))
    r.add_argument("--timeout-s", type=float, default=600.0)
    sub.add_parser("bench", help="runtime_py.bench on the iPhone; the remaining arguments go to it",
                   add_help=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "bench" in argv:                               # everything after "bench" belongs to runtime_py.bench
        i = argv.index("bench")
        head, rest = argv[:i], argv[i + 1:]
        ns = build_parser().parse_args(head + ["list"])
        from runtime_py import bench
        extra = ["--ios-tool", ns.tool] + (["--serial", ns.udid] if ns.udid else []) + \
            (["--ios-app", ns.app] if ns.app else [])
        return bench.main(["--device", ns.device] + extra + rest)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from runtime_py.devices import DeviceMismatch, ProfileError, get_profile
    try:
        if args.command == "list":
            for e in list_ios_devices(make_tool(args.tool)):
                print(f"{e.udid}\t{e.name}\t{e.product_type}\t{e.model}\tiOS {e.os_version}\t{e.state}")
            return 0
        dev = open_ios_device(get_profile(args.device), args.udid, tool=args.tool, app=args.app,
                              install=args.command == "install")
        if args.command == "run":
            res = dev.run_model(None, args.model, args.inputs, warmup=args.warmup, iterations=args.iterations,
                                timeout_s=args.timeout_s, extra_args=["--compute-units", args.compute_units],
                                out_dir=args.out)
            s = res.timings.get("summary", {})
            print(f"{res.model}: median {s.get('median_ms', float('nan')):.3f} ms over {len(res.timings.get('iteration_ms', []))}"
                  f" iterations [{res.timings.get('backend')}]; outputs in {args.out / 'outputs'}")
        return 0
    except (HarnessError, DeviceMismatch) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (ValueError, ProfileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
