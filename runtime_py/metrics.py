"""Image-quality metrics shared by the drift and benchmark tools: PSNR, SSIM, CIEDE2000 and error heat maps.

Everything is computed in float64 whatever the input precision, so a metric never adds drift of its own.

Images are ``(B, 3, H, W)`` (the layout of the stages) or ``(H, W, 3)`` (the layout of the image files), as numpy
arrays or torch tensors, floats in [0, 1]. Integer images are refused (divide 8-bit data by 255 first).

* :func:`psnr` — re-exported from :mod:`isp.metrics` (one definition in the project).
* :func:`ssim` — the SSIM index of Wang, Bovik, Sheikh & Simoncelli, "Image quality assessment: from error visibility
  to structural similarity", IEEE TIP 13(4), 2004, Eq. (13), with the paper's parameters: an 11x11 circular-symmetric
  Gaussian window with sigma 1.5 (normalised to sum 1), K1 = 0.01, K2 = 0.03, dynamic range L = 1, population
  (biased, 1/N) local variances. The map is evaluated only where the window fits inside the image ("valid"
  filtering, as the authors' ``ssim_index.m``), then averaged. Choices: SSIM is defined on one channel; we compute it
  on each of R, G and B separately and average the three (and over the batch) — the RGB mean that
  ``skimage.metrics.structural_similarity(..., channel_axis=-1, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1)`` also returns — rather than on luma only; there is no automatic
  downsampling (the later ``ssim.m`` of the authors downsamples large images; we compare pixels as stored).
* :func:`delta_e2000` — per-pixel CIEDE2000 between two display-referred sRGB images: sRGB (IEC 61966-2-1 transfer)
  -> linear -> CIE XYZ (D65) -> CIELAB (D65 white) -> ΔE00 of Sharma, Wu & Dalal, "The CIEDE2000 color-difference
  formula: implementation notes, supplementary test data, and mathematical observations", Color Res. Appl. 30(1),
  2005, Eqs. (1)-(22), with kL = kC = kH = 1. :func:`delta_e2000_lab` is the formula alone on L*a*b* values.
* :func:`compare` — the dict of numbers a drift report records for one (artifact, reference) pair.
* :func:`error_map` / :func:`error_heatmap` / :func:`colorize` / :func:`heatmap_legend` — per-pixel error through an
  inferno-like perceptual colour map (a small piecewise-linear table, no matplotlib).

sRGB -> XYZ uses the matrix derived from the IEC 61966-2-1 (= ITU-R BT.709) primaries and the D65 white point
x = 0.3127, y = 0.3290, in float64; the CIELAB reference white is that same white (X, Y, Z) = M @ (1, 1, 1), so
sRGB white is exactly L* = 100 and every neutral grey has a* = b* = 0. sRGB values are clipped to [0, 1] before the
conversion: ΔE is a display-referred measure and a display cannot show values outside that range (overshoot is what
``max_abs`` in :func:`compare` reports). Tools using the rounded ASTM white (0.95047, 1, 1.08883) and a 4-digit
matrix (scikit-image's ``rgb2lab``) differ from these values by about 0.015 in L*a*b* and 0.005 in ΔE00.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage

from isp.metrics import psnr

__all__ = ["psnr", "ssim", "srgb_to_linear", "linear_to_srgb", "srgb_to_xyz", "xyz_to_lab", "srgb_to_lab",
           "delta_e2000_lab", "delta_e2000", "delta_e_stats", "compare", "COMPARE_KINDS", "HEATMAP_ANCHORS",
           "colorize", "error_map", "error_heatmap", "heatmap_legend", "SRGB_TO_XYZ", "D65_WHITE_XYZ"]

# ---------------------------------------------------------------------------------------------- constants

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

#: kinds accepted by :func:`compare`
COMPARE_KINDS = ("srgb", "linear", "data")

#: pixels per chunk in :func:`delta_e2000` (bounds the float64 temporaries to a few hundred MB on 12 MP images)
_DE_CHUNK = 1 << 20


def _rgb_to_xyz_matrix() -> np.ndarray:
    """RGB -> XYZ for the sRGB / BT.709 primaries and D65 white (IEC 61966-2-1), scaled so white has Y = 1."""
    xy = np.array([[0.64, 0.33], [0.30, 0.60], [0.15, 0.06]], dtype=np.float64)       # R, G, B chromaticities
    white_xy = np.array([0.3127, 0.3290], dtype=np.float64)
    prim = np.stack([xy[:, 0] / xy[:, 1], np.ones(3), (1.0 - xy[:, 0] - xy[:, 1]) / xy[:, 1]])   # columns XYZ, Y=1
    white = np.array([white_xy[0] / white_xy[1], 1.0, (1.0 - white_xy.sum()) / white_xy[1]])
    scale = np.linalg.solve(prim, white)
    return prim * scale[None, :]


#: linear sRGB -> CIE XYZ (D65), rows X, Y, Z; ≈ [[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], ...]
SRGB_TO_XYZ = _rgb_to_xyz_matrix()
#: CIELAB reference white: D65 (x, y) = (0.3127, 0.3290) with Y = 1, i.e. ≈ (0.95046, 1, 1.08906)
D65_WHITE_XYZ = SRGB_TO_XYZ.sum(axis=1)

#: inferno-like colour map: anchors at 0, 1/8, ..., 1 (8-bit sRGB), linearly interpolated; lightness rises
#: monotonically from black through purple, red and orange to pale yellow, so "brighter = larger error" in print,
#: on screen and for colour-blind readers. The anchors approximate matplotlib's (CC0) inferno map.
HEATMAP_ANCHORS = np.array([
    [0, 0, 4], [40, 11, 84], [87, 16, 110], [135, 33, 107], [188, 55, 84],
    [227, 83, 55], [249, 142, 9], [249, 201, 50], [252, 255, 164],
], dtype=np.float64)


# ---------------------------------------------------------------------------------------------- input handling

def _to_numpy(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu")
        if not torch.is_floating_point(x):
            raise ValueError(f"{name}: expected a floating-point image in [0, 1], got dtype {x.dtype} "
                             "(divide 8-bit data by 255 first)")
        return x.to(torch.float64).numpy()
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{name}: expected a floating-point image in [0, 1], got dtype {a.dtype} "
                         "(divide 8-bit data by 255 first)")
    return a.astype(np.float64, copy=False)


def _as_bhwc(x, name: str) -> np.ndarray:
    """``(B, 3, H, W)`` or ``(H, W, 3)`` array/tensor -> float64 ``(B, H, W, 3)`` numpy array (no NaNs)."""
    a = _to_numpy(x, name)
    if a.ndim == 4 and a.shape[1] == 3:
        a = a.transpose(0, 2, 3, 1)
    elif a.ndim == 3 and a.shape[2] == 3:
        a = a[None]
    else:
        hint = " (for a (3, H, W) image add a batch axis: x[None])" if a.ndim == 3 and a.shape[0] == 3 else ""
        raise ValueError(f"{name}: expected an RGB image of shape (B, 3, H, W) or (H, W, 3), got {a.shape}{hint}")
    if a.shape[1] < 1 or a.shape[2] < 1:
        raise ValueError(f"{name}: empty image of shape {a.shape}")
    if np.isnan(a).any():
        raise ValueError(f"{name}: image contains NaN values")
    return a


def _pair_bhwc(pred, ref) -> tuple[np.ndarray, np.ndarray]:
    p = _as_bhwc(pred, "pred")
    r = _as_bhwc(ref, "ref")
    if p.shape != r.shape:
        raise ValueError(f"pred and ref must have the same shape, got {p.shape} and {r.shape} (as (B, H, W, 3))")
    return p, r


# ---------------------------------------------------------------------------------------------- SSIM

def _gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    t = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(t ** 2) / (2.0 * sigma ** 2))
    return g / g.sum()                      # the 2-D window is the outer product, which then also sums to 1


def ssim(pred, ref) -> float:
    """Mean SSIM (Wang et al. 2004) of two RGB images in [0, 1]: per channel, averaged over R, G, B and the batch.

    ``(B, 3, H, W)`` or ``(H, W, 3)``; both sides must be at least 11x11 (the Gaussian window). Identical images
    give exactly 1.0. See the module docstring for the parameter choices.
    """
    return _ssim_bhwc(*_pair_bhwc(pred, ref))


def _blur_valid(t: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable Gaussian filtering of an ``(H, W)`` plane, "valid" part only: ``(H - 10, W - 10)``."""
    r = (len(g) - 1) // 2
    t = ndimage.correlate1d(t, g, axis=1, mode="constant")[:, r:-r]
    return ndimage.correlate1d(t, g, axis=0, mode="constant")[r:-r, :]


