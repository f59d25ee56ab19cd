"""Raw-JPEG adapter and the raw-in-JPEG container: golden parity of encoder and decoder, the official side-data
string and raw JPEG bytes, shapes, functional == module, torch.export, round trips through files, damaged files,
atomic writes, and the render CLI (--store-raw, re-render, linearized PNG)."""
from __future__ import annotations

import functools
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from isp.checkpoints import count_parameters
from isp.io import raw_container as rc
from isp.io.dng import RawImage
from isp.metrics import psnr
from isp.registry import BuildConfig, build_stage, get_stage
from isp.stages.raw_jpeg import (QUALITIES, RawJpegDecoder, apply_lut, decode_image, encode_image, invert_lut,
                                 invert_lut_segments, normalize_lut, to_uint8)

MIN_DB = 60.0


@functools.lru_cache(maxsize=None)
def _encoder(weights: str, q: int):
    return build_stage("raw_jpeg_encode", BuildConfig(weights, raw_quality=q))


@pytest.fixture(scope="module")
def jpeg_files(golden_ext):
    return golden_ext("jpeg_")


def _raw_image(rgb: np.ndarray, name="x.dng", orientation=1) -> RawImage:
    illum = np.array([0.5, 0.7, 0.5], np.float32)
    return RawImage(path=Path(name), rgb=rgb, cfa="LinearRaw", black_level=(0.0, 0.0, 0.0), white_level=1.0,
                    as_shot_neutral=illum / illum[1], illum=illum / np.linalg.norm(illum),
                    ccm=np.array([[1.5, -0.3, -0.2], [-0.2, 1.4, -0.2], [0.0, -0.5, 1.5]], np.float32),
                    orientation=orientation, make="maker", model="cam", iso=400.0, exposure_time=0.01)


def _smooth_raw(h=96, w=128, seed=0) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(1, 3, h // 16, w // 16, generator=g) * 0.8
    return np.ascontiguousarray(torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear",
                                                                align_corners=False)[0].permute(1, 2, 0).numpy())


class TestGoldenParity:
    @pytest.mark.parametrize("q", QUALITIES)
    def test_encoder_and_decoder(self, weights_dir, jpeg_files, q):
        enc = _encoder(str(weights_dir), q)
        for f in jpeg_files:
            z = np.load(f)
            k = lambda key: torch.from_numpy(np.asarray(z[f"q{q}_{key}"], np.float32))  # noqa: E731
            with torch.inference_mode():
                proc, gamma_map, lut = enc(torch.from_numpy(z["raw"]))
                rec = decode_image(torch.from_numpy(z[f"q{q}_decoded_u8"]).permute(2, 0, 1)[None] / 255.0,
                                   k("gamma_map"), k("lut"))
            db = {"gamma_map": psnr(gamma_map, k("gamma_map"), data_range=float(k("gamma_map").max())),
                  "lut": psnr(lut, k("lut"), data_range=float(k("lut").abs().max())),
                  "raw_proc": psnr(proc, k("raw_proc")),          # golden stored as float16: ~82 dB
                  "rec_raw": psnr(rec[0].permute(1, 2, 0), k("rec_raw"))}
            u8 = to_uint8(proc)
            differ = int((u8 != z[f"q{q}_jpeg_input_u8"]).sum())
            print(f"raw_jpeg q{q} {f.stem}: {db}, truncated pixels differing: {differ}")
            assert min(db.values()) >= MIN_DB, db
            assert differ <= 4 and np.abs(u8.astype(int) - z[f"q{q}_jpeg_input_u8"]).max() <= 1

    def test_side_data_string_and_raw_jpeg_bytes(self, jpeg_files):
        z = np.load(jpeg_files[0])
        for q in QUALITIES:
            comment = str(z[f"q{q}_comment"])
            assert rc.encode_params(z[f"q{q}_gamma_map"], z[f"q{q}_lut"]) == comment
            g, lut = rc.decode_params(comment)
            assert np.array_equal(g, z[f"q{q}_decoded_gamma_map"]) and np.array_equal(lut, z[f"q{q}_decoded_lut"])
            ours = rc.encode_raw_jpeg(z[f"q{q}_jpeg_input_u8"], comment, q)
            if ours != z[f"q{q}_raw_jpeg_bytes"].tobytes():
                pytest.skip("this Pillow's libjpeg writes other bytes than the official one (pixels still checked)")
            assert np.array_equal(rc.decode_jpeg_u8(ours), z[f"q{q}_decoded_u8"])

    def test_reads_the_official_layout(self, weights_dir, jpeg_files, tmp_path):
        from isp.io.image import encode_jpeg
        from isp.sources import decode_stored_raw
        z = np.load(jpeg_files[1])
        data = (encode_jpeg(np.full((8, 8, 3), 0.5, np.float32)) + str(z["q50_payload_header"]).encode()
                + z["q50_raw_jpeg_bytes"].tobytes() + b'\nMETA\n{"illum_color": [0.5, 1, 0.6], "ccm": '
                + str(np.eye(3).tolist()).encode() + b', "orientation": 6}')
        data = data.replace(b"1\n0\n", b"1\n1\n", 1)                 # announce the metadata
        f = tmp_path / "official.jpg"
        f.write_bytes(data)
        stored = rc.read_embedded_raw(f)
        assert stored.layout == "official"
        img = decode_stored_raw(f, stored, weights_dir)
        assert img.orientation == 6 and np.allclose(img.illum / img.illum[1], [0.5, 1, 0.6], atol=1e-6)
        assert psnr(torch.from_numpy(img.rgb), torch.from_numpy(z["q50_rec_raw"])) >= MIN_DB


