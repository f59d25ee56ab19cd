"""Seeded mutations of DNG files and an in-process fuzz runner for :func:`isp.io.dng.read_dng`.

    from tests.isp.dng_mutate import mutate, fuzz
    data, what = mutate(original_bytes, random.Random(7))      # one mutated file and what was done to it
    report = fuzz(dng_files, count=3000, seed=7, workdir=tmp)   # counts by outcome, slowest files, failures

Command line (a campaign on the shipped DNGs, printing the counts by outcome and the slowest files):

    python -m tests.isp.dng_mutate --count 3000 --seed 12345 [--timeout 20] [--json report.json]

Mutations (each file gets one to three):

* ``retype``: an IFD entry gets another TIFF field type (all 13, and invalid ones);
* ``recount``: another count (0, 1, 2, off by one, doubled, 2^32-1, random);
* ``special``: a value becomes NaN, +-inf, -1, 0 or huge (the entry retyped to FLOAT/DOUBLE/SRATIONAL/SLONG as
  needed to hold it), or a rational gets a zero denominator;
* ``tag-value``: tag-aware damage: 1x1 (or other) dimensions, offsets past the end, byte counts cut, opcode-list
  counts corrupted, pointer tags (SubIFDs, ExifIFD) retyped to SBYTE;
* ``bitflip``, ``truncate``, ``zero-range``: random damage anywhere (biased towards the IFDs and tag values).

Entries of the tags the decoder uses are picked four times as often as others. The runner decodes every mutated
file in a daemon thread with a per-file timeout and classifies the outcome: ``ok`` (decoded; then every returned
number and every metadata value must be finite), ``dng_error`` (a :class:`isp.io.dng.DngError` whose message names
the file), ``unnamed`` (a DngError that does not name the file), ``other`` (any other exception), ``nonfinite``
(decoded with a non-finite value) or ``hang`` (over the timeout).
"""
from __future__ import annotations

import argparse
import json
import math
import random
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from isp.io.tiff import TAG_IDS, DngError, read_tiff_ifds

__all__ = ["Entry", "entries", "set_entry", "mutate", "classify", "fuzz", "FuzzReport", "IMPORTANT_TAGS"]

#: tags the decoder or LibRaw relies on: mutated more often
IMPORTANT_TAGS = {TAG_IDS[n] for n in (
    "NewSubFileType", "ImageWidth", "ImageLength", "BitsPerSample", "Compression", "PhotometricInterpretation",
    "StripOffsets", "Orientation", "SamplesPerPixel", "RowsPerStrip", "StripByteCounts", "PlanarConfiguration",
    "TileWidth", "TileLength", "TileOffsets", "TileByteCounts", "SubIFDs", "SampleFormat", "CFARepeatPatternDim",
    "CFAPattern", "ExifIFD", "DNGVersion", "CFAPlaneColor", "CFALayout", "LinearizationTable", "BlackLevelRepeatDim",
    "BlackLevel", "BlackLevelDeltaH", "BlackLevelDeltaV", "WhiteLevel", "DefaultCropOrigin", "DefaultCropSize",
    "ColorMatrix1", "ColorMatrix2", "CameraCalibration1", "CameraCalibration2", "AnalogBalance", "AsShotNeutral",
    "AsShotWhiteXY", "CalibrationIlluminant1", "CalibrationIlluminant2", "ActiveArea", "ForwardMatrix1",
    "ForwardMatrix2", "OpcodeList1", "OpcodeList2", "OpcodeList3", "Make", "Model", "ISOSpeedRatings", "FNumber",
    "FocalLength", "ExposureTime")}
_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}


@dataclass
class Entry:
    """One IFD entry of a TIFF: where it is and what it holds."""
    pos: int            # byte offset of the 12-byte entry
    tag: int
    typ: int
    count: int
    value_pos: int      # where the value bytes are (inline: pos + 8)
    nbytes: int


