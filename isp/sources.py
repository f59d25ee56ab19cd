"""What a render starts from, for every input the tool accepts, and how a render stores its raw.

``load_source(path)`` returns a :class:`isp.io.dng.RawImage` (the pipeline input plus what the rest of the tool
needs: illuminant, CCM, orientation, camera) for

* a **DNG**: :func:`isp.io.dng.read_dng`;
* a **JPEG with a stored raw** (written by ``render --store-raw``, or by the official tool): the raw is decoded by the
  Raw-JPEG adapter's decoder (:mod:`isp.stages.raw_jpeg`) and rendered with the illuminant, CCM, orientation and
  camera stored beside it, so the render is the one of the original raw, up to the adapter's loss;
* any other **JPEG or PNG**: the image is linearized (:mod:`isp.stages.linearize`) into the raw of a synthetic D50
  camera and rendered with that camera's illuminant and CCM, the official tool's route for third-party sRGB images
  (its metadata: make "None", model "Synthetic", ISO 250, 1/30 s, f/1.7, 6.3 mm, so the generic denoiser runs).

A damaged stored raw is an error naming the file; it is never replaced by a linearized render.

``store_raw(path, srgb, img, ...)`` writes the rendered sRGB JPEG with ``img``'s raw inside
(:mod:`isp.io.raw_container`).
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch

from isp import paths
from isp.io.dng import RawImage
from isp.registry import BuildConfig, build_stage

__all__ = ["RAW_SUFFIXES", "SRGB_SUFFIXES", "LINEARIZED_CAMERA", "load_source", "linearize_image",
           "decode_stored_raw", "store_raw"]

RAW_SUFFIXES = (".dng",)
SRGB_SUFFIXES = (".jpg", ".jpeg", ".png")
#: camera data the official reader returns for a linearized image (utils.constants.METADATA)
LINEARIZED_CAMERA = {"make": "None", "model": "Synthetic", "iso": 250.0, "exposure_time": 0.03333333333,
                     "f_number": 1.7, "focal_length": 6.3}
#: RawImage fields stored with a raw and restored from it
_STORED_FIELDS = ("make", "model", "iso", "exposure_time", "f_number", "focal_length")


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(a, np.float32).transpose(2, 0, 1)))[None]


def _hwc(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t[0].permute(1, 2, 0).numpy())


def _jsonable_metadata(meta: dict) -> dict:
    """The small numeric DNG tags (colour matrices, illuminants, capture data), JSON-ready."""
    from isp.jsonio import to_jsonable
    out = {}
    for k, v in meta.items():
        if isinstance(v, (bytes, bytearray, memoryview)):
            continue
        size = np.asarray(v).size if isinstance(v, (list, tuple, np.ndarray)) else 1
        if size > 64:
            continue
        j = to_jsonable(v)
        if isinstance(j, (int, float, str, list)) and j is not None:
            out[str(k)] = j
    return out


def _orientation(v) -> int:
    try:
        o = int(v)
    except (TypeError, ValueError):
        return 1
    return o if 1 <= o <= 8 else 1


def _exif_orientation(data: bytes) -> int:
    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)) as im:
            return _orientation(im.getexif().get(0x0112, 1))
    except Exception:        # an unreadable EXIF block means "as stored"
        return 1


@torch.inference_mode()
def decode_stored_raw(path: str | Path, stored, weights: Path | None = None) -> RawImage:
    """A :class:`isp.io.raw_container.EmbeddedRaw` -> :class:`RawImage` (raw decoded by the adapter's decoder)."""
    path = Path(path)
    dec = build_stage("raw_jpeg_decode", BuildConfig(weights or paths.weights_root()))
    raw = dec(_tensor(stored.raw_u8.astype(np.float32) / np.float32(255.0)),
              torch.from_numpy(stored.gamma_map), torch.from_numpy(stored.lut))
    meta = stored.meta
    official = stored.layout == "official"
    if official:      # the official tool's metadata dict (demo.py's choice of keys)
        illum_v, ccm_v = meta.get("cam_illum", meta.get("illum_color")), meta.get("color_matrix", meta.get("ccm"))
    else:
        illum_v, ccm_v = meta.get("illum"), meta.get("ccm")
    try:
        illum, ccm = np.asarray(illum_v, np.float32), np.asarray(ccm_v, np.float32)
        ok = illum.shape == (3,) and ccm.shape == (3, 3) and np.isfinite(illum).all() and np.isfinite(ccm).all()
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{path}: the stored raw has no usable illuminant and CCM beside it (metadata keys: "
                         f"{sorted(meta)[:12]}); it cannot be re-rendered")
    n = float(np.linalg.norm(illum))
    if n <= 0:
        raise ValueError(f"{path}: the stored illuminant is zero")
    camera = {k: meta.get(k) for k in _STORED_FIELDS}
    if official and camera["exposure_time"] is None:
        camera["exposure_time"] = meta.get("shutter_speed")
    rgb = _hwc(raw)
    return RawImage(path=path, rgb=rgb, cfa="LinearRaw", black_level=(0.0, 0.0, 0.0), white_level=1.0,
                    as_shot_neutral=illum / illum[1], illum=(illum / n).astype(np.float32), ccm=ccm,
                    orientation=_orientation(meta.get("orientation")), full_size=rgb.shape[:2],
                    metadata={**meta.get("dng_tags", {}), "stored_raw": {k: v for k, v in meta.items()
                                                                         if k != "dng_tags"}},
                    **camera)


@torch.inference_mode()
def linearize_image(path: str | Path, weights: Path | None = None, data: bytes | None = None) -> RawImage:
    """Any JPEG/PNG -> :class:`RawImage` of the synthetic D50 camera (module docstring)."""
    from isp.io.image import read_image
    from isp.stages.linearize import D50_CCM, D50_RAW_ILLUM
    path = Path(path)
    srgb = read_image(path)
    lin = build_stage("linearize", BuildConfig(weights or paths.weights_root()))
    raw, _xyz = lin(_tensor(srgb))
    illum = np.asarray(D50_RAW_ILLUM, np.float32)
    rgb = _hwc(raw)
    orientation = _exif_orientation(data if data is not None else path.read_bytes())
    return RawImage(path=path, rgb=rgb, cfa="LinearRaw", black_level=(0.0, 0.0, 0.0), white_level=1.0,
                    as_shot_neutral=illum.copy(), illum=(illum / np.linalg.norm(illum)).astype(np.float32),
                    ccm=np.asarray(D50_CCM, np.float32), orientation=orientation, full_size=rgb.shape[:2],
                    metadata={"linearized": True}, **LINEARIZED_CAMERA)


def load_source(path: str | Path, weights: Path | None = None) -> tuple[RawImage, str]:
    """``(RawImage, kind)`` for a DNG, a JPEG with a stored raw, or any other JPEG/PNG (module docstring)."""
    from isp.io.dng import read_dng
    from isp.io.raw_container import read_embedded_raw
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in RAW_SUFFIXES:
        return read_dng(path), "dng"
    if suffix not in SRGB_SUFFIXES:
        raise ValueError(f"{path}: unsupported input {path.suffix!r}; give a DNG, a JPEG or a PNG")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image file not found")
    data = path.read_bytes()
    stored = read_embedded_raw(path, data)
    if stored is not None:
        return decode_stored_raw(path, stored, weights), "stored-raw"
    return linearize_image(path, weights, data), "srgb"


@torch.inference_mode()
def store_raw(path: str | Path, srgb, img: RawImage, *, raw_quality: int = 95, quality: int = 95,
              weights: Path | None = None) -> Path:
    """Write ``srgb`` ((H, W, 3) float in [0, 1]) as a JPEG at ``quality`` with ``img.rgb`` stored inside by the
    adapter trained for ``raw_quality`` (25, 50, 75 or 95). Atomic."""
    from isp.io.image import encode_jpeg
    from isp.io.raw_container import write_jpeg_with_raw
    from isp.stages.raw_jpeg import QUALITIES, to_uint8
    path = Path(path)
    if raw_quality not in QUALITIES:
        raise ValueError(f"--raw-quality must be one of {', '.join(map(str, QUALITIES))}, got {raw_quality}")
    enc = build_stage("raw_jpeg_encode", BuildConfig(weights or paths.weights_root(), raw_quality=raw_quality))
    jpeg_input, gamma_map, lut = enc(_tensor(img.rgb))
    meta = {"illum": [float(v) for v in img.illum], "ccm": [[float(v) for v in row] for row in img.ccm],
            "orientation": int(img.orientation), "source": Path(img.path).name,
            "is_galaxy_s24": bool(img.is_galaxy_s24),
            **{k: getattr(img, k) for k in _STORED_FIELDS
               if getattr(img, k) is not None and not (isinstance(getattr(img, k), float)
                                                        and not math.isfinite(getattr(img, k)))},
            "dng_tags": _jsonable_metadata(img.metadata)}
    return write_jpeg_with_raw(path, encode_jpeg(srgb, quality, path), to_uint8(jpeg_input), gamma_map.numpy(),
                               lut.numpy(), raw_quality, meta)
