"""Export units: one fixed-shape ``nn.Module`` per row of the table in ``docs/EXPORT_DESIGN.md``.

A unit is a thin wrapper around a registry stage built in its export-friendly mode (LTM ``slicing="mobile"``,
chroma ``lookup="mobile"``, gamma ``pow_mode="exp_log"``, 3-D LUT ``mode="tent"``, BGU fit / slice in the
``"mobile"`` formulation), with the input shapes fixed by a frame :class:`~isp.geometry.FrameGeometry` (the table itself
is :mod:`isp.units`):

======================  ==============================================================  =========  ==============
unit                    inputs (shapes for a W x H frame, tile T = (th, tw))           tiling     network part
======================  ==============================================================  =========  ==============
``denoise``             raw (1,3,th,tw)                                                overlap    NAFNet body
``color``               denoised_raw (1,3,th,tw), illum (1,3), ccm (1,3,3)             tiles      (no weights)
``downsample``          lsrgb (1,3,H,W)                                                frame      (no weights)
``gain``                lsrgb_ds (1,3,H/4,W/4)                                         quarter    stage.net
``gtm``                 lsrgb_gain                                                     quarter    stage.net
``ltm``                 lsrgb_gain, lsrgb_gtm                                          quarter    guidance, grid
``lut3d``               lsrgb_ltm (``-lut`` styles only)                               quarter    (a table)
``chroma``              lsrgb_ltm, or lsrgb_lut for ``-lut`` styles                    quarter    stage.net
``gamma``               processed_lsrgb                                                quarter    stage.net
``upsample_fit``        lsrgb_ds, gamma_out                                            quarter    (no weights)
``upsample_slice``      lsrgb (1,3,th,tw), grid_window (1,12,16,R,C), interp_y (th,R),  tiles      (no weights)
                        interp_xt (C,tw)
``enhance``             srgb_upsampled (1,3,th,tw)                                     overlap    NAFNet body
======================  ==============================================================  =========  ==============

Outside the chain (:data:`isp.units.AUX_UNITS`, built from :mod:`convert.aux_units` as :class:`AuxExportUnit`):
``awb_c5``, ``awb_s24`` and ``raw_jpeg_decode``; ``--stages all`` leaves them out (``aux`` names them).

Every built unit (:class:`ExportUnit`) carries the wrapper ``module`` (float32, eval), fixed-shape example inputs,
input/output names and value ranges (from the stage's ``SPEC``), the tiling mode, the names of the submodules that
hold its network (what an int8 quantizer should be scoped to, see :mod:`convert.recipes`), a ``reference``
callable (the stage in its reference mode, for tests and drift) and :meth:`ExportUnit.calibration_inputs`, which
turns a calibration set (:mod:`calibration`) into the unit's input tuples.

Position-independent slicing (``upsample_slice``). The BGU grid is fitted once on the quarter frame
(``upsample_fit``); a full-resolution pixel reads the grid cells around ``((x + .5)(gw - 1) / W, ...)``, which
depends on its absolute position. The unit therefore takes, besides the tile, the grid *window* the tile touches and
the two interpolation matrices of the tile (rows ``interp_y`` (th, R), columns ``interp_xt`` (C, tw)); the host
builds them with :func:`slice_operands` (from :func:`isp.stages.upsample._slice_window`, the same construction
:func:`isp.stages.upsample.bgu_slice_mobile` uses) and zero-pads them to the fixed ``R x C``, the largest window any
tile position of the geometry reads (:func:`slice_window_size`). Zero interpolation weights make the padded cells
irrelevant, so one artifact serves every tile. ``tests/convert/test_units.py`` proves that slicing every tile of a
frame this way and stitching equals ``bgu_slice_mobile`` on the whole frame.

NAFNet body (``denoise``, ``enhance``). The network part of the two full-resolution networks is the U-Net body
(:data:`NAFNET_BODY`: encoders, downsamplers, middle blocks, upsamplers, decoders of
:class:`isp.stages.nafnet.NAFNet`); the 3-channel ``stem`` and ``head`` convolutions, the skip additions and pixel
shuffles between the stages and the global residual ``head(f) + x`` stay float. The unit's output is then the
float input plus a float head over int8 features, instead of one int8 activation of the whole image
(:data:`convert.recipes.SCOPED_INT8` has the measurements).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from convert import aux_units as aux
from isp.geometry import FrameGeometry, parse_size
from isp.registry import STAGE_ORDER, BuildConfig, get_stage
from isp.stages import upsample as up
from isp.units import ALL_UNITS, AUX_UNITS, GRID_COEFFS, NAFNET_BODY, STAGE_UNITS, UNIT_ORDER, UNITS, UnitSpec, unit_shapes, units_for

__all__ = ["UNIT_ORDER", "NAFNET_BODY", "UnitSpec", "UNITS", "STAGE_UNITS", "Geometry", "parse_size", "ExportUnit",
           "build_unit", "units_for", "expand_stages", "slice_window_size", "slice_operands", "SliceUnit",
           "slice_tiles", "synthetic_image"]

#: the frame geometry (:class:`isp.geometry.FrameGeometry`; the unit table itself is :mod:`isp.units`)
Geometry = FrameGeometry


def expand_stages(text: str | Sequence[str], lut: bool) -> list[str]:
    """``"all"`` or a comma list of stage ids and/or unit ids -> unit ids in pipeline order.

    ``upsample`` expands to ``downsample, upsample_fit, upsample_slice``. ``all`` is the raw-to-sRGB chain; the
    auxiliary units (:data:`isp.units.AUX_UNITS`) are named (``awb_c5``, ``awb_s24``, ``raw_jpeg_decode``; ``awb``
    = both AWB units) or all three as ``aux``. ``lut3d`` for a style without a 3-D LUT is
    a ``ValueError`` (the unit does not exist there); ``all`` simply leaves it out.
    """
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    if not items:
        raise ValueError("--stages: expected 'all' or a comma list of stages/units, got nothing")
    wanted: set[str] = set()
    for item in items:
        if item == "all":
            wanted.update(units_for(lut))
        elif item == "aux":
            wanted.update(AUX_UNITS)
        elif item == "awb":
            wanted.update(u for u in AUX_UNITS if UNITS[u].stage == "awb")
        elif item in STAGE_UNITS:
            wanted.update(STAGE_UNITS[item])
        elif item in UNITS:
            wanted.add(item)
        else:
            raise ValueError(f"--stages: unknown stage or unit {item!r}; stages are {', '.join(STAGE_ORDER)}, "
                             f"units {', '.join(ALL_UNITS)}, 'all' (the chain) or 'aux' ({', '.join(AUX_UNITS)})")
    if "lut3d" in wanted and not lut:
        raise ValueError("--stages: lut3d exists only for the -lut picture styles (1-5); style 0 has no 3-D LUT")
    return [u for u in ALL_UNITS if u in wanted]


# ------------------------------------------------------------------------------------------------ slice helpers

def _np_dt(dtype: torch.dtype):
    return np.float64 if dtype == torch.float64 else np.float32


def slice_window_size(geometry: Geometry) -> tuple[int, int]:
    """``(R, C)``: the largest BGU grid window (rows, columns) a full-resolution tile of ``geometry`` reads, over
    *every* tile position (not only the windows of one tile plan), so any tiling of the frame fits.

    A run of pixels ``s … s + t - 1`` reads the cells from the lower node of its first pixel to the upper node of
    its last (:func:`isp.stages.upsample._slice_window`); the nodes come from the same position and tent helpers.
    """
    th, tw = geometry.tile_shape
    _gd, gh, gw = geometry.grid

    def widest(n_full: int, n_tile: int, n_cells: int) -> int:
        lo, hi, _wlo, _whi = up._tent(up._slice_positions(0, n_full, n_full, n_cells, np.float32), n_cells)
        first, last = lo.argmax(0), hi.argmax(0)                 # (n_full,) lower / upper node of every pixel
        return int((last[n_tile - 1:] - first[:n_full - n_tile + 1]).max()) + 1

    return widest(geometry.height, th, gh), widest(geometry.width, tw, gw)


def slice_operands(grid: torch.Tensor, tile_origin: tuple[int, int], tile_shape: tuple[int, int],
                   frame_shape: tuple[int, int], R: int, C: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What :class:`SliceUnit` needs for one tile, besides the tile itself.

    ``grid (1, 12, 16, gh, gw)`` from ``upsample_fit``; ``tile_origin (y0, x0)`` and ``tile_shape (th, tw)`` in the
    ``frame_shape (H, W)`` frame. Returns ``grid_window (1, 12, 16, R, C)`` (the cells the tile reads, zero-padded),
    ``interp_y (th, R)`` and ``interp_xt (C, tw)`` (the tent interpolation matrices of
    :func:`isp.stages.upsample._slice_window`, zero-padded). ``ValueError`` if the window exceeds ``R x C``.
    """
    (y0, x0), (th, tw), (full_h, full_w) = tile_origin, tile_shape, frame_shape
    gh, gw = grid.shape[-2:]
    dt = _np_dt(grid.dtype)
    r0, r1, ry = up._slice_window(int(y0), int(th), int(full_h), int(gh), dt)       # (th, rows)
    c0, c1, rx = up._slice_window(int(x0), int(tw), int(full_w), int(gw), dt)       # (tw, cols)
    rows, cols = r1 - r0, c1 - c0
    if rows > R or cols > C:
        raise ValueError(f"tile at {tile_origin} reads a {rows}x{cols} grid window, more than the unit's fixed "
                         f"{R}x{C}; build the unit for this geometry (slice_window_size)")
    window = F.pad(grid[:, :, :, r0:r1, c0:c1], (0, C - cols, 0, R - rows))         # (1, 12, 16, R, C)
    interp_y = torch.zeros(th, R, dtype=grid.dtype)
    interp_y[:, :rows] = torch.from_numpy(np.ascontiguousarray(ry))
    interp_xt = torch.zeros(C, tw, dtype=grid.dtype)
    interp_xt[:cols] = torch.from_numpy(np.ascontiguousarray(rx.T))
    return window.contiguous(), interp_y, interp_xt


