"""An exported artifact set on this host: open its manifest, pick one artifact per unit, load the runners lazily.

A set is a folder written by ``convert/export.py`` (``docs/EXPORT_DESIGN.md``): ``manifest.json`` plus one file per
``(unit, target, precision)``. A set may hold several targets and precisions of the same unit; a *selection* picks
one artifact per unit, so a pipeline may mix them (ExecuTorch int8 denoiser, ONNX fp32 photofinishing, ...)::

    aset = ArtifactSet.open("artifacts/")                      # reads and checks the manifest
    sel = aset.select(prefer=["executorch", "onnx"], precision_prefer=["int8", "fp32"],
                      explicit={"upsample_fit": ("onnx", "fp32")})
    sel["denoise"].path, sel.runner("denoise").run([tile])     # runners are loaded on first use

Selection, per unit: an ``explicit`` ``{unit: (target, precision)}`` entry wins; otherwise the candidates are the
unit's artifacts whose target is in ``prefer`` (default ExecuTorch, LiteRT, ONNX Runtime) and whose precision is in
``precision_prefer``, ranked by target first, then precision. Without ``precision_prefer`` the order is the
precision the manifest's policy gives the unit (the policy of the latest export run into the folder), then fp32,
fp16, w8, int8. Artifacts that cannot run here (a
Vulkan ``.pte``) are passed over; a Core ML artifact that wins (or is named) is an error: Core ML models are not run
on this OS (:mod:`runtime_py.runtimes` gives their structural check only).

ONNX int8 on this host: onnxruntime's x86 integer kernels saturate on full-range int8 weights when the CPU has no
VNNI (the exporter records ``details.host_int8_caveat``). Such artifacts run as float Q/DQ emulation by default
(``ort_int8="emulate"``, the quantized model's own numerics, what an ARM/NNAPI phone computes up to rounding);
``ort_int8="host"`` runs the optimized kernels as they are.

Checks, each a clear error naming the file or unit and the fix: missing manifest (``FileNotFoundError``), a manifest
of another format or with a bad geometry (``ValueError``), a missing artifact file (``FileNotFoundError``), a sha256
that differs from the manifest (:class:`ArtifactIntegrityError`), a unit with no suitable artifact
(:class:`UnitMissingError`), declared shapes that do not fit the geometry or a loaded runner whose shapes differ
from the manifest (``ValueError``), Core ML chosen (:class:`NotRunnableError`).

The manifest is read with ``convert.manifest.read_manifest`` (the exporter's reader) and validated here against the
schema of ``docs/EXPORT_DESIGN.md`` (geometry, entries, shapes per unit).
"""
from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from isp.geometry import FrameGeometry
from isp.hashing import sha256_path as file_sha256  # the digest the manifests record (re-exported)
from isp.units import ALL_UNITS, PRECISIONS, QUARTER_UNITS, TARGETS, TILED_UNITS, UNIT_ORDER
from isp.units import UNITS as UNIT_SPECS
from isp.units import normalize_precision as _normalize_precision
from isp.units import normalize_target, target_family, unit_shapes, units_for, window_of

__all__ = ["FORMAT", "UNITS", "TILED_UNITS", "QUARTER_UNITS", "UNIT_IO", "TARGETS", "RUNNABLE_TARGETS",
           "PRECISIONS", "DEFAULT_PREFER", "ORT_INT8_MODES", "FrameGeometry", "Artifact", "ArtifactSet", "Selection",
           "ArtifactIntegrityError", "UnitMissingError", "NotRunnableError", "normalize_target", "target_family",
           "parse_selection", "add_ort_int8_arg",
           "file_sha256"]

FORMAT = "isp-artifacts/1"

# Views of the unit table (isp.units), kept under their old names for the runtime's readers.
#: execution order (docs/EXPORT_DESIGN.md); ``lut3d`` only for ``-lut`` styles
UNITS = UNIT_ORDER
#: unit -> how it covers the frame: ``overlap`` (feathered tiles), ``tiles`` (plain tiles), ``frame``, ``quarter``
TILING = {u: s.tiling for u, s in UNIT_SPECS.items()}
#: unit -> (input names, output names), positionally; chroma may also declare ``lsrgb_lut`` as its input
UNIT_IO: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {u: (s.inputs, s.outputs)
                                                                for u, s in UNIT_SPECS.items()}

