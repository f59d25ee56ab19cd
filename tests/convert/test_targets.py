"""Export targets and host runtimes, checked on small probe modules covering the op families of the ISP stages.

Each probe is ``1x1 conv (3->8) -> <op family> -> 1x1 conv (->3)``, so quantizers see the op between quantized
tensors as in the stages. Default tests (about a minute or two on 2 cores): request validation, atomic writes,
the literal pass, the runtime adapters, and one fp32 round trip per target of ``isp_mix`` (every requested
family in one module). ``-m slow``: every family x target x precision, with the known failures as strict xfails
(``KNOWN_FAILURES`` is the machine-readable form of ``convert/OPS.md``).

``python -m tests.convert.test_targets --out convert/OPS.md --json ops.json`` rebuilds the op table.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convert.targets import TARGETS, ExportError, ExportRequest, export, get_target, verify
from convert.targets import base

H = W = 16
C = 8
N_CALIB = 8


# ------------------------------------------------------------------------------------------------------ probes

class Probe(nn.Module):
    """``tail(body(head(x)))``: 1x1 conv 3->8, the op family, 1x1 conv to 3 channels.
    ``(1, 3, H, W) -> (1, 3, h, w)``."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, C, 1)
        self.body = body
        with torch.no_grad():
            c_out = body(torch.zeros(1, C, H, W)).shape[1]
        self.tail = nn.Conv2d(c_out, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.body(self.head(x)))


