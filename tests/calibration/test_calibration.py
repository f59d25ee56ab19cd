"""Calibration / evaluation sets: geometry, augmentation, capture, storage, loader and CLI.

Everything that runs the reference pipeline uses a 128x96 frame with 64-pixel tiles (quarter frame 32x24, six tiles
per frame) and at most a few frames, so the whole module stays well under a minute on a 2-core CPU.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from calibration import __main__ as cli
from calibration.augment import (AugmentConfig, ColorInfo, Geometry, apply_augmentation, draw_augmentation,
                                 parse_size, shift_illuminant, split_region)
from calibration.sets import (SourcePool, assign_sources, build_set, capture_frame, find_dngs, load_set,
                              plan_stages)
from isp.registry import get_stage
from isp.stages.upsample import bgu_fit_mobile, bgu_slice_mobile

W, H, TILE, OVERLAP, TPF = 128, 96, 64, 16, 2
GEOMETRY = Geometry(W, H, TILE, OVERLAP)
#: two small shipped DNGs: a real LinearRaw capture and a synthetic Bayer one
SMALL_DNGS = ("lg-g4_linear_real.dng", "chelsea_phone-a_mixed_iso400.dng")


def _expected_shape(template: str, rows: int, hw: tuple[int, int]) -> tuple[int, ...]:
    dims = {"B": rows, "H": hw[0], "W": hw[1], "H/4": hw[0] // 4, "W/4": hw[1] // 4}
    return tuple(dims[d] if d in dims else int(d) for d in template.split(","))


# ---------------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def dng_dir(shared_root, tmp_path_factory):
    """Two good DNGs and one truncated one."""
    from isp import paths
    d = tmp_path_factory.mktemp("dngs")
    for name in SMALL_DNGS:
        (d / name).symlink_to(paths.dng_dir() / name)
    data = (paths.dng_dir() / SMALL_DNGS[1]).read_bytes()
    (d / "zz_truncated.dng").write_bytes(data[:4096])
    return d


@pytest.fixture(scope="module")
def pipeline(weights_dir):
    from isp.pipeline import Pipeline
    return Pipeline(weights_dir, style=0, denoiser="s24_lite", tile=TILE, overlap=OVERLAP)


@pytest.fixture(scope="module")
def cli_build(dng_dir, tmp_path_factory):
    """``python -m calibration build`` end to end (in-process), stderr kept for the assertions."""
    out = tmp_path_factory.mktemp("sets")
    argv = ["build", "--dngs", str(dng_dir), "--out", str(out), "--size", f"{W}x{H}", "--tile", str(TILE),
            "--overlap", str(OVERLAP), "--count", "2", "--eval-count", "1", "--seed", "0",
            "--tiles-per-frame", str(TPF), "--quiet"]
    import contextlib
    import io
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = cli.main(argv)
    return {"rc": rc, "out": out, "stderr": err.getvalue()}


@pytest.fixture(scope="module")
def calib(cli_build):
    return load_set(cli_build["out"] / "calib")


@pytest.fixture(scope="module")
def evalset(cli_build):
    return load_set(cli_build["out"] / "eval")


# ---------------------------------------------------------------------------------------------------- geometry

class TestGeometry:
    def test_presets_and_wxh(self):
        assert parse_size("12mp") == (4000, 3000)
        assert parse_size("8MP") == (3264, 2448)
        assert parse_size("1080p") == (1920, 1080)
        assert parse_size("512x384") == (512, 384)

    @pytest.mark.parametrize("text,match", [("513x384", "multiples of 4"), ("512x386", "multiples of 4"),
                                            ("32x32", "at least 64"), ("big", "one of 12mp"), ("", "one of")])
    def test_invalid_size(self, text, match):
        with pytest.raises(ValueError, match=match):
            parse_size(text)

    def test_quarter_and_tiles(self):
        g = Geometry.from_size("12mp", tile=512, overlap=32)
        assert g.quarter == (750, 1000)                                # (H/4, W/4), rows first
        assert g.tile_shape == (512, 512)
        assert len(g.tiles) == 63
        assert GEOMETRY.quarter == (24, 32) and len(GEOMETRY.tiles) == 6
        assert Geometry(128, 96, 512, 32).tile_shape == (96, 128)     # a tile larger than the frame is clipped

    @pytest.mark.parametrize("kw", [dict(width=130, height=96), dict(width=128, height=96, tile=64, overlap=64),
                                    dict(width=128, height=96, tile=8, overlap=0)])
    def test_invalid_geometry(self, kw):
        with pytest.raises(ValueError):
            Geometry(**kw)


# ------------------------------------------------------------------------------------------------ augmentation

def _color(with_matrices: bool = True) -> ColorInfo:
    illum = np.array([0.45, 0.75, 0.48])
    if not with_matrices:
        return ColorInfo(illum / np.linalg.norm(illum))
    cm1 = np.array([[0.68, -0.18, -0.06], [-0.45, 1.25, 0.22], [-0.07, 0.16, 0.62]])       # D65-like
    cm2 = np.array([[0.75, -0.12, -0.10], [-0.52, 1.33, 0.21], [-0.14, 0.25, 0.45]])       # A-like
    return ColorInfo(illum / np.linalg.norm(illum), (cm1, cm2), (21, 17))


class TestAugment:
    def _image(self, h=50, w=70):
        return np.random.default_rng(1).uniform(0.0, 0.9, (h, w, 3)).astype(np.float32)

    def test_deterministic_given_seed(self):
        img = self._image()
        draws = [draw_augmentation(np.random.default_rng(s), "x", img.shape[:2], (0, 0, 50, 70), (40, 64), _color())
                 for s in (7, 7, 8)]
        assert draws[0] == draws[1] and draws[0] != draws[2]
        a = apply_augmentation(img, draws[0], (40, 64))
        b = apply_augmentation(img, draws[1], (40, 64))
        assert all(np.array_equal(u, v) for u, v in zip(a, b))

    def test_exposure_and_illuminant_are_applied_as_recorded(self):
        img = self._image()
        cfg = AugmentConfig(ev_range=(0.5, 0.5), mired_range=(30, 30), tint_range=(0, 0), flips=False)
        aug = draw_augmentation(np.random.default_rng(0), "x", img.shape[:2], (0, 0, 50, 70), (40, 64), _color(), cfg)
        assert aug.ev == 0.5 and aug.illum_method == "cct_tint"
        assert aug.cct[1] < aug.cct[0]                               # +30 mired = a warmer (lower CCT) light
        raw, illum = apply_augmentation(img, aug, (40, 64), saturation=2.0)
        assert np.allclose(illum, aug.illum) and np.isclose(np.linalg.norm(illum), 1.0)
        before, after = np.array(aug.illum_before), np.array(aug.illum)
        relight = (after / after[1]) / (before / before[1])
        assert np.allclose(aug.channel_gains, relight * 2 ** 0.5)
        y, x = aug.rows["start"], aug.cols["start"]
        crop = img[y:y + 40, x:x + 64].transpose(2, 0, 1)
        want = np.clip(crop * np.array(aug.channel_gains, dtype=np.float32)[:, None, None], 0.0, 1.0)
        assert np.allclose(raw, want, atol=1e-6)
        # a warmer light: the raw gets redder relative to green and bluer less so
        assert aug.channel_gains[0] / aug.channel_gains[1] > 1 > aug.channel_gains[2] / aug.channel_gains[1]

    def test_no_relight_moves_only_the_illuminant(self):
        img = self._image()
        cfg = AugmentConfig(ev_range=(0, 0), relight=False, flips=False)
        aug = draw_augmentation(np.random.default_rng(3), "x", img.shape[:2], (0, 0, 50, 70), (40, 64), _color(), cfg)
        raw, illum = apply_augmentation(img, aug, (40, 64))
        y, x = aug.rows["start"], aug.cols["start"]
        assert np.array_equal(raw, img[y:y + 40, x:x + 64].transpose(2, 0, 1))
        assert not np.allclose(illum, aug.illum_before)

    def test_zero_shift_is_identity_and_fallback_gain(self):
        c = _color()
        same, method, _, _ = shift_illuminant(c, 0.0, 0.0, np.zeros(3))
        assert method == "cct_tint" and np.allclose(same, c.illum, atol=1e-12)
        moved, method, cct, tint = shift_illuminant(_color(False), 25.0, 0.0, np.array([0.1, 0.0, -0.1]))
        assert method == "gain" and cct is None and tint is None
        assert np.isclose(np.linalg.norm(moved), 1.0) and not np.allclose(moved, c.illum)

    def test_saturation_clips_only_what_is_pushed_up(self):
        img = np.full((8, 8, 3), 0.5, np.float32)
        img[0, 0] = 0.97                                               # above saturation already
        cfg = AugmentConfig(ev_range=(1, 1), flips=False, relight=False)
        aug = draw_augmentation(np.random.default_rng(0), "x", (8, 8), (0, 0, 8, 8), (8, 8), _color(), cfg)
        raw, _ = apply_augmentation(img, aug, (8, 8), saturation=0.9)
        assert np.allclose(raw[:, 1:, :], 0.9) and np.allclose(raw[:, 0, 0], 0.97)
        aug_dark = draw_augmentation(np.random.default_rng(0), "x", (8, 8), (0, 0, 8, 8), (8, 8), _color(),
                                     AugmentConfig(ev_range=(-1, -1), flips=False, relight=False))
        raw, _ = apply_augmentation(img, aug_dark, (8, 8), saturation=0.9)
        assert np.allclose(raw[:, 0, 0], 0.485) and np.allclose(raw[:, 1, 1], 0.25)

    def test_small_region_is_mirror_tiled(self):
        img = self._image(10, 12)
        aug = draw_augmentation(np.random.default_rng(0), "x", (10, 12), (0, 0, 10, 12), (40, 64), _color(),
                                AugmentConfig(ev_range=(0, 0), flips=False, relight=False))
        assert aug.rows["mode"] == aug.cols["mode"] == "mirror"
        raw, _ = apply_augmentation(img, aug, (40, 64))
        assert raw.shape == (3, 40, 64)
        # periodic reflection 0 1 .. n-1 n-1 .. 1 0 0 1 .. from the recorded phase
        def mirror(start, n, m):
            k = (start + np.arange(m)) % (2 * n)
            return np.array([i if i < n else 2 * n - 1 - i for i in k])
        rows, cols = mirror(aug.rows["start"], 10, 40), mirror(aug.cols["start"], 12, 64)
        assert np.array_equal(raw, img[rows][:, cols].transpose(2, 0, 1))
        # neighbouring copies meet without a jump
        diff = np.abs(np.diff(raw, axis=2)).max()
        assert diff <= np.abs(np.diff(img, axis=1)).max() + 1e-6

    def test_split_regions_are_disjoint(self):
        for shape in ((338, 600), (601, 300), (5, 5)):
            a, b = split_region(shape, "first"), split_region(shape, "second")
            mask = np.zeros(shape, int)
            for y0, x0, h, w in (a, b):
                mask[y0:y0 + h, x0:x0 + w] += 1
            assert mask.max() == 1 and mask.min() == 1
        with pytest.raises(ValueError):
            split_region((10, 10), "third")


# ------------------------------------------------------------------------------------------------------ sources

class TestSources:
    def test_empty_or_missing_folder(self, tmp_path):
        with pytest.raises(ValueError, match="holds no .dng files"):
            find_dngs(tmp_path)
        with pytest.raises(ValueError, match="does not exist"):
            find_dngs(tmp_path / "nope")

    def test_corrupt_dng_skipped_with_warning(self, dng_dir):
        pool = SourcePool(find_dngs(dng_dir))
        with pytest.warns(UserWarning, match="zz_truncated.dng"):
            sources = pool.probe()
        assert [s.name for s in sources] == sorted(SMALL_DNGS)
        assert pool.skipped[0][0].name == "zz_truncated.dng"

    def test_no_usable_dng(self, tmp_path):
        (tmp_path / "bad.dng").write_bytes(b"II*\x00" + b"\x00" * 64)
        with pytest.warns(UserWarning, match="bad.dng"), pytest.raises(ValueError, match="no usable DNG"):
            SourcePool(find_dngs(tmp_path)).probe()

    def test_assignment_keeps_sets_apart(self, dng_dir):
        with pytest.warns(UserWarning):
            sources = SourcePool(find_dngs(dng_dir)).probe()
        mode, by_kind = assign_sources(sources, 4, 2, seed=0)
        assert mode == "sources"
        calib = {s.name for s, _ in by_kind["calib"]}
        evals = {s.name for s, _ in by_kind["eval"]}
        assert calib and evals and not calib & evals and len(by_kind["calib"]) == 4
        mode, by_kind = assign_sources(sources, 3, 3, seed=0, split="regions")
        assert {p for _, p in by_kind["calib"]} == {"first"} and {p for _, p in by_kind["eval"]} == {"second"}
        mode, by_kind = assign_sources(sources[:1], 2, 1, seed=0)
        assert mode == "regions"


# ------------------------------------------------------------------------------------------------ stage plans

class TestPlans:
    def test_plain_style(self):
        plans = {p.id: p for p in plan_stages(lut=False)}
        assert list(plans) == ["denoise", "color", "gain", "gtm", "ltm", "chroma", "gamma", "upsample", "enhance"]
        assert [a.name for a in plans["ltm"].inputs] == ["lsrgb_gain", "lsrgb_gtm"]
        assert [a.per for a in plans["color"].inputs] == ["tile", "frame", "frame"]
        assert [a.per for a in plans["upsample"].inputs] == ["tile", "frame", "frame"]
        assert plans["denoise"].tile_local and plans["color"].tile_local and plans["enhance"].tile_local
        assert not plans["upsample"].tile_local

    def test_lut_style_routes_chroma_through_the_lut(self):
        plans = {p.id: p for p in plan_stages(lut=True)}
        assert plans["lut3d"].inputs[0].source == "lsrgb_ltm"
        assert plans["chroma"].inputs[0].source == "lsrgb_lut"

    def test_lut_capture(self, weights_dir, dng_files):
        from isp.io.dng import read_dng
        from isp.pipeline import Pipeline
        pipe = Pipeline(weights_dir, style=1, tile=TILE, overlap=OVERLAP, enhance=False)
        plans = plan_stages(lut=True, enhance=False)
        r = read_dng(next(f for f in dng_files if f.name == SMALL_DNGS[0]))
        raw = r.raw_tensor()[..., :64, :64].contiguous()
        got, _ = capture_frame(pipe, plans, raw, torch.from_numpy(r.illum)[None], torch.from_numpy(r.ccm)[None],
                               [(0, 0)], (64, 64))
        lut_out = got["lut3d"][1]
        assert np.array_equal(got["chroma"][0], lut_out)
        assert not np.allclose(lut_out, got["lut3d"][0])
        out, lut = pipe.photofinishing[1]["chroma"](torch.from_numpy(got["chroma"][0]))
        assert torch.allclose(out, torch.from_numpy(got["chroma"][1]), atol=1e-6)


# ---------------------------------------------------------------------------------------------- built sets

class TestBuiltSets:
    def test_cli_end_to_end(self, cli_build):
        assert cli_build["rc"] == 0, cli_build["stderr"]
        assert "zz_truncated.dng" in cli_build["stderr"] and "warning" in cli_build["stderr"]
        for kind in ("calib", "eval"):
            d = cli_build["out"] / kind
            files = {p.name for p in d.iterdir()}
            assert {"set.json", "frames.npz", "gain.npz", "denoise.npz", "upsample.npz"} <= files
            assert not any(n.startswith(".") for n in files)             # no temporary leftovers
        m = json.loads((cli_build["out"] / "calib" / "set.json").read_text())
        assert m["skipped_sources"][0]["file"] == "zz_truncated.dng"
        assert m["pipeline"]["style"] == 0 and m["pipeline"]["denoiser"] == "s24_lite"
        assert m["geometry"]["width"] == W and m["geometry"]["quarter"] == [W // 4, H // 4]
        assert {"torch", "numpy", "rawpy", "python"} <= set(m["versions"])
        assert all(len(e["sha256"]) == 64 for e in m["stages"].values())

    def test_info(self, cli_build, capsys):
        assert cli.main(["info", str(cli_build["out"]), "--verify"]) == 0
        text = capsys.readouterr().out
        assert "calib set, 2 frame(s)" in text and "eval set, 1 frame(s)" in text
        assert "chroma_lut_param" in text and f"(4,3,{TILE},{TILE})" in text

    def test_shapes_match_geometry(self, calib, evalset):
        for cs, n in ((calib, 2), (evalset, 1)):
            assert cs.stages == ["denoise", "color", "gain", "gtm", "ltm", "chroma", "gamma", "upsample", "enhance"]
            for stage in cs.stages:
                spec = get_stage(stage)
                arrays = cs.arrays(stage)
                entry = cs.manifest["stages"][stage]
                full = spec.resolution == "full"
                assert entry["rows"] == (n * TPF if full else n)
                for group, specs in (("inputs", spec.inputs), ("outputs", spec.outputs)):
                    assert [a["name"] for a in entry[group]] == [t.name for t in specs]
                    for a, t in zip(entry[group], specs):
                        rows = n * TPF if a["per"] == "tile" else n
                        hw = (TILE, TILE) if a["per"] == "tile" else (H, W)
                        assert arrays[a["key"]].shape == _expected_shape(t.shape, rows, hw), (stage, a["key"])
                        assert arrays[a["key"]].dtype == np.float32
                if full:
                    origins = arrays["tile_origin"]
                    assert set(map(tuple, origins.tolist())) <= set(GEOMETRY.tiles)
                    assert arrays["frame_index"].tolist() == [i for i in range(n) for _ in range(TPF)]
            frames = cs.arrays("frames")
            assert frames["raw"].shape == (n, 3, H, W) and frames["srgb"].shape == (n, 3, H, W)
            assert frames["illum"].shape == (n, 3) and frames["ccm"].shape == (n, 3, 3)

    def test_loader_round_trip(self, calib):
        ins, outs = calib.stage_inputs("color"), calib.stage_outputs("color")
        assert len(ins) == len(outs) == 2 * TPF
        arrays = calib.arrays("color")
        for r, (den, illum, ccm) in enumerate(ins):
            f = int(arrays["frame_index"][r])
            assert den.shape == (1, 3, TILE, TILE) and illum.shape == (1, 3) and ccm.shape == (1, 3, 3)
            assert np.array_equal(den[0].numpy(), arrays["input_0"][r])
            assert np.array_equal(illum[0].numpy(), arrays["input_1"][f])
        gain_in = calib.stage_inputs("gain")
        assert len(gain_in) == 2 and gain_in[0][0].shape == (1, 3, H // 4, W // 4)
        assert calib.stage_outputs("gtm")[0][1].shape == (1, 3)
        frames = calib.frames()
        assert len(frames) == 2 and frames[1].raw.shape == (1, 3, H, W) and frames[-1].ccm.shape == (1, 3, 3)
        assert frames[0].augmentation == calib.samples[0]["augmentation"]
        assert calib.tile_origins("denoise")[0][0] == 0
        with pytest.raises(KeyError, match="lut3d"):
            calib.stage_inputs("lut3d")

    def test_stored_outputs_are_the_reference(self, calib, pipeline):
        """Each stage run on its stored inputs reproduces its stored outputs (tiles included)."""
        style = pipeline.photofinishing[0]
        for stage in ("gain", "gtm", "ltm", "chroma", "gamma", "denoise", "color", "enhance"):
            module = style[stage] if stage in style else getattr(pipeline, stage)
            for inputs, outputs in zip(calib.stage_inputs(stage), calib.stage_outputs(stage)):
                with torch.inference_mode():
                    got = module(*inputs)
                got = got if isinstance(got, tuple) else (got,)
                for g, want in zip(got, outputs):
                    assert torch.allclose(g, want, atol=2e-5), stage
        # upsample is not tile-local: its tile outputs are crops of the frame output, which the tiled slice
        # (offset + full size) reproduces from the stored quarter-resolution inputs
        for (lsrgb, ds, gout), (want,), (_f, y0, x0) in zip(calib.stage_inputs("upsample"),
                                                            calib.stage_outputs("upsample"),
                                                            calib.tile_origins("upsample")):
            got = bgu_slice_mobile(bgu_fit_mobile(ds, gout), lsrgb, offset=(y0, x0), full_size=(H, W))
            assert (got - want).abs().max() < 2e-3

    def test_frames_reproduce_from_recorded_augmentation(self, calib, dng_dir):
        from isp.io.dng import read_dng
        from calibration.augment import Augmentation, saturation_level
        for frame, sample in zip(calib.frames(), calib.samples):
            raw = read_dng(dng_dir / sample["source"])
            aug = Augmentation(**{**sample["augmentation"], "region": tuple(sample["augmentation"]["region"])})
            x, illum = apply_augmentation(raw.rgb, aug, (H, W), saturation_level(raw.black_level, raw.white_level))
            assert np.array_equal(frame.raw[0].numpy(), x)
            assert np.array_equal(frame.illum[0].numpy(), illum)
            assert np.allclose(np.linalg.norm(illum), 1.0, atol=1e-6)
            assert np.array_equal(frame.ccm[0].numpy(), raw.ccm)
            assert sample["augmentation"]["ev"] != 0.0
            assert sample["augmentation"]["illum"] != sample["augmentation"]["illum_before"]

    def test_calib_and_eval_disjoint(self, calib, evalset):
        c_src = {s["source"] for s in calib.samples}
        e_src = {s["source"] for s in evalset.samples}
        assert not c_src & e_src
        assert calib.manifest["split"]["mode"] == "sources"
        c_keys = {tuple(s["rng_key"]) for s in calib.samples}
        e_keys = {tuple(s["rng_key"]) for s in evalset.samples}
        assert not c_keys & e_keys

    def test_same_seed_same_arrays_other_seed_differs(self, calib, dng_dir, pipeline, tmp_path):
        with pytest.warns(UserWarning):
            pool = SourcePool(find_dngs(dng_dir))
            sources = pool.probe()
        _, by_kind = assign_sources(sources, 2, 1, seed=0)
        kw = dict(pool=pool, pipeline=pipeline, geometry=GEOMETRY, tiles_per_frame=TPF, progress=False)
        again = load_set(build_set("calib", by_kind["calib"][:1], tmp_path / "again", seed=0, **kw))
        other = load_set(build_set("calib", by_kind["calib"][:1], tmp_path / "other", seed=1, **kw))
        for stage in ("denoise", "gain", "ltm", "upsample"):
            a, b, c = calib.arrays(stage), again.arrays(stage), other.arrays(stage)
            for key in b:                      # sample 0 of the 2-frame CLI build == this 1-frame build
                assert np.array_equal(a[key][:len(b[key])], b[key]), (stage, key)
            assert not np.array_equal(b["input_0"], c["input_0"])
        assert again.samples[0]["augmentation"] == calib.samples[0]["augmentation"]

    def test_verify_detects_damage(self, cli_build, tmp_path):
        copy = tmp_path / "eval"
        shutil.copytree(cli_build["out"] / "eval", copy)
        data = bytearray((copy / "gain.npz").read_bytes())
        data[-10] ^= 0xFF
        (copy / "gain.npz").write_bytes(bytes(data))
        with pytest.raises(ValueError, match="gain.npz sha256 differs"):
            load_set(copy)
        assert load_set(copy, verify=False).stages
        with pytest.raises(ValueError, match="not a calibration set"):
            load_set(tmp_path)


# ------------------------------------------------------------------------------------------------- CLI errors

class TestCliErrors:
    def test_empty_folder(self, tmp_path, capsys):
        (tmp_path / "empty").mkdir()
        rc = cli.main(["build", "--dngs", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), "--size", "128x96"])
        assert rc == 2
        assert "holds no .dng files" in capsys.readouterr().err

    def test_invalid_size(self, tmp_path, capsys):
        with pytest.raises(SystemExit) as exc:
            cli.main(["build", "--out", str(tmp_path), "--size", "130x96"])
        assert exc.value.code == 2
        assert "multiples of 4" in capsys.readouterr().err

    def test_existing_output_needs_force(self, cli_build, dng_dir, capsys):
        rc = cli.main(["build", "--dngs", str(dng_dir), "--out", str(cli_build["out"]), "--size", "128x96"])
        assert rc == 2
        assert "already exists" in capsys.readouterr().err
