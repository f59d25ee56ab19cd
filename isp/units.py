"""The export-unit contract: one table that the exporter, the calibration sets, the runtimes, the benchmarks and the
harnesses all read. A new unit is one :class:`UnitSpec` entry here (plus its wrapper module in
:mod:`convert.units`).

Per unit: the registry stage it exports, its input and output tensor names (golden names, positional), how it
covers the frame (``overlap`` feathered tiles, ``tiles`` plain tiles, ``frame``, ``quarter``), the submodules that
hold its network (the int8 scope; the NAFNet body for the two full-resolution networks), the export-friendly stage
modes, and the fixed shapes for a :class:`~isp.geometry.FrameGeometry` (:func:`unit_shapes`).

The host feeds a unit frame-level tensors by name (:func:`frame_inputs`); two entries say where that differs from
the unit's own inputs: ``alt_inputs`` (chroma reads ``lsrgb_lut`` when a 3-D LUT ran, else ``lsrgb_ltm``) and
``feeds`` (``upsample_slice`` is fed the whole ``lsrgb`` frame and the ``bgu_grid``; the per-tile grid window and
interpolation matrices, its ``windowed`` inputs, are built per tile, :func:`convert.units.slice_operands`).

Also declared once here, for every layer above: targets and their aliases, precisions, Core ML compute units.
Standard library only (the device harnesses import it).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

__all__ = ["UNIT_ORDER", "NAFNET_BODY", "GRID_COEFFS", "GRID_DEPTH", "UnitSpec", "UNITS", "STAGE_UNITS",
           "TILED_UNITS", "QUARTER_UNITS", "units_for", "plan_for", "calls_per_frame", "unit_shapes", "window_of",
           "frame_inputs", "chain_tensors", "TARGETS", "TARGET_ALIASES", "TARGET_EXT", "PRECISIONS", "COMPUTE_UNITS",
           "normalize_target", "target_family", "normalize_precision"]

UNIT_ORDER = ("denoise", "color", "downsample", "gain", "gtm", "ltm", "lut3d", "chroma", "gamma", "upsample_fit",
              "upsample_slice", "enhance")
GRID_COEFFS = 12                     # 3x4 affine transform per BGU cell
GRID_DEPTH = 16                      # luma bins of the BGU grid (isp.stages.upsample.GRID_DEPTH)
#: the int8 part of a NAFNet unit (``isp.stages.nafnet.NAFNet`` held at ``stage.net``): everything between the
#: 3-channel stem and head convolutions, without the skip additions and the global residual (convert.units)
NAFNET_BODY = tuple(f"stage.net.{m}" for m in ("encoders", "downsamplers", "middle", "upsamplers", "decoders"))


@dataclass(frozen=True)
class UnitSpec:
    """One row of the export table (see the module docstring).

    ``shapes``: per input then per output, a shape made of ints and symbols resolved by :func:`unit_shapes`:
    ``th tw`` (tile), ``qh qw`` (quarter frame), ``H W`` (frame), ``gd gh gw`` (BGU grid), ``R C`` (slice window,
    not fixed by the geometry).
    """
    id: str
    stage: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    tiling: str                                   # "overlap" | "tiles" | "frame" | "quarter"
    shapes: tuple[tuple[Any, ...], ...]           # inputs then outputs
    network: tuple[str, ...] | None = None        # submodules holding the network; None = the whole unit
    mode: dict[str, str] = field(default_factory=dict)     # export-friendly constructor flags of the stage
    lut_only: bool = False
    feeds: tuple[str, ...] | None = None          # frame-level tensors the host passes (default: ``inputs``)
    alt_inputs: dict[str, tuple[str, ...]] = field(default_factory=dict)   # input -> names preferred over it
    windowed: tuple[str, ...] = ()                # inputs built per tile from the frame-level ``feeds``

    @property
    def tiled(self) -> bool:
        return self.tiling in ("overlap", "tiles")

    @property
    def host_feeds(self) -> tuple[str, ...]:
        return self.feeds if self.feeds is not None else self.inputs


_T3, _Q3 = (1, 3, "th", "tw"), (1, 3, "qh", "qw")
_GRID = (1, GRID_COEFFS, GRID_DEPTH, "gh", "gw")

UNITS: dict[str, UnitSpec] = {u.id: u for u in (
    UnitSpec("denoise", "denoise", ("raw",), ("denoised_raw",), "overlap", (_T3, _T3), network=NAFNET_BODY),
    UnitSpec("color", "color", ("denoised_raw", "illum", "ccm"), ("lsrgb",), "tiles",
             (_T3, (1, 3), (1, 3, 3), _T3), network=()),
    UnitSpec("downsample", "upsample", ("lsrgb",), ("lsrgb_ds",), "frame", ((1, 3, "H", "W"), _Q3), network=()),
    UnitSpec("gain", "gain", ("lsrgb_ds",), ("lsrgb_gain", "gain_param"), "quarter", (_Q3, _Q3, (1, 1, 1, 1)),
             network=("stage.net",)),
    UnitSpec("gtm", "gtm", ("lsrgb_gain",), ("lsrgb_gtm", "gtm_param"), "quarter", (_Q3, _Q3, (1, 3)),
             network=("stage.net",)),
    UnitSpec("ltm", "ltm", ("lsrgb_gain", "lsrgb_gtm"), ("lsrgb_ltm", "ltm_param"), "quarter",
             (_Q3, _Q3, _Q3, (1, 5, "qh", "qw")), network=("stage.guidance", "stage.grid"),
             mode={"slicing": "mobile"}),
    UnitSpec("lut3d", "lut3d", ("lsrgb_ltm",), ("lsrgb_lut",), "quarter", (_Q3, _Q3), network=(),
             mode={"mode": "tent"}, lut_only=True),
    UnitSpec("chroma", "chroma", ("lsrgb_ltm",), ("processed_lsrgb", "chroma_lut_param"), "quarter",
             (_Q3, _Q3, (1, 2, 24, 24)), network=("stage.net",), mode={"lookup": "mobile"},
             alt_inputs={"lsrgb_ltm": ("lsrgb_lut",)}),
    UnitSpec("gamma", "gamma", ("processed_lsrgb",), ("gamma_out", "gamma_param"), "quarter",
             (_Q3, _Q3, (1, 1, 1, 1)), network=("stage.net",), mode={"pow_mode": "exp_log"}),
    UnitSpec("upsample_fit", "upsample", ("lsrgb_ds", "gamma_out"), ("bgu_grid",), "quarter", (_Q3, _Q3, _GRID),
             network=(), mode={"mode": "mobile"}),
    UnitSpec("upsample_slice", "upsample", ("lsrgb", "grid_window", "interp_y", "interp_xt"), ("srgb_upsampled",),
             "tiles", (_T3, (1, GRID_COEFFS, GRID_DEPTH, "R", "C"), ("th", "R"), ("C", "tw"), _T3), network=(),
             mode={"mode": "mobile"}, feeds=("lsrgb", "bgu_grid"), windowed=("grid_window", "interp_y", "interp_xt")),
    UnitSpec("enhance", "enhance", ("srgb_upsampled",), ("srgb",), "overlap", (_T3, _T3), network=NAFNET_BODY),
)}
assert tuple(UNITS) == UNIT_ORDER and all(len(u.shapes) == len(u.inputs) + len(u.outputs) for u in UNITS.values())

TILED_UNITS = tuple(u for u in UNIT_ORDER if UNITS[u].tiled)
QUARTER_UNITS = tuple(u for u in UNIT_ORDER if UNITS[u].tiling == "quarter")


def _stage_units() -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for u in UNIT_ORDER:
        out.setdefault(UNITS[u].stage, []).append(u)
    return {s: tuple(us) for s, us in out.items()}


#: stage id -> the units that export it (``upsample`` is fit + slice, with the 1/4 downscale in front)
STAGE_UNITS: dict[str, tuple[str, ...]] = _stage_units()


def units_for(lut: bool) -> list[str]:
    """Unit ids of a pipeline in order (``lut3d`` only for ``-lut`` styles)."""
    return [u for u in UNIT_ORDER if lut or not UNITS[u].lut_only]


# ------------------------------------------------------------------------------------------------ tiling, shapes

def plan_for(geometry, unit: str):
    """The :class:`isp.tiling.TilePlan` a unit runs on: ``overlap`` units the geometry's feathered windows,
    ``tiles`` units plain windows; ``None`` for frame and quarter units (one call per frame)."""
    mode = UNITS[unit].tiling
    return geometry.plan() if mode == "overlap" else geometry.plan(overlap=0) if mode == "tiles" else None


def calls_per_frame(geometry, unit: str) -> int:
    """How many times a unit runs on one frame of ``geometry`` (its tiles, or 1)."""
    plan = plan_for(geometry, unit)
    return 1 if plan is None else len(plan)


def unit_shapes(unit: str, geometry, window: tuple[int, int] | None = None
                ) -> tuple[list[tuple], list[tuple]]:
    """Input and output shapes of ``unit`` for ``geometry`` (a :class:`~isp.geometry.FrameGeometry`); ``R``/``C``
    are ``window`` or ``None`` (dimensions the geometry does not fix)."""
    spec = UNITS[unit]
    (H, W), (th, tw), (qh, qw) = geometry.size, geometry.tile_shape, geometry.quarter
    gd, gh, gw = geometry.grid
    R, C = window if window is not None else (None, None)
    sym = {"H": H, "W": W, "th": th, "tw": tw, "qh": qh, "qw": qw, "gh": gh, "gw": gw, "gd": gd, "R": R, "C": C}
    shapes = [tuple(sym[d] if isinstance(d, str) else d for d in s) for s in spec.shapes]
    n = len(spec.inputs)
    return shapes[:n], shapes[n:]


def window_of(unit: str, input_shapes: Sequence[Sequence[int]]) -> tuple[int, int] | None:
    """The fixed slice window ``(R, C)`` of a windowed unit from its (artifact's) input shapes, else ``None``."""
    spec = UNITS[unit]
    if not spec.windowed:
        return None
    shape = input_shapes[spec.inputs.index(spec.windowed[0])]
    return int(shape[-2]), int(shape[-1])


# ------------------------------------------------------------------------------------------------ tensors by name

def frame_inputs(unit: str, tensors: Mapping[str, Any]) -> tuple:
    """A unit's frame-level inputs from the tensors of a render so far, by name (``tensors`` holds ``raw``,
    ``illum``, ``ccm`` and every earlier unit's outputs): the unit's ``feeds``, each replaced by its preferred
    alternative when present (chroma after a 3-D LUT)."""
    spec = UNITS[unit]
    out = []
    for name in spec.host_feeds:
        name = next((a for a in spec.alt_inputs.get(name, ()) if a in tensors), name)
        out.append(tensors[name])
    return tuple(out)


def chain_tensors(*, params: bool = False, grid: bool = False, lut: bool = True) -> tuple[str, ...]:
    """Names of the tensors a render produces, in execution order (outputs of :data:`UNIT_ORDER`): images always;
    the stages' ``*_param`` outputs with ``params``; ``bgu_grid`` with ``grid``; ``lsrgb_lut`` with ``lut``."""
    names = []
    for u in UNIT_ORDER:
        if UNITS[u].lut_only and not lut:
            continue
        for n in UNITS[u].outputs:
            if (n.endswith("_param") and not params) or (n == "bgu_grid" and not grid):
                continue
            names.append(n)
    return tuple(names)


# ------------------------------------------------------------------------------------------------ targets

#: the runtimes an artifact is exported for
TARGETS = ("executorch", "litert", "onnx", "coreml")
#: accepted spellings -> target
TARGET_ALIASES = {"executorch": "executorch", "et": "executorch", "pte": "executorch",
                  "litert": "litert", "tflite": "litert", "tfl": "litert",
                  "onnx": "onnx", "ort": "onnx", "onnxruntime": "onnx",
                  "coreml": "coreml", "mlpackage": "coreml", "mlmodel": "coreml"}
#: target -> artifact file extension
TARGET_EXT = {"executorch": "pte", "litert": "tflite", "onnx": "onnx", "coreml": "mlpackage"}
#: fp32; fp16 (weights and compute in half where the runtime has it); int8 (static W8A8, calibrated);
#: w8 (int8 weights only: dynamic-range / weight-only — each target documents which)
PRECISIONS = ("fp32", "fp16", "int8", "w8")
#: Core ML compute units: CLI name -> ``coremltools.ComputeUnit`` member
COMPUTE_UNITS = {"all": "ALL", "cpu_and_ne": "CPU_AND_NE", "cpu_and_gpu": "CPU_AND_GPU", "cpu_only": "CPU_ONLY"}


def normalize_target(name: str) -> str:
    """``tflite`` -> ``litert``, ``pte`` -> ``executorch``, ``ort`` -> ``onnx``, ...; ``ValueError`` if unknown.

    A secondary ExecuTorch backend keeps its suffix (``executorch-vulkan``, as the exporter names those entries).
    """
    key = str(name).strip().lower()
    family, dash, backend = key.partition("-")
    if family not in TARGET_ALIASES:
        raise ValueError(f"unknown target {name!r}; expected one of {', '.join(TARGETS)} "
                         f"(aliases: tflite, pte, ort, mlpackage)")
    return TARGET_ALIASES[family] + (f"-{backend}" if dash else "")


def target_family(target: str) -> str:
    """``executorch-vulkan`` -> ``executorch``: the runtime that loads the artifact."""
    return target.partition("-")[0]


def normalize_precision(name: str) -> str:
    key = str(name).strip().lower()
    if key not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; expected one of {', '.join(PRECISIONS)}")
    return key
