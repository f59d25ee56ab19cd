"""Calibration at a frame larger than the shipped DNGs (12 MP from 1024 px captures): the frames are mirror-tiled
(``calibration.augment``) and the export manifest says so (``calibration.placement``)."""
from __future__ import annotations

import numpy as np

from calibration.augment import AugmentConfig, ColorInfo, Geometry, apply_augmentation, draw_augmentation
from convert.export import calibration_placement


def _sample(source: str, rows: str, cols: str) -> dict:
    return {"source": source, "augmentation": {"rows": {"mode": rows, "start": 0}, "cols": {"mode": cols, "start": 0}}}


def test_placement_record_notes_mirror_tiled_frames():
    geo = Geometry(4000, 3000, 512, 32)
    rec = calibration_placement([_sample("a.dng", "mirror", "mirror"), _sample("b.dng", "crop", "mirror"),
                                 _sample("c.dng", "crop", "crop")], geo)
    assert (rec["frames"], rec["mirror_tiled"], rec["cropped"]) == (3, 2, 1)
    assert "4000x3000" in rec["note"] and "a.dng, b.dng" in rec["note"]
    rec = calibration_placement([_sample("c.dng", "crop", "crop")], geo)
    assert rec == {"frames": 1, "cropped": 1, "mirror_tiled": 0}


def test_small_capture_fills_a_12mp_frame():
    """A capture smaller than the frame (as the shipped 1024 px DNGs are for 12 MP) fills a 4000x3000 frame by
    mirror-tiling."""
    rgb = np.random.default_rng(0).random((64, 48, 3), dtype=np.float32)     # stands in for a small DNG
    color = ColorInfo(np.array([0.5, 0.8, 0.33]))
    aug = draw_augmentation(np.random.default_rng(1), "small.dng", rgb.shape[:2], (0, 0, 64, 48), (3000, 4000),
                            color, AugmentConfig(ev_range=(0.0, 0.0)))
    assert aug.rows["mode"] == aug.cols["mode"] == "mirror"
    raw, _illum = apply_augmentation(rgb, aug, (3000, 4000))
    assert raw.shape == (3, 3000, 4000) and np.isfinite(raw).all()
    rec = calibration_placement([{"source": "small.dng", "augmentation": aug.to_json()}], Geometry(4000, 3000))
    assert rec["mirror_tiled"] == 1


def test_tile_local_int8_units_calibrate_at_a_smaller_capture():
    """Every int8 unit tile-local (the int8 policies quantize denoise/enhance): the automatic set is captured at
    4x3 tile windows with the same tiles; any quarter-frame int8 unit, or a frame not twice that size, keeps the
    export geometry. A tile-local unit takes such a set's rows; the slice (quarter-frame grid) refuses it."""
    from types import SimpleNamespace

    import pytest
    import torch

    from convert.export import capture_geometry
    from convert.units import build_unit, tile_local

    assert [u for u in ("denoise", "color", "upsample_slice", "enhance", "ltm", "awb_c5") if tile_local(u)] == \
        ["denoise", "color", "enhance"]
    geo = Geometry(4000, 3000, 512, 32)
    small = capture_geometry(geo, ["denoise", "enhance"])
    assert (small.width, small.height, small.tile, small.overlap) == (1952, 1472, 512, 32)
    assert small.tile_shape == geo.tile_shape and len(small.plan()) == 12
    assert capture_geometry(geo, ["enhance", "ltm"]) == geo and capture_geometry(geo, []) == geo
    ci = Geometry(512, 320, 128, 32)
    assert capture_geometry(ci, ["enhance"]) == ci

    class _Set(SimpleNamespace):
        def stage_inputs(self, stage):
            return [(torch.full((1,), float(len(stage))),)]

    cs = _Set(geometry=small, root="small-set")
    from isp import paths
    from isp.registry import BuildConfig
    cfg = BuildConfig(paths.weights_root(), style=0, denoiser="s24_lite")
    rows = build_unit("color", cfg, geo).calibration_inputs(cs, limit=1)
    assert len(rows) == 1 and float(rows[0][0]) == len("color")
    with pytest.raises(ValueError, match="build a set at this geometry"):
        build_unit("upsample_slice", cfg, geo).calibration_inputs(cs, limit=1)
