"""Image comparison metrics shared by parity checks, export verification, drift reports and tests."""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["psnr"]


def psnr(pred: torch.Tensor | np.ndarray, ref: torch.Tensor | np.ndarray,
         data_range: float | str = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, computed in float64. Identical inputs give ``inf``.

    ``data_range`` is the peak-to-peak range of the signal: a number (1.0 for images in [0, 1], the default), or
    ``"reference"`` for the reference's own ``max - min`` (1.0 if the reference is flat) — what export verification
    uses for outputs of any scale (parameter maps, grids). ``ValueError`` when the shapes differ.
    """
    a = torch.as_tensor(np.asarray(pred) if not isinstance(pred, torch.Tensor) else pred).double()
    b = torch.as_tensor(np.asarray(ref) if not isinstance(ref, torch.Tensor) else ref).double()
    if a.shape != b.shape:
        raise ValueError(f"psnr: shape mismatch {tuple(a.shape)} vs {tuple(b.shape)}")
    if data_range == "reference":
        data_range = float(b.max() - b.min()) if b.numel() else 0.0
        data_range = data_range or 1.0
    elif isinstance(data_range, str):
        raise ValueError(f"psnr: data_range must be a number or 'reference', got {data_range!r}")
    mse = torch.mean((a - b) ** 2).item()
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(float(data_range) ** 2 / mse)
