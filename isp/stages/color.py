"""Colour correction: denoised raw RGB -> linear sRGB (paper Sec. 2.2, Eq. (2)).

``I_LsRGB(x, y) = M_CCM · (D_WB · I_enh-raw(x, y))``, then clipped to [0, 1]:

* ``D_WB = diag(l_G / (l + EPS))`` — white-balance gains from the illuminant colour ``l = (l_R, l_G, l_B)``. The gains
  are normalised to the green channel, so the scale of ``l`` does not matter (the golden files and the DNG reader
  store it with unit L2 norm); ``EPS = 1e-8`` guards the division as in the official code.
* ``M_CCM`` — the 3x3 raw-to-linear-sRGB colour correction matrix (rows give output R, G, B).
* the order is white balance first, then the CCM; only the result is clipped to [0, 1] (neither the input nor the
  white-balanced raw is clipped), as in the official ``raw_to_lsrgb``.

Implementation: the two matrices are folded into one per-image matrix ``M = M_CCM · D_WB`` (``(B, 3, 3)``) and each
output channel is a row of ``M`` times the pixel (broadcast product summed over the channels, 4-D tensors only, which
LiteRT's GPU delegate runs; it returned zeros for a batched matmul of two runtime tensors in fp16). This changes the
float32 rounding order only (differences ~1e-7); golden parity is 77–103 dB.

Shapes: ``denoised_raw (B, 3, H, W)``, ``illum (B, 3)``, ``ccm (B, 3, 3)`` -> ``lsrgb (B, 3, H, W)`` in [0, 1]. Any
``H, W >= 1``. No weights; the stage is pixel-wise, so it tiles without overlap.
"""
from __future__ import annotations

import torch
from torch import nn

from isp.registry import BuildConfig, StageSpec, TensorSpec
from isp.stages.common import EPS

__all__ = ["white_balance_gains", "color_matrix", "raw_to_lsrgb", "check_inputs", "ColorCorrection", "SPEC"]


def white_balance_gains(illum: torch.Tensor) -> torch.Tensor:
    """``(B, 3)`` illuminant colour -> ``(B, 3)`` per-channel gains ``l_G / (l + EPS)`` (green gain ~1)."""
    return illum[:, 1:2] / (illum + EPS)


def color_matrix(illum: torch.Tensor, ccm: torch.Tensor) -> torch.Tensor:
    """The combined per-image matrix ``M_CCM · D_WB``: ``(B, 3)``, ``(B, 3, 3)`` -> ``(B, 3, 3)``."""
    return ccm * white_balance_gains(illum).unsqueeze(1)       # scales column j of the CCM by gain j


def raw_to_lsrgb(denoised_raw: torch.Tensor, illum: torch.Tensor, ccm: torch.Tensor) -> torch.Tensor:
    """Eq. (2): white balance, CCM, clip. ``(B, 3, H, W)``, ``(B, 3)``, ``(B, 3, 3)`` -> ``(B, 3, H, W)`` in [0, 1]."""
    m = color_matrix(illum, ccm)                                # (B, 3, 3)
    # row i of M times the pixel, as a broadcast product summed over channels: 4-D tensors only (LiteRT's GPU
    # delegate returned zeros for the batched matmul of two runtime tensors in its fp16 mode)
    rows = [(m[:, i, :, None, None] * denoised_raw).sum(dim=1, keepdim=True) for i in range(3)]
    return torch.cat(rows, dim=1).clamp(0.0, 1.0)


def check_inputs(denoised_raw: torch.Tensor, illum: torch.Tensor, ccm: torch.Tensor) -> None:
    """Raise ``ValueError`` (expected vs got) unless the shapes are ``(B,3,H,W)``, ``(B,3)``, ``(B,3,3)``.

    For the pipeline entry and CLIs; ``forward`` does not validate.
    """
    problems = []
    if denoised_raw.dim() != 4 or denoised_raw.shape[1] != 3:
        problems.append(f"denoised_raw: expected (B, 3, H, W), got {tuple(denoised_raw.shape)}")
    if illum.dim() != 2 or illum.shape[1] != 3:
        problems.append(f"illum: expected (B, 3), got {tuple(illum.shape)} (add the batch dimension to a (3,) vector)")
    if ccm.dim() != 3 or tuple(ccm.shape[1:]) != (3, 3):
        problems.append(f"ccm: expected (B, 3, 3), got {tuple(ccm.shape)} (add the batch dimension to a 3x3 matrix)")
    if not problems:
        batches = {denoised_raw.shape[0], illum.shape[0], ccm.shape[0]}
        if len(batches) != 1:
            problems.append(f"batch sizes differ: denoised_raw {denoised_raw.shape[0]}, illum {illum.shape[0]}, "
                            f"ccm {ccm.shape[0]}; expected one batch size B for all three")
    if problems:
        raise ValueError("colour correction: " + "; ".join(problems))


class ColorCorrection(nn.Module):
    """``forward(denoised_raw, illum, ccm) -> lsrgb``; see the module docstring. No parameters."""

    def forward(self, denoised_raw: torch.Tensor, illum: torch.Tensor, ccm: torch.Tensor) -> torch.Tensor:
        return raw_to_lsrgb(denoised_raw, illum, ccm)


def _build(cfg: BuildConfig) -> nn.Module:
    return ColorCorrection().eval()


SPEC = StageSpec(
    id="color",
    build=_build,
    inputs=(
        TensorSpec("denoised_raw", "B,3,H,W", (0.0, 1.0), "denoised demosaiced raw RGB"),
        TensorSpec("illum", "B,3", (0.0, 1.0), "illuminant colour in raw space (any scale; golden: unit norm)"),
        TensorSpec("ccm", "B,3,3", None, "raw-to-linear-sRGB colour correction matrix"),
    ),
    outputs=(TensorSpec("lsrgb", "B,3,H,W", (0.0, 1.0), "linear sRGB, clipped to [0, 1]"),),
    resolution="full",
    paper="Sec. 2.2, Eq. (2)",
)
