"""Atomic JSON reports: written to a temporary file in the target folder, then renamed over the target, so a crash
or a full disk never leaves a half-written report. Non-finite floats become ``null`` (strict JSON). And
:func:`read_json`: a JSON input file whose problems are a one-line ``ValueError``."""
from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["write_json_atomic", "to_jsonable", "read_json"]


def to_jsonable(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:   # numpy / torch scalars
        return to_jsonable(obj.item())
    if hasattr(obj, "tolist"):
        return to_jsonable(obj.tolist())
    return obj


def write_json_atomic(path: str | Path, payload: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)          # mkstemp makes 0600; reports are ordinary files
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(to_jsonable(payload), fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise OSError(exc.errno, f"{path}: disk full while writing the report; nothing was written") from exc
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_json(path: str | Path, *, what: str = "", missing: str | None = None) -> Any:
    """The JSON value of the file ``path``. ``ValueError`` when it is not a file (message ``missing``, default
    ``"{what}{path}: no such file"``) or not valid JSON (``"{what}{path}: not valid JSON (...)"``); ``what`` names
    the input in the messages (e.g. ``"policy "``)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(missing or f"{what}{path}: no such file")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what}{path}: not valid JSON ({exc})") from None
