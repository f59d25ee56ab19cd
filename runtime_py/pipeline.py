"""The ISP run from exported artifacts: the execution table of ``docs/EXPORT_DESIGN.md``, in order, on this host.

    sel = ArtifactSet.open("artifacts/").select(prefer=["onnx"])
    out = ArtifactPipeline(sel).run(raw, illum, ccm)           # (1, 3, H, W) at the export geometry
    out["srgb"], pipe.timings["denoise"]["seconds"]

=================  ===================================================================================  ============
unit               how it covers the frame                                                              output
=================  ===================================================================================  ============
denoise, enhance   tiles of the geometry with overlap, feathered stitch (:func:`isp.tiling.run_tiled`)  full frame
color              plain tiles (:class:`isp.tiling.TilePlan` with no overlap; pixel-wise)               full frame
upsample_slice     plain tiles; per tile the grid window and interpolation matrices of                  full frame
                   :func:`convert.units.slice_operands` (position independent)
downsample         the whole frame                                                                      quarter
gain … gamma,      the quarter frame ``(H/4, W/4)``                                                     quarter
upsample_fit
=================  ===================================================================================  ============

:meth:`ArtifactPipeline.run` returns every intermediate under its golden name (as :meth:`isp.pipeline.Pipeline.run`
does, plus ``bgu_grid``), torch float32 tensors. :meth:`ArtifactPipeline.run_unit` runs one unit over a whole frame
(the same tiling), which is what the drift tool feeds the reference's own inputs to. ``timings`` holds, per unit of
the last run, the wall seconds, the seconds inside the runtime and the number of calls (tiles); runners are loaded
on first use, and their load time is kept apart (``load_seconds``).

The frame must have the export geometry: :func:`read_frame` decodes a DNG and either insists on it (``fit="exact"``)
or centre-crops to it (``fit="crop"``; the crop is cut before demosaicing, like the calibration sets).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from isp.tiling import run_tiled
from isp.geometry import FrameGeometry
from isp.units import UNIT_ORDER, UNITS, calls_per_frame, frame_inputs, window_of
from runtime_py.artifacts import ArtifactSet, Selection

__all__ = ["ArtifactPipeline", "run_unit", "read_frame", "center_crop_box", "FITS"]

FITS = ("exact", "crop")


def center_crop_box(full: tuple[int, int], size: tuple[int, int]) -> list[int]:
    """``[y0, x0, h, w]`` of the centred ``size (h, w)`` window of a ``full (H, W)`` frame; ``ValueError`` if the
    frame is smaller."""
    (fh, fw), (h, w) = full, size
    if fh < h or fw < w:
        raise ValueError(f"the frame is {fw}x{fh}, smaller than the export geometry {w}x{h}: it cannot be cropped "
                         f"to it; re-export the artifacts with --size {fw - fw % 4}x{fh - fh % 4} or smaller")
    return [(fh - h) // 2, (fw - w) // 2, h, w]


def _refit_hint(h: int, w: int) -> str:
    """How to fix a frame/geometry mismatch: re-export for the frame's size, or centre-crop."""
    if h % 4 or w % 4:
        return (f"re-export with --size {w - w % 4}x{h - h % 4} (export sizes are multiples of 4) and render with "
                f"--fit crop, or centre-crop the frame to the export geometry with --fit crop")
    return (f"re-export with --size {w}x{h} (python convert/export.py ... --size {w}x{h}), or centre-crop the "
            f"frame to the export geometry with --fit crop")


def read_frame(path: str | Path, geometry: FrameGeometry, fit: str = "exact"):
    """Decode a DNG for an artifact set: ``(raw (1,3,H,W), illum (1,3), ccm (1,3,3), RawImage)``.

    ``fit="exact"``: the DNG must have the geometry's size (``ValueError`` naming both sizes and the two fixes);
    ``fit="crop"``: the centred window of that size, cut before demosaicing.
    """
    from isp.io.dng import read_dng

    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    want = geometry.size
    path = Path(path)
    if fit == "exact":
        img = read_dng(path)
        if tuple(img.shape) != want:
            raise ValueError(f"{path.name} is {img.shape[1]}x{img.shape[0]} but the artifacts were exported for "
                             f"{geometry.width}x{geometry.height} (fixed shapes): "
                             + _refit_hint(img.shape[0], img.shape[1]))
    else:
        full = read_dng(path, crop=[0, 0, 4, 4]).full_size          # size only: a 4x4 decode
        img = read_dng(path, crop=center_crop_box(full, want))
    raw = img.raw_tensor().float()
    illum = torch.as_tensor(np.asarray(img.illum), dtype=torch.float32)[None]
    ccm = torch.as_tensor(np.asarray(img.ccm), dtype=torch.float32)[None]
    return raw, illum, ccm, img


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).contiguous().numpy()