#: targets this host runs (Core ML predicts only on macOS, and runtime_py has no predictor for it)
RUNNABLE_TARGETS = ("executorch", "litert", "onnx")
DEFAULT_PREFER = ("executorch", "litert", "onnx")
#: precision order when neither the caller nor the manifest's policy says otherwise (first = preferred)
FALLBACK_PRECISIONS = ("fp32", "fp16", "w8", "int8")
#: how ONNX int8 artifacts flagged by the exporter run here (see :meth:`Artifact.load_options`)
ORT_INT8_MODES = ("emulate", "host")
ORT_INT8_DEFAULT = "emulate"
_EXECUTORCH_HOST_BACKENDS = ("xnnpack", "portable", None, "")


class ArtifactIntegrityError(ValueError):
    """An artifact file differs from what the manifest recorded (sha256)."""


class UnitMissingError(ValueError):
    """No artifact of the set fits a unit under the requested selection."""


class NotRunnableError(RuntimeError):
    """The chosen artifact cannot run on this host (Core ML on Linux, a Vulkan ExecuTorch program)."""


def parse_selection(text: str) -> dict[str, tuple[str, str]]:
    """``"denoise=onnx:int8,enhance=tflite:fp16"`` -> ``{"denoise": ("onnx", "int8"), ...}`` (the CLIs' --select)."""
    out: dict[str, tuple[str, str]] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        unit, sep, rest = item.partition("=")
        target, sep2, precision = rest.partition(":")
        if not sep or not sep2:
            raise ValueError(f"--select items look like UNIT=TARGET:PRECISION (e.g. denoise=onnx:int8), got {item!r}")
        unit = unit.strip()
        if unit not in ALL_UNITS:
            raise ValueError(f"--select: unknown unit {unit!r}; units are {', '.join(ALL_UNITS)}")
        out[unit] = (normalize_target(target), _normalize_precision(precision))
    return out


def add_ort_int8_arg(p) -> None:
    """The CLIs' ``--ort-int8`` option (an ``argparse`` parser; the value goes to :meth:`Artifact.load_options`)."""
    p.add_argument("--ort-int8", choices=ORT_INT8_MODES, default=ORT_INT8_DEFAULT,
                   help="ONNX int8 artifacts flagged by the exporter (x86 without VNNI): float Q/DQ emulation "
                        "(default) or this CPU's saturating integer kernels")


def _shape_ok(got: Sequence[int], want: tuple | None) -> bool:
    if want is None:
        return True
    return len(got) == len(want) and all(w is None or int(g) == w for g, w in zip(got, want))


def _fmt_shape(s: Sequence | None) -> str:
    return "(" + ", ".join("?" if v is None else str(v) for v in s) + ")" if s is not None else "?"


# ----------------------------------------------------------------------------------------------------- artifacts

