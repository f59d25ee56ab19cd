"""Camera colour from DNG metadata: the white-balance illuminant and the raw-to-linear-sRGB matrix (CCM).

Paper Eq. (2): ``I_LsRGB = M_CCM (D_WB I_raw)``, with ``D_WB = diag(illum_G / illum)`` and ``M_CCM`` the CCM. Two
constructions of ``M_CCM`` exist in the official implementation and both are here:

* :func:`ccm_from_color_matrix` — the **as-shot** CCM the official demo feeds the pipeline for a DNG (it takes
  LibRaw's ``rgb_cam``, exposed by rawpy as ``color_matrix``). LibRaw's recipe: pick one ColorMatrix (the D65 one,
  else another daylight-type one, else the last one read; :func:`select_color_matrix`), fold in CameraCalibration
  and AnalogBalance, form ``cam_from_srgb = CM @ SRGB_TO_XYZ_D65``, scale each row to sum to 1 (so that camera
  white (1, 1, 1) after white balance maps to sRGB white), and invert. Rows of the result sum to 1 exactly.
  This is what the golden files' ``ccm`` holds (to ~1e-7).
* :func:`ccm_from_forward_matrices` — the **illuminant-adaptive** CCM the official pipeline computes when it
  re-estimates the illuminant (AWB model, user CCT/tint): the scene CCT is found from the illuminant through the
  ColorMatrix pair (Adobe DNG SDK convention, Robertson's method), the ForwardMatrix pair is interpolated in inverse
  CCT, and ``M_CCM = XYZ_D50_TO_SRGB @ FM``. Needs ForwardMatrix1/2, ColorMatrix1/2 and both calibration
  illuminants.

The illuminant colour ``illum`` is the DNG's AsShotNeutral (camera RGB of a neutral under the scene light) scaled to
unit L2 norm (:func:`illuminant_from_neutral`). For DNGs that give AsShotWhiteXY instead, the neutral is computed
through the ColorMatrix (:func:`neutral_from_white_xy`).

CCT/tint helpers (:func:`cct_tint_from_raw_rgb`, :func:`raw_rgb_from_cct_tint`) follow the official maths: tint is an
offset in CIE 1960 (u, v) along the normal of the Planckian locus (the official UI multiplies its slider by 5e-4).

All functions are numpy, float64 inside; matrices are (3, 3) with the DNG meaning ``xyz -> camera`` for
ColorMatrix, ``white-balanced camera -> XYZ(D50)`` for ForwardMatrix.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = [
    "SRGB_TO_XYZ_D65", "XYZ_D50_TO_SRGB", "LIGHT_SOURCE_CCT", "DAYLIGHT_LIGHT_SOURCES",
    "illuminant_from_neutral", "neutral_from_white_xy", "select_color_matrix", "ccm_from_color_matrix",
    "xyz_to_cct", "interpolate_by_cct", "cct_from_raw_rgb", "ccm_from_forward_matrices",
    "cct_tint_from_raw_rgb", "raw_rgb_from_cct_tint", "wb_gains",
]

#: linear sRGB -> XYZ (D65), IEC 61966-2-1 (the values LibRaw uses in ``cam_xyz_coeff``)
SRGB_TO_XYZ_D65 = np.array([[0.4124564, 0.3575761, 0.1804375],
                            [0.2126729, 0.7151522, 0.0721750],
                            [0.0193339, 0.1191920, 0.9503041]])

#: XYZ (D50) -> linear sRGB with Bradford adaptation (Lindbloom), the matrix the official compute_ccm uses
XYZ_D50_TO_SRGB = np.array([[3.1338561, -1.6168667, -0.4906146],
                            [-0.9787684, 1.9161415, 0.0334540],
                            [0.0719453, -0.2289914, 1.4052427]])

#: EXIF LightSource code (DNG CalibrationIlluminant) -> correlated colour temperature in kelvin
LIGHT_SOURCE_CCT = {
    12: 6430.0,  # daylight fluorescent
    13: 5000.0,  # day white fluorescent
    14: 4230.0,  # cool white fluorescent
    15: 3450.0,  # white fluorescent
    16: 2940.0,  # warm white fluorescent
    17: 2856.0,  # standard light A
    18: 4874.0,  # standard light B
    19: 6774.0,  # standard light C
    20: 5503.0,  # D55
    21: 6504.0,  # D65
    22: 7504.0,  # D75
    23: 5003.0,  # D50
}
#: LightSource codes LibRaw treats as daylight when no D65 matrix exists: daylight, flash, D55, D75, D50
DAYLIGHT_LIGHT_SOURCES = (1, 4, 20, 22, 23)
_D65 = 21
#: default calibration illuminants when a DNG omits them (the official code's defaults)
DEFAULT_ILLUMINANTS = (21, 17)

# Robertson (1968) isotemperature lines, Wyszecki & Stiles 2nd ed. p. 228: reciprocal temperature (1/K) and the
# (u, v, slope) of the line crossing the Planckian locus there. The first entry stands for infinite temperature.
_ROBERTSON_RT = np.array([1e-300, 10e-6, 20e-6, 30e-6, 40e-6, 50e-6, 60e-6, 70e-6, 80e-6, 90e-6, 100e-6, 125e-6,
                          150e-6, 175e-6, 200e-6, 225e-6, 250e-6, 275e-6, 300e-6, 325e-6, 350e-6, 375e-6, 400e-6,
                          425e-6, 450e-6, 475e-6, 500e-6, 525e-6, 550e-6, 575e-6, 600e-6])
_ROBERTSON_UVT = np.array([
    [0.18006, 0.26352, -0.24341], [0.18066, 0.26589, -0.25479], [0.18133, 0.26846, -0.26876],
    [0.18208, 0.27119, -0.28539], [0.18293, 0.27407, -0.30470], [0.18388, 0.27709, -0.32675],
    [0.18494, 0.28021, -0.35156], [0.18611, 0.28342, -0.37915], [0.18740, 0.28668, -0.40955],
    [0.18880, 0.28997, -0.44278], [0.19032, 0.29326, -0.47888], [0.19462, 0.30141, -0.58204],
    [0.19962, 0.30921, -0.70471], [0.20525, 0.31647, -0.84901], [0.21142, 0.32312, -1.0182],
    [0.21807, 0.32909, -1.2168], [0.22511, 0.33439, -1.4512], [0.23247, 0.33904, -1.7298],
    [0.24010, 0.34308, -2.0637], [0.24792, 0.34655, -2.4681], [0.25591, 0.34951, -2.9641],
    [0.26400, 0.35200, -3.5814], [0.27218, 0.35407, -4.3633], [0.28039, 0.35577, -5.3762],
    [0.28863, 0.35714, -6.7262], [0.29685, 0.35823, -8.5955], [0.30505, 0.35907, -11.324],
    [0.31320, 0.35968, -15.628], [0.32129, 0.36011, -23.325], [0.32931, 0.36038, -40.770],
    [0.33724, 0.36051, -116.45]])
_EPS = 1e-8


def _mat3(m, name: str = "matrix") -> np.ndarray:
    a = np.asarray(m, dtype=np.float64)
    if a.size != 9:
        raise ValueError(f"{name} must have 9 entries (3x3), got shape {a.shape}")
    return a.reshape(3, 3)


def _vec3(v, name: str = "vector") -> np.ndarray:
    a = np.asarray(v, dtype=np.float64).ravel()
    if a.size < 3:
        raise ValueError(f"{name} must have 3 entries, got {a.size}")
    return a[:3]


# ----------------------------------------------------------------------------------------------------------------
# illuminant / white balance


def illuminant_from_neutral(neutral: Sequence[float]) -> np.ndarray:
    """(3,) camera-RGB neutral (AsShotNeutral) -> (3,) unit-L2-norm illuminant colour, float64.

    Raises ``ValueError`` for a neutral with a non-positive or non-finite entry.
    """
    n = _vec3(neutral, "AsShotNeutral")
    if not np.all(np.isfinite(n)) or np.any(n <= 0):
        raise ValueError(f"AsShotNeutral must be finite and positive, got {n.tolist()}")
    return n / np.linalg.norm(n)


def wb_gains(illum: Sequence[float]) -> np.ndarray:
    """(3,) white-balance gains ``illum_G / illum`` (green gain 1), the diagonal of ``D_WB`` in Eq. (2)."""
    i = _vec3(illum, "illum")
    return i[1] / np.maximum(i, _EPS)


def _xy_to_xyz(xy: Sequence[float]) -> np.ndarray:
    x, y = float(xy[0]), float(xy[1])
    if y <= 0:
        raise ValueError(f"white point y must be positive, got {xy}")
    return np.array([x / y, 1.0, (1.0 - x - y) / y])


def neutral_from_white_xy(white_xy: Sequence[float], color_matrix) -> np.ndarray:
    """Camera neutral for a scene white given as CIE xy (DNG AsShotWhiteXY), normalised to green = 1."""
    cam = _mat3(color_matrix, "ColorMatrix") @ _xy_to_xyz(white_xy)
    if cam[1] <= 0:
        raise ValueError(f"ColorMatrix maps white point {list(white_xy)} to a non-positive green {cam.tolist()}")
    return cam / cam[1]


# ----------------------------------------------------------------------------------------------------------------
# as-shot CCM (LibRaw's rgb_cam; the official demo's CCM for DNG input)


def select_color_matrix(color_matrices: Sequence, illuminants: Sequence[int | None]) -> int:
    """Index of the ColorMatrix LibRaw builds its fixed CCM from.

    ``color_matrices``: the ColorMatrix1/2 present (``None`` for absent); ``illuminants``: their
    CalibrationIlluminant codes (``None`` for absent). With both matrices and both illuminants: the D65 one, else a
    daylight-type one (daylight, flash, D55, D75, D50); otherwise (or if none of those) the last matrix present.
    """
    present = [i for i, m in enumerate(color_matrices) if m is not None]
    if not present:
        raise ValueError("no ColorMatrix present")
    if len(present) == 2 and all(illuminants[i] for i in present):
        for i in present:
            if illuminants[i] == _D65:
                return i
        for i in present:
            if illuminants[i] in DAYLIGHT_LIGHT_SOURCES:
                return i
    return present[-1]


def ccm_from_color_matrix(color_matrix, calibration=None, analog_balance=None) -> np.ndarray:
    """Fixed raw-to-linear-sRGB CCM from one DNG ColorMatrix (LibRaw's construction, see module docstring).

    Args:
        color_matrix: (3, 3) XYZ -> camera (DNG ColorMatrixN).
        calibration: optional (3, 3) CameraCalibrationN, applied as ``CC @ CM``.
        analog_balance: optional (3,) AnalogBalance, applied as ``diag(AB) @ CC @ CM``.

    Returns:
        (3, 3) float64 CCM for white-balanced camera RGB (column vectors: ``srgb = ccm @ rgb``); rows sum to 1.
    """
    cam_from_xyz = _mat3(color_matrix, "ColorMatrix")
    if calibration is not None:
        cam_from_xyz = _mat3(calibration, "CameraCalibration") @ cam_from_xyz
    if analog_balance is not None:
        cam_from_xyz = np.diag(_vec3(analog_balance, "AnalogBalance")) @ cam_from_xyz
    cam_from_srgb = cam_from_xyz @ SRGB_TO_XYZ_D65
    row_sums = cam_from_srgb.sum(axis=1, keepdims=True)
    if np.any(np.abs(row_sums) < 1e-12):
        raise ValueError("ColorMatrix maps sRGB white to zero in some camera channel; cannot build a CCM")
    cam_from_srgb = cam_from_srgb / row_sums
    try:
        return np.linalg.inv(cam_from_srgb)
    except np.linalg.LinAlgError as exc:
        raise ValueError(f"ColorMatrix is singular; cannot build a CCM ({exc})") from exc


# ----------------------------------------------------------------------------------------------------------------
# CCT and illuminant-adaptive CCM (official compute_ccm and the CCT/tint helpers)


def _uv_from_xyz(xyz: np.ndarray) -> tuple[float, float]:
    den = xyz[0] + 15.0 * xyz[1] + 3.0 * xyz[2]
    return 4.0 * xyz[0] / den, 6.0 * xyz[1] / den


def _robertson_bracket(u: float, v: float) -> tuple[int, float, float]:
    """Index i of the first isotemperature line past (u, v) and the signed distances to lines i-1 and i.

    When (u, v) lies beyond the table the last segment (29, 30) is used (extrapolation), as the official code does.
    """
    d_prev = 0.0
    d = 0.0
    i = 0
    for i in range(len(_ROBERTSON_RT)):
        ut, vt, t = _ROBERTSON_UVT[i]
        d = (v - vt) - t * (u - ut)
        if i > 0 and ((d < 0.0) != (d_prev < 0.0)):
            break
        d_prev = d
    return i, d_prev, d


def xyz_to_cct(xyz: Sequence[float]) -> float:
    """Correlated colour temperature (K) of an XYZ colour by Robertson's method; -1 for (near-)black input."""
    xyz = np.asarray(xyz, dtype=np.float64)
    if np.all(xyz < 1e-20):
        return -1.0
    u, v = _uv_from_xyz(xyz)
    i, d_prev, d = _robertson_bracket(u, v)
    d = d / math.sqrt(1.0 + _ROBERTSON_UVT[i, 2] ** 2)
    d_prev = d_prev / math.sqrt(1.0 + _ROBERTSON_UVT[i - 1, 2] ** 2)
    p = d_prev / (d_prev - d)
    return 1.0 / ((_ROBERTSON_RT[i] - _ROBERTSON_RT[i - 1]) * p + _ROBERTSON_RT[i - 1])


def _cct_weight(cct: float, illuminants: tuple[int, int]) -> float:
    """Weight of matrix 1 for linear interpolation in inverse CCT between the two calibration illuminants."""
    try:
        inv1, inv2 = 1.0 / LIGHT_SOURCE_CCT[illuminants[0]], 1.0 / LIGHT_SOURCE_CCT[illuminants[1]]
    except KeyError as exc:
        raise ValueError(f"calibration illuminant {exc.args[0]} has no tabulated CCT "
                         f"(known EXIF LightSource codes: {sorted(LIGHT_SOURCE_CCT)})") from None
    if inv1 == inv2:
        return 1.0
    return (1.0 / cct - inv2) / (inv1 - inv2)


def interpolate_by_cct(m1, m2, cct: float, illuminants: tuple[int, int] = DEFAULT_ILLUMINANTS,
                       clamp: bool = True) -> np.ndarray:
    """Interpolate two (3, 3) matrices calibrated under ``illuminants`` linearly in inverse CCT.

    ``clamp`` limits ``cct`` to the range spanned by the two illuminants (no extrapolation); the official CCT search
    uses the unclamped form internally, the CCM construction the clamped one.
    """
    c1, c2 = LIGHT_SOURCE_CCT.get(illuminants[0]), LIGHT_SOURCE_CCT.get(illuminants[1])
    if clamp and c1 is not None and c2 is not None:
        cct = float(np.clip(cct, min(c1, c2), max(c1, c2)))
    g = _cct_weight(cct, illuminants)
    return g * _mat3(m1) + (1.0 - g) * _mat3(m2)


def _raw_to_xyz(raw_rgb: np.ndarray, cct: float, cm1, cm2, illuminants) -> np.ndarray:
    xyz_to_cam = interpolate_by_cct(cm1, cm2, cct, illuminants, clamp=False)
    return np.linalg.solve(xyz_to_cam, raw_rgb)


def cct_from_raw_rgb(raw_rgb: Sequence[float], cm1, cm2, illuminants: tuple[int, int] = DEFAULT_ILLUMINANTS,
                     tol: float = 1e-4, max_iter: int = 99) -> float:
    """CCT (K) of a camera-RGB illuminant by fixed-point iteration through the ColorMatrix pair (DNG SDK style).

    Start from XYZ (0.3, 0.3, 0.3); repeat: CCT of the current XYZ -> matrix for that CCT -> XYZ of the
    illuminant; stop when XYZ moves by less than ``tol``.
    """
    raw = _vec3(raw_rgb, "raw_rgb")
    xyz = np.array([0.3, 0.3, 0.3])
    cct = 6500.0
    for _ in range(max_iter):
        cct = xyz_to_cct(xyz)
        new = _raw_to_xyz(raw, cct, cm1, cm2, illuminants)
        moved = float(np.linalg.norm(new - xyz))
        xyz = new
        if moved <= tol:
            break
    return cct


def ccm_from_forward_matrices(forward_matrix_1, forward_matrix_2, illuminant: Sequence[float], color_matrix_1,
                              color_matrix_2, illuminants: tuple[int, int] = DEFAULT_ILLUMINANTS) -> np.ndarray:
    """Illuminant-adaptive CCM: ``XYZ_D50_TO_SRGB @ FM(cct)`` with FM interpolated at the illuminant's CCT.

    Args:
        forward_matrix_1, forward_matrix_2: (3, 3) DNG ForwardMatrix1/2 (white-balanced camera -> XYZ D50).
        illuminant: (3,) camera-RGB illuminant colour (any scale).
        color_matrix_1, color_matrix_2: (3, 3) DNG ColorMatrix1/2, used to find the CCT.
        illuminants: CalibrationIlluminant1/2 codes.

    Returns:
        (3, 3) float64 CCM. Rows sum to ~1 when the forward matrices map (1, 1, 1) to D50 (as the DNG spec asks).
    """
    ill = _vec3(illuminant, "illuminant")
    ill = ill / ill[1]
    cct = cct_from_raw_rgb(ill, color_matrix_1, color_matrix_2, illuminants)
    fm = interpolate_by_cct(forward_matrix_1, forward_matrix_2, cct, illuminants, clamp=True)
    return XYZ_D50_TO_SRGB @ fm


def _locus_normal(i: int, eps: float) -> np.ndarray:
    """Unit normal of the locus segment (i-1, i) in (u, v); ``eps`` guards the norm (1e-12 or 1e-8, as the
    official code uses in the two directions of the CCT/tint conversion)."""
    du = _ROBERTSON_UVT[i, 0] - _ROBERTSON_UVT[i - 1, 0]
    dv = _ROBERTSON_UVT[i, 1] - _ROBERTSON_UVT[i - 1, 1]
    return np.array([-dv, du]) / (math.hypot(du, dv) + eps)


def cct_tint_from_raw_rgb(raw_rgb: Sequence[float], cm1, cm2,
                          illuminants: tuple[int, int] = DEFAULT_ILLUMINANTS) -> tuple[float | None, float | None]:
    """(CCT in K, tint in uv units) of a camera-RGB illuminant; ``(None, None)`` if no CCT can be found.

    Tint is the signed distance in CIE 1960 (u, v) from the Planckian locus, along the locus normal.
    """
    raw = _vec3(raw_rgb, "raw_rgb")
    raw = raw / (raw[1] + 1e-12)
    cct = cct_from_raw_rgb(raw, cm1, cm2, illuminants)
    if cct < 0:
        return None, None
    xyz = _raw_to_xyz(raw, cct, cm1, cm2, illuminants)
    den = xyz[0] + 15.0 * xyz[1] + 3.0 * xyz[2] + 1e-12
    uv = np.array([4.0 * xyz[0] / den, 6.0 * xyz[1] / den])
    i, d_prev, d = _robertson_bracket(float(uv[0]), float(uv[1]))
    d = d / math.sqrt(1.0 + _ROBERTSON_UVT[i, 2] ** 2)
    d_prev = d_prev / math.sqrt(1.0 + _ROBERTSON_UVT[i - 1, 2] ** 2)
    p = d_prev / (d_prev - d)
    on_locus = (1.0 - p) * _ROBERTSON_UVT[i - 1, :2] + p * _ROBERTSON_UVT[i, :2]
    tint = float(np.dot(uv - on_locus, _locus_normal(i, 1e-12)))
    return float(cct), tint


def raw_rgb_from_cct_tint(cct: float, tint: float, cm1, cm2,
                          illuminants: tuple[int, int] = DEFAULT_ILLUMINANTS) -> np.ndarray:
    """(3,) camera-RGB illuminant (green = 1) for a CCT (K) and a tint (uv units); inverse of
    :func:`cct_tint_from_raw_rgb` up to the clamping of the CCT to the calibration range for the matrix."""
    cct = float(cct)
    inv = 1.0 / cct
    xyz_to_cam = interpolate_by_cct(cm1, cm2, cct, illuminants, clamp=True)
    i = len(_ROBERTSON_RT) - 1
    for k in range(1, len(_ROBERTSON_RT)):
        if _ROBERTSON_RT[k] >= inv:
            i = k
            break
    p = (inv - _ROBERTSON_RT[i - 1]) / (_ROBERTSON_RT[i] - _ROBERTSON_RT[i - 1])
    u, v = (1.0 - p) * _ROBERTSON_UVT[i - 1, :2] + p * _ROBERTSON_UVT[i, :2] + tint * _locus_normal(i, _EPS)
    xyz = np.array([1.5 * u / v, 1.0, (2.0 - 0.5 * u) / v - 5.0])
    raw = xyz_to_cam @ xyz
    return raw / (raw[1] + _EPS)
