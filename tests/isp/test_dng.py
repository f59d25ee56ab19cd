"""DNG input (isp/io/dng.py), Menon 2007 demosaicing (isp/io/demosaic.py), colour metadata (isp/io/color_metadata.py).

Golden parity: ``read_dng(source, crop=golden crop)`` must reproduce each golden file's ``raw`` (>= 60 dB; it is
bit-exact today), ``illum`` and ``ccm`` (max abs diff < 1e-4). Bad files are made in tmp_path: garbage, truncated
copies, copies with a tag renamed away, and small DNGs written by ``_write_dng`` below (BGGR/GBRG, X-Trans,
orientation, AsShotWhiteXY...), which LibRaw decodes like any other DNG.
"""
from __future__ import annotations

import json
import struct
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from isp import paths
from isp.io import color_metadata as cm
from isp.io.demosaic import BAYER_PATTERNS, bayer_masks, demosaic_bilinear, demosaic_menon2007
from isp.io.dng_write import write_cfa_dng
from isp.io.dng import RawImage, cfa_string, read_dng, read_tiff_ifds, shift_cfa
from isp.metrics import psnr

# ------------------------------------------------------------------------------------------------ shared data


def _shared_files(sub: str, pattern: str) -> list[Path]:
    try:
        return sorted((paths.shared_root() / sub).glob(pattern))
    except FileNotFoundError:
        return []


DNG_FILES = _shared_files("data/dng", "*.dng")
GOLDEN_FILES = _shared_files("golden", "*.npz")
_NEED_SHARED = pytest.mark.skipif(not DNG_FILES, reason="shared data folder (DNG samples) not found")


def _ids(files):
    return [f.stem for f in files] or ["no-shared-data"]


def _params(files):
    return files or [None]


@lru_cache(maxsize=None)
def _decoded(path: Path) -> RawImage:
    return read_dng(path)


@lru_cache(maxsize=1)
def _manifest() -> dict[str, dict]:
    return {e["file"]: e for e in json.loads((paths.dng_dir() / "manifest.json").read_text())}


def _expected_cfa(path: Path) -> str:
    entry = _manifest().get(path.name, {})
    if "linear" in path.name:
        return "LinearRaw"
    return entry.get("cfa", "RGGB")      # README: synthetic ones are RGGB unless noted; the Canon is RGGB


# ------------------------------------------------------------------------------------------------ DNG writer

_write_dng = write_cfa_dng   # the project's writer (isp/io/dng_write.py), as the benchmarks use it


def _mosaic_of(rgb: np.ndarray, pattern: str, black=64, white=1023) -> np.ndarray:
    """Sample an (H, W, 3) image in [0, 1] through a Bayer pattern into 16-bit DNs."""
    masks = bayer_masks(rgb.shape[:2], pattern)
    plane = sum(np.where(m, rgb[..., c], 0.0) for c, m in enumerate(masks))
    return np.round(black + plane * (white - black)).astype(np.uint16)


def _patch_tag(src: Path, dst: Path, tag: int, new_tag: int = 65000) -> Path:
    """Copy ``src`` with every IFD entry ``tag`` renamed to an unknown private tag (i.e. removed)."""
    data = bytearray(src.read_bytes())
    e = "<" if data[:2] == b"II" else ">"
    hits = 0
    for ifd in read_tiff_ifds(bytes(data), src):
        (n,) = struct.unpack(f"{e}H", data[ifd.offset:ifd.offset + 2])
        for k in range(n):
            p = ifd.offset + 2 + 12 * k
            if struct.unpack(f"{e}H", data[p:p + 2])[0] == tag:
                data[p:p + 2] = struct.pack(f"{e}H", new_tag)
                hits += 1
    assert hits, f"tag {tag} not found in {src}"
    dst.write_bytes(bytes(data))
    return dst


# ------------------------------------------------------------------------------------------------ tests


