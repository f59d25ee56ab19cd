"""A small reader for classic TIFF files (DNG is one), and the project's DNG error.

``read_tiff_ifds(data, source)`` walks every image file directory (the IFD0 chain, SubIFDs, EXIF IFDs) and returns
:class:`TiffIfd` objects holding each tag's decoded value **and its TIFF field type and count** (``ifd.field(tag)``),
so that :mod:`isp.io.dng_validate` can check both before anything trusts a value.

The reader itself only guarantees structure: the header, every IFD and every tag value lie inside the file, IFD
pointers (SubIFDs, ExifIFD) are LONG/IFD values that point inside the file, no IFD loops, at most ``MAX_IFDS`` IFDs.
Values are decoded as the field type says (RATIONALs to floats; n/0 gives NaN, which the validation rejects
where the tag is used, and 0/0 reads as 0 as real writers mean it).
Anything wrong raises :class:`DngError` naming the file, the tag and the IFD.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DngError", "TiffIfd", "read_tiff_ifds", "TAG_NAMES", "TAG_IDS", "TYPE_NAMES", "MAX_IFDS"]


class DngError(ValueError):
    """A DNG (or TIFF) that cannot be decoded: corrupt, truncated, malformed or unsupported.

    The message is one line that starts with the file: ``"PATH: TAG in IFD: problem; expected ..."``. ``path``,
    ``tag`` (name or None) and ``ifd`` (e.g. "IFD0", "IFD0/SubIFD"; or None) are kept as attributes. A subclass of
    ``ValueError``, so callers that catch ``ValueError`` for bad input keep working.
    """

    def __init__(self, path, problem: str, *, tag: str | None = None, ifd: str | None = None) -> None:
        self.path, self.tag, self.ifd, self.problem = str(path), tag, ifd, problem
        where = f"{tag} in {ifd}: " if tag and ifd else (f"{tag}: " if tag else (f"{ifd}: " if ifd else ""))
        super().__init__(f"{path}: {where}{problem}".replace("\r", " ").replace("\n", " "))   # always one line


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
TAG_IDS = {v: k for k, v in TAG_NAMES.items()}

#: TIFF field type -> (struct code, size in bytes); rationals are two codes per value
_TYPES = {1: ("B", 1), 2: ("s", 1), 3: ("H", 2), 4: ("I", 4), 5: ("II", 8), 6: ("b", 1), 7: ("B", 1),
          8: ("h", 2), 9: ("i", 4), 10: ("ii", 8), 11: ("f", 4), 12: ("d", 8), 13: ("I", 4)}
TYPE_NAMES = {1: "BYTE", 2: "ASCII", 3: "SHORT", 4: "LONG", 5: "RATIONAL", 6: "SBYTE", 7: "UNDEFINED",
              8: "SSHORT", 9: "SLONG", 10: "SRATIONAL", 11: "FLOAT", 12: "DOUBLE", 13: "IFD"}
MAX_IFDS = 64
#: numeric tags with more values than this are not decoded (no tag the decoder uses has that many; decoding a
#: corrupt count of a few hundred thousand rationals would cost ~0.3 s): only their type and count are kept
MAX_DECODED_VALUES = 1 << 17
#: IFD pointer tags followed by the reader: tag id -> kind of the child IFD
_POINTER_TAGS = {330: "SubIFD", 34665: "Exif"}


@dataclass
class TiffIfd:
    """One image file directory: ``tags`` maps tag id -> decoded value; ``fields`` tag id -> (TIFF type, count);
    ``kind`` is "IFD0", "IFD0/SubIFD", "IFD0/Exif", "IFD1"..."""
    offset: int
    kind: str
    tags: dict[int, Any] = field(default_factory=dict)
    fields: dict[int, tuple[int, int]] = field(default_factory=dict)

    def get(self, name_or_id: str | int, default=None):
        key = TAG_IDS[name_or_id] if isinstance(name_or_id, str) else name_or_id
        return self.tags.get(key, default)

    def field(self, name_or_id: str | int) -> tuple[int, int] | None:
        """(TIFF field type, count) of a tag, or None when absent."""
        key = TAG_IDS[name_or_id] if isinstance(name_or_id, str) else name_or_id
        return self.fields.get(key)


def _decode_value(buf: bytes, endian: str, typ: int, count: int):
    code, size = _TYPES[typ]
    if typ == 2:
        return buf[:count].split(b"\0", 1)[0].decode("latin-1").strip()
    if typ in (1, 7) and count > 4:
        return bytes(buf[:count])
    if typ in (5, 10):
        ints = struct.unpack(f"{endian}{2 * count}{code[0]}", buf[:size * count])
        # 0/0 reads as 0 (real writers use it for "unknown", e.g. Adobe's BaselineExposure); n/0 is not a number
        vals = tuple(n / d if d else (math.nan if n else 0.0) for n, d in zip(ints[0::2], ints[1::2]))
    else:
        vals = struct.unpack(f"{endian}{count}{code}", buf[:size * count])
    return vals[0] if count == 1 else vals


def _child_offsets(ifd: TiffIfd, tag: int, size: int, source) -> list[int]:
    """The IFD offsets a pointer tag (SubIFDs, ExifIFD) holds, checked: LONG or IFD type, inside the file."""
    name = TAG_NAMES[tag]
    typ, count = ifd.fields[tag]
    if count == 0:
        raise DngError(source, "0 IFD offsets (an empty pointer tag)", tag=name, ifd=ifd.kind)
    if typ not in (4, 13):
        raise DngError(source, f"TIFF type {TYPE_NAMES.get(typ, typ)}, expected LONG or IFD (IFD offsets)",
                       tag=name, ifd=ifd.kind)
    if count > MAX_IFDS:
        raise DngError(source, f"{count} IFD offsets, expected at most {MAX_IFDS}", tag=name, ifd=ifd.kind)
    v = ifd.tags[tag]
    offsets = list(v) if isinstance(v, tuple) else [v]
    for o in offsets:
        if not 8 <= o <= size - 2:
            raise DngError(source, f"IFD offset {o} outside the file ({size} bytes); truncated or corrupt file",
                           tag=name, ifd=ifd.kind)
    return offsets


def read_tiff_ifds(data: bytes, source: str | Path = "<bytes>") -> list[TiffIfd]:
    """Parse every IFD of a classic TIFF (DNG) held in ``data``: the IFD0 chain, SubIFDs and EXIF IFDs.

    Returns them in discovery order (IFD0 first). Raises :class:`DngError` (a ``ValueError``) naming ``source``
    for anything that is not a well-formed TIFF: bad header, BigTIFF, an IFD or a tag value outside the file
    (truncation), a malformed IFD pointer, too many IFDs. A loop in an IFD chain ends the chain.
    """
    size = len(data)
    if size < 8:
        raise DngError(source, f"not a DNG/TIFF file ({size} bytes, too short for a TIFF header)")
    order = data[:2]
    if order not in (b"II", b"MM"):
        raise DngError(source, f"not a DNG/TIFF file (header starts {data[:8]!r}, expected b'II*\\x00' or "
                               "b'MM\\x00*')")
    e = "<" if order == b"II" else ">"
    magic, first = struct.unpack(f"{e}HI", data[2:8])
    if magic == 43:
        raise DngError(source, "BigTIFF files are not supported (DNG uses classic TIFF)")
    if magic != 42:
        raise DngError(source, f"not a DNG/TIFF file (TIFF magic {magic}, expected 42)")

    ifds: list[TiffIfd] = []
    seen: set[int] = set()
    todo: list[tuple[int, str, bool]] = [(first, "IFD0", True)]   # (offset, kind, follow next-IFD chain)
    top_level = 0
    while todo:
        off, kind, chain = todo.pop(0)
        while off:
            if off in seen:
                break                                   # a loop in the chain: stop following it
            if len(ifds) >= MAX_IFDS:
                raise DngError(source, f"more than {MAX_IFDS} IFDs; corrupt TIFF structure")
            if off + 2 > size:
                raise DngError(source, f"truncated or corrupt file: {kind} at byte {off} lies beyond the end of "
                                       f"the file ({size} bytes)")
            seen.add(off)
            (n,) = struct.unpack(f"{e}H", data[off:off + 2])
            end = off + 2 + 12 * n + 4
            if end > size:
                raise DngError(source, f"truncated or corrupt file: {kind} at byte {off} with {n} entries ends at "
                                       f"byte {end}, past the end of the file ({size} bytes)")
            ifd = TiffIfd(offset=off, kind=kind)
            for k in range(n):
                p = off + 2 + 12 * k
                tag, typ, count = struct.unpack(f"{e}HHI", data[p:p + 8])
                if typ not in _TYPES or tag in ifd.fields:
                    continue                            # unknown field type: skip as the TIFF spec allows
                if count == 0:
                    ifd.fields[tag] = (typ, 0)          # no value; the validation rejects it where it is used
                    continue
                nbytes = _TYPES[typ][1] * count
                if nbytes <= 4:
                    buf = data[p + 8:p + 8 + nbytes]
                else:
                    (voff,) = struct.unpack(f"{e}I", data[p + 8:p + 12])
                    if voff + nbytes > size:
                        raise DngError(source, f"truncated or corrupt file: {count} {TYPE_NAMES[typ]} values at "
                                               f"bytes {voff}...{voff + nbytes}, past the end of the file "
                                               f"({size} bytes)", tag=TAG_NAMES.get(tag, f"tag {tag}"), ifd=kind)
                    buf = data[voff:voff + nbytes]
                ifd.fields[tag] = (typ, count)
                if count <= MAX_DECODED_VALUES or typ in (1, 2, 7):
                    ifd.tags[tag] = _decode_value(buf, e, typ, count)
            ifds.append(ifd)
            for tag, child_kind in _POINTER_TAGS.items():
                if tag in ifd.fields:
                    for child in _child_offsets(ifd, tag, size, source):
                        todo.append((child, f"{kind}/{child_kind}", False))
            (off,) = struct.unpack(f"{e}I", data[end - 4:end])
            if not chain:
                break
            top_level += 1
            kind = f"IFD{top_level}"
    return ifds
