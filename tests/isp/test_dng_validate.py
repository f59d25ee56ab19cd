"""Malformed and unusual DNGs (issue 9): each finding of the fuzz that found them, as a test.

Every bad file must raise :class:`isp.io.dng.DngError` (a ``ValueError``) whose one-line message names the file, the
tag and its IFD, before any pixel is decoded; the command lines that read DNGs exit 2 with one line, no traceback,
and leave an existing output file alone. Bad files are made from the shipped DNGs by patching IFD entries
(``tests/isp/dng_mutate.py``) or written small by ``test_dng._write_dng``.
"""
from __future__ import annotations

import math
import os
import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from isp import paths
from isp.io.dng import DngError, read_dng
from isp.io.dng_validate import MAX_OPCODES, DngLayout, check_libraw
from tests.isp.dng_mutate import entries, set_entry
from tests.isp.test_dng import _mosaic_of, _write_dng

DNG_DIR = paths.dng_dir() if paths.dng_dir().is_dir() else None
_NEED_SHARED = pytest.mark.skipif(DNG_DIR is None, reason="shared data folder (DNG samples) not found")
TILED = "astronaut_phone-a_d65_iso100.dng"        # one 1024x1024 uncompressed tile, IFD0 is the raw image
STRIPS = "canon550d_colorchart_real.dng"          # one strip, ActiveArea, EXIF IFD
LINEAR = "lg-g4_linear_real.dng"                  # preview IFD0, SubIFD raw (lossy JPEG tiles, OpcodeList2), EXIF


def _patched(tmp_path: Path, name: str, tag: int, *, typ=None, count=None, value: bytes | None = None,
             which: int = 0) -> Path:
    """Copy of a shipped DNG with the ``which``-th entry of ``tag`` given another type / count / value bytes."""
    data = (DNG_DIR / name).read_bytes()
    e, ents = entries(data)
    hits = [en for en in ents if en.tag == tag]
    assert hits, f"tag {tag} not in {name}"
    buf = bytearray(data)
    set_entry(buf, e, hits[which], typ, count, value)
    out = tmp_path / f"bad-{tag}-{name}"
    out.write_bytes(bytes(buf))
    return out


def _raises(path: Path, *fragments: str) -> str:
    """read_dng(path) raises DngError naming the file and every fragment; returns the message."""
    with pytest.raises(DngError) as exc:
        read_dng(path)
    msg = str(exc.value)
    assert msg.startswith(str(path)), msg
    assert "\n" not in msg
    for f in fragments:
        assert f in msg, f"{f!r} not in {msg!r}"
    return msg


def _f32(*vals) -> bytes:
    return struct.pack(f"<{len(vals)}f", *vals)