@_NEED_SHARED
class TestReadDngSamples:
    """Every sample DNG decodes with the expected shape, range, CFA and colour metadata."""

    @pytest.mark.parametrize("path", _params(DNG_FILES), ids=_ids(DNG_FILES))
    def test_decodes(self, path):
        img = _decoded(path)
        size = _manifest()[path.name]["size"]
        assert img.rgb.shape == (size[0], size[1], 3)
        assert img.rgb.dtype == np.float32
        assert np.isfinite(img.rgb).all()
        assert img.rgb.min() >= 0.0 and img.rgb.max() <= 1.0
        assert img.rgb.max() > 0.01                      # not an all-black decode
        assert img.full_size == (size[0], size[1]) and img.crop is None
        assert img.raw_tensor().shape == (1, 3, size[0], size[1])

    @pytest.mark.parametrize("path", _params(DNG_FILES), ids=_ids(DNG_FILES))
    def test_cfa(self, path):
        assert _decoded(path).cfa == _expected_cfa(path)

    @pytest.mark.parametrize("path", _params(DNG_FILES), ids=_ids(DNG_FILES))
    def test_color(self, path):
        img = _decoded(path)
        assert img.illum.shape == (3,) and img.illum.dtype == np.float32
        assert abs(float(np.linalg.norm(img.illum)) - 1.0) < 1e-6
        assert (img.illum > 0).all()
        # illum is AsShotNeutral up to scale
        n = img.as_shot_neutral / np.linalg.norm(img.as_shot_neutral)
        np.testing.assert_allclose(img.illum, n, atol=1e-7)
        # the as-shot CCM maps camera white to sRGB white: rows sum to 1
        assert img.ccm.shape == (3, 3) and img.ccm.dtype == np.float32
        np.testing.assert_allclose(img.ccm.sum(axis=1), 1.0, atol=1e-5)
        entry = _manifest()[path.name]
        if "as_shot_neutral" in entry:
            np.testing.assert_allclose(img.as_shot_neutral, entry["as_shot_neutral"], atol=1e-4)

    @pytest.mark.parametrize("path", _params(DNG_FILES), ids=_ids(DNG_FILES))
    def test_matches_libraw(self, path):
        """Our CCM / illum from parsed tags equal what LibRaw derives (rawpy color_matrix, camera_whitebalance)."""
        import rawpy
        img = _decoded(path)
        with rawpy.imread(str(path)) as rp:
            np.testing.assert_allclose(img.ccm, rp.color_matrix[:, :3], atol=1e-5)
            gains = np.asarray(rp.camera_whitebalance[:3], dtype=np.float64)
            ill = (1.0 / gains) / np.linalg.norm(1.0 / gains)
            np.testing.assert_allclose(img.illum, ill, atol=1e-6)
            assert img.white_level == float(rp.white_level)

    @pytest.mark.parametrize("path", _params(DNG_FILES), ids=_ids(DNG_FILES))
    def test_metadata(self, path):
        img = _decoded(path)
        assert 1 <= img.orientation <= 8
        assert img.make and img.model
        for key in ("DNGVersion", "ColorMatrix1", "AsShotNeutral", "ImageWidth"):
            assert key in img.metadata, key
        mats = img.color_matrices()
        assert mats["ColorMatrix1"].shape == (3, 3)

    def test_real_phone_metadata(self):
        img = _decoded(paths.dng_dir() / "lg-g4_linear_real.dng")
        assert img.cfa == "LinearRaw"
        assert (img.make, img.model) == ("LG Mobile", "LG-H815")
        assert img.iso == 50 and img.exposure_time == pytest.approx(1 / 2000) and img.f_number == pytest.approx(1.8)
        mats = img.color_matrices()
        assert {"ForwardMatrix1", "ForwardMatrix2", "ColorMatrix2", "CameraCalibration1"} <= set(mats)
        assert (mats["CalibrationIlluminant1"], mats["CalibrationIlluminant2"]) == (21, 17)

    def test_canon_levels(self):
        img = _decoded(paths.dng_dir() / "canon550d_colorchart_real.dng")
        assert img.black_level[:3] == (2056.0, 2056.0, 2056.0) and img.white_level == 15000.0
        assert img.iso is None and img.exposure_time is None    # the file stores 0: "not present"
        # (white - black) / white is the brightest value the normalisation can produce
        assert img.rgb.max() <= (15000 - 2056) / 15000 + 1e-6


