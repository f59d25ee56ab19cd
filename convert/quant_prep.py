"""Float-equivalent rewrites of a NAFNet that make it quantize better (used by the ``npu`` recipes).

:func:`fold_block_scales` — a NAF block ends each half with ``proj(t) * scale`` (``mix_scale`` / ``ffn_scale``, one
learnt value per channel, often 1e-3 or smaller). PT2E quantizers treat that (1, C, 1, 1) parameter as one
per-tensor int8 constant, so the channels with the smallest scales round to a few levels or to zero (the observers'
smallest step is 2^-12 = 2.4e-4). Folding the scale into the 1x1 projection (``W_c *= s_c``, ``b_c *= s_c``) moves it
into the per-channel weight scales, where every channel keeps its 8 bits; the parameter becomes ones. Equal in real
arithmetic; in float32 to rounding (``tests/convert/test_quant_prep.py``).

:func:`prepare_for_quantization` applies the rewrites a recipe asks for (``options["fold_block_scales"]``) to a deep
copy of an export unit's module; the unit itself is untouched.

:func:`exposure_bracket` — the calibration samples again at brighter exposures (``options["calibration_gains"]``),
clipped to the inputs' range: static ranges must cover the highlights a frame can hold, and a set of a few
augmented DNG crops often has none (the npu sets' raw tiles peaked at 0.79 where a shipped frame reaches 1.0; the
16x8 denoiser clipped there and lost 30 dB on those tiles).

:func:`split_weights` — mixed weight precision with integer arithmetic only (``options["split_weights"]``: module
paths or prefixes). A chosen convolution ``conv(x, W) + b`` becomes the sum of two convolutions,
``conv(x, W_hi) + b`` with ``W_hi = W`` rounded to the converters' symmetric per-output-channel int8 grid
(``max |W_c| / 127``, which ``W_hi`` keeps, so the quantizer rounds it to itself), and ``conv(x, W - W_hi)``, whose
own per-channel int8 grid is ~254 times finer: once quantized, the pair carries ~15-bit weights on int8 kernels, for
twice that layer's multiply-accumulates and one add. Equal in real arithmetic; in float32 to rounding
(``tests/convert/test_quant_prep.py``). Which layers get it is chosen by measured sensitivity (the npu policy's notes).

:func:`xnnpack_pt2e` — the PT2E quantization with these options that the ExecuTorch and Core ML int8 recipes share.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import torch
from torch import nn

__all__ = ["fold_block_scales", "prepare_for_quantization", "PREP_OPTIONS", "quantizer_for", "with_eps",
           "exposure_bracket", "int8_grid", "SplitConv2d", "split_weights", "xnnpack_pt2e"]

#: recipe options this module reads
PREP_OPTIONS = ("fold_block_scales", "calibration_gains", "split_weights")


@torch.no_grad()
def fold_block_scales(module: nn.Module) -> int:
    """Fold every NAF block's ``mix_scale`` / ``ffn_scale`` into ``mix_project`` / ``ffn_project``, in place.
    Returns the number of scales folded."""
    n = 0
    for block in module.modules():
        for conv_name, scale_name in (("mix_project", "mix_scale"), ("ffn_project", "ffn_scale")):
            conv, scale = getattr(block, conv_name, None), getattr(block, scale_name, None)
            if not isinstance(conv, nn.Conv2d) or not isinstance(scale, torch.Tensor):
                continue
            s = scale.detach().reshape(-1)
            if s.numel() != conv.out_channels:
                raise ValueError(f"{type(block).__name__}.{scale_name}: {s.numel()} values for the "
                                 f"{conv.out_channels} output channels of {conv_name}")
            conv.weight.mul_(s.view(-1, 1, 1, 1))
            if conv.bias is not None:
                conv.bias.mul_(s)
            scale.fill_(1.0)
            n += 1
    return n


def int8_grid(w: torch.Tensor) -> torch.Tensor:
    """``w`` rounded to symmetric per-output-channel int8 with the converters' scale ``max |w_c| / 127`` (PT2E
    per-channel observers, ai-edge-quantizer's symmetric weights)."""
    s = w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True).clamp_min(1e-12) / 127.0
    return torch.round(w / s).clamp(-127, 127) * s


