"""Write a minimal uncompressed Bayer DNG: for synthetic test and benchmark frames (the reader is :mod:`isp.io.dng`).

    write_cfa_dng("frame.dng", mosaic_uint16, cfa=(0, 1, 1, 2), black=256, white=4095,
                  color_matrix1=cm.ravel(), as_shot_neutral=neutral)

One little-endian IFD, one strip of 16-bit samples, the tags LibRaw and :func:`isp.io.dng.read_dng` need (CFA
pattern, black and white level, ColorMatrix1 with CalibrationIlluminant1 D65, AsShotNeutral). ``extra`` adds or
replaces tags (``{tag: (TIFF type, values)}``), ``drop`` removes some, ``dng=False`` leaves out DNGVersion (a plain
TIFF). The file is written atomically.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

__all__ = ["write_cfa_dng"]

#: TIFF field type -> struct code of one value (RATIONAL / SRATIONAL are pairs of LONG / SLONG)
_STRUCT_CODES = {1: "B", 2: "s", 3: "H", 4: "I", 5: "I", 6: "b", 7: "B", 8: "h", 9: "i", 10: "i", 11: "f",
                 12: "d", 13: "I"}
_D65 = 21


def _rationals(values: Sequence[float], signed: bool = False, den: int = 10000) -> tuple[int, list[int]]:
    flat: list[int] = []
    for v in values:
        flat += [int(round(float(v) * den)), den]
    return (10 if signed else 5), flat


def _pack(typ: int, values) -> tuple[int, bytes]:
    """``(count, bytes)`` of one tag's values."""
    if typ == 2:
        raw = bytes(values)
        return len(raw), raw
    raw = struct.pack(f"<{len(values)}{_STRUCT_CODES[typ]}", *values)
    return (len(values) // 2 if typ in (5, 10) else len(values)), raw


def write_cfa_dng(path: str | Path, mosaic: np.ndarray, *, cfa: Sequence[int] = (0, 1, 1, 2),
                  cfa_dim: Sequence[int] = (2, 2), black: int = 64, white: int = 1023,
                  color_matrix1: Sequence[float] = (0.6013, 0.0561, -0.1283, -0.6654, 1.5953, 0.0561, -0.2485,
                                                    0.5772, 0.4008),
                  as_shot_neutral: Sequence[float] = (0.5, 1.0, 0.7),
                  extra: Mapping[int, tuple[int, object]] | None = None, drop: Sequence[int] = (),
                  dng: bool = True) -> Path:
    """Write ``mosaic`` ``(H, W)`` (digital numbers, stored as uint16) as a CFA DNG at ``path``; returns the path."""
    from isp.atomic import write_bytes_atomic

    mosaic = np.asarray(mosaic)
    if mosaic.ndim != 2:
        raise ValueError(f"mosaic must be a 2-D (H, W) array of digital numbers, got shape {mosaic.shape}")
    h, w = mosaic.shape
    pixels = np.ascontiguousarray(mosaic, dtype="<u2").tobytes()
    tags: dict[int, tuple[int, object]] = {
        254: (4, [0]), 256: (4, [w]), 257: (4, [h]), 258: (3, [16]), 259: (3, [1]), 262: (3, [32803]),
        271: (2, b"Test\0"), 272: (2, b"writer\0"), 273: (4, [0]), 274: (3, [1]), 277: (3, [1]),
        278: (4, [h]), 279: (4, [len(pixels)]), 284: (3, [1]),
        33421: (3, list(cfa_dim)), 33422: (1, list(cfa)),
        50706: (1, [1, 4, 0, 0]), 50708: (2, b"Test writer\0"), 50714: (4, [int(black)]),
        50717: (4, [int(white)]), 50721: _rationals(color_matrix1, signed=True), 50778: (3, [_D65]),
        50728: _rationals(as_shot_neutral),
    }
    if not dng:
        del tags[50706]
    tags.update(extra or {})
    for t in drop:
        tags.pop(t, None)
    entries = [(tag, typ, *_pack(typ, vals)) for tag, (typ, vals) in sorted(tags.items())]
    data_start = 8 + 2 + 12 * len(entries) + 4               # header, entry count, entries, next-IFD offset
    blobs = bytearray()
    offsets = {}
    for tag, _typ, _count, raw in entries:                    # values over 4 bytes live after the IFD
        if len(raw) > 4:
            offsets[tag] = data_start + len(blobs)
            blobs += raw + b"\0" * (len(raw) % 2)
    pixel_offset = data_start + len(blobs)
    out = bytearray(b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", len(entries)))
    for tag, typ, count, raw in entries:
        if tag == 273:
            raw = struct.pack("<I", pixel_offset)
        if tag in offsets:
            out += struct.pack("<HHII", tag, typ, count, offsets[tag])
        else:
            out += struct.pack("<HHI", tag, typ, count) + raw.ljust(4, b"\0")
    out += struct.pack("<I", 0) + blobs
    path = Path(path)
    write_bytes_atomic(path, bytes(out) + pixels)
    return path
