"""One validation pass over a DNG's TIFF structure and tags, before any pixel is decoded.

:func:`validate_dng` checks every tag :func:`isp.io.dng.read_dng` (or LibRaw, on its behalf) relies on for its TIFF
field type, its count, finiteness and range, and returns the :class:`DngLayout` of the raw image. Anything wrong
raises :class:`isp.io.tiff.DngError` with one line naming the file, the tag, the IFD and what was expected, e.g.::

    photo.dng: ColorMatrix1 in IFD0: value nan is not finite

What is checked:

* **structure**: DNGVersion; NewSubFileType and PhotometricInterpretation of every IFD (they pick the raw image);
  ImageWidth/ImageLength, SamplesPerPixel, BitsPerSample, SampleFormat, Compression, PlanarConfiguration;
  strips (StripOffsets/StripByteCounts/RowsPerStrip) or tiles (TileWidth/TileLength/TileOffsets/TileByteCounts):
  exactly as many chunks as the dimensions ask for, each inside the file and with a byte count that fits its pixel
  count and compression (uncompressed: at least the packed size and not vastly more; lossless JPEG: at least one bit
  per sample; so data that is missing, shorter than declared or far larger than the dimensions is an error);
* **CFA**: CFARepeatPatternDim, CFAPattern, CFAPlaneColor, CFALayout; LinearRaw needs 3 samples per pixel;
* **levels and areas**: BlackLevelRepeatDim, BlackLevel, BlackLevelDeltaH/V, WhiteLevel (black below white, white
  within the bit depth), LinearizationTable, ActiveArea, DefaultCropOrigin/Size, MaskedAreas;
* **colour**: ColorMatrix1-3, ForwardMatrix1-3, CameraCalibration1-3, AnalogBalance, AsShotNeutral, AsShotWhiteXY,
  CalibrationIlluminant1-3: types, counts (3x3 for the 3-colour images supported), finite values, positive neutrals;
* **other metadata the tools use**: Orientation (0, "unknown", is read as 1), Make/Model (ASCII), ISO, exposure time,
  f-number, focal length (finite, non-negative); OpcodeList1-3 of every IFD (well-formed lists, at most
  ``MAX_OPCODES`` opcodes; a corrupt count made LibRaw spin for ~50 s);
* **bounded work**: ``MIN_DIM`` (LibRaw's minimum) to ``MAX_DIM`` pixels a side, ``MAX_PIXELS`` pixels and
  ``MAX_CHUNKS`` strips or tiles, so a hostile file is rejected in milliseconds instead of minutes inside LibRaw.

After LibRaw has opened the file, :func:`check_libraw` compares what LibRaw reports (raw and visible size, margins,
black and white levels) with the tags, and :func:`check_decoded` rejects raw data that decodes to nothing but zeros
while the black level says it cannot.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from isp.io.tiff import TYPE_NAMES, DngError, TiffIfd

__all__ = ["DngLayout", "validate_dng", "check_libraw", "check_decoded", "metadata_order", "is_finite_value",
           "MIN_DIM", "MAX_DIM", "MAX_PIXELS", "MAX_CHUNKS", "MAX_OPCODES", "PHOTOMETRIC_CFA", "PHOTOMETRIC_LINEAR_RAW",
           "COMPRESSIONS"]

PHOTOMETRIC_CFA = 32803
PHOTOMETRIC_LINEAR_RAW = 34892
#: largest width or height accepted (also the TIFF SHORT limit; LibRaw's own is lower)
MAX_DIM = 65535
#: smallest raw width or height: LibRaw decodes nothing smaller
MIN_DIM = 22
#: largest raw image accepted, in pixels (2^28, about 268 MP; the largest DNGs in use are ~200 MP)
MAX_PIXELS = 1 << 28
#: most strips or tiles accepted in the raw image
MAX_CHUNKS = 1 << 16
#: most opcodes accepted in one OpcodeList1/2/3
MAX_OPCODES = 1024
#: DNG compression codes: uncompressed, lossless JPEG, deflate, lossy JPEG, JPEG XL
COMPRESSIONS = {1: "uncompressed", 7: "lossless JPEG", 8: "deflate", 34892: "lossy JPEG", 52546: "JPEG XL"}

UINT = (1, 3, 4)                 # BYTE, SHORT, LONG: unsigned integers
SHORT_LONG = (3, 4)
SRATIONAL = (10,)
RATIONAL = (5,)
ASCII = (2,)
UNDEFINED = (7,)
_NUMERIC = (1, 3, 4, 5, 6, 8, 9, 10, 11, 12)


@dataclass
class DngLayout:
    """The validated raw image of a DNG: where it is, what it is, which IFDs the metadata comes from."""
    raw_ifd: TiffIfd
    photometric: int
    width: int
    height: int
    samples: int
    bits: int
    compression: int
    active_area: tuple[int, int, int, int]     # top, left, bottom, right
    orientation: int                           # 1..8
    order: list[TiffIfd]                       # metadata precedence: raw IFD, IFD0, EXIF, the rest

    @property
    def visible_size(self) -> tuple[int, int]:
        """(H, W) of the visible image (the ActiveArea)."""
        t, l, b, r = self.active_area
        return b - t, r - l


def is_finite_value(v: Any) -> bool:
    """True for strings/bytes and for numbers (or tuples of them) that are all finite."""
    if isinstance(v, (str, bytes)):
        return True
    vals = v if isinstance(v, (tuple, list)) else (v,)
    return all(isinstance(x, int) or (isinstance(x, float) and math.isfinite(x)) for x in vals)


def metadata_order(ifds: list[TiffIfd], raw_ifd: TiffIfd) -> list[TiffIfd]:
    """IFDs in the order metadata is taken from: the raw IFD, then IFD0, then EXIF, then the rest."""
    return [raw_ifd] + [i for i in ifds if i.kind == "IFD0" and i is not raw_ifd] + \
           [i for i in ifds if i.kind.endswith("Exif")] + \
           [i for i in ifds if i is not raw_ifd and i.kind != "IFD0" and not i.kind.endswith("Exif")]


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else repr(v)


class _Checker:
    """Checks single tags of one file; every failure is a DngError naming the file, tag and IFD."""

    def __init__(self, path) -> None:
        self.path = path

    def fail(self, ifd: TiffIfd | None, tag: str | None, problem: str):
        raise DngError(self.path, problem, tag=tag, ifd=ifd.kind if ifd is not None else None)

    def values(self, ifd: TiffIfd, tag: str, types: tuple[int, ...], count=None, *, lo=None, hi=None,
               integer: bool = False, required: bool = False, what: str = ""):
        """The tag's values as a tuple (None when absent and not required), after checking its TIFF type
        (one of ``types``), its count (an int, a (min, max) pair or None for any), that numbers are finite,
        integral if ``integer``, and within [lo, hi]."""
        f = ifd.field(tag)
        if f is None:
            if required:
                self.fail(ifd, tag, f"missing; required{what and ' ' + what}")
            return None
        typ, n = f
        if n == 0:
            self.fail(ifd, tag, "count 0 (no values)")
        if typ not in types:
            self.fail(ifd, tag, f"TIFF type {TYPE_NAMES.get(typ, typ)}, expected "
                                f"{' or '.join(TYPE_NAMES[t] for t in types)}")
        if isinstance(count, int) and n != count:
            self.fail(ifd, tag, f"{n} values, expected {count}{what and ' ' + what}")
        if isinstance(count, tuple) and not count[0] <= n <= count[1]:
            self.fail(ifd, tag, f"{n} values, expected {count[0]} to {count[1]}{what and ' ' + what}")
        v = ifd.get(tag)
        if v is None:                                   # too many values to decode (isp.io.tiff.MAX_DECODED_VALUES)
            self.fail(ifd, tag, f"{n} values; far more than any valid {tag} holds")
        if typ == 2:
            return (v,)
        vals = tuple(v) if isinstance(v, (tuple, bytes)) else (v,)
        for x in vals:
            if isinstance(x, float) and not math.isfinite(x):
                self.fail(ifd, tag, f"value {x:g} is not finite"
                                    + (" (zero denominator)" if typ in (5, 10) and math.isnan(x) else ""))
            if integer and x != int(x):
                self.fail(ifd, tag, f"value {_fmt(x)} is not an integer")
            if (lo is not None and x < lo) or (hi is not None and x > hi):
                want = f"{_fmt(lo)} to {_fmt(hi)}" if lo is not None and hi is not None else \
                    (f"at least {_fmt(lo)}" if lo is not None else f"at most {_fmt(hi)}")
                self.fail(ifd, tag, f"value {_fmt(x)} out of range; expected {want}{what and ' ' + what}")
        return vals

    def one(self, ifd: TiffIfd, tag: str, types=UINT, default=None, **kw):
        vals = self.values(ifd, tag, types, 1, **kw)
        if vals is None:
            return default
        return int(vals[0]) if types is UINT or types is SHORT_LONG else vals[0]


# ------------------------------------------------------------------------------------------------ raw image data


def _chunk_byte_range(compression: int, rows: int, cols: int, samples: int, bits: int) -> tuple[int, int]:
    """(fewest, most) bytes a strip/tile of ``rows`` x ``cols`` pixels x ``samples`` can hold when compressed with
    ``compression``: uncompressed is the packed size up to a 16/32-bit container; lossless JPEG needs at least one
    bit per sample (a Huffman code is at least one bit) and at most ~8 bytes per sample plus tables."""
    n = rows * cols * samples
    container = 2 if bits <= 16 else 4
    if compression == 1:
        return rows * math.ceil(cols * samples * bits / 8), 2 * n * container + 4096
    most = 8 * n * container + 65536
    if compression == 7:
        return max(n // 8, 16), most
    if compression == 8:
        return max(n * container // 1032, 8), most          # deflate cannot beat ~1032:1
    if compression == 34892:
        return max(math.ceil(rows / 8) * math.ceil(cols / 8) // 8, 16), most   # >= 1 bit per 8x8 luma block
    return 1, most


_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_problem(chunk: bytes, rows: int, cols: int, samples: int) -> str | None:
    """What is wrong with a (lossless or lossy) JPEG strip/tile of ``rows`` x ``cols`` x ``samples``, or None:
    it must start with SOI, hold a frame header (SOF) whose size matches the chunk's pixels before its scan, and end
    with EOI (a JPEG stream cut short decodes to zeros in LibRaw)."""
    if chunk[:2] != b"\xff\xd8":
        return f"does not start with a JPEG SOI marker (starts {chunk[:4].hex()})"
    i, n = 2, len(chunk)
    for _ in range(256):
        while i < n and chunk[i] == 0xFF and i + 1 < n and chunk[i + 1] == 0xFF:
            i += 1                                       # fill bytes
        if i + 4 > n or chunk[i] != 0xFF:
            return f"corrupt JPEG header (no marker at byte {i})"
        m = chunk[i + 1]
        if m in _SOF_MARKERS:
            if i + 10 > n:
                return "truncated JPEG frame header"
            y, x, nf = struct.unpack(">HHB", chunk[i + 5:i + 10])
            if y and x * y * nf < rows * cols * samples:    # more is fine: a last strip may be coded in full
                return (f"its JPEG frame is {x}x{y} x {nf} components, fewer samples than the "
                        f"{cols}x{rows} x {samples} it must hold")
            break
        if m == 0xDA:
            return "no JPEG frame header (SOF) before the scan"
        i += 2 + struct.unpack(">H", chunk[i + 2:i + 4])[0]
    else:
        return "more than 256 JPEG header segments"
    if b"\xff\xd9" not in chunk[-4096:].rstrip(b"\0")[-16:]:      # tolerate zero padding
        return "the JPEG stream has no end-of-image marker: it is cut short"
    return None


def _check_chunks(ck: _Checker, ifd: TiffIfd, data: bytes, width: int, height: int, samples: int, bits: int,
                  compression: int, planar: int) -> None:
    size = len(data)
    planes = samples if planar == 2 else 1
    per_chunk_samples = 1 if planar == 2 else samples
    if ifd.field("TileOffsets") is not None or ifd.field("TileWidth") is not None:
        tw = ck.one(ifd, "TileWidth", SHORT_LONG, lo=1, hi=MAX_DIM, required=True, what="for a tiled image")
        tl = ck.one(ifd, "TileLength", SHORT_LONG, lo=1, hi=MAX_DIM, required=True, what="for a tiled image")
        across, down = math.ceil(width / tw), math.ceil(height / tl)
        n = across * down * planes
        if n > MAX_CHUNKS:
            ck.fail(ifd, "TileWidth", f"{tw}x{tl} tiles make {n} tiles for a {width}x{height} image; at most "
                                      f"{MAX_CHUNKS} are accepted")
        what = f"({across} x {down} tiles of {tw}x{tl} for {width}x{height})"
        offs = ck.values(ifd, "TileOffsets", SHORT_LONG, n, required=True, what=what)
        cnts = ck.values(ifd, "TileByteCounts", SHORT_LONG, n, required=True, what=what)
        dims = [(tl, tw)] * n
        names = ("TileOffsets", "TileByteCounts", "tile")
    elif ifd.field("StripOffsets") is not None:
        rps = ck.one(ifd, "RowsPerStrip", SHORT_LONG, default=height, lo=1)
        rps = min(rps, height)
        down = math.ceil(height / rps)
        n = down * planes
        if n > MAX_CHUNKS:
            ck.fail(ifd, "RowsPerStrip", f"{rps} rows per strip make {n} strips; at most {MAX_CHUNKS} are accepted")
        what = f"({down} strips of {rps} rows for {height} rows)"
        offs = ck.values(ifd, "StripOffsets", SHORT_LONG, n, required=True, what=what)
        cnts = ck.values(ifd, "StripByteCounts", SHORT_LONG, n, required=True, what=what)
        dims = [(min(rps, height - (i % down) * rps), width) for i in range(n)]
        names = ("StripOffsets", "StripByteCounts", "strip")
    else:
        ck.fail(ifd, None, "the raw image has neither StripOffsets nor TileOffsets (no image data)")
        return
    for i, (o, c, (rows, cols)) in enumerate(zip(offs, cnts, dims)):
        if o < 8:
            ck.fail(ifd, names[0], f"{names[2]} {i} of {n} starts at byte {o}, inside the TIFF header")
        if o + c > size:
            ck.fail(ifd, names[0], f"{names[2]} {i} of {n} lies at bytes {o}...{o + c}, past the end of the file "
                                   f"({size} bytes): truncated file or missing image data")
        least, most = _chunk_byte_range(compression, rows, cols, per_chunk_samples, bits)
        if not least <= c <= most:
            kind = "shorter than" if c < least else "far larger than"
            ck.fail(ifd, names[1], f"{names[2]} {i} of {n} holds {c} bytes, {kind} a {cols}x{rows} "
                                   f"{COMPRESSIONS[compression]} {names[2]} of {per_chunk_samples} x {bits}-bit "
                                   f"samples can be ({least} to {most} bytes): missing/corrupt image data or "
                                   "wrong ImageWidth/ImageLength")
        if compression in (7, 34892):
            problem = _jpeg_problem(data[o:o + c], rows, cols, per_chunk_samples)
            if problem:
                ck.fail(ifd, names[0], f"{names[2]} {i} of {n} at byte {o} ({c} bytes): {problem}")


def _check_opcode_list(ck: _Checker, ifd: TiffIfd, tag: str) -> None:
    vals = ck.values(ifd, tag, UNDEFINED + (1,))
    if vals is None:
        return
    data = bytes(vals)
    if len(data) < 4:
        ck.fail(ifd, tag, f"{len(data)} bytes, expected at least 4 (the opcode count)")
    (count,) = struct.unpack(">I", data[:4])
    if count > MAX_OPCODES:
        ck.fail(ifd, tag, f"{count} opcodes, expected at most {MAX_OPCODES}")
    pos = 4
    for k in range(count):
        if pos + 16 > len(data):
            ck.fail(ifd, tag, f"opcode {k} of {count} starts at byte {pos} of a {len(data)}-byte list: the list is "
                              "truncated or its count is corrupt")
        (nparam,) = struct.unpack(">I", data[pos + 12:pos + 16])
        pos += 16 + nparam
        if pos > len(data):
            ck.fail(ifd, tag, f"opcode {k} of {count} declares {nparam} parameter bytes, past the end of the "
                              f"{len(data)}-byte list")


# ------------------------------------------------------------------------------------------------ the pass


def _find_raw_ifd(ck: _Checker, ifds: list[TiffIfd]) -> TiffIfd:
    for ifd in ifds:
        ck.one(ifd, "NewSubFileType", UINT)
        ck.one(ifd, "PhotometricInterpretation", UINT)
    candidates = [i for i in ifds if int(i.get("NewSubFileType", 0)) == 0
                  and i.get("PhotometricInterpretation") in (PHOTOMETRIC_CFA, PHOTOMETRIC_LINEAR_RAW)]
    if candidates:
        return candidates[0]
    found = sorted({int(i.get("PhotometricInterpretation", -1)) for i in ifds})
    ck.fail(None, None, f"no full-resolution raw image in this DNG (PhotometricInterpretation of its IFDs: "
                        f"{found}; supported: {PHOTOMETRIC_CFA} CFA, {PHOTOMETRIC_LINEAR_RAW} LinearRaw)")


def _check_cfa(ck: _Checker, ifd: TiffIfd) -> None:
    ck.values(ifd, "CFARepeatPatternDim", UINT, 2, lo=1, hi=16, required=True, what="for a CFA image")
    rows, cols = (int(v) for v in ifd.get("CFARepeatPatternDim"))
    plane = ck.values(ifd, "CFAPlaneColor", (1,), (3, 4), hi=6) or (0, 1, 2)
    if len(set(plane)) != len(plane):
        ck.fail(ifd, "CFAPlaneColor", f"colours {list(plane)} repeat; expected distinct colour codes")
    ck.values(ifd, "CFAPattern", (1,), rows * cols, hi=len(plane) - 1, required=True,
              what=f"(a {rows}x{cols} pattern of plane indices 0..{len(plane) - 1})")
    layout = ck.one(ifd, "CFALayout", SHORT_LONG, default=1)
    if layout != 1:
        ck.fail(ifd, "CFALayout", f"value {layout}; only 1 (rectangular) is supported")


def _check_levels(ck: _Checker, ifd: TiffIfd, samples: int, bits: int, float_data: bool,
                  area_hw: tuple[int, int], image_hw: tuple[int, int]) -> None:
    lin = ck.values(ifd, "LinearizationTable", SHORT_LONG, (1, 65536))
    top = 65535 if lin is not None else (2 ** 32 - 1 if float_data else 2 ** bits)
    white = ck.values(ifd, "WhiteLevel", UINT, (1, samples), lo=1, hi=top) or (2 ** min(bits, 16) - 1,)
    rdim = ck.values(ifd, "BlackLevelRepeatDim", SHORT_LONG, 2, lo=1, hi=16) or (1, 1)
    nblack = int(rdim[0]) * int(rdim[1]) * samples
    black = ck.values(ifd, "BlackLevel", UINT + RATIONAL, (1, nblack) if nblack > 1 else 1, lo=0,
                      what=f"(BlackLevelRepeatDim {rdim[0]}x{rdim[1]} x {samples} samples)")
    if black is not None and len(black) not in (1, nblack):
        ck.fail(ifd, "BlackLevel", f"{len(black)} values, expected 1 or {nblack} (BlackLevelRepeatDim "
                                   f"{rdim[0]}x{rdim[1]} x {samples} samples)")
    lim = float(min(white))
    if black is not None and max(black) >= lim:
        ck.fail(ifd, "BlackLevel", f"value {_fmt(max(black))} is not below the white level {lim:g}")
    for tag, k in (("BlackLevelDeltaH", 1), ("BlackLevelDeltaV", 0)):       # per column / row
        n = (min(area_hw[k], image_hw[k]), max(area_hw[k], image_hw[k]))
        ck.values(ifd, tag, SRATIONAL, n, lo=-lim, hi=lim, what="(one per column/row of the ActiveArea)")


def _check_areas(ck: _Checker, ifd: TiffIfd, width: int, height: int) -> tuple[int, int, int, int]:
    area = ck.values(ifd, "ActiveArea", SHORT_LONG, 4, lo=0)
    area = tuple(int(v) for v in area) if area else (0, 0, height, width)
    t, l, b, r = area
    if not (t < b <= height and l < r <= width):
        ck.fail(ifd, "ActiveArea", f"[{t}, {l}, {b}, {r}] is not a non-empty window of the {width}x{height} image "
                                   "(top < bottom <= ImageLength, left < right <= ImageWidth)")
    for tag in ("DefaultCropOrigin", "DefaultCropSize"):
        ck.values(ifd, tag, UINT + RATIONAL, 2, lo=0, hi=MAX_DIM)
    masked = ck.values(ifd, "MaskedAreas", SHORT_LONG, (4, 64), lo=0)
    if masked is not None:
        if len(masked) % 4:
            ck.fail(ifd, "MaskedAreas", f"{len(masked)} values, expected a multiple of 4 (top, left, bottom, right)")
        for k in range(0, len(masked), 4):
            mt, ml, mb, mr = masked[k:k + 4]
            if not (mt < mb <= height and ml < mr <= width):
                ck.fail(ifd, "MaskedAreas", f"rectangle {list(masked[k:k + 4])} is not inside the {width}x{height} "
                                            "image")
    return area


def _first(order: list[TiffIfd], tag: str) -> TiffIfd | None:
    return next((i for i in order if i.field(tag) is not None), None)


def _check_metadata(ck: _Checker, order: list[TiffIfd]) -> int:
    """Colour and capture tags, each where the metadata dictionary takes it from; returns the orientation."""
    def at(tag):
        return _first(order, tag)

    for k in (1, 2, 3):
        for tag in (f"ColorMatrix{k}", f"ForwardMatrix{k}", f"CameraCalibration{k}"):
            if (ifd := at(tag)) is not None:
                vals = ck.values(ifd, tag, SRATIONAL, 9, lo=-1e4, hi=1e4, what="(3x3 for a 3-colour image)")
                if not any(vals):
                    ck.fail(ifd, tag, "all nine entries are zero")
        if (ifd := at(f"CalibrationIlluminant{k}")) is not None:
            ck.one(ifd, f"CalibrationIlluminant{k}", SHORT_LONG, hi=65535)
    if (ifd := at("AnalogBalance")) is not None:
        ck.values(ifd, "AnalogBalance", RATIONAL, 3, lo=1e-6, hi=1e6)
    if (ifd := at("AsShotNeutral")) is not None:
        ck.values(ifd, "AsShotNeutral", SHORT_LONG + RATIONAL, 3, lo=1e-9, hi=1e9,
                  what="(camera RGB of a neutral: finite, positive)")
    if (ifd := at("AsShotWhiteXY")) is not None:
        ck.values(ifd, "AsShotWhiteXY", RATIONAL, 2, lo=1e-6, hi=1.0)
    for tag in ("Make", "Model", "UniqueCameraModel"):
        if (ifd := at(tag)) is not None:
            ck.values(ifd, tag, ASCII)
    if (ifd := at("ISOSpeedRatings")) is not None:
        ck.values(ifd, "ISOSpeedRatings", SHORT_LONG, (1, 16))
    for tag in ("ExposureTime", "FNumber", "FocalLength"):
        if (ifd := at(tag)) is not None:
            ck.values(ifd, tag, RATIONAL + (11, 12), 1, lo=0, hi=1e9)
    orientation = 1
    if (ifd := at("Orientation")) is not None:
        orientation = ck.one(ifd, "Orientation", SHORT_LONG, hi=8) or 1   # 0 ("unknown") reads as 1
    return orientation


def validate_dng(data: bytes, ifds: list[TiffIfd], path: str | Path) -> DngLayout:
    """Check the structure and tags of a parsed DNG (``ifds`` from :func:`isp.io.tiff.read_tiff_ifds` of
    ``data``); returns the raw image's :class:`DngLayout` or raises :class:`DngError` naming file, tag, IFD."""
    ck = _Checker(path)
    if not ifds or ifds[0].field("DNGVersion") is None:
        ck.fail(None, None, "a TIFF file but not a DNG (no DNGVersion tag in IFD0)")
    ck.values(ifds[0], "DNGVersion", (1,), 4)
    if ifds[0].get("DNGVersion")[0] != 1:
        ck.fail(ifds[0], "DNGVersion", f"{list(ifds[0].get('DNGVersion'))}, expected 1.x.x.x")
    for ifd in ifds:
        for tag in ("OpcodeList1", "OpcodeList2", "OpcodeList3"):
            _check_opcode_list(ck, ifd, tag)
    raw = _find_raw_ifd(ck, ifds)
    photometric = int(raw.get("PhotometricInterpretation"))
    width = ck.one(raw, "ImageWidth", SHORT_LONG, lo=MIN_DIM, hi=MAX_DIM, required=True, what="(raw image width)")
    height = ck.one(raw, "ImageLength", SHORT_LONG, lo=MIN_DIM, hi=MAX_DIM, required=True,
                    what="(raw image height)")
    if width * height > MAX_PIXELS:
        ck.fail(raw, "ImageWidth", f"{width}x{height} is {width * height} pixels; at most {MAX_PIXELS} are accepted")
    samples = ck.one(raw, "SamplesPerPixel", SHORT_LONG, default=1, lo=1, hi=4)
    if photometric == PHOTOMETRIC_CFA and samples != 1:
        ck.fail(raw, "SamplesPerPixel", f"value {samples}; a CFA image has 1 sample per pixel")
    if photometric == PHOTOMETRIC_LINEAR_RAW and samples != 3:
        ck.fail(raw, "SamplesPerPixel", f"LinearRaw image with {samples} samples per pixel; only 3-channel (RGB) "
                                        "LinearRaw is supported")
    bits = ck.values(raw, "BitsPerSample", SHORT_LONG, (1, samples), lo=1, hi=32) or (1,)
    if len(set(bits)) != 1:
        ck.fail(raw, "BitsPerSample", f"{list(bits)}: different bit depths per sample are not supported")
    bits = int(bits[0])
    fmt = ck.values(raw, "SampleFormat", SHORT_LONG, (1, samples), lo=1, hi=3) or (1,)
    if any(f == 2 for f in fmt):
        ck.fail(raw, "SampleFormat", "signed integer samples (2); expected 1 (unsigned) or 3 (float)")
    float_data = fmt[0] == 3
    compression = ck.one(raw, "Compression", SHORT_LONG, default=1)
    if compression not in COMPRESSIONS:
        ck.fail(raw, "Compression", f"value {compression}; expected one of "
                                    + ", ".join(f"{k} ({v})" for k, v in COMPRESSIONS.items()))
    planar = ck.one(raw, "PlanarConfiguration", SHORT_LONG, default=1, lo=1, hi=2)
    _check_chunks(ck, raw, data, width, height, samples, bits, compression, planar)
    if photometric == PHOTOMETRIC_CFA:
        _check_cfa(ck, raw)
    area = _check_areas(ck, raw, width, height)
    _check_levels(ck, raw, samples, bits, float_data, (area[2] - area[0], area[3] - area[1]), (height, width))
    order = metadata_order(ifds, raw)
    orientation = _check_metadata(ck, order)
    return DngLayout(raw_ifd=raw, photometric=photometric, width=width, height=height, samples=samples, bits=bits,
                     compression=compression, active_area=area, orientation=orientation, order=order)


