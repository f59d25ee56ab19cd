"""DNG input: decode a raw photo into the pipeline input of the Modular Neural ISP.

``read_dng(path, crop=None) -> RawImage`` returns what the official pipeline feeds its first stage (golden keys
``raw``, ``illum``, ``ccm``) plus the metadata the rest of the ISP and the tools need:

* ``rgb``: (H, W, 3) float32 demosaiced camera RGB in [0, 1] (the golden ``raw``; ``raw_tensor()`` gives it as
  (1, 3, H, W)). Pixel values are ``(DN - black) / white`` — divided by the **white level**, not by
  ``white - black``: that is the official ``normalize_raw`` convention and what the golden files hold (the brightest
  value a sensor can record is therefore ``1 - black/white``, e.g. 0.94 for a 10-bit sensor with black 64). Bayer data is demosaiced with Menon 2007 (:mod:`isp.io.demosaic`) and clipped to [0, 1];
  LinearRaw data (already demosaiced) is only normalised and clipped.
* ``illum``: unit-norm camera-RGB illuminant colour from AsShotNeutral; ``ccm``: the as-shot raw-to-linear-sRGB
  matrix, both from :mod:`isp.io.color_metadata` (the golden files' values).
* the CFA pattern, black/white levels, AsShotNeutral, EXIF orientation, make/model, ISO/exposure, and the full tag
  dictionary (``metadata``: ColorMatrix1/2, ForwardMatrix1/2, CalibrationIlluminant1/2, ...).

Decisions:

* **Crop before demosaicing.** ``crop=[y0, x0, h, w]`` (the golden files' convention, in pixels of the visible
  image) cuts the mosaic first and demosaics the cut, so the borders of the crop get Menon's mirror boundary
  handling. This is how the golden ``raw`` was made: it reproduces each golden file bit-exactly, where demosaicing the
  full frame and then cropping differs at the crop border (56-80 dB). A crop at an odd offset keeps the colours right
  (the CFA pattern is re-phased).
* **Pixels and levels come from rawpy/LibRaw** (``raw_image_visible``: ActiveArea/margins applied; per-channel
  black levels; for lossy LinearRaw DNGs the 8-bit JPEG data linearised by LibRaw with the DNG's MapPolynomial
  opcodes to 16 bits, white level 65535). Black levels are subtracted per CFA site by colour (the official code
  indexes them by 2x2 position; identical when all four are equal, as in every sample file).
* **Tags come from our own TIFF reader** (:func:`isp.io.tiff.read_tiff_ifds`): rawpy does not expose
  ForwardMatrix, CalibrationIlluminant, CameraCalibration or the exact rationals of AsShotNeutral.
* **Everything is validated before a pixel is decoded** (:mod:`isp.io.dng_validate`): every tag the decoder or
  LibRaw relies on is checked for type, count, finiteness and range, the image data must be all there, and sizes
  are capped so that a hostile file is rejected in milliseconds. After LibRaw opened the file, its sizes and levels
  are checked against the tags, and the returned values (pixels, levels, colour) are checked to be finite. Tags
  the decoder does not use are kept in ``metadata`` only when their values are finite.
* Every failure is a :class:`DngError` (a ``ValueError``) whose one-line message starts with the file and names the
  tag and IFD where one is at fault: a corrupt or truncated file, unsupported input (non-Bayer CFAs such as X-Trans
  6x6, quad-Bayer 4x4 or CYGM; other photometric interpretations), missing AsShotNeutral (and AsShotWhiteXY) or no
  ColorMatrix1/2 at all.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from isp.io import color_metadata as cm
from isp.io.demosaic import BAYER_PATTERNS, demosaic_menon2007
from isp.io.dng_validate import PHOTOMETRIC_LINEAR_RAW  # noqa: F401 - re-exported, as before
from isp.io.dng_validate import (PHOTOMETRIC_CFA, DngLayout, check_decoded, check_libraw, is_finite_value,
                                 validate_dng)
from isp.io.image import apply_orientation  # re-exported: callers orient the output with the DNG's code
from isp.io.tiff import TAG_NAMES, DngError, TiffIfd, read_tiff_ifds  # re-exported: the reader and the error

__all__ = ["RawImage", "read_dng", "read_tiff_ifds", "TiffIfd", "TAG_NAMES", "DngError", "cfa_string",
           "shift_cfa", "apply_orientation"]

#: larger array-valued tags (pixel offsets, opcode lists, XMP, maker notes...) are left out of the metadata dict
_MAX_METADATA_VALUES = 4096


# ----------------------------------------------------------------------------------------------------------------
# CFA helpers


def cfa_string(pattern: np.ndarray | Sequence[Sequence[int]], colors: str = "RGBG") -> str:
    """Pattern string of a 2x2 CFA, e.g. LibRaw ``raw_pattern`` [[0, 1], [3, 2]] with ``color_desc`` "RGBG" ->
    "RGGB". Raises ``ValueError`` for any pattern that is not one of the four Bayer arrangements."""
    p = np.asarray(pattern)
    if p.shape != (2, 2):
        kind = {(6, 6): " (X-Trans?)", (4, 4): " (quad Bayer?)"}.get(p.shape, "")
        raise ValueError(f"unsupported CFA: {p.shape[0]}x{p.shape[1]} repeat pattern{kind}; only 2x2 Bayer "
                         f"({', '.join(BAYER_PATTERNS)}) is supported")
    try:
        s = "".join(colors[int(i)] for i in p.ravel())
    except IndexError:
        raise ValueError(f"unsupported CFA: pattern {p.tolist()} indexes colours beyond {colors!r}") from None
    if s not in BAYER_PATTERNS:
        raise ValueError(f"unsupported CFA pattern {s!r} (colours {colors!r}); only Bayer "
                         f"({', '.join(BAYER_PATTERNS)}) is supported")
    return s


def shift_cfa(pattern: str, dy: int, dx: int) -> str:
    """The 2x2 pattern seen from pixel (dy, dx) of ``pattern``: what a crop starting there holds."""
    grid = [[pattern[0], pattern[1]], [pattern[2], pattern[3]]]
    return "".join(grid[(dy + i) % 2][(dx + j) % 2] for i in (0, 1) for j in (0, 1))


def _cfa_from_tags(raw_ifd: TiffIfd, source) -> str:
    dims = raw_ifd.get("CFARepeatPatternDim")
    pattern = raw_ifd.get("CFAPattern")
    if dims is None or pattern is None:
        raise DngError(source, "CFA raw image without CFARepeatPatternDim/CFAPattern tags", ifd=raw_ifd.kind)
    dims = dims if isinstance(dims, tuple) else (dims,)
    if len(dims) != 2:
        raise DngError(source, f"must hold 2 values, got {list(dims)}", tag="CFARepeatPatternDim",
                       ifd=raw_ifd.kind)
    rows, cols = (int(d) for d in dims)
    values = list(pattern) if isinstance(pattern, (bytes, tuple)) else [int(pattern)]
    plane = raw_ifd.get("CFAPlaneColor", (0, 1, 2))
    plane = list(plane) if isinstance(plane, (bytes, tuple)) else [int(plane)]
    names = "RGBCMYW"                                   # DNG/TIFF-EP CFA colour codes 0..6
    letters = [names[plane[v]] if v < len(plane) and plane[v] < len(names) else "?" for v in values]
    desc = "".join(letters)
    if (rows, cols) != (2, 2):
        kind = {(6, 6): " (X-Trans)", (4, 4): " (quad Bayer)"}.get((rows, cols), "")
        raise DngError(source, f"unsupported CFA {rows}x{cols} pattern {desc!r}{kind}; only 2x2 Bayer "
                               f"({', '.join(BAYER_PATTERNS)}) is supported")
    if len(values) != 4:
        raise DngError(source, f"CFAPattern has {len(values)} entries for a 2x2 repeat pattern; corrupt DNG")
    if desc not in BAYER_PATTERNS:
        raise DngError(source, f"unsupported CFA pattern {desc!r}; only Bayer ({', '.join(BAYER_PATTERNS)}) "
                               "is supported")
    return desc


# ----------------------------------------------------------------------------------------------------------------
# the decoded image


@dataclass
class RawImage:
    """A decoded DNG: the pipeline input and its metadata. Arrays are numpy; see :meth:`raw_tensor`."""
    path: Path
    rgb: np.ndarray                 # (H, W, 3) float32 in [0, 1], demosaiced camera RGB ((DN - black) / white)
    cfa: str                        # "RGGB" | "BGGR" | "GRBG" | "GBRG" (of the returned crop) | "LinearRaw"
    black_level: tuple[float, ...]  # per colour channel (R, G, B[, G2]) as subtracted
    white_level: float              # divisor used for normalisation
    as_shot_neutral: np.ndarray     # (3,) camera neutral, AsShotNeutral (or derived from AsShotWhiteXY)
    illum: np.ndarray               # (3,) float32 unit-norm illuminant colour used for white balance
    ccm: np.ndarray                 # (3, 3) float32 raw (white-balanced) -> linear sRGB, rows sum to 1
    orientation: int = 1            # EXIF orientation 1..8 (see isp.io.image.apply_orientation)
    make: str | None = None
    model: str | None = None
    iso: float | None = None
    exposure_time: float | None = None   # seconds
    f_number: float | None = None
    focal_length: float | None = None    # mm
    crop: tuple[int, int, int, int] | None = None   # [y0, x0, h, w] in the visible image, if cropped
    full_size: tuple[int, int] = (0, 0)             # (H, W) of the visible image before cropping
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return self.rgb.shape[0], self.rgb.shape[1]

    @property
    def is_galaxy_s24(self) -> bool:
        """The official pipeline's test for the Galaxy S24 Ultra main camera (selects the s24 denoiser/AWB):
        make "samsung", model "Galaxy S24 Ultra", f/1.7 and 6.3 mm focal length."""
        return ((self.make or "").lower() == "samsung" and self.model == "Galaxy S24 Ultra"
                and self.f_number is not None and abs(self.f_number - 1.7) < 1e-3
                and self.focal_length is not None and abs(self.focal_length - 6.3) < 1e-3)

    def raw_tensor(self):
        """``rgb`` as a (1, 3, H, W) float32 torch tensor: the golden ``raw`` layout, the pipeline input."""
        import torch
        return torch.from_numpy(np.ascontiguousarray(self.rgb.transpose(2, 0, 1)))[None]

    def color_matrices(self) -> dict[str, Any]:
        """The colour calibration tags as arrays (absent ones omitted): ColorMatrix1/2 and ForwardMatrix1/2 as
        (3, 3), CameraCalibration1/2 as (3, 3), CalibrationIlluminant1/2 as int."""
        out: dict[str, Any] = {}
        for name in ("ColorMatrix1", "ColorMatrix2", "ForwardMatrix1", "ForwardMatrix2", "CameraCalibration1",
                     "CameraCalibration2"):
            v = self.metadata.get(name)
            if v is not None and np.size(v) >= 9:
                out[name] = np.asarray(v, dtype=np.float64).ravel()[:9].reshape(3, 3)
        for name in ("CalibrationIlluminant1", "CalibrationIlluminant2"):
            if self.metadata.get(name) is not None:
                out[name] = int(self.metadata[name])
        return out


# ----------------------------------------------------------------------------------------------------------------
# reading


def _metadata_dict(layout: DngLayout) -> dict[str, Any]:
    """Flat name -> value dict. Precedence: the raw IFD, then IFD0, then EXIF, then the rest. Large arrays and
    values that are not finite (tags the validation does not cover) are left out."""
    meta: dict[str, Any] = {}
    for ifd in layout.order:
        for tag, value in ifd.tags.items():
            name = TAG_NAMES.get(tag, f"Tag{tag}")
            if name in meta:
                continue
            n = len(value) if isinstance(value, (tuple, bytes)) else 1
            if n > _MAX_METADATA_VALUES or not is_finite_value(value):
                continue
            meta[name] = list(value) if isinstance(value, tuple) else value
    return meta


def _positive(v) -> float | None:
    if v is None:
        return None
    if isinstance(v, (list, tuple)):
        v = v[0] if v else None
        if v is None:
            return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if 0 < f < float("inf") else None


def _color_from_metadata(meta: dict[str, Any], source) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(as_shot_neutral, illum, ccm) from the DNG colour tags; ``ValueError`` naming what is missing."""
    matrices = [meta.get("ColorMatrix1"), meta.get("ColorMatrix2")]
    matrices = [m if m is not None and np.size(m) >= 9 else None for m in matrices]
    if matrices[0] is None and matrices[1] is None:
        raise DngError(source, "missing required DNG metadata: no ColorMatrix1/ColorMatrix2 tag, so no "
                               "raw-to-sRGB colour matrix can be derived")
    illuminants = [meta.get("CalibrationIlluminant1"), meta.get("CalibrationIlluminant2")]
    k = cm.select_color_matrix(matrices, illuminants)
    color_matrix = np.asarray(matrices[k], dtype=np.float64).ravel()[:9].reshape(3, 3)
    calibration = meta.get(f"CameraCalibration{k + 1}")
    calibration = None if calibration is None or np.size(calibration) < 9 else \
        np.asarray(calibration, dtype=np.float64).ravel()[:9].reshape(3, 3)
    analog = meta.get("AnalogBalance")
    analog = None if analog is None or np.size(analog) < 3 else analog
    try:
        ccm = cm.ccm_from_color_matrix(color_matrix, calibration, analog)
    except ValueError as exc:
        raise DngError(source, str(exc), tag=f"ColorMatrix{k + 1}") from None

    neutral = meta.get("AsShotNeutral")
    if neutral is not None and np.size(neutral) >= 3:
        neutral = np.asarray(neutral, dtype=np.float64).ravel()[:3]
    elif meta.get("AsShotWhiteXY") is not None:
        try:
            neutral = cm.neutral_from_white_xy(meta["AsShotWhiteXY"], color_matrix)
        except ValueError as exc:
            raise DngError(source, f"invalid AsShotWhiteXY: {exc}") from None
    else:
        raise DngError(source, "missing required DNG metadata: no AsShotNeutral (or AsShotWhiteXY) tag, so the "
                               "white-balance illuminant is unknown")
    try:
        illum = cm.illuminant_from_neutral(neutral)
    except ValueError as exc:
        raise DngError(source, f"invalid AsShotNeutral: {exc}") from None
    illum, ccm = illum.astype(np.float32), ccm.astype(np.float32)
    if not (np.all(np.isfinite(illum)) and np.all(np.isfinite(ccm)) and np.all(np.isfinite(neutral))):
        raise DngError(source, f"the colour metadata gives a non-finite white balance or colour matrix (neutral "
                               f"{np.asarray(neutral).tolist()}, CCM {ccm.tolist()}); corrupt ColorMatrix/"
                               "CameraCalibration/AnalogBalance/AsShotWhiteXY tags")
    return neutral, illum, ccm


