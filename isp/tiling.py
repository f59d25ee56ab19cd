"""Run a full-resolution stage over fixed-size tiles with overlap and stitch the results.

Phones run the full-resolution stages (denoiser, detail enhancer) at one fixed input shape, and a 12-megapixel frame
does not fit a single inference anyway. The frame is covered by ``tile_h x tile_w`` windows whose starts step by
``tile - overlap``; the last window on each axis is aligned to the image border so every window has the same shape.
Over a region shared by two windows the outer quarters are handed over hard and the middle half is cross-faded
linearly (separable weights, normalised) — a seamless feathered stitch in which no window contributes pixels within
``overlap // 4`` of its own inner border.

Stitching is therefore exact for local operators whose receptive-field radius is at most ``overlap // 4``. Stages with global
statistics (NAFNet's simplified channel attention pools over the whole input) differ slightly from the untiled run;
``tests/isp/test_tiling.py`` measures how much.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch

__all__ = ["TilePlan", "tile_starts", "run_tiled", "feather_weights"]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Window starts covering ``[0, length)`` with windows of ``tile`` and at least ``overlap`` shared pixels."""
    if tile <= 0 or overlap < 0 or overlap >= tile:
        raise ValueError(f"need 0 <= overlap < tile, got tile={tile}, overlap={overlap}")
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def _rise(shared: int, dtype, device) -> torch.Tensor:
    """Weights of the later window over a region it shares with the earlier one (the earlier gets ``1 - w``).

    The outer quarter on each side is a hard hand-over (0 or 1) so neither window contributes pixels within
    ``shared // 4`` of its own inner border; the middle half is a linear cross-fade.
    """
    margin = shared // 4
    n = shared - 2 * margin
    return torch.cat([torch.zeros(margin, dtype=dtype, device=device),
                      torch.linspace(0.0, 1.0, n + 2, dtype=dtype, device=device)[1:-1],
                      torch.ones(margin, dtype=dtype, device=device)])


def _ramp(tile: int, starts: list[int], index: int, dtype, device) -> torch.Tensor:
    """1-D weights of window ``index``: cross-fades over the parts shared with its neighbours."""
    w = torch.ones(tile, dtype=dtype, device=device)
    if index > 0:
        shared = starts[index - 1] + tile - starts[index]
        if shared > 0:
            w[:shared] = _rise(shared, dtype, device)
    if index < len(starts) - 1:
        shared = starts[index] + tile - starts[index + 1]
        if shared > 0:
            w[tile - shared:] = torch.minimum(w[tile - shared:], 1.0 - _rise(shared, dtype, device))
    return w


@dataclass(frozen=True)
class TilePlan:
    """Tile geometry for an ``height x width`` frame (tile sizes are clipped to the frame)."""
    height: int
    width: int
    tile_h: int
    tile_w: int
    overlap: int

    @classmethod
    def make(cls, height: int, width: int, tile: int | tuple[int, int], overlap: int) -> "TilePlan":
        th, tw = (tile, tile) if isinstance(tile, int) else tile
        return cls(height, width, min(th, height), min(tw, width), min(overlap, max(0, min(th, tw) - 1)))

    @property
    def ys(self) -> list[int]:
        return tile_starts(self.height, self.tile_h, min(self.overlap, self.tile_h - 1))

    @property
    def xs(self) -> list[int]:
        return tile_starts(self.width, self.tile_w, min(self.overlap, self.tile_w - 1))

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)

    def windows(self) -> Iterable[tuple[int, int, int, int]]:
        """``(y_index, x_index, y0, x0)`` for every window, row-major."""
        for i, y0 in enumerate(self.ys):
            for j, x0 in enumerate(self.xs):
                yield i, j, y0, x0


def run_tiled(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor, tile: int | tuple[int, int] = 512,
              overlap: int = 32, progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """``fn(*inputs)`` computed window by window; all inputs are ``(B, C_i, H, W)`` with the same ``H, W``.

    ``fn`` must map ``(B, C_i, th, tw)`` windows to ``(B, C_out, th, tw)``. ``progress`` is called with 1 after
    each window (e.g. ``tqdm.update``).
    """
    if not inputs:
        raise ValueError("run_tiled needs at least one input")
    h, w = inputs[0].shape[-2:]
    for x in inputs:
        if x.shape[-2:] != (h, w):
            raise ValueError(f"run_tiled: all inputs must share H, W; got {[tuple(t.shape) for t in inputs]}")
    plan = TilePlan.make(h, w, tile, overlap)
    ys, xs = plan.ys, plan.xs
    out = None
    weight = None
    for i, j, y0, x0 in plan.windows():
        window = [x[..., y0:y0 + plan.tile_h, x0:x0 + plan.tile_w] for x in inputs]
        y = fn(*window)
        if out is None:
            out = torch.zeros(y.shape[0], y.shape[1], h, w, dtype=y.dtype, device=y.device)
            weight = torch.zeros(1, 1, h, w, dtype=y.dtype, device=y.device)
        wy = _ramp(plan.tile_h, ys, i, y.dtype, y.device)
        wx = _ramp(plan.tile_w, xs, j, y.dtype, y.device)
        wgt = (wy[:, None] * wx[None, :])[None, None]
        out[..., y0:y0 + plan.tile_h, x0:x0 + plan.tile_w] += y * wgt
        weight[..., y0:y0 + plan.tile_h, x0:x0 + plan.tile_w] += wgt
        if progress is not None:
            progress(1)
    return out / weight


def feather_weights(plan: TilePlan, dtype=torch.float32, device=None
                    ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """The separable stitch weights of :func:`run_tiled` for a plan: ``(wy, wx, sum_y, sum_x)``.

    Window ``(i, j)`` is weighted ``wy[i][:, None] * wx[j][None, :]``; the total weight at ``(y, x)`` is
    ``sum_y[y] * sum_x[x]`` (the sum over windows of a product of per-axis weights factorises), so a streaming
    stitcher needs no full-frame weight map.
    """
    ys, xs = plan.ys, plan.xs
    wy = [_ramp(plan.tile_h, ys, i, dtype, device) for i in range(len(ys))]
    wx = [_ramp(plan.tile_w, xs, j, dtype, device) for j in range(len(xs))]
    sum_y = torch.zeros(plan.height, dtype=dtype, device=device)
    sum_x = torch.zeros(plan.width, dtype=dtype, device=device)
    for y0, w in zip(ys, wy):
        sum_y[y0:y0 + plan.tile_h] += w
    for x0, w in zip(xs, wx):
        sum_x[x0:x0 + plan.tile_w] += w
    return wy, wx, sum_y, sum_x