class SliceUnit(nn.Module):
    """Position-independent BGU slice of one tile (the body of :func:`isp.stages.upsample.bgu_slice_mobile`, with
    the grid window and interpolation matrices as inputs instead of shape-derived constants).

    ``forward(lsrgb (1,3,th,tw), grid_window (1,12,gd,R,C), interp_y (th,R), interp_xt (C,tw))`` ->
    ``srgb_upsampled (1,3,th,tw)`` in [0, 1]. Per depth bin: bilinear interpolation of the coefficients
    ``interp_y @ G_k @ interp_xt`` (the smaller grid axis is contracted first), affine transform, tent weight
    ``relu(1 - |luma * (gd - 1) - k|)``; bins summed, clipped.
    """

    def __init__(self, window: tuple[int, int], depth: int = up.GRID_DEPTH) -> None:
        super().__init__()
        self.rows, self.cols = window
        self.depth = int(depth)
        self.y_first = self.cols <= self.rows

    def forward(self, lsrgb: torch.Tensor, grid_window: torch.Tensor, interp_y: torch.Tensor,
                interp_xt: torch.Tensor) -> torch.Tensor:
        b, _, th, tw = lsrgb.shape
        iz = up.luma(lsrgb) * float(self.depth - 1)                              # (B, 1, th, tw)
        out = None
        for k in range(self.depth):
            g = grid_window[:, :, k]                                              # (B, 12, R, C)
            coef = (interp_y @ g) @ interp_xt if self.y_first else interp_y @ (g @ interp_xt)
            coef = coef.reshape(b, 3, 4, th, tw)                                  # (B, 3, 4, th, tw)
            val = (coef[:, :, :3] * lsrgb.unsqueeze(1)).sum(2) + coef[:, :, 3]    # (B, 3, th, tw)
            term = torch.relu(1.0 - torch.abs(iz - float(k))) * val
            out = term if out is None else out + term
        return out.clamp(0.0, 1.0)


