"""runtime_py.pipeline and runtime_py.render: the artifact chain against the reference Pipeline (ONNX fp32 at
512x320, tile 128: every unit's tiling is exercised — 15 overlapping tiles, 12 plain tiles, quarter frame), the
geometry checks, and the render CLI."""
from __future__ import annotations

import pytest
import torch

from isp import paths
from isp.io.image import read_image
from runtime_py import metrics as M
from runtime_py import render
from runtime_py.artifacts import ArtifactSet
from runtime_py.pipeline import ArtifactPipeline, center_crop_box, read_frame

from .artifact_sets import FRAME, frame, geometry, onnx_set, reference_out  # noqa: F401  (fixtures)

GOLDEN_NAMES = {"raw", "denoised_raw", "lsrgb", "lsrgb_ds", "lsrgb_gain", "gain_param", "lsrgb_gtm", "gtm_param",
                "lsrgb_ltm", "ltm_param", "processed_lsrgb", "chroma_lut_param", "gamma_out", "gamma_param",
                "srgb_upsampled", "srgb"}


@pytest.fixture(scope="module")
def pipe(onnx_set):
    return ArtifactPipeline.open(onnx_set, prefer=["onnx"])


@pytest.fixture(scope="module")
def run_out(pipe, frame):
    steps = []
    out = pipe.run(*frame, progress=steps.append)
    return out, steps, dict(pipe.timings)


def test_end_to_end_matches_reference(run_out, reference_out):
    out, _steps, _t = run_out
    assert GOLDEN_NAMES <= set(out) and "bgu_grid" in out
    for name in GOLDEN_NAMES - {"raw"}:
        assert out[name].shape == reference_out[name].shape, name
    final = M.compare(out["srgb"], reference_out["srgb"], "srgb")
    assert final["psnr"] >= 60.0, final                         # fp32 ONNX: the contract's per-unit bar, end to end
    assert final["de2000_mean"] < 0.05, final
    for name in ("denoised_raw", "lsrgb", "lsrgb_ds", "gamma_out", "srgb_upsampled"):
        assert M.psnr(out[name], reference_out[name]) >= 60.0, name


def test_steps_and_timings(run_out, pipe):
    _out, steps, timings = run_out
    assert steps == list(pipe.units) == list(timings)
    calls = {u: t["calls"] for u, t in timings.items()}
    assert calls["denoise"] == calls["enhance"] == 15           # 3 x 5 windows with overlap
    assert calls["color"] == calls["upsample_slice"] == 12      # 3 x 4 plain tiles
    assert all(calls[u] == 1 for u in ("downsample", "gain", "gtm", "ltm", "chroma", "gamma", "upsample_fit"))
    assert all(t["seconds"] >= t["infer_seconds"] > 0 for t in timings.values())
    assert pipe.total_seconds == pytest.approx(sum(t["seconds"] for t in timings.values()))


def test_run_unit_tiles_and_stitching(pipe, reference_out):
    outs, info = pipe.run_unit("enhance", reference_out["srgb_upsampled"], keep_tiles=True)
    origins = [o for o, _ in info["tiles"]]
    assert origins == [(y, x) for y in (0, 96, 192) for x in (0, 96, 192, 288, 384)]
    assert M.psnr(outs[0], reference_out["srgb"]) >= 60.0
    (y0, x0), (tile,) = info["tiles"][7]
    assert tile.shape == (1, 3, 128, 128)
    with torch.inference_mode():
        ref_tile = pipe_reference_enhance(reference_out["srgb_upsampled"][..., y0:y0 + 128, x0:x0 + 128])
    assert M.psnr(tile, ref_tile) >= 60.0
    outs, info = pipe.run_unit("upsample_slice", reference_out["lsrgb"], reference_out["bgu_grid"], keep_tiles=True)
    assert len(info["tiles"]) == 12
    assert M.psnr(outs[0], reference_out["srgb_upsampled"]) >= 60.0    # reference grid + position-independent slice


def pipe_reference_enhance(x):
    from isp.registry import BuildConfig, build_stage
    return build_stage("enhance", BuildConfig(paths.weights_root()))(x)


def test_wrong_geometry_is_a_clear_error(pipe, frame):
    raw, illum, ccm = frame
    with pytest.raises(ValueError, match=r"raw is 256x256 but the artifacts were exported for 512x320: re-export "
                                         r"with --size 256x256 .*--fit crop"):
        pipe.run(raw[..., :256, :256], illum, ccm)
    with pytest.raises(ValueError, match=r"batch 1"):
        pipe.run(raw.expand(2, -1, -1, -1), illum, ccm)


