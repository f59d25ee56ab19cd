"""A raw image stored inside an sRGB JPEG (the paper tool's "--store-raw"), written and read back.

What is stored (format and rationale: ``docs/RAW_IN_JPEG.md``):

* the **raw JPEG**: the raw after the Raw-JPEG adapter's pre-processing (:mod:`isp.stages.raw_jpeg`), truncated to
  8 bits and written by Pillow at the adapter's quality with a COM segment holding the adapter's side data (gamma
  map and LUT) in the official string format (:func:`encode_params` / :func:`decode_params`). This stream is
  byte-for-byte what the official tool writes for the same pixels and side data;
* a small JSON record: what is needed to re-render (illuminant, CCM, orientation, camera, denoiser camera), the raw
  size and the adapter quality.

Container (version 1): the payload ``u32 json length | JSON | raw JPEG`` is split into chunks carried by APP11
segments placed right after the carrier's leading APP0/APP1 segments. Each segment holds the identifier
``MNISP-RAW\\0``, the format version, its sequence number and the number of segments, the payload length and the
payload's CRC-32. Reading checks all of them; any mismatch, a missing segment, a bad CRC, unreadable JSON, an
undecodable raw JPEG or a malformed COM string is a ``ValueError`` that names the file and says what is wrong (a
damaged embedded raw is never silently replaced by a linearized image).

For compatibility, :func:`read_embedded_raw` also reads the official layout (a ``has_raw/has_meta/COM`` text header
and the raw JPEG appended after the carrier's EOI, optionally followed by ``\\nMETA\\n`` + JSON); as in the official
reader, a file whose trailer is not such a header is treated as a plain sRGB image.
"""
from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["FORMAT_VERSION", "APP_MARKER", "IDENTIFIER", "EmbeddedRaw", "encode_params", "decode_params",
           "encode_raw_jpeg", "decode_jpeg_u8", "jpeg_segments", "embed_raw", "read_embedded_raw",
           "write_jpeg_with_raw"]

FORMAT_VERSION = 1
APP_MARKER = 0xEB                      # APP11
IDENTIFIER = b"MNISP-RAW\x00"
_SEG_HEADER = struct.Struct(">BHHII")  # version, sequence, count, payload length, payload CRC-32
_MAX_SEGMENT = 0xFFFF - 2              # bytes after the length field
_CHUNK = _MAX_SEGMENT - len(IDENTIFIER) - _SEG_HEADER.size
_SOI, _EOI, _SOS, _COM = 0xD8, 0xD9, 0xDA, 0xFE


@dataclass
class EmbeddedRaw:
    """What a JPEG carries about its raw: the 8-bit raw JPEG pixels and the adapter's side data."""
    raw_u8: np.ndarray                 # (H, W, 3) uint8, decoded raw JPEG
    gamma_map: np.ndarray              # (1, 1, h, w) float32
    lut: np.ndarray                    # (1, 3, K+1) float32, unnormalised
    meta: dict = field(default_factory=dict)
    layout: str = "mnisp-v1"           # or "official" (payload after EOI)


# ------------------------------------------------------------------------------------------- adapter side data

def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encode_params(gamma_map: np.ndarray, lut: np.ndarray) -> str:
    """Side data -> the official COM string ``shape:zlib(gamma):$:lut_shape:zlib(lut)`` (base64 fields).

    ``gamma_map`` (1, 1, h, w) is stored channel-last as (h, w, 1), ``lut`` (1, C, K+1) as is, both float32, zlib
    level 9; the third field is ``$`` (no DCT scaling).
    """
    g = np.ascontiguousarray(np.asarray(gamma_map, np.float32)[0].transpose(1, 2, 0))
    lut = np.ascontiguousarray(np.asarray(lut, np.float32))
    return ":".join([_b64(np.array(g.shape, np.uint16).tobytes()), _b64(zlib.compress(g.tobytes(), 9)), "$",
                     _b64(np.array(lut.shape, np.uint16).tobytes()), _b64(zlib.compress(lut.tobytes(), 9))])


