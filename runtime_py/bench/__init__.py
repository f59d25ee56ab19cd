"""Run an exported ISP artifact set on a device and measure latency and drift there.

    python -m runtime_py.bench --device PROFILE [--serial S] [--transport adb|adb-shell] [--artifacts DIR]
           [--iterations N] [--warmup N] [--out DIR] [--eval-set DIR | --eval-dng FILE] [--frames N]
           [--runner auto|host|native|ios] [--units a,b] [--precision p,q] [--force] [--no-chain] [--retries N]
           [--timeout-s S] [--reference-cache DIR] [--profile-file F] [--allow-mismatch] [--chain-only]
           [--export-args ARGS] [-v]

What happens (``docs/EXPORT_DESIGN.md`` is the contract for units, tiling and the manifest):

1. **Device.** ``--device`` names a profile (:mod:`runtime_py.devices`). Without ``--serial`` the one connected
   device that matches it is used (``adb devices -l`` + ``getprop ro.product.model``); with ``--serial`` the device is
   checked against the profile (a mismatch is an error naming both, unless ``--allow-mismatch``). ``--device host``
   runs everything in a local folder instead (no adb), as a baseline; an iPhone profile (``iphone-15-pro``) goes
   through ``ios_harness.device`` (the Core ML runner app; ``--ios-tool``, ``--ios-app``).
2. **Selection.** One artifact per unit of the manifest: the profile's target/delegate preferences, then its
   precision order (``--precision`` overrides), restricted to what the runner executes (``--runner native``:
   ``.pte``; ``host``: ``.onnx``, ``.tflite``, ``.pte``; ``ios``: Core ML). Each chosen file's sha256 and declared
   shapes are checked (``runtime_py.artifacts``). ``--runner host`` is ``android_harness/host_runner.py`` run by a
   Python *on the device* (``--device-python``; the stand-in device sees the venv read-only, a phone needs e.g.
   Termux); ``native`` — the default on Android — is the arm64 push bundle (``android_harness/bundle.py``:
   ``isp_et_runner`` for ``.pte``, ``isp_litert_runner`` for ``.tflite``, with their own loader and libc), or
   ``--native-runner`` for another build. Without ``--artifacts``: ``./artifacts``, or the profile's default set
   exported there first (``runtime_py.bench.default_set``: checked arguments, the CI geometry on an emulated
   stand-in, renamed into place only when complete). A stand-in device's timings are labelled as emulation.
3. **Reference.** The float32 PyTorch reference (``runtime_py.drift.Reference``: :class:`isp.pipeline.Pipeline`
   with the set's style / denoiser / weights, tiled at its geometry) renders ``--frames`` evaluation frames: from
   ``--eval-set`` (a ``python -m calibration build`` set at this geometry) or a centre crop of ``--eval-dng``
   (default: the first shipped DNG large enough). Every unit's reference inputs and outputs come from it: frame and
   quarter units get the reference's own intermediate tensors; tiled units get the middle window of their tile
   plan, with the reference stage evaluated on that window (``upsample_slice``: the crop of the whole-frame
   reference slice). Cached in ``--reference-cache`` (default ``OUT/reference``).
4. **Push once.** Runner, every selected artifact (+ sidecars, + a names-only io spec for ``.pte``) and every unit's
   inputs go in one push (``AndroidDevice.push``: ``df`` check first, sha256 skip — a re-run sends nothing).
5. **Per unit** (manifest order): ``--warmup`` + ``--iterations`` through the runner protocol
   (``android_harness/runner_protocol.md``), outputs and timings pulled, latency p50/p90/p99/min/mean, peak RSS, and
   drift of every output against the reference (PSNR, SSIM, ΔE2000 mean/p95/max, max |Δ|). Each finished unit is
   saved at once, atomically, in ``OUT/units/<unit>/`` (``result.json`` written last).
6. **End to end, measured** (unless ``--no-chain``; needs every unit of the render): the whole chain runs on the
   device unit by unit, each unit fed the previous units' *device* outputs, tiled exactly as the host artifact
   pipeline tiles (:func:`runtime_py.pipeline.run_unit`: ``overlap`` units feathered windows, ``tiles`` units plain
   windows, the BGU slice with each tile's grid window and interpolation matrices). All tiles of a unit go to the
   device at once (one tar each way) and run in one runner process (``runtime_py/batch_runner.py`` for the Python
   runner, the app's batch mode on iOS; the native runner is started per tile by a shell loop): one warm-up on the
   first tile (on every tile with the native runner; none with ``--warmup 0``, for drift-only runs such as the
   emulated arm64 stand-in, where it would double the time), then one timed inference per tile. The measured frame time is the sum of
   those inferences over every call of the frame; the wall time (transfers, runner start-up, host-side tiling)
   is reported beside it. Each finished step is saved in ``OUT/chain/``. The **estimate** is Σ p50 x calls per
   frame from step 5. The final image is compared with the reference render (PSNR, SSIM, ΔE2000), and every
   intermediate with the reference's.
7. **Report**: ``OUT/results.json`` and ``OUT/report.html`` (self-contained: tables, reference | device | ΔE heat
   map images).

Resume. A re-run with the same ``--out`` skips every unit and chain step whose saved result was made with the same
artifact (sha256 of the file), runner, iterations, reference frames and device model (``--force`` redoes them);
pushes are skipped by sha256, so nothing is sent twice.

Faults. No device, an unauthorized host, a device gone for good (after ``--retries`` reconnects per unit), a full
device: exit 3 with the harness's message, what finished (kept in ``OUT``, skipped on the re-run) and what is
pending; the partial report is written. A runner that crashes or times out (``--timeout-s``; killed on the device)
fails that unit only: it is recorded with the runner's stderr tail, the others go on, exit 1.

Exit codes: 0 all done; 1 some unit or chain step failed (results written); 2 bad arguments, profile, artifact set or
device mismatch; 3 device fault.

Layout of this package, by role: :mod:`~runtime_py.bench.options` (options, exit codes), :mod:`~runtime_py.bench.cli`
(the command line, :func:`run_bench`), :mod:`~runtime_py.bench.device` (the device opened through a table keyed by
platform; the runners), :mod:`~runtime_py.bench.native` (the arm64 runner bundle, emulation labels),
:mod:`~runtime_py.bench.default_set` (the set without ``--artifacts``), :mod:`~runtime_py.bench.plan` (artifact
per unit, tensor codecs), :mod:`~runtime_py.bench.reference` (the PyTorch reference and its cache),
:mod:`~runtime_py.bench.run` (push, retries, resume, units), :mod:`~runtime_py.bench.chain` (the measured
end-to-end chain), :mod:`~runtime_py.bench.report` (results.json, report.html), :mod:`~runtime_py.bench.state`
(saved results and their keys), :mod:`~runtime_py.bench.compare` (latency statistics, drift of one output).
"""
from __future__ import annotations

from runtime_py.bench.cli import build_parser, main, run_bench
from runtime_py.bench.compare import compare_outputs, latency_stats
from runtime_py.bench.device import LocalTransport
from runtime_py.bench.options import (EXIT_DEVICE, EXIT_FAILED, EXIT_OK, EXIT_USAGE, SCHEMA, BenchError,
                                      BenchOptions)

__all__ = ["SCHEMA", "BenchOptions", "BenchError", "LocalTransport", "latency_stats", "compare_outputs",
           "run_bench", "build_parser", "main", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_DEVICE"]
