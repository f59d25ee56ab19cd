"""Image output/input (isp/io/image.py): 16-bit PNG and JPEG, atomic writes, read-back, EXIF orientation."""
from __future__ import annotations

import errno
import os
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from isp import atomic  # the atomic writer write_image uses
from isp.io.image import apply_orientation, decode_png, encode_png16, read_image, write_image


def _ramp(h=40, w=56):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x / (w - 1), y / (h - 1), 0.5 + 0 * x], axis=-1).astype(np.float32)


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


class TestPng16:
    def test_round_trip_bit_exact(self, tmp_path):
        codes = np.random.default_rng(0).integers(0, 65536, (37, 53, 3), dtype=np.uint16)
        img = codes.astype(np.float32) / 65535
        out = write_image(tmp_path / "a.png", img)
        back = read_image(out)
        assert back.dtype == np.float32 and back.shape == (37, 53, 3)
        np.testing.assert_array_equal(back, img)
        np.testing.assert_array_equal(np.rint(back.astype(np.float64) * 65535).astype(np.uint16), codes)
        # writing what was read gives the same file
        write_image(tmp_path / "b.png", back)
        assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()

    @pytest.mark.parametrize("kind", ["float64", "torch"])
    def test_inputs(self, tmp_path, kind):
        img = _ramp()
        arg = img.astype(np.float64) if kind == "float64" else torch.from_numpy(img)
        write_image(tmp_path / "x.png", arg)
        np.testing.assert_allclose(read_image(tmp_path / "x.png"), img, atol=0.5 / 65535 + 1e-7)

    def test_valid_png_for_other_readers(self, tmp_path):
        codes = np.random.default_rng(1).integers(0, 65536, (9, 11, 3), dtype=np.uint16)
        write_image(tmp_path / "c.png", codes / 65535.0)
        with Image.open(tmp_path / "c.png") as im:        # Pillow checks signature and CRCs, keeps the high byte
            im.load()
            assert im.size == (11, 9)
            np.testing.assert_array_equal(np.asarray(im), (codes >> 8).astype(np.uint8))
        raw = (tmp_path / "c.png").read_bytes()
        assert raw[24] == 16 and raw[25] == 2                # IHDR: bit depth 16, colour type RGB

    def test_rounding_and_clipping(self, tmp_path):
        vals = np.array([-0.5, 0.0, 0.49 / 65535, 0.51 / 65535, 1.0, 7.0], dtype=np.float64)
        img = np.repeat(vals[None, :, None], 3, axis=2)
        write_image(tmp_path / "r.png", img)
        codes = decode_png((tmp_path / "r.png").read_bytes())[0, :, 0]
        np.testing.assert_array_equal(codes, [0, 0, 0, 1, 65535, 65535])

    def test_compresses_smooth_images(self):
        data = encode_png16((_ramp(256, 256) * 65535).astype(np.uint16))
        assert len(data) < 256 * 256 * 6 / 4

    @pytest.mark.parametrize("ftype", [0, 1, 2, 3, 4])
    @pytest.mark.parametrize("depth", [8, 16])
    def test_decode_every_filter(self, ftype, depth):
        rng = np.random.default_rng(ftype)
        img = rng.integers(0, 1 << depth, (6, 7, 3)).astype(np.uint16 if depth == 16 else np.uint8)
        data = _png_with_filter(img, depth, ftype)
        np.testing.assert_array_equal(decode_png(data), img)

    def test_decode_errors(self):
        with pytest.raises(ValueError, match="not a PNG"):
            decode_png(b"GIF89a")
        good = encode_png16(np.zeros((4, 4, 3), np.uint16))
        with pytest.raises(ValueError, match="truncated|without IHDR"):
            decode_png(good[:40])


def _png_with_filter(img: np.ndarray, depth: int, ftype: int) -> bytes:
    """Reference PNG encoder with one filter type on every row (straight from the PNG spec, per byte)."""
    h, w, c = img.shape
    rows = img.astype(">u2").view(np.uint8).reshape(h, -1) if depth == 16 else img.reshape(h, -1)
    bpp = c * depth // 8
    out = b""
    prev = np.zeros(rows.shape[1], np.int64)
    for r in rows.astype(np.int64):
        f = np.zeros_like(r)
        for x in range(len(r)):
            a = r[x - bpp] if x >= bpp else 0
            b = prev[x]
            cc = prev[x - bpp] if x >= bpp else 0
            if ftype == 0:
                pred = 0
            elif ftype == 1:
                pred = a
            elif ftype == 2:
                pred = b
            elif ftype == 3:
                pred = (a + b) // 2
            else:
                p = a + b - cc
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - cc)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else cc)
            f[x] = (r[x] - pred) % 256
        out += bytes([ftype]) + f.astype(np.uint8).tobytes()
        prev = r

    def chunk(k, d):
        return struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d))
    ihdr = struct.pack(">IIBBBBB", w, h, depth, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(out)) + chunk(b"IEND", b"")