class TestOperators:
    def test_lut_inverse_round_trip(self):
        g = torch.Generator().manual_seed(3)
        knots = normalize_lut(torch.randn(2, 3, 129, generator=g))
        assert torch.all(knots[..., 0] == 0) and torch.all(knots[..., -1] == 1)
        assert torch.all(knots[..., 1:] >= knots[..., :-1])
        x = torch.rand(2, 3, 20, 30, generator=g)
        x[0, 0, 0, :4] = torch.tensor([0.0, 1.0, 0.5, 1 / 128])
        assert torch.allclose(invert_lut(apply_lut(x, knots), knots), x, atol=2e-5)

    def test_encode_decode_without_jpeg_is_near_lossless(self, weights_dir):
        raw = torch.from_numpy(_smooth_raw()).permute(2, 0, 1)[None]
        with torch.inference_mode():
            proc, gamma_map, lut = _encoder(str(weights_dir), 95)(raw)
            rec = decode_image(proc, gamma_map, lut)
        assert psnr(rec, raw) > 80.0

    @pytest.mark.parametrize("shape", [(1, 3, 37, 53), (2, 3, 64, 64), (1, 3, 300, 120)])
    def test_shapes(self, weights_dir, shape):
        x = torch.rand(*shape) * 0.9
        with torch.inference_mode():
            proc, gamma_map, lut = _encoder(str(weights_dir), 25)(x)
            rec = RawJpegDecoder()(proc, gamma_map, lut)
        assert proc.shape == shape and rec.shape == shape
        assert gamma_map.shape == (shape[0], 1, 100, 100) and lut.shape == (shape[0], 3, 129)
        assert float(gamma_map.min()) >= np.exp(-2) - 1e-6 and float(gamma_map.max()) <= np.exp(2) + 1e-5

    def test_functional_equals_module(self, weights_dir):
        x = torch.rand(1, 3, 50, 70, generator=torch.Generator().manual_seed(4))
        enc = _encoder(str(weights_dir), 75)
        with torch.inference_mode():
            proc, gamma_map, lut = enc(x)
            assert torch.equal(proc, encode_image(x, gamma_map, lut))
            g2, l2 = enc.params(x)
            assert torch.equal(g2, gamma_map) and torch.equal(l2, lut)
            assert torch.equal(RawJpegDecoder()(proc, gamma_map, lut), decode_image(proc, gamma_map, lut))

    def test_param_counts_and_registry(self, weights_dir):
        for q in QUALITIES:
            assert count_parameters(_encoder(str(weights_dir), q)) == 32_076
        assert count_parameters(build_stage("raw_jpeg_decode", BuildConfig(weights_dir))) == 0
        assert get_stage("raw_jpeg_decode").input_names == ("raw_jpeg", "gamma_map", "lut")
        with pytest.raises(ValueError, match="quality"):
            build_stage("raw_jpeg_encode", BuildConfig(weights_dir, raw_quality=80))

    def test_torch_export(self, weights_dir):
        x = torch.rand(1, 3, 64, 80)
        enc = _encoder(str(weights_dir), 50)
        ep = torch.export.export(enc, (x,), strict=True)
        with torch.inference_mode():
            ref = enc(x)
        for a, b in zip(ep.module()(x), ref):
            assert torch.allclose(a, b, atol=1e-6)
        dec = RawJpegDecoder().eval()
        args = (ref[0], ref[1], ref[2])
        ep = torch.export.export(dec, args, strict=True)
        assert torch.allclose(ep.module()(*args), dec(*args), atol=1e-6)


