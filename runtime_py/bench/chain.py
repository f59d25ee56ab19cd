"""The measured end-to-end chain: every unit of the render on the device, fed the device outputs of the units
before it and tiled as the host artifact pipeline tiles (:func:`runtime_py.pipeline.run_unit`); all tiles of a unit
go to the device at once and run in one runner process."""
from __future__ import annotations

import json
import logging
import math
import shutil
import time
import uuid
from typing import Mapping, Sequence

import numpy as np

from android_harness.faults import RunnerCrashed, RunnerTimeout
from isp.units import UNITS, chain_tensors, frame_inputs, window_of
from runtime_py.bench.compare import compare_outputs, latency_stats
from runtime_py.bench.plan import UnitPlan
from runtime_py.bench.reference import savez_atomic, write_npys
from runtime_py.bench.state import State, digest, q

log = logging.getLogger("runtime_py.bench")

__all__ = ["ChainSteps"]


class ChainSteps:
    """The chain part of :class:`runtime_py.bench.run.Run` (a mixin: it uses the run's device, plans, reference,
    state and retries)."""

    # ------------------------------------------------------------------------------------------------ chain
    def chain_units(self) -> list[str]:
        return list(self.aset.required_units)

    def chain_possible(self) -> str | None:
        need = self.chain_units()
        missing = [u for u in need if u not in self.plans]
        if missing:
            return f"the selection lacks unit(s) {', '.join(missing)} (" + "; ".join(
                f"{u}: {self.missing.get(u, 'not requested')}" for u in missing) + ")"
        failed = [] if self.opts.chain_only else [                   # --chain-only: no unit results to wait for
            u for u in need if self.results.get(u, {}).get("status") != "ok"]
        if failed:
            return f"unit(s) {', '.join(failed)} failed on the device"
        return None

    def run_chain(self) -> None:
        if not self.opts.chain:
            self.chain_note = "skipped (--no-chain)"
            return
        why = self.chain_possible()
        if why is not None:
            self.chain_note = f"not run: {why}"
            log.warning("end-to-end chain %s", self.chain_note)
            return
        for k in range(len(self.ref.frames)):
            try:
                self.chain.append(self.run_frame(k))
            except (RunnerCrashed, RunnerTimeout) as exc:
                self.chain_failed = True
                self.chain_note = f"failed on frame {k}: {exc}"
                log.error("end-to-end chain %s", self.chain_note.splitlines()[0])
                return

    def run_frame(self, k: int) -> dict:
        """The whole chain on the device for evaluation frame ``k``: every unit fed the device outputs of the units
        before it, tiled by :func:`runtime_py.pipeline.run_unit` (the host artifact pipeline's tiling). Each unit runs
        twice through ``run_unit``: once recording the calls it makes (the tiles), then, after the device has run
        all of them in one go, replaying the device outputs so ``run_unit`` stitches them."""
        import torch

        from runtime_py.pipeline import run_unit

        ref = self.ref.frames[k]
        board: dict[str, torch.Tensor] = {n: torch.from_numpy(np.ascontiguousarray(ref[n]))
                                          for n in ("raw", "illum", "ccm")}
        steps = []
        hashes: list[str] = []
        wall0 = time.monotonic()
        window = next((window_of(u, p.artifact.input_shapes) for u, p in self.plans.items() if UNITS[u].windowed),
                      None)
        for unit in self.chain_units():
            up = self.plans[unit]
            hashes.append(up.sha256)
            key = digest({"frame": k, "reference": self.ref.key, "artifacts": hashes, "runner": self.runner_key(),
                           "device": self.device_key, "warmup": self.chain_warmup()})
            folder = self.state.step_dir(k, unit)
            prev = self.state.read(folder)
            if prev is not None and prev.get("key") == key and not self.opts.force:
                board.update({n: torch.from_numpy(v) for n, v in np.load(folder / "outputs.npz").items()})
                prev["resumed"] = True
                steps.append(prev)
                continue
            ins = frame_inputs(unit, board)
            recorded: list[list[np.ndarray]] = []

            def record(arrays, up=up):
                recorded.append([a.detach().float().numpy() for a in arrays])
                return [torch.zeros(shape) for shape in up.output_shapes]

            with torch.inference_mode():
                run_unit(record, unit, self.geometry, *ins, window=window)
            sets = [{n: up.codec.encode(n, a) for n, a in zip(up.input_names, arrays)} for arrays in recorded]
            t0 = time.monotonic()
            outs_per_set, call_ms, backend = self.with_retries(
                f"chain frame {k} unit {unit}", lambda: self.run_sets(up, sets, f"f{k}"),
                pending=[f"chain {u}" for u in self.chain_units()[len(steps):]])
            replay = iter(outs_per_set)

            def play(_arrays, up=up):
                o = next(replay)
                return [torch.from_numpy(up.codec.decode(n, o[n])) for n in up.output_names]

            with torch.inference_mode():
                outs, _info = run_unit(play, unit, self.geometry, *ins, window=window)
            merged = {name: t.detach().float().numpy() for name, t in zip(UNITS[unit].outputs, outs)}
            board.update({n: torch.from_numpy(v) for n, v in merged.items()})
            step = {"frame": k, "unit": unit, "key": key, "file": up.path.name, "calls": len(sets),
                    "warmup": self.chain_warmup(),
                    "call_ms": call_ms, "sum_ms": float(sum(call_ms)), "latency_ms": latency_stats(call_ms),
                    "backend": backend, "wall_s": round(time.monotonic() - t0, 3),
                    "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            tmp = State.staging(folder)
            savez_atomic(tmp / "outputs.npz", merged)
            State.publish(tmp, folder, step)
            steps.append(step)
            log.info("chain frame %d %s: %d call(s), %.2f ms on the device", k, unit, len(sets), step["sum_ms"])
        drift = []
        for name in chain_tensors(grid=True):
            if name in board and name in ref:
                drift.append(compare_outputs(name, board[name].numpy(), ref[name]))
        savez_atomic(self.out / "chain" / f"frame{k}" / "final.npz", {"srgb": board["srgb"].numpy()})
        measured = float(sum(s["sum_ms"] for s in steps))
        return {"frame": k, "steps": steps, "measured_ms": measured, "wall_s": round(time.monotonic() - wall0, 3),
                "drift": drift, "final": next((d for d in drift if d["name"] == "srgb"), None)}

    def chain_warmup(self) -> int:
        """Untimed runs before each chain call's one timed run: one, or none with ``--warmup 0`` (a drift-only run,
        e.g. under emulation, where a warm-up doubles the time and the latency is labelled emulation anyway)."""
        return min(1, self.opts.warmup)

    def run_sets(self, up: UnitPlan, sets: Sequence[Mapping[str, np.ndarray]], tag: str
                 ) -> tuple[list[dict[str, np.ndarray]], list[float], str | None]:
        """Run ``sets`` through the unit's artifact on the device in one go; (outputs per set, ms per set, backend).

        The sets travel as one uncompressed tar each way (``tar`` is in toybox): a frame's 15 tiles are then two
        transfers and three shell commands instead of thirty of each."""
        import tarfile

        root = self.dev.root
        local = self.work / "chain" / tag / up.unit
        shutil.rmtree(local, ignore_errors=True)
        names = [f"{i:03d}" for i in range(len(sets))]
        for name, arrays in zip(names, sets):
            write_npys(local / "in" / name, arrays)
        run_sets = getattr(self.dev, "run_sets", None)
        if run_sets is not None:                      # the device runs the sets itself (the iPhone app's batch mode)
            outs, ms, backend = run_sets(up.path, local / "in", warmup=self.chain_warmup(), iterations=1,
                                         timeout_s=self.opts.timeout_s,
                                         extra_args=self.unit_args(up), out_dir=local / "out")
            named = [self._named_outputs(up, o, {}) for o in outs]
            shutil.rmtree(local, ignore_errors=True)
            return named, ms, backend
        with tarfile.open(local / "in.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
            for name in names:
                tar.add(local / "in" / name, arcname=name)
        r_in = f"{root}/inputs/chain/{up.unit}"
        r_run = f"{root}/runs/chain-{up.unit}-{uuid.uuid4().hex[:6]}"
        files = list(self.runner_spec().files)
        batch = self.batch_spec()
        if batch is not None:
            files += [f for f in batch.files if f not in files]
        files += self.unit_files(up)
        files.append((local / "in.tar", f"{r_run}/in.tar", False))
        self.dev.shell(f"rm -rf {q(r_in)} {q(r_run)} && mkdir -p {q(r_in)} {q(r_run)}/out", check=True)
        self.dev.push(files)
        self.dev.shell(f"tar -xf {q(r_run)}/in.tar -C {q(r_in)} && rm -f {q(r_run)}/in.tar", check=True)
        common = ["--model", self.remote_model(up)]
        if up.io_spec is not None:
            common += ["--io-spec", f"{root}/models/{up.io_spec.name}"]
        if self.opts.threads:
            common += ["--threads", str(self.opts.threads)]
        common += list(self.opts.runner_args)
        warm = self.chain_warmup()
        if batch is not None:
            argv = list(batch.argv) + common + ["--inputs", r_in, "--outputs", f"{r_run}/out", "--warmup", str(warm),
                                                "--iterations", "1", "--timings", f"{r_run}/out/timings.json"]
            env = batch.env
        else:
            spec = self.runner_spec()
            one = " ".join(q(a) for a in spec.argv + tuple(common))
            loop = (f"for s in {' '.join(names)}; do mkdir -p {q(r_run)}/out/$s && {one} --inputs {q(r_in)}/$s "
                    f"--outputs {q(r_run)}/out/$s --warmup {warm} --iterations 1 --timings {q(r_run)}/out/$s/t.json "
                    f">/dev/null || exit $?; done")
            argv, env = ["sh", "-c", loop], spec.env
        res = self.dev.run(argv, timeout_s=self.opts.timeout_s, env=env, cwd=r_run)
        if res.returncode != 0:
            raise RunnerCrashed(self.dev.serial, res.returncode, res.stderr_tail(), up.path.name)
        self.dev.shell(f"cd {q(r_run)}/out && tar -cf ../out.tar .", check=True)
        self.dev.pull(f"{r_run}/out.tar", local / "out.tar")
        pulled = local / "out"
        with tarfile.open(local / "out.tar") as tar:
            tar.extractall(pulled, filter="data")
        if batch is not None:
            timings = json.loads((pulled / "timings.json").read_text())
            per = timings["sets"]
            backend = timings.get("backend")
        else:
            per, backend = [], None
            for name in names:
                t = json.loads((pulled / name / "t.json").read_text())
                per.append({"name": name, "iteration_ms": t["iteration_ms"], "outputs": t["outputs"]})
                backend = t.get("backend")
        outs, ms = [], []
        for entry in per:
            arrays = {o["name"]: np.load(pulled / entry["name"] / o["file"], allow_pickle=False)
                      for o in entry["outputs"]}
            outs.append(self._named_outputs(up, arrays, {"outputs": entry["outputs"]}))
            ms.append(float(entry["iteration_ms"][0]) if entry["iteration_ms"] else math.nan)
        self.dev.shell(f"rm -rf {q(r_run)}")
        shutil.rmtree(local, ignore_errors=True)
        return outs, ms, backend
