"""Editing controls of the photo-editing tool (paper Sec. 2.6, supplementary Sec. I), with documented ranges.

Where each control acts in the pipeline (the order of the official tool):

==================  ===========  ==================================================================================
control             range        where / what
==================  ===========  ==================================================================================
``ev``              [-4, 4]      exposure in stops: the raw image is multiplied by ``2**ev`` before denoising
``denoise``         [0, 1]       raw-denoiser strength: ``(1-s) raw + s denoised`` (1 = full, the default)
``luma_denoise``    [0, 1]       extra edge-preserving (guided-filter) denoising of Y on the linear sRGB image
``chroma_denoise``  [0, 1]       extra Gaussian denoising of Cb/Cr on the linear sRGB image
``contrast``        [-1, 1]      Y' contrast around mid-grey after local tone mapping
``highlights``      [-1, 1]      Y' highlight compression (>0) / boost (<0) after local tone mapping
``shadows``         [-1, 1]      Y' shadow lift (>0) / deepen (<0) after local tone mapping
``vibrance``        [-1, 1]      HSV saturation boost weighted towards muted colours, after gamma
``saturation``      [-1, 1]      HSV saturation scale ``s (1 + amount)``, after gamma
``enhance``         [0, 1]       detail-enhancer strength: ``(1-s) upsampled + s enhanced`` (1 = full)
``sharpening``      [0, 50]      edge-aware unsharp masking of the final image (0 = off)
==================  ===========  ==================================================================================

The tensor functions below are export friendly (no masked in-place writes, no Python branching on values).

Deliberate deviations from the official tool:

* highlights/shadows: the official "smooth step" is ``t**2`` with ``t = (y - thresh) / eps`` *unclamped*, so its mask
  grows quadratically on both sides of the threshold (darks get "highlight" treatment). We clamp ``t`` to [0, 1], the
  evident intent; inside the transition band both agree.
* saturation/vibrance: instead of an RGB->HSV->RGB round trip with six hue sectors we use the identity that, at fixed
  hue and value, every channel obeys ``c = v (1 - s k(h))``, so changing ``s`` to ``s'`` gives
  ``c' = v - (v - c) s'/s``. It equals the HSV round trip (tested against :mod:`colorsys`).
* sharpening normalises the edge magnitude by the per-image maximum (the official uses the batch maximum).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F

from isp.stages.common import EPS

__all__ = ["Edits", "EDIT_RANGES", "adjust_contrast", "adjust_highlights", "adjust_shadows", "adjust_saturation",
           "adjust_vibrance", "sharpen", "luma_chroma_denoise", "gaussian_blur", "apply_exposure"]

#: name -> (min, max, neutral value, one-line help)
EDIT_RANGES: dict[str, tuple[float, float, float, str]] = {
    "ev": (-4.0, 4.0, 0.0, "exposure compensation in stops, applied to the raw image"),
    "denoise": (0.0, 1.0, 1.0, "raw denoiser strength (0 = off, 1 = full)"),
    "luma_denoise": (0.0, 1.0, 0.0, "extra luma denoising of the linear sRGB image"),
    "chroma_denoise": (0.0, 1.0, 0.0, "extra chroma denoising of the linear sRGB image"),
    "contrast": (-1.0, 1.0, 0.0, "contrast around mid-grey"),
    "highlights": (-1.0, 1.0, 0.0, "highlights (>0 compress, <0 boost)"),
    "shadows": (-1.0, 1.0, 0.0, "shadows (>0 lift, <0 deepen)"),
    "vibrance": (-1.0, 1.0, 0.0, "vibrance (saturation of muted colours)"),
    "saturation": (-1.0, 1.0, 0.0, "saturation"),
    "enhance": (0.0, 1.0, 1.0, "detail enhancement strength (0 = off, 1 = full)"),
    "sharpening": (0.0, 50.0, 0.0, "edge-aware sharpening amount (0 = off)"),
}


@dataclass(frozen=True)
class Edits:
    """A validated set of editing controls; construct with keywords, out-of-range values raise ``ValueError``."""
    ev: float = 0.0
    denoise: float = 1.0
    luma_denoise: float = 0.0
    chroma_denoise: float = 0.0
    contrast: float = 0.0
    highlights: float = 0.0
    shadows: float = 0.0
    vibrance: float = 0.0
    saturation: float = 0.0
    enhance: float = 1.0
    sharpening: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            lo, hi, _, help_ = EDIT_RANGES[f.name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"edit '{f.name}' must be a finite number in [{lo:g}, {hi:g}], got {value!r}")
            if not lo <= value <= hi:
                raise ValueError(f"edit '{f.name}' ({help_}) must be in [{lo:g}, {hi:g}], got {value:g}")
            object.__setattr__(self, f.name, float(value))

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    @property
    def tone_edits(self) -> bool:
        """Whether any Y' edit (contrast, highlights, shadows) is active."""
        return bool(self.contrast or self.highlights or self.shadows)


