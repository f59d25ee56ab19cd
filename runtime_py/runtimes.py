"""The host runtimes for exported artifacts (``load(path) -> Runner``), under the runtime's name.

They live in :mod:`convert.runtimes`, one layer down, because the exporter verifies every artifact with them
(``convert.targets.base.verify``); this module is the same objects, and its :func:`load` also takes
``runtime="litert-gpu"`` / ``"litert-gpu-f32"``: a ``.tflite`` on LiteRT's GPU delegate (:mod:`convert.gpu_delegate`;
option ``allow_cpu_fallback``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from convert import runtimes as _host
from convert.runtimes import *  # noqa: F401,F403
from convert.runtimes import __all__  # noqa: F401


def load(path: Path | str, input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None,
         **options: Any) -> Any:
    """:func:`convert.runtimes.load`, or with ``runtime`` other than ``"cpu"`` LiteRT's GPU delegate."""
    runtime = options.pop("runtime", None)
    if runtime in (None, "cpu"):
        return _host.load(path, input_names, output_names, **options)
    from convert.gpu_delegate import open_runner
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"artifact not found: {path}")
    if path.suffix != ".tflite":
        raise ValueError(f"{path.name}: runtime {runtime} runs .tflite artifacts only")
    return open_runner(path, runtime, input_names, output_names, **options)
