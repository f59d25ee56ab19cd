"""Atomic writes, one implementation for the toolkit (standard library only).

A result is written to a uniquely named temporary sibling of its target (``.<name>.<random>.tmp``), flushed and
fsync'ed, and only then ``os.replace``'d over the target; on any failure (an exception, ``KeyboardInterrupt``, a full
disk) the temporary file is removed and an existing target stays as it was. A full disk is an ``OSError`` with the
original errno whose message says "disk full" and names the path.

* :func:`write_bytes_atomic` — bytes (images, HTML pages, tables);
* :func:`write_atomic` — whatever ``write(binary file)`` produces (``np.save``, ``np.savez``, zip files);
* :func:`replace_path` — a file *or folder* a writer creates at a given temporary path (``.mlpackage`` bundles);
* :func:`publish_dir` — a finished folder renamed into place (the older one moved aside, then removed).

:func:`isp.jsonio.write_json_atomic` writes JSON with these. The device-side ``android_harness/host_runner.py`` keeps
its own few lines on purpose: it is pushed to the device as one self-contained file.
"""
from __future__ import annotations

import errno
import os
import secrets
import shutil
from pathlib import Path
from typing import IO, Any, Callable

__all__ = ["write_bytes_atomic", "write_atomic", "replace_path", "publish_dir", "temp_sibling", "is_disk_full"]

_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _DISK_FULL


def temp_sibling(path: Path, tag: str = "tmp", keep_suffix: bool = False) -> Path:
    """A fresh hidden name next to ``path``: ``.<name>.<random>.<tag>`` (``keep_suffix``: ``.<stem>.<tag>-<random>
    <suffix>``, for writers that pick the format from the extension)."""
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    if keep_suffix:
        return path.with_name(f".{path.stem}.{tag}-{token}{path.suffix}")
    return path.with_name(f".{path.name}.{token}.{tag}")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable where the platform allows it."""
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _disk_full(exc: OSError, path: Path, what: str, size: int | None) -> OSError:
    size_text = f" ({size} bytes)" if size is not None else ""
    return OSError(exc.errno, f"disk full: could not write {what}{path}{size_text}; the previous file, if any, is "
                              "unchanged")


def _atomic(path: Path, fill: Callable[[int], Any], what: str, size: int | None, make_parents: bool) -> Path:
    folder = path.parent
    if make_parents:
        folder.mkdir(parents=True, exist_ok=True)
    elif not folder.is_dir():
        raise FileNotFoundError(f"{path}: output folder {folder} does not exist")
    tmp = temp_sibling(path)
    fd = None
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        fill(fd)
        os.fsync(fd)
        os.close(fd)
        fd = None
        os.replace(tmp, path)
    except BaseException as exc:
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
        tmp.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise _disk_full(exc, path, what, size) from exc
        raise
    _fsync_dir(folder)
    return path


def write_bytes_atomic(path: str | Path, data: bytes, *, what: str = "", make_parents: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring). ``what`` prefixes the path in a disk-full
    message (e.g. ``"the report "``). Without ``make_parents`` a missing folder is a ``FileNotFoundError``."""
    return _atomic(Path(path), lambda fd: _write_all(fd, data), what, len(data), make_parents)


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], Any], *, what: str = "",
                 make_parents: bool = True) -> Path:
    """Call ``write(fh)`` on a temporary sibling opened for binary writing, then replace ``path`` with it
    (``what``, ``make_parents`` as in :func:`write_bytes_atomic`)."""
    def fill(fd: int) -> None:
        with os.fdopen(fd, "wb", closefd=False) as fh:
            write(fh)
            fh.flush()
    return _atomic(Path(path), fill, what, None, make_parents)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        p.unlink()


def replace_path(dest: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` with a temporary sibling path that keeps ``dest``'s suffix, then rename it onto ``dest``
    (a file or a directory such as ``.mlpackage``). A failed write leaves ``dest`` untouched."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(dest, "tmp", keep_suffix=True)
    try:
        write(tmp)
        if not tmp.exists():
            raise FileNotFoundError(f"the writer did not create {tmp}")
        if tmp.is_dir():
            publish_dir(tmp, dest)
        else:
            if dest.is_dir():
                _remove(dest)
            os.replace(tmp, dest)
    finally:
        if tmp.exists():
            _remove(tmp)
    return dest


def publish_dir(tmp: str | Path, target: str | Path, *, replace: bool = True) -> Path:
    """Rename the finished folder ``tmp`` to ``target``. An existing ``target`` is moved aside first and removed
    after the rename (restored if the rename fails); with ``replace=False`` it is a ``FileExistsError``."""
    tmp, target = Path(tmp), Path(target)
    if not target.exists():
        os.replace(tmp, target)
        return target
    if not replace:
        raise FileExistsError(f"{target} already exists")
    old = temp_sibling(target, "old", keep_suffix=True)
    os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old, target)
        raise
    _remove(old)
    return target