def entries(data: bytes) -> tuple[str, list[Entry]]:
    """(struct endianness, every IFD entry of ``data``), via the project's reader (so ``data`` must parse)."""
    e = "<" if data[:2] == b"II" else ">"
    out = []
    for ifd in read_tiff_ifds(data):
        (n,) = struct.unpack(f"{e}H", data[ifd.offset:ifd.offset + 2])
        for k in range(n):
            p = ifd.offset + 2 + 12 * k
            tag, typ, count = struct.unpack(f"{e}HHI", data[p:p + 8])
            nbytes = _SIZES.get(typ, 1) * count
            vpos = p + 8 if nbytes <= 4 else struct.unpack(f"{e}I", data[p + 8:p + 12])[0]
            out.append(Entry(p, tag, typ, count, vpos, nbytes))
    return e, out


def _pick(rng: random.Random, ents: list[Entry]) -> Entry:
    weights = [4.0 if en.tag in IMPORTANT_TAGS else 1.0 for en in ents]
    return rng.choices(ents, weights)[0]


def set_entry(buf: bytearray, e: str, en: Entry, typ: int | None = None, count: int | None = None,
               value: bytes | None = None) -> None:
    if typ is not None:
        buf[en.pos + 2:en.pos + 4] = struct.pack(f"{e}H", typ)
    if count is not None:
        buf[en.pos + 4:en.pos + 8] = struct.pack(f"{e}I", count & 0xFFFFFFFF)
    if value is not None:
        if len(value) <= 4:
            buf[en.pos + 8:en.pos + 12] = value.ljust(4, b"\0")
        elif en.value_pos + len(value) <= len(buf) and en.nbytes > 4:
            buf[en.value_pos:en.value_pos + len(value)] = value           # overwrite the existing value in place
        else:
            buf[en.pos + 8:en.pos + 12] = struct.pack(f"{e}I", len(buf))  # append, point at it
            buf += value


_SPECIALS = (math.nan, math.inf, -math.inf, -1.0, 0.0, 1e30, -1e30, 5e-324)


def _special_value(rng: random.Random, e: str, en: Entry) -> tuple[int, int, bytes, str]:
    """(type, count, bytes, description) of a special value for ``en`` keeping its count where possible."""
    v = rng.choice(_SPECIALS)
    n = max(1, min(en.count, 16))
    kind = rng.choice(("float", "double", "srational-zero-den", "slong", "same-type"))
    if kind == "float":
        return 11, n, struct.pack(f"{e}{n}f", *([v] * n)), f"FLOAT {v!r} x{n}"
    if kind == "double":
        return 12, n, struct.pack(f"{e}{n}d", *([v] * n)), f"DOUBLE {v!r} x{n}"
    if kind == "srational-zero-den":
        return 10, n, struct.pack(f"{e}{2 * n}i", *([rng.choice((1, -1, 0)), 0] * n)), f"SRATIONAL x/0 x{n}"
    if kind == "slong":
        iv = rng.choice((-1, -2 ** 31, 0, 2 ** 31 - 1))
        return 9, n, struct.pack(f"{e}{n}i", *([iv] * n)), f"SLONG {iv} x{n}"
    if en.typ in (11, 12):
        code = "f" if en.typ == 11 else "d"
        return en.typ, n, struct.pack(f"{e}{n}{code}", *([v] * n)), f"same type {v!r} x{n}"
    if en.typ in (5, 10):
        return en.typ, n, struct.pack(f"{e}{2 * n}I", *([rng.choice((1, 0, 7)), 0] * n)), f"rational x/0 x{n}"
    iv = rng.choice((0, 1, 0xFFFF, 0xFFFFFFFF))
    code = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i", 13: "I"}.get(en.typ, "I")
    iv = iv & {"B": 0xFF, "b": 0x7F, "H": 0xFFFF, "h": 0x7FFF, "i": 0x7FFFFFFF}.get(code, 0xFFFFFFFF)
    return en.typ if en.typ in (1, 3, 4, 6, 8, 9, 13) else 4, n, struct.pack(f"{e}{n}{code}", *([iv] * n)), \
        f"integer {iv} x{n}"