@dataclass(frozen=True)
class Artifact:
    """One manifest entry (``unit, target, precision``) and where its file is."""

    root: Path
    unit: str
    target: str
    precision: str
    file: str
    sha256: str | None
    inputs: tuple[dict, ...]
    outputs: tuple[dict, ...]
    backend: str | None = None
    tiling: Mapping[str, Any] = field(default_factory=dict)
    runnable_flag: bool | None = None
    entry: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.unit, self.target, self.precision

    @property
    def family(self) -> str:
        return target_family(self.target)

    @property
    def label(self) -> str:
        return f"{self.unit} {self.target}/{self.precision}"

    @property
    def path(self) -> Path:
        return self.root / self.file

    @property
    def input_names(self) -> list[str]:
        return [t["name"] for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t["name"] for t in self.outputs]

    @property
    def input_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(int(v) for v in t["shape"]) for t in self.inputs]

    @property
    def output_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(int(v) for v in t["shape"]) for t in self.outputs]

    @property
    def not_runnable_reason(self) -> str | None:
        """Why this artifact cannot run on this host, or ``None`` if it can."""
        if self.family == "coreml" or self.path.suffix in (".mlpackage", ".mlmodel"):
            return (f"{self.file}: Core ML artifacts are not run on this OS ({platform.system()}): Core ML predicts "
                    "only on Apple devices; runtime_py gives its structural check (op types, precision, I/O); "
                    "run it with ios_harness")
        if self.family == "executorch" and (self.backend or "").lower() not in _EXECUTORCH_HOST_BACKENDS:
            return (f"{self.file}: ExecuTorch program delegated to {self.backend}; the pybindings here run only "
                    "XNNPACK / portable programs")
        if self.runnable_flag is False:
            why = self.entry.get("not_runnable_reason") or "the manifest marks it not runnable on this host"
            return f"{self.file}: {why}"
        return None

    @property
    def runnable_here(self) -> bool:
        return self.not_runnable_reason is None

    def check_file(self, verify: bool = True) -> None:
        """``FileNotFoundError`` if the file is missing; :class:`ArtifactIntegrityError` if its sha256 differs."""
        if not self.path.exists():
            raise FileNotFoundError(f"artifact file missing: {self.path} ({self.label}, listed in "
                                    f"{self.root / 'manifest.json'}); re-export it or remove it from the manifest")
        if verify and self.sha256:
            digest = file_sha256(self.path)
            if digest != self.sha256:
                raise ArtifactIntegrityError(
                    f"{self.path}: sha256 {digest[:16]}… differs from the manifest's {self.sha256[:16]}… "
                    f"({self.label}): the file changed after export; re-export it")

    def check_geometry(self, geometry: FrameGeometry) -> None:
        """``ValueError`` unless the declared I/O fits the unit's row of the export table for ``geometry``."""
        window = None
        if len(self.inputs) == len(UNIT_SPECS[self.unit].inputs):
            window = window_of(self.unit, self.input_shapes)    # the fixed slice window fixes R and C everywhere
        want_in, want_out = unit_shapes(self.unit, geometry, window)
        want_in_names, want_out_names = UNIT_IO[self.unit]
        problems = []
        if len(self.inputs) != len(want_in):
            problems.append(f"{len(self.inputs)} inputs {self.input_names}, expected {list(want_in_names)}")
        if len(self.outputs) != len(want_out):
            problems.append(f"{len(self.outputs)} outputs {self.output_names}, expected {list(want_out_names)}")
        if not problems:
            for kind, specs, wants, names in (("input", self.inputs, want_in, want_in_names),
                                              ("output", self.outputs, want_out, want_out_names)):
                for spec, want, name in zip(specs, wants, names):
                    allowed = (name, *UNIT_SPECS[self.unit].alt_inputs.get(name, ()))
                    if spec["name"] not in allowed:
                        problems.append(f"{kind} {spec['name']!r} where {name!r} was expected")
                    if not _shape_ok(spec["shape"], want):
                        problems.append(f"{kind} {spec['name']!r} has shape {_fmt_shape(spec['shape'])}, the "
                                        f"geometry {geometry.describe()} needs {_fmt_shape(want)}")
        if problems:
            raise ValueError(f"{self.path.name} ({self.label}) does not fit the set's geometry: "
                             + "; ".join(problems) + "; re-export the set")

    @property
    def host_int8_caveat(self) -> str | None:
        """The exporter's note that this host's integer kernels misrepresent the artifact (ONNX Runtime int8 on
        x86 without VNNI saturates), if recorded."""
        return (self.entry.get("details") or {}).get("host_int8_caveat")

    def load_options(self, ort_int8: str = ORT_INT8_DEFAULT) -> dict[str, Any]:
        """Runner options for this artifact. ``ort_int8="emulate"``: an ONNX int8/w8 artifact whose export recorded
        :attr:`host_int8_caveat` runs as float Q/DQ emulation (``optimization="disable"``), the numerics of the
        quantized model rather than of this CPU's saturating u8s8 kernels; ``"host"`` runs ORT's optimized kernels."""
        if ort_int8 not in ORT_INT8_MODES:
            raise ValueError(f"ort_int8 must be one of {', '.join(ORT_INT8_MODES)}, got {ort_int8!r}")
        if ort_int8 == "emulate" and self.family == "onnx" and self.precision in ("int8", "w8") and \
                self.host_int8_caveat:
            return {"optimization": "disable"}
        return {}

    def load(self, ort_int8: str = ORT_INT8_DEFAULT, **options: Any):
        """The :mod:`runtime_py.runtimes` runner (Core ML: its structural check), with the manifest's tensor names
        and :meth:`load_options` (``options`` override them); ``ValueError`` when the loaded model's shapes differ
        from the manifest."""
        from runtime_py.runtimes import load

        options = {**self.load_options(ort_int8), **options}
        runner = load(self.path, input_names=self.input_names, output_names=self.output_names, **options)
        for kind, got, want in (("input", runner.inputs, self.input_shapes),
                                ("output", runner.outputs, self.output_shapes)):
            # symbolic dimensions (a str in ONNX) are not compared
            bad = [(s.name, tuple(s.shape), w) for s, w in zip(got, want)
                   if all(isinstance(d, int) for d in s.shape) and tuple(s.shape) != w]
            if len(got) != len(want) or bad:
                raise ValueError(f"{self.path.name}: the model's {kind}s differ from the manifest ("
                                 + (", ".join(f"{n} {g} vs {w}" for n, g, w in bad) if bad else
                                    f"{len(got)} vs {len(want)} tensors")
                                 + "); the manifest does not describe this file, re-export")
        return runner

    def summary(self) -> dict[str, Any]:
        return {"unit": self.unit, "target": self.target, "precision": self.precision, "file": self.file,
                "backend": self.backend, "bytes": self.entry.get("bytes"), "runnable_here": self.runnable_here,
                "export_warnings": list(self.entry.get("warnings") or [])}


