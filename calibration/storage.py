"""How a calibration set stores its arrays: one uncompressed ``.npz`` per stage and role, filled row by row through
memory-mapped spool files and zipped atomically (:class:`NpzSpool`); read back lazily (:func:`open_npz`)."""
from __future__ import annotations

import shutil
import struct
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from isp.atomic import write_atomic
from isp.hashing import sha256_file

__all__ = ["NpzSpool", "open_npz"]


class NpzSpool:
    """Arrays of one ``.npz`` spooled row by row into ``.npy`` memory maps, with running min/max/sum."""

    def __init__(self, folder: Path, rows: Mapping[str, int]) -> None:
        self.folder = folder
        self.rows = dict(rows)
        self.maps: dict[str, np.memmap] = {}
        self.stats: dict[str, list[float]] = {}
        folder.mkdir(parents=True, exist_ok=True)

    def put(self, key: str, start: int, values: np.ndarray) -> None:
        values = np.asarray(values)
        if key not in self.maps:
            shape = (self.rows[key],) + tuple(values.shape[1:])
            self.maps[key] = np.lib.format.open_memmap(self.folder / f"{key}.npy", mode="w+", dtype=values.dtype,
                                                       shape=shape)
            self.stats[key] = [np.inf, -np.inf, 0.0, 0]
        m = self.maps[key]
        if tuple(values.shape[1:]) != m.shape[1:] or values.dtype != m.dtype:
            raise RuntimeError(f"{key}: row shape {values.shape[1:]} {values.dtype} differs from the first rows "
                               f"{m.shape[1:]} {m.dtype}")
        m[start:start + len(values)] = values
        s = self.stats[key]
        if values.size and values.dtype.kind == "f":
            s[0] = min(s[0], float(values.min()))
            s[1] = max(s[1], float(values.max()))
            s[2] += float(values.sum(dtype=np.float64))
            s[3] += values.size

    def describe(self, key: str) -> dict[str, Any]:
        m = self.maps[key]
        lo, hi, total, n = self.stats[key]
        d: dict[str, Any] = {"shape": list(m.shape), "dtype": str(m.dtype)}
        if n:
            d.update(min=lo, max=hi, mean=total / n)
        return d

    def write(self, target: Path) -> str:
        """Zip the arrays (uncompressed) into ``target`` atomically; return its sha256."""
        for key, rows in self.rows.items():
            if key not in self.maps:
                raise RuntimeError(f"{target.name}: array {key} was never filled")
        def zip_into(fh) -> None:
            with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
                for key, m in self.maps.items():
                    m.flush()
                    zf.write(m.filename, arcname=f"{key}.npy")
        write_atomic(target, zip_into)
        return sha256_file(target)

    def close(self) -> None:
        self.maps.clear()
        shutil.rmtree(self.folder, ignore_errors=True)


def open_npz(path: Path) -> dict[str, np.ndarray]:
    """Arrays of an ``.npz``: read-only memory maps for stored (uncompressed) members, loaded arrays otherwise."""
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            key = info.filename[:-4]
            if info.compress_type != zipfile.ZIP_STORED:
                with zf.open(info) as member:
                    out[key] = np.lib.format.read_array(member, allow_pickle=False)
                continue
            fh.seek(info.header_offset)
            local = fh.read(30)
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            fh.seek(info.header_offset + 30 + name_len + extra_len)
            version = np.lib.format.read_magic(fh)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran, dtype = reader(fh)
            if dtype.hasobject:
                raise ValueError(f"{path}: array {key} holds Python objects; not a calibration set file")
            out[key] = np.memmap(path, dtype=dtype, mode="r", offset=fh.tell(), shape=shape,
                                 order="F" if fortran else "C")
    return out