def run_unit(call: Callable[[list[torch.Tensor]], list[torch.Tensor]], unit: str, geometry: FrameGeometry,
             *inputs: torch.Tensor, window: tuple[int, int] | None = None, keep_tiles: bool = False,
             tile_progress: Callable[[int], None] | None = None) -> tuple[tuple[torch.Tensor, ...], dict]:
    """One unit over a whole frame, tiled as the execution table says: ``(outputs, info)``.

    ``call(list of input tensors) -> list of output tensors`` runs the artifact once (one tile, or the frame).
    ``inputs`` are frame-level tensors in the unit's order (:data:`isp.units.UNITS`), except
    ``upsample_slice``: ``(lsrgb (1,3,H,W), bgu_grid (1,12,16,gh,gw))``, whose per-tile operands are built here
    (:func:`convert.units.slice_operands`, zero-padded to ``window = (R, C)``). ``info``: ``seconds`` (wall) and,
    with ``keep_tiles``, ``tiles = [((y0, x0), outputs), ...]`` of the tiled units before stitching.
    """
    tiles: list[tuple[tuple[int, int], tuple[torch.Tensor, ...]]] = []
    th, tw = geometry.tile_shape
    H, W = geometry.size
    spec = UNITS[unit]
    mode = spec.tiling
    t0 = time.perf_counter()
    if mode == "overlap":
        windows = [(y0, x0) for _i, _j, y0, x0 in geometry.plan().windows()]
        count = [0]

        def fn(tile: torch.Tensor) -> torch.Tensor:
            out = call([tile])[0]
            if keep_tiles:
                tiles.append((windows[count[0]], (out,)))
            count[0] += 1
            return out
        outs: tuple[torch.Tensor, ...] = (run_tiled(fn, inputs[0], tile=(th, tw), overlap=geometry.overlap,
                                                    progress=tile_progress),)
    elif mode == "tiles":
        if spec.windowed:
            from convert.units import slice_operands
            if window is None:
                raise ValueError(f"{unit} needs the grid window (R, C) of its artifact")
        frame = inputs[0]
        out = torch.zeros(1, 3, H, W)
        for _i, _j, y0, x0 in geometry.plan(overlap=0).windows():
            tile = frame[..., y0:y0 + th, x0:x0 + tw]
            if spec.windowed:
                extra = slice_operands(inputs[1].float(), (y0, x0), (th, tw), (H, W), *window)
            else:
                extra = inputs[1:]
            y = call([tile, *extra])[0]
            out[..., y0:y0 + th, x0:x0 + tw] = y                    # overlapping plain tiles agree: pixel-local
            if keep_tiles:
                tiles.append(((y0, x0), (y,)))
            if tile_progress is not None:
                tile_progress(1)
        outs = (out,)
    else:                                                            # frame, quarter
        outs = tuple(call(list(inputs)))
    info: dict[str, Any] = {"seconds": time.perf_counter() - t0}
    if keep_tiles:
        info["tiles"] = tiles
    return outs, info