# --------------------------------------------------------------------------------------------------- exposure
def apply_exposure(raw: torch.Tensor, ev: float) -> torch.Tensor:
    """Exposure compensation ``raw * 2**ev`` (not clipped: highlights are handled by the tone stages)."""
    return raw * (2.0 ** ev)


# ------------------------------------------------------------------------------------------ Y' (tone) edits
def _band(y: torch.Tensor, lo: float, width: float) -> torch.Tensor:
    """Quadratic ramp from 0 at ``lo`` to 1 at ``lo + width`` (clamped outside the band)."""
    t = ((y - lo) / width).clamp(0.0, 1.0)
    return t * t


def _midtones(y: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """1 where ``margin < y < 1 - margin`` else 0: pure blacks and whites are never moved."""
    return ((y > margin) & (y < 1.0 - margin)).to(y.dtype)


def adjust_contrast(ycbcr: torch.Tensor, amount: float) -> torch.Tensor:
    """``(B, 3, H, W)`` Y'CbCr -> same; Y' scaled about 0.5 by ``1 + amount / 2`` and clamped to [0, 1]."""
    y = ((ycbcr[:, :1] - 0.5) * (1.0 + 0.5 * amount) + 0.5).clamp(0.0, 1.0)
    return torch.cat([y, ycbcr[:, 1:]], dim=1)


def adjust_highlights(ycbcr: torch.Tensor, amount: float, thresh: float = 0.7, width: float = 0.1) -> torch.Tensor:
    """Y' += (amount/20) * Y' * mask, mask ramping up above ``thresh`` (mid-tones only)."""
    y = ycbcr[:, :1]
    mask = _band(y, thresh, width) * _midtones(y)
    y = (y + (amount / 20.0) * y * mask).clamp(0.0, 1.0)
    return torch.cat([y, ycbcr[:, 1:]], dim=1)


def adjust_shadows(ycbcr: torch.Tensor, amount: float, thresh: float = 0.3, width: float = 0.1) -> torch.Tensor:
    """Y' += (amount/20) * (1 - Y') * mask, mask 1 below ``thresh`` ramping down to 0 (mid-tones only)."""
    y = ycbcr[:, :1]
    mask = (1.0 - _band(y, thresh, width)) * _midtones(y)
    y = (y + (amount / 20.0) * (1.0 - y) * mask).clamp(0.0, 1.0)
    return torch.cat([y, ycbcr[:, 1:]], dim=1)


# --------------------------------------------------------------------------------------- colour (HSV) edits
def _rescale_saturation(rgb: torch.Tensor, new_s_fn) -> torch.Tensor:
    rgb = rgb.clamp(0.0, 1.0)
    v = rgb.amax(dim=1, keepdim=True)
    s = (v - rgb.amin(dim=1, keepdim=True)) / (v + EPS)
    ratio = new_s_fn(s).clamp(0.0, 1.0) / s.clamp_min(EPS)
    return (v - (v - rgb) * ratio).clamp(0.0, 1.0)


def adjust_saturation(rgb: torch.Tensor, amount: float) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB in [0, 1] -> same with HSV saturation ``s * (1 + amount)`` (hue, value kept)."""
    return _rescale_saturation(rgb, lambda s: s * (1.0 + amount))


def adjust_vibrance(rgb: torch.Tensor, amount: float) -> torch.Tensor:
    """HSV saturation ``s * (1 + amount * (1 - s))``: muted colours move most."""
    return _rescale_saturation(rgb, lambda s: s * (1.0 + amount * (1.0 - s)))


# ------------------------------------------------------------------------------------------ spatial filters
def gaussian_blur(x: torch.Tensor, sigma: float, kernel_size: int | None = None) -> torch.Tensor:
    """Separable Gaussian blur with zero padding (odd ``kernel_size``, default ``2*round(3 sigma)+1``)."""
    if kernel_size is None:
        kernel_size = int(2 * round(3 * sigma) + 1)
    kernel_size = int(kernel_size) | 1
    if sigma <= 0 or kernel_size < 3:
        return x
    r = kernel_size // 2
    coords = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-(coords ** 2) / (2.0 * sigma * sigma))
    g = g / g.sum()
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, r), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(r, 0), groups=c)


def _box_mean(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over a (2r+1)^2 window, normalised by the number of in-image pixels (exact at borders)."""
    k = 2 * r + 1
    ones = torch.ones_like(x[:, :1])
    s = F.avg_pool2d(x, k, stride=1, padding=r, count_include_pad=True)
    n = F.avg_pool2d(ones, k, stride=1, padding=r, count_include_pad=True)
    return s / (n + EPS)


def _guided_self_filter(y: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """He et al. guided filter with the image as its own guide."""
    mean = _box_mean(y, radius)
    var = _box_mean(y * y, radius) - mean * mean
    a = var / (var + eps)
    b = mean * (1.0 - a)
    return _box_mean(a, radius) * y + _box_mean(b, radius)


def luma_chroma_denoise(ycbcr: torch.Tensor, luma: float, chroma: float) -> torch.Tensor:
    """Extra denoising on Y'CbCr: guided filter on Y' (radius ``2 + 10 luma``), Gaussian on CbCr.

    The chroma sigma is ``(3 + 12 chroma) * (H / 3000) ** 0.9`` so the effect is resolution independent; strengths
    above 0.4 blur twice; the blur is mixed in with weight ``chroma ** 1.5``.
    """
    y, cbcr = ycbcr[:, :1], ycbcr[:, 1:]
    if luma > 0:
        radius = int(2 + 10 * luma)
        filtered = _guided_self_filter(y, radius, (0.001 + 0.03 * luma) ** 2)
        y = (1.0 - luma) * y + luma * filtered
    if chroma > 0:
        sigma = (3.0 + 12.0 * chroma) * (ycbcr.shape[2] / 3000.0) ** 0.9
        blurred = gaussian_blur(cbcr, sigma)
        if chroma > 0.4:
            blurred = gaussian_blur(blurred, sigma)
        mix = chroma ** 1.5
        cbcr = (1.0 - mix) * cbcr + mix * blurred
    return torch.cat([y, cbcr], dim=1)


def sharpen(rgb: torch.Tensor, amount: float, sigma: float = 1.0) -> torch.Tensor:
    """Edge-aware unsharp mask: ``rgb + amount * (rgb - blur3x3(rgb)) * edge_mask``, clamped to [0, 1].

    ``edge_mask`` is the channel-mean central-difference gradient magnitude divided by its per-image maximum.
    """
    if amount == 0:
        return rgb
    detail = rgb - gaussian_blur(rgb, sigma, kernel_size=3)
    c = rgb.shape[1]
    kx = torch.tensor([-1.0, 0.0, 1.0], dtype=rgb.dtype, device=rgb.device)
    gx = F.conv2d(rgb, kx.view(1, 1, 1, 3).expand(c, 1, 1, 3), padding=(0, 1), groups=c)
    gy = F.conv2d(rgb, kx.view(1, 1, 3, 1).expand(c, 1, 3, 1), padding=(1, 0), groups=c)
    mag = torch.sqrt(gx * gx + gy * gy).mean(dim=1, keepdim=True)
    peak = mag.amax(dim=(1, 2, 3), keepdim=True)
    mask = (mag / (peak + 1e-6)).clamp(0.0, 1.0)
    return (rgb + amount * detail * mask).clamp(0.0, 1.0)
