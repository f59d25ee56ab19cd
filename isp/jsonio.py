"""Atomic JSON reports: written to a temporary file in the target folder, then renamed over the target, so a crash
or a full disk never leaves a half-written report. Non-finite floats become ``null`` (strict JSON). And
:func:`read_json`: a JSON input file whose problems are a one-line ``ValueError``."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from isp.atomic import write_bytes_atomic

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
    """``payload`` as indented JSON (:func:`to_jsonable`), written with :func:`isp.atomic.write_bytes_atomic`."""
    return write_bytes_atomic(path, json.dumps(to_jsonable(payload), indent=1).encode(), what="the report ")


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
