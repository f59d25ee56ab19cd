"""Auto white balance: the illuminant colour of a raw image from learned models (paper Sec. 2.2; official
``awb_ccm/``). Two model families, both fed the **noisy** demosaiced raw resized to 256x384:

* **C5** (cross-camera, "Cross-Camera Convolutional Color Constancy", ICCV 2021), weights
  ``model-c5_single_encoder_neutral.pth``. Input: a 4x48x48 histogram stack (:func:`c5_histogram`):
  ``[log-uv histogram, edge log-uv histogram, u ramp, v ramp]``. A 4-level U-Net (:class:`C5Net`) predicts a 2x48x48
  filter and a 48x48 bias; the two histogram channels are filtered circularly with the filter (FFT), summed, the
  bias is added, the result clamped to [-100, 100] and soft-maxed over the 2304 bins; the heat-weighted mean bin
  gives (u, v) and ``illum = normalise([exp(-u), 1, exp(-v)])``.
* **S24** (camera-specific, "Time-Aware Auto White Balance", ICCV 2025), eight variants ``awb_iso_shutter_speed
  [_noise][_snr][_pref]``: a 4x48x48 R/G-B/G histogram stack (:func:`s24_histogram`) and a capture-feature vector
  (:func:`capture_features`: log ISO, log exposure time, noise and SNR statistics, min-max scaled with the config's
  vectors) go through :class:`S24Net` (3 convs + global pool, one linear for the capture data, a 4-layer MLP head),
  which predicts (R/G, B/G); ``illum = normalise([R/G, 1, B/G])``.

Histogram conventions that are easy to get wrong (``shared/golden_ext/OFFICIAL_API.md``):

* C5 bins: 48 centres from -2.85 to 2.85 spaced 5.7/47 (built with ``numpy.arange`` as the official code does, so
  centres agree to the last bit); a pixel adds ``|rgb|`` to every (v, u) bin whose centre lies within one spacing
  in both u and v, **excluding a distance of exactly 0** (a pixel on a bin centre skips that bin). Rows are v from
  +2.85 at the top. Decoding uses 5.7/48, not 5.7/47.
* C5 edge histogram: on the edge image (mean |pixel - neighbour| over the 8 neighbours, edge-replicated border)
  weighted by the edge image's own norm. S24 edge histogram: on the edge image's chroma but weighted by the
  **original** image's norm.
* S24 bins: ``numpy.histogram2d`` semantics (48 equal bins between the config's boundaries, left-closed, the last
  bin also closed on the right; values outside are dropped); first axis R/G, second B/G; channels
  ``[hist, i/48, j/48, edge_hist]``.
* Every histogram is divided by ``sum + 1e-8`` and square-rooted.

The histogram builders are pure tensor functions written as comparisons and matrix products (no scatter, no
boolean indexing), so they also run inside an exported graph. ``hist_dtype`` picks the precision of the bin
arithmetic: float64 reproduces the official numpy code; float32 is what an exported graph uses.

Deliberate deviations:

* :func:`snr_statistics` computes the 15x15 windowed mean/std with box filters in float64 instead of the official
  ``unfold`` (which needs 225x the image in memory); results agree to ~1e-7.
* The C5 circular filtering has two formulations chosen in ``__init__``: ``rfft2`` (the official one, default) and
  a real DFT written as matrix products (``fft=False``), for converters without FFT ops; a test proves them equal.
* The four ``_pref`` S24 models load here; the official loader cannot reach them (its name table lists only the
  four non-pref models), although their weights and configs have the same layout.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from isp.checkpoints import load_strict, read_state_dict, remap_keys
from isp.registry import BuildConfig, StageSpec, TensorSpec

__all__ = ["AWB_SIZE", "HIST_BINS", "C5_BOUNDARY", "S24_VARIANTS", "S24_DEFAULT", "AWB_MODELS", "S24Config",
           "read_s24_config", "resize_for_awb", "edge_image", "c5_log_uv", "c5_histogram", "s24_histogram",
           "noise_statistics", "snr_statistics", "capture_features", "min_max_normalise", "circular_filter",
           "C5Net", "S24Net", "AutoWhiteBalance", "awb_checkpoint", "build_awb", "KEY_RULES", "SPEC"]

EPS = 1e-8
#: (height, width) the AWB models look at (C5 hard-codes it; every S24 config says the same)
AWB_SIZE = (256, 384)
HIST_BINS = 48
#: C5 log-chroma range; bins are spaced 5.7/47 for the histogram but decoded with 5.7/48
C5_BOUNDARY = 2.85
#: S24 variants = their config/model file stems without the ``awb_`` prefix
S24_VARIANTS = ("iso_shutter_speed", "iso_shutter_speed_noise", "iso_shutter_speed_snr",
                "iso_shutter_speed_noise_snr", "iso_shutter_speed_pref", "iso_shutter_speed_noise_pref",
                "iso_shutter_speed_snr_pref", "iso_shutter_speed_noise_snr_pref")
#: the official demo's S24 model
S24_DEFAULT = "iso_shutter_speed_noise"
#: every model id the ``awb`` stage builds: ``c5`` and ``s24-<variant>``
AWB_MODELS = ("c5",) + tuple(f"s24-{v}" for v in S24_VARIANTS)
CAPTURE_FEATURES = ("iso", "shutter_speed", "noise_stats", "snr_stats")
#: SNR window (official compute_snr: 15x15, stride 1, reflect padding 7)
SNR_PATCH = 15

# bin centres exactly as the official numpy code builds them (arange accumulates differently from start + i*step)
_C5_STEP = 2 * C5_BOUNDARY / (HIST_BINS - 1)
_C5_CENTRES = np.arange(-C5_BOUNDARY, C5_BOUNDARY + _C5_STEP / 2, _C5_STEP)
# centred bin coordinates for decoding (-23.5 … 23.5), and the decode scale 5.7/48
_C5_COORDS = np.arange(-(HIST_BINS - 1) / 2, (HIST_BINS - 1) / 2 + 1)
_C5_DECODE_SCALE = 2 * C5_BOUNDARY / HIST_BINS


# ------------------------------------------------------------------------------------------------- configs

@dataclass(frozen=True)
class S24Config:
    """The parts of ``config-awb_<variant>.json`` the model needs."""
    variant: str
    capture_data: tuple[str, ...]       # feature order of the capture vector
    norm_min: tuple[float, ...]
    norm_max: tuple[float, ...]
    hist_boundaries: tuple[float, float, float, float]   # u_min (R/G), v_min (B/G), u_max, v_max
    hist_bins: int = HIST_BINS
    target_size: tuple[int, int] = AWB_SIZE

    @property
    def n_capture(self) -> int:
        return len(self.norm_min)


def _capture_length(features: Sequence[str]) -> int:
    return sum(1 if f in ("iso", "shutter_speed") else 6 for f in features)


def read_s24_config(path: str | Path) -> S24Config:
    """Read and validate an S24 AWB config; ``ValueError`` naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: S24 AWB config not found (official release: awb_ccm/models/)")
    try:
        raw = json.loads(path.read_text())
        feats = tuple(raw["capture_data"])
        nmin = tuple(float(v) for v in raw["norm_values"]["capture-data-min"])
        nmax = tuple(float(v) for v in raw["norm_values"]["capture-data-max"])
        bounds = tuple(float(v) for v in raw["hist_boundaries"])
        bins = int(raw.get("hist_bins", HIST_BINS))
        size = tuple(int(v) for v in raw.get("target_size", AWB_SIZE))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a valid S24 AWB config ({type(exc).__name__}: {exc})") from None
    unknown = [f for f in feats if f not in CAPTURE_FEATURES]
    if unknown:
        raise ValueError(f"{path}: unknown capture features {unknown} (known: {', '.join(CAPTURE_FEATURES)})")
    n = _capture_length(feats)
    if len(nmin) != n or len(nmax) != n or len(bounds) != 4 or bins != HIST_BINS or size != AWB_SIZE:
        raise ValueError(f"{path}: inconsistent S24 AWB config: {len(feats)} features give {n} values but the "
                         f"norm vectors have {len(nmin)}/{len(nmax)}; boundaries {len(bounds)} (expected 4), "
                         f"bins {bins} (expected {HIST_BINS}), target size {size} (expected {AWB_SIZE})")
    variant = path.stem.removeprefix("config-awb_")
    return S24Config(variant, feats, nmin, nmax, bounds, bins, size)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- pure functions