@pytest.mark.skipif(not GOLDEN_FILES, reason="shared golden folder not found")
class TestGoldenParity:
    @pytest.mark.parametrize("golden", _params(GOLDEN_FILES), ids=_ids(GOLDEN_FILES))
    def test_raw_illum_ccm(self, golden):
        with np.load(golden) as z:
            source, crop, cfa = str(z["source"]), [int(v) for v in z["crop"]], str(z["cfa"])
            raw, illum, ccm = z["raw"][0].transpose(1, 2, 0), z["illum"], z["ccm"]
        img = read_dng(paths.dng_dir() / source, crop=crop)
        assert img.cfa == cfa
        assert img.crop == tuple(crop)
        assert psnr(img.rgb, raw) >= 60.0
        assert float(np.abs(img.illum - illum).max()) < 1e-4
        assert float(np.abs(img.ccm - ccm).max()) < 1e-4


@_NEED_SHARED
class TestCrop:
    def test_crop_equals_demosaic_of_cut(self):
        path = paths.dng_dir() / "chelsea_phone-a_mixed_iso400.dng"
        a = read_dng(path, crop=[100, 200, 64, 96])
        b = read_dng(path, crop=[0, 0, 600, 900])
        assert a.rgb.shape == (64, 96, 3) and b.rgb.shape == (600, 900, 3)
        np.testing.assert_array_equal(b.rgb, _decoded(path).rgb)

    @pytest.mark.parametrize("dy,dx", [(0, 1), (1, 0), (1, 1)])
    def test_odd_offset_rephases_cfa(self, dy, dx):
        import rawpy
        path = paths.dng_dir() / "astronaut_phone-a_d65_iso100.dng"
        img = read_dng(path, crop=[10 + dy, 20 + dx, 40, 50])
        assert img.cfa == shift_cfa("RGGB", dy, dx)
        with rawpy.imread(str(path)) as rp:
            dn = rp.raw_image_visible[10 + dy:50 + dy, 20 + dx:70 + dx].astype(np.float32)
        norm = np.clip((dn - 64) / np.float32(1023), 0, 1)
        # every photosite keeps its own sample in its own channel
        for c, mask in enumerate(bayer_masks(dn.shape, img.cfa)):
            np.testing.assert_allclose(img.rgb[..., c][mask], norm[mask], atol=1e-7)

    @pytest.mark.parametrize("crop", [[-1, 0, 10, 10], [0, 0, 2000, 10], [0, 0, 2, 10], [1, 2, 3], "abc"])
    def test_bad_crop(self, crop):
        path = paths.dng_dir() / "chelsea_phone-a_mixed_iso400.dng"
        with pytest.raises(ValueError, match="crop") as exc:
            read_dng(path, crop=crop)
        assert str(path) in str(exc.value)


