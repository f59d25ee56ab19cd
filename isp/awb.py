"""White-balance routes of the colour-correction step: where the illuminant (and with it the CCM) comes from.

    metadata          the DNG's as-shot illuminant and CCM (default; unchanged from the plain pipeline)
    c5                the cross-camera C5 model on the noisy raw
    s24[-VARIANT]     an S24 time-aware model (default variant iso_shutter_speed_noise) on the noisy raw plus
                      capture data (ISO, exposure time, noise / SNR statistics)
    + user preference (``--awb-pref``): the estimate mapped to the preferred illuminant (:mod:`isp.stages.awb_pref`)

What follows an AWB estimate is the official colour correction's post-processing (``PipeLine._color_correction``):

1. **CCT/tint round trip** (when the DNG has colour matrices): the illuminant's CCT and tint through the ColorMatrix
   pair; the CCT clamped to [1500, 9000] K ([2500, 8000] K with user preference); with user preference a tint
   beyond ±5 (UI units, tint / 0.0005) is clamped to ±5; the illuminant rebuilt from (CCT, tint) with G = 1.
2. **CCM**: ``XYZ_D50->sRGB · ForwardMatrix(CCT)`` when the DNG has ForwardMatrix1/2, ColorMatrix1/2 and both
   calibration illuminants; otherwise the as-shot CCM (rawpy's ``color_matrix``).

Deliberate deviations from the official code (documented in the README):

* **Tint clamp**: the official code sets any tint beyond ±5 to **+5**, flipping strong magenta casts to green.
  Here the sign is kept (``tint_clamp="symmetric"``, the default); ``tint_clamp="official"`` reproduces the defect
  and is used only by the parity harness to match the golden files.
* **One calibration illuminant / missing colour matrices**: the official code crashes (it reshapes ``None``). Here a
  single ColorMatrix is used at every CCT (DNG spec: one calibration applies to all illuminants), missing or
  untabulated CalibrationIlluminant codes fall back to D65/A (irrelevant with one matrix), and a DNG without any
  ColorMatrix skips the round trip and the user-preference mapping (reported in ``notes``) and keeps the as-shot CCM.
* **S24 ``_pref`` variants** are selectable (the official loader cannot reach them).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from isp.io import color_metadata as cm
from isp.io.capture import CaptureData, require
from isp.stages import awb as awb_stage
from isp.stages.awb_pref import build_pref, map_illuminant

__all__ = ["ROUTES", "TINT_SCALE", "parse_route", "ColorCalibration", "AwbResult", "finish_illuminant",
           "select_ccm", "AwbEstimator"]

#: official UI tint units: tint_ui = tint_uv / TINT_SCALE
TINT_SCALE = 0.0005
TINT_LIMIT_UI = 5.0
CCT_RANGE = (1500.0, 9000.0)
CCT_RANGE_PREF = (2500.0, 8000.0)
ROUTES = ("metadata", "c5", "s24") + tuple(f"s24-{v}" for v in awb_stage.S24_VARIANTS)


def parse_route(name: str) -> str:
    """``metadata`` | ``c5`` | ``s24`` | ``s24-<variant>`` -> the canonical route (``s24`` -> the default variant)."""
    name = name.strip().lower()
    if name == "s24":
        return f"s24-{awb_stage.S24_DEFAULT}"
    if name not in ROUTES:
        raise ValueError(f"--awb must be one of {', '.join(ROUTES)}; got {name!r}")
    return name


# ------------------------------------------------------------------------------------------- DNG colour tags

@dataclass
class ColorCalibration:
    """The DNG colour tags the AWB post-processing reads (absent ones are ``None``) and the as-shot CCM."""
    as_shot_ccm: np.ndarray                       # (3, 3) rawpy-style colour matrix (fallback CCM)
    color_matrix1: np.ndarray | None = None
    color_matrix2: np.ndarray | None = None
    forward_matrix1: np.ndarray | None = None
    forward_matrix2: np.ndarray | None = None
    illuminant1: int | None = None
    illuminant2: int | None = None

    @classmethod
    def from_tags(cls, tags: Mapping[str, Any], as_shot_ccm) -> "ColorCalibration":
        """From :meth:`isp.io.dng.RawImage.color_matrices` (or any dict with the DNG tag names)."""
        def mat(k):
            v = tags.get(k)
            return None if v is None or np.size(v) < 9 else np.asarray(v, np.float64).ravel()[:9].reshape(3, 3)

        def code(k):
            v = tags.get(k)
            return None if v is None or int(v) < 0 else int(v)
        return cls(np.asarray(as_shot_ccm, np.float64), mat("ColorMatrix1"), mat("ColorMatrix2"),
                   mat("ForwardMatrix1"), mat("ForwardMatrix2"), code("CalibrationIlluminant1"),
                   code("CalibrationIlluminant2"))

    def matrix_pair(self, notes: list[str] | None = None):
        """``(cm1, cm2, (illum1, illum2))`` for CCT work, or ``None`` without any ColorMatrix. A single matrix is used
        for both; missing or untabulated illuminant codes become D65 (21) / A (17)."""
        cm1, cm2 = self.color_matrix1, self.color_matrix2
        if cm1 is None and cm2 is None:
            return None
        if cm1 is None or cm2 is None:
            one = cm1 if cm1 is not None else cm2
            if notes is not None:
                notes.append("one ColorMatrix only: used at every CCT")
            return one, one, cm.DEFAULT_ILLUMINANTS
        ills = (self.illuminant1, self.illuminant2)
        if any(i not in cm.LIGHT_SOURCE_CCT for i in ills):
            if notes is not None:
                notes.append(f"calibration illuminants {ills} not tabulated: D65/A assumed")
            ills = cm.DEFAULT_ILLUMINANTS
        return cm1, cm2, ills

    @property
    def has_forward_matrices(self) -> bool:
        """All six of ForwardMatrix1/2, ColorMatrix1/2, CalibrationIlluminant1/2 (the official compute_ccm test)."""
        return all(v is not None for v in (self.forward_matrix1, self.forward_matrix2, self.color_matrix1,
                                           self.color_matrix2, self.illuminant1, self.illuminant2))


# ---------------------------------------------------------------------------------------- post-processing

def finish_illuminant(illum, calib: ColorCalibration, user_pref: bool = False, tint_clamp: str = "symmetric",
                      notes: list[str] | None = None) -> tuple[np.ndarray, float | None, float | None]:
    """CCT/tint round trip with clamps. ``illum`` (3,) any scale -> (illuminant (3,) float32 with G = 1, CCT in K,
    tint in UI units); without colour matrices the illuminant is returned unchanged (float32) with CCT/tint None."""
    if tint_clamp not in ("symmetric", "official"):
        raise ValueError(f"tint_clamp must be 'symmetric' or 'official', got {tint_clamp!r}")
    ill32 = np.asarray(illum, dtype=np.float32).ravel()[:3]
    pair = calib.matrix_pair(notes)
    if pair is None:
        if notes is not None:
            notes.append("no ColorMatrix: CCT/tint round trip skipped")
        return ill32, None, None
    cm1, cm2, ills = pair
    cct, tint = cm.cct_tint_from_raw_rgb(ill32, cm1, cm2, ills)
    if cct is None:
        if notes is not None:
            notes.append("no CCT for this illuminant: round trip skipped")
        return ill32, None, None
    lo, hi = CCT_RANGE_PREF if user_pref else CCT_RANGE
    cct = float(min(max(cct, lo), hi))
    if user_pref and abs(tint / TINT_SCALE) > TINT_LIMIT_UI:
        sign = 1.0 if tint_clamp == "official" else float(np.sign(tint))
        tint = sign * TINT_LIMIT_UI * TINT_SCALE
    out = cm.raw_rgb_from_cct_tint(cct, tint, cm1, cm2, ills).astype(np.float32)
    return out, cct, float(tint / TINT_SCALE)


def select_ccm(illum, calib: ColorCalibration, computed: bool = True) -> np.ndarray:
    """The CCM applied after AWB: forward-matrix CCM at the illuminant's CCT when all six tags exist, else the
    as-shot CCM. float32 (3, 3)."""
    if computed and calib.has_forward_matrices:
        ill = np.asarray(illum, dtype=np.float32).ravel()[:3]
        ccm = cm.ccm_from_forward_matrices(calib.forward_matrix1, calib.forward_matrix2, ill, calib.color_matrix1,
                                           calib.color_matrix2, (calib.illuminant1, calib.illuminant2))
        return ccm.astype(np.float32)
    return np.asarray(calib.as_shot_ccm, dtype=np.float32)


# --------------------------------------------------------------------------------------------- estimator

@dataclass
class AwbResult:
    route: str
    illum: np.ndarray                  # (3,) float32 illuminant applied (G = 1 after the round trip)
    ccm: np.ndarray                    # (3, 3) float32 CCM applied
    cct: float | None = None           # K
    tint: float | None = None          # UI units
    estimate: np.ndarray | None = None      # (3,) model output, unit norm
    preferred: np.ndarray | None = None     # (3,) after the user-preference mapping (G = 1)
    capture: dict = field(default_factory=dict)   # capture features used (names -> values) and their sources
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        ill = ", ".join(f"{v:.4f}" for v in self.illum)
        parts = [f"AWB {self.route}: illuminant ({ill})"]
        if self.cct is not None:
            parts.append(f"CCT {self.cct:.0f} K, tint {self.tint:+.2f}")
        if self.notes:
            parts.append("; ".join(self.notes))
        return "; ".join(parts)


class AwbEstimator:
    """One AWB route with its models. ``estimate(raw, denoised, calib, capture)`` -> :class:`AwbResult`.

    ``raw``: the noisy demosaiced raw ``(1, 3, H, W)`` (what the AWB models look at); ``denoised``: the denoiser
    output (only the S24 noise features use it); ``capture``: ISO / exposure time (S24 only)."""

    def __init__(self, weights: str | Path, route: str = "c5", user_pref: bool = False,
                 tint_clamp: str = "symmetric") -> None:
        self.route = parse_route(route)
        if self.route == "metadata":
            raise ValueError("the metadata route needs no estimator (use the DNG's illuminant and CCM)")
        self.user_pref = user_pref
        self.tint_clamp = tint_clamp
        self.model = awb_stage.build_awb(Path(weights), self.route)
        self.pref = build_pref(Path(weights)) if user_pref else None

    @property
    def capture_needs(self) -> tuple[str, ...]:
        return tuple(f for f in self.model.capture_data if f in ("iso", "shutter_speed"))

    def check_capture(self, capture: CaptureData, source: str | Path) -> CaptureData:
        return require(capture, self.capture_needs, source, self.route)

    @torch.inference_mode()
    def illuminant(self, raw: torch.Tensor, denoised: torch.Tensor | None = None,
                   capture: CaptureData | None = None) -> tuple[torch.Tensor, dict]:
        """Model estimate ``(1, 3)`` unit norm and the capture features used (S24)."""
        if raw.ndim != 4 or raw.shape[:2] != (1, 3):
            raise ValueError(f"AWB takes one (1, 3, H, W) raw image, got {tuple(raw.shape)}")
        raw = raw.float()
        hist = self.model.histogram(awb_stage.resize_for_awb(raw))
        if self.model.is_c5:
            return self.model(hist), {}
        feats = self.model.capture_data
        if capture is None or ("iso" in feats and capture.iso is None) or \
                ("shutter_speed" in feats and capture.exposure_time is None):
            raise ValueError(f"--awb {self.route} needs capture data (ISO and exposure time)")
        noise = snr = None
        if "noise_stats" in feats:
            if denoised is None:
                raise ValueError(f"--awb {self.route} needs the denoised raw for its noise features")
            noise = awb_stage.noise_statistics(raw, denoised.float())
        if "snr_stats" in feats:
            snr = awb_stage.snr_statistics(raw)
        iso = torch.tensor([capture.iso], dtype=torch.float64)
        exp = torch.tensor([capture.exposure_time], dtype=torch.float64)
        vec = self.model.capture_vector(iso, exp, noise, snr)
        used = {"iso": capture.iso, "exposure_time": capture.exposure_time, "iso_source": capture.iso_source,
                "exposure_source": capture.exposure_source, "features": list(feats),
                "scaled": vec[0].tolist()}
        return self.model(hist, vec), used

    def estimate(self, raw: torch.Tensor, denoised: torch.Tensor | None, calib: ColorCalibration,
                 capture: CaptureData | None = None) -> AwbResult:
        est, used = self.illuminant(raw, denoised, capture)
        est_np = est[0].double().numpy().astype(np.float32)
        notes: list[str] = []
        illum = est_np
        preferred = None
        if self.pref is not None:
            pair = calib.matrix_pair(notes)
            if pair is None:
                notes.append("no ColorMatrix: user preference not applied")
            else:
                preferred = map_illuminant(self.pref, est_np, *pair)["out_raw"].astype(np.float32)
                illum = preferred
        final, cct, tint = finish_illuminant(illum, calib, self.pref is not None, self.tint_clamp, notes)
        route = self.route + ("+pref" if self.pref is not None else "")
        return AwbResult(route, final, select_ccm(final, calib), cct, tint, est_np, preferred, used,
                         list(dict.fromkeys(notes)))
