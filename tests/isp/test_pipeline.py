"""The composed pipeline: end-to-end golden parity, style mixing, edits, input validation, the render CLI."""
import numpy as np
import pytest
import torch

from isp.edits import Edits
from isp.metrics import psnr
from isp.pipeline import PHOTOFINISHING_STAGES, Pipeline, StyleMix


@pytest.fixture(scope="module")
def case(golden_cases):
    return next(c for c in golden_cases if c.style_id == 0 and "chelsea" in c.name)


@pytest.fixture(scope="module")
def pipe(weights_dir):
    return Pipeline(weights_dir, style=0, denoiser="s24_lite")


def _inputs(case):
    return case["raw"], case["illum"][None], case["ccm"][None]


def test_end_to_end_matches_golden(pipe, case):
    out = pipe.run(*_inputs(case))
    value = psnr(out["srgb"], case["srgb"])
    print(f"{case.name}: end-to-end srgb {value:.2f} dB")
    assert value >= 40.0
    for key in ("denoised_raw", "lsrgb", "gamma_out"):
        assert out[key].shape == case[key].shape


def test_keep_returns_only_those_and_the_same_image(pipe, case):
    """keep={"srgb"} (the CLI's bounded-memory render) drops the intermediates, not a bit of the result."""
    full = pipe.run(*_inputs(case))
    lean = pipe.run(*_inputs(case), keep={"srgb", "gamma_out"})
    assert set(lean) == {"srgb", "gamma_out"}
    assert torch.equal(lean["srgb"], full["srgb"]) and torch.equal(lean["gamma_out"], full["gamma_out"])


def test_progress_reports_every_step(pipe, case):
    seen = []
    pipe.run(*_inputs(case), progress=seen.append)
    assert tuple(seen) == pipe.steps


class TestStyleMix:
    def test_parse(self):
        mix = StyleMix.parse("1:0.5,5:0.5", {"chroma": "0:1"})
        assert mix.styles == [0, 1, 5]
        assert mix.normalised("gain") == {1: 0.5, 5: 0.5}
        assert mix.normalised("chroma") == {0: 1.0}
        for bad in ("1-0.5", "", "9:1"):
            with pytest.raises(ValueError):
                StyleMix.parse(bad)
        with pytest.raises(ValueError, match="stage"):
            StyleMix.parse(None, {"gain": "0:1"})

    def test_same_style_twice_equals_single(self, weights_dir, case, pipe):
        mixed = Pipeline(weights_dir, mix=StyleMix.parse("0:0.3,0:0.7"))   # dict keeps one entry: style 0
        ref = pipe.photofinish(case["lsrgb_ds"])
        got = mixed.photofinish(case["lsrgb_ds"])
        assert torch.allclose(got["gamma_out"], ref["gamma_out"], atol=1e-6)

    def test_blend_of_two_styles_is_between_them(self, weights_dir, case):
        x = case["lsrgb_ds"]
        a = Pipeline(weights_dir, style=2, use_lut=False).photofinish(x)
        b = Pipeline(weights_dir, style=4, use_lut=False).photofinish(x)
        mix = Pipeline(weights_dir, mix=StyleMix.parse("2:0.5,4:0.5"), use_lut=False).photofinish(x)
        assert torch.allclose(mix["gain_param"], 0.5 * (a["gain_param"] + b["gain_param"]), rtol=1e-5)
        assert torch.allclose(mix["gtm_param"], 0.5 * (a["gtm_param"] + b["gtm_param"]), rtol=1e-5)
        d_ab = (a["gamma_out"] - b["gamma_out"]).abs().mean()
        assert (mix["gamma_out"] - a["gamma_out"]).abs().mean() < d_ab
        assert (mix["gamma_out"] - b["gamma_out"]).abs().mean() < d_ab

    def test_zero_weight_switches_stage_off(self, weights_dir, case):
        weights = {s: {0: 1.0} for s in PHOTOFINISHING_STAGES}
        weights["gtm"] = {0: 0.0}
        out = Pipeline(weights_dir, mix=StyleMix(weights)).photofinish(case["lsrgb_ds"])
        assert torch.equal(out["lsrgb_gtm"], out["lsrgb_gain"])
        assert "gtm_param" not in out

    def test_lut_style_blend_with_plain_style(self, weights_dir, case):
        out = Pipeline(weights_dir, mix=StyleMix.parse("0:0.5,3:0.5")).photofinish(case["lsrgb_ds"])
        assert torch.isfinite(out["gamma_out"]).all()


