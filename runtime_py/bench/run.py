"""The device run: open the device, push the runner, artifacts and inputs once, run every unit with retries after a
lost device, save each result as it finishes (a re-run resumes), then the chain (:mod:`runtime_py.bench.chain`) and
the report (:mod:`runtime_py.bench.report`)."""
from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from android_harness.device import AndroidDevice, DeviceInfo, RunnerSpec
from android_harness.faults import DeviceLost, DeviceNotFound, RunnerCrashed, RunnerTimeout
from isp.atomic import publish_dir
from isp.hashing import sha256_path
from isp.jsonio import write_json_atomic
from isp.units import calls_per_frame
from runtime_py.bench.chain import ChainSteps
from runtime_py.bench.compare import compare_outputs, latency_stats
from runtime_py.bench.device import (BATCH_RUNNER, PLATFORMS, batch_spec, choose_runner, emulation,
                                     needs_device_python, open_device, runner_entry, runner_spec)
from runtime_py.bench.default_set import ExportArgsError, resolve_artifacts
from runtime_py.bench.options import EXIT_USAGE, BenchError, BenchOptions
from runtime_py.bench.plan import UnitPlan, plan_units
from runtime_py.bench.reference import build_reference, write_npys
from runtime_py.bench.report import Reporting
from runtime_py.bench.state import State, digest, q
from runtime_py.devices import ProfileError, get_profile

log = logging.getLogger("runtime_py.bench")

__all__ = ["Run"]