@_NEED_SHARED
class TestFindings:
    """The classes of failure the issue lists, one test each (they were tracebacks, unnamed or silent before)."""

    def test_new_subfile_type_count_2(self, tmp_path):         # was: TypeError int() of a tuple
        p = _patched(tmp_path, TILED, 254, typ=4, count=2, value=struct.pack("<2I", 0, 0))
        _raises(p, "NewSubFileType in IFD0", "2 values, expected 1")

    @pytest.mark.parametrize("tag,name", [(254, "NewSubFileType"), (324, "TileOffsets")])
    def test_inf_float_tags(self, tmp_path, tag, name):       # was: OverflowError
        p = _patched(tmp_path, TILED, tag, typ=11, count=1, value=_f32(math.inf))
        _raises(p, f"{name} in IFD0", "TIFF type FLOAT")

    @pytest.mark.parametrize("tag,name", [(330, "SubIFDs"), (34665, "ExifIFD")])
    def test_sbyte_ifd_pointers(self, tmp_path, tag, name):   # was: struct.error in read_tiff_ifds
        p = _patched(tmp_path, LINEAR, tag, typ=6)
        _raises(p, f"{name} in IFD0", "TIFF type SBYTE, expected LONG or IFD")

    def test_nan_cfa_repeat_pattern_dim(self, tmp_path):      # was: "cannot convert float NaN to integer"
        p = _patched(tmp_path, TILED, 33421, typ=11, count=2, value=_f32(math.nan, math.nan))
        _raises(p, "CFARepeatPatternDim in IFD0", "TIFF type FLOAT")

    def test_ascii_tile_offsets(self, tmp_path):               # was: "invalid literal for int()"
        p = _patched(tmp_path, TILED, 324, typ=2)
        _raises(p, "TileOffsets in IFD0", "TIFF type ASCII, expected SHORT or LONG")

    def test_nan_color_matrix(self, tmp_path):                  # was: accepted, the render failed at the end
        p = _patched(tmp_path, TILED, 50721, value=struct.pack("<18i", *([1, 0] * 9)))
        _raises(p, "ColorMatrix1 in IFD0", "value nan is not finite")
        q = _patched(tmp_path, TILED, 50721, typ=11, value=_f32(*([math.nan] * 9)))
        _raises(q, "ColorMatrix1 in IFD0", "TIFF type FLOAT, expected SRATIONAL")

    def test_inf_as_shot_neutral(self, tmp_path):               # was: accepted
        p = _patched(tmp_path, TILED, 50728, typ=5, value=struct.pack("<6I", 1, 0, 1, 1, 1, 1))
        _raises(p, "AsShotNeutral in IFD0", "not finite")
        q = _patched(tmp_path, TILED, 50728, typ=11, value=_f32(math.inf, 1.0, 1.0))
        _raises(q, "AsShotNeutral in IFD0", "TIFF type FLOAT")

    def test_1x1_dimensions(self, tmp_path):                    # was: 1130x1582 stripes, exit 0
        p = _patched(tmp_path, STRIPS, 256, typ=4, value=struct.pack("<I", 1))
        p = Path(p)
        data = bytearray(p.read_bytes())
        e, ents = entries(bytes(data))
        set_entry(data, e, next(en for en in ents if en.tag == 257), typ=4, value=struct.pack("<I", 1))
        p.write_bytes(bytes(data))
        _raises(p, "ImageWidth in IFD0", "value 1 out of range; expected 22 to 65535")

    def test_small_dimensions_on_bigger_raw(self, tmp_path):   # plausible but wrong size: the strip is too big
        p = _patched(tmp_path, STRIPS, 257, typ=4, value=struct.pack("<I", 64))
        _raises(p, "StripByteCounts in IFD0", "far larger than")

    @pytest.mark.parametrize("variant", ["byte-counts", "offsets"])
    def test_missing_lossless_jpeg_tiles(self, tmp_path, variant):   # was: black render after 3 minutes
        # the 1024x1024 tiled sample turned into 140 lossless-JPEG tiles of 74x103 with one 22-byte tile present
        data = bytearray((DNG_DIR / TILED).read_bytes())
        e, ents = entries(bytes(data))
        tag = {en.tag: en for en in ents}
        set_entry(data, e, tag[259], value=struct.pack("<H", 7))
        set_entry(data, e, tag[322], typ=3, value=struct.pack("<H", 74))
        set_entry(data, e, tag[323], typ=3, value=struct.pack("<H", 103))
        first = tag[324].value_pos if tag[324].nbytes > 4 else struct.unpack("<I", data[tag[324].pos + 8:][:4])[0]
        if variant == "byte-counts":
            offs, cnts = [first] * 140, [22] + [0] * 139
        else:
            offs, cnts = [10 ** 8 + 1000 * k for k in range(140)], [1000] * 140
        set_entry(data, e, tag[324], typ=4, count=140, value=struct.pack("<140I", *offs))
        e2, ents2 = entries(bytes(data))
        set_entry(data, e2, next(en for en in ents2 if en.tag == 325), typ=4, count=140,
                  value=struct.pack("<140I", *cnts))
        p = tmp_path / "ljpeg.dng"
        p.write_bytes(bytes(data))
        if variant == "byte-counts":
            _raises(p, "TileByteCounts in IFD0", "tile 0 of 140 holds 22 bytes, shorter than a 74x103 lossless JPEG")
        else:
            _raises(p, "TileOffsets in IFD0", "tile 0 of 140", "past the end of the file")

    def test_truncated_jpeg_tile(self, tmp_path):
        data = (DNG_DIR / LINEAR).read_bytes()
        e, ents = entries(data)
        counts = next(en for en in ents if en.tag == 325)
        old = struct.unpack(f"{e}2I", data[counts.value_pos:counts.value_pos + 8])
        p = _patched(tmp_path, LINEAR, 325, value=struct.pack(f"{e}2I", old[0], old[1] - 3000))
        _raises(p, "TileOffsets in IFD0/SubIFD", "tile 1 of 2", "no end-of-image marker")

    @pytest.mark.parametrize("count", [0xFFFFFFFF, MAX_OPCODES + 1, None])
    def test_corrupt_opcode_list_count(self, tmp_path, count):   # was: ~50 s inside LibRaw
        data = (DNG_DIR / LINEAR).read_bytes()
        e, ents = entries(data)
        op = next(en for en in ents if en.tag == 51009)
        real = struct.unpack(">I", data[op.value_pos:op.value_pos + 4])[0]
        count = real + 1 if count is None else count              # one more opcode than the list holds
        buf = bytearray(data)
        buf[op.value_pos:op.value_pos + 4] = struct.pack(">I", count)
        p = tmp_path / "opcodes.dng"
        p.write_bytes(bytes(buf))
        _raises(p, "OpcodeList2 in IFD0/SubIFD",
                f"opcode {real} of {count} starts" if count == real + 1 else f"{count} opcodes, expected at most")


    def test_opcode_list_count_zero(self, tmp_path):            # was: LibRaw parsed the offset as a list, > 30 s
        p = _patched(tmp_path, LINEAR, 51009, count=0)
        _raises(p, "OpcodeList2 in IFD0/SubIFD", "count 0")