def check_libraw(layout: DngLayout, rp, path) -> None:
    """Compare what LibRaw (an open ``rawpy.RawPy``) reports with the validated tags: raw size, visible size and
    margins, and black/white levels; a mismatch means LibRaw decoded another image than the tags describe."""
    raw = layout.raw_ifd
    s = rp.sizes
    if (s.raw_width, s.raw_height) != (layout.width, layout.height):
        raise DngError(path, f"LibRaw decoded a {s.raw_width}x{s.raw_height} raw image but ImageWidth/ImageLength "
                             f"say {layout.width}x{layout.height}", tag="ImageWidth", ifd=raw.kind)
    t, l, b, r = layout.active_area
    if (s.top_margin, s.left_margin, s.height, s.width) != (t, l, b - t, r - l):
        raise DngError(path, f"LibRaw's visible image is {s.width}x{s.height} at ({s.top_margin}, {s.left_margin}) "
                             f"but the ActiveArea is {r - l}x{b - t} at ({t}, {l})", tag="ActiveArea", ifd=raw.kind)
    black = [float(v) for v in rp.black_level_per_channel]
    white = float(rp.white_level)
    if not (math.isfinite(white) and white > 0) or not all(math.isfinite(v) and 0 <= v < white for v in black):
        raise DngError(path, f"LibRaw's levels are unusable: black {black}, white {white:g} (black must be below "
                             "white)", tag="BlackLevel", ifd=raw.kind)


def check_decoded(mosaic: np.ndarray, black: tuple[float, ...], path, layout: DngLayout) -> None:
    """Raw data that decodes to all zeros while the black level is positive was missing or unreadable (LibRaw
    fills what it cannot decode with zeros): an error, not a black picture."""
    if min(black) > 0 and mosaic.size and not mosaic.any():
        raise DngError(path, f"the raw image decodes to all zeros although the black level is {min(black):g}: "
                             "its image data is missing or unreadable", ifd=layout.raw_ifd.kind)