class TestEdits:
    def test_each_edit_changes_the_image(self, pipe, case):
        x = case["lsrgb_ds"]
        base = pipe.photofinish(x)["gamma_out"]
        for name in ("contrast", "highlights", "shadows", "vibrance", "saturation"):
            got = pipe.photofinish(x, Edits(**{name: 0.8}))["gamma_out"]
            assert (got - base).abs().max() > 1e-3, name

    def test_strengths_blend(self, pipe, case):
        raw, illum, ccm = _inputs(case)
        crop = (raw[..., :128, :128], illum, ccm)
        full = pipe.run(*crop)
        none = pipe.run(*crop, edits=Edits(denoise=0.0, enhance=0.0))
        assert torch.equal(none["srgb"], none["srgb_upsampled"])
        assert not torch.allclose(full["lsrgb"], none["lsrgb"])

    def test_exposure_scales_raw(self, pipe, case):
        raw, illum, ccm = _inputs(case)
        crop = (raw[..., :128, :128], illum, ccm)
        a = pipe.run(*crop, edits=Edits(denoise=0.0))["lsrgb"]
        b = pipe.run(*crop, edits=Edits(denoise=0.0, ev=1.0))["lsrgb"]
        inside = a < 0.4
        assert torch.allclose(b[inside], 2 * a[inside], rtol=1e-4, atol=1e-6)


class TestValidation:
    @pytest.mark.parametrize("shape,match", [((3, 64, 64), "B, 3, H, W"), ((1, 4, 64, 64), "B, 3, H, W"),
                                             ((1, 3, 32, 64), "at least")])
    def test_bad_raw(self, pipe, shape, match):
        with pytest.raises(ValueError, match=match):
            pipe.run(torch.rand(shape), torch.rand(1, 3), torch.eye(3)[None])

    def test_bad_metadata_shapes(self, pipe):
        raw = torch.rand(1, 3, 64, 64)
        with pytest.raises(ValueError, match="illum"):
            pipe.run(raw, torch.rand(3), torch.eye(3)[None])
        with pytest.raises(ValueError, match="ccm"):
            pipe.run(raw, torch.rand(1, 3), torch.eye(3))

    def test_nan_rejected(self, pipe):
        raw = torch.rand(1, 3, 64, 64)
        raw[0, 0, 0, 0] = float("nan")
        with pytest.raises(ValueError, match="NaN"):
            pipe.run(raw, torch.rand(1, 3), torch.eye(3)[None])


def test_tiled_full_resolution_networks_match_untiled(weights_dir, case):
    raw, illum, ccm = _inputs(case)
    ref = Pipeline(weights_dir).run(raw, illum, ccm)
    tiled = Pipeline(weights_dir, tile=256, overlap=64).run(raw, illum, ccm)
    value = psnr(tiled["srgb"], ref["srgb"])
    print(f"tiled (256, overlap 64) vs whole frame: {value:.2f} dB")
    assert value > 40.0


def test_render_cli_writes_jpeg_and_png(tmp_path, dng_files, weights_dir):
    from isp.cli import main
    from isp.io.image import read_image
    src = next(f for f in dng_files if "chelsea" in f.name)
    jpg, png = tmp_path / "o.jpg", tmp_path / "o.png"
    assert main(["render", str(src), "-o", str(jpg), "--style", "3", "--saturation", "0.2"]) == 0
    assert main(["render", str(src), "-o", str(png), "--no-enhance", "--denoise-strength", "0.5"]) == 0
    a, b = read_image(jpg), read_image(png)
    assert a.shape == b.shape and a.shape[2] == 3
    assert not list(tmp_path.glob(".*tmp*"))
    assert main(["render", str(src), "-o", str(tmp_path / "x.jpg"), "--contrast", "2"]) == 2
    assert not (tmp_path / "x.jpg").exists()
    bad = tmp_path / "bad.dng"
    bad.write_bytes(b"not a dng")
    assert main(["render", str(bad), "-o", str(tmp_path / "y.jpg")]) == 2