def _tag_value(rng: random.Random, buf: bytearray, e: str, ents: list[Entry]) -> str:
    """Tag-aware damage of the kinds that once slipped through (see issue 9)."""
    by_tag: dict[int, list[Entry]] = {}
    for en in ents:
        by_tag.setdefault(en.tag, []).append(en)
    choices = []
    if 256 in by_tag and 257 in by_tag:
        choices.append("dims")
    if 325 in by_tag or 279 in by_tag:
        choices.append("bytecounts")
    if 324 in by_tag or 273 in by_tag:
        choices.append("offsets")
    if any(t in by_tag for t in (51008, 51009, 51022)):
        choices.append("opcodes")
    if 330 in by_tag or 34665 in by_tag:
        choices.append("pointer")
    if 254 in by_tag:
        choices.append("subfiletype")
    if not choices:
        return "tag-value: nothing to do"
    what = rng.choice(choices)
    if what == "dims":
        w, h = rng.choice(((1, 1), (1, 2), (2, 2), (3, 3), (65535, 65535), (0, 0), (100000, 5), (7, 100001)))
        for tag, v in ((256, w), (257, h)):
            en = by_tag[tag][0]
            set_entry(buf, e, en, 4, 1, struct.pack(f"{e}I", v))
        return f"tag-value: ImageWidth/ImageLength = {w}x{h}"
    if what == "bytecounts":
        en = by_tag.get(325, by_tag.get(279))[0]
        v = rng.choice((0, 1, 22, 1000))
        set_entry(buf, e, en, 4, en.count if en.nbytes <= 4 or en.typ == 4 else 1,
                   struct.pack(f"{e}{max(1, en.count) if en.typ == 4 else 1}I",
                               *([v] * (max(1, en.count) if en.typ == 4 else 1))))
        return f"tag-value: byte counts = {v}"
    if what == "offsets":
        en = by_tag.get(324, by_tag.get(273))[0]
        v = rng.choice((len(buf) - 4, len(buf) + 10, 0xFFFFFFF0, 0))
        if en.nbytes <= 4:
            set_entry(buf, e, en, value=struct.pack(f"{e}I", v & 0xFFFFFFFF))
        else:
            set_entry(buf, e, en, count=en.count * rng.choice((70, 140)))   # many more tiles than are there
            return f"tag-value: {en.count} offsets declared as more"
        return f"tag-value: offset = {v}"
    if what == "opcodes":
        en = next(x for t in (51008, 51009, 51022) for x in by_tag.get(t, []))
        v = rng.choice((0xFFFFFFFF, 0x7FFFFFFF, 100000, 2, 0))
        if en.nbytes >= 4:
            buf[en.value_pos:en.value_pos + 4] = struct.pack(">I", v)
        return f"tag-value: opcode count = {v}"
    if what == "pointer":
        en = by_tag.get(330, by_tag.get(34665))[0]
        typ = rng.choice((6, 1, 2, 3, 11, 8))
        set_entry(buf, e, en, typ=typ)
        return f"tag-value: pointer tag {en.tag} retyped to {typ}"
    en = by_tag[254][0]
    set_entry(buf, e, en, typ=rng.choice((4, 11, 12, 5)), count=rng.choice((1, 2, 3)))
    return "tag-value: NewSubFileType retyped/recounted"


def _region(rng: random.Random, size: int, ents: list[Entry]) -> int:
    """A position to damage: usually inside an IFD or a tag value, else anywhere."""
    if ents and rng.random() < 0.7:
        en = rng.choice(ents)
        if rng.random() < 0.5 or en.nbytes <= 4:
            return min(size - 1, en.pos + rng.randrange(12))     # the file may have been truncated already
        return min(size - 1, en.value_pos + rng.randrange(max(1, min(en.nbytes, 1 << 16))))
    return rng.randrange(size)


