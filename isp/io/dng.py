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
* **Tags come from our own TIFF reader** (:func:`read_tiff_ifds`): rawpy does not expose ForwardMatrix,
  CalibrationIlluminant, CameraCalibration or the exact rationals of AsShotNeutral. The reader also validates the
  file (header, IFD bounds, image data inside the file) so that a truncated or foreign file fails with a clear
  ``ValueError`` before LibRaw sees it.
* Unsupported input fails loudly: non-Bayer CFAs (X-Trans 6x6, quad-Bayer 4x4, CYGM), missing AsShotNeutral (and
  AsShotWhiteXY) or no ColorMatrix1/2 at all raise ``ValueError`` naming the file and the problem.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from isp.io import color_metadata as cm
from isp.io.demosaic import BAYER_PATTERNS, demosaic_menon2007
from isp.io.image import apply_orientation  # re-exported: callers orient the output with the DNG's code

__all__ = ["RawImage", "read_dng", "read_tiff_ifds", "TiffIfd", "TAG_NAMES", "cfa_string", "shift_cfa",
           "apply_orientation"]

# ----------------------------------------------------------------------------------------------------------------
# a small TIFF/DNG tag reader

#: TIFF / EXIF / DNG tag ids -> names used as keys of ``RawImage.metadata``
TAG_NAMES = {
    254: "NewSubFileType", 256: "ImageWidth", 257: "ImageLength", 258: "BitsPerSample", 259: "Compression",
    262: "PhotometricInterpretation", 270: "ImageDescription", 271: "Make", 272: "Model", 273: "StripOffsets",
    274: "Orientation", 277: "SamplesPerPixel", 278: "RowsPerStrip", 279: "StripByteCounts", 282: "XResolution",
    283: "YResolution", 284: "PlanarConfiguration", 296: "ResolutionUnit", 305: "Software", 306: "DateTime",
    315: "Artist", 322: "TileWidth", 323: "TileLength", 324: "TileOffsets", 325: "TileByteCounts", 330: "SubIFDs",
    339: "SampleFormat", 529: "YCbCrCoefficients", 530: "YCbCrSubSampling", 531: "YCbCrPositioning",
    532: "ReferenceBlackWhite", 700: "XMP", 33421: "CFARepeatPatternDim", 33422: "CFAPattern",
    33432: "Copyright", 33434: "ExposureTime", 33437: "FNumber", 34665: "ExifIFD", 34850: "ExposureProgram",
    34853: "GPSInfo", 34855: "ISOSpeedRatings", 36864: "ExifVersion", 36867: "DateTimeOriginal",
    36868: "DateTimeDigitized", 37377: "ShutterSpeedValue", 37378: "ApertureValue", 37380: "ExposureBiasValue",
    37381: "MaxApertureValue", 37383: "MeteringMode", 37384: "LightSource", 37385: "Flash", 37386: "FocalLength",
    37398: "TIFFEPStandardID", 37520: "SubSecTime", 37521: "SubSecTimeOriginal", 41989: "FocalLengthIn35mmFilm",
    42033: "BodySerialNumber", 42034: "LensSpecification", 42035: "LensMake", 42036: "LensModel",
    50706: "DNGVersion", 50707: "DNGBackwardVersion", 50708: "UniqueCameraModel", 50709: "LocalizedCameraModel",
    50710: "CFAPlaneColor", 50711: "CFALayout", 50712: "LinearizationTable", 50713: "BlackLevelRepeatDim",
    50714: "BlackLevel", 50715: "BlackLevelDeltaH", 50716: "BlackLevelDeltaV", 50717: "WhiteLevel",
    50718: "DefaultScale", 50719: "DefaultCropOrigin", 50720: "DefaultCropSize", 50721: "ColorMatrix1",
    50722: "ColorMatrix2", 50723: "CameraCalibration1", 50724: "CameraCalibration2", 50725: "ReductionMatrix1",
    50726: "ReductionMatrix2", 50727: "AnalogBalance", 50728: "AsShotNeutral", 50729: "AsShotWhiteXY",
    50730: "BaselineExposure", 50731: "BaselineNoise", 50732: "BaselineSharpness", 50733: "BayerGreenSplit",
    50734: "LinearResponseLimit", 50735: "CameraSerialNumber", 50736: "LensInfo", 50737: "ChromaBlurRadius",
    50738: "AntiAliasStrength", 50739: "ShadowScale", 50740: "DNGPrivateData", 50741: "MakerNoteSafety",
    50778: "CalibrationIlluminant1", 50779: "CalibrationIlluminant2", 50780: "BestQualityScale",
    50781: "RawDataUniqueID", 50827: "OriginalRawFileName", 50829: "ActiveArea", 50830: "MaskedAreas",
    50931: "CameraCalibrationSignature", 50932: "ProfileCalibrationSignature", 50936: "ProfileName",
    50941: "ProfileEmbedPolicy", 50942: "ProfileCopyright", 50964: "ForwardMatrix1", 50965: "ForwardMatrix2",
    50966: "PreviewApplicationName", 50967: "PreviewApplicationVersion", 50969: "PreviewSettingsDigest",
    50970: "PreviewColorSpace", 50971: "PreviewDateTime", 51008: "OpcodeList1", 51009: "OpcodeList2",
    51022: "OpcodeList3", 51041: "NoiseProfile", 51089: "OriginalDefaultFinalSize", 51111: "NewRawImageDigest",
    52525: "ProfileGainTableMap", 52529: "CalibrationIlluminant3", 52531: "ColorMatrix3",
    52532: "CameraCalibration3", 52537: "ForwardMatrix3",
}
_TAG_IDS = {v: k for k, v in TAG_NAMES.items()}