# ------------------------------------------------------------------------------------------------- the set

def _read_manifest(path: Path) -> dict[str, Any]:
    from convert.manifest import read_manifest  # the exporter's reader: format check, defaults

    return read_manifest(path)


class ArtifactSet:
    """An exported set: geometry, pipeline settings, every artifact of the manifest. See the module docstring."""

    def __init__(self, root: Path, manifest: Mapping[str, Any]) -> None:
        self.root = Path(root)
        self.manifest = dict(manifest)
        where = str(self.root / "manifest.json")
        if self.manifest.get("format") != FORMAT:
            raise ValueError(f"{where}: format {self.manifest.get('format')!r}, expected {FORMAT!r}")
        if "geometry" not in self.manifest:
            raise ValueError(f"{where}: no geometry; re-export the set")
        self.geometry = FrameGeometry.from_manifest(self.manifest["geometry"], where)
        self.artifacts: list[Artifact] = []
        seen = set()
        for i, e in enumerate(self.manifest.get("artifacts") or []):
            try:
                a = Artifact(root=self.root, unit=str(e["unit"]), target=normalize_target(e["target"]),
                             precision=str(e["precision"]), file=str(e["file"]), sha256=e.get("sha256"),
                             inputs=tuple(e["inputs"]), outputs=tuple(e["outputs"]), backend=e.get("backend"),
                             tiling=e.get("tiling") or {}, runnable_flag=e.get("runnable_here"), entry=e)
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{where}: artifact #{i} is malformed ({type(exc).__name__}: {exc}); "
                                 "re-export the set") from None
            if a.unit not in ALL_UNITS:
                raise ValueError(f"{where}: artifact {a.file} has unknown unit {a.unit!r}; units are "
                                 f"{', '.join(ALL_UNITS)}")
            if a.key in seen:
                raise ValueError(f"{where}: two artifacts for {a.label}")
            seen.add(a.key)
            self.artifacts.append(a)
        self.failures: list[dict] = list(self.manifest.get("failures") or [])

    @classmethod
    def open(cls, root: str | Path) -> "ArtifactSet":
        root = Path(root)
        if root.is_file() and root.name == "manifest.json":
            root = root.parent
        path = root / "manifest.json"
        if not root.is_dir():
            raise FileNotFoundError(f"artifact folder not found: {root}; export one with python convert/export.py "
                                    "--out DIR")
        if not path.is_file():
            raise FileNotFoundError(f"{root} holds no manifest.json: not an exported artifact set (export with "
                                    "python convert/export.py --out DIR)")
        return cls(root, _read_manifest(path))

    # ----------------------------------------------------------------------------------------------- metadata
    @property
    def lut(self) -> bool:
        return bool(self.manifest.get("lut", False))

    @property
    def style(self) -> int:
        return int(self.manifest.get("style", 0))

    @property
    def denoiser(self) -> str:
        return str(self.manifest.get("denoiser", "s24_lite"))

    @property
    def weights(self) -> str | None:
        return self.manifest.get("weights")

    @property
    def required_units(self) -> tuple[str, ...]:
        """The units a render runs, in order (``lut3d`` only for ``-lut`` styles)."""
        return tuple(units_for(self.lut))

    @property
    def targets(self) -> list[str]:
        """Targets present, in :data:`TARGETS` order (secondary ExecuTorch backends after their family)."""
        present = {a.target for a in self.artifacts}
        return sorted(present, key=lambda t: (TARGETS.index(target_family(t)), t))

    def find(self, unit: str, target: str, precision: str) -> Artifact | None:
        target = normalize_target(target)
        return next((a for a in self.artifacts if a.key == (unit, target, precision)), None)

    def of_unit(self, unit: str) -> list[Artifact]:
        return [a for a in self.artifacts if a.unit == unit]

    def policy_precision(self, unit: str) -> str | None:
        policy = self.manifest.get("policy") or {}
        p = (policy.get("units") or {}).get(unit, policy.get("default"))
        return p if p in PRECISIONS else None

    def _available(self, unit: str) -> str:
        have = [f"{a.target}/{a.precision}" for a in self.of_unit(unit)]
        failed = [f"{f.get('target')}/{f.get('precision')}: {str(f.get('error', ''))[:160]}"
                  for f in self.failures if f.get("unit") == unit]
        text = f"the set has {', '.join(have) if have else 'no artifact'} for {unit}"
        if failed:
            text += f" (export failures: {'; '.join(failed)})"
        return text

    # ---------------------------------------------------------------------------------------------- selection
    def select(self, prefer: Sequence[str] | None = None, precision_prefer: Sequence[str] | None = None,
               explicit: Mapping[str, tuple[str, str]] | None = None, *, verify: bool = True,
               units: Sequence[str] | None = None, ort_int8: str = ORT_INT8_DEFAULT) -> "Selection":
        """One artifact per unit of ``units`` (default :attr:`required_units`); see the module docstring.

        ``verify`` checks each chosen file's sha256 against the manifest; ``ort_int8`` is how flagged ONNX int8
        artifacts run (:meth:`Artifact.load_options`).
        """
        if ort_int8 not in ORT_INT8_MODES:
            raise ValueError(f"ort_int8 must be one of {', '.join(ORT_INT8_MODES)}, got {ort_int8!r}")
        targets = [normalize_target(t) for t in (prefer or DEFAULT_PREFER)]
        precisions = [_normalize_precision(p) for p in precision_prefer] if precision_prefer else None
        explicit = {u: (normalize_target(t), _normalize_precision(p)) for u, (t, p) in (explicit or {}).items()}
        for u in explicit:
            if u not in ALL_UNITS:
                raise ValueError(f"explicit selection names unknown unit {u!r}; units are {', '.join(ALL_UNITS)}")
        chosen: dict[str, Artifact] = {}
        for unit in (units or self.required_units):
            if unit in explicit:
                t, p = explicit[unit]
                a = self.find(unit, t, p)
                if a is None:
                    raise UnitMissingError(f"unit {unit}: no {t}/{p} artifact; {self._available(unit)}")
            else:
                order = precisions or _default_precision_order(self.policy_precision(unit))
                cands = [a for a in self.of_unit(unit) if a.target in targets and a.precision in order]
                cands.sort(key=lambda a: (targets.index(a.target), order.index(a.precision)))
                # Core ML is an error when it wins; other artifacts that cannot run here are passed over
                runnable = [a for a in cands if a.runnable_here or a.family == "coreml"]
                if cands and not runnable:
                    raise NotRunnableError(f"unit {unit}: {cands[0].not_runnable_reason}")
                cands = runnable
                if not cands:
                    raise UnitMissingError(
                        f"unit {unit}: no artifact among targets {', '.join(targets)} and precisions "
                        f"{', '.join(order)}; {self._available(unit)}")
                a = cands[0]
            if not a.runnable_here:
                raise NotRunnableError(f"unit {unit}: {a.not_runnable_reason}")
            a.check_file(verify)
            a.check_geometry(self.geometry)
            chosen[unit] = a
        return Selection(self, chosen, ort_int8=ort_int8)

    def __repr__(self) -> str:
        return (f"ArtifactSet({str(self.root)!r}, {self.geometry.describe()}, {len(self.artifacts)} artifacts, "
                f"targets {self.targets})")


