"""Export targets. Each ``convert.targets.<name>`` module has ``export(ExportRequest) -> ExportResult``.

    from convert.targets import ExportRequest, export
    result = export("litert", ExportRequest(module, (x,), precision="fp16", out_dir="artifacts", stem="gain"))

Importing this package imports no backend; :func:`get_target` imports the target module on first use.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from isp.units import TARGET_EXT

from .base import (PRECISIONS, BackendReport, ExportError, ExportRequest, ExportResult, OpCoverage,
                   UnsupportedExportError, verify)

__all__ = ["TARGETS", "PRECISIONS", "get_target", "export", "verify", "ExportRequest", "ExportResult",
           "OpCoverage", "BackendReport", "ExportError", "UnsupportedExportError"]

#: target name -> module under convert.targets; artifact extension (isp.units.TARGET_EXT)
TARGETS = {t: TARGET_EXT[t] for t in ("executorch", "litert", "coreml", "onnx")}


def get_target(name: str) -> ModuleType:
    """The target module (imported lazily). ``ValueError`` names the known targets."""
    if name not in TARGETS:
        raise ValueError(f"export target: expected one of {sorted(TARGETS)}, got {name!r}")
    return importlib.import_module(f"{__name__}.{name}")


def export(target: str, request: ExportRequest) -> ExportResult:
    """``get_target(target).export(request)``."""
    return get_target(target).export(request)