def _linear_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV INTER_LINEAR taps along one axis: source indices (i0, i1) and float32 weights (w0, w1).

    Source position ``(d + 0.5) * src / dst - 0.5`` in double; its fraction is rounded to float32 (``w1``) and
    ``w0 = 1 - w1`` in float32; positions before the first or past the last pixel take that pixel alone."""
    pos = (np.arange(dst) + 0.5) * (src / dst) - 0.5
    i0 = np.floor(pos).astype(np.int64)
    w1 = (pos - i0).astype(np.float32)
    w1[(i0 < 0) | (i0 >= src - 1)] = 0.0
    i0 = np.clip(i0, 0, src - 1)
    w0 = (np.float32(1.0) - w1).astype(np.float32)
    return i0, np.minimum(i0 + 1, src - 1), w0, w1


def resize_for_awb(raw: torch.Tensor, size: tuple[int, int] = AWB_SIZE) -> torch.Tensor:
    """``(B, 3, H, W) -> (B, 3, 256, 384)`` the way the official code resizes (OpenCV ``INTER_LINEAR`` on float32:
    half-pixel centres, no antialiasing, a horizontal then a vertical 2-tap pass with OpenCV's weight rounding).
    Matches OpenCV to 1 ulp (6e-8); ``F.interpolate`` differs by up to 8e-6, enough to move pixels of the edge
    histograms across bins. An image already at ``size`` is returned unchanged."""
    h, w = raw.shape[-2:]
    if (h, w) == tuple(size):
        return raw
    x0, x1, xw0, xw1 = _linear_taps(w, size[1])
    y0, y1, yw0, yw1 = _linear_taps(h, size[0])

    def taps(i0, i1, w0, w1, dim, shape):
        t = [torch.as_tensor(a, device=raw.device) for a in (i0, i1)]
        c = [torch.as_tensor(a, dtype=raw.dtype, device=raw.device).reshape(shape) for a in (w0, w1)]
        return t, c

    (xi0, xi1), (xc0, xc1) = taps(x0, x1, xw0, xw1, 3, (1, 1, 1, -1))
    (yi0, yi1), (yc0, yc1) = taps(y0, y1, yw0, yw1, 2, (1, 1, -1, 1))
    rows = raw.index_select(3, xi0) * xc0 + raw.index_select(3, xi1) * xc1      # (B, 3, H, 384)
    return rows.index_select(2, yi0) * yc0 + rows.index_select(2, yi1) * yc1    # (B, 3, 256, 384)


def edge_image(img: torch.Tensor, acc_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Mean absolute difference to the 8 neighbours, per channel, with the border pixel repeated.

    ``(B, 3, H, W) -> (B, 3, H, W)``. Differences are taken in ``img``'s dtype and summed in ``acc_dtype`` (default:
    the same; the official code sums float32 differences in float64)."""
    acc_dtype = acc_dtype or img.dtype
    h, w = img.shape[-2:]
    pad = F.pad(img, (1, 1, 1, 1), mode="replicate")
    total = torch.zeros(img.shape, dtype=acc_dtype, device=img.device)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                total = total + (img - pad[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]).abs().to(acc_dtype)
    return total / 8


def _normalise_hist(hist: torch.Tensor) -> torch.Tensor:
    """``sqrt(h / (sum(h) + 1e-8))`` per image; ``(B, n, n)``."""
    return torch.sqrt(hist / (hist.sum(dim=(1, 2), keepdim=True) + EPS))


def c5_log_uv(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, 3, N)`` -> log-chroma ``(u, v)`` each ``(B, N)``: ``u = log(G+eps) - log(R+eps)``, ``v = log(G+eps) -
    log(B+eps)``."""
    log_rgb = torch.log(img + EPS)
    return log_rgb[:, 1] - log_rgb[:, 0], log_rgb[:, 1] - log_rgb[:, 2]


def _c5_box_membership(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """``(B, N)`` values, ``(n,)`` centres -> ``(B, N, n)`` 0/1: ``0 < |x - c| <= spacing``."""
    d = (x.unsqueeze(-1) - centres).abs()
    return ((d <= _C5_STEP) & (d != 0)).to(x.dtype)


def _c5_hist_channel(img: torch.Tensor, hist_dtype: torch.dtype) -> torch.Tensor:
    """One C5 histogram: ``(B, 3, N)`` -> ``(B, 48, 48)`` (rows v descending, columns u ascending), normalised."""
    u, v = c5_log_uv(img)
    weight = torch.sqrt((img * img).sum(dim=1)) * (img.sum(dim=1) > EPS).to(img.dtype)      # (B, N)
    centres = torch.as_tensor(_C5_CENTRES, dtype=hist_dtype, device=img.device)
    mu = _c5_box_membership(u.to(hist_dtype), centres)                       # (B, N, 48) u bins
    mv = _c5_box_membership(v.to(hist_dtype), centres.flip(0))               # (B, N, 48) v bins, +2.85 first
    hist = torch.matmul((mv * weight.to(hist_dtype).unsqueeze(-1)).transpose(1, 2), mu)   # (B, 48, 48)
    return _normalise_hist(hist)


def _ramps(n: int, dtype: torch.dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.arange(n, dtype=dtype, device=device)
    return idx.view(n, 1).expand(n, n), idx.view(1, n).expand(n, n)          # row index, column index


def c5_histogram(img: torch.Tensor, hist_dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """C5 input stack: ``(B, 3, 256, 384)`` raw in [0, 1] -> ``(B, 4, 48, 48)`` float32
    ``[log-uv hist, edge log-uv hist, u ramp (col/47), v ramp (1 - row/47)]``."""
    b, c, h, w = img.shape
    flat = img.reshape(b, c, h * w)
    edges = edge_image(img, hist_dtype).reshape(b, c, h * w)
    rows, cols = _ramps(HIST_BINS, torch.float32, img.device)
    ramps = torch.stack([cols / (HIST_BINS - 1), 1 - rows / (HIST_BINS - 1)]).expand(b, 2, HIST_BINS, HIST_BINS)
    hist = torch.stack([_c5_hist_channel(flat, hist_dtype), _c5_hist_channel(edges, hist_dtype)], dim=1)
    return torch.cat([hist.float(), ramps], dim=1)


def _bin_membership(x: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """``numpy.histogram`` bins: ``(B, N)`` values, ``(n+1,)`` increasing edges -> ``(B, N, n)`` 0/1 with
    ``edges[k] <= x < edges[k+1]``, the last bin closed on the right; values outside (or NaN) belong nowhere."""
    x = x.unsqueeze(-1)
    lower = x >= edges[:-1]
    upper = torch.cat([x[..., :1].expand(*x.shape[:-1], edges.numel() - 2) < edges[1:-1],
                       x <= edges[-1:]], dim=-1)
    return (lower & upper).to(x.dtype)


def _s24_hist_channel(chroma_u: torch.Tensor, chroma_v: torch.Tensor, weight: torch.Tensor,
                      edges_u: torch.Tensor, edges_v: torch.Tensor) -> torch.Tensor:
    mu = _bin_membership(chroma_u, edges_u)                                  # (B, N, 48) R/G bins
    mv = _bin_membership(chroma_v, edges_v)                                  # (B, N, 48) B/G bins
    hist = torch.matmul((mu * weight.unsqueeze(-1)).transpose(1, 2), mv)     # (B, 48 R/G, 48 B/G)
    return _normalise_hist(hist)


def _rg_bg(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return img[:, 0] / (img[:, 1] + EPS), img[:, 2] / (img[:, 1] + EPS)


def s24_histogram(img: torch.Tensor, boundaries: Sequence[float], bins: int = HIST_BINS,
                  hist_dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """S24 input stack: ``(B, 3, 256, 384)`` raw -> ``(B, 4, 48, 48)`` float32 ``[hist, i/48, j/48, edge_hist]``
    over ``boundaries = [R/G min, B/G min, R/G max, B/G max]``."""
    b, c, h, w = img.shape
    u_min, v_min, u_max, v_max = (float(x) for x in boundaries)
    edges_u = torch.as_tensor(np.linspace(u_min, u_max, bins + 1), dtype=hist_dtype, device=img.device)
    edges_v = torch.as_tensor(np.linspace(v_min, v_max, bins + 1), dtype=hist_dtype, device=img.device)
    flat = img.reshape(b, c, h * w)
    weight = torch.sqrt((flat * flat).sum(dim=1)).to(hist_dtype)             # original brightness, both channels
    ru, rv = _rg_bg(flat)
    hist = _s24_hist_channel(ru.to(hist_dtype), rv.to(hist_dtype), weight, edges_u, edges_v)
    eu, ev = _rg_bg(edge_image(img, hist_dtype).reshape(b, c, h * w))
    edge_hist = _s24_hist_channel(eu, ev, weight, edges_u, edges_v)
    rows, cols = _ramps(bins, torch.float32, img.device)
    ramps = torch.stack([rows / bins, cols / bins]).expand(b, 2, bins, bins)
    return torch.cat([hist.float().unsqueeze(1), ramps, edge_hist.float().unsqueeze(1)], dim=1)


def noise_statistics(raw: torch.Tensor, denoised_raw: torch.Tensor) -> torch.Tensor:
    """S24 noise features: ``(B, 3, H, W)`` x2 -> ``(B, 6)``: per-channel mean, then unbiased std, of
    ``|raw - denoised_raw|``."""
    diff = (raw - denoised_raw).abs()
    return torch.cat([diff.mean(dim=(2, 3)), diff.std(dim=(2, 3))], dim=1)


def snr_statistics(raw: torch.Tensor, patch: int = SNR_PATCH) -> torch.Tensor:
    """S24 SNR features: ``(B, 3, H, W)`` -> ``(B, 6)`` float64: per-channel mean, then population std, of the SNR map
    ``clamp(10 log10(mean / (std + eps)) / 100, 0, 1)`` over ``patch`` x ``patch`` windows (stride 1, reflect
    padding; std unbiased). Windowed sums run as box filters in float64, one channel at a time."""
    pad = (patch - 1) // 2
    n = patch * patch
    out_mean, out_std = [], []
    for ch in range(raw.shape[1]):
        x = F.pad(raw[:, ch:ch + 1].float(), (pad, pad, pad, pad), mode="reflect").double()
        s1 = F.avg_pool2d(x, patch, stride=1) * n
        s2 = F.avg_pool2d(x * x, patch, stride=1) * n
        mean = s1 / n
        std = torch.sqrt(((s2 - s1 * mean) / (n - 1)).clamp_min(0.0))
        snr = torch.clamp(10.0 * torch.log10(mean / (std + EPS)) / 100.0, 0.0, 1.0)   # (B, 1, H, W)
        out_mean.append(snr.mean(dim=(1, 2, 3)))
        out_std.append(snr.std(dim=(1, 2, 3), unbiased=False))
    return torch.stack(out_mean + out_std, dim=1)


def capture_features(features: Sequence[str], iso: torch.Tensor, exposure_time: torch.Tensor,
                     noise_stats: torch.Tensor | None = None, snr_stats: torch.Tensor | None = None
                     ) -> torch.Tensor:
    """Capture vector before scaling, in ``features`` order: ``(B,)`` ISO and exposure time in seconds (natural log
    taken here), ``(B, 6)`` noise and SNR statistics -> ``(B, n)`` float64."""
    parts = []
    for f in features:
        if f == "iso":
            parts.append(torch.log(iso.double()).reshape(-1, 1))
        elif f == "shutter_speed":
            parts.append(torch.log(exposure_time.double()).reshape(-1, 1))
        elif f == "noise_stats":
            if noise_stats is None:
                raise ValueError("capture features: this S24 model needs noise_stats (give the denoised raw)")
            parts.append(noise_stats.double().reshape(-1, 6))
        elif f == "snr_stats":
            if snr_stats is None:
                raise ValueError("capture features: this S24 model needs snr_stats")
            parts.append(snr_stats.double().reshape(-1, 6))
        else:
            raise ValueError(f"unknown capture feature {f!r} (known: {', '.join(CAPTURE_FEATURES)})")
    return torch.cat(parts, dim=1)


def min_max_normalise(x: torch.Tensor, lo: Sequence[float], hi: Sequence[float]) -> torch.Tensor:
    """``(x - lo) / (hi - lo + 1e-8)`` in float64, returned as float32 (the model input). No clipping."""
    lo_t = torch.as_tensor(lo, dtype=torch.float64)
    hi_t = torch.as_tensor(hi, dtype=torch.float64)
    return ((x.double() - lo_t) / (hi_t - lo_t + EPS)).float()


def _dft_mats(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    k = np.arange(n)
    ang = 2 * np.pi * np.outer(k, k) / n
    return torch.from_numpy(np.cos(ang)).float(), torch.from_numpy(np.sin(ang)).float()


def circular_filter(hist: torch.Tensor, filt: torch.Tensor, cos: torch.Tensor | None = None,
                    sin: torch.Tensor | None = None) -> torch.Tensor:
    """2-D circular convolution of ``(B, C, n, n)`` with ``(B, C, n, n)``.

    With ``cos``/``sin`` (``(n, n)`` DFT matrices) it runs as real matrix products; otherwise with ``rfft2``."""
    if cos is None:
        return torch.fft.irfft2(torch.fft.rfft2(hist) * torch.fft.rfft2(filt), s=hist.shape[-2:])

    def dft(x):                                  # F x F^T with F = C - iS (C, S symmetric)
        xc, xs = x @ cos, x @ sin
        return cos @ xc - sin @ xs, -(cos @ xs + sin @ xc)

    hr, hi = dft(hist)
    fr, fi = dft(filt)
    pr, pi = hr * fr - hi * fi, hr * fi + hi * fr
    # inverse: Re((C + iS) P (C + iS)) / n^2
    n2 = hist.shape[-1] * hist.shape[-2]
    return (cos @ (pr @ cos - pi @ sin) - sin @ (pi @ cos + pr @ sin)) / n2


# ---------------------------------------------------------------------------------------------------- modules

class _ConvAct(nn.Module):
    """3x3 conv (replicate padding) -> [norm] -> [LeakyReLU 0.01]."""

    def __init__(self, cin: int, cout: int, norm: str | None = None, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, padding_mode="replicate")
        self.norm = (nn.BatchNorm2d(cout) if norm == "bn" else nn.InstanceNorm2d(cout, affine=False)
                     if norm == "in" else None)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        return F.leaky_relu(x, 0.01) if self.act else x


class _DoubleConv(nn.Module):
    def __init__(self, cin: int, cmid: int, cout: int, norm: str | None) -> None:
        super().__init__()
        self.conv1 = _ConvAct(cin, cmid)
        self.conv2 = _ConvAct(cmid, cout, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class _C5Decoder(nn.Module):
    def __init__(self, out_channels: int) -> None:
        super().__init__()
        chans = ((64, 32, 32), (64, 32, 16), (32, 16, 8), (16, 8, 4))
        self.blocks = nn.ModuleList(_DoubleConv(i, m, o, "in") for i, m, o in chans)
        self.final_conv = _ConvAct(4, out_channels, act=False)

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for block, skip in zip(self.blocks, skips):
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
            x = block(torch.cat([skip, x], dim=1))
        return self.final_conv(x)


class C5Net(nn.Module):
    """C5 illuminant estimator. ``hist (B, 4, 48, 48) -> (illum (B, 3) unit norm, heatmap (B, 48, 48),
    filter (B, 2, 48, 48), bias (B, 48, 48))``. 4-level encoder 4-8-16-32-32 (BatchNorm in levels 0 and 2), a
    32-32-32 bottleneck, two decoders (bias: 1 output, filter: 2 outputs) with InstanceNorm."""

    def __init__(self, fft: bool = True) -> None:
        super().__init__()
        enc = ((4, 8, "bn"), (8, 16, None), (16, 32, "bn"), (32, 32, None))
        self.encoder = nn.ModuleList(_DoubleConv(i, o, o, n) for i, o, n in enc)
        self.bottleneck = _DoubleConv(32, 32, 32, None)
        self.bias_decoder = _C5Decoder(1)
        self.filter_decoder = _C5Decoder(2)
        u, v = np.meshgrid(_C5_COORDS, _C5_COORDS[::-1])
        self.register_buffer("u_coord", torch.from_numpy(u.copy()).float(), persistent=False)
        self.register_buffer("v_coord", torch.from_numpy(v.copy()).float(), persistent=False)
        self.fft = fft
        if not fft:
            cos, sin = _dft_mats(HIST_BINS)
            self.register_buffer("dft_cos", cos, persistent=False)
            self.register_buffer("dft_sin", sin, persistent=False)

    def forward(self, hist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x, skips = hist, []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)                                           # 48 -> 24 -> 12 -> 6 -> 3
        x = self.bottleneck(x)
        skips.reverse()
        bias = self.bias_decoder(x, skips)[:, 0]                             # (B, 48, 48)
        filt = self.filter_decoder(x, skips)                                 # (B, 2, 48, 48)
        if self.fft:
            proc = circular_filter(hist[:, :2], filt)
        else:
            proc = circular_filter(hist[:, :2], filt, self.dft_cos, self.dft_sin)
        logits = torch.clamp(proc.sum(dim=1) + bias, -100.0, 100.0)
        b = logits.shape[0]
        heat = torch.softmax(logits.reshape(b, -1), dim=-1).reshape(logits.shape)   # (B, 48, 48)
        u = (heat * self.u_coord).sum(dim=(-1, -2)) * _C5_DECODE_SCALE
        v = (heat * self.v_coord).sum(dim=(-1, -2)) * _C5_DECODE_SCALE
        illum = torch.stack([torch.exp(-u), torch.ones_like(u), torch.exp(-v)], dim=-1)
        return illum / torch.linalg.vector_norm(illum, dim=1, keepdim=True), heat, filt, bias


class S24Net(nn.Module):
    """S24 illuminant estimator. ``hist (B, 4, 48, 48), capture (B, n) -> illum (B, 3)`` unit norm (ELU
    throughout; BatchNorm1d after the first head layer)."""

    def __init__(self, n_capture: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(4, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 16, 3, padding=1)
        self.hist_fc = nn.Linear(16, 16)
        self.capture_fc = nn.Linear(n_capture, 16)
        self.fc1 = nn.Linear(32, 32)
        self.bn1 = nn.BatchNorm1d(32)
        self.fc2 = nn.Linear(32, 16)
        self.fc3 = nn.Linear(16, 32)
        self.fc4 = nn.Linear(32, 2)

    def forward(self, hist: torch.Tensor, capture: torch.Tensor) -> torch.Tensor:
        x = F.elu(self.conv3(F.elu(self.conv2(F.elu(self.conv1(hist))))))
        h = self.hist_fc(x.mean(dim=(2, 3)))                                 # (B, 16)
        z = torch.cat([h, self.capture_fc(capture)], dim=-1)                 # (B, 32)
        z = F.elu(self.bn1(self.fc1(z)))
        z = F.elu(self.fc3(F.elu(self.fc2(z))))
        rgbg = self.fc4(z)                                                   # (B, 2) R/G, B/G
        illum = torch.stack([rgbg[:, 0], torch.ones_like(rgbg[:, 0]), rgbg[:, 1]], dim=1)
        return illum / torch.linalg.vector_norm(illum, dim=1, keepdim=True)


class AutoWhiteBalance(nn.Module):
    """The ``awb`` stage: ``forward(hist, capture) -> illum (B, 3)`` unit-norm raw-RGB illuminant.

    ``model="c5"`` ignores ``capture`` (pass ``None``); ``model="s24-<variant>"`` needs the scaled capture vector
    ``(B, n)`` (:meth:`capture_vector`). :meth:`histogram` builds the model's histogram stack from the resized raw.
    """

    def __init__(self, model: str = "c5", config: S24Config | None = None, fft: bool = True) -> None:
        super().__init__()
        if model not in AWB_MODELS:
            raise ValueError(f"unknown AWB model {model!r}; models are {', '.join(AWB_MODELS)}")
        self.model = model
        self.config = config
        if model == "c5":
            self.net: nn.Module = C5Net(fft=fft)
        else:
            if config is None:
                raise ValueError(f"AWB model {model!r} needs its S24 config")
            self.net = S24Net(config.n_capture)

    @property
    def is_c5(self) -> bool:
        return self.model == "c5"

    @property
    def capture_data(self) -> tuple[str, ...]:
        return () if self.config is None else self.config.capture_data

    def histogram(self, awb_img: torch.Tensor, hist_dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``(B, 3, 256, 384)`` resized raw -> the model's ``(B, 4, 48, 48)`` histogram stack."""
        if self.is_c5:
            return c5_histogram(awb_img, hist_dtype)
        return s24_histogram(awb_img, self.config.hist_boundaries, self.config.hist_bins, hist_dtype)

    def capture_vector(self, iso: torch.Tensor, exposure_time: torch.Tensor, noise_stats: torch.Tensor | None,
                       snr_stats: torch.Tensor | None) -> torch.Tensor:
        """Scaled capture vector ``(B, n)`` float32 in this variant's feature order (empty for C5)."""
        if self.is_c5:
            return torch.zeros(iso.reshape(-1).shape[0], 0)
        raw = capture_features(self.config.capture_data, iso, exposure_time, noise_stats, snr_stats)
        return min_max_normalise(raw, self.config.norm_min, self.config.norm_max)

    def forward(self, hist: torch.Tensor, capture: torch.Tensor | None = None) -> torch.Tensor:
        if self.is_c5:
            return self.net(hist)[0]
        return self.net(hist, capture)


# ---------------------------------------------------------------------------------------- checkpoint + registry

#: official keys drop their leading underscores (C5: ``_encoder._blocks.0._conv2._norm_layer.weight`` ->
#: ``encoder.0.conv2.norm.weight``, ``_bias_decoder._blocks.0…`` -> ``bias_decoder.blocks.0…``; S24:
#: ``_hist_net._conv1`` -> ``conv1``, ``_hist_net._fc`` -> ``hist_fc``, ``_feature_to_latent`` -> ``capture_fc``)
KEY_RULES = (
    (r"^_hist_net\._fc\.", "hist_fc."),
    (r"^_hist_net\.", ""),
    (r"^_feature_to_latent\.", "capture_fc."),
    (r"^_encoder\._blocks\.", "encoder."),
    (r"(^|\.)_norm_layer\.", r"\1norm."),
    (r"(^|\.)_", r"\1"),
)


def awb_dir(weights: Path) -> Path:
    return Path(weights) / "awb_ccm" / "models"


def awb_checkpoint(weights: Path, model: str) -> Path:
    if model == "c5":
        return awb_dir(weights) / "model-c5_single_encoder_neutral.pth"
    return awb_dir(weights) / f"model-awb_{model.removeprefix('s24-')}.pt"


def s24_config_path(weights: Path, model: str) -> Path:
    return awb_dir(weights) / f"config-awb_{model.removeprefix('s24-')}.json"


def build_awb(weights: Path, model: str = "c5", fft: bool = True) -> AutoWhiteBalance:
    """Build an AWB model from the official release folder (strict loading); ``model`` in :data:`AWB_MODELS`."""
    if model not in AWB_MODELS:
        raise ValueError(f"unknown AWB model {model!r}; models are {', '.join(AWB_MODELS)}")
    config = None if model == "c5" else read_s24_config(s24_config_path(weights, model))
    module = AutoWhiteBalance(model, config, fft=fft)
    path = awb_checkpoint(weights, model)
    load_strict(module.net, remap_keys(read_state_dict(path), KEY_RULES), path)
    return module.eval()


def _build(cfg: BuildConfig) -> AutoWhiteBalance:
    return build_awb(cfg.weights, cfg.awb)


SPEC = StageSpec(
    id="awb",
    build=_build,
    inputs=(
        TensorSpec("awb_hist", "B,4,48,48", (0.0, 1.0), "histogram stack of the noisy raw resized to 256x384 "
                   "(C5: c5_hist; S24: s24_hist)"),
        TensorSpec("capture", "B,n", None, "S24 only: min-max scaled capture features (<variant>_capture); "
                   "None for C5"),
    ),
    outputs=(TensorSpec("illum", "B,3", (0.0, 1.0), "unit-norm raw-RGB illuminant colour"),),
    resolution="256x384",
    paper="Sec. 2.2 (AWB); C5 (ICCV 2021), time-aware AWB (ICCV 2025)",
    checkpoint=lambda cfg: awb_checkpoint(cfg.weights, cfg.awb),
)
