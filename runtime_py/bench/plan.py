"""Which artifact runs each unit on the device (the profile's preferences, restricted to what the runner loads), and
how its inputs and outputs are encoded for it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from isp.jsonio import write_json_atomic
from isp.units import normalize_target
from runtime_py.bench.device import runner_entry
from runtime_py.bench.options import EXIT_USAGE, BenchError, BenchOptions
from runtime_py.devices import DeviceProfile, Selection, select_artifacts

__all__ = ["UnitPlan", "plan_units"]


class _Codec:
    """float32 arrays <-> the artifact's tensor dtypes (float16 casts; int8/uint8 with LiteRT's scale/zero point)."""

    def __init__(self, path: Path, inputs: Sequence[Mapping[str, Any]], outputs: Sequence[Mapping[str, Any]]):
        self.in_dtypes = {t["name"]: str(t.get("dtype") or "float32") for t in inputs}
        self.out_dtypes = {t["name"]: str(t.get("dtype") or "float32") for t in outputs}
        self.quant: dict[str, tuple[float, int]] = {}
        if any(d.startswith(("int", "uint")) for d in (*self.in_dtypes.values(), *self.out_dtypes.values())):
            self.quant = self._litert_quant(path)

    @staticmethod
    def _litert_quant(path: Path) -> dict[str, tuple[float, int]]:
        if path.suffix != ".tflite":
            return {}
        from ai_edge_litert.interpreter import Interpreter
        interp = Interpreter(model_path=str(path))
        runner = interp.get_signature_runner(next(iter(interp.get_signature_list())))
        out = {}
        for details in (runner.get_input_details(), runner.get_output_details()):
            for name, d in details.items():
                scale, zero = d.get("quantization", (0.0, 0))
                if scale:
                    out[name] = (float(scale), int(zero))
        return out

    def encode(self, name: str, a: np.ndarray) -> np.ndarray:
        dtype = np.dtype(self.in_dtypes.get(name, "float32"))
        a = np.ascontiguousarray(np.asarray(a, dtype=np.float32))
        if dtype.kind in "iu":
            if name not in self.quant:
                raise BenchError(f"input {name} is {dtype} but its quantization parameters are unknown")
            scale, zero = self.quant[name]
            info = np.iinfo(dtype)
            return np.clip(np.round(a / scale + zero), info.min, info.max).astype(dtype)
        return a.astype(dtype)

    def decode(self, name: str, a: np.ndarray) -> np.ndarray:
        a = np.asarray(a)
        if a.dtype.kind in "iu" and name in self.quant:
            scale, zero = self.quant[name]
            return ((a.astype(np.float32) - zero) * scale).astype(np.float32)
        return a.astype(np.float32)


@dataclass
class UnitPlan:
    """One unit as the benchmark runs it: the chosen artifact (``runtime_py.artifacts.Artifact``), why it was
    chosen, its codec, and a names-only io spec for ``.pte`` files."""

    unit: str
    selection: Selection
    artifact: Any
    codec: _Codec
    io_spec: Path | None = None        # names-only io spec (runner protocol format) for .pte

    @property
    def entry(self) -> Mapping[str, Any]:
        return self.selection.artifact

    @property
    def path(self) -> Path:
        return self.artifact.path

    @property
    def sha256(self) -> str:
        return self.artifact.sha256

    @property
    def input_names(self) -> list[str]:
        return list(self.artifact.input_names)

    @property
    def output_names(self) -> list[str]:
        return list(self.artifact.output_names)

    @property
    def output_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(int(d) for d in s) for s in self.artifact.output_shapes]


def plan_units(aset, profile: DeviceProfile, runner: str, opts: BenchOptions, work: Path
                ) -> tuple[dict[str, UnitPlan], dict[str, str]]:
    from runtime_py.artifacts import ArtifactIntegrityError

    units = list(opts.units) if opts.units else None
    if units:
        unknown = [u for u in units if u not in {a.unit for a in aset.artifacts}]
        if unknown:
            raise BenchError(f"--units: the set has no artifact for {', '.join(unknown)}; it has "
                             f"{', '.join(sorted({a.unit for a in aset.artifacts}))}", EXIT_USAGE)
    chosen, missing = select_artifacts(profile, aset.manifest.get("artifacts", []),
                                       runnable_suffixes=runner_entry(runner, profile).suffixes,
                                       precisions=opts.precision,
                                       folder=aset.root, units=units)
    plans: dict[str, UnitPlan] = {}
    for unit, sel in chosen.items():
        e = sel.artifact
        art = aset.find(unit, normalize_target(str(e["target"]).split("-")[0]) if "-" not in str(e["target"])
                        else str(e["target"]), str(e["precision"]))
        if art is None:                                  # secondary ExecuTorch backends keep their own target name
            art = next(a for a in aset.artifacts if a.file == e["file"])
        try:
            art.check_file(verify=True)
            art.check_geometry(aset.geometry)
        except (ArtifactIntegrityError, ValueError, FileNotFoundError) as exc:
            raise BenchError(str(exc), EXIT_USAGE) from None
        io_spec = None
        if art.path.suffix == ".pte":
            # the runners read {"inputs": [names], "outputs": [names]} (runner_protocol.md)
            io_spec = work / "io" / f"{art.path.name}.runner-io.json"
            write_json_atomic(io_spec, {"inputs": list(art.input_names), "outputs": list(art.output_names)})
        plans[unit] = UnitPlan(unit, sel, art, _Codec(art.path, e["inputs"], e["outputs"]), io_spec)
    return plans, missing