def slice_tiles(unit: nn.Module, grid: torch.Tensor, lsrgb: torch.Tensor, geometry: Geometry,
                window: tuple[int, int], run: Callable[..., torch.Tensor] | None = None) -> torch.Tensor:
    """Slice a whole ``lsrgb (1, 3, H, W)`` frame tile by tile with ``unit`` (or ``run(*operands)``, e.g. an
    artifact) and stitch (tiles are written in plan order; overlaps get the same values from either tile)."""
    h, w = lsrgb.shape[-2:]
    th, tw = geometry.tile_shape
    out = torch.zeros(1, 3, h, w, dtype=lsrgb.dtype)
    call = run or unit
    for y0, x0 in geometry.tiles:
        tile = lsrgb[..., y0:y0 + th, x0:x0 + tw]
        ops = slice_operands(grid, (y0, x0), (th, tw), (h, w), *window)
        out[..., y0:y0 + th, x0:x0 + tw] = call(tile, *ops)
    return out


# -------------------------------------------------------------------------------------------- wrapper modules

class StageUnit(nn.Module):
    """A registry stage behind a tuple-returning ``forward`` (the stage sits at ``self.stage``)."""

    def __init__(self, stage: nn.Module) -> None:
        super().__init__()
        self.stage = stage

    def forward(self, *inputs: torch.Tensor):
        return self.stage(*inputs)


