"""Frame geometry and the augmentations that turn a DNG into one calibration frame.

Geometry
    Exported quarter-resolution stages (gain, gtm, ltm, lut3d, chroma, gamma) run at one fixed frame size; the
    full-resolution stages (denoise, color, upsample, enhance) run in fixed-size tiles with overlap. ``Geometry``
    (re-exported here) is :class:`isp.geometry.FrameGeometry`, with :func:`isp.geometry.parse_size`.

From a DNG to a frame (all random choices come from one ``numpy.random.Generator`` per sample, so a frame is a pure
function of the DNG and the seed; every choice is recorded in :class:`Augmentation`):

1. **Region.** The decoded image (``RawImage.rgb``, demosaiced camera RGB in [0, 1]) or, when calibration and
   evaluation share a DNG, one half of it along its longer side (:func:`split_region`), so the two sets never see
   the same pixels.
2. **Placement.** Per axis: if the region is at least as long as the frame, a random crop; otherwise the region is
   **mirror-tiled** (periodic reflection ``0 1 … n-1 n-1 … 1 0 0 1 …``) from a random phase. Mirroring, not
   resizing: upscaling a 600-1000 px sample to 4000x3000 would stretch its noise and texture 4-7x (a denoiser
   calibrated on it would see blobs instead of sensor noise), while mirroring keeps every local statistic of the
   capture and joins copies without seams. Real 12 MP DNGs are cropped and need neither. The cost: a frame built
   from a small DNG repeats its content, which the global statistics of the tone stages tolerate (histograms are
   unchanged) but which is no substitute for real full-size captures.
3. **Flips.** Random horizontal and vertical flips (after demosaicing, so the CFA phase does not matter).
4. **Scene light.** The white-balance illuminant is moved in CCT/tint through the DNG's ColorMatrix pair
   (:func:`isp.io.color_metadata.cct_tint_from_raw_rgb` / ``raw_rgb_from_cct_tint``): CCT by a random shift in
   mired (``1e6 / K``), tint by a random offset in CIE 1960 uv. The change is applied as the ratio
   ``rgb(cct', tint') / rgb(cct, tint)`` to the as-shot illuminant, so a zero shift is exactly the identity even
   where the CCT round trip is not. Where no CCT can be found (no usable ColorMatrix), a small log-normal random
   gain per channel is used instead. The illuminant stays unit-norm, as in the golden files. With ``relight``
   (the default) the raw is re-lit by the same ratio (von Kries in camera space, green fixed): the frame is what
   the camera would have recorded under the new light, correctly white-balanced — this widens the raw colour
   distribution the denoiser and the colour stage see, while the photofinishing stages still get plausible,
   balanced images. Without ``relight`` only the illuminant moves: a white-balance error, i.e. a colour cast.
5. **Exposure.** The raw is multiplied by ``2**ev`` (ev uniform in ``ev_range``), together with the relighting
   gains. Values pushed up saturate at the sensor's clipping point ``(white - black) / white``, as a longer
   exposure would; the noise is scaled with the signal (no new shot noise is simulated).

The colour correction matrix is the DNG's as-shot one and is not changed (LibRaw's construction, which the pipeline
uses for DNG input, does not depend on the illuminant).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np

from isp.geometry import MIN_FRAME, SIZE_PRESETS, FrameGeometry, parse_size
from isp.io import color_metadata as cm

#: the frame geometry (one class for the whole toolkit: :class:`isp.geometry.FrameGeometry`)
Geometry = FrameGeometry

__all__ = ["SIZE_PRESETS", "MIN_FRAME", "Geometry", "parse_size", "AugmentConfig", "Augmentation", "ColorInfo",
           "split_region", "draw_augmentation", "apply_augmentation", "shift_illuminant", "saturation_level"]

#: CCT limits after a shift (K); the ColorMatrix interpolation clamps to the calibration range anyway
CCT_LIMITS = (2000.0, 12000.0)


# -------------------------------------------------------------------------------------------------- augmentation

@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random augmentations (uniform unless said otherwise); see the module docstring."""
    ev_range: tuple[float, float] = (-1.0, 1.0)          # exposure change in stops
    mired_range: tuple[float, float] = (-40.0, 40.0)     # scene-light CCT shift in mired (1e6 / K)
    tint_range: tuple[float, float] = (-0.005, 0.005)    # tint shift in CIE 1960 uv units
    gain_sigma: float = 0.05                             # fallback: log-normal sigma of per-channel illuminant gains
    flips: bool = True
    relight: bool = True                                 # re-light the raw with the new illuminant

    def __post_init__(self) -> None:
        for name in ("ev_range", "mired_range", "tint_range"):
            lo, hi = (float(v) for v in getattr(self, name))
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise ValueError(f"{name} must be (low, high) with low <= high, got {getattr(self, name)!r}")
            object.__setattr__(self, name, (lo, hi))
        if not (-4.0 <= self.ev_range[0] and self.ev_range[1] <= 4.0):
            raise ValueError(f"ev_range must lie within [-4, 4] stops (the pipeline's exposure range), got "
                             f"{self.ev_range}")
        if not (0.0 <= self.gain_sigma <= 1.0):
            raise ValueError(f"gain_sigma must be in [0, 1], got {self.gain_sigma}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "AugmentConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass(frozen=True)
class ColorInfo:
    """What the illuminant augmentation needs from a DNG: as-shot illuminant and ColorMatrix pair (if any)."""
    illum: np.ndarray                                # (3,) unit-norm camera-RGB illuminant
    color_matrices: tuple[np.ndarray, np.ndarray] | None = None
    illuminants: tuple[int, int] = cm.DEFAULT_ILLUMINANTS

    @classmethod
    def from_raw(cls, raw) -> "ColorInfo":
        """From an :class:`isp.io.dng.RawImage`: ColorMatrix1/2 (one is used twice if the other is absent) and their
        calibration illuminants (DNG defaults where absent or untabulated)."""
        mats = raw.color_matrices()
        m1, m2 = mats.get("ColorMatrix1"), mats.get("ColorMatrix2")
        pair = None
        if m1 is not None or m2 is not None:
            pair = (m1 if m1 is not None else m2, m2 if m2 is not None else m1)
        codes = [mats.get("CalibrationIlluminant1"), mats.get("CalibrationIlluminant2")]
        if codes[0] is None and codes[1] is None:
            ill = cm.DEFAULT_ILLUMINANTS
        else:
            c1 = codes[0] if codes[0] is not None else codes[1]
            c2 = codes[1] if codes[1] is not None else codes[0]
            ill = (c1, c2) if c1 in cm.LIGHT_SOURCE_CCT and c2 in cm.LIGHT_SOURCE_CCT else cm.DEFAULT_ILLUMINANTS
        return cls(np.asarray(raw.illum, dtype=np.float64), pair, ill)


@dataclass
class Augmentation:
    """Every random choice made for one frame (JSON-able through :meth:`to_json`)."""
    source: str
    region: tuple[int, int, int, int]                  # [y0, x0, h, w] of the decoded image the frame draws from
    rows: dict[str, Any]                               # {"mode": "crop" | "mirror", "start": int}
    cols: dict[str, Any]
    flip_v: bool
    flip_h: bool
    ev: float
    illum_method: str                                  # "cct_tint" | "gain"
    illum_before: list[float]                          # unit-norm as-shot illuminant
    illum: list[float]                                 # unit-norm illuminant fed to the pipeline
    relight: bool
    channel_gains: list[float]                         # per-channel factor applied to the raw (exposure x relight)
    cct: list[float] | None = None                     # [before, after] in K (cct_tint method)
    tint: list[float] | None = None                    # [before, after] in uv units
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["region"] = list(self.region)
        return d


def split_region(shape: tuple[int, int], part: str) -> tuple[int, int, int, int]:
    """``[y0, x0, h, w]`` of ``part`` of an ``(H, W)`` image: ``"all"``, or ``"first"`` / ``"second"`` half along
    the longer side (the halves never overlap; the first gets the extra pixel of an odd length)."""
    h, w = int(shape[0]), int(shape[1])
    if part == "all":
        return 0, 0, h, w
    if part not in ("first", "second"):
        raise ValueError(f"part must be 'all', 'first' or 'second', got {part!r}")
    if w >= h:
        cut = (w + 1) // 2
        return (0, 0, h, cut) if part == "first" else (0, cut, h, w - cut)
    cut = (h + 1) // 2
    return (0, 0, cut, w) if part == "first" else (cut, 0, h - cut, w)


def _axis(rng: np.random.Generator, n: int, m: int) -> dict[str, Any]:
    """Placement of ``m`` frame pixels on a region axis of ``n`` pixels: crop if it fits, else mirror-tile."""
    if n >= m:
        return {"mode": "crop", "start": int(rng.integers(0, n - m + 1))}
    return {"mode": "mirror", "start": int(rng.integers(0, 2 * n))}


def _axis_indices(place: Mapping[str, Any], n: int, m: int) -> np.ndarray:
    """Indices (into the region axis of length ``n``) of the ``m`` frame pixels of a placement."""
    k = place["start"] + np.arange(m)
    if place["mode"] == "crop":
        return k
    k = k % (2 * n)
    return np.where(k < n, k, 2 * n - 1 - k)


def shift_illuminant(color: ColorInfo, d_mired: float, d_tint: float, gain_noise: np.ndarray
                     ) -> tuple[np.ndarray, str, list[float] | None, list[float] | None]:
    """New unit-norm illuminant: ``(illum, method, [cct, cct'], [tint, tint'])``.

    ``cct_tint``: move the as-shot illuminant by ``d_mired`` (CCT) and ``d_tint`` (uv) through the ColorMatrix
    pair, applied as a ratio (exact identity for zero shifts). ``gain``: where that is impossible,
    ``illum * exp(gain_noise)`` (``gain_noise`` (3,) log gains), renormalised.
    """
    illum = np.asarray(color.illum, dtype=np.float64)
    if color.color_matrices is not None:
        m1, m2 = color.color_matrices
        try:
            cct0, tint0 = cm.cct_tint_from_raw_rgb(illum, m1, m2, color.illuminants)
            if cct0 is not None and math.isfinite(cct0) and cct0 > 0:
                cct1 = float(np.clip(1e6 / (1e6 / cct0 + d_mired), *CCT_LIMITS))
                tint1 = float(tint0 + d_tint)
                before = cm.raw_rgb_from_cct_tint(cct0, tint0, m1, m2, color.illuminants)
                after = cm.raw_rgb_from_cct_tint(cct1, tint1, m1, m2, color.illuminants)
                new = illum * after / before
                if np.all(np.isfinite(new)) and np.all(new > 0):
                    return new / np.linalg.norm(new), "cct_tint", [float(cct0), cct1], [float(tint0), tint1]
        except (ValueError, np.linalg.LinAlgError, ZeroDivisionError):
            pass
    new = illum * np.exp(np.asarray(gain_noise, dtype=np.float64))
    return new / np.linalg.norm(new), "gain", None, None


def saturation_level(black_level, white_level: float) -> float:
    """Clipping point of normalised raw values, ``(white - max(black)) / white`` (the ``read_dng`` convention)."""
    white = float(white_level)
    black = max((float(b) for b in black_level), default=0.0)
    return float(np.clip((white - black) / white, 1e-3, 1.0)) if white > 0 else 1.0


def draw_augmentation(rng: np.random.Generator, source: str, image_shape: tuple[int, int],
                      region: tuple[int, int, int, int], frame: tuple[int, int], color: ColorInfo,
                      cfg: AugmentConfig = AugmentConfig()) -> Augmentation:
    """Draw the augmentation of one frame of ``frame = (height, width)`` from ``region`` of an image.

    The draws happen in a fixed order whatever the outcome (placement rows, cols, flips, ev, mired, tint, three
    fallback gains), so one seed gives one frame.
    """
    y0, x0, rh, rw = (int(v) for v in region)
    if rh < 1 or rw < 1 or y0 < 0 or x0 < 0 or y0 + rh > image_shape[0] or x0 + rw > image_shape[1]:
        raise ValueError(f"region {list(region)} does not fit the {image_shape[0]}x{image_shape[1]} image")
    height, width = frame
    rows, cols = _axis(rng, rh, height), _axis(rng, rw, width)
    flip_v, flip_h = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
    if not cfg.flips:
        flip_v = flip_h = False
    ev = float(rng.uniform(*cfg.ev_range))
    d_mired = float(rng.uniform(*cfg.mired_range))
    d_tint = float(rng.uniform(*cfg.tint_range))
    noise = rng.normal(0.0, 1.0, 3) * cfg.gain_sigma
    illum, method, cct, tint = shift_illuminant(color, d_mired, d_tint, noise)
    before = np.asarray(color.illum, dtype=np.float64)
    before = before / np.linalg.norm(before)
    relight = (illum / illum[1]) / (before / before[1]) if cfg.relight else np.ones(3)
    gains = relight * 2.0 ** ev
    return Augmentation(source=source, region=(y0, x0, rh, rw), rows=rows, cols=cols, flip_v=flip_v, flip_h=flip_h,
                        ev=ev, illum_method=method, illum_before=before.tolist(), illum=illum.tolist(),
                        relight=cfg.relight, channel_gains=gains.tolist(), cct=cct, tint=tint,
                        extra={"d_mired": d_mired, "d_tint": d_tint})


def apply_augmentation(rgb: np.ndarray, aug: Augmentation, frame: tuple[int, int], saturation: float = 1.0
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The augmented frame: ``(raw (3, H, W) float32 in [0, 1], illum (3,) float32 unit norm)``.

    ``rgb``: (H_img, W_img, 3) decoded camera RGB. Channels are scaled by ``aug.channel_gains``; a pixel pushed up
    saturates at ``saturation`` (values already above it are never raised).
    """
    height, width = frame
    y0, x0, rh, rw = aug.region
    rows = y0 + _axis_indices(aug.rows, rh, height)
    cols = x0 + _axis_indices(aug.cols, rw, width)
    if aug.flip_v:
        rows = rows[::-1]
    if aug.flip_h:
        cols = cols[::-1]
    img = rgb[np.ix_(rows, cols)].transpose(2, 0, 1).astype(np.float32)     # (3, H, W)
    gains = np.asarray(aug.channel_gains, dtype=np.float32)[:, None, None]
    out = np.minimum(img * gains, np.maximum(img, np.float32(saturation)))
    out = np.clip(out, 0.0, 1.0)
    return np.ascontiguousarray(out, dtype=np.float32), np.asarray(aug.illum, dtype=np.float32)