class Fn(nn.Module):
    """A parameter-free body from a function; extra tensors go in as buffers."""

    def __init__(self, fn: Callable[..., torch.Tensor], **buffers: torch.Tensor) -> None:
        super().__init__()
        self.fn = fn
        for k, v in buffers.items():
            self.register_buffer(k, v)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.fn(self, y)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over channels at every pixel (NAFNet's LayerNorm2d form)."""

    def __init__(self, c: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.rand(c) + 0.5)
        self.bias = nn.Parameter(torch.rand(c) - 0.5)
        self.eps = eps

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        mu = y.mean(dim=1, keepdim=True)
        d = y - mu
        var = (d * d).mean(dim=1, keepdim=True)
        return d / torch.sqrt(var + self.eps) * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class SEGate(nn.Module):
    """Global average pooling (adaptive_avg_pool2d to 1x1 or mean over H, W) -> 1x1 conv -> sigmoid gate."""

    def __init__(self, adaptive: bool) -> None:
        super().__init__()
        self.adaptive = adaptive
        self.fc = nn.Conv2d(C, C, 1)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        g = F.adaptive_avg_pool2d(y, 1) if self.adaptive else y.mean(dim=(2, 3), keepdim=True)   # (B, C, 1, 1)
        return y * torch.sigmoid(self.fc(g))


class LinearHead(nn.Module):
    """Global mean -> Linear -> softplus gains, multiplied back per channel (GTM-style head)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(C, C)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        g = F.softplus(self.fc(y.mean(dim=(2, 3))))                 # (B, C)
        return y * g.view(g.shape[0], C, 1, 1)


def reflect_pad_slices(y: torch.Tensor, p: int) -> torch.Tensor:
    """``F.pad(y, (p, p, p, p), mode="reflect")`` as slices + cat (p < H, W): same values, no index ops."""
    left = [y[..., :, i:i + 1] for i in range(p, 0, -1)]
    right = [y[..., :, -1 - i:-i] for i in range(1, p + 1)]
    y = torch.cat(left + [y] + right, dim=3)                                        # (B, C, H, W + 2p)
    top = [y[..., i:i + 1, :] for i in range(p, 0, -1)]
    bottom = [y[..., -1 - i:-i, :] for i in range(1, p + 1)]
    return torch.cat(top + [y] + bottom, dim=2)                                     # (B, C, H + 2p, W + 2p)


class GroupNormManual(nn.Module):
    """``nn.GroupNorm`` as reshape + mean over (2, 3) of a 4-D tensor (same maths, biased variance)."""

    def __init__(self, groups: int, c: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.groups, self.eps = groups, eps
        self.weight = nn.Parameter(torch.rand(c) + 0.5)
        self.bias = nn.Parameter(torch.rand(c) - 0.5)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        b, c, h, w = y.shape
        t = y.reshape(b, self.groups, c // self.groups, h * w)                     # (B, G, C/G, HW)
        mu = t.mean(dim=(2, 3), keepdim=True)
        d = t - mu
        t = d / torch.sqrt((d * d).mean(dim=(2, 3), keepdim=True) + self.eps)
        return t.reshape(b, c, h, w) * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def _cat_split_mean(_: nn.Module, y: torch.Tensor) -> torch.Tensor:
    a, b = torch.split(y, C // 2, dim=1)
    return torch.cat([a * b, a + b, y.mean(dim=1, keepdim=True)], dim=1)      # (B, C + 1, H, W)


def _matmul(m: nn.Module, y: torch.Tensor) -> torch.Tensor:
    b, c, h, w = y.shape
    return torch.matmul(m.mat, y.reshape(b, c, h * w)).reshape(b, c, h, w)


def _unfold(m: nn.Module, y: torch.Tensor) -> torch.Tensor:
    b, c, h, w = y.shape
    neigh = F.unfold(F.pad(y, (1, 1, 1, 1), mode="reflect"), 3).view(b, c, 9, h, w)     # (B, C, 9, H, W)
    return (neigh * m.taps).sum(dim=2)


def _grid_sample(m: nn.Module, y: torch.Tensor) -> torch.Tensor:
    grid = torch.tanh(y[:, :2]).permute(0, 2, 3, 1)                                  # (B, H, W, 2) in [-1, 1]
    return F.grid_sample(m.lut, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def _probes() -> dict[str, Callable[[], nn.Module]]:
    g = torch.Generator().manual_seed(1)
    mat = torch.randn(C, C, generator=g) * 0.3
    return {
        # the families the ISP stages use (the brief's list)
        "conv1x1": lambda: nn.Conv2d(C, C, 1),
        "conv3x3": lambda: nn.Conv2d(C, C, 3, padding=1),
        "conv_depthwise": lambda: nn.Conv2d(C, C, 3, padding=1, groups=C),
        "conv_dilated": lambda: nn.Conv2d(C, C, 3, padding=2, dilation=2, groups=C),
        "reflect_pad": lambda: nn.Sequential(nn.ReflectionPad2d(2), nn.Conv2d(C, C, 5, groups=C)),
        "group_norm": lambda: nn.GroupNorm(4, C),
        "leaky_relu": lambda: nn.LeakyReLU(0.01),
        "sigmoid": lambda: nn.Sigmoid(),
        "tanh": lambda: nn.Tanh(),
        "softplus": lambda: nn.Softplus(),
        "avg_pool2d": lambda: Fn(lambda m, y: F.avg_pool2d(y, 2)),
        "avg_pool2d_box5": lambda: Fn(lambda m, y: F.avg_pool2d(F.pad(y, (2, 2, 2, 2), mode="reflect"), 5,
                                                                stride=1)),
        "interp_bilinear_up": lambda: Fn(lambda m, y: F.interpolate(y, size=(2 * H, 2 * W), mode="bilinear",
                                                                    align_corners=True)),
        "interp_bilinear_down": lambda: Fn(lambda m, y: F.interpolate(y, size=(7, 9), mode="bilinear",
                                                                      align_corners=True)),
        "cat_split_mean": lambda: Fn(_cat_split_mean),
        "matmul": lambda: Fn(_matmul, mat=mat.clone()),
        "einsum": lambda: Fn(lambda m, y: torch.einsum("ij,bjhw->bihw", m.mat, y), mat=mat.clone()),
        "exp_log_clamp": lambda: Fn(lambda m, y: torch.exp(0.45 * torch.log(y.clamp(1e-4, 1.0)))),
        "pixel_shuffle": lambda: Fn(lambda m, y: F.pixel_shuffle(y, 2)),
        "global_avg_pool": lambda: SEGate(adaptive=True),
        "global_mean_hw": lambda: SEGate(adaptive=False),
        "layer_norm_channels": lambda: ChannelLayerNorm(C),
        # extras used by the stages' reference paths or heads
        "scalar_arith": lambda: Fn(lambda m, y: (y * 2 + 1) / 3 - 0.5),
        "pow_tensor_exp": lambda: Fn(lambda m, y: torch.pow(y.clamp(min=1e-4), m.e), e=torch.rand(1, C, 1, 1) + 0.3),
        "where": lambda: Fn(lambda m, y: torch.where(y > 0.0, y, torch.zeros_like(y))),
        "linear_head": lambda: LinearHead(),
        "unfold_5d": lambda: Fn(_unfold, taps=torch.rand(1, 1, 9, 1, 1)),
        "grid_sample_2d": lambda: Fn(_grid_sample, lut=torch.rand(1, C, 24, 24)),
        # export-friendly rewrites of the families that fall off a delegate somewhere (same maths)
        "rw_reflect_pad_slices": lambda: nn.Sequential(Fn(lambda m, y: reflect_pad_slices(y, 2)),
                                                       nn.Conv2d(C, C, 5, groups=C)),
        "rw_group_norm_manual": lambda: GroupNormManual(4, C),
        "rw_softplus_logexp": lambda: Fn(lambda m, y: F.relu(y) + torch.log(1.0 + torch.exp(-F.relu(y) - F.relu(-y)))),
        "rw_split_as_slices": lambda: Fn(lambda m, y: torch.cat([y[:, : C // 2] * y[:, C // 2:],
                                                                 y[:, : C // 2] + y[:, C // 2:]], dim=1)),
        "rw_channel_mean_conv": lambda: Fn(lambda m, y: y - F.conv2d(y, m.w), w=torch.full((1, C, 1, 1), 1.0 / C)),
        "rw_color_matrix_conv1x1": lambda: Fn(lambda m, y: F.conv2d(y, m.w), w=mat.clone()[:, :, None, None]),
    }


PROBES = _probes()
FAMILIES = list(PROBES)
#: the brief's op families (everything before "scalar_arith"); "rw_*" are rewrites that stay on every delegate
CORE_FAMILIES = FAMILIES[: FAMILIES.index("scalar_arith")]
REWRITE_FAMILIES = [f for f in FAMILIES if f.startswith("rw_")]


class ISPMix(nn.Module):
    """Every core family in one graph (the fast round-trip probe). ``(1, 3, 16, 16) -> (1, 3, 16, 16)``."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, C, 1)
        self.c3 = nn.Conv2d(C, C, 3, padding=1)
        self.dw = nn.Conv2d(C, C, 3, padding=1, groups=C)
        self.dil = nn.Conv2d(C, C, 3, padding=2, dilation=2, groups=C)
        self.dw5 = nn.Conv2d(C, C, 5, groups=C)
        self.gn = nn.GroupNorm(4, C)
        self.ln = ChannelLayerNorm(C)
        self.se = SEGate(adaptive=True)
        self.register_buffer("mat", torch.randn(C, C, generator=torch.Generator().manual_seed(2)) * 0.3)
        self.ps = nn.Conv2d(C, 4 * C, 1)
        self.tail = nn.Conv2d(2 * C + 1, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.head(x)
        y = F.leaky_relu(self.c3(y), 0.01) + self.dil(y)
        y = self.dw5(F.pad(self.dw(y), (2, 2, 2, 2), mode="reflect"))
        y = torch.tanh(self.gn(y)) + torch.sigmoid(self.ln(y))
        b, c, h, w = y.shape
        y = torch.matmul(self.mat, y.reshape(b, c, h * w)).reshape(b, c, h, w)
        y = torch.einsum("ij,bjhw->bihw", self.mat, F.softplus(y))
        y = self.se(y)
        low = F.avg_pool2d(y, 2)                                                          # (B, C, H/2, W/2)
        up = F.pixel_shuffle(self.ps(low), 2)                                             # (B, C, H, W)
        up = up + F.interpolate(low, size=(h, w), mode="bilinear", align_corners=True)
        a, g = torch.split(up, C // 2, dim=1)
        tone = torch.exp(0.45 * torch.log(y.clamp(1e-4, 1.0)))
        z = torch.cat([a * g, a + g, tone, up.mean(dim=1, keepdim=True)], dim=1)        # (B, 2C + 1, H, W)
        return self.tail(z)


def build_probe(family: str) -> tuple[nn.Module, tuple[torch.Tensor, ...], list[tuple[torch.Tensor, ...]]]:
    """(module, example inputs, calibration samples) with fixed seeds; inputs uniform in [0, 1)."""
    torch.manual_seed(0)
    module = ISPMix() if family == "isp_mix" else Probe(PROBES[family]())
    module.eval()
    g = torch.Generator().manual_seed(3)
    x = torch.rand(1, 3, H, W, generator=g)
    calib = [(torch.rand(1, 3, H, W, generator=g),) for _ in range(N_CALIB)]
    return module, (x,), calib


# ----------------------------------------------------------------------------------------------- the op table

#: (column, precision or "*", family or "*") -> why it fails with these tool versions (strict xfail in -m slow;
#: measured 2026-11-21 with torch 2.13.0, executorch 1.5.1, litert-torch 0.10.0, ai-edge-quantizer 0.10.0)
KNOWN_FAILURES: dict[tuple[str, str, str], str] = {
    ("executorch", "int8", "softplus"):
        "XNNPACK lowering: ChannelsLastTaggedReshapePass <- KeyError 'val' (softplus between int8 convs)",
    ("executorch", "w8", "matmul"):
        "XNNPACK lowering (dynamic quant): 'required rank 4 tensor to use channels_last format'",
    ("executorch", "w8", "einsum"):
        "XNNPACK lowering (dynamic quant): 'required rank 4 tensor to use channels_last format'",
    ("executorch", "w8", "pixel_shuffle"):
        "XNNPACK run (dynamic quant): 'Propagating input shapes failed ... xnn_status_invalid_parameter'",
    ("executorch", "w8", "rw_group_norm_manual"):
        "XNNPACK run (dynamic quant): 'Propagating input shapes failed ... xnn_status_invalid_parameter'",
    ("litert", "int8", "sigmoid"): "litert-torch PT2E int8: 19 dB (ai-edge-quantizer int8: 49 dB)",
    ("litert", "int8", "linear_head"): "litert-torch PT2E int8: 18 dB (ai-edge-quantizer int8: 53 dB)",
    ("litert", "w8", "matmul"):
        "dynamic_wi8_afp32 quantizes the constant LHS of BATCH_MATMUL; the kernel refuses it at prepare",
    ("litert-int8-aeq", "int8", "matmul"): "ai-edge-quantizer static int8 with a constant LHS matmul: 8 dB",
    ("litert-int8-aeq", "int8", "grid_sample_2d"): "ai-edge-quantizer static int8 through the gather path: 19 dB",
}

#: columns of the op table: (column id, target, backend, options, precisions)
COLUMNS = [("executorch", "executorch", "xnnpack", {}, base.PRECISIONS),
           ("executorch-vulkan", "executorch", "vulkan", {}, ("fp32", "fp16")),
           ("executorch-coreml", "executorch", "coreml", {}, ("fp32", "fp16")),
           ("litert", "litert", None, {}, base.PRECISIONS),
           ("litert-int8-aeq", "litert", None, {"int8_method": "aeq"}, ("int8",)),
           ("coreml", "coreml", None, {}, base.PRECISIONS),
           ("onnx", "onnx", None, {}, base.PRECISIONS)]
COLUMN_IDS = [c[0] for c in COLUMNS]
#: fp32/fp16 probes must be at least this close to torch; quantized ones are reported, with loose floors
FP32_MAX_ABS = 1e-4
MIN_PSNR = {"fp16": 55.0, "w8": 40.0, "int8": 30.0}


def column_precisions(column: str) -> tuple[str, ...]:
    return next(p for c, _, _, _, p in COLUMNS if c == column)


def known_failure(target: str, precision: str, family: str) -> str | None:
    for key in ((target, precision, family), (target, "*", family), (target, precision, "*")):
        if key in KNOWN_FAILURES:
            return KNOWN_FAILURES[key]
    return None


def probe_row(family: str, column: str, precision: str, out_dir: Path) -> dict[str, Any]:
    """Export one probe to one column/precision and run it back; never raises."""
    target, backend, options = next((t, b, o) for c, t, b, o, _ in COLUMNS if c == column)
    module, inputs, calib = build_probe(family)
    req = ExportRequest(module, inputs, ["x"], ["y"], precision=precision, calibration=calib,
                        backends=(backend,) if backend else None, options=dict(options), out_dir=out_dir,
                        stem=f"{family}_{column}")
    row: dict[str, Any] = {"family": family, "column": column, "precision": precision, "converted": False,
                           "delegated": None, "total_ops": None, "fallback": {}, "ran": False,
                           "max_abs_err": None, "psnr_db": None, "error": None, "seconds": None, "notes": []}
    t0 = time.perf_counter()
    try:
        res = export(target, req)
    except ExportError as exc:
        row["error"] = f"{exc.step}: {base.short_error(exc.cause) if not isinstance(exc.cause, str) else exc.cause}"
        row["seconds"] = round(time.perf_counter() - t0, 2)
        return row
    row["seconds"] = round(time.perf_counter() - t0, 2)
    row["converted"] = True
    report = res.backends.get(backend) if backend else None
    cov = report.op_coverage if report is not None else res.op_coverage
    row.update(delegated=cov.delegated_ops, total_ops=cov.total_ops, fallback=cov.fallback,
               delegate=cov.delegate, details={k: v for k, v in res.details.items() if isinstance(v, (str, int))})
    row["notes"] = list(res.warnings)
    if target == "onnx":       # static estimates of what ORT's mobile EPs would take
        row["ep"] = {name: {"delegated": r.op_coverage.delegated_ops, "total_ops": r.op_coverage.total_ops,
                            "fallback": r.op_coverage.fallback, "partitions": r.op_coverage.partitions}
                     for name, r in res.backends.items() if name != "cpu" and r.ok and r.op_coverage}
    path = report.file if report is not None else res.path
    if target == "coreml":
        from runtime_py.runtimes import load
        check = load(path, input_names=["x"], output_names=["y"])
        row["ran"] = "structural"
        row["structure"] = {"op_types": check.op_types, "compute_precision": check.compute_precision,
                            "outputs": [(s.name, s.shape, s.dtype) for s in check.outputs]}
        return row
    if report is not None and not report.runnable_here:
        row["ran"] = "not-runnable"          # lowered and saved; this host's runtime lacks the backend
        return row
    v = verify(path, req)
    if target == "onnx" and precision == "int8":      # float Q/DQ emulation: the model's own numerics
        row["psnr_qdq_ref_db"] = verify(path, req, optimization="disable")["psnr_db"]
    row["ran"] = v["ran"]
    row["max_abs_err"], row["psnr_db"] = v["max_abs_err"], v["psnr_db"]
    if v["error"]:
        row["error"] = f"run: {v['error']}"
    return row


def run_matrix(families: Sequence[str], columns: Sequence[str], precisions: Sequence[str], out_dir: Path,
               log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    rows = []
    for column in columns:
        for precision in precisions:
            if precision not in column_precisions(column):
                continue
            for family in families:
                row = probe_row(family, column, precision, out_dir)
                rows.append(row)
                log(json.dumps({k: row[k] for k in ("family", "column", "precision", "converted", "delegated",
                                                    "total_ops", "ran", "max_abs_err", "psnr_db", "error",
                                                    "seconds")}))
    return rows


def _cell(row: dict[str, Any] | None, footnotes: list[str]) -> str:
    if row is None:
        return "–"
    def note(text: str) -> str:
        if text not in footnotes:
            footnotes.append(text)
        return f"[{footnotes.index(text) + 1}]"
    if not row["converted"]:
        return f"✗ {note(row['error'])}"
    parts = [f"{row['delegated']}/{row['total_ops']}"]
    if row["fallback"]:
        parts[0] += " " + note("fallback: " + ", ".join(f"{k}×{v}" for k, v in row["fallback"].items()))
    if row["ran"] == "structural":
        parts.append("struct")
    elif row["ran"] == "not-runnable":
        parts.append("lowered, no runtime here")
    elif row["ran"] and row["error"] is None:
        if row["precision"] == "fp32":
            parts.append(f"{row['max_abs_err']:.0e}")
        else:
            p = row["psnr_db"]
            parts.append("∞ dB" if p is None or math.isinf(p) else f"{p:.0f} dB")
            if row.get("psnr_qdq_ref_db") is not None:
                parts[-1] += f" (Q/DQ ref {row['psnr_qdq_ref_db']:.0f} dB)"
    else:
        parts.append(f"✗run {note(row['error'])}")
    return " · ".join(parts)


def render_markdown(rows: list[dict[str, Any]], versions: dict[str, str]) -> str:
    """The op table as Markdown: one table per column (target/backend), families x precisions."""
    date = datetime.date.today().isoformat()
    lines = [
        "## Tables",
        "",
        f"Date: {date}. Host: x86-64 Linux, CPU only. Tools: "
        + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        "",
        "Each probe is `1x1 conv 3->8 -> <family> -> 1x1 conv -> 3`, input `(1, 3, 16, 16)` uniform in [0, 1), "
        f"{N_CALIB} calibration samples from the same distribution. A cell reads "
        "`delegated/total ops [fallback] · error`: ✗ = did not convert (footnote has the error), "
        "`delegated/total` = ops inside the delegate / accelerator-compatible (ExecuTorch: lowered to the backend; "
        "LiteRT: GPU-delegate static check; Core ML: Neural Engine heuristic, fp32 programs never count; ONNX: "
        "CPU EP runs all — see the NNAPI/Core ML EP columns in the JSON), then the run on this host: max |err| vs "
        "torch for fp32, PSNR (peak-to-peak of the torch output) for fp16/int8/w8, `struct` = Core ML structural "
        "check only (no prediction on Linux), ✗run = converted but did not run here.",
        "",
    ]
    footnotes: list[str] = []
    by_key = {(r["column"], r["precision"], r["family"]): r for r in rows}
    fams = list(dict.fromkeys(r["family"] for r in rows))
    for column in dict.fromkeys(r["column"] for r in rows):
        precs = [p for p in base.PRECISIONS if any(k[0] == column and k[1] == p for k in by_key)]
        lines += [f"### {column}", "", "| family | " + " | ".join(precs) + " |",
                  "|---|" + "---|" * len(precs)]
        for fam in fams:
            lines.append(f"| {fam} | " + " | ".join(_cell(by_key.get((column, p, fam)), footnotes)
                                                   for p in precs) + " |")
        lines.append("")
    ep_rows = [r for r in rows if r.get("ep")]
    for ep in ("nnapi", "coreml"):
        precs = [p for p in base.PRECISIONS if any(r["precision"] == p for r in ep_rows)]
        if not precs:
            continue
        lines += [f"### onnx → onnxruntime {ep} EP (static op-type estimate, partitions in parentheses)", "",
                  "| family | " + " | ".join(precs) + " |", "|---|" + "---|" * len(precs)]
        for fam in fams:
            cells = []
            for p in precs:
                r = by_key.get(("onnx", p, fam))
                e = (r or {}).get("ep", {}).get(ep)
                if not e:
                    cells.append("–")
                    continue
                cell = f"{e['delegated']}/{e['total_ops']} ({e['partitions']})"
                if e["fallback"]:
                    text = "not taken: " + ", ".join(f"{k}×{v}" for k, v in e["fallback"].items())
                    if text not in footnotes:
                        footnotes.append(text)
                    cell += f" [{footnotes.index(text) + 1}]"
                cells.append(cell)
            lines.append(f"| {fam} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["### Notes (footnotes of the cells)", ""] + [f"{i + 1}. {t}" for i, t in enumerate(footnotes)] + [""]
    return "\n".join(lines)


#: convert/OPS.md keeps everything above this line when the tables are regenerated
GENERATED_MARK = "<!-- generated tables below: python -m tests.convert.test_targets --out convert/OPS.md -->"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Export every probe to every target/precision and write the op table.")
    p.add_argument("--out", type=Path, default=None, help="Markdown file to write (e.g. convert/OPS.md)")
    p.add_argument("--json", type=Path, default=None, help="also write the raw rows as JSON")
    p.add_argument("--rows", type=Path, nargs="*", default=[], help="render from earlier --json files instead")
    p.add_argument("--families", nargs="*", default=FAMILIES)
    p.add_argument("--columns", nargs="*", default=COLUMN_IDS)
    p.add_argument("--precisions", nargs="*", default=list(base.PRECISIONS))
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/ops-matrix"))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.rows:
        rows = [r for f in args.rows for r in json.loads(f.read_text())]
    else:
        torch.set_num_threads(1)
        rows = run_matrix(args.families, args.columns, args.precisions, args.work_dir,
                          log=lambda s: print(s, file=sys.stderr, flush=True))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))
    if args.out:
        keep = ""
        if args.out.exists():        # keep the hand-written part (everything above the marker, or all of it)
            keep = args.out.read_text().split(GENERATED_MARK)[0].rstrip() + "\n\n"
        args.out.write_text(keep + GENERATED_MARK + "\n\n" + render_markdown(rows, base.tool_versions()))
    return 0


# ------------------------------------------------------------------------------------------------------ tests

@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("exports")


class TestRequest:
    def test_defaults_and_names(self):
        m, inputs, _ = build_probe("sigmoid")
        req = ExportRequest(m, inputs)
        assert req.input_names == ["input_0"] and req.output_names == ["output_0"]
        assert req.precision == "fp32" and isinstance(req.out_dir, Path)

    @pytest.mark.parametrize("kwargs, match", [
        ({"precision": "int4"}, "precision"),
        ({"precision": "int8"}, "calibration"),
        ({"input_names": ["a", "b"]}, "input_names"),
        ({"input_names": ["not an identifier"]}, "identifiers"),
        ({"calibration": [(torch.rand(1, 3, 8, 8),)]}, r"calibration\[0\]"),
        ({"stem": "../x"}, "stem"),
    ])
    def test_validation_says_what_and_fix(self, kwargs, match):
        m, inputs, _ = build_probe("sigmoid")
        with pytest.raises(ValueError, match=match):
            ExportRequest(m, inputs, **kwargs)

    def test_rejects_non_float32_inputs(self):
        m, (x,), _ = build_probe("sigmoid")
        with pytest.raises(ValueError, match="float32"):
            ExportRequest(m, (x.half(),))

    def test_unknown_target(self):
        with pytest.raises(ValueError, match="expected one of"):
            get_target("tvm")
        assert set(TARGETS) == {"executorch", "litert", "coreml", "onnx"}

    def test_importing_convert_imports_no_backend(self):
        import subprocess
        code = ("import sys, convert.targets as t; t.get_target; "
                "bad=[m for m in ('executorch','litert_torch','coremltools','onnxruntime','tensorflow') "
                "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
        res = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr


class TestHelpers:
    def test_atomic_save_file_and_failure(self, tmp_path):
        dest = tmp_path / "a_x_fp32.bin"
        base.atomic_save(dest, lambda tmp: tmp.write_bytes(b"one"))
        assert dest.read_bytes() == b"one"

        def boom(tmp: Path) -> None:
            tmp.write_bytes(b"partial")
            raise OSError("disk full")
        with pytest.raises(OSError):
            base.atomic_save(dest, boom)
        assert dest.read_bytes() == b"one"
        assert [p.name for p in tmp_path.iterdir()] == [dest.name]

    def test_atomic_save_directory_replaces(self, tmp_path):
        dest = tmp_path / "m.mlpackage"

        def write(content: str) -> Callable[[Path], None]:
            def w(tmp: Path) -> None:
                assert tmp.suffix == ".mlpackage"
                (tmp / "Data").mkdir(parents=True)
                (tmp / "Data" / "f").write_text(content)
            return w
        base.atomic_save(dest, write("v1"))
        h1 = base.path_sha256(dest)
        base.atomic_save(dest, write("v2"))
        assert (dest / "Data" / "f").read_text() == "v2" and base.path_sha256(dest) != h1
        assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mlpackage"]

    def test_float_literals_pass(self):
        m, inputs, _ = build_probe("scalar_arith")
        gm = torch.export.export(m, inputs).module()
        n = base.float_literals_pass(gm)
        assert n >= 1
        torch.testing.assert_close(gm(*inputs), m(*inputs))

    def test_export_error_names_target_precision_step(self):
        err = ExportError("litert", "int8", "convert", ValueError("boom"))
        assert "litert/int8" in str(err) and "convert" in str(err) and "boom" in str(err)
        assert isinstance(err, RuntimeError)

    def test_psnr(self):
        a = np.zeros((4, 4), np.float32)
        b = a.copy()
        b[0, 0] = 1.0
        assert base.psnr(b, b) == math.inf
        assert base.psnr(a, b) == pytest.approx(10 * math.log10(16), rel=1e-6)


class TestRuntimes:
    def test_load_rejects_unknown_and_missing(self, tmp_path):
        from runtime_py.runtimes import load
        (tmp_path / "m.bin").write_bytes(b"")
        with pytest.raises(ValueError, match="expected one of"):
            load(tmp_path / "m.bin")
        with pytest.raises(FileNotFoundError):
            load(tmp_path / "nope.onnx")


def _roundtrip(target: str, out_dir: Path) -> None:
    module, inputs, calib = build_probe("isp_mix")
    req = ExportRequest(module, inputs, ["raw"], ["rgb"], out_dir=out_dir, stem="isp_mix")
    res = export(target, req)
    assert res.path.exists() and res.path.name == f"isp_mix_{target}_fp32.{TARGETS[target]}"
    assert res.size > 0 and len(res.sha256) == 64 and res.tool_versions["torch"].startswith("2.13")
    assert res.op_coverage.total_ops > 0 and 0 <= res.op_coverage.delegated_ops <= res.op_coverage.total_ops
    assert json.dumps(res.to_dict())
    from runtime_py.runtimes import load
    runner = load(res.path, input_names=["raw"], output_names=["rgb"])
    assert runner.input_names == ["raw"] and runner.output_names == ["rgb"]
    assert runner.inputs[0].shape == (1, 3, H, W)
    if target == "coreml":
        assert runner.compute_precision == "FLOAT32" and runner.compute_units == "ALL"
        assert runner.outputs[0].shape == (1, 3, H, W)
        assert {"conv", "pad", "matmul"} <= set(runner.op_types), runner.op_types
        with pytest.raises(RuntimeError, match="only predict on macOS"):
            runner.run([inputs[0].numpy()])
        return
    v = verify(res.path, req)
    assert v["ran"], v
    assert v["max_abs_err"] < FP32_MAX_ABS, v


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fp32_roundtrip_isp_mix(target, out_dir):
    """Every core op family in one graph exports to each target and runs back within 1e-4 of torch."""
    _roundtrip(target, out_dir)


def test_litert_multi_io_names_and_order(out_dir):
    """Several inputs/outputs keep their names and order through the LiteRT signature and the runner."""
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Conv2d(3, 4, 1)

        def forward(self, raw: torch.Tensor, gain: torch.Tensor):
            y = self.c(raw * gain)
            return y.mean(dim=1, keepdim=True), y
    torch.manual_seed(0)
    m = Two().eval()
    ins = (torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    req = ExportRequest(m, ins, ["raw", "gain"], ["zmean", "feat"], out_dir=out_dir, stem="two")
    res = export("litert", req)
    from runtime_py.runtimes import load
    runner = load(res.path)
    assert runner.input_names == ["raw", "gain"] and runner.output_names == ["zmean", "feat"]
    v = verify(res.path, req)
    assert v["max_abs_err"] < FP32_MAX_ABS, v


class _Unit(nn.Module):
    """A network (``net``) plus parameter-application maths outside it, as the photofinishing units are."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, C, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(C, 3, 1))
        self.post = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(x * torch.sigmoid(self.net(x)) * 2.0)


@pytest.mark.parametrize("precision", ["int8", "w8"])
def test_onnx_quantize_modules_scope(precision, out_dir):
    """options['quantize_modules'] quantizes only the named submodule (here: 2 of the 3 convs)."""
    import onnx
    torch.manual_seed(0)
    m = _Unit().eval()
    x = torch.rand(1, 3, H, W)
    req = ExportRequest(m, (x,), ["x"], ["y"], precision=precision, calibration=[(torch.rand(1, 3, H, W),)] * 4,
                        options={"quantize_modules": ["net"]}, out_dir=out_dir, stem=f"scoped_{precision}")
    res = export("onnx", req)
    ops = [n.op_type for n in onnx.load(str(res.path)).graph.node]
    if precision == "w8":
        assert ops.count("ConvInteger") == 2 and ops.count("Conv") == 1, ops
    else:
        assert ops.count("Conv") == 3 and res.details["nodes_to_quantize"] >= 3
    assert verify(res.path, req, optimization="disable")["psnr_db"] > 35
    with pytest.raises(ValueError, match="quantize_modules"):
        ExportRequest(m, (x,), precision="w8", options={"quantize_modules": ["nope"]}, out_dir=out_dir)


def test_supported_options_declared():
    """convert.recipes reads SUPPORTED_OPTIONS to know which targets can scope their quantizer."""
    for name in TARGETS:
        assert base.SCOPE_OPTION in get_target(name).SUPPORTED_OPTIONS


def test_coreml_export_path_survives_alias(out_dir):
    """A graph whose output is an alias (identity slice) converts through torch.export, not the jit fallback."""
    class Crop(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Conv2d(3, 3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.c(F.pad(x, (0, 0, 0, 0)))
            return y[..., : x.shape[-2], : x.shape[-1]]
    req = ExportRequest(Crop().eval(), (torch.rand(1, 3, H, W),), ["x"], ["y"], precision="fp16", out_dir=out_dir,
                        stem="crop")
    res = export("coreml", req)
    assert res.details["conversion_path"] == "torch.export", res.details


@pytest.mark.slow
@pytest.mark.parametrize("precision", list(base.PRECISIONS))
@pytest.mark.parametrize("column", COLUMN_IDS)
@pytest.mark.parametrize("family", FAMILIES)
def test_probe(family, column, precision, out_dir, request):
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("op-matrix cell (~3-25 s each, ~1000 cells): run with -m slow")
    if precision not in column_precisions(column):
        pytest.skip(f"{column} is tabulated for {column_precisions(column)} only")
    reason = known_failure(column, precision, family)
    row = probe_row(family, column, precision, out_dir)
    ok = row["converted"] and (row["ran"] in ("structural", "not-runnable") or
                               (row["ran"] is True and row["error"] is None))
    if ok and row["ran"] is True:
        if precision == "fp32":
            ok = row["max_abs_err"] < FP32_MAX_ABS
        else:   # ONNX int8 on a non-VNNI x86 host: judge the model by its float Q/DQ emulation
            ok = max(row["psnr_db"], row.get("psnr_qdq_ref_db") or -1.0) >= MIN_PSNR[precision]
    if reason is not None:
        if ok:
            pytest.fail(f"listed in KNOWN_FAILURES ({reason}) but passes now: update the table", pytrace=False)
        pytest.xfail(reason)
    assert ok, row


if __name__ == "__main__":
    raise SystemExit(main())
