"""Drift budgets (what ``python -m runtime_py.drift --budget`` enforces) and the metric kind of each tensor name:
the part of the drift tool that its report and the device benchmark read too."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

from isp.jsonio import read_json

__all__ = ["CI_BUDGETS", "NPU_BUDGETS", "LIMITS", "BUDGET_CLASSES", "METRICS", "EXTRA_METRICS", "load_budgets",
           "violations", "check_budgets", "kind_of"]

#: the project's budgets (docs/EXPORT_DESIGN.md and the drift issue)
CI_BUDGETS: dict[str, dict[str, dict[str, float]]] = {
    "unit": {"fp32": {"psnr_min": 60.0, "angle_deg_max": 0.01}},
    "end_to_end": {"fp32": {"psnr_min": 60.0}, "fp16": {"psnr_min": 45.0},
                   "int8": {"psnr_min": 38.0, "de2000_mean_max": 1.0},
                   # LiteRT's GPU delegate in its fp16 compute (--runtime litert-gpu), as a phone runs it
                   "gpu-fp16": {"psnr_min": 45.0, "de2000_mean_max": 0.5}},
}
#: the npu policy's budget (``--budget npu``): integer networks end to end >= 40 dB, mean ΔE2000 <= 0.5 on every
#: frame (CI: ``tests/runtime_py/test_budget_npu.py``, the LiteRT npu set; README, "Integer NAFNets for NPUs")
NPU_BUDGETS: dict[str, dict[str, dict[str, float]]] = {
    "unit": {"fp32": {"psnr_min": 60.0}},
    "end_to_end": {"fp32": {"psnr_min": 60.0}, "int8": {"psnr_min": 40.0, "de2000_mean_max": 0.5}},
}
#: budget key -> (metric of runtime_py.metrics.compare, "min" = lower bound | "max" = upper bound)
LIMITS = {"psnr_min": ("psnr", "min"), "ssim_min": ("ssim", "min"), "de2000_mean_max": ("de2000_mean", "max"),
          "de2000_p95_max": ("de2000_p95", "max"), "de2000_max_max": ("de2000_max", "max"),
          "max_abs_max": ("max_abs", "max"), "angle_deg_max": ("angle_deg", "max")}
BUDGET_CLASSES = ("fp32", "fp16", "int8", "w8", "gpu-fp16", "gpu-fp32")
#: metric columns of the tables, in order
METRICS = ("psnr", "ssim", "de2000_mean", "de2000_p95", "de2000_max", "max_abs")
#: metrics only some outputs have (``angle_deg``: illuminant angular error of the AWB units' ``illum``, degrees)
EXTRA_METRICS = ("angle_deg",)


def load_budgets(spec: str | Path | None) -> dict[str, Any] | None:
    """``"ci"`` -> :data:`CI_BUDGETS`, ``"npu"`` -> :data:`NPU_BUDGETS`, ``"none"``/``None`` -> ``None``, else a
    JSON file of the same shape (``ValueError`` saying what is wrong)."""
    if spec is None or str(spec) == "none":
        return None
    named = {"ci": CI_BUDGETS, "npu": NPU_BUDGETS}
    if str(spec) in named:
        return {"name": str(spec), **json.loads(json.dumps(named[str(spec)]))}
    path = Path(spec)
    data = read_json(path, what="--budget ",
                     missing=f"--budget: expected ci, npu, none or a JSON file, got {spec!r} (no such file)")
    if not isinstance(data, dict) or not set(data) <= {"unit", "end_to_end", "name"} or \
            not ({"unit", "end_to_end"} & set(data)):
        raise ValueError(f"--budget {path}: expected {{\"unit\": {{precision: limits}}, \"end_to_end\": "
                         f"{{class: limits}}}}, got keys {sorted(data) if isinstance(data, dict) else data!r}")
    for part in ("unit", "end_to_end"):
        for cls, limits in (data.get(part) or {}).items():
            if cls not in BUDGET_CLASSES:
                raise ValueError(f"--budget {path}: {part}: unknown precision {cls!r}; expected "
                                 f"{', '.join(BUDGET_CLASSES)}")
            if not isinstance(limits, dict):
                raise ValueError(f"--budget {path}: {part}.{cls} must be an object of limits")
            for key, value in limits.items():
                if key not in LIMITS or not isinstance(value, (int, float)) or isinstance(value, bool):
                    raise ValueError(f"--budget {path}: {part}.{cls}.{key}: expected one of {', '.join(LIMITS)} "
                                     f"with a number, got {key}={value!r}")
    return {"name": str(data.get("name", path.name)), "unit": dict(data.get("unit") or {}),
            "end_to_end": dict(data.get("end_to_end") or {})}


def violations(metrics: Mapping[str, Any], limits: Mapping[str, float]) -> list[str]:
    out = []
    for key, bound in limits.items():
        name, side = LIMITS[key]
        value = metrics.get(name)
        if value is None:
            continue
        value = float(value)
        bad = math.isnan(value) or (value < bound if side == "min" else value > bound)
        if bad:
            unit = " dB" if name == "psnr" else ""
            op = "<" if side == "min" else ">"
            out.append(f"{name} {value:.4g}{unit} {op} {bound:g}{unit}")
    return out


def check_budgets(report: Mapping[str, Any], budgets: Mapping[str, Any] | None) -> list[str]:
    """Every violation as one line naming the unit (or chain), target, precision, metric and where."""
    if budgets is None:
        return []
    out = []
    for u in report["units"]:
        who = f"unit {u['unit']} ({u['target']}/{u['precision']}" + \
            (f" on {u['runtime']})" if u.get("runtime", "cpu") != "cpu" else ")")
        if u["status"] != "ok":
            out.append(f"{who}: {u['error']}")
            continue
        limits = budgets.get("unit", {}).get(u.get("budget_class", u["precision"]))
        if limits is None and u["precision"] == "w8":
            limits = budgets.get("unit", {}).get("int8")
        if not limits:
            continue
        for s in u.get("summary", []):
            if not s["budgeted"]:
                continue
            for v in violations(s, limits):
                out.append(f"{who}: {s['output']} [{s['scope']}] {v} (worst: {s['where']}; budget "
                           f"{u['precision']})")
    for e in report["end_to_end"]:
        who = f"end to end {e['name']}"
        if e["status"] != "ok":
            out.append(f"{who}: {e['error']}")
            continue
        limits = budgets.get("end_to_end", {}).get(e["class"])
        if not limits:
            continue
        for f in e["frames"]:
            for v in violations(f["srgb"], limits):
                out.append(f"{who}: srgb {v} on {f['frame']} (budget {e['class']})")
    return out


# ------------------------------------------------------------------------------------------------------ kinds

_SRGB = {"gamma_out", "srgb_upsampled", "srgb", "srgb_upsampled (sliced)"}
_DATA = {"raw", "denoised_raw", "bgu_grid", "illum", "ccm", "awb_img", "capture", "raw_jpeg", "rec_raw"}


def kind_of(name: str) -> str:
    """The :func:`runtime_py.metrics.compare` kind of a golden tensor name."""
    if name in _SRGB:
        return "srgb"
    if name in _DATA or name.endswith("_param"):
        return "data"
    return "linear"
