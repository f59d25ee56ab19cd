"""Latency statistics and the drift of one device output against the reference."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["RAW_SPACE", "DRIFT_BUDGETS", "latency_stats", "compare_outputs"]

#: tensors in camera-raw space: PSNR, SSIM and max |Δ| only (a colour difference of raw RGB has no meaning)
RAW_SPACE = ("raw", "denoised_raw")
#: report colouring: within budget green, outside red (informative; nothing fails on them)
DRIFT_BUDGETS = {"psnr": 35.0, "de2000_mean": 1.0}


def latency_stats(ms: Sequence[float]) -> dict[str, float | int | None]:
    """p50 / p90 / p99 / min / max / mean / stdev of per-inference milliseconds (linear-interpolated percentiles)."""
    a = np.asarray(list(ms), dtype=np.float64)
    if a.size == 0:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "min": None, "max": None, "mean": None, "stdev": None}
    return {"n": int(a.size), "p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "min": float(a.min()), "max": float(a.max()), "mean": float(a.mean()),
            "stdev": float(a.std(ddof=1)) if a.size > 1 else 0.0}


def _kind(name: str, arr: np.ndarray) -> str:
    """``runtime_py.drift.kind_of`` (the host drift tool's choice), ``data`` for anything not an RGB image."""
    from runtime_py.drift import kind_of
    kind = kind_of(name)
    return kind if arr.ndim == 4 and arr.shape[1] == 3 else "data"


def compare_outputs(name: str, pred: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    """Drift of one tensor: :func:`runtime_py.metrics.compare` with a kind chosen by name (sRGB, linear, data);
    camera-raw images also get SSIM. A shape mismatch is reported, not raised."""
    from runtime_py.metrics import compare, ssim

    pred, ref = np.asarray(pred, dtype=np.float32), np.asarray(ref, dtype=np.float32)
    if pred.shape != ref.shape:
        return {"name": name, "error": f"shape {list(pred.shape)} vs reference {list(ref.shape)}"}
    if not np.isfinite(pred).all():
        return {"name": name, "error": f"{int((~np.isfinite(pred)).sum())} non-finite values in the device output"}
    kind = _kind(name, ref)
    m = compare(pred, ref, kind)
    m["identical"] = m["max_abs"] == 0.0          # PSNR is then inf, which JSON writes as null
    if kind == "data" and name in RAW_SPACE and ref.ndim == 4 and ref.shape[1] == 3 and min(ref.shape[2:]) >= 11:
        m["ssim"] = ssim(pred, ref)
    return {"name": name, **m}
