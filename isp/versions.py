"""One reader of tool versions for every report and manifest (package metadata only: importing coremltools or LiteRT
just to read a version would load TensorFlow). Standard library only."""
from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path
from typing import Iterable

__all__ = ["tool_versions", "cpu_model", "usable_cpus"]


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


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` or the machine type where there is none):
    every benchmark says which CPU gave its numbers."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, ``os.cpu_count()`` where there is none; at least 1."""
    import os
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