@_NEED_SHARED
class TestMoreChecks:
    def test_orientation(self, tmp_path):
        assert read_dng(_patched(tmp_path, TILED, 274, value=struct.pack("<H", 0)), crop=[0, 0, 8, 8]) \
            .orientation == 1
        _raises(_patched(tmp_path, TILED, 274, value=struct.pack("<H", 9)), "Orientation in IFD0",
                "value 9 out of range; expected at most 8")

    def test_black_not_below_white(self, tmp_path):
        _raises(_patched(tmp_path, TILED, 50714, typ=4, value=struct.pack("<I", 5000)), "BlackLevel in IFD0",
                "not below the white level")

    def test_unused_nonfinite_tag_left_out_of_metadata(self, tmp_path):
        src = (DNG_DIR / TILED).read_bytes()
        assert 50730 in {en.tag for en in entries(src)[1]}           # BaselineExposure: not used by the decoder
        p = _patched(tmp_path, TILED, 50730, value=struct.pack("<2i", 3, 0))
        img = read_dng(p, crop=[0, 0, 8, 8])
        assert "BaselineExposure" not in img.metadata

    def test_libraw_size_mismatch(self, tmp_path):
        layout = DngLayout(raw_ifd=SimpleNamespace(kind="IFD0"), photometric=32803, width=1024, height=1024,
                           samples=1, bits=16, compression=1, active_area=(0, 0, 1024, 1024), orientation=1, order=[])
        sizes = SimpleNamespace(raw_width=1130, raw_height=1582, top_margin=0, left_margin=0, width=1130,
                                height=1582)
        rp = SimpleNamespace(sizes=sizes, black_level_per_channel=[64] * 4, white_level=1023)
        with pytest.raises(DngError, match=r"x.dng: ImageWidth in IFD0: LibRaw decoded a 1130x1582 raw image"):
            check_libraw(layout, rp, "x.dng")
        rp.sizes = SimpleNamespace(raw_width=1024, raw_height=1024, top_margin=0, left_margin=0, width=1024,
                                   height=1024)
        rp.black_level_per_channel = [2000] * 4
        with pytest.raises(DngError, match="black must be below white"):
            check_libraw(layout, rp, "x.dng")

    def test_all_zero_raw_data(self, tmp_path):
        p = _write_dng(tmp_path / "zeros.dng", np.zeros((24, 24), np.uint16), black=64)
        _raises(p, "decodes to all zeros although the black level is 64")

    def test_valid_small_file_still_decodes(self, tmp_path):
        scene = np.full((24, 24, 3), 0.5)
        img = read_dng(_write_dng(tmp_path / "ok.dng", _mosaic_of(scene, "RGGB")))
        assert img.shape == (24, 24) and np.all(np.isfinite(img.rgb))


# ------------------------------------------------------------------------------------------------ command lines


@pytest.fixture
def bad_dng(tmp_path):
    if DNG_DIR is None:
        pytest.skip("shared data folder (DNG samples) not found")
    return _patched(tmp_path, TILED, 50721, value=struct.pack("<18i", *([1, 0] * 9)))


def _one_error_line(err: str, path: Path) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {path}") and "ColorMatrix1" in lines[0], err
    assert "Traceback" not in err


class TestCommandLines:
    def test_isp_render_keeps_existing_output(self, bad_dng, tmp_path, capsys):
        from isp.cli import main
        out = tmp_path / "out.jpg"
        out.write_bytes(b"previous render")
        assert main(["render", str(bad_dng), "-o", str(out)]) == 2
        _one_error_line(capsys.readouterr().err, bad_dng)
        assert out.read_bytes() == b"previous render"
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([bad_dng.name, "out.jpg"])

    def test_isp_render_process(self, bad_dng, tmp_path):
        out = tmp_path / "new.png"
        r = subprocess.run([sys.executable, "-m", "isp", "render", str(bad_dng), "-o", str(out)],
                           capture_output=True, text=True, timeout=300,
                           env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
        assert r.returncode == 2
        _one_error_line(r.stderr, bad_dng)
        assert not out.exists()

    def test_runtime_render_read_frame(self, bad_dng):
        from runtime_py.pipeline import read_frame
        geometry = SimpleNamespace(size=(320, 512), width=512, height=320)
        for fit in ("exact", "crop"):
            with pytest.raises(DngError, match="ColorMatrix1 in IFD0") as exc:
                read_frame(bad_dng, geometry, fit)
            assert str(exc.value).startswith(str(bad_dng))

    def test_calibration_build(self, bad_dng, tmp_path, capsys):
        from calibration.__main__ import main
        folder = tmp_path / "dngs"
        folder.mkdir()
        bad = folder / bad_dng.name
        bad.write_bytes(bad_dng.read_bytes())
        out = tmp_path / "sets"
        assert main(["build", "--dngs", str(folder), "--out", str(out), "--size", "512x320", "--tile", "128",
                     "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and str(bad) in err and "ColorMatrix1 in IFD0" in err
        assert err.strip().splitlines()[-1].startswith("error: ")
        assert not (out / "calib").exists()