class TestErrors:
    def test_missing_file(self, tmp_path):
        p = tmp_path / "nope.dng"
        with pytest.raises(FileNotFoundError, match="nope.dng"):
            read_dng(p)

    def test_directory(self, tmp_path):
        with pytest.raises(ValueError, match="not a regular file"):
            read_dng(tmp_path)

    @pytest.mark.parametrize("content", [b"hello, this is a text file\n" * 20, b"", b"II*\0", b"\x89PNG\r\n\x1a\n" * 4])
    def test_garbage(self, tmp_path, content):
        p = tmp_path / "notes.dng"
        p.write_bytes(content)
        with pytest.raises(ValueError, match="not a DNG/TIFF") as exc:
            read_dng(p)
        assert str(p) in str(exc.value)

    @_NEED_SHARED
    @pytest.mark.parametrize("fraction", [0.5, 0.95])
    @pytest.mark.parametrize("name", ["astronaut_phone-a_d65_iso100.dng", "canon550d_colorchart_real.dng",
                                      "lg-g4_linear_real.dng"])
    def test_truncated(self, tmp_path, name, fraction):
        data = (paths.dng_dir() / name).read_bytes()
        p = tmp_path / f"cut_{name}"
        p.write_bytes(data[:int(len(data) * fraction)])
        with pytest.raises(ValueError, match="truncated") as exc:
            read_dng(p)
        assert str(p) in str(exc.value)

    @_NEED_SHARED
    def test_truncated_inside_header(self, tmp_path):
        p = tmp_path / "head.dng"
        p.write_bytes((paths.dng_dir() / "astronaut_phone-a_d65_iso100.dng").read_bytes()[:120])
        with pytest.raises(ValueError, match="truncated or corrupt"):
            read_dng(p)

    @_NEED_SHARED
    def test_missing_as_shot_neutral(self, tmp_path):
        p = _patch_tag(paths.dng_dir() / "coffee_phone-a_tungsten_iso800.dng", tmp_path / "no_asn.dng", 50728)
        with pytest.raises(ValueError, match="AsShotNeutral") as exc:
            read_dng(p)
        assert str(p) in str(exc.value)

    @_NEED_SHARED
    def test_missing_color_matrix(self, tmp_path):
        src = paths.dng_dir() / "coffee_phone-a_tungsten_iso800.dng"
        p = _patch_tag(src, tmp_path / "half.dng", 50721)
        p = _patch_tag(p, tmp_path / "no_cm.dng", 50722)
        with pytest.raises(ValueError, match="ColorMatrix") as exc:
            read_dng(p)
        assert str(p) in str(exc.value)

    @_NEED_SHARED
    def test_only_color_matrix2_is_used(self, tmp_path):
        """Without ColorMatrix1 the remaining matrix (illuminant A here) defines the CCM."""
        p = _patch_tag(paths.dng_dir() / "coffee_phone-a_tungsten_iso800.dng", tmp_path / "cm2.dng", 50721)
        img = read_dng(p, crop=[0, 0, 8, 8])
        cm2 = np.asarray(img.metadata["ColorMatrix2"]).reshape(3, 3)
        np.testing.assert_allclose(img.ccm, cm.ccm_from_color_matrix(cm2), atol=1e-6)

    def test_not_a_dng(self, tmp_path):
        p = _write_dng(tmp_path / "plain.tif", np.zeros((24, 24), np.uint16), dng=False)
        with pytest.raises(ValueError, match="not a DNG"):
            read_dng(p)

    def test_xtrans(self, tmp_path):
        xtrans = [1, 1, 0, 1, 1, 2, 1, 1, 2, 1, 1, 0, 2, 0, 1, 0, 2, 1,
                  1, 1, 2, 1, 1, 0, 1, 1, 0, 1, 1, 2, 0, 2, 1, 2, 0, 1]
        p = _write_dng(tmp_path / "fuji.dng", np.zeros((24, 24), np.uint16), cfa=xtrans, cfa_dim=(6, 6))
        with pytest.raises(ValueError, match="X-Trans") as exc:
            read_dng(p)
        assert str(p) in str(exc.value) and "6x6" in str(exc.value)

    def test_non_bayer_2x2(self, tmp_path):
        p = _write_dng(tmp_path / "odd.dng", np.zeros((24, 24), np.uint16), cfa=(0, 1, 2, 1))
        with pytest.raises(ValueError, match="unsupported CFA pattern 'RGBG'") as exc:
            read_dng(p)
        assert str(p) in str(exc.value)

    def test_cmyg(self, tmp_path):
        p = _write_dng(tmp_path / "cmyg.dng", np.zeros((24, 24), np.uint16), cfa=(0, 1, 2, 3),
                       extra={50710: (1, [3, 4, 5, 1])})
        with pytest.raises(ValueError, match="unsupported CFA pattern 'CMYG'"):
            read_dng(p)

    def test_cfa_string(self):
        assert cfa_string([[0, 1], [3, 2]], "RGBG") == "RGGB"
        assert cfa_string([[1, 0], [2, 3]], "RGBG") == "GRBG"
        with pytest.raises(ValueError, match="X-Trans"):
            cfa_string(np.zeros((6, 6), int))
        with pytest.raises(ValueError, match="unsupported CFA pattern"):
            cfa_string([[0, 1], [2, 3]], "CMYG")