# TIFF field type -> (struct code, size in bytes); rationals are two codes per value
_TYPES = {1: ("B", 1), 2: ("s", 1), 3: ("H", 2), 4: ("I", 4), 5: ("II", 8), 6: ("b", 1), 7: ("B", 1),
          8: ("h", 2), 9: ("i", 4), 10: ("ii", 8), 11: ("f", 4), 12: ("d", 8), 13: ("I", 4)}
_MAX_IFDS = 64
#: larger array-valued tags (pixel offsets, opcode lists, XMP, maker notes...) are left out of the metadata dict
_MAX_METADATA_VALUES = 4096

PHOTOMETRIC_CFA = 32803
PHOTOMETRIC_LINEAR_RAW = 34892


@dataclass
class TiffIfd:
    """One image file directory: ``tags`` maps tag id -> decoded value; ``kind`` is "IFD0", "SubIFD", "Exif"..."""
    offset: int
    kind: str
    tags: dict[int, Any] = field(default_factory=dict)

    def get(self, name_or_id: str | int, default=None):
        key = _TAG_IDS[name_or_id] if isinstance(name_or_id, str) else name_or_id
        return self.tags.get(key, default)


def _decode_value(buf: bytes, endian: str, typ: int, count: int):
    code, size = _TYPES[typ]
    if typ == 2:
        return buf[:count].split(b"\0", 1)[0].decode("latin-1").strip()
    if typ in (1, 7) and count > 4:
        return bytes(buf[:count])
    if typ in (5, 10):
        ints = struct.unpack(f"{endian}{2 * count}{code[0]}", buf[:size * count])
        vals = tuple(n / d if d else 0.0 for n, d in zip(ints[0::2], ints[1::2]))
    else:
        vals = struct.unpack(f"{endian}{count}{code}", buf[:size * count])
    return vals[0] if count == 1 else vals


