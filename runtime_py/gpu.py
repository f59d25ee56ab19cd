"""LiteRT's GPU delegate for artifact sets: which units a device profile runs on it, their artifacts and chains.

In :mod:`runtime_py.drift` (``--runtime litert-gpu``): per unit the LiteRT artifacts of the ``pixel8`` GPU units,
end to end one chain per float precision with those on the delegate and the rest on the CPU; a unit the delegate
does not take whole fails unless ``--allow-cpu-fallback``; records carry ``gpu_coverage`` and the budget class
``gpu-fp16`` / ``gpu-fp32``.

    python -m runtime_py.gpu                     # the adapter the GPU runtime sees, or why there is none
    python -m runtime_py.gpu coverage FILE.tflite [--json OUT]   # what the delegate takes of one model

The runner, its coverage and the adapter probe are :mod:`convert.gpu_delegate` (re-exported here).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from convert.gpu_delegate import *  # noqa: F401,F403
from convert.gpu_delegate import (GPU_PROFILE, GPU_RUNTIMES, GpuFallbackError, GpuUnavailable,  # noqa: F401
                                  GpuWorkerCrash, GpuWorkerTimeout, LiteRTGpuRunner, adapter,
                                  measure_coverage, open_runner, skip_reason)

#: --runtime values: "cpu" (each artifact's host runner) and the GPU delegate's
RUNTIMES = ("cpu", *GPU_RUNTIMES)


def plan_runtimes(runtimes: Sequence[str]) -> tuple[list[str], dict[str, Any] | None]:
    """The GPU runtimes among ``runtimes`` (``ValueError`` on an unknown one) and, when there are some, the adapter
    and GPU set for a report (``NotRunnableError`` when this host has no GPU adapter)."""
    from runtime_py.artifacts import NotRunnableError

    bad = [r for r in runtimes if r not in RUNTIMES]
    if bad or not runtimes:
        raise ValueError(f"--runtime: expected some of {', '.join(RUNTIMES)}, got {', '.join(runtimes) or 'none'}")
    gpu_runtimes = [r for r in runtimes if r != "cpu"]
    if not gpu_runtimes:
        return [], None
    info = {**adapter(), "profile": GPU_PROFILE, "units": list(gpu_units())}
    if not info["available"]:
        raise NotRunnableError(f"--runtime {', '.join(gpu_runtimes)}: {info['reason']}")
    return gpu_runtimes, info


def gpu_units(profile: str = GPU_PROFILE) -> tuple[str, ...]:
    """The units a device profile runs on the LiteRT GPU delegate (its first preference for that unit is
    ``tflite/gpu``); the others (``upsample_fit`` on ``pixel8``: the BGU fit needs fp32) stay on the CPU."""
    from runtime_py.artifacts import UNITS
    from runtime_py.devices import get_profile

    prof = get_profile(profile)
    return tuple(u for u in UNITS if (p := prof.preferences_for(u)) and p[0].target == "tflite"
                 and p[0].delegate == "gpu")


# ------------------------------------------------------------------------------------ artifact sets on the GPU

def budget_class(runtime: str, precisions: Sequence[str]) -> str:
    """The budget class of a GPU run: ``gpu-fp16`` (the delegate's fp16 compute, or any fp16 artifact), else
    ``gpu-fp32`` (``litert-gpu-f32`` on fp32 artifacts)."""
    return "gpu-fp32" if GPU_RUNTIMES[runtime] and "fp16" not in precisions else "gpu-fp16"


def gpu_precision(runtime: str) -> str:
    """The artifacts a GPU runtime is judged on: fp16 for ``litert-gpu`` (what a phone runs), fp32 for
    ``litert-gpu-f32``; a unit without one uses the other float precision."""
    return "fp32" if GPU_RUNTIMES[runtime] else "fp16"


def gpu_artifacts(aset: Any, runtime: str, profile: str = GPU_PROFILE) -> list[Any]:
    """Per unit that ``profile`` runs on the GPU delegate, the set's float LiteRT artifact of
    :func:`gpu_precision` (else the other float precision)."""
    want = gpu_precision(runtime)
    order = (want, "fp32" if want == "fp16" else "fp16")
    out = []
    for unit in gpu_units(profile):
        if unit not in aset.required_units:
            continue
        cands = [a for a in aset.of_unit(unit) if a.family == "litert" and a.precision in order]
        if cands:
            out.append(min(cands, key=lambda a: order.index(a.precision)))
    return out


def load_artifact(artifact: Any, runtime: str, allow_cpu_fallback: bool = False,
                  record: dict[str, Any] | None = None) -> LiteRTGpuRunner:
    """A set's artifact on the GPU runtime, with the manifest's tensor names and shapes checked. ``record`` (a
    drift record) gets the run's ``budget_class`` and, once compiled, the delegate's ``gpu_coverage``."""
    if record is not None:
        record["budget_class"] = budget_class(runtime, [artifact.precision])
    runner = open_runner(artifact.path, runtime, artifact.input_names, artifact.output_names, allow_cpu_fallback)
    if record is not None:
        record["gpu_coverage"] = runner.coverage.to_json()
    for kind, got, want in (("input", runner.inputs, artifact.input_shapes),
                            ("output", runner.outputs, artifact.output_shapes)):
        if [tuple(s.shape) for s in got] != [tuple(w) for w in want]:
            raise ValueError(f"{artifact.path.name}: the model's {kind}s {[s.shape for s in got]} differ from the "
                             f"manifest's {want}; re-export")
    return runner


def drift_jobs(aset: Any, evaluated: Sequence[Any], runtimes: Sequence[str]) -> list[tuple[Any, str]]:
    """The per-unit drift runs ``[(artifact, runtime)]``: ``evaluated`` on the CPU when ``runtimes`` has ``cpu``,
    and per GPU runtime the set's artifacts of the GPU units (:func:`gpu_artifacts`)."""
    jobs = [(a, "cpu") for a in evaluated] if "cpu" in runtimes else []
    for r in runtimes:
        if r != "cpu":
            jobs += [(a, r) for a in gpu_artifacts(aset, r)]
    return jobs


def add_runtime_args(p: argparse.ArgumentParser, several: bool = False) -> None:
    """``--runtime`` (one of :data:`RUNTIMES`, or with ``several`` a comma list compared in one report) and
    ``--allow-cpu-fallback``."""
    if several:
        p.add_argument("--runtime", type=lambda t: [x.strip() for x in t.split(",") if x.strip()], default=["cpu"],
                       metavar="R,R", help="cpu (default: every artifact on its host runner), litert-gpu (LiteRT's "
                       "GPU delegate, fp16 compute), litert-gpu-f32 (enforce_f32); a comma list compares them in "
                       "one report")
    else:
        p.add_argument("--runtime", choices=RUNTIMES, default="cpu", help="cpu, or LiteRT's GPU delegate")
    p.add_argument("--allow-cpu-fallback", action="store_true",
                   help="GPU runtimes: let the delegate leave ops to the CPU (listed in the report) instead of "
                        "failing the unit")


def _selection_class() -> type:
    from runtime_py.artifacts import Selection

    class GpuSelection(Selection):
        """A selection whose GPU-set units run on a GPU runtime (the rest on their CPU runner)."""

        def __init__(self, aset: Any, chosen: Mapping[str, Any], runtime: str, units: Sequence[str],
                     allow_cpu_fallback: bool = False) -> None:
            super().__init__(aset, chosen)
            self.runtime = runtime
            self.gpu_set = tuple(u for u in units if u in chosen)
            self.allow_cpu_fallback = allow_cpu_fallback
            bad = [f"{u}: {chosen[u].target}/{chosen[u].precision}" for u in self.gpu_set
                   if chosen[u].family != "litert" or chosen[u].precision not in ("fp16", "fp32")]
            if bad:
                raise ValueError(f"{runtime}: units of the GPU set without a float LiteRT artifact ({'; '.join(bad)})"
                                 f"; export the set with convert/export.py --target tflite --precision fp16")

        # the GPU loader's own errors name the file and what the delegate did: raised as they are
        _passthrough = Selection._passthrough + (GpuFallbackError, GpuUnavailable, GpuWorkerCrash, GpuWorkerTimeout)

        def _load(self, unit: str, artifact: Any) -> Any:
            if unit not in self.gpu_set:
                return super()._load(unit, artifact)
            return load_artifact(artifact, self.runtime, self.allow_cpu_fallback)

        def _load_label(self, unit: str, artifact: Any) -> str:
            return f" on {self.runtime}" if unit in self.gpu_set else ""

        @property
        def precision_class(self) -> str:
            return budget_class(self.runtime, [self[u].precision for u in self.gpu_set])

        @property
        def label(self) -> str:
            precs = "+".join(sorted({self[u].precision for u in self.gpu_set}))
            rest = [u for u in self if u not in self.gpu_set]
            return f"{self.runtime} {precs}" + (f" (CPU: {', '.join(rest)})" if rest else "")

        def as_dict(self) -> dict[str, list[str]]:
            return {u: [a.target, a.precision, self.runtime if u in self.gpu_set else "cpu"]
                    for u, a in self._chosen.items()}

        def coverage(self) -> dict[str, Any]:
            """What ran where, per GPU unit (loaded runners only)."""
            return {u: r.coverage.to_json() for u, r in self._runners.items() if isinstance(r, LiteRTGpuRunner)}

    return GpuSelection


def on_gpu(selection: Any, runtime: str, allow_cpu_fallback: bool = False, profile: str = GPU_PROFILE) -> Any:
    """``selection`` (a :class:`runtime_py.artifacts.Selection`) with the profile's GPU units on ``runtime``."""
    return _selection_class()(selection.set, dict(selection), runtime, gpu_units(profile), allow_cpu_fallback)


def end_to_end_selections(aset: Any, runtime: str, allow_cpu_fallback: bool = False,
                          profile: str = GPU_PROFILE) -> list[tuple[str, Any]]:
    """The chain of a GPU runtime: the profile's GPU units on ``runtime`` (LiteRT, :func:`gpu_precision` first),
    the other units (``upsample_fit``, ``upsample_slice``) on their CPU runner, as the profile asks.
    ``[(name, GpuSelection or the error)]``."""
    from runtime_py.artifacts import RUNNABLE_TARGETS, NotRunnableError, UnitMissingError

    p = gpu_precision(runtime)
    order = [p] + [x for x in ("fp32", "fp16", "w8", "int8") if x != p]
    prefer = ["litert"] + [t for t in RUNNABLE_TARGETS if t != "litert" and t in aset.targets]
    try:
        chosen = dict(aset.select(prefer=prefer, precision_prefer=order, verify=True))
        # the CPU units as a phone runs them: fp32 where the set has it
        for u in chosen:
            if u not in gpu_units(profile):
                chosen[u] = aset.select(prefer=prefer, precision_prefer=["fp32", "fp16", "w8", "int8"],
                                        units=[u])[u]
        sel = _selection_class()(aset, chosen, runtime, gpu_units(profile), allow_cpu_fallback)
    except (UnitMissingError, NotRunnableError, ValueError, FileNotFoundError) as exc:
        return [(f"{runtime} {p}", exc)]
    return [(sel.label, sel)]


# ------------------------------------------------------------------------------------------------------ CLI

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m runtime_py.gpu",
                                description="The adapter LiteRT's GPU delegate sees here, or a model's GPU coverage")
    sub = p.add_subparsers(dest="cmd")
    c = sub.add_parser("coverage", help="what the GPU delegate takes of one .tflite")
    c.add_argument("model", type=Path)
    c.add_argument("--f32", action="store_true", help="enforce_f32")
    c.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.cmd == "coverage":
        if not args.model.is_file():
            print(f"error: {args.model}: no such file", file=sys.stderr)
            return 2
        try:
            cov = measure_coverage(args.model, enforce_f32=args.f32)
        except GpuUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"{args.model.name}: {cov.describe()} (adapter: {cov.adapter})")
        if args.json:
            args.json.write_text(json.dumps(cov.to_json(), indent=1))
        return 0 if cov.fully_accelerated else 1
    a = adapter()
    if a["available"]:
        print(f"GPU adapter: {a['adapter']}")
        return 0
    print(f"no GPU adapter: {a['reason']}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