def _ssim_bhwc(p: np.ndarray, r: np.ndarray) -> float:
    b, h, w, c = p.shape
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels (the Gaussian window), "
                         f"got {h}x{w}")
    g = _gaussian_window()
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2          # (K L)^2 with L = 1
    total = 0.0
    for i in range(b):                           # one plane at a time bounds memory on 12 MP images
        for ch in range(c):
            x = np.ascontiguousarray(p[i, :, :, ch])
            y = np.ascontiguousarray(r[i, :, :, ch])
            mu_x, mu_y = _blur_valid(x, g), _blur_valid(y, g)
            var_x = _blur_valid(x * x, g) - mu_x * mu_x
            var_y = _blur_valid(y * y, g) - mu_y * mu_y
            cov = _blur_valid(x * y, g) - mu_x * mu_y
            smap = (((2.0 * mu_x * mu_y + c1) * (2.0 * cov + c2))
                    / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)))
            total += float(smap.mean())
    return total / (b * c)


# ---------------------------------------------------------------------------------------------- colour science

def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB decoding (EOTF) of values in [0, 1]: ``v/12.92`` up to 0.04045, else
    ``((v + 0.055)/1.055)^2.4``. Float64 numpy in, same shape out."""
    v = np.asarray(v, dtype=np.float64)
    return np.where(v <= 0.04045, v / 12.92, ((np.maximum(v, 0.04045) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(v: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB encoding (inverse EOTF, the "sRGB OETF") of linear values in [0, 1]:
    ``12.92 v`` up to 0.0031308, else ``1.055 v^(1/2.4) - 0.055``."""
    v = np.asarray(v, dtype=np.float64)
    return np.where(v <= 0.0031308, 12.92 * v, 1.055 * np.maximum(v, 0.0031308) ** (1.0 / 2.4) - 0.055)