class TestMobileDecoder:
    def test_equals_reference_on_golden_and_random(self, jpeg_files):
        z = np.load(jpeg_files[0])
        for q in QUALITIES:
            args = (torch.from_numpy(z[f"q{q}_decoded_u8"]).permute(2, 0, 1)[None] / 255.0,
                    torch.from_numpy(z[f"q{q}_gamma_map"]), torch.from_numpy(z[f"q{q}_lut"]))
            mob = RawJpegDecoder("mobile")(*args)
            assert psnr(mob[0].permute(1, 2, 0), torch.from_numpy(z[f"q{q}_rec_raw"])) > 100.0
        g = torch.Generator().manual_seed(7)
        knots = normalize_lut(3 * torch.randn(1, 3, 129, generator=g))
        v = torch.cat([torch.rand(1, 3, 50, 40, generator=g), knots[..., :40].reshape(1, 3, 1, 40)], dim=2)
        assert (invert_lut_segments(v, knots) - invert_lut(v, knots)).abs().max() < 1e-5

    def test_exports_without_search_gather_or_pow(self):
        g = torch.Generator().manual_seed(8)
        args = (torch.rand(1, 3, 32, 48, generator=g), torch.exp(torch.randn(1, 1, 100, 100, generator=g)),
                torch.randn(1, 3, 129, generator=g))
        dec = RawJpegDecoder("mobile").eval()
        ep = torch.export.export(dec, args, strict=True)
        ops = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
        assert not any(k in op for op in ops for k in ("searchsorted", "gather", "pow")), ops
        assert torch.allclose(ep.module()(*args), RawJpegDecoder()(*args), atol=1e-5)
        with pytest.raises(ValueError, match="lookup"):
            RawJpegDecoder("fast")