def read_tiff_ifds(data: bytes, source: str | Path = "<bytes>") -> list[TiffIfd]:
    """Parse every IFD of a classic TIFF (DNG) held in ``data``: the IFD0 chain, SubIFDs and EXIF IFDs.

    Returns them in discovery order (IFD0 first). Raises ``ValueError`` naming ``source`` for anything that is not
    a well-formed TIFF: bad header, BigTIFF, an IFD or a tag value outside the file (truncation), IFD loops.
    """
    size = len(data)
    if size < 8:
        raise ValueError(f"{source}: not a DNG/TIFF file ({size} bytes, too short for a TIFF header)")
    order = data[:2]
    if order not in (b"II", b"MM"):
        raise ValueError(f"{source}: not a DNG/TIFF file (header starts {data[:8]!r}, expected b'II*\\x00' or "
                         "b'MM\\x00*')")
    e = "<" if order == b"II" else ">"
    magic, first = struct.unpack(f"{e}HI", data[2:8])
    if magic == 43:
        raise ValueError(f"{source}: BigTIFF files are not supported (DNG uses classic TIFF)")
    if magic != 42:
        raise ValueError(f"{source}: not a DNG/TIFF file (TIFF magic {magic}, expected 42)")

    ifds: list[TiffIfd] = []
    seen: set[int] = set()
    todo: list[tuple[int, str, bool]] = [(first, "IFD0", True)]   # (offset, kind, follow next-IFD chain)
    top_level = 0
    while todo:
        off, kind, chain = todo.pop(0)
        while off:
            if off in seen:
                break                                   # a loop in the chain: stop following it
            if len(ifds) >= _MAX_IFDS:
                raise ValueError(f"{source}: more than {_MAX_IFDS} IFDs; corrupt TIFF structure")
            if off + 2 > size:
                raise ValueError(f"{source}: truncated or corrupt file: {kind} at byte {off} lies beyond the end "
                                 f"of the file ({size} bytes)")
            seen.add(off)
            (n,) = struct.unpack(f"{e}H", data[off:off + 2])
            end = off + 2 + 12 * n + 4
            if end > size:
                raise ValueError(f"{source}: truncated or corrupt file: {kind} at byte {off} with {n} entries "
                                 f"ends at byte {end}, past the end of the file ({size} bytes)")
            ifd = TiffIfd(offset=off, kind=kind)
            for k in range(n):
                p = off + 2 + 12 * k
                tag, typ, count = struct.unpack(f"{e}HHI", data[p:p + 8])
                if typ not in _TYPES or count == 0:
                    continue                            # unknown field type: skip as the TIFF spec allows
                nbytes = _TYPES[typ][1] * count
                if nbytes <= 4:
                    buf = data[p + 8:p + 8 + nbytes]
                else:
                    (voff,) = struct.unpack(f"{e}I", data[p + 8:p + 12])
                    if voff + nbytes > size:
                        raise ValueError(f"{source}: truncated or corrupt file: tag "
                                         f"{TAG_NAMES.get(tag, tag)} in {kind} points to bytes {voff}..."
                                         f"{voff + nbytes}, past the end of the file ({size} bytes)")
                    buf = data[voff:voff + nbytes]
                ifd.tags.setdefault(tag, _decode_value(buf, e, typ, count))
            ifds.append(ifd)
            for tag, child_kind in ((330, "SubIFD"), (34665, "Exif")):
                if tag in ifd.tags:
                    v = ifd.tags[tag]
                    for child in (v if isinstance(v, tuple) else (v,)):
                        todo.append((int(child), f"{kind}/{child_kind}", False))
            (off,) = struct.unpack(f"{e}I", data[end - 4:end])
            if not chain:
                break
            top_level += 1
            kind = f"IFD{top_level}"
    return ifds


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
        raise ValueError(f"{source}: CFA raw image without CFARepeatPatternDim/CFAPattern tags")
    dims = dims if isinstance(dims, tuple) else (dims,)
    if len(dims) != 2:
        raise ValueError(f"{source}: CFARepeatPatternDim must hold 2 values, got {list(dims)}")
    rows, cols = (int(d) for d in dims)
    values = list(pattern) if isinstance(pattern, (bytes, tuple)) else [int(pattern)]
    plane = raw_ifd.get("CFAPlaneColor", (0, 1, 2))
    plane = list(plane) if isinstance(plane, (bytes, tuple)) else [int(plane)]
    names = "RGBCMYW"                                   # DNG/TIFF-EP CFA colour codes 0..6
    letters = [names[plane[v]] if v < len(plane) and plane[v] < len(names) else "?" for v in values]
    desc = "".join(letters)
    if (rows, cols) != (2, 2):
        kind = {(6, 6): " (X-Trans)", (4, 4): " (quad Bayer)"}.get((rows, cols), "")
        raise ValueError(f"{source}: unsupported CFA {rows}x{cols} pattern {desc!r}{kind}; only 2x2 Bayer "
                         f"({', '.join(BAYER_PATTERNS)}) is supported")
    if len(values) != 4:
        raise ValueError(f"{source}: CFAPattern has {len(values)} entries for a 2x2 repeat pattern; corrupt DNG")
    if desc not in BAYER_PATTERNS:
        raise ValueError(f"{source}: unsupported CFA pattern {desc!r}; only Bayer ({', '.join(BAYER_PATTERNS)}) "
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


def _metadata_dict(ifds: list[TiffIfd], raw_ifd: TiffIfd) -> dict[str, Any]:
    """Flat name -> value dict. Precedence: the raw IFD, then IFD0, then EXIF, then the rest."""
    ordered = [raw_ifd] + [i for i in ifds if i.kind == "IFD0" and i is not raw_ifd] + \
              [i for i in ifds if i.kind.endswith("Exif")] + \
              [i for i in ifds if i is not raw_ifd and i.kind != "IFD0" and not i.kind.endswith("Exif")]
    meta: dict[str, Any] = {}
    for ifd in ordered:
        for tag, value in ifd.tags.items():
            name = TAG_NAMES.get(tag, f"Tag{tag}")
            if name in meta:
                continue
            n = len(value) if isinstance(value, (tuple, bytes)) else 1
            if n > _MAX_METADATA_VALUES:
                continue
            meta[name] = list(value) if isinstance(value, tuple) else value
    return meta


def _find_raw_ifd(ifds: list[TiffIfd], source) -> TiffIfd:
    candidates = [i for i in ifds if int(i.get("NewSubFileType", 0) or 0) == 0
                  and i.get("PhotometricInterpretation") in (PHOTOMETRIC_CFA, PHOTOMETRIC_LINEAR_RAW)]
    if candidates:
        return candidates[0]
    found = sorted({int(i.get("PhotometricInterpretation", -1)) for i in ifds})
    raise ValueError(f"{source}: no full-resolution raw image in this DNG (PhotometricInterpretation of its IFDs: "
                     f"{found}; supported: {PHOTOMETRIC_CFA} CFA, {PHOTOMETRIC_LINEAR_RAW} LinearRaw)")


def _check_image_data_inside(raw_ifd: TiffIfd, size: int, source) -> None:
    for off_tag, cnt_tag in (("StripOffsets", "StripByteCounts"), ("TileOffsets", "TileByteCounts")):
        offs, cnts = raw_ifd.get(off_tag), raw_ifd.get(cnt_tag)
        if offs is None:
            continue
        if cnts is None:
            raise ValueError(f"{source}: raw image has {off_tag} but no {cnt_tag}; corrupt DNG")
        offs = offs if isinstance(offs, tuple) else (offs,)
        cnts = cnts if isinstance(cnts, tuple) else (cnts,)
        end = max(int(o) + int(c) for o, c in zip(offs, cnts))
        if end > size:
            raise ValueError(f"{source}: truncated file: the raw image data ends at byte {end} but the file has "
                             f"only {size} bytes")
        return
    raise ValueError(f"{source}: raw image IFD has neither strips nor tiles; corrupt DNG")


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
    return f if f > 0 else None


def _color_from_metadata(meta: dict[str, Any], source) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(as_shot_neutral, illum, ccm) from the DNG colour tags; ``ValueError`` naming what is missing."""
    matrices = [meta.get("ColorMatrix1"), meta.get("ColorMatrix2")]
    matrices = [m if m is not None and np.size(m) >= 9 else None for m in matrices]
    if matrices[0] is None and matrices[1] is None:
        raise ValueError(f"{source}: missing required DNG metadata: no ColorMatrix1/ColorMatrix2 tag, so no "
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
        raise ValueError(f"{source}: {exc}") from None

    neutral = meta.get("AsShotNeutral")
    if neutral is not None and np.size(neutral) >= 3:
        neutral = np.asarray(neutral, dtype=np.float64).ravel()[:3]
    elif meta.get("AsShotWhiteXY") is not None:
        try:
            neutral = cm.neutral_from_white_xy(meta["AsShotWhiteXY"], color_matrix)
        except ValueError as exc:
            raise ValueError(f"{source}: invalid AsShotWhiteXY: {exc}") from None
    else:
        raise ValueError(f"{source}: missing required DNG metadata: no AsShotNeutral (or AsShotWhiteXY) tag, so "
                         "the white-balance illuminant is unknown")
    try:
        illum = cm.illuminant_from_neutral(neutral)
    except ValueError as exc:
        raise ValueError(f"{source}: invalid AsShotNeutral: {exc}") from None
    return neutral, illum.astype(np.float32), ccm.astype(np.float32)


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
        ValueError: not a DNG / truncated / corrupt, unsupported CFA or photometric interpretation, missing
            AsShotNeutral or ColorMatrix, a crop outside the image. Every message starts with the path.
    """
    import rawpy  # heavy native import, kept local

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: DNG file not found")
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file")
    data = path.read_bytes()
    ifds = read_tiff_ifds(data, path)
    if not ifds or ifds[0].get("DNGVersion") is None:
        raise ValueError(f"{path}: a TIFF file but not a DNG (no DNGVersion tag in IFD0)")
    raw_ifd = _find_raw_ifd(ifds, path)
    _check_image_data_inside(raw_ifd, len(data), path)
    photometric = raw_ifd.get("PhotometricInterpretation")
    tag_cfa = _cfa_from_tags(raw_ifd, path) if photometric == PHOTOMETRIC_CFA else None
    if photometric == PHOTOMETRIC_LINEAR_RAW and raw_ifd.get("SamplesPerPixel", 1) != 3:
        raise ValueError(f"{path}: LinearRaw image with {raw_ifd.get('SamplesPerPixel', 1)} samples per pixel; "
                         "only 3-channel (RGB) LinearRaw is supported")
    meta = _metadata_dict(ifds, raw_ifd)
    neutral, illum, ccm = _color_from_metadata(meta, path)

    try:
        with rawpy.imread(str(path)) as rp:
            if photometric == PHOTOMETRIC_CFA:
                if rp.raw_pattern is None or rp.raw_image_visible.ndim != 2:
                    raise ValueError(f"{path}: LibRaw did not decode the CFA image as a single-plane mosaic")
                try:
                    cfa = cfa_string(rp.raw_pattern, rp.color_desc.decode("ascii"))
                except ValueError as exc:
                    raise ValueError(f"{path}: {exc}") from None
                mosaic = rp.raw_image_visible.copy()
                colors = rp.raw_colors_visible.copy()
            else:
                cfa = "LinearRaw"
                mosaic = rp.raw_image_visible.copy()
                colors = None
            black = tuple(float(b) for b in rp.black_level_per_channel)
            white = float(rp.white_level)
    except ValueError:
        raise
    except Exception as exc:  # LibRaw errors (rawpy.LibRawError and friends), memory errors on corrupt sizes
        raise ValueError(f"{path}: rawpy/LibRaw could not decode the raw image: {type(exc).__name__}: {exc}") \
            from exc
    if tag_cfa is not None and tag_cfa != cfa:
        # LibRaw's pattern is relative to the visible area, the tag to the ActiveArea origin; they agree unless the
        # visible area starts at an odd offset inside the active area. LibRaw's is the one aligned with the data.
        meta["CFAPatternActiveArea"] = tag_cfa
    if white <= 0:
        raise ValueError(f"{path}: invalid white level {white}")

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
            raise ValueError(f"{path}: image {mosaic.shape[1]}x{mosaic.shape[0]} is too small to demosaic")
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
            raise ValueError(f"{path}: LibRaw decoded the LinearRaw image as shape {mosaic.shape}; expected "
                             "(H, W, 3 or 4)")
        planes = mosaic[..., :3].astype(np.float32)
        rgb = (planes - np.asarray(black[:3], dtype=np.float32)) / white32
        rgb = np.clip(rgb, 0.0, 1.0).astype(np.float32)
    rgb_out = rgb

    orientation = meta.get("Orientation", 1)
    orientation = int(orientation) if isinstance(orientation, int) and 1 <= orientation <= 8 else 1
    make, model = meta.get("Make"), meta.get("Model")
    return RawImage(
        path=path, rgb=rgb_out, cfa=cfa, black_level=black, white_level=white,
        as_shot_neutral=np.asarray(neutral, dtype=np.float64), illum=illum, ccm=ccm, orientation=orientation,
        make=make or None, model=model or None, iso=_positive(meta.get("ISOSpeedRatings")),
        exposure_time=_positive(meta.get("ExposureTime")), f_number=_positive(meta.get("FNumber")),
        focal_length=_positive(meta.get("FocalLength")), crop=window, full_size=full, metadata=meta)