class DownsampleUnit(nn.Module):
    """:func:`isp.stages.upsample.downsample` of the whole frame: ``(1,3,H,W) -> (1,3,H/4,W/4)``."""

    def forward(self, lsrgb: torch.Tensor) -> torch.Tensor:
        return up.downsample(lsrgb)


class FitUnit(nn.Module):
    """:func:`isp.stages.upsample.bgu_fit_mobile`: ``lsrgb_ds, gamma_out (1,3,h,w) -> bgu_grid (1,12,16,gh,gw)``."""

    def __init__(self, reg_lambda: float = up.REG_LAMBDA) -> None:
        super().__init__()
        self.reg_lambda = float(reg_lambda)

    def forward(self, lsrgb_ds: torch.Tensor, gamma_out: torch.Tensor) -> torch.Tensor:
        return up.bgu_fit_mobile(lsrgb_ds, gamma_out, self.reg_lambda)


# ------------------------------------------------------------------------------------------------ synthetic data

def synthetic_image(shape: Sequence[int], seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    """A smooth random image in [0, scale] (coarse noise upsampled + fine noise): plausible input for shape checks
    and example inputs when no calibration data is at hand."""
    g = torch.Generator().manual_seed(seed)
    b, c, h, w = shape
    coarse = torch.rand(b, c, max(2, h // 16), max(2, w // 16), generator=g)
    img = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    img = (0.9 * img + 0.1 * torch.rand(b, c, h, w, generator=g)).clamp(0.0, 1.0)
    return img * scale


_SYNTH_ILLUM = torch.tensor([[0.50, 0.80, 0.33]])
_SYNTH_CCM = torch.tensor([[[1.70, -0.55, -0.15], [-0.20, 1.45, -0.25], [0.05, -0.45, 1.40]]])


def _synthetic_grid(grid_hw: tuple[int, int], seed: int) -> torch.Tensor:
    """A plausible BGU grid: per cell ~[diag(g) | 0] with small random cross terms. ``(1, 12, 16, gh, gw)``."""
    g = torch.Generator().manual_seed(seed)
    gh, gw = grid_hw
    eye = torch.cat([torch.eye(3), torch.zeros(3, 1)], 1).reshape(GRID_COEFFS, 1, 1, 1)
    noise = 0.05 * torch.randn(1, GRID_COEFFS, up.GRID_DEPTH, gh, gw, generator=g)
    return (1.2 * eye + noise).float()


# ------------------------------------------------------------------------------------------------ built unit

def _tensor_spec(stage: str, name: str) -> Any:
    spec = get_stage(stage)
    for t in spec.inputs + spec.outputs:
        if t.name == name:
            return t
    return None


#: ranges of tensors that are not named in a stage SPEC
_EXTRA_RANGES: dict[str, tuple[float, float] | None] = {
    "bgu_grid": None, "grid_window": None, "interp_y": (0.0, 1.0), "interp_xt": (0.0, 1.0), "lsrgb_lut": None,
}


@dataclass
class ExportUnit:
    """A built unit: the module to export and everything the exporter, the manifest and the tests need."""
    spec: UnitSpec
    module: nn.Module
    geometry: Geometry
    cfg: BuildConfig
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    input_shapes: tuple[tuple[int, ...], ...]
    output_shapes: tuple[tuple[int, ...], ...]
    reference_factory: Callable[[], Callable[..., tuple[torch.Tensor, ...]]]
    window: tuple[int, int] | None = None         # (R, C) of upsample_slice

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def stage(self) -> str:
        return self.spec.stage

    @functools.cached_property
    def reference(self) -> Callable[..., tuple[torch.Tensor, ...]]:
        """The stage in its reference mode, returning a tuple in the unit's output order.

        Same inputs as the unit, except ``upsample_slice``: ``reference(lsrgb_frame (1,3,H,W), grid)`` slices the
        whole frame (``bgu_slice_reference``, 5-D grid_sample) — crop it to compare with a tile.
        """
        return self.reference_factory()

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            out = self.module(*inputs)
        return (out,) if isinstance(out, torch.Tensor) else tuple(out)

    # -------------------------------------------------------------------------------------------- I/O
    def range_of(self, name: str) -> tuple[float, float] | None:
        if name in _EXTRA_RANGES:
            return _EXTRA_RANGES[name]
        ts = _tensor_spec(self.stage, name)
        if ts is None and name == "lsrgb_ds":
            ts = _tensor_spec("gain", name)
        return None if ts is None or ts.range is None else tuple(float(v) for v in ts.range)

    @staticmethod
    def _layout(shape: Sequence[int]) -> str | None:
        return {4: "NCHW", 5: "NCDHW"}.get(len(shape))

    def io(self, dtype: str = "float32") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Manifest ``inputs`` / ``outputs`` entries: name, shape, dtype, range, layout."""
        def entries(names, shapes):
            return [{"name": n, "shape": list(s), "dtype": dtype,
                     "range": list(r) if (r := self.range_of(n)) is not None else None, "layout": self._layout(s)}
                    for n, s in zip(names, shapes)]
        return entries(self.input_names, self.input_shapes), entries(self.output_names, self.output_shapes)

    def tiling(self) -> dict[str, Any]:
        """Manifest ``tiling`` entry."""
        mode = self.spec.tiling
        if mode in ("overlap", "tiles"):
            return {"mode": mode, "tile": list(self.geometry.tile_shape),
                    "overlap": self.geometry.overlap if mode == "overlap" else 0}
        return {"mode": mode}

    # -------------------------------------------------------------------------------------------- data
    def example_inputs(self, seed: int = 0) -> tuple[torch.Tensor, ...]:
        """Synthetic float32 inputs of the fixed shapes, in the stages' value ranges."""
        out = []
        for i, (name, shape) in enumerate(zip(self.input_names, self.input_shapes)):
            s = seed * 97 + i
            if name == "illum":
                t = _SYNTH_ILLUM / _SYNTH_ILLUM.norm()
            elif name == "ccm":
                t = _SYNTH_CCM.clone()
            elif name == "lsrgb_gain":
                t = synthetic_image(shape, s, scale=1.4)
            elif name in self.spec.windowed:
                continue
            else:
                t = synthetic_image(shape, s)
            out.append(t.float())
        if self.spec.windowed:
            out += list(self._slice_example(seed))
        return tuple(out)

    def _slice_example(self, seed: int) -> tuple[torch.Tensor, ...]:
        _gd, gh, gw = self.geometry.grid
        grid = _synthetic_grid((gh, gw), seed)
        y0, x0 = self.geometry.tiles[-1]
        return slice_operands(grid, (y0, x0), self.geometry.tile_shape,
                              (self.geometry.height, self.geometry.width), *self.window)

    def calibration_inputs(self, cs: Any, limit: int | None = None) -> list[tuple[torch.Tensor, ...]]:
        """Input tuples of this unit from a calibration set (:func:`calibration.load_set`), at most ``limit``.

        Stage units read ``cs.stage_inputs(stage)``; ``upsample_fit`` takes ``(lsrgb_ds, gamma_out)`` once per
        frame from the ``upsample`` rows; ``upsample_slice`` fits the grid of each frame (``bgu_fit_mobile``) and
        builds the operands of each stored tile. ``downsample`` needs whole full-resolution frames, which sets do
        not store: ``ValueError``.
        """
        same_frame = (cs.geometry.width, cs.geometry.height) == (self.geometry.width, self.geometry.height)
        if cs.geometry.tile_shape != self.geometry.tile_shape or not (same_frame or tile_local(self.id)):
            raise ValueError(f"calibration set {cs.root} was built for {cs.geometry}, the unit for "
                             f"{self.geometry}; build a set at this geometry (python -m calibration build --size "
                             f"{self.geometry.width}x{self.geometry.height} --tile {self.geometry.tile})")
        uid = self.id
        if uid == "downsample":
            raise ValueError("downsample: calibration sets store no whole full-resolution lsrgb frames")
        if uid in ("upsample_fit", "upsample_slice"):
            rows = cs.stage_inputs("upsample")
            frames = [int(f) for f, _y, _x in cs.tile_origins("upsample")]
            if uid == "upsample_fit":
                seen, out = set(), []
                for f, row in zip(frames, rows):
                    if f not in seen:
                        seen.add(f)
                        out.append((row[1], row[2]))
                return out[:limit]
            origins = cs.tile_origins("upsample")
            grids: dict[int, torch.Tensor] = {}
            out = []
            for (f, y0, x0), row in zip(origins, rows):
                if f not in grids:
                    with torch.no_grad():
                        grids[f] = up.bgu_fit_mobile(row[1], row[2])
                ops = slice_operands(grids[f], (y0, x0), self.geometry.tile_shape,
                                     (self.geometry.height, self.geometry.width), *self.window)
                out.append((row[0], *ops))
                if limit is not None and len(out) >= limit:
                    break
            return out
        rows = cs.stage_inputs(self.stage)
        return [tuple(t.float() for t in r) for r in rows[:limit]]


class AuxExportUnit(ExportUnit):
    """An auxiliary unit (:mod:`convert.aux_units`): its data come from the reference on the golden_ext inputs,
    not from a calibration set's tiles (which hold no AWB or JPEG inputs; ``cs`` is not read)."""

    def example_inputs(self, seed: int = 0) -> tuple[torch.Tensor, ...]:
        return aux.example_inputs(self.id, self.input_shapes, self.cfg.weights,
                                  synthetic_image(self.input_shapes[0], seed))

    def calibration_inputs(self, cs: Any = None, limit: int | None = None) -> list[tuple[torch.Tensor, ...]]:
        return aux.golden_unit_inputs(self.id, self.cfg.weights, self.geometry.size, limit)


def tile_local(unit: str) -> bool:
    """A tiled unit whose inputs are all tile-sized (denoise, color, enhance; not the slice, fed the quarter-frame
    grid): what it receives on a tile does not depend on the frame size, so a calibration set captured at another
    frame size with the same tiles serves it (``convert.export.capture_geometry``)."""
    spec = UNITS.get(unit)
    return spec is not None and spec.tiled and all(isinstance(d, int) or d in ("th", "tw")
                              for shape in spec.shapes[:len(spec.inputs)] for d in shape)


# ---------------------------------------------------------------------------------------------------- builders

def _stage_build(stage: str, cfg: BuildConfig, **mode: str) -> nn.Module:
    return get_stage(stage).build(cfg, **mode).eval()


def _as_tuple(fn: Callable[..., Any]) -> Callable[..., tuple[torch.Tensor, ...]]:
    @torch.no_grad()
    def call(*xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = fn(*xs)
        return (out,) if isinstance(out, torch.Tensor) else tuple(out)
    return call


def build_unit(unit_id: str, cfg: BuildConfig, geometry: Geometry) -> ExportUnit:
    """Build ``unit_id`` for the weights/style/denoiser of ``cfg`` and the frame ``geometry`` (module in eval mode,
    float32, weights loaded strictly). ``ValueError`` for an unknown unit or ``lut3d`` on a style without a LUT."""
    if unit_id not in UNITS:
        raise ValueError(f"unknown unit {unit_id!r}; units are {', '.join(ALL_UNITS)}")
    spec = UNITS[unit_id]
    if unit_id in AUX_UNITS:
        module, aux_ref = aux.build_aux_module(unit_id, cfg)
        shapes_in, shapes_out = unit_shapes(unit_id, geometry)
        return AuxExportUnit(spec=spec, module=module, geometry=geometry, cfg=cfg, input_names=spec.inputs,
                             output_names=spec.outputs, input_shapes=tuple(tuple(s) for s in shapes_in),
                             output_shapes=tuple(tuple(s) for s in shapes_out), reference_factory=lambda: aux_ref)
    if spec.lut_only and not cfg.lut:
        raise ValueError(f"unit {unit_id} exists only for the -lut styles; style {cfg.style} has no 3-D LUT")
    input_names, output_names = spec.inputs, spec.outputs
    window = slice_window_size(geometry) if spec.windowed else None
    if unit_id == "chroma" and cfg.lut:
        input_names = spec.alt_inputs["lsrgb_ltm"]
    shapes_in, shapes_out = unit_shapes(unit_id, geometry, window)

    if unit_id in ("denoise", "enhance"):
        module = StageUnit(_stage_build(spec.stage, cfg))
        ref = lambda: _as_tuple(module.stage)                                        # noqa: E731
    elif unit_id == "downsample":
        module = DownsampleUnit()
        ref = lambda: _as_tuple(up.downsample)                                       # noqa: E731
    elif unit_id == "upsample_fit":
        module = FitUnit()
        ref = lambda: _as_tuple(_stage_build("upsample", cfg).fit)                   # noqa: E731
    elif unit_id == "upsample_slice":
        module = SliceUnit(window, geometry.grid[0])
        ref = lambda: _as_tuple(lambda lsrgb, grid: up.bgu_slice_reference(grid, lsrgb))   # noqa: E731
    else:  # color and the quarter-frame stages: the stage in its export mode
        module = StageUnit(_stage_build(spec.stage, cfg, **spec.mode))
        stage = spec.stage
        ref = lambda: _as_tuple(_stage_build(stage, cfg))                            # noqa: E731
    return ExportUnit(spec=spec, module=module.eval(), geometry=geometry, cfg=cfg, input_names=tuple(input_names),
                      output_names=tuple(output_names), input_shapes=tuple(tuple(s) for s in shapes_in),
                      output_shapes=tuple(tuple(s) for s in shapes_out), reference_factory=ref, window=window)