class TestSyntheticDng:
    """DNGs written here: every Bayer arrangement, orientation and capture tags, AsShotWhiteXY."""

    @staticmethod
    def _scene(h=48, w=64):
        y, x = np.mgrid[0:h, 0:w] / max(h, w)
        return np.stack([0.2 + 0.5 * x, 0.3 + 0.4 * y, 0.6 - 0.3 * x * y], axis=-1)

    @pytest.mark.parametrize("pattern", BAYER_PATTERNS)
    def test_every_bayer_pattern(self, tmp_path, pattern):
        codes = {"R": 0, "G": 1, "B": 2}
        scene = self._scene()
        p = _write_dng(tmp_path / f"{pattern}.dng", _mosaic_of(scene, pattern), cfa=[codes[c] for c in pattern])
        img = read_dng(p)
        assert img.cfa == pattern
        expected = (scene * (1023 - 64) / 1023)
        # a smooth scene is reconstructed closely away from the 2-px border
        err = np.abs(img.rgb - expected)[4:-4, 4:-4].max()
        assert err < 2e-3, err

    @pytest.mark.parametrize("pattern", BAYER_PATTERNS)
    def test_flat_field_exact(self, tmp_path, pattern):
        codes = {"R": 0, "G": 1, "B": 2}
        scene = np.broadcast_to(np.array([0.25, 0.5, 0.125]), (32, 40, 3))   # LibRaw wants >= 22 px
        p = _write_dng(tmp_path / "flat.dng", _mosaic_of(scene, pattern, black=0, white=1024), black=0,
                       white=1024, cfa=[codes[c] for c in pattern])
        np.testing.assert_allclose(read_dng(p).rgb, scene, atol=1e-7)

    def test_orientation_and_capture_tags(self, tmp_path):
        extra = {274: (3, [6]), 34855: (3, [400]), 33434: (5, [1, 120]), 33437: (5, [18, 10]),
                 37386: (5, [55, 10])}
        p = _write_dng(tmp_path / "tags.dng", _mosaic_of(self._scene(), "RGGB"), extra=extra)
        img = read_dng(p)
        assert img.orientation == 6
        assert img.iso == 400 and img.exposure_time == pytest.approx(1 / 120)
        assert img.f_number == pytest.approx(1.8) and img.focal_length == pytest.approx(5.5)
        assert (img.make, img.model) == ("Test", "writer")
        assert not img.is_galaxy_s24

    def test_galaxy_s24_detection(self, tmp_path):
        def ascii_tag(text):
            return (2, text.encode() + b"\0")
        extra = {271: ascii_tag("samsung"), 272: ascii_tag("Galaxy S24 Ultra"), 33437: (5, [17, 10]),
                 37386: (5, [63, 10])}
        p = _write_dng(tmp_path / "s24.dng", _mosaic_of(self._scene(), "RGGB"), extra=extra)
        assert read_dng(p).is_galaxy_s24
        extra[37386] = (5, [230, 10])                       # the 3x telephoto: not the main camera
        p = _write_dng(tmp_path / "tele.dng", _mosaic_of(self._scene(), "RGGB"), extra=extra)
        assert not read_dng(p).is_galaxy_s24

    def test_as_shot_white_xy_fallback(self, tmp_path):
        xy = (0.3127, 0.3290)                                   # D65
        p = _write_dng(tmp_path / "xy.dng", _mosaic_of(self._scene(), "RGGB"), drop=(50728,),
                       extra={50729: (5, [3127, 10000, 3290, 10000])})
        img = read_dng(p)
        cm1 = np.asarray(img.metadata["ColorMatrix1"]).reshape(3, 3)
        np.testing.assert_allclose(img.as_shot_neutral, cm.neutral_from_white_xy(xy, cm1), atol=1e-9)
        assert abs(np.linalg.norm(img.illum) - 1) < 1e-6

    def test_bad_neutral(self, tmp_path):
        p = _write_dng(tmp_path / "neg.dng", _mosaic_of(self._scene(), "RGGB"), as_shot_neutral=(0.0, 1.0, 0.5))
        with pytest.raises(ValueError, match="AsShotNeutral"):
            read_dng(p)


