"""Precision policies: which precision each export unit gets.

A policy is ``{"default": <precision>, "units": {<unit>: <precision>, ...}}`` (``docs/EXPORT_DESIGN.md``).
Built-in policies live in ``convert/policies/<name>.json``:

* ``fp32`` — everything float32;
* ``fp16`` — everything fp16 except the BGU fit (its regulariser vanishes in fp16) and the GTM and chroma units
  (their exp/log tone curve and histogram/LUT maths lose 30-45 dB in half precision:
  :data:`convert.recipes.FP16_POLICY_FLOAT`);
* ``int8`` — the default int8 policy (``--policy int8``): the detail enhancer in int8 (static W8A8, calibrated, its
  NAFNet body), the raw denoiser in fp16, everything else float32 — the mix that meets the project's int8 budget
  (>= 38 dB end to end, mean ΔE2000 <= 1.0); :data:`convert.recipes.INT8_POLICY_FLOAT` gives the measurements
  behind each float unit;
* ``w8`` — int8 weights (dynamic-range) wherever a unit has weights;
* ``npu`` — integer arithmetic for phone NPUs within ``runtime_py.drift --budget npu`` (README, "Integer NAFNets
  for NPUs"; CI checks the LiteRT and ExecuTorch sets): both NAFNet units (denoise, enhance) integer with per-target
  quantizer options (``options``: LiteRT 16x8 with split int8 weights in the denoiser's most sensitive convolutions,
  ExecuTorch XNNPACK W8A8 with the layers W8A8 cannot hold kept float, Core ML the same W8A8 program, not run here);
  its ``notes`` say why each float part stays float, with the quantization debugger's measurements.

A policy may add recipe options per unit and target (``"options": {"denoise": {"litert": {...}}}``) and a note
per unit (``"notes": {"gain": "why"}``, written into that unit's manifest entry).

``--precision X`` is :meth:`Policy.uniform` (every unit asks for X: ``--precision int8`` also quantizes the
denoiser and the gain/GTM networks, and misses the int8 budget — 31 dB end to end on ONNX). Whatever the policy asks for, a unit whose
recipe row is unsupported (:mod:`convert.recipes`) falls back to ``fp32``, with a warning that ends up in the
manifest entry of that artifact (:meth:`Policy.plan`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from convert import recipes
from convert.recipes import PRECISIONS, Recipe
from isp.units import ALL_UNITS
from isp.jsonio import read_json

__all__ = ["POLICY_DIR", "BUILTIN", "FALLBACK", "Policy", "PlannedUnit", "load_policy"]

POLICY_DIR = Path(__file__).resolve().parent / "policies"
BUILTIN = ("fp32", "fp16", "int8", "w8", "npu")
FALLBACK = "fp32"


@dataclass(frozen=True)
class PlannedUnit:
    """What the exporter will do for one unit: the recipe to run (or the unsupported row) and the warnings."""
    unit: str
    requested: str
    recipe: Recipe
    warnings: tuple[str, ...] = ()

    @property
    def precision(self) -> str:
        return self.recipe.precision


@dataclass(frozen=True)
class Policy:
    default: str
    units: Mapping[str, str] = field(default_factory=dict)
    name: str = "custom"
    #: unit -> target -> recipe options the policy adds (e.g. the npu policy's quantizer settings)
    options: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    #: unit -> why the policy chose that unit's precision / options (recorded in the manifest entry)
    notes: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.default not in PRECISIONS:
            raise ValueError(f"policy {self.name}: default must be one of {', '.join(PRECISIONS)}, got "
                             f"{self.default!r}")
        bad_units = [u for u in self.units if u not in ALL_UNITS]
        if bad_units:
            raise ValueError(f"policy {self.name}: unknown units {bad_units}; units are {', '.join(ALL_UNITS)}")
        bad = {u: p for u, p in self.units.items() if p not in PRECISIONS}
        if bad:
            raise ValueError(f"policy {self.name}: precisions must be one of {', '.join(PRECISIONS)}, got {bad}")
        object.__setattr__(self, "units", dict(self.units))
        for label, table in (("options", self.options), ("notes", self.notes)):
            unknown = [u for u in table if u not in ALL_UNITS]
            if unknown:
                raise ValueError(f"policy {self.name}: {label}: unknown units {unknown}")
        for unit, per_target in self.options.items():
            if not isinstance(per_target, Mapping) or not all(isinstance(v, Mapping) for v in per_target.values()):
                raise ValueError(f"policy {self.name}: options.{unit} must map target names to option objects, got "
                                 f"{per_target!r}")
            for t in per_target:
                recipes.canonical_target(t)
        object.__setattr__(self, "options", {u: {recipes.canonical_target(t): dict(o) for t, o in pt.items()}
                                             for u, pt in self.options.items()})
        object.__setattr__(self, "notes", {str(u): str(n) for u, n in self.notes.items()})

    # ---------------------------------------------------------------------------------------------- constructors
    @classmethod
    def uniform(cls, precision: str) -> "Policy":
        """``--precision X``: every unit asks for ``X``."""
        return cls(default=precision, units={}, name=f"uniform {precision}")

    @classmethod
    def from_json(cls, data: Mapping[str, Any], name: str = "custom") -> "Policy":
        if not isinstance(data, Mapping):
            raise ValueError(f"policy {name}: expected a JSON object {{\"default\": ..., \"units\": {{...}}}}, got "
                             f"{type(data).__name__}")
        extra = set(data) - {"default", "units", "options", "notes"}
        if extra:
            raise ValueError(f"policy {name}: unknown keys {sorted(extra)}; expected 'default', 'units' and "
                             f"optionally 'options' and 'notes'")
        if "default" not in data:
            raise ValueError(f"policy {name}: missing 'default' (one of {', '.join(PRECISIONS)})")
        units = data.get("units", {}) or {}
        if not isinstance(units, Mapping):
            raise ValueError(f"policy {name}: 'units' must map unit ids to precisions, got {units!r}")
        for key in ("options", "notes"):
            if not isinstance(data.get(key, {}) or {}, Mapping):
                raise ValueError(f"policy {name}: '{key}' must be an object keyed by unit, got {data[key]!r}")
        return cls(default=str(data["default"]), units={str(k): str(v) for k, v in units.items()}, name=name,
                   options=dict(data.get("options") or {}), notes=dict(data.get("notes") or {}))

    @classmethod
    def load(cls, name_or_path: str | Path) -> "Policy":
        """A built-in policy name (``fp32``, ``fp16``, ``int8``, ``w8``) or a JSON file."""
        text = str(name_or_path)
        path = POLICY_DIR / f"{text}.json" if text in BUILTIN else Path(text)
        data = read_json(path, what="policy ",
                         missing=f"policy {text!r}: no such file; give a JSON file or one of {', '.join(BUILTIN)}")
        return cls.from_json(data, name=text if text in BUILTIN else str(path))

    # ---------------------------------------------------------------------------------------------- use
    def requested(self, unit: str) -> str:
        return self.units.get(unit, self.default)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"default": self.default, "units": dict(self.units)}
        if self.options:
            out["options"] = {u: {t: dict(o) for t, o in pt.items()} for u, pt in self.options.items()}
        if self.notes:
            out["notes"] = dict(self.notes)
        return out

    def unit_options(self, unit: str, target: str) -> dict[str, Any]:
        """The recipe options this policy adds for ``unit`` on ``target``."""
        return dict(self.options.get(unit, {}).get(recipes.canonical_target(target), {}))

    def plan(self, units: Sequence[str], target: str, *, backends: tuple[str, ...] | None = None,
             options: Mapping[str, Any] | None = None) -> list[PlannedUnit]:
        """Resolve every unit's recipe for ``target``; unsupported requests fall back to fp32 with a warning.

        A unit that is unsupported even in fp32 keeps its unsupported fp32 recipe (the exporter records a
        failure for it)."""
        out = []
        for unit in units:
            want = self.requested(unit)
            unit_opts = {**self.unit_options(unit, target), **dict(options or {})}
            rec, warns = recipes.resolve(unit, target, want, backends=backends,
                                         options=unit_opts if want != FALLBACK else dict(options or {}))
            warnings = list(warns)
            if unit in self.notes:
                warnings.append(f"policy {self.name}: {self.notes[unit]}")
            if not rec.supported and want != FALLBACK:
                warnings.append(f"{unit}: {want} is not supported for {rec.target} ({rec.reason}); exported "
                                f"{FALLBACK} instead")
                rec, warns = recipes.resolve(unit, target, FALLBACK, backends=backends, options=dict(options or {}))
                warnings += warns
            out.append(PlannedUnit(unit=unit, requested=want, recipe=rec, warnings=tuple(warnings)))
        return out


def load_policy(precision: str | None = None, policy: str | Path | None = None) -> Policy:
    """The CLI's choice: ``--precision X`` (uniform) or ``--policy NAME|FILE`` (not both); default uniform fp32."""
    if precision and policy:
        raise ValueError("give either --precision or --policy, not both")
    if policy:
        return Policy.load(policy)
    return Policy.uniform(precision or "fp32")
