"""Golden parity of the input/output stages: sRGB linearization (``lin_*.npz``) and the Raw-JPEG adapter
(``jpeg_*.npz``), file formats in ``shared/golden_ext/README.md``. Registered in :data:`isp.parity.FILE_CHECKERS`.

Each stage runs on its golden input; then each route runs end to end from the file the official code read or
wrote. Rows use :func:`isp.parity.compare` (PSNR over [0, 1] for images, over the peak magnitude for parameters)
and carry their own limit: ``max(--min-psnr, 60)`` dB, with these per-key bounds:

* 8-bit images (the truncated adapter input, decoded JPEG pixels) are compared as PSNR over [0, 255]: a handful of
  pixels one code value off (float32 rounding at a truncation boundary) is ~90 dB;
* byte streams (the raw JPEG Pillow writes, the COM string) must be identical; when the raw JPEG bytes differ (a
  different libjpeg build), the row compares the decoded pixels instead and says so.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from isp.metrics import psnr
from isp.registry import BuildConfig, build_stage

__all__ = ["EXT_MIN_PSNR", "check_lin", "check_jpeg"]

#: stage-wise limit for these files (issue 13): at least this, or --min-psnr when that is higher
EXT_MIN_PSNR = 60.0


def _t(a) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, np.float32))


def _chw(a: np.ndarray) -> torch.Tensor:
    return _t(a).permute(2, 0, 1)[None]


def _row(file: str, stage: str, name: str, got, ref, limit: float, data_range: float | None = None) -> dict:
    from isp.parity import compare
    if data_range is None:
        r = compare(name, _t(got) if not isinstance(got, torch.Tensor) else got, _t(ref))
    else:
        g, f = _t(got), _t(ref)
        r = {"output": name, "psnr": psnr(g, f, data_range=data_range),
             "max_abs": float((g.double() - f.double()).abs().max()), "kind": f"image/{data_range:g}"}
    return {"file": file, "stage": stage, **r, "limit": limit,
            "pass": r.get("psnr") is not None and r["psnr"] >= limit}


def _exact(file: str, stage: str, name: str, same: bool, note: str = "") -> dict:
    return {"file": file, "stage": stage, "output": name, "psnr": float("inf") if same else None,
            "max_abs": 0.0 if same else float("nan"), "kind": "bytes", "limit": "identical", "pass": same,
            **({"error": note} if note and not same else {})}


def _failed(file: str, stage: str, exc: Exception) -> dict:
    return {"file": file, "stage": stage, "output": "-", "psnr": None, "pass": False,
            "error": f"{type(exc).__name__}: {exc}"}


@torch.inference_mode()
def check_lin(path: Path, weights: Path, min_psnr: float, e2e: bool = True) -> list[dict]:
    from isp.stages.linearize import xyz_to_raw
    z = np.load(path)
    name, limit = path.stem, max(min_psnr, EXT_MIN_PSNR)
    rows = []
    try:
        lin = build_stage("linearize", BuildConfig(weights))
        net_in = _t(z["net_in"])
        local = lin.net.local(net_in)
        rows.append(_row(name, "linearize", "local", local, z["local"], limit))
        rows.append(_row(name, "linearize", "global_m", lin.net.global_matrix(net_in - local), z["global_m"], limit))
        rows.append(_row(name, "linearize", "xyz", lin.net(net_in), z["xyz"], limit))
        rows.append(_row(name, "linearize", "raw (from xyz)", xyz_to_raw(_t(z["xyz"]))[0].permute(1, 2, 0),
                         z["raw"], limit))
    except Exception as exc:  # a failing row, never hidden
        rows.append(_failed(name, "linearize", exc))
    if e2e:
        try:
            from isp.io.image import read_image
            from isp.sources import load_source
            with tempfile.TemporaryDirectory() as tmp:
                f = Path(tmp) / "input.jpg"
                f.write_bytes(z["file_bytes"].tobytes())
                rows.append(_row(name, "end-to-end", "srgb_u8 (decode)", read_image(f) * 255.0, z["srgb_u8"], limit,
                                 data_range=255.0))
                img, kind = load_source(f, weights)
                if kind != "srgb":
                    raise ValueError(f"route {kind!r} taken, expected linearization")
                rows.append(_row(name, "end-to-end", "raw", img.rgb, z["raw"], limit))
        except Exception as exc:
            rows.append(_failed(name, "end-to-end", exc))
    return rows


@torch.inference_mode()
def check_jpeg(path: Path, weights: Path, min_psnr: float, e2e: bool = True) -> list[dict]:
    from isp.io import raw_container as rc
    from isp.stages.raw_jpeg import decode_image, normalize_lut, to_uint8
    z = np.load(path)
    name, limit = path.stem, max(min_psnr, EXT_MIN_PSNR)
    raw = _t(z["raw"])
    rows = []
    for q in (25, 50, 75, 95):
        k = lambda key: z[f"q{q}_{key}"]  # noqa: E731
        stage = f"raw_jpeg q{q}"
        try:
            enc = build_stage("raw_jpeg_encode", BuildConfig(weights, raw_quality=q))
            jpeg_input, gamma_map, lut = enc(raw)
            rows.append(_row(name, stage, "gamma_map", gamma_map, k("gamma_map"), limit))
            rows.append(_row(name, stage, "lut", lut, k("lut"), limit))
            rows.append(_row(name, stage, "lut_norm", normalize_lut(_t(k("lut"))), k("lut_norm"), limit))
            rows.append(_row(name, stage, "raw_proc", jpeg_input, k("raw_proc"), limit))
            rows.append(_row(name, stage, "jpeg_input_u8", to_uint8(jpeg_input), k("jpeg_input_u8"), limit,
                             data_range=255.0))
            comment = str(k("comment"))
            rows.append(_exact(name, stage, "comment (encode)",
                               rc.encode_params(k("gamma_map"), k("lut")) == comment))
            g_dec, lut_dec = rc.decode_params(comment)
            rows.append(_exact(name, stage, "comment (decode)", np.array_equal(g_dec, k("decoded_gamma_map"))
                               and np.array_equal(lut_dec, k("decoded_lut"))))
            ours = rc.encode_raw_jpeg(k("jpeg_input_u8"), comment, q)
            golden_bytes = k("raw_jpeg_bytes").tobytes()
            if ours == golden_bytes:
                rows.append(_exact(name, stage, "raw_jpeg_bytes", True))
            else:
                rows.append(_row(name, stage, "raw_jpeg_bytes (decoded; bytes differ)", rc.decode_jpeg_u8(ours),
                                 k("decoded_u8"), limit, data_range=255.0))
            rows.append(_row(name, stage, "decoded_u8", rc.decode_jpeg_u8(golden_bytes), k("decoded_u8"), limit,
                             data_range=255.0))
            rec = decode_image(_chw(k("decoded_u8")) / 255.0, _t(k("gamma_map")), _t(k("lut")))
            rows.append(_row(name, stage, "rec_raw", rec[0].permute(1, 2, 0), k("rec_raw"), limit))
        except Exception as exc:
            rows.append(_failed(name, stage, exc))
        if e2e:
            rows += _jpeg_routes(name, q, z, raw, weights, limit)
    return rows


def _jpeg_routes(name: str, q: int, z, raw: torch.Tensor, weights: Path, limit: float) -> list[dict]:
    """Both file layouts end to end: ours (``store_raw`` -> ``load_source``) and the official one (its header and
    raw JPEG appended after a carrier's EOI, read by :func:`isp.io.raw_container.read_embedded_raw`)."""
    from isp.io import raw_container as rc
    from isp.io.dng import RawImage
    from isp.io.image import encode_jpeg
    from isp.sources import decode_stored_raw, load_source, store_raw
    rows = []
    rec_ref = z[f"q{q}_rec_raw"]
    carrier = np.full((16, 16, 3), 0.5, np.float32)
    try:
        rgb = np.ascontiguousarray(raw[0].permute(1, 2, 0).numpy())
        img = RawImage(path=Path(name), rgb=rgb, cfa="LinearRaw", black_level=(0.0, 0.0, 0.0), white_level=1.0,
                       as_shot_neutral=np.ones(3, np.float32), illum=np.full(3, 3 ** -0.5, np.float32),
                       ccm=np.eye(3, dtype=np.float32))
        with tempfile.TemporaryDirectory() as tmp:
            f = Path(tmp) / "stored.jpg"
            store_raw(f, carrier, img, raw_quality=q, weights=weights)
            back, kind = load_source(f, weights)
            if kind != "stored-raw":
                raise ValueError(f"route {kind!r} taken, expected the stored raw")
            rows.append(_row(name, f"end-to-end q{q}", "rec_raw (ours)", back.rgb, rec_ref, limit))
            official = (encode_jpeg(carrier) + str(z[f"q{q}_payload_header"]).encode("utf-8")
                        + z[f"q{q}_raw_jpeg_bytes"].tobytes())
            stored = rc.read_embedded_raw(Path(tmp) / "official.jpg", official)
            if stored is None or stored.layout != "official":
                raise ValueError("the official layout was not recognised")
            stored.meta = {"illum_color": [1.0, 1.0, 1.0], "ccm": np.eye(3).tolist()}
            back = decode_stored_raw(Path(tmp) / "official.jpg", stored, weights)
            rows.append(_row(name, f"end-to-end q{q}", "rec_raw (official file)", back.rgb, rec_ref, limit))
    except Exception as exc:
        rows.append(_failed(name, f"end-to-end q{q}", exc))
    return rows