def _validate_crop(crop, full: tuple[int, int], source) -> tuple[int, int, int, int]:
    try:
        y0, x0, h, w = (int(v) for v in crop)
    except (TypeError, ValueError):
        raise ValueError(f"{source}: crop must be [y0, x0, h, w] integers, got {crop!r}") from None
    if y0 < 0 or x0 < 0 or h < 3 or w < 3 or y0 + h > full[0] or x0 + w > full[1]:
        raise ValueError(f"{source}: crop [y0={y0}, x0={x0}, h={h}, w={w}] does not fit the {full[0]}x{full[1]} "
                         "image (needs y0, x0 >= 0, h, w >= 3 and the window inside the image)")
    return y0, x0, h, w


def _trim_heap() -> None:
    """Give the heap's free pages back to the OS (glibc ``malloc_trim``; nothing elsewhere). The demosaicing blocks'
    temporaries (~9 MB arrays, in the worker threads' malloc arenas) otherwise stay resident: at 12 MP the process
    keeps ~190 MB it no longer uses for the rest of the render."""
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def read_dng(path: str | Path, *, crop: Sequence[int] | None = None) -> RawImage:
    """Decode a DNG into a :class:`RawImage` (see module docstring for the conventions).

    Args:
        path: a Bayer-CFA (RGGB/BGGR/GRBG/GBRG) or LinearRaw DNG.
        crop: optional ``[y0, x0, h, w]`` window of the visible image; cut before demosaicing.

    Raises:
        FileNotFoundError: the file does not exist.
        DngError: (a ``ValueError``) not a DNG / truncated / corrupt / malformed tags, unsupported CFA or
            photometric interpretation, missing AsShotNeutral or ColorMatrix. One line that starts with the path.
        ValueError: a crop outside the image.
    """
    import rawpy  # heavy native import, kept local

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: DNG file not found")
    if not path.is_file():
        raise DngError(path, "not a regular file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DngError(path, f"cannot read the file: {exc.strerror or exc}") from None
    ifds = read_tiff_ifds(data, path)
    layout = validate_dng(data, ifds, path)
    raw_ifd = layout.raw_ifd
    photometric = layout.photometric
    tag_cfa = _cfa_from_tags(raw_ifd, path) if photometric == PHOTOMETRIC_CFA else None
    meta = _metadata_dict(layout)
    neutral, illum, ccm = _color_from_metadata(meta, path)

    try:
        with rawpy.imread(str(path)) as rp:
            check_libraw(layout, rp, path)
            if photometric == PHOTOMETRIC_CFA:
                if rp.raw_pattern is None or rp.raw_image_visible.ndim != 2:
                    raise DngError(path, "LibRaw did not decode the CFA image as a single-plane mosaic")
                try:
                    cfa = cfa_string(rp.raw_pattern, rp.color_desc.decode("ascii"))
                except ValueError as exc:
                    raise DngError(path, str(exc)) from None
                mosaic = rp.raw_image_visible.copy()
                colors = rp.raw_colors_visible.copy()
            else:
                cfa = "LinearRaw"
                mosaic = rp.raw_image_visible.copy()
                colors = None
            black = tuple(float(b) for b in rp.black_level_per_channel)
            white = float(rp.white_level)
    except DngError:
        raise
    except Exception as exc:  # LibRaw errors (rawpy.LibRawError and friends), memory errors on corrupt sizes
        raise DngError(path, f"rawpy/LibRaw could not decode the raw image: {type(exc).__name__}: {exc}") from exc
    check_decoded(mosaic, black, path, layout)
    if tag_cfa is not None and tag_cfa != cfa:
        # LibRaw's pattern is relative to the visible area, the tag to the ActiveArea origin; they agree unless the
        # visible area starts at an odd offset inside the active area. LibRaw's is the one aligned with the data.
        meta["CFAPatternActiveArea"] = tag_cfa

    full = (int(mosaic.shape[0]), int(mosaic.shape[1]))
    window = None
    if crop is not None:
        window = _validate_crop(crop, full, path)
        y0, x0, h, w = window
        mosaic = mosaic[y0:y0 + h, x0:x0 + w]
        if colors is not None:
            colors = colors[y0:y0 + h, x0:x0 + w]
            cfa = shift_cfa(cfa, y0, x0)

    white32 = np.float32(white)
    if colors is not None:
        if min(mosaic.shape) < 3:
            raise DngError(path, f"image {mosaic.shape[1]}x{mosaic.shape[0]} is too small to demosaic")
        black_site = np.asarray(black, dtype=np.float32)[colors]
        if np.all(black_site == black_site.flat[0]):
            black_site = black_site.flat[0]
        norm = (mosaic.astype(np.float32) - black_site) / white32
        del mosaic
        # clipped and cast to float32 block by block: the values of np.clip(rgb, 0, 1).astype(float32)
        rgb = demosaic_menon2007(norm, cfa, clip=(0.0, 1.0), dtype=np.float32)
        del norm
        _trim_heap()
    else:
        if mosaic.ndim != 3 or mosaic.shape[-1] < 3:
            raise DngError(path, f"LibRaw decoded the LinearRaw image as shape {mosaic.shape}; expected "
                                 "(H, W, 3 or 4)")
        planes = mosaic[..., :3].astype(np.float32)
        rgb = (planes - np.asarray(black[:3], dtype=np.float32)) / white32
        rgb = np.clip(rgb, 0.0, 1.0).astype(np.float32)
    rgb_out = rgb

    orientation = layout.orientation
    make, model = meta.get("Make"), meta.get("Model")
    return RawImage(
        path=path, rgb=rgb_out, cfa=cfa, black_level=black, white_level=white,
        as_shot_neutral=np.asarray(neutral, dtype=np.float64), illum=illum, ccm=ccm, orientation=orientation,
        make=make or None, model=model or None, iso=_positive(meta.get("ISOSpeedRatings")),
        exposure_time=_positive(meta.get("ExposureTime")), f_number=_positive(meta.get("FNumber")),
        focal_length=_positive(meta.get("FocalLength")), crop=window, full_size=full, metadata=meta)