class Run(ChainSteps, Reporting):
    """One benchmark run; methods in the order they happen (the end-to-end chain: :class:`ChainSteps`, the
    report: :class:`Reporting`)."""

    def __init__(self, opts: BenchOptions) -> None:
        self.opts = opts
        self.out = Path(opts.out).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = self.out / ".work"
        self.state = State(self.out)
        self.t0 = time.monotonic()
        self.dev: AndroidDevice | None = None
        self.info: DeviceInfo | None = None
        self.results: dict[str, dict] = {}
        self.chain: list[dict] = []
        self.chain_note: str | None = None
        self.chain_failed = False
        self.push_report: dict | None = None
        self.events: list[str] = []
        self.fault: str | None = None
        self.emulation: str | None = None
        self.export_record: dict | None = None                 # the export this run made (no --artifacts)
        self.phases: dict[str, float] = {}                     # wall time of each phase, seconds

    @contextlib.contextmanager
    def phase(self, name: str):
        """Add the wall time of the block to ``phases[name_s]`` (the report's time per phase)."""
        t0 = time.monotonic()
        try:
            yield
        finally:
            key = f"{name}_s"
            self.phases[key] = round(self.phases.get(key, 0.0) + time.monotonic() - t0, 1)

    # ------------------------------------------------------------------------------------------------ setup
    def setup(self) -> None:
        o = self.opts
        try:
            self.profile = get_profile(o.device, o.profile_files)
        except ProfileError as exc:
            raise BenchError(str(exc), EXIT_USAGE) from None
        from runtime_py.artifacts import ArtifactSet
        try:
            with self.phase("export"):
                artifacts, self.export_record = resolve_artifacts(
                    o.artifacts, self.profile, o.export_args, probe=self.probe_emulation,
                    runnable=self.export_formats())
        except (ExportArgsError, RuntimeError) as exc:
            raise BenchError(str(exc), EXIT_USAGE) from None
        if self.export_record is None:
            self.phases.pop("export_s", None)
        self.artifacts = artifacts.resolve()
        try:
            self.aset = ArtifactSet.open(self.artifacts)
        except (ValueError, FileNotFoundError) as exc:
            raise BenchError(str(exc), EXIT_USAGE) from None
        self.manifest = self.aset.manifest
        self.geometry = self.aset.geometry
        self.height, self.width = self.geometry.size
        self.runner = choose_runner(self.profile, o, self.manifest, self.artifacts)
        self.plans, self.missing = plan_units(self.aset, self.profile, self.runner, o, self.work)
        if not self.plans:
            formats = runner_entry(self.runner, self.profile).formats
            raise BenchError("no unit of the artifact set can run here: " + "; ".join(
                f"{u}: {why}" for u, why in self.missing.items()) + (f" ({formats})" if formats else ""), EXIT_USAGE)
        for u, why in self.missing.items():
            log.warning("unit %s skipped: %s", u, why)

    def export_formats(self) -> tuple[str, ...] | None:
        """Artifact files the runner this run will use loads, when that is known before the set is (an explicit
        ``--runner``, or the platform's ``auto`` one): an export of a format it cannot load is refused up front."""
        plat = PLATFORMS[self.profile.platform]
        runner = self.opts.runner if self.opts.runner != "auto" else plat.auto
        if runner is None or runner not in plat.runners or self.opts.native_runner:
            return None
        return runner_entry(runner, self.profile).suffixes

    def probe_emulation(self) -> bool:
        """Open the device (its model checked against the profile), say whether it is an emulated stand-in, close
        it: before a long export, so a wrong ``--serial`` fails at once and the export fits the device."""
        dev, _info = open_device(self.profile, self.opts, self.out)
        try:
            return emulation(self.profile, dev) is not None
        finally:
            dev.close()

    def connect(self) -> None:
        self.dev, self.info = open_device(self.profile, self.opts, self.out)
        self.emulation = emulation(self.profile, self.dev)
        if self.emulation:
            log.warning("%s", self.emulation)

    @property
    def device_key(self) -> str:
        i = self.info
        return f"{self.profile.name}|{i.model}|{i.device}|{i.abi}|{i.fingerprint}"

    def runner_spec(self) -> RunnerSpec:
        return runner_spec(self.runner, self.profile, self.opts, self.dev)

    def batch_spec(self) -> RunnerSpec | None:
        return batch_spec(self.runner, self.opts, self.dev)

    def check_runner(self) -> None:
        if needs_device_python(self.runner, self.profile):
            py = self.opts.device_python
            res = self.dev.shell(f"test -x {q(py)} && echo ok || echo missing")
            if res.text.strip() != "ok":
                raise BenchError(
                    f"--runner host needs a Python with numpy and the runtimes on the device at {py}; there is none "
                    f"on {self.dev.serial}. On a phone install one (e.g. Termux) and pass --device-python, or use "
                    f"--runner native with the NDK build of android_harness/native (.pte artifacts).", EXIT_USAGE)

    def unit_args(self, up: UnitPlan) -> list[str]:
        """Runner arguments of one unit that the platform and the runner add (an iPhone's Core ML compute units,
        the LiteRT GPU accelerator)."""
        delegate = up.selection.preference.delegate
        return PLATFORMS[self.profile.platform].unit_args(up.path, delegate) + \
            runner_entry(self.runner, self.profile).unit_args(up.path, delegate)

    # ------------------------------------------------------------------------------------------------ keys
    def runner_key(self) -> str:
        spec = self.runner_spec()
        return digest({"runner": spec.name, "argv0": spec.argv[0] if spec.argv else "",
                        "files": [sha256_path(f) for f, _, _ in spec.files],
                        "batch": sha256_path(BATCH_RUNNER), "threads": self.opts.threads,
                        "args": list(self.opts.runner_args)})

    def unit_key(self, up: UnitPlan) -> str:
        o = self.opts
        return digest({"artifact": up.sha256, "file": up.path.name, "runner": self.runner_key(),
                        "warmup": o.warmup, "iterations": o.iterations, "device": self.device_key,
                        "reference": self.ref.key})

    # ------------------------------------------------------------------------------------------------ push
    def remote_model(self, up: UnitPlan) -> str:
        return f"{self.dev.root}/models/{up.path.name}"

    def unit_files(self, up: UnitPlan) -> list[tuple[Path, str, bool]]:
        root = self.dev.root
        files = [(up.path, self.remote_model(up), False)]
        files += [(p, f"{root}/models/{p.name}", False) for p in up.path.parent.glob(up.path.name + ".*")
                  if p.is_file()]
        if up.io_spec is not None:
            files.append((up.io_spec, f"{root}/models/{up.io_spec.name}", False))
        in_dir = self.input_dir(up)
        files += [(p, f"{root}/inputs/{up.path.stem}/{p.name}", False) for p in sorted(in_dir.glob("*.npy"))]
        return files

    def input_dir(self, up: UnitPlan) -> Path:
        d = self.work / "inputs" / self.ref.key / up.unit / up.path.name     # per reference and artifact (codec)
        if not d.is_dir() or not any(d.glob("*.npy")):
            tmp = d.with_name(d.name + f".tmp-{uuid.uuid4().hex[:6]}")
            write_npys(tmp, {n: up.codec.encode(n, a) for n, a in zip(up.input_names, self.ref.unit_inputs[up.unit])})
            publish_dir(tmp, d)
        return d

    def push_all(self, todo: Sequence[UnitPlan]) -> None:
        """Runner, artifacts, sidecars and inputs of the units still to run, in one push (df check, sha256 skip)."""
        files = list(self.runner_spec().files)
        batch = self.batch_spec()
        if batch is not None and self.opts.chain:
            files += [f for f in batch.files if f not in files]
        for up in todo:
            files += self.unit_files(up)
        t0 = time.monotonic()
        rep = self.with_retries("push artifacts and inputs", lambda: self.dev.push(files), pending=[
            u.unit for u in todo])
        self.push_report = {"files": len(files), "pushed": len(rep.pushed), "skipped": len(rep.skipped),
                            "bytes_pushed": rep.bytes_pushed, "seconds": round(time.monotonic() - t0, 3),
                            "mb_per_s": rep.mb_per_s, "retries": rep.retries}
        log.info("push: %d file(s) sent (%.1f MB), %d already on the device", len(rep.pushed),
                 rep.bytes_pushed / 1e6, len(rep.skipped))

    # ------------------------------------------------------------------------------------------------ retries
    def with_retries(self, what: str, fn: Callable[[], Any], pending: Sequence[str] = ()) -> Any:
        """``fn()``; on a lost device reconnect and try again, ``--retries`` times, then ``DeviceLost``."""
        last: BaseException | None = None
        for attempt in range(self.opts.retries + 1):
            if attempt:
                delay = 0.5 * attempt
                log.warning("%s: device lost during %s (%s); reconnecting in %.1f s (attempt %d/%d)",
                            self.dev.serial, what, last, delay, attempt, self.opts.retries)
                self.events.append(f"retry {attempt} of {what}: {last}")
                time.sleep(delay)
                try:
                    self.dev.transport.reconnect()
                except (DeviceNotFound, DeviceLost) as exc:
                    last = exc
                    continue
            try:
                return fn()
            except DeviceLost as exc:
                last = exc
        raise DeviceLost(self.dev.serial, what, str(getattr(last, "detail", "") or last),
                         completed=[u for u, r in self.results.items() if r.get("status") == "ok"],
                         pending=list(pending), attempts=self.opts.retries + 1) from last

    # ------------------------------------------------------------------------------------------------ units
    def run_units(self) -> None:
        with self.phase("reference"):
            self.ref = build_reference(self.aset, self.opts, Path(self.opts.reference_cache or self.out / "reference"))
        todo = []
        for unit, up in ({} if self.opts.chain_only else self.plans).items():    # --chain-only: the chain alone
            prev = self.state.read(self.state.unit_dir(unit))
            if prev is not None and prev.get("status") == "ok" and prev.get("key") == self.unit_key(up) \
                    and not self.opts.force:
                prev["resumed"] = True
                self.results[unit] = prev
                log.info("%s: done in an earlier run (same artifact, runner and device); skipped", unit)
            else:
                if prev is not None and prev.get("status") == "ok":
                    log.info("%s: the earlier result was made with another artifact/runner/device%s; re-running",
                             unit, " (--force)" if self.opts.force else "")
                todo.append(up)
        chain_pending = self.opts.chain and self.chain_possible() is None
        if todo or chain_pending:
            with self.phase("push"):
                self.push_all(todo)
        else:
            self.push_report = {"files": 0, "pushed": 0, "skipped": 0, "bytes_pushed": 0, "seconds": 0.0,
                                "mb_per_s": None, "retries": 0, "note": "every unit was done in an earlier run"}
        with self.phase("units"):
            for up in todo:
                pending = [u.unit for u in todo if u.unit not in self.results]
                self.results[up.unit] = self.with_retries(f"unit {up.unit}", lambda up=up: self.run_unit(up),
                                                          pending)

    def run_unit(self, up: UnitPlan) -> dict:
        o = self.opts
        folder = self.state.unit_dir(up.unit)
        tmp = State.staging(folder)
        extra = list(o.runner_args)
        extra += self.unit_args(up)
        extra_files = []
        if up.io_spec is not None:
            extra += ["--io-spec", f"{self.dev.root}/models/{up.io_spec.name}"]
            extra_files.append(up.io_spec)
        base = self.result_base(up)
        t0 = time.monotonic()
        try:
            res = self.dev.run_model(self.runner_spec(), up.path, self.input_dir(up), warmup=o.warmup,
                                     iterations=o.iterations, timeout_s=o.timeout_s, threads=o.threads,
                                     extra_args=extra, out_dir=tmp, extra_files=extra_files)
        except (RunnerCrashed, RunnerTimeout) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            kind = "timeout" if isinstance(exc, RunnerTimeout) else "crash"
            log.error("%s: runner %s: %s", up.unit, kind, str(exc).splitlines()[0])
            result = {**base, "status": "failed", "failure": kind, "error": str(exc),
                      "seconds": round(time.monotonic() - t0, 3)}
            write_json_atomic(self.out / "units" / f"{up.unit}.failed.json", result)
            return result
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        outputs = self._named_outputs(up, res.outputs, res.timings)
        drift = [compare_outputs(n, outputs[n], ref) if n in outputs
                 else {"name": n, "error": "the runner did not produce this output"}
                 for n, ref in zip(up.output_names, self.ref.unit_outputs[up.unit])]
        t = res.timings
        result = {**base, "status": "ok", "key": self.unit_key(up), "latency_ms": latency_stats(t["iteration_ms"]),
                  "warmup_ms": t.get("warmup_ms", []), "load_ms": t.get("load_ms"), "startup_ms": t.get("startup_ms"),
                  "peak_rss_bytes": t.get("peak_rss_bytes"), "rss_after_load_bytes": t.get("rss_after_load_bytes"),
                  "runtime": t.get("runtime"), "runtime_version": t.get("runtime_version"),
                  "backend": t.get("backend"), "threads": t.get("threads"), "drift": drift,
                  "wall_s": round(res.wall_s, 3), "push_bytes": res.push.bytes_pushed,
                  "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (self.out / "units" / f"{up.unit}.failed.json").unlink(missing_ok=True)
        State.publish(tmp, folder, result)
        s = result["latency_ms"]
        log.info("%s: p50 %.3f ms (min %.3f) on %s; drift %s", up.unit, s["p50"] or math.nan, s["min"] or math.nan,
                 result["backend"], ", ".join(f"{d['name']} {d.get('psnr', math.nan):.1f} dB" for d in drift
                                              if "psnr" in d))
        return result

    def result_base(self, up: UnitPlan) -> dict:
        a = up.entry
        return {"unit": up.unit, "file": up.path.name, "sha256": up.sha256, "target": a.get("target"),
                "backend_exported": a.get("backend"), "precision": a.get("precision"),
                "preferred": str(up.selection.preference), "preference_rank": up.selection.rank,
                "runner": self.runner, "tiling": up.artifact.tiling,
                "calls_per_frame": calls_per_frame(self.geometry, up.unit),
                "reference_window": self.ref.unit_window.get(up.unit), "warmup": self.opts.warmup,
                "iterations": self.opts.iterations}

    @staticmethod
    def _named_outputs(up: UnitPlan, outputs: Mapping[str, np.ndarray], timings: Mapping[str, Any]
                       ) -> dict[str, np.ndarray]:
        got = dict(outputs)
        if set(got) != set(up.output_names) and len(got) == len(up.output_names):
            order = [o["name"] for o in timings.get("outputs", [])] or list(got)
            got = {want: got[have] for want, have in zip(up.output_names, order)}   # positional fallback
        return {n: up.codec.decode(n, a) for n, a in got.items()}
