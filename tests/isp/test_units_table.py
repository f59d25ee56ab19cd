"""The unit table (isp.units) and the frame geometry (isp.geometry) every layer reads."""
from __future__ import annotations

import pytest

from isp.geometry import FrameGeometry
from isp.registry import STAGE_ORDER, get_stage
from isp.stages import upsample as up
from isp.units import (AUX_UNITS, STAGE_UNITS, TILED_UNITS, UNIT_ORDER, UNITS, calls_per_frame, chain_tensors, frame_inputs,
                       normalize_target, unit_shapes, units_for, window_of)

CI = FrameGeometry(512, 320, 128, 32)


def test_table_covers_every_stage_and_names_come_from_the_stage_specs():
    assert set(STAGE_UNITS) == set(STAGE_ORDER) and list(UNITS) == list(UNIT_ORDER + AUX_UNITS)
    assert up.GRID_DEPTH == 16 and CI.grid == (16, 5, 8)
    for u, spec in UNITS.items():
        if spec.id == spec.stage:                      # a whole stage: the same tensor names as its SPEC
            s = get_stage(spec.stage)
            assert spec.inputs == s.input_names and spec.outputs == s.output_names, u
    assert units_for(False) == [u for u in UNIT_ORDER if u != "lut3d"]


def test_geometry_is_rows_first_everywhere():
    assert CI.size == (320, 512) and CI.quarter == (80, 128) and CI.tile_shape == (128, 128)
    assert FrameGeometry.from_manifest(CI.to_manifest()) == CI
    assert CI.to_json()["quarter"] == [128, 80]         # the calibration set's historical record: (W/4, H/4)
    assert FrameGeometry.from_json(CI.to_json()) == CI
    for bad in (dict(width=514), dict(tile=8), dict(overlap=128), dict(width=512.5), dict(height=True)):
        with pytest.raises(ValueError, match="geometry|frame size"):
            FrameGeometry(**{"width": 512, "height": 320, "tile": 128, "overlap": 32, **bad})


def test_default_tile_covers_the_frame_with_the_fewest_pixels():
    from isp.geometry import AUTO_TILE_RANGE, DEFAULT_TILE, TILE_ALIGN, auto_tile

    def work(g):                                        # pixels the full-resolution units compute per frame
        return len(g.plan()) * g.tile_shape[0] * g.tile_shape[1]

    g12 = FrameGeometry.from_size("12mp")
    assert g12.tile == 528 and len(g12.plan()) == 48    # 512: 63 windows
    assert work(g12) / (4000 * 3000) < 1.12 < 1.37 < work(FrameGeometry(4000, 3000, 512, 32)) / (4000 * 3000)
    for size in ((4000, 3000), (3264, 2448), (1920, 1080), (4032, 3024), (640, 480), (1000, 752)):
        g = FrameGeometry(*size)
        assert g.tile % TILE_ALIGN == 0
        assert DEFAULT_TILE + AUTO_TILE_RANGE[0] <= g.tile <= DEFAULT_TILE + AUTO_TILE_RANGE[1], size
        assert work(g) <= work(FrameGeometry(*size, DEFAULT_TILE)), size
        assert all(work(g) <= work(FrameGeometry(*size, t)) for t in range(448, 529, 16)), size
    assert FrameGeometry(512, 320).tile == DEFAULT_TILE == auto_tile(400, 400)     # one window either way
    assert FrameGeometry(4000, 3000, 512, 32).tile == 512                            # an explicit tile is kept
    assert FrameGeometry(4000, 3000, overlap=64).tile == auto_tile(4000, 3000, 64)
    with pytest.raises(ValueError, match="multiples of 4"):
        FrameGeometry(4001, 3000)


def test_shapes_tiles_and_windows():
    assert {u: calls_per_frame(CI, u) for u in TILED_UNITS} == {"denoise": 15, "color": 12, "upsample_slice": 12,
                                                                 "enhance": 15}
    assert calls_per_frame(CI, "gain") == 1
    ins, outs = unit_shapes("upsample_slice", CI)
    assert ins[1] == (1, 12, 16, None, None) and outs == [(1, 3, 128, 128)]
    ins, _ = unit_shapes("upsample_slice", CI, (3, 4))
    assert window_of("upsample_slice", ins) == (3, 4) and window_of("gain", [(1, 3, 80, 128)]) is None
    assert unit_shapes("ltm", CI)[1][1] == (1, 5, 80, 128)


def test_frame_inputs_by_name():
    t = {n: n for n in ("raw", "illum", "ccm", *chain_tensors(params=True, grid=True))}
    assert frame_inputs("color", t) == ("denoised_raw", "illum", "ccm")
    assert frame_inputs("upsample_slice", t) == ("lsrgb", "bgu_grid")
    assert frame_inputs("chroma", t) == ("lsrgb_lut",)
    del t["lsrgb_lut"]
    assert frame_inputs("chroma", t) == ("lsrgb_ltm",)


def test_chain_tensor_lists():
    assert chain_tensors(lut=False) == ("denoised_raw", "lsrgb", "lsrgb_ds", "lsrgb_gain", "lsrgb_gtm", "lsrgb_ltm",
                                        "processed_lsrgb", "gamma_out", "srgb_upsampled", "srgb")
    assert "bgu_grid" in chain_tensors(grid=True) and "gain_param" in chain_tensors(params=True)


def test_target_names():
    assert normalize_target("tflite") == "litert" and normalize_target("executorch-vulkan") == "executorch-vulkan"
    with pytest.raises(ValueError, match="unknown target"):
        normalize_target("tensorrt")
