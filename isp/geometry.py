"""The frame geometry every exported unit is built for and every runtime runs: one class, one convention.

:class:`FrameGeometry` holds the full frame ``width x height`` (multiples of 4, at least :data:`MIN_FRAME`) and the
full-resolution ``tile`` / ``overlap`` (:class:`isp.tiling.TilePlan`; a tile larger than the frame is clipped to it).
Shapes follow the tensor convention, rows first: ``size = (H, W)``, ``quarter = (H/4, W/4)`` (the fixed input of the
quarter-resolution units), ``tile_shape = (th, tw)``, ``grid = (gd, gh, gw)``. :func:`parse_size` reads ``12mp``,
``8mp``, ``1080p`` or ``WxH``.

The tile defaults to :func:`auto_tile`: the multiple of 16 near :data:`DEFAULT_TILE` (512) whose feathered windows
cover the frame with the fewest pixels. 512-px windows with a 32-px overlap cover 4000x3000 with 63 windows of which
38 % of the pixels are computed twice; 528-px windows need 48 and 12 % (every full-resolution unit runs 19 % fewer
pixels, on the host and on a phone alike). An explicit ``tile`` is kept as given.

On disk: an export manifest's ``geometry`` is :meth:`FrameGeometry.to_manifest` (``quarter`` as ``[H/4, W/4]``);
a calibration set's ``set.json`` keeps its own historical record (:meth:`FrameGeometry.to_json`, ``quarter`` as
``[W/4, H/4]``). Both are read back by :meth:`FrameGeometry.from_manifest` / :meth:`FrameGeometry.from_json`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from isp.tiling import TilePlan

__all__ = ["SIZE_PRESETS", "MIN_FRAME", "DEFAULT_TILE", "FrameGeometry", "auto_tile", "parse_size"]

#: named frame sizes (width, height)
SIZE_PRESETS: dict[str, tuple[int, int]] = {"12mp": (4000, 3000), "8mp": (3264, 2448), "1080p": (1920, 1080)}
#: smallest frame side: what the photofinishing networks accept (:data:`isp.pipeline.MIN_SIZE`)
MIN_FRAME = 64
#: smallest tile side
MIN_TILE = 16
#: the nominal tile of the full-resolution units; :func:`auto_tile` searches near it
DEFAULT_TILE = 512
#: auto tiles are multiples of this (the NAFNets halve the tile 4 times)
TILE_ALIGN = 16
#: how far below / above :data:`DEFAULT_TILE` :func:`auto_tile` looks (above: at most +6 % of a tile's memory)
AUTO_TILE_RANGE = (-64, 16)


def auto_tile(width: int, height: int, overlap: int = 32, nominal: int = DEFAULT_TILE) -> int:
    """The tile (a multiple of :data:`TILE_ALIGN` within :data:`AUTO_TILE_RANGE` of ``nominal``) whose windows
    cover ``width x height`` with ``overlap`` computing the fewest pixels; ties go to the tile closest to
    ``nominal``, then the larger. ``nominal`` itself where the frame fits in one window."""
    if width <= nominal and height <= nominal:
        return nominal

    def cost(t: int) -> tuple[int, int, int]:
        plan = TilePlan.make(height, width, t, overlap)
        return len(plan) * plan.tile_h * plan.tile_w, abs(t - nominal), -t

    lo, hi = nominal + AUTO_TILE_RANGE[0], nominal + AUTO_TILE_RANGE[1]
    tiles = [t for t in range(lo - lo % TILE_ALIGN, hi + 1, TILE_ALIGN) if t > max(overlap, MIN_TILE - 1)]
    return min(tiles or [nominal], key=cost)


def parse_size(text: str) -> tuple[int, int]:
    """``"12mp"`` | ``"8mp"`` | ``"1080p"`` | ``"WxH"`` -> ``(width, height)``; ``ValueError`` says what is wrong."""
    s = str(text).strip().lower()
    if s in SIZE_PRESETS:
        return SIZE_PRESETS[s]
    m = re.fullmatch(r"(\d+)\s*[x×*]\s*(\d+)", s)
    if not m:
        raise ValueError(f"frame size must be one of {', '.join(SIZE_PRESETS)} or WxH (e.g. 512x384), got {text!r}")
    width, height = int(m.group(1)), int(m.group(2))
    _check_frame(width, height, text)
    return width, height


def _check_frame(width: int, height: int, given: Any = None) -> None:
    shown = f"{given!r} = " if given is not None and str(given) != f"{width}x{height}" else ""
    if width % 4 or height % 4:
        fix = f"{width - width % 4}x{height - height % 4}"
        raise ValueError(f"frame size {shown}{width}x{height}: width and height must be multiples of 4 (the "
                         f"quarter-resolution stages run at exactly W/4 x H/4); use e.g. {fix}")
    if width < MIN_FRAME or height < MIN_FRAME:
        raise ValueError(f"frame size {shown}{width}x{height}: both sides must be at least {MIN_FRAME} pixels (the "
                         "smallest frame the photofinishing networks accept)")


def _integer(name: str, v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError(f"geometry {name}: expected an integer, got {v!r}")
    try:
        i = int(v)
    except (TypeError, ValueError):
        raise ValueError(f"geometry {name}: expected an integer, got {v!r}") from None
    if i != v and str(i) != str(v).strip():
        raise ValueError(f"geometry {name}: expected an integer, got {v!r}")
    return i


@dataclass(frozen=True)
class FrameGeometry:
    """Frame size of the exported units and tile size of the full-resolution ones (see the module docstring)."""

    width: int
    height: int
    tile: int | None = None           # None: auto_tile(width, height, overlap)
    overlap: int = 32

    def __post_init__(self) -> None:
        for name in ("width", "height", "overlap"):
            object.__setattr__(self, name, _integer(name, getattr(self, name)))
        _check_frame(self.width, self.height)
        tile = auto_tile(self.width, self.height, self.overlap) if self.tile is None else _integer("tile", self.tile)
        object.__setattr__(self, "tile", tile)
        if self.tile < MIN_TILE:
            raise ValueError(f"geometry: tile must be at least {MIN_TILE} pixels, got {self.tile}")
        if not 0 <= self.overlap < self.tile:
            raise ValueError(f"geometry: need 0 <= overlap < tile ({self.tile}), got overlap {self.overlap}")

    # -------------------------------------------------------------------------------------------- construction
    @classmethod
    def from_size(cls, size: str, tile: int | None = None, overlap: int = 32) -> "FrameGeometry":
        width, height = parse_size(size)
        return cls(width, height, tile, overlap)

    @classmethod
    def from_manifest(cls, g: Mapping[str, Any], where: str = "manifest") -> "FrameGeometry":
        """An export manifest's ``geometry`` (``ValueError`` naming ``where`` when it is incomplete or its
        ``quarter`` does not match the frame)."""
        try:
            geo = cls(g["width"], g["height"], g.get("tile", 512), g.get("overlap", 32))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{where}: geometry must give width, height, tile and overlap, got {g!r}") from exc
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        q = g.get("quarter")
        if q is not None and [int(v) for v in q] != list(geo.quarter):
            raise ValueError(f"{where}: geometry quarter {list(q)} does not match (H/4, W/4) = {list(geo.quarter)} "
                             f"of {geo.width}x{geo.height}")
        return geo

    def to_manifest(self) -> dict[str, Any]:
        """The export manifest's ``geometry`` entry."""
        return {"width": self.width, "height": self.height, "quarter": list(self.quarter), "tile": self.tile,
                "overlap": self.overlap, "tile_shape": list(self.tile_shape)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "FrameGeometry":
        """A calibration set's geometry record."""
        return cls(d["width"], d["height"], d["tile"], d["overlap"])

    def to_json(self) -> dict[str, Any]:
        """A calibration set's geometry record (its ``quarter`` is ``[W/4, H/4]``, as sets have always stored)."""
        return {"width": self.width, "height": self.height, "tile": self.tile, "overlap": self.overlap,
                "quarter": [self.width // 4, self.height // 4], "tile_shape": list(self.tile_shape),
                "tiles": len(self.tiles)}

    # -------------------------------------------------------------------------------------------- shapes
    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return self.height, self.width

    @property
    def quarter(self) -> tuple[int, int]:
        """``(H/4, W/4)``: the shape of every photofinishing unit."""
        return self.height // 4, self.width // 4

    @property
    def grid(self) -> tuple[int, int, int]:
        """``(gd, gh, gw)`` of the bilateral grid ``bgu_grid (1, 12, gd, gh, gw)``."""
        from isp.stages.upsample import grid_shape

        gh, gw, gd = grid_shape(*self.quarter)
        return gd, gh, gw

    def plan(self, overlap: int | None = None) -> TilePlan:
        """Windows of the full-resolution units: feathered ``overlap`` (default the geometry's) or 0 (plain)."""
        return TilePlan.make(self.height, self.width, self.tile, self.overlap if overlap is None else overlap)

    @property
    def tile_shape(self) -> tuple[int, int]:
        """``(th, tw)`` of the full-resolution windows (the tile clipped to the frame)."""
        plan = self.plan()
        return plan.tile_h, plan.tile_w

    @property
    def tiles(self) -> list[tuple[int, int]]:
        """Top-left ``(y0, x0)`` of every feathered full-resolution window, row-major (the export tiling)."""
        return [(y0, x0) for _, _, y0, x0 in self.plan().windows()]

    def describe(self) -> str:
        th, tw = self.tile_shape
        return (f"{self.width}x{self.height} (quarter {self.quarter[1]}x{self.quarter[0]}), tile {tw}x{th}, "
                f"overlap {self.overlap}")

    def __str__(self) -> str:
        return f"{self.width}x{self.height} (quarter {self.width // 4}x{self.height // 4}), tile {self.tile}, " \
               f"overlap {self.overlap}"