def srgb_to_xyz(srgb: np.ndarray) -> np.ndarray:
    """``(..., 3)`` display-referred sRGB (clipped to [0, 1]) -> ``(..., 3)`` CIE XYZ (D65, white Y = 1)."""
    lin = srgb_to_linear(np.clip(np.asarray(srgb, dtype=np.float64), 0.0, 1.0))
    return lin @ SRGB_TO_XYZ.T


def xyz_to_lab(xyz: np.ndarray, white: np.ndarray = D65_WHITE_XYZ) -> np.ndarray:
    """``(..., 3)`` CIE XYZ -> ``(..., 3)`` CIELAB (CIE 15: ``f(t) = t^(1/3)`` above (6/29)^3, linear below)."""
    t = np.asarray(xyz, dtype=np.float64) / np.asarray(white, dtype=np.float64)
    d = 6.0 / 29.0
    f = np.where(t > d ** 3, np.cbrt(t), t / (3.0 * d * d) + 4.0 / 29.0)
    return np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])],
                    axis=-1)


def srgb_to_lab(srgb: np.ndarray) -> np.ndarray:
    """``(..., 3)`` sRGB in [0, 1] -> ``(..., 3)`` CIELAB relative to D65."""
    return xyz_to_lab(srgb_to_xyz(srgb))