def mutate(data: bytes, rng: random.Random, rounds: int | None = None) -> tuple[bytes, str]:
    """One mutated copy of the DNG/TIFF ``data`` (which must parse) and a description of what was done."""
    buf = bytearray(data)
    e, ents = entries(data)
    done = []
    for _ in range(rounds or rng.choice((1, 1, 1, 2, 3))):
        kind = rng.choices(("retype", "recount", "special", "tag-value", "bitflip", "truncate", "zero-range"),
                           (3, 2, 3, 3, 2, 1, 1))[0]
        en = _pick(rng, ents)
        if kind == "retype":
            typ = rng.choice([t for t in range(0, 15) if t != en.typ] + [99])
            set_entry(buf, e, en, typ=typ)
            done.append(f"retype tag {en.tag} {en.typ}->{typ}")
        elif kind == "recount":
            count = rng.choice((0, 1, 2, 3, en.count - 1, en.count + 1, 2 * en.count, 0xFFFFFFFF,
                                rng.randrange(1 << 20)))
            set_entry(buf, e, en, count=count)
            done.append(f"recount tag {en.tag} {en.count}->{count & 0xFFFFFFFF}")
        elif kind == "special":
            typ, count, value, what = _special_value(rng, e, en)
            set_entry(buf, e, en, typ, count, value)
            done.append(f"special tag {en.tag}: {what}")
        elif kind == "tag-value":
            done.append(_tag_value(rng, buf, e, ents))
        elif kind == "bitflip":
            flips = rng.choice((1, 2, 4, 16))
            for _ in range(flips):
                p = _region(rng, len(buf), ents)
                buf[p] ^= 1 << rng.randrange(8)
            done.append(f"bitflip x{flips}")
        elif kind == "truncate":
            cut = rng.choice((rng.randrange(len(buf)), len(buf) - rng.randrange(1, 4096), len(buf) // 2))
            del buf[max(0, cut):]
            done.append(f"truncate at {cut}")
        else:
            p = _region(rng, len(buf), ents)
            n = rng.choice((4, 12, 64, 4096, 1 << 16))
            buf[p:p + n] = bytes(len(buf[p:p + n]))
            done.append(f"zero {n} bytes at {p}")
        if len(buf) < 16:
            break
    return bytes(buf), "; ".join(done)


# ------------------------------------------------------------------------------------------------ the runner


def _nonfinite(img) -> str | None:
    """Name of the first non-finite value a decoded RawImage holds, or None."""
    from isp.io.dng_validate import is_finite_value
    for name in ("rgb", "illum", "ccm", "as_shot_neutral"):
        if not np.all(np.isfinite(np.asarray(getattr(img, name), dtype=np.float64))):
            return name
    for name in ("black_level", "white_level", "iso", "exposure_time", "f_number", "focal_length"):
        v = getattr(img, name)
        if v is not None and not np.all(np.isfinite(np.asarray(v, dtype=np.float64))):
            return name
    for k, v in img.metadata.items():
        if not is_finite_value(v):
            return f"metadata[{k}]"
    return None


def classify(path: Path, timeout: float = 20.0) -> tuple[str, str, float]:
    """Decode ``path`` in a daemon thread: (outcome, detail, seconds); outcomes as in the module docstring.

    A centre crop of at most 64x64 (from the validated layout) is demosaiced to keep the campaign fast; LibRaw
    still decodes the whole raw image."""
    from isp.io.dng import read_dng
    from isp.io.dng_validate import validate_dng

    result: list = []

    def work():
        try:
            crop = None
            try:
                data = path.read_bytes()
                h, w = validate_dng(data, read_tiff_ifds(data, path), path).visible_size
                if h >= 64 and w >= 64:
                    crop = [(h - 64) // 2, (w - 64) // 2, 64, 64]
            except DngError:
                pass                                    # read_dng raises it again, as it would for a user
            img = read_dng(path, crop=crop)
            bad = _nonfinite(img)
            result.append(("nonfinite", bad) if bad else ("ok", f"{img.full_size[1]}x{img.full_size[0]} {img.cfa}"))
        except DngError as exc:
            msg = str(exc)
            result.append(("dng_error", msg) if str(path) in msg and "\n" not in msg else ("unnamed", msg))
        except BaseException as exc:  # noqa: BLE001 - the point: anything else is a finding
            result.append(("other", f"{type(exc).__name__}: {exc}"))

    t0 = time.perf_counter()
    th = threading.Thread(target=work, daemon=True)
    th.start()
    th.join(timeout)
    dt = time.perf_counter() - t0
    if th.is_alive():
        return "hang", f"still running after {timeout:g} s", dt
    return result[0][0], result[0][1], dt


@dataclass
class FuzzReport:
    counts: dict[str, int] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)     # outcomes other than ok / dng_error
    slowest: list[dict] = field(default_factory=list)      # the 10 slowest files
    max_seconds: float = 0.0
    total_seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"counts": self.counts, "max_seconds": self.max_seconds, "total_seconds": self.total_seconds,
                "failures": self.failures, "slowest": self.slowest}


def fuzz(files: list[Path], count: int, seed: int, workdir: Path, timeout: float = 20.0,
         keep_failures: bool = True, progress: bool = False) -> FuzzReport:
    """``count`` mutated files (round-robin over ``files``, RNG seeded with ``seed``) decoded one by one.

    Mutated files are written to ``workdir`` and deleted after decoding unless their outcome is a failure and
    ``keep_failures`` (so they can be replayed). A hang stops the campaign (the stuck thread keeps a core)."""
    rng = random.Random(seed)
    originals = [(f, f.read_bytes()) for f in files]
    report = FuzzReport(counts={k: 0 for k in ("ok", "dng_error", "unnamed", "other", "nonfinite", "hang")})
    timings = []
    workdir.mkdir(parents=True, exist_ok=True)
    it = range(count)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc=f"fuzz seed {seed}", unit="file", file=sys.stderr)
    for i in it:
        src, data = originals[i % len(originals)]
        mutated, what = mutate(data, rng)
        path = workdir / f"fuzz-{seed}-{i:05d}-{src.stem}.dng"
        path.write_bytes(mutated)
        outcome, detail, dt = classify(path, timeout)
        report.counts[outcome] += 1
        report.total_seconds += dt
        timings.append((dt, path.name, what, outcome))
        if outcome not in ("ok", "dng_error"):
            report.failures.append({"file": str(path), "mutation": what, "outcome": outcome, "detail": detail})
        if outcome in ("ok", "dng_error") or not keep_failures:
            path.unlink()
        if outcome == "hang":
            break
    timings.sort(reverse=True)
    report.slowest = [{"seconds": round(t, 3), "file": n, "mutation": w, "outcome": o} for t, n, w, o in timings[:10]]
    report.max_seconds = timings[0][0] if timings else 0.0
    return report