class TestJpeg:
    @pytest.mark.parametrize("ext", [".jpg", ".jpeg", ".JPG"])
    def test_write_read(self, tmp_path, ext):
        img = _ramp()
        out = write_image(tmp_path / f"o{ext}", img)
        with Image.open(out) as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == (56, 40)
        back = read_image(out)
        assert back.shape == img.shape and back.dtype == np.float32
        assert np.abs(back - img).mean() < 0.01

    def test_quality(self, tmp_path):
        img = np.random.default_rng(0).random((64, 64, 3))
        write_image(tmp_path / "lo.jpg", img, quality=30)
        write_image(tmp_path / "hi.jpg", img, quality=95)
        assert (tmp_path / "lo.jpg").stat().st_size < (tmp_path / "hi.jpg").stat().st_size
        for q in (0, 101, 9.5):
            with pytest.raises(ValueError, match="quality"):
                write_image(tmp_path / "q.jpg", img, quality=q)


class TestWriteErrors:
    def test_unsupported_extension(self, tmp_path):
        with pytest.raises(ValueError, match=r"unsupported image extension '\.tiff'") as exc:
            write_image(tmp_path / "o.tiff", _ramp())
        assert "o.tiff" in str(exc.value)
        with pytest.raises(ValueError, match="unsupported image extension"):
            write_image(tmp_path / "noext", _ramp())

    def test_missing_directory(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="does not exist") as exc:
            write_image(tmp_path / "missing" / "o.png", _ramp())
        assert "missing" in str(exc.value)

    @pytest.mark.parametrize("bad", [np.zeros((1, 3, 4, 4), np.float32), np.zeros((4, 4), np.float32),
                                     np.zeros((4, 4, 4), np.float32), np.zeros((4, 4, 3), np.uint8)])
    def test_bad_array(self, tmp_path, bad):
        with pytest.raises(ValueError, match="o.png"):
            write_image(tmp_path / "o.png", bad)

    def test_nan(self, tmp_path):
        img = _ramp()
        img[3, 3, 1] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            write_image(tmp_path / "o.png", img)
        assert not list(tmp_path.iterdir())