def _default_precision_order(policy: str | None) -> list[str]:
    order = list(FALLBACK_PRECISIONS)
    if policy in order:
        order.remove(policy)
        order.insert(0, policy)
    return order


class Selection(Mapping[str, Artifact]):
    """``{unit: Artifact}`` chosen from a set, with lazily loaded, cached runners."""

    def __init__(self, aset: ArtifactSet, chosen: Mapping[str, Artifact], ort_int8: str = ORT_INT8_DEFAULT):
        self.set = aset
        self._chosen = dict(chosen)
        self._runners: dict[str, Any] = {}
        self.ort_int8 = ort_int8

    def __getitem__(self, unit: str) -> Artifact:
        return self._chosen[unit]

    def __iter__(self) -> Iterator[str]:
        return iter(self._chosen)

    def __len__(self) -> int:
        return len(self._chosen)

    @property
    def geometry(self) -> FrameGeometry:
        return self.set.geometry

    #: errors of :meth:`_load` that already say what is wrong with which file: raised as they are (others are
    #: wrapped in a ``RuntimeError`` naming the unit and file)
    _passthrough: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, NotRunnableError)

    def runner(self, unit: str):
        """The unit's runner, loaded on first use (by :meth:`_load`)."""
        if unit not in self._runners:
            a = self._chosen[unit]
            try:
                self._runners[unit] = self._load(unit, a)
            except self._passthrough:
                raise
            except Exception as exc:  # noqa: BLE001 — name the unit and file, keep the cause
                raise RuntimeError(f"unit {unit}: could not load {a.path.name} ({a.target}/{a.precision}"
                                   f"{self._load_label(unit, a)}): {type(exc).__name__}: {exc}") from exc
        return self._runners[unit]

    def _load(self, unit: str, artifact: Artifact) -> Any:
        """A runner for ``artifact`` (subclasses put some units on another runtime)."""
        return artifact.load(self.ort_int8)

    def _load_label(self, unit: str, artifact: Artifact) -> str:
        """What :meth:`_load` runs ``unit`` on, for the error message (``""``: the artifact's own runtime)."""
        return ""

    def release(self, *units: str) -> None:
        """Drop the cached runners of ``units`` (all when none are named): their memory (ONNX Runtime arenas, LiteRT
        and ExecuTorch plans) goes back; a later :meth:`runner` loads them again."""
        for unit in units or tuple(self._runners):
            self._runners.pop(unit, None)

    @property
    def precisions(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in self._chosen.values():
            out[a.precision] = out.get(a.precision, 0) + 1
        return out

    @property
    def precision_class(self) -> str:
        """The budget class of the whole chain: ``int8`` if any unit is int8 or w8, else ``fp16`` if any is fp16,
        else ``fp32``."""
        ps = set(self.precisions)
        return "int8" if ps & {"int8", "w8"} else "fp16" if "fp16" in ps else "fp32"

    @property
    def label(self) -> str:
        """``onnx fp32`` for a uniform selection, else e.g. ``executorch int8+fp32 (+onnx: upsample_fit)``."""
        by_target: dict[str, list[str]] = {}
        for u, a in self._chosen.items():
            by_target.setdefault(a.target, []).append(u)
        main = max(by_target, key=lambda t: len(by_target[t]))
        precs = "+".join(p for p in FALLBACK_PRECISIONS[::-1] if p in self.precisions)
        text = f"{main} {precs}"
        others = [f"{t}: {', '.join(us)}" for t, us in by_target.items() if t != main]
        return text + (f" (+{'; '.join(others)})" if others else "")

    def as_dict(self) -> dict[str, list[str]]:
        return {u: [a.target, a.precision] for u, a in self._chosen.items()}

    def __repr__(self) -> str:
        return f"Selection({self.label}: " + ", ".join(f"{u}={a.target}/{a.precision}"
                                                        for u, a in self._chosen.items()) + ")"