class TestContainer:
    def _write(self, weights_dir, tmp_path, q=50, name="out.jpg", orientation=1, rgb=None) -> tuple[Path, RawImage]:
        from isp.sources import store_raw
        img = _raw_image(_smooth_raw() if rgb is None else rgb, orientation=orientation)
        f = tmp_path / name
        store_raw(f, np.full((40, 60, 3), 0.3, np.float32), img, raw_quality=q, weights=weights_dir)
        return f, img

    def test_round_trip(self, weights_dir, tmp_path):
        from PIL import Image

        from isp.sources import load_source
        f, img = self._write(weights_dir, tmp_path, orientation=6)
        with Image.open(f) as im:                        # still an ordinary JPEG of the rendered image
            assert im.size == (60, 40)
        back, kind = load_source(f, weights_dir)
        assert kind == "stored-raw" and back.rgb.shape == img.rgb.shape
        assert psnr(torch.from_numpy(back.rgb), torch.from_numpy(img.rgb)) > 32.0    # q50 on a tiny crop: ~38 dB
        assert np.allclose(back.illum, img.illum, atol=1e-7) and np.allclose(back.ccm, img.ccm)
        assert back.orientation == 6 and back.make == "maker" and back.iso == 400.0
        assert back.metadata["stored_raw"]["raw_quality"] == 50

    def test_segments_are_valid_jpeg_markers(self, weights_dir, tmp_path):
        f, _ = self._write(weights_dir, tmp_path)
        data = f.read_bytes()
        segs, end = rc.jpeg_segments(data, f)
        ours = [s for s in segs if s[0] == rc.APP_MARKER]
        assert len(ours) >= 1 and end == len(data)
        assert all(b - a <= 0xFFFF - 2 for _, a, b in ours)
        assert segs[0][0] == 0xE0                         # JFIF APP0 stays first

    def _damage(self, weights_dir, tmp_path, how):
        noisy = np.random.default_rng(0).random((256, 256, 3), dtype=np.float32)   # a payload of 2+ segments
        f, _ = self._write(weights_dir, tmp_path, rgb=noisy if how == "drop" else None)
        data = bytearray(f.read_bytes())
        segs, _ = rc.jpeg_segments(bytes(data), f)
        ours = [s for s in segs if s[0] == rc.APP_MARKER]
        assert how != "drop" or len(ours) >= 2
        _, a, b = ours[-1]
        if how == "flip":
            data[b - 100] ^= 0x55
        elif how == "drop":
            data = data[:a - 4] + data[b:]
        elif how == "version":
            data[a + len(rc.IDENTIFIER)] = 9
        f.write_bytes(bytes(data))
        return f

    @pytest.mark.parametrize("how,msg", [("flip", "CRC-32"), ("drop", "missing|payload is"),
                                         ("version", "version 9")])
    def test_damaged_raw_is_a_clear_error(self, weights_dir, tmp_path, how, msg):
        from isp.sources import load_source
        f = self._damage(weights_dir, tmp_path, how)
        with pytest.raises(ValueError, match=msg) as info:
            load_source(f, weights_dir)
        assert str(f) in str(info.value)

    def test_damaged_raw_cli_error(self, weights_dir, tmp_path, capsys):
        from isp.cli import main
        f = self._damage(weights_dir, tmp_path, "flip")
        assert main(["render", str(f), "-o", str(tmp_path / "x.jpg"), "--weights", str(weights_dir)]) == 2
        err = capsys.readouterr().err
        assert str(f) in err and "damaged" in err
        assert not (tmp_path / "x.jpg").exists()

    def test_corrupt_side_data(self):
        with pytest.raises(ValueError, match="5"):
            rc.decode_params("a:b")
        with pytest.raises(ValueError, match="corrupt"):
            rc.decode_params("ZABkAAEA:!!!:$:AQADAIEA:eNo=", "f.jpg")

    def test_write_is_atomic(self, weights_dir, tmp_path, monkeypatch):
        f, _ = self._write(weights_dir, tmp_path)
        before = f.read_bytes()

        def boom(*a, **k):
            raise OSError(28, "No space left on device")
        import isp.atomic as atomic_mod
        monkeypatch.setattr(atomic_mod.os, "fsync", boom)
        with pytest.raises(OSError, match="disk full"):
            self._write(weights_dir, tmp_path)
        assert f.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jpg"]

    def test_plain_files_carry_no_raw(self, tmp_path):
        from isp.io.image import encode_jpeg
        f = tmp_path / "p.jpg"
        f.write_bytes(encode_jpeg(np.zeros((8, 8, 3), np.float32)) + b"trailing junk\n")
        assert rc.read_embedded_raw(f) is None
        assert rc.read_embedded_raw(tmp_path / "q.png", b"\x89PNG\r\n\x1a\n") is None

    def test_large_payload_spans_segments(self):
        from isp.io.image import encode_jpeg
        carrier = encode_jpeg(np.zeros((8, 8, 3), np.float32))
        noisy = np.random.default_rng(1).integers(0, 256, (400, 400, 3), dtype=np.uint8)
        raw_jpeg = rc.encode_raw_jpeg(noisy, rc.encode_params(np.ones((1, 1, 100, 100), np.float32),
                                                              np.zeros((1, 3, 129), np.float32)), 95)
        data = rc.embed_raw(carrier, raw_jpeg, {"k": 1})
        segs, _ = rc.jpeg_segments(data)
        assert sum(s[0] == rc.APP_MARKER for s in segs) == -(-(len(raw_jpeg) + 12) // 65510) >= 3
        back = rc.read_embedded_raw(Path("big.jpg"), data)
        assert back.meta == {"k": 1} and np.array_equal(back.raw_u8, rc.decode_jpeg_u8(raw_jpeg))
        assert struct.unpack(">H", data[2:4])[0] == 0xFFE0


class TestCli:
    def test_png_linearized_then_store_raw_and_rerender(self, weights_dir, tmp_path, capsys):
        from isp.cli import main
        from isp.io.image import read_image, write_image
        srgb = _smooth_raw(96, 128, seed=5) ** 0.5
        src = tmp_path / "photo.png"
        write_image(src, srgb)
        common = ["--weights", str(weights_dir), "--no-enhance", "--tile", "0"]
        assert main(["render", str(src), "-o", str(tmp_path / "a.jpg"), "--store-raw", "--raw-quality", "95",
                     *common]) == 0
        assert "linearized" in capsys.readouterr().out
        assert main(["render", str(tmp_path / "a.jpg"), "-o", str(tmp_path / "b.png"), *common]) == 0
        assert "stored raw" in capsys.readouterr().out
        direct = tmp_path / "direct.png"
        assert main(["render", str(src), "-o", str(direct), *common]) == 0
        db = psnr(torch.from_numpy(read_image(tmp_path / "b.png")), torch.from_numpy(read_image(direct)))
        print(f"re-render from the stored raw vs the direct render: {db:.1f} dB")
        assert db > 30.0
        assert main(["render", str(src), "-o", str(tmp_path / "c.png"), "--store-raw", *common]) == 2
        assert "--store-raw needs a .jpg" in capsys.readouterr().err
        assert main(["render", str(src), "-o", str(tmp_path / "d.jpg"), "--raw-quality", "50", *common]) == 2
        assert "only with --store-raw" in capsys.readouterr().err