def decode_params(comment: str, source="<comment>") -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_params` -> ``(gamma_map (1, 1, h, w), lut (1, C, K+1))``; ``ValueError`` naming
    ``source`` when malformed."""
    fields = comment.split(":")
    if len(fields) != 5:
        raise ValueError(f"{source}: adapter parameters have {len(fields)} fields, expected 5")
    shape_s, gamma_s, dct_s, lut_shape_s, lut_s = fields
    if "$" in (shape_s, gamma_s, lut_shape_s, lut_s):
        raise ValueError(f"{source}: adapter parameters lack the gamma map or the LUT (only gamma + LUT "
                         "adapters exist in the official release)")
    if dct_s != "$":
        raise ValueError(f"{source}: adapter parameters use DCT scaling, which the released adapters do not")

    def arr(shape_field: str, data_field: str, what: str) -> np.ndarray:
        try:
            shape = tuple(int(v) for v in np.frombuffer(base64.b64decode(shape_field, validate=True), np.uint16))
            data = np.frombuffer(zlib.decompress(base64.b64decode(data_field, validate=True)), np.float32)
            return data.reshape(shape).copy()
        except (ValueError, zlib.error, TypeError) as exc:
            raise ValueError(f"{source}: adapter {what} is corrupt ({exc})") from None

    g = arr(shape_s, gamma_s, "gamma map")
    lut = arr(lut_shape_s, lut_s, "LUT")
    if g.ndim != 3 or g.shape[2] != 1 or lut.ndim != 3 or lut.shape[0] != 1 or lut.shape[1] != 3:
        raise ValueError(f"{source}: adapter parameters have shapes {g.shape} and {lut.shape}, expected (h, w, 1) "
                         "and (1, 3, K+1)")
    if not (np.isfinite(g).all() and np.isfinite(lut).all()) or g.min() <= 0:
        raise ValueError(f"{source}: adapter parameters hold non-finite or non-positive gamma values")
    return g.transpose(2, 0, 1)[None].copy(), lut


# ---------------------------------------------------------------------------------------------- JPEG streams

def encode_raw_jpeg(raw_u8: np.ndarray, comment: str, quality: int) -> bytes:
    """The raw JPEG: Pillow, ``quality``, default 4:2:0 subsampling, COM = ``comment`` (as the official writer)."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(raw_u8), mode="RGB").save(buf, format="JPEG", quality=int(quality),
                                                                     comment=comment)
    return buf.getvalue()


def decode_jpeg_u8(data: bytes, source="<bytes>") -> np.ndarray:
    """JPEG bytes -> (H, W, 3) uint8 RGB; ``ValueError`` naming ``source`` when it cannot be decoded."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"{source}: embedded raw JPEG cannot be decoded ({exc})") from None


def jpeg_segments(data: bytes, source="<bytes>") -> tuple[list[tuple[int, int, int]], int]:
    """Marker segments before the first scan: ``[(marker, payload_start, payload_end)]`` and the end of the
    image (offset just past EOI; ``len(data)`` if there is none). ``ValueError`` for a stream that is not JPEG."""
    if len(data) < 4 or data[0] != 0xFF or data[1] != _SOI:
        raise ValueError(f"{source}: not a JPEG file (no SOI marker)")
    segs, pos, n = [], 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            raise ValueError(f"{source}: corrupt JPEG (expected a marker at byte {pos})")
        marker = data[pos + 1]
        if marker == 0xFF:                      # fill byte
            pos += 1
            continue
        if marker == _EOI:
            return segs, pos + 2
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if length < 2 or pos + 2 + length > n:
            raise ValueError(f"{source}: corrupt JPEG (segment 0xFF{marker:02X} at byte {pos} runs past the end)")
        segs.append((marker, pos + 4, pos + 2 + length))
        pos += 2 + length
        if marker == _SOS:
            break
    # entropy-coded data: the next marker that is neither stuffing (FF00) nor a restart marker ends it
    while pos + 1 < n:
        if data[pos] == 0xFF and data[pos + 1] not in (0x00, 0xFF) and not 0xD0 <= data[pos + 1] <= 0xD7:
            if data[pos + 1] == _EOI:
                return segs, pos + 2
            # another marker segment (progressive JPEGs have several scans): skip it and carry on
            if pos + 4 > n:
                break
            (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
            pos += 2 + length
            continue
        pos += 1
    return segs, n


def _com_of(data: bytes, source) -> str:
    segs, _ = jpeg_segments(data, source)
    for marker, a, b in segs:
        if marker == _COM:
            return data[a:b].decode("latin-1")
    raise ValueError(f"{source}: embedded raw JPEG has no COM segment with the adapter parameters")


# ---------------------------------------------------------------------------------------------- container

def embed_raw(srgb_jpeg: bytes, raw_jpeg: bytes, meta: dict) -> bytes:
    """Insert the raw JPEG and ``meta`` into ``srgb_jpeg`` as APP11 segments (container version 1)."""
    meta_bytes = json.dumps(meta, sort_keys=True).encode("utf-8")
    payload = struct.pack(">I", len(meta_bytes)) + meta_bytes + raw_jpeg
    crc = zlib.crc32(payload)
    chunks = [payload[i:i + _CHUNK] for i in range(0, len(payload), _CHUNK)]
    if len(chunks) > 0xFFFF:
        raise ValueError(f"raw payload of {len(payload)} bytes needs more than 65535 APP11 segments")
    segments = b"".join(
        b"\xFF" + bytes([APP_MARKER]) + struct.pack(">H", 2 + len(IDENTIFIER) + _SEG_HEADER.size + len(c))
        + IDENTIFIER + _SEG_HEADER.pack(FORMAT_VERSION, i, len(chunks), len(payload), crc) + c
        for i, c in enumerate(chunks))
    segs, _ = jpeg_segments(srgb_jpeg, "<carrier>")
    at = 2
    for marker, _a, b in segs:                  # after the leading APP0 (JFIF) / APP1 (Exif) segments
        if marker not in (0xE0, 0xE1):
            break
        at = b
    return srgb_jpeg[:at] + segments + srgb_jpeg[at:]


def _read_container(data: bytes, segs, source) -> EmbeddedRaw | None:
    parts = [(data[a + len(IDENTIFIER):a + len(IDENTIFIER) + _SEG_HEADER.size], data[a + len(IDENTIFIER)
              + _SEG_HEADER.size:b]) for marker, a, b in segs
             if marker == APP_MARKER and data[a:a + len(IDENTIFIER)] == IDENTIFIER]
    if not parts:
        return None
    damaged = f"{source}: the embedded raw is damaged"
    heads = []
    for head, _chunk in parts:
        if len(head) < _SEG_HEADER.size:
            raise ValueError(f"{damaged} (a segment header is truncated)")
        heads.append(_SEG_HEADER.unpack(head))
    versions = {h[0] for h in heads}
    if versions != {FORMAT_VERSION}:
        newer = max(versions)
        if newer > FORMAT_VERSION:
            raise ValueError(f"{source}: embedded raw uses container version {newer}; this toolkit reads version "
                             f"{FORMAT_VERSION} (update the toolkit)")
        raise ValueError(f"{damaged} (segment versions {sorted(versions)})")
    counts, totals, crcs = {h[2] for h in heads}, {h[3] for h in heads}, {h[4] for h in heads}
    if len(counts) != 1 or len(totals) != 1 or len(crcs) != 1:
        raise ValueError(f"{damaged} (segments disagree on count, length or checksum)")
    count, total, crc = heads[0][2], heads[0][3], heads[0][4]
    by_seq = {}
    for (_, seq, *_rest), (_head, chunk) in zip(heads, parts):
        if seq in by_seq or seq >= count:
            raise ValueError(f"{damaged} (segment {seq} duplicated or out of range)")
        by_seq[seq] = chunk
    if len(by_seq) != count:
        missing = sorted(set(range(count)) - set(by_seq))
        raise ValueError(f"{damaged} ({len(missing)} of {count} segments missing, e.g. #{missing[0]})")
    payload = b"".join(by_seq[i] for i in range(count))
    if len(payload) != total:
        raise ValueError(f"{damaged} (payload is {len(payload)} bytes, header says {total})")
    if zlib.crc32(payload) != crc:
        raise ValueError(f"{damaged} (CRC-32 mismatch: the stored bytes were altered)")
    (meta_len,) = struct.unpack(">I", payload[:4])
    try:
        meta = json.loads(payload[4:4 + meta_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{damaged} (metadata is not valid JSON: {exc})") from None
    raw_jpeg = payload[4 + meta_len:]
    return _raw_from_stream(raw_jpeg, meta, "mnisp-v1", source)


def _raw_from_stream(raw_jpeg: bytes, meta: dict, layout: str, source, comment: str | None = None) -> EmbeddedRaw:
    src = f"{source} (embedded raw)"
    if comment is None:
        comment = _com_of(raw_jpeg, src)
    gamma_map, lut = decode_params(comment, src)
    raw_u8 = decode_jpeg_u8(raw_jpeg, source)
    return EmbeddedRaw(raw_u8=raw_u8, gamma_map=gamma_map, lut=lut, meta=meta, layout=layout)


def _read_official(trailer: bytes, source) -> EmbeddedRaw | None:
    """The official layout; ``None`` when the trailer is not one (the official reader then linearizes)."""
    lines = trailer.split(b"\n", 3)
    if len(lines) < 4:
        return None
    try:
        has_raw, has_meta = int(lines[0]), int(lines[1])
        comment = lines[2].decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    if not has_raw:
        return None
    body, meta = lines[3], {}
    if has_meta:
        body, sep, rest = body.partition(b"\nMETA\n")
        if not sep:
            raise ValueError(f"{source}: the embedded raw is damaged (header announces metadata, none found)")
        rest = rest.split(b"\nEDIT\n", 1)[0]
        try:
            meta = json.loads(rest.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{source}: the embedded raw is damaged (metadata is not valid JSON: {exc})") from None
    return _raw_from_stream(body, meta, "official", source, comment=comment)


def read_embedded_raw(path: str | Path, data: bytes | None = None) -> EmbeddedRaw | None:
    """The raw stored in a JPEG, or ``None`` when the file carries none (a plain sRGB JPEG, or a PNG).

    ``ValueError`` naming the file when a raw is there but damaged.
    """
    path = Path(path)
    if data is None:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: image file not found")
        data = path.read_bytes()
    if not data.startswith(b"\xFF\xD8"):
        return None
    segs, end = jpeg_segments(data, path)
    found = _read_container(data, segs, path)
    if found is not None:
        return found
    return _read_official(data[end:], path) if end < len(data) else None


def write_jpeg_with_raw(path: str | Path, srgb_jpeg: bytes, raw_u8: np.ndarray, gamma_map: np.ndarray,
                        lut: np.ndarray, raw_quality: int, meta: dict) -> Path:
    """Write ``srgb_jpeg`` with the raw embedded, atomically (a crash leaves the old file or none)."""
    from isp.io.image import _atomic_write_bytes
    path = Path(path)
    if path.suffix.lower() not in (".jpg", ".jpeg"):
        raise ValueError(f"{path}: a raw can only be stored in a JPEG (.jpg/.jpeg) output")
    raw_jpeg = encode_raw_jpeg(raw_u8, encode_params(gamma_map, lut), raw_quality)
    meta = {**meta, "container_version": FORMAT_VERSION, "raw_quality": int(raw_quality),
            "raw_shape": [int(raw_u8.shape[0]), int(raw_u8.shape[1])]}
    _atomic_write_bytes(path, embed_raw(srgb_jpeg, raw_jpeg, meta))
    return path