class SplitConv2d(nn.Module):
    """``hi(x) + lo(x)``: a ``Conv2d`` whose weight is split into its int8-grid part (``hi``, with the bias) and the
    rounding residual (``lo``, no bias); see :func:`split_weights`."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.hi = copy.deepcopy(conv)
        self.lo = copy.deepcopy(conv)
        with torch.no_grad():
            self.hi.weight.copy_(int8_grid(conv.weight))
            self.lo.weight.copy_(conv.weight - self.hi.weight)
        self.lo.bias = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hi(x) + self.lo(x)


def split_weights(module: nn.Module, paths: Sequence[str]) -> list[str]:
    """Replace every ``Conv2d`` of ``module`` whose path is one of ``paths`` or inside one by a
    :class:`SplitConv2d`, in place. Returns the paths replaced; ``ValueError`` when a path matches no convolution."""
    from convert.targets.base import in_scope
    convs = [(name, m) for name, m in module.named_modules() if isinstance(m, nn.Conv2d)]
    unknown = [p for p in paths if not any(in_scope(name, [p]) for name, _ in convs)]
    if unknown:
        raise ValueError(f"split_weights: no convolution at or under {unknown}")
    done = []
    for name, conv in convs:
        if in_scope(name, paths):
            owner, _, attr = name.rpartition(".")
            setattr(module.get_submodule(owner) if owner else module, attr, SplitConv2d(conv))
            done.append(name)
    return done


def prepare_for_quantization(module: nn.Module, options: dict) -> tuple[nn.Module, dict]:
    """A deep copy of ``module`` with the rewrites ``options`` asks for, and what was done (for the manifest)."""
    done: dict = {}
    if not options.get("fold_block_scales") and not options.get("split_weights"):
        return module, done
    module = copy.deepcopy(module).eval()
    if options.get("fold_block_scales"):
        done["fold_block_scales"] = fold_block_scales(module)
    if options.get("split_weights"):
        done["split_weights"] = split_weights(module, list(options["split_weights"]))
    return module, done


def exposure_bracket(samples: Sequence[tuple[torch.Tensor, ...]], gains: Sequence[float] | None,
                     lo: float = 0.0, hi: float = 1.0) -> list[tuple[torch.Tensor, ...]]:
    """``samples`` followed by each sample times each gain other than 1, clipped to ``[lo, hi]`` (the range of an
    image input: raw after white-level normalisation, sRGB). ``None`` or ``[]`` returns the samples unchanged."""
    out = list(samples)
    for g in gains or ():
        g = float(g)
        if not math.isfinite(g) or g <= 0:
            raise ValueError(f"calibration_gains: expected positive exposure gains, got {g!r}")
        if g != 1.0:
            out.extend(tuple(t.mul(g).clamp(lo, hi) for t in s) for s in samples)
    return out


def quantizer_for(scope: Sequence[str] | None, *, eps: float | None = None, exclude: Sequence[str] = (),
                  dynamic: bool = False) -> Any:
    """ExecuTorch's XNNPACKQuantizer as :mod:`convert.targets.executorch` configures it for int8 (symmetric,
    per-channel; ``dynamic``: activations quantized at run time, the w8 recipe), scoped to ``scope`` minus
    ``exclude``; ``eps`` replaces the observers' smallest scale (2^-12 in ``get_symmetric_quantization_config``)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                          get_symmetric_quantization_config)
    from convert.targets.base import scope_filter
    cfg = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic)
    if eps is not None:
        cfg = with_eps(cfg, eps)
    q = XNNPACKQuantizer().set_global(cfg)
    if scope is not None:
        q.set_filter_function(scope_filter(list(scope), exclude=list(exclude)))
    elif exclude:
        raise ValueError("exclude needs a scope (the network submodules the exclusions are taken from)")
    return q


def with_eps(cfg: Any, eps: float) -> Any:
    """A PT2E ``QuantizationConfig`` whose activation and weight observers use ``eps`` as the smallest scale."""
    from dataclasses import replace as dc_replace

    def spec(s: Any) -> Any:
        if s is None:
            return None
        ctr = s.observer_or_fake_quant_ctr
        base = getattr(ctr, "p", None)
        kwargs = dict(getattr(base, "keywords", {}) or {})
        kwargs["eps"] = float(eps)
        func = getattr(base, "func", None) or ctr
        return dc_replace(s, observer_or_fake_quant_ctr=func.with_args(**kwargs))
    return dc_replace(cfg, input_activation=spec(cfg.input_activation), output_activation=spec(cfg.output_activation),
                      weight=spec(cfg.weight))


def xnnpack_pt2e(module: nn.Module, inputs: tuple[torch.Tensor, ...], calibration: Sequence[tuple[torch.Tensor, ...]],
                 options: dict, scope: Sequence[str] | None, details: dict, *, dynamic: bool = False) -> Any:
    """``module`` quantized by torchao PT2E with :func:`quantizer_for` and the recipe ``options`` this module reads
    (``observer_eps``, ``quantize_exclude``, the rewrites of :func:`prepare_for_quantization`, ``calibration_gains``):
    the int8 (``dynamic``: w8) programs of the ExecuTorch and Core ML targets, which thus quantize alike (the npu
    policy gives both the same options). What was done goes into ``details`` (manifest)."""
    from convert.targets.base import pt2e_quantize
    eps = options.get("observer_eps")
    if eps is not None:
        details["observer_eps"] = float(eps)
    exclude = list(options.get("quantize_exclude") or []) if scope is not None else []
    if scope is not None:
        details["quantize_modules"] = list(scope)
        if exclude:
            details["float_layers"] = exclude
    quantizer = quantizer_for(scope, eps=None if eps is None else float(eps), exclude=exclude, dynamic=dynamic)
    module, prep = prepare_for_quantization(module, options)
    details.update(prep)
    rows = [] if dynamic else exposure_bracket(calibration, options.get("calibration_gains"))
    details["calibration_samples"] = len(rows)
    return pt2e_quantize(module, inputs, quantizer, rows)