def test_read_frame_fit(geometry):
    dng = paths.dng_dir() / FRAME
    with pytest.raises(ValueError, match=r"is 600x338 but the artifacts were exported for 512x320 .*--size 600x336 "
                                         r".*--fit crop"):
        read_frame(dng, geometry, fit="exact")
    raw, illum, ccm, img = read_frame(dng, geometry, fit="crop")
    assert raw.shape == (1, 3, 320, 512) and illum.shape == (1, 3) and ccm.shape == (1, 3, 3)
    assert tuple(img.crop) == (9, 44, 320, 512)
    assert center_crop_box((3000, 4000), (3000, 4000)) == [0, 0, 3000, 4000]
    with pytest.raises(ValueError, match="smaller than the export geometry"):
        center_crop_box((300, 400), (320, 512))


def test_selection_must_cover_every_unit(onnx_set):
    sel = ArtifactSet.open(onnx_set).select(units=["denoise", "color"])
    with pytest.raises(ValueError, match="lacks units"):
        ArtifactPipeline(sel)


# ------------------------------------------------------------------------------------------------- render CLI

def test_render_cli_writes_the_image(onnx_set, tmp_path, capsys, reference_out):
    out = tmp_path / "frame.png"
    code = render.main([str(paths.dng_dir() / FRAME), "-o", str(out), "--artifacts", str(onnx_set), "--fit", "crop",
                        "--prefer", "executorch,tflite,onnx", "--precision-prefer", "int8,fp16,fp32"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "wrote" in text and "onnx fp32" in text and "denoise_onnx_fp32.onnx" in text
    img = read_image(out)
    assert img.shape == (320, 512, 3)
    # 16-bit PNG of the artifact render ~ the reference render
    assert M.psnr(img, reference_out["srgb"][0].permute(1, 2, 0).numpy()) >= 60.0
    assert not list(tmp_path.glob(".*tmp"))                   # written atomically, nothing left behind


def test_render_cli_errors(onnx_set, tmp_path, capsys):
    dng = str(paths.dng_dir() / FRAME)
    code = render.main([dng, "-o", str(tmp_path / "x.jpg"), "--artifacts", str(onnx_set), "--quiet"])
    assert code == 2 and "--fit crop" in capsys.readouterr().err
    code = render.main([dng, "-o", str(tmp_path / "x.jpg"), "--artifacts", str(tmp_path / "none"), "--quiet"])
    assert code == 2 and "artifact folder not found" in capsys.readouterr().err
    code = render.main([dng, "-o", str(tmp_path / "x.jpg"), "--artifacts", str(onnx_set), "--fit", "crop",
                        "--quiet", "--prefer", "coreml"])
    assert code == 2 and "unit denoise: no artifact among targets coreml" in capsys.readouterr().err
    assert not (tmp_path / "x.jpg").exists()


@pytest.mark.parametrize("name", sorted(p.name for p in paths.dng_dir().glob("*.dng")) if paths.dng_dir().is_dir()
                         else [])
def test_render_every_shipped_dng_matches_the_reference(name, onnx_set, geometry, tmp_path, capsys):
    """``runtime_py.render`` on each shipped DNG (centre crop at the set's geometry) against the float32 reference
    render of the same crop: within the fp32 budget (60 dB) and a mean ΔE2000 far below 1."""
    from runtime_py.drift import EvalFrame, Reference
    out = tmp_path / "out.png"
    code = render.main([str(paths.dng_dir() / name), "-o", str(out), "--artifacts", str(onnx_set), "--fit", "crop",
                        "--no-orientation", "--quiet"])
    assert code == 0, capsys.readouterr().err
    raw, illum, ccm, _ = read_frame(paths.dng_dir() / name, geometry, fit="crop")
    with torch.inference_mode():
        ref = Reference(ArtifactSet.open(onnx_set)).intermediates(EvalFrame(name, raw, illum, ccm))["srgb"]
    img = torch.from_numpy(read_image(out)).permute(2, 0, 1)[None].float()
    cmp = M.compare(img, ref, "srgb")
    assert cmp["psnr"] >= 60.0 and cmp["de2000_mean"] < 0.1, cmp
