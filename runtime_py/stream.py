"""Render a frame with an artifact selection in bounded memory: only the quarter-resolution units see a whole frame.

    pipe = ArtifactPipeline(selection)
    srgb = render_streaming(pipe, raw, illum, ccm)      # (H, W, 3) float32 numpy, ready for write_image
    pipe.timings                                        # per unit, as ArtifactPipeline.run leaves them

:meth:`runtime_py.pipeline.ArtifactPipeline.run` keeps every intermediate of the execution table as a full-frame
tensor (the drift tools compare them all). A render needs only the final image, so here the full-resolution units
are streamed through their tiles, in two passes:

1. ``denoise`` over the feathered windows of the geometry, accumulated straight into one full-frame buffer with the
   separable weights of :func:`isp.tiling.feather_weights` (no weight map, no per-unit copies); ``color`` over the
   plain tiles of that buffer into ``lsrgb``; the raw frame and the denoised buffer are released as soon as they are
   consumed.
2. ``downsample`` and the quarter-resolution units run once, as in the execution table (``upsample_fit`` gives the
   bilateral grid). Then per feathered window: ``upsample_slice`` of that window of ``lsrgb`` (the slice is
   position independent, :func:`convert.units.slice_operands`), ``enhance`` of the result, accumulated into the
   final image in height-width-channel order (what the image writer takes; no transposed copy).

The arithmetic is that of :meth:`ArtifactPipeline.run`, window for window; the only difference is the feathered
normalisation, divided by ``sum_y[y] * sum_x[x]`` instead of an accumulated weight map (equal up to float32
rounding). Slicing the feathered windows instead of the plain tiles costs a few more slice calls (63 against 48
at 12 MP) and saves the full-frame ``srgb_upsampled``.

Peak frame memory: about three full-frame float32 RGB buffers (raw and denoised during pass 1, lsrgb and the
output during pass 2), against the eleven-plus of the table run.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from isp.tiling import feather_weights
from runtime_py.artifacts import TILING, UNIT_IO

__all__ = ["render_streaming", "streaming_calls", "STREAM_PHASES"]

#: the phases :func:`render_streaming` reports in ``pipe.phases`` (wall seconds, runner loading included)
STREAM_PHASES = ("pass1_denoise_color", "quarter", "pass2_slice_enhance")


def streaming_calls(pipe) -> int:
    """Runner calls of one :func:`render_streaming` (its progress total): two per feathered window (denoise; slice
    and enhance count as one), one per plain colour tile, one per quarter unit."""
    quarter = sum(1 for u in pipe.units if TILING[u] in ("frame", "quarter"))
    return 2 * len(pipe.geometry.plan()) + len(pipe.geometry.plan(overlap=0)) + quarter


def _window(frame: np.ndarray, y0: int, x0: int, th: int, tw: int) -> np.ndarray:
    """A contiguous ``(1, C, th, tw)`` copy of a window of a ``(1, C, H, W)`` frame (the runners need one)."""
    return np.ascontiguousarray(frame[:, :, y0:y0 + th, x0:x0 + tw])


class _Unit:
    """One tiled unit's runner with the bookkeeping of :meth:`ArtifactPipeline.run_unit`; ``concurrency``: how many
    calls the runner takes at once (its own ``concurrency``, e.g. OpenVINO streams; 1 for the others)."""

    def __init__(self, pipe, unit: str) -> None:
        t0 = time.perf_counter()
        self.runner = pipe.selection.runner(unit)
        self.concurrency = max(1, int(getattr(self.runner, "concurrency", 1) or 1))
        self.stats: dict[str, float] = {"seconds": 0.0, "infer_seconds": 0.0, "calls": 0,
                                        "load_seconds": time.perf_counter() - t0}
        self._lock = threading.Lock()

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.runner.run(list(arrays))[0]
        dt = time.perf_counter() - t0
        with self._lock:                                # summed over calls, which overlap when concurrency > 1
            self.stats["infer_seconds"] += dt
            self.stats["seconds"] += dt
            self.stats["calls"] += 1
        return out


def _in_order(jobs: Iterable[Callable[[], Any]], concurrency: int) -> Iterator[Any]:
    """The results of ``jobs`` in order, up to ``concurrency`` of them running at once (one more queued, so the
    workers stay busy while the caller stitches a result)."""
    if concurrency <= 1:
        for job in jobs:
            yield job()
        return
    with ThreadPoolExecutor(concurrency) as pool:
        pending: deque = deque()
        for job in jobs:
            pending.append(pool.submit(job))
            if len(pending) > concurrency:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def render_streaming(pipe, raw: Any, illum: Any, ccm: Any,
                     progress: Callable[[int], None] | None = None, release: bool = False) -> np.ndarray:
    """Render ``raw (1,3,H,W)`` with ``illum (1,3)``, ``ccm (1,3,3)``; the ``(H, W, 3)`` float32 sRGB image.

    ``pipe`` is a :class:`runtime_py.pipeline.ArtifactPipeline`; its ``timings`` get one entry per unit (``seconds``,
    ``infer_seconds``, ``calls``, ``load_seconds``) and ``phases`` the wall seconds of :data:`STREAM_PHASES`.
    ``raw`` may be a one-element list holding the tensor: it is emptied, so that with no other reference the
    frame's memory goes back after pass 1 (an argument itself stays referenced by the caller until the call returns).
    ``progress(n)`` is called after every runner call (tiles and quarter units). ``release``: drop each unit's
    runner after its last use in this frame (:meth:`~runtime_py.artifacts.Selection.release`), so that only the
    runners of the current phase hold memory (ONNX Runtime keeps each session's arena at its peak); for a single
    render, as ``runtime_py.render`` does. Without it the runners stay loaded for the next frame. A runner that takes
    several calls at once (``concurrency``: OpenVINO's streams, :func:`runtime_py.openvino.tile_streams`) gets that
    many windows at a time from a thread pool; the windows are stitched in plan order either way.
    """
    drop = pipe.selection.release if release else (lambda *_u: None)
    if isinstance(raw, list):                  # handed over: the frame is freed once the denoiser has read it
        raw = raw.pop()
    raw_t, illum_t, ccm_t = pipe.check_inputs(raw, illum, ccm)
    tick = progress or (lambda _n: None)
    geo = pipe.geometry
    H, W = geo.size
    plan = geo.plan()
    plain = geo.plan(overlap=0)
    th, tw = plan.tile_h, plan.tile_w
    wy_t, wx_t, sum_y, sum_x = feather_weights(plan)
    wy, wx = [w.numpy() for w in wy_t], [w.numpy() for w in wx_t]
    inv_y, inv_x = (1.0 / sum_y).numpy()[:, None], (1.0 / sum_x).numpy()[None, :]
    pipe.timings = {}
    pipe.phases = {}
    illum_a, ccm_a = illum_t.numpy(), ccm_t.numpy()

    # ---------------------------------------------------------------- pass 1: denoise (feathered), colour (plain)
    t_phase = time.perf_counter()
    raw_a = raw_t.numpy()
    del raw, raw_t
    denoise, color = _Unit(pipe, "denoise"), _Unit(pipe, "color")
    den = np.zeros((1, 3, H, W), dtype=np.float32)
    windows = list(plan.windows())
    jobs = ((lambda y0=y0, x0=x0: denoise(_window(raw_a, y0, x0, th, tw))) for _i, _j, y0, x0 in windows)
    for (i, j, y0, x0), y in zip(windows, _in_order(jobs, denoise.concurrency)):
        y *= wy[i][:, None] * wx[j][None, :]
        den[:, :, y0:y0 + th, x0:x0 + tw] += y
        tick(1)
    del raw_a                                           # the caller's reference may keep it alive; ours goes
    _normalise(den[0], inv_y, inv_x, channels_last=False)
    lsrgb = np.empty((1, 3, H, W), dtype=np.float32)
    for _i, _j, y0, x0 in plain.windows():
        lsrgb[:, :, y0:y0 + th, x0:x0 + tw] = color(_window(den, y0, x0, th, tw), illum_a, ccm_a)
        tick(1)
    del den
    pipe.timings["denoise"], pipe.timings["color"] = denoise.stats, color.stats
    del denoise, color
    drop("denoise", "color")
    pipe.phases["pass1_denoise_color"] = time.perf_counter() - t_phase

    # ---------------------------------------------------------------- the quarter-resolution units
    t_phase = time.perf_counter()
    out: dict[str, torch.Tensor] = {"lsrgb": torch.from_numpy(lsrgb)}
    for unit in pipe.units:
        if TILING[unit] not in ("frame", "quarter"):
            continue
        ins = pipe._unit_inputs(unit, out, illum_t, ccm_t)
        outs, info = pipe.run_unit(unit, *ins)
        pipe.timings[unit] = {k: v for k, v in info.items() if k != "tiles"}
        for name, t in zip(UNIT_IO[unit][1], outs):
            out[name] = t
        drop(unit)
        tick(1)
    grid = out["bgu_grid"].float()
    del out
    pipe.phases["quarter"] = time.perf_counter() - t_phase

    # ---------------------------------------------------------------- pass 2: slice + enhance per feathered window
    t_phase = time.perf_counter()
    from convert.units import slice_operands

    slicer, enhance = _Unit(pipe, "upsample_slice"), _Unit(pipe, "enhance")
    srgb = np.zeros((H, W, 3), dtype=np.float32)

    def slice_enhance(y0: int, x0: int) -> np.ndarray:
        ops = [t.numpy() for t in slice_operands(grid, (y0, x0), (th, tw), (H, W), *pipe.window)]
        return enhance(slicer(_window(lsrgb, y0, x0, th, tw), *ops))

    jobs = ((lambda y0=y0, x0=x0: slice_enhance(y0, x0)) for _i, _j, y0, x0 in windows)
    for (i, j, y0, x0), y in zip(windows, _in_order(jobs, min(slicer.concurrency, enhance.concurrency))):
        y = y[0].transpose(1, 2, 0)                     # (th, tw, 3) view
        srgb[y0:y0 + th, x0:x0 + tw] += y * (wy[i][:, None] * wx[j][None, :])[:, :, None]
        tick(1)
    del lsrgb
    pipe.timings["upsample_slice"], pipe.timings["enhance"] = slicer.stats, enhance.stats
    del slicer, enhance
    drop("upsample_slice", "enhance")
    _normalise(srgb, inv_y, inv_x, channels_last=True)
    pipe.phases["pass2_slice_enhance"] = time.perf_counter() - t_phase
    order = [u for u in pipe.units if u in pipe.timings]
    pipe.timings = {u: pipe.timings[u] for u in order}
    return srgb


def _normalise(frame: np.ndarray, inv_y: np.ndarray, inv_x: np.ndarray, channels_last: bool,
               rows: int = 256) -> None:
    """Divide a stitched frame by the feathered weight ``sum_y ⊗ sum_x`` in place, a band of rows at a time."""
    H = inv_y.shape[0]
    for y0 in range(0, H, rows):
        w = inv_y[y0:y0 + rows] * inv_x                                    # (rows, W)
        if channels_last:
            frame[y0:y0 + rows] *= w[:, :, None]
        else:
            frame[:, y0:y0 + rows] *= w[None]