def delta_e2000_lab(lab1: np.ndarray, lab2: np.ndarray, kl: float = 1.0, kc: float = 1.0,
                    kh: float = 1.0) -> np.ndarray:
    """CIEDE2000 between ``(..., 3)`` L*a*b* arrays -> ``(...)`` float64 (Sharma, Wu & Dalal 2005, Eqs. 1-22).

    Hue angles are in degrees in [0, 360); when either chroma is zero the hue difference is 0 and the mean hue is
    the sum of the hues (Eqs. 10 and 14 as the paper states them).
    """
    lab1 = np.asarray(lab1, dtype=np.float64)
    lab2 = np.asarray(lab2, dtype=np.float64)
    out_shape = np.broadcast_shapes(lab1.shape[:-1], lab2.shape[:-1])   # () for one pair
    # contiguous planes (np.ascontiguousarray makes a 0-d plane 1-d: the result is reshaped back at the end): the ~80 elementwise passes below run about twice as fast as on strided views
    l1, a1, b1 = (np.ascontiguousarray(lab1[..., i]) for i in range(3))
    l2, a2, b2 = (np.ascontiguousarray(lab2[..., i]) for i in range(3))
    pow25_7 = 25.0 ** 7

    c_mean = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2.0                       # Eqs. 2-3
    c7 = c_mean ** 7
    g = 0.5 * (1.0 - np.sqrt(c7 / (c7 + pow25_7)))                              # Eq. 4
    a1p, a2p = (1.0 + g) * a1, (1.0 + g) * a2                                   # Eq. 5
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)                             # Eq. 6
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360.0                               # Eq. 7 (atan2(0, 0) = 0)
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360.0

    dlp = l2 - l1                                                               # Eq. 8
    dcp = c2p - c1p                                                             # Eq. 9
    cprod = c1p * c2p
    dh = h2p - h1p
    dhp = np.where(dh > 180.0, dh - 360.0, np.where(dh < -180.0, dh + 360.0, dh))
    dhp = np.where(cprod == 0.0, 0.0, dhp)                                      # Eq. 10
    dHp = 2.0 * np.sqrt(cprod) * np.sin(np.radians(dhp) / 2.0)                  # Eq. 11

    lp_mean = (l1 + l2) / 2.0                                                   # Eq. 12
    cp_mean = (c1p + c2p) / 2.0                                                 # Eq. 13
    hsum = h1p + h2p
    hp_mean = np.where(np.abs(h1p - h2p) <= 180.0, hsum / 2.0,
                       np.where(hsum < 360.0, (hsum + 360.0) / 2.0, (hsum - 360.0) / 2.0))
    hp_mean = np.where(cprod == 0.0, hsum, hp_mean)                             # Eq. 14

    hr = np.radians(hp_mean)
    t = (1.0 - 0.17 * np.cos(hr - np.radians(30.0)) + 0.24 * np.cos(2.0 * hr)
         + 0.32 * np.cos(3.0 * hr + np.radians(6.0)) - 0.20 * np.cos(4.0 * hr - np.radians(63.0)))   # Eq. 15
    dtheta = 30.0 * np.exp(-(((hp_mean - 275.0) / 25.0) ** 2))                  # Eq. 16
    cp7 = cp_mean ** 7
    rc = 2.0 * np.sqrt(cp7 / (cp7 + pow25_7))                                   # Eq. 17
    lm50 = (lp_mean - 50.0) ** 2
    sl = 1.0 + 0.015 * lm50 / np.sqrt(20.0 + lm50)                              # Eq. 18
    sc = 1.0 + 0.045 * cp_mean                                                  # Eq. 19
    sh = 1.0 + 0.015 * cp_mean * t                                              # Eq. 20
    rt = -np.sin(np.radians(2.0 * dtheta)) * rc                                 # Eq. 21

    tl, tc, th = dlp / (kl * sl), dcp / (kc * sc), dHp / (kh * sh)
    return np.sqrt(tl ** 2 + tc ** 2 + th ** 2 + rt * tc * th).reshape(out_shape)   # Eq. 22


