"""Image comparison metrics shared by parity checks, drift reports and tests."""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["psnr"]


def psnr(pred: torch.Tensor | np.ndarray, ref: torch.Tensor | np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, computed in float64. Identical inputs give ``inf``.

    ``data_range`` is the peak-to-peak range of the reference signal (1.0 for images in [0, 1]).
    """
    a = torch.as_tensor(np.asarray(pred) if not isinstance(pred, torch.Tensor) else pred).double()
    b = torch.as_tensor(np.asarray(ref) if not isinstance(ref, torch.Tensor) else ref).double()
    if a.shape != b.shape:
        raise ValueError(f"psnr: shape mismatch {tuple(a.shape)} vs {tuple(b.shape)}")
    mse = torch.mean((a - b) ** 2).item()
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range ** 2 / mse)
