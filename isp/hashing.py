"""sha256 of files and folders (standard library only, so the device harnesses and the runtime can share it)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["sha256_file", "sha256_path"]


def _feed(h, path: str | os.PathLike):
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of one file's content (read in 1 MiB blocks)."""
    return _feed(hashlib.sha256(), path).hexdigest()


def sha256_path(path: str | os.PathLike) -> str:
    """sha256 of a file (its content, as :func:`sha256_file`), or of a folder (``.mlpackage``) as its files'
    ``relative/posix/path\\0`` + content in sorted order — the digest the artifact manifests record
    (``convert.targets.base.path_sha256``)."""
    path = Path(path)
    if not path.is_dir():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(f for f in path.rglob("*") if f.is_file()):
        h.update(f.relative_to(path).as_posix().encode() + b"\0")
        _feed(h, f)
    return h.hexdigest()