class TestAtomicWrite:
    @pytest.fixture
    def existing(self, tmp_path):
        path = tmp_path / "out.png"
        write_image(path, np.full((8, 8, 3), 0.25))
        return path, path.read_bytes()

    def _half_then(self, exc):
        real = atomic._write_all

        def failing(fd, data):
            real(fd, data[: len(data) // 2])
            raise exc
        return failing

    def test_crash_mid_write_keeps_old_file(self, tmp_path, monkeypatch, existing):
        path, before = existing
        monkeypatch.setattr(atomic, "_write_all", self._half_then(RuntimeError("power cut")))
        with pytest.raises(RuntimeError, match="power cut"):
            write_image(path, _ramp())
        assert path.read_bytes() == before
        assert _leftovers(tmp_path) == []

    def test_interrupt_mid_write(self, tmp_path, monkeypatch, existing):
        path, before = existing
        monkeypatch.setattr(atomic, "_write_all", self._half_then(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            write_image(path, _ramp())
        assert path.read_bytes() == before and _leftovers(tmp_path) == []

    def test_disk_full(self, tmp_path, monkeypatch, existing):
        path, before = existing
        monkeypatch.setattr(atomic, "_write_all",
                            self._half_then(OSError(errno.ENOSPC, "No space left on device")))
        with pytest.raises(OSError, match="disk full") as exc:
            write_image(path, _ramp())
        assert exc.value.errno == errno.ENOSPC
        assert str(path) in str(exc.value)
        assert path.read_bytes() == before and _leftovers(tmp_path) == []

    def test_new_file_not_created_on_failure(self, tmp_path, monkeypatch):
        monkeypatch.setattr(atomic, "_write_all", self._half_then(OSError(errno.ENOSPC, "full")))
        with pytest.raises(OSError):
            write_image(tmp_path / "new.jpg", _ramp())
        assert list(tmp_path.iterdir()) == []

    def test_replace_failure(self, tmp_path, monkeypatch, existing):
        path, before = existing

        def broken_replace(src, dst):
            raise OSError(errno.EXDEV, "cross-device link")
        monkeypatch.setattr(atomic.os, "replace", broken_replace)
        with pytest.raises(OSError):
            write_image(path, _ramp())
        assert path.read_bytes() == before and _leftovers(tmp_path) == []

    def test_overwrite_and_permissions(self, tmp_path, existing):
        path, before = existing
        write_image(path, _ramp())
        assert path.read_bytes() != before
        assert _leftovers(tmp_path) == []
        umask = os.umask(0)
        os.umask(umask)
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask     # like a plain open(), not mkstemp's 0600


class TestReadImage:
    def test_missing(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="x.png"):
            read_image(tmp_path / "x.png")

    def test_garbage(self, tmp_path):
        p = tmp_path / "g.jpg"
        p.write_text("not an image")
        with pytest.raises(ValueError, match="g.jpg"):
            read_image(p)

    def test_8bit_png_and_grey(self, tmp_path):
        rgb = (np.random.default_rng(0).random((5, 6, 3)) * 255).astype(np.uint8)
        Image.fromarray(rgb).save(tmp_path / "c.png")
        np.testing.assert_array_equal(read_image(tmp_path / "c.png"), rgb.astype(np.float32) / 255)
        Image.fromarray(rgb[..., 0]).save(tmp_path / "g.png")
        g = read_image(tmp_path / "g.png")
        assert g.shape == (5, 6, 3) and np.array_equal(g[..., 0], g[..., 2])


class TestOrientation:
    PIL_EQUIVALENT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                      4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                      6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}
    INVERSE = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6}

    @staticmethod
    def _img():
        return (np.arange(3 * 5 * 3).reshape(3, 5, 3) * 5).astype(np.uint8)

    @pytest.mark.parametrize("code", range(1, 9))
    def test_matches_pillow(self, code):
        img = self._img()
        expected = img if code == 1 else np.asarray(Image.fromarray(img).transpose(self.PIL_EQUIVALENT[code]))
        np.testing.assert_array_equal(apply_orientation(img, code), expected)

    @pytest.mark.parametrize("code", range(1, 9))
    def test_shapes_and_inverse(self, code):
        img = self._img()
        out = apply_orientation(img, code)
        assert out.shape == ((5, 3, 3) if code >= 5 else (3, 5, 3))
        np.testing.assert_array_equal(apply_orientation(out, self.INVERSE[code]), img)

    def test_rotation_6_is_clockwise(self):
        img = np.array([[1, 2], [3, 4]])
        np.testing.assert_array_equal(apply_orientation(img, 6), [[3, 1], [4, 2]])

    @pytest.mark.parametrize("code", range(1, 9))
    def test_torch_chw(self, code):
        img = self._img()
        t = torch.from_numpy(img).permute(2, 0, 1)[None]                    # (1, 3, H, W)
        out = apply_orientation(t, code, axes=(-2, -1))
        np.testing.assert_array_equal(out[0].permute(1, 2, 0).numpy(), apply_orientation(img, code))

    @pytest.mark.parametrize("code", [0, 9, -1])
    def test_invalid(self, code):
        with pytest.raises(ValueError, match="1..8"):
            apply_orientation(self._img(), code)


def test_png_from_non_contiguous_view_round_trips(tmp_path):
    """Views such as a CHW->HWC permute or a flipped array (orientation) must be written correctly."""
    chw = np.random.default_rng(0).random((3, 20, 30)).astype(np.float32)
    hwc_view = chw.transpose(1, 2, 0)[::-1, ::-1]
    out = write_image(tmp_path / "v.png", hwc_view)
    back = read_image(out)
    assert np.abs(back - hwc_view).max() <= 0.5 / 65535 + 1e-7


@pytest.mark.parametrize("bits", [8, 16])
def test_quantise_blockwise_equals_whole_frame_float64(bits, monkeypatch):
    """The block-by-block quantiser gives the codes of one float64 pass over the frame: exact .5 ties, values out of
    [0, 1], a block boundary inside the frame and a non-contiguous input included."""
    from isp.io import image
    monkeypatch.setattr(image, "QUANTISE_BLOCK", 1000)
    peak = (1 << bits) - 1
    rng = np.random.default_rng(3)
    frame = (rng.random((37, 29, 3), dtype=np.float32) * 1.4 - 0.2)
    frame[0, :12, 0] = [(np.float32(k) + np.float32(0.5)) / np.float32(peak) for k in range(12)]
    view = frame[:, ::-1]                                          # not C-contiguous
    want = np.rint(np.clip(view.astype(np.float64), 0.0, 1.0) * peak).astype(np.uint16 if bits == 16 else np.uint8)
    got = image._quantise(view, bits)
    assert got.dtype == want.dtype and got.shape == want.shape and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)
