"""Reflect padding as slices and a concatenation, so XNNPACK takes it.

``F.pad(x, p, mode="reflect")`` (and ``nn.Conv2d(..., padding_mode="reflect")``) reaches ExecuTorch as ``aten.pad``,
which the edge lowering decomposes into ``reflection_pad2d``'s gather form: ``arange``/``sub``/``abs`` index maths and
two ``aten.index`` gathers per pad. XNNPACK has none of these, so every reflect-padded convolution of the LTM, GTM
and chroma networks ran its padding on portable kernels (the LTM unit: 334 ops outside the delegate, 34 after this;
its x86 call 1348 -> 1048 ms measured; under qemu its cost is the delegated convolutions and did not change).

:func:`lower_reflect_pads` decomposes each 2-D reflect pad into the same values built from one-wide slices of the
border rows/columns and ``cat`` — ops XNNPACK delegates (static slice, concatenation of up to 3 inputs here). The
values are copies of input elements in the same positions as ``reflection_pad2d``'s, so the padded tensor is
bit-identical (``tests/convert/test_pad_lowering.py``). Other pad modes keep their ATen op.
"""
from __future__ import annotations

from typing import Sequence

import torch

aten = torch.ops.aten

__all__ = ["reflect_pad2d", "lower_reflect_pads"]


def _reflect_dim(x: torch.Tensor, dim: int, before: int, after: int) -> torch.Tensor:
    n = x.shape[dim]
    if before >= n or after >= n:
        raise ValueError(f"reflect padding ({before}, {after}) must be smaller than the padded dimension ({n})")
    if before == 0 and after == 0:
        return x

    def col(i: int) -> torch.Tensor:
        return aten.slice.Tensor(x, dim, i, i + 1)

    def joined(parts: list[torch.Tensor]) -> torch.Tensor:
        return parts[0] if len(parts) == 1 else aten.cat.default(parts, dim)

    parts = []
    if before:
        parts.append(joined([col(i) for i in range(before, 0, -1)]))          # x[before], ..., x[1]
    parts.append(x)
    if after:
        parts.append(joined([col(n - 1 - i) for i in range(1, after + 1)]))   # x[n-2], ..., x[n-1-after]
    return aten.cat.default(parts, dim)


def reflect_pad2d(x: torch.Tensor, pad: Sequence[int]) -> torch.Tensor:
    """``F.pad(x, pad, mode="reflect")`` for a 4-element ``pad`` (left, right, top, bottom) from slices + ``cat``."""
    left, right, top, bottom = (int(p) for p in pad)
    if min(left, right, top, bottom) < 0:
        raise ValueError(f"reflect padding must be non-negative, got {tuple(pad)}")
    return _reflect_dim(_reflect_dim(x, x.dim() - 1, left, right), x.dim() - 2, top, bottom)


def _pad(x: torch.Tensor, pad: Sequence[int], mode: str = "constant", value: float | None = None) -> torch.Tensor:
    """``aten.pad`` with 2-D reflect padding rewritten; every other mode as ``aten.pad`` dispatches it."""
    n = len(pad) // 2
    if mode == "reflect" and n == 2:
        return reflect_pad2d(x, pad)
    if mode == "constant":
        return aten.constant_pad_nd.default(x, list(pad), 0.0 if value is None else value)
    ops = {"reflect": (aten.reflection_pad1d, aten.reflection_pad2d, aten.reflection_pad3d),
           "replicate": (aten.replication_pad1d, aten.replication_pad2d, aten.replication_pad3d)}
    if mode in ops and 1 <= n <= 3:
        return ops[mode][n - 1].default(x, list(pad))
    if mode == "circular":
        return aten._pad_circular.default(x, list(pad))
    raise ValueError(f"pad mode {mode!r} with {len(pad)} padding values is not supported")


def _is_reflect2d(node: torch.fx.Node) -> bool:
    if node.op != "call_function" or node.target is not aten.pad.default:
        return False
    mode = node.args[2] if len(node.args) > 2 else node.kwargs.get("mode", "constant")
    return mode == "reflect" and len(node.args[1]) == 4


def lower_reflect_pads(program: torch.export.ExportedProgram) -> tuple[torch.export.ExportedProgram, int]:
    """``(program with every 2-D reflect aten.pad decomposed into slices + cat, how many)``; other ops are untouched
    (the decomposition table holds ``aten.pad`` only). ``program`` itself when it has no 2-D reflect pad."""
    count = sum(1 for n in program.graph.nodes if _is_reflect2d(n))
    if not count:
        return program, 0
    return program.run_decompositions({aten.pad.default: _pad}), count
