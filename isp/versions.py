"""One reader of tool versions for every report and manifest (package metadata only: importing coremltools or LiteRT
just to read a version would load TensorFlow). Standard library only."""
from __future__ import annotations

import importlib.metadata
import platform
from typing import Iterable

__all__ = ["tool_versions"]


def tool_versions(distributions: Iterable[str], *, python: bool = True, system: bool = False,
                  missing: str | None = "not installed") -> dict[str, str]:
    """``{"python": ..., "platform": ..., <distribution>: <version>, ...}`` in that order.

    ``python`` / ``system`` add the interpreter version / ``platform.platform()``; a distribution that is not
    installed gets ``missing`` (``None``: left out)."""
    out: dict[str, str] = {}
    if python:
        out["python"] = platform.python_version()
    if system:
        out["platform"] = platform.platform()
    for dist in distributions:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            if missing is not None:
                out[dist] = missing
    return out