def main(argv: list[str] | None = None) -> int:
    from isp import paths

    p = argparse.ArgumentParser(prog="python -m tests.isp.dng_mutate", description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="*", type=Path, help="DNGs to mutate (default: the shipped ones)")
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--timeout", type=float, default=20.0, help="seconds per file before it counts as a hang")
    p.add_argument("--workdir", type=Path, default=Path("fuzz-dng"), help="where mutated files go (failures stay)")
    p.add_argument("--json", type=Path, default=None, help="write the report here")
    args = p.parse_args(argv)
    files = args.files or sorted(paths.dng_dir().glob("*.dng"))
    rep = fuzz(files, args.count, args.seed, args.workdir, args.timeout, progress=True)
    print(json.dumps({"counts": rep.counts, "max_seconds": round(rep.max_seconds, 3),
                      "mean_seconds": round(rep.total_seconds / max(1, sum(rep.counts.values())), 4)}))
    for s in rep.slowest[:5]:
        print(f"  slow: {s['seconds']:.3f} s {s['outcome']:<9} {s['file']}: {s['mutation']}")
    for f in rep.failures[:30]:
        print(f"  {f['outcome']}: {f['file']}: {f['mutation']}: {f['detail'][:300]}")
    if args.json:
        args.json.write_text(json.dumps(rep.as_dict(), indent=1))
    return 0 if not rep.failures else 1


if __name__ == "__main__":
    sys.exit(main())