class TestDemosaic:
    def _mosaic(self, seed=0, shape=(96, 128)):
        return np.random.default_rng(seed).random(shape)

    @pytest.mark.parametrize("pattern", BAYER_PATTERNS)
    def test_keeps_own_samples(self, pattern):
        m = self._mosaic()
        out = demosaic_menon2007(m, pattern)
        assert out.shape == m.shape + (3,) and out.dtype == np.float64
        for c, mask in enumerate(bayer_masks(m.shape, pattern)):
            np.testing.assert_array_equal(out[..., c][mask], m[mask])

    @pytest.mark.parametrize("pattern", BAYER_PATTERNS)
    def test_tiled_is_bit_identical(self, pattern):
        m = self._mosaic(1, (150, 170))
        ref = demosaic_menon2007(m, pattern, tile=None)
        for tile in (8, 40, 64):
            np.testing.assert_array_equal(demosaic_menon2007(m, pattern, tile=tile), ref)
        # blocks in parallel, clipped and cast block by block: the values of clipping and casting afterwards
        got = demosaic_menon2007(m, pattern, tile=40, threads=3, clip=(0.0, 1.0), dtype=np.float32)
        np.testing.assert_array_equal(got, np.clip(ref, 0.0, 1.0).astype(np.float32))

    def test_row_filter_equals_scipy(self, monkeypatch):
        """The whole-row vertical filter gives scipy's values exactly, alone and through the whole demosaic."""
        from scipy.ndimage import convolve1d
        from isp.io import demosaic as dm
        rng = np.random.default_rng(4)
        for shape in ((3, 5), (4, 7), (37, 41), (96, 2)):
            x = rng.random(shape) - 0.1
            for k in (dm._H0, dm._H1, dm._PAIR_MEAN, dm._MEAN3):
                np.testing.assert_array_equal(dm._v(x, k), convolve1d(x, k, axis=0, mode="mirror"))
        m = self._mosaic(5, (70, 90))
        fast = {p: demosaic_menon2007(m, p, tile=None) for p in BAYER_PATTERNS}
        monkeypatch.setattr(dm, "_v", lambda x, k: convolve1d(x, k, axis=0, mode="mirror"))
        for p in BAYER_PATTERNS:
            np.testing.assert_array_equal(fast[p], demosaic_menon2007(m, p, tile=None))

    def test_pattern_shift_consistency(self):
        """Dropping the first column of an RGGB mosaic gives a GRBG mosaic of the same scene: the interiors agree."""
        m = self._mosaic(2)
        a = demosaic_menon2007(m, "RGGB")[:, 1:]
        b = demosaic_menon2007(m[:, 1:], "GRBG")
        np.testing.assert_allclose(a[12:-12, 12:-12], b[12:-12, 12:-12], atol=1e-12)
        c = demosaic_menon2007(m[1:, 1:], "BGGR")
        np.testing.assert_allclose(demosaic_menon2007(m, "RGGB")[1:, 1:][12:-12, 12:-12], c[12:-12, 12:-12],
                                   atol=1e-12)

    def test_no_refine_differs(self):
        m = self._mosaic(3)
        assert not np.array_equal(demosaic_menon2007(m, refine=False), demosaic_menon2007(m))

    def test_better_than_bilinear_on_edges(self):
        y, x = np.mgrid[0:64, 0:64]
        scene = np.stack([(x // 4) % 2 * 0.8 + 0.1, (y * 0 + x // 4) % 2 * 0.7 + 0.2, 0.5 + 0 * x], -1)
        m = sum(np.where(k, scene[..., c], 0) for c, k in enumerate(bayer_masks((64, 64), "RGGB")))
        err_menon = np.abs(demosaic_menon2007(m) - scene)[4:-4, 4:-4].mean()
        err_bilinear = np.abs(demosaic_bilinear(m) - scene)[4:-4, 4:-4].mean()
        assert err_menon < err_bilinear

    def test_bad_input(self):
        with pytest.raises(ValueError, match="2-D"):
            demosaic_menon2007(np.zeros((4, 4, 3)))
        with pytest.raises(ValueError, match="at least 3x3"):
            demosaic_menon2007(np.zeros((2, 8)))
        with pytest.raises(ValueError, match="unsupported Bayer pattern"):
            demosaic_menon2007(np.zeros((8, 8)), "RGBG")



class TestColorMetadata:
    CM1 = np.array([0.6013, 0.0561, -0.1283, -0.6654, 1.5953, 0.0561, -0.2485, 0.5772, 0.4008]).reshape(3, 3)
    CM2 = np.array([1.0494, -0.2624, -0.2907, -0.4822, 1.4182, 0.0567, -0.0709, 0.2553, 0.5105]).reshape(3, 3)

    def test_illuminant_from_neutral(self):
        ill = cm.illuminant_from_neutral([0.5, 1.0, 0.7])
        assert abs(np.linalg.norm(ill) - 1) < 1e-12
        np.testing.assert_allclose(cm.wb_gains(ill), [2.0, 1.0, 1 / 0.7])
        for bad in ([0.0, 1.0, 1.0], [-1, 1, 1], [np.nan, 1, 1]):
            with pytest.raises(ValueError):
                cm.illuminant_from_neutral(bad)

    def test_select_color_matrix(self):
        a, b = object(), object()
        assert cm.select_color_matrix([a, b], [21, 17]) == 0
        assert cm.select_color_matrix([a, b], [17, 21]) == 1
        assert cm.select_color_matrix([a, b], [17, 23]) == 1          # D50 counts as daylight
        assert cm.select_color_matrix([a, b], [17, 12]) == 1          # neither: the last one
        assert cm.select_color_matrix([a, b], [None, None]) == 1
        assert cm.select_color_matrix([a, None], [None, None]) == 0
        with pytest.raises(ValueError):
            cm.select_color_matrix([None, None], [21, 17])

    def test_ccm_from_color_matrix(self):
        ccm = cm.ccm_from_color_matrix(self.CM1)
        np.testing.assert_allclose(ccm.sum(axis=1), 1.0, atol=1e-12)
        # diagonal calibration / analog balance scale camera rows only, which the row normalisation cancels
        np.testing.assert_allclose(cm.ccm_from_color_matrix(self.CM1, np.diag([0.9, 1, 1.1]), [1.2, 1, 0.8]), ccm,
                                   atol=1e-12)
        with pytest.raises(ValueError, match="singular"):
            cm.ccm_from_color_matrix([[1, 1, 0], [1, 1, 0], [0, 0, 1]])

    def test_cct_of_standard_whites(self):
        assert cm.xyz_to_cct([0.95047, 1.0, 1.08883]) == pytest.approx(6504, abs=5)    # D65
        assert cm.xyz_to_cct([1.09850, 1.0, 0.35585]) == pytest.approx(2856, abs=5)    # A
        assert cm.xyz_to_cct([0, 0, 0]) == -1

    def test_cct_of_camera_neutral(self):
        d65_neutral = self.CM1 @ np.array([0.95047, 1.0, 1.08883])
        assert cm.cct_from_raw_rgb(d65_neutral, self.CM1, self.CM2, (21, 17)) == pytest.approx(6504, rel=0.005)

    @pytest.mark.parametrize("cct", [2900.0, 3500.0, 5000.0, 6400.0])
    @pytest.mark.parametrize("tint", [-0.004, 0.0, 0.003])
    def test_cct_tint_round_trip(self, cct, tint):
        raw = cm.raw_rgb_from_cct_tint(cct, tint, self.CM1, self.CM2, (21, 17))
        assert raw[1] == pytest.approx(1.0)
        c, t = cm.cct_tint_from_raw_rgb(raw, self.CM1, self.CM2, (21, 17))
        assert c == pytest.approx(cct, rel=0.01)
        assert t == pytest.approx(tint, abs=1e-4)

    def test_forward_matrix_ccm(self):
        fm1 = np.array([0.8203, -0.2188, 0.3594, 0.3438, 0.5703, 0.0938, 0.0156, -0.7266, 1.5391]).reshape(3, 3)
        fm2 = np.array([0.6797, -0.0781, 0.3594, 0.2109, 0.7031, 0.0859, -0.0469, -0.8281, 1.6953]).reshape(3, 3)
        d65 = self.CM1 @ np.array([0.95047, 1.0, 1.08883])
        ccm = cm.ccm_from_forward_matrices(fm1, fm2, d65, self.CM1, self.CM2, (21, 17))
        np.testing.assert_allclose(ccm, cm.XYZ_D50_TO_SRGB @ fm1, atol=2e-3)   # CCT ~6504 -> FM1
        # the rows sum to ~1 only as far as these forward matrices map (1, 1, 1) to D50 (1/128-quantised here)
        np.testing.assert_allclose(ccm.sum(axis=1), 1.0, atol=0.03)
        tungsten = cm.ccm_from_forward_matrices(fm1, fm2, self.CM2 @ [1.0985, 1.0, 0.35585], self.CM1, self.CM2)
        np.testing.assert_allclose(tungsten, cm.XYZ_D50_TO_SRGB @ fm2, atol=2e-3)

    def test_interpolation_clamps(self):
        m1, m2 = np.eye(3), 2 * np.eye(3)
        np.testing.assert_allclose(cm.interpolate_by_cct(m1, m2, 20000, (21, 17)), m1)
        np.testing.assert_allclose(cm.interpolate_by_cct(m1, m2, 1000, (21, 17)), m2)
        mid = cm.interpolate_by_cct(m1, m2, 2 / (1 / 6504 + 1 / 2856), (21, 17))
        np.testing.assert_allclose(mid, 1.5 * np.eye(3))
        with pytest.raises(ValueError, match="calibration illuminant"):
            cm.interpolate_by_cct(m1, m2, 5000, (21, 99))