def delta_e2000(pred_srgb, ref_srgb) -> np.ndarray:
    """Per-pixel CIEDE2000 between two display-referred sRGB images in [0, 1] -> float64 map.

    ``(B, 3, H, W)`` inputs give a ``(B, H, W)`` map, ``(H, W, 3)`` inputs an ``(H, W)`` map. Values are clipped to
    [0, 1] first (see the module docstring). Computed in chunks of 2^20 pixels to bound memory.
    """
    p, r = _pair_bhwc(pred_srgb, ref_srgb)
    out = _de2000_bhwc(p, r)
    return out[0] if np.ndim(pred_srgb) == 3 else out


def _de2000_bhwc(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    """float64 ``(B, H, W, 3)`` sRGB pair -> ``(B, H, W)`` ΔE00, in chunks of pixels."""
    flat_p, flat_r = p.reshape(-1, 3), r.reshape(-1, 3)
    out = np.empty(flat_p.shape[0], dtype=np.float64)
    for s in range(0, flat_p.shape[0], _DE_CHUNK):
        out[s:s + _DE_CHUNK] = delta_e2000_lab(srgb_to_lab(flat_p[s:s + _DE_CHUNK]),
                                               srgb_to_lab(flat_r[s:s + _DE_CHUNK]))
    return out.reshape(p.shape[:3])


def delta_e_stats(de_map) -> dict[str, float]:
    """``{"mean", "p95", "max"}`` of a ΔE map (any shape). p95 is ``numpy.percentile`` with linear interpolation."""
    a = _to_numpy(de_map, "delta_e_stats").ravel()
    if a.size == 0:
        raise ValueError("delta_e_stats: empty ΔE map")
    if np.isnan(a).any():
        raise ValueError("delta_e_stats: ΔE map contains NaN values")
    return {"mean": float(a.mean()), "p95": float(np.percentile(a, 95.0)), "max": float(a.max())}


# ---------------------------------------------------------------------------------------------- compare

def compare(pred, ref, kind: str = "srgb") -> dict:
    """All the numbers a drift report keeps for one artifact output against its reference.

    ``kind`` says what the images are:

    * ``"srgb"`` — display-referred sRGB in [0, 1] (after the gamma stage): ΔE00 on the values as they are;
    * ``"linear"`` — scene-referred linear RGB (before gamma): PSNR, SSIM and ``max_abs`` are computed on the linear
      values; for ΔE00 both images are first clipped to [0, 1] and encoded with the sRGB OETF, and the result says
      so in ``"de_space": "srgb-encoded linear"`` (a colour difference of linear data has no standard meaning);
    * ``"data"`` — any other tensor (a stage parameter, a 4-channel raw image): PSNR (peak 1) and ``max_abs`` only;
      ``ssim``, the ``de2000_*`` fields and ``de_space`` are ``None``.

    Returns ``{"kind", "psnr", "ssim", "de2000_mean", "de2000_p95", "de2000_max", "de_space", "max_abs"}``; PSNR of
    identical inputs is ``inf``. ``max_abs`` is the largest absolute difference of the raw (unclipped) values.
    Cost: about 1.5 s per megapixel (SSIM and ΔE00 dominate; measured on a 2-core CPU, 12 MP in ~20 s) and a few
    hundred MB of float64 temporaries for 12 MP; use crops for quick checks.
    """
    if kind not in COMPARE_KINDS:
        raise ValueError(f"compare: kind must be one of {', '.join(COMPARE_KINDS)}, got {kind!r}")
    if kind == "data":
        a, b = _to_numpy(pred, "pred"), _to_numpy(ref, "ref")
        if a.shape != b.shape:
            raise ValueError(f"pred and ref must have the same shape, got {a.shape} and {b.shape}")
        if a.size == 0:
            raise ValueError("compare: empty tensors")
        return {"kind": kind, "psnr": psnr(a, b), "ssim": None, "de2000_mean": None, "de2000_p95": None,
                "de2000_max": None, "de_space": None, "max_abs": float(np.abs(a - b).max())}
    p, r = _pair_bhwc(pred, ref)
    if kind == "srgb":
        de = _de2000_bhwc(p, r)
        de_space = "srgb"
    else:
        de = _de2000_bhwc(linear_to_srgb(np.clip(p, 0.0, 1.0)), linear_to_srgb(np.clip(r, 0.0, 1.0)))
        de_space = "srgb-encoded linear"
    stats = delta_e_stats(de)
    small = p.shape[1] < SSIM_WINDOW or p.shape[2] < SSIM_WINDOW
    return {"kind": kind, "psnr": psnr(p, r), "ssim": None if small else _ssim_bhwc(p, r),
            "de2000_mean": stats["mean"], "de2000_p95": stats["p95"], "de2000_max": stats["max"],
            "de_space": de_space, "max_abs": float(np.abs(p - r).max())}


# ---------------------------------------------------------------------------------------------- heat maps

def colorize(values, vmax: float, vmin: float = 0.0) -> np.ndarray:
    """Map values to the inferno-like colour map: ``vmin`` -> black, ``vmax`` and above -> pale yellow.

    Any shape in, ``(..., 3)`` uint8 out. ``vmax`` must be greater than ``vmin``.
    """
    if not (math.isfinite(vmax) and math.isfinite(vmin)) or vmax <= vmin:
        raise ValueError(f"colorize: need finite vmin < vmax, got vmin={vmin!r}, vmax={vmax!r}")
    v = np.clip((np.asarray(values, dtype=np.float64) - vmin) / (vmax - vmin), 0.0, 1.0)
    pos = v * (len(HEATMAP_ANCHORS) - 1)
    i0 = np.minimum(pos.astype(np.int64), len(HEATMAP_ANCHORS) - 2)
    frac = (pos - i0)[..., None]
    rgb = HEATMAP_ANCHORS[i0] * (1.0 - frac) + HEATMAP_ANCHORS[i0 + 1] * frac
    return np.rint(rgb).astype(np.uint8)


def error_map(pred, ref, mode: str = "rgb") -> np.ndarray:
    """Per-pixel error of one image pair -> float64 ``(H, W)``.

    ``mode="rgb"``: Euclidean norm of the RGB difference (0 .. sqrt(3)); ``mode="de2000"``: CIEDE2000 (inputs are
    display-referred sRGB). Takes ``(H, W, 3)`` or ``(1, 3, H, W)``.
    """
    p, r = _pair_bhwc(pred, ref)
    if p.shape[0] != 1:
        raise ValueError(f"error_map: one image at a time, got a batch of {p.shape[0]} (pass x[i:i+1])")
    if mode == "rgb":
        return np.sqrt(((p[0] - r[0]) ** 2).sum(axis=-1))
    if mode == "de2000":
        return _de2000_bhwc(p, r)[0]
    raise ValueError(f"error_map: mode must be 'rgb' or 'de2000', got {mode!r}")


def error_heatmap(pred, ref, vmax: float | None = None, mode: str = "rgb") -> np.ndarray:
    """``(H, W, 3)`` uint8 heat map of the per-pixel error (:func:`error_map`) through :func:`colorize`.

    ``vmax`` is the error shown at full brightness; ``None`` uses the largest error in this image (so nothing
    saturates; pass one fixed ``vmax`` to compare several artifacts on one scale). An all-zero error is all black.
    """
    err = error_map(pred, ref, mode)
    if vmax is None:
        vmax = float(err.max())
    if vmax <= 0.0:
        return np.broadcast_to(colorize(0.0, 1.0), err.shape + (3,)).copy()
    return colorize(err, float(vmax))


def heatmap_legend(width: int = 256, height: int = 16) -> np.ndarray:
    """The colour-map scale as an ``(height, width, 3)`` uint8 bar, 0 on the left and ``vmax`` on the right."""
    if width < 2 or height < 1:
        raise ValueError(f"heatmap_legend: need width >= 2 and height >= 1, got {width}x{height}")
    row = colorize(np.linspace(0.0, 1.0, width), 1.0)
    return np.broadcast_to(row[None], (height, width, 3)).copy()