class ArtifactPipeline:
    """The artifact chain of one :class:`~runtime_py.artifacts.Selection`; see the module docstring.

    Args:
        selection: one artifact per unit (every unit the set's style needs).
        progress: show a tqdm bar (units, and tiles of the tiled units) on stderr during :meth:`run`.
    """

    def __init__(self, selection: Selection, progress: bool = False) -> None:
        missing = [u for u in selection.set.required_units if u not in selection]
        if missing:
            raise ValueError(f"the selection lacks units {missing}; select with ArtifactSet.select() (it picks one "
                             f"artifact for every unit of the set's style)")
        self.selection = selection
        self.geometry: FrameGeometry = selection.geometry
        self.units = tuple(u for u in UNIT_ORDER if u in selection.set.required_units)
        self.progress = progress
        #: (R, C) of the windowed unit's grid_window (upsample_slice)
        self.window = next((window_of(u, selection[u].input_shapes) for u in self.units if UNITS[u].windowed), None)
        self.timings: dict[str, dict[str, float]] = {}

    @classmethod
    def open(cls, folder: str | Path, prefer: Sequence[str] | None = None,
             precision_prefer: Sequence[str] | None = None, explicit: Mapping[str, tuple[str, str]] | None = None,
             *, verify: bool = True, progress: bool = False) -> "ArtifactPipeline":
        """:meth:`ArtifactSet.open` + :meth:`ArtifactSet.select` + this constructor."""
        sel = ArtifactSet.open(folder).select(prefer, precision_prefer, explicit, verify=verify)
        return cls(sel, progress=progress)

    # ---------------------------------------------------------------------------------------------- checks
    def check_inputs(self, raw: Any, illum: Any, ccm: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Float32 tensors ``(1,3,H,W)``, ``(1,3)``, ``(1,3,3)`` at the export geometry, or ``ValueError``."""
        raw, illum, ccm = (torch.as_tensor(v) for v in (raw, illum, ccm))
        H, W = self.geometry.size
        if raw.ndim != 4 or raw.shape[:2] != (1, 3):
            raise ValueError(f"raw must be a (1, 3, H, W) demosaiced tensor (batch 1: the artifacts have fixed "
                             f"shapes), got {tuple(raw.shape)}; decode DNGs with runtime_py.pipeline.read_frame")
        if tuple(raw.shape[2:]) != (H, W):
            raise ValueError(f"raw is {raw.shape[3]}x{raw.shape[2]} but the artifacts were exported for {W}x{H}: "
                             + _refit_hint(int(raw.shape[2]), int(raw.shape[3])))
        if not raw.is_floating_point():
            raise ValueError(f"raw must be floating point in [0, 1], got {raw.dtype}")
        if tuple(illum.shape) != (1, 3) or tuple(ccm.shape) != (1, 3, 3):
            raise ValueError(f"illum must be (1, 3) and ccm (1, 3, 3), got {tuple(illum.shape)} and "
                             f"{tuple(ccm.shape)}")
        if not (torch.isfinite(raw).all() and torch.isfinite(illum).all() and torch.isfinite(ccm).all()):
            raise ValueError("raw, illum or ccm contains NaN or infinite values")
        return raw.float(), illum.float(), ccm.float()

    # ---------------------------------------------------------------------------------------------- units
    def _call(self, unit: str, arrays: Sequence[torch.Tensor], stats: dict[str, float]) -> list[torch.Tensor]:
        runner = self.selection.runner(unit)
        t0 = time.perf_counter()
        outs = runner.run([_numpy(a) for a in arrays])
        stats["infer_seconds"] += time.perf_counter() - t0
        stats["calls"] += 1
        return [_tensor(o) for o in outs]

    def run_unit(self, unit: str, *inputs: torch.Tensor, keep_tiles: bool = False,
                 tile_progress: Callable[[int], None] | None = None) -> tuple[tuple[torch.Tensor, ...], dict]:
        """Run one unit of the selection over a whole frame: :func:`run_unit` with this pipeline's runner; the
        returned ``info`` also has ``load_seconds`` (runner loading, outside the timed part)."""
        if unit not in self.selection:
            raise ValueError(f"unit {unit} is not in this selection ({', '.join(self.selection)})")
        t_load = time.perf_counter()
        self.selection.runner(unit)
        load_seconds = time.perf_counter() - t_load
        stats = {"infer_seconds": 0.0, "calls": 0}
        outs, info = run_unit(lambda arrays: self._call(unit, arrays, stats), unit, self.geometry, *inputs,
                              window=self.window, keep_tiles=keep_tiles, tile_progress=tile_progress)
        info.update(stats, load_seconds=load_seconds)
        return outs, info

    def tile_count(self, unit: str) -> int:
        return calls_per_frame(self.geometry, unit)

    # ---------------------------------------------------------------------------------------------- run
    @torch.inference_mode()
    def run(self, raw: Any, illum: Any, ccm: Any,
            progress: Callable[[str], None] | bool | None = None) -> dict[str, torch.Tensor]:
        """Render ``raw (1,3,H,W)`` with ``illum (1,3)`` and ``ccm (1,3,3)``: every intermediate by golden name.

        ``progress``: a callable told each unit as it starts, or ``True`` for a tqdm bar (default: the
        constructor's ``progress``).
        """
        raw, illum, ccm = self.check_inputs(raw, illum, ccm)
        bar = None
        say: Callable[[str], None] = progress if callable(progress) else (lambda _s: None)
        tile_cb = None
        if progress is True or (progress is None and self.progress):
            from tqdm import tqdm
            total = sum(self.tile_count(u) for u in self.units)
            bar = tqdm(total=total, desc="artifact pipeline", unit="call", dynamic_ncols=True, leave=False)
            say = bar.set_postfix_str
            tile_cb = bar.update
        out: dict[str, torch.Tensor] = {"raw": raw}
        self.timings = {}
        try:
            for unit in self.units:
                say(unit)
                ins = self._unit_inputs(unit, out, illum, ccm)
                outs, info = self.run_unit(unit, *ins, tile_progress=tile_cb)
                if bar is not None and not UNITS[unit].tiled:
                    bar.update(1)
                self.timings[unit] = {k: v for k, v in info.items() if k != "tiles"}
                for name, t in zip(UNITS[unit].outputs, outs):
                    out[name] = t
        finally:
            if bar is not None:
                bar.close()
        return out

    def _unit_inputs(self, unit: str, out: Mapping[str, torch.Tensor], illum: torch.Tensor,
                     ccm: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return frame_inputs(unit, {**out, "illum": illum, "ccm": ccm})

    @property
    def total_seconds(self) -> float:
        """Wall seconds of the units in the last run (runner loading excluded)."""
        return float(sum(t["seconds"] for t in self.timings.values()))

    def __repr__(self) -> str:
        return f"ArtifactPipeline({self.selection.label}, {self.geometry.describe()})"
