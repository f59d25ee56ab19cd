"""Golden parity of the AWB files ``awb_<dng>.npz`` (format: ``shared/golden_ext/README.md``).

Registered with :mod:`isp.parity` for file names starting with ``awb_``. Each stage runs on its golden input:

* ``awb_img`` (resize of ``raw``), ``c5_hist`` and ``s24_hist`` from ``raw``; ``noise_stats`` from ``raw`` and the
  stored (float16) ``denoised_raw``; ``snr_stats`` from ``raw``;
* the C5 network on ``c5_hist`` (``c5_illum``, ``c5_heatmap``, ``c5_filter``, ``c5_bias``);
* the user-preference mapping: ``up_in_xyz`` from ``up_in_raw``, the network on ``up_in_xyz`` (``up_out_xyz``),
  the whole mapping on ``c5_illum`` (``c5_illum_userpref``);
* per S24 variant: ``<v>_capture_raw`` from ``iso``/``shutter_speed``/``noise_stats``/``snr_stats``, ``<v>_capture``
  from ``<v>_capture_raw``, the network on ``s24_hist`` + ``<v>_capture`` (``<v>_illum``);

and every route end to end from ``raw`` (our S24-lite denoiser for the noise features, the golden metadata
``md_*`` and capture data): ``pipe_<route>_illum``, ``_ccm``, ``_cct``, ``_tint``. The ``c5_pref`` route is run
with the official tint clamp (``tint_clamp="official"``) to reproduce the golden files; the toolkit's default keeps
the sign (:mod:`isp.awb`). Routes where the official code raised (``pipe_errors``) are reported as skipped, with
the toolkit's own result.

Capture data: the golden files inject ISO/shutter for DNGs that lack them (``iso_injected``); this harness uses the
stored values, which is the only place the toolkit uses that convention.

Bounds: PSNR >= 60 dB over [0, 1] for images and histograms, over the peak magnitude for vectors and maps
(``kind: param``); illuminants by angular error <= 0.01 deg; CCT within 0.5 K; tint within 0.01 UI units.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from isp.awb import AwbEstimator, ColorCalibration
from isp.io.capture import CaptureData
from isp.metrics import psnr
from isp.stages import awb as A
from isp.stages.awb_pref import build_pref, map_illuminant, raw_to_xyz_on_illum

__all__ = ["MIN_PSNR", "MAX_ANGLE_DEG", "MAX_CCT_K", "MAX_TINT", "angular_error_deg", "awb_rows", "check_awb"]

MIN_PSNR = 60.0
MAX_ANGLE_DEG = 0.01
MAX_CCT_K = 0.5
MAX_TINT = 0.01
ROUTE_KEYS = ("c5", "c5_pref") + tuple(f"awb_{v}" for v in A.S24_VARIANTS)


def angular_error_deg(a, b) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    c = float(np.clip(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)), -1.0, 1.0))
    return math.degrees(math.acos(c))


def _t(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def _psnr_row(stage: str, name: str, got, ref, kind: str = "image") -> dict:
    got, ref = _t(got).reshape(-1), _t(ref).reshape(-1)
    if got.numel() != ref.numel():
        return {"stage": stage, "output": name, "psnr": None, "pass": False,
                "error": f"size {got.numel()} != golden {ref.numel()}"}
    rng = max(float(ref.abs().max()), 1e-12) if kind == "param" else 1.0
    db = psnr(got, ref, data_range=rng)
    return {"stage": stage, "output": name, "psnr": db, "max_abs": float((got - ref).abs().max()), "kind": kind,
            "pass": db >= MIN_PSNR}


def _bound_row(stage: str, name: str, metric: str, value: float, limit: float, **extra) -> dict:
    return {"stage": stage, "output": name, "psnr": None, "metric": {"name": metric, "value": value, "limit": limit},
            "pass": bool(value <= limit), **extra}


def _angle_row(stage: str, name: str, got, ref) -> dict:
    return _bound_row(stage, name, "angle_deg", angular_error_deg(got, ref), MAX_ANGLE_DEG)


class _Models:
    def __init__(self, weights: Path) -> None:
        self.weights = weights
        self._awb: dict[str, A.AutoWhiteBalance] = {}
        self._est: dict[tuple, AwbEstimator] = {}
        self._pref = None
        self._denoiser = None

    def awb(self, model: str) -> A.AutoWhiteBalance:
        if model not in self._awb:
            self._awb[model] = A.build_awb(self.weights, model)
        return self._awb[model]

    def estimator(self, route: str, pref: bool) -> AwbEstimator:
        key = (route, pref)
        if key not in self._est:
            self._est[key] = AwbEstimator(self.weights, route, user_pref=pref, tint_clamp="official")
        return self._est[key]

    def pref(self):
        if self._pref is None:
            self._pref = build_pref(self.weights)
        return self._pref

    def denoiser(self):
        if self._denoiser is None:
            from isp.registry import BuildConfig, build_stage
            self._denoiser = build_stage("denoise", BuildConfig(self.weights, denoiser="s24_lite"))
        return self._denoiser


def _calibration(z) -> ColorCalibration:
    tags = {}
    for ours, key in (("ColorMatrix1", "md_color_matrix1"), ("ColorMatrix2", "md_color_matrix2"),
                      ("ForwardMatrix1", "md_forward_matrix1"), ("ForwardMatrix2", "md_forward_matrix2"),
                      ("CalibrationIlluminant1", "md_calibration_illuminant1"),
                      ("CalibrationIlluminant2", "md_calibration_illuminant2")):
        if key in z:
            tags[ours] = z[key]
    return ColorCalibration.from_tags(tags, z["dng_ccm"])


@torch.inference_mode()
def _stage_rows(z, models: _Models) -> list[dict]:
    rows: list[dict] = []
    raw = torch.from_numpy(np.asarray(z["raw"], np.float32))
    img = A.resize_for_awb(raw)
    rows.append(_psnr_row("awb_resize", "awb_img", img[0].permute(1, 2, 0), z["awb_img"].astype(np.float32)))
    c5 = models.awb("c5")
    rows.append(_psnr_row("awb_hist", "c5_hist", c5.histogram(img), z["c5_hist"]))
    illum, heat, filt, bias = c5.net(torch.from_numpy(z["c5_hist"]))
    rows.append(_angle_row("awb_c5", "c5_illum", illum[0], z["c5_illum"]))
    rows.append(_psnr_row("awb_c5", "c5_heatmap", heat, z["c5_heatmap"], "param"))
    rows.append(_psnr_row("awb_c5", "c5_filter", filt, z["c5_filter"], "param"))
    rows.append(_psnr_row("awb_c5", "c5_bias", bias, z["c5_bias"], "param"))
    if "up_in_raw" in z:
        calib = _calibration(z)
        pair = calib.matrix_pair()
        ill = np.asarray(z["c5_illum"], np.float32)
        rows.append(_psnr_row("awb_pref", "up_in_raw", ill / ill[1], z["up_in_raw"], "param"))
        rows.append(_psnr_row("awb_pref", "up_in_xyz", raw_to_xyz_on_illum(z["up_in_raw"], *pair), z["up_in_xyz"],
                              "param"))
        out = models.pref()(torch.as_tensor(np.asarray(z["up_in_xyz"], np.float32))[None])[0]
        rows.append(_psnr_row("awb_pref", "up_out_xyz", out, z["up_out_xyz"], "param"))
        mapped = map_illuminant(models.pref(), z["c5_illum"], *pair)["out_raw"]
        rows.append(_angle_row("awb_pref", "c5_illum_userpref", mapped, z["c5_illum_userpref"]))
    den16 = torch.from_numpy(np.asarray(z["denoised_raw"], np.float32))
    rows.append(_psnr_row("awb_features", "noise_stats", A.noise_statistics(raw, den16), z["noise_stats"], "param"))
    rows.append(_psnr_row("awb_features", "snr_stats", A.snr_statistics(raw), z["snr_stats"], "param"))
    first = models.awb(f"s24-{A.S24_VARIANTS[0]}")
    rows.append(_psnr_row("awb_hist", "s24_hist", first.histogram(img), z["s24_hist"]))
    iso = torch.tensor([float(z["iso"])], dtype=torch.float64)
    shutter = torch.tensor([float(z["shutter_speed"])], dtype=torch.float64)
    noise = torch.from_numpy(np.asarray(z["noise_stats"], np.float64))[None]
    snr = torch.from_numpy(np.asarray(z["snr_stats"], np.float64))[None]
    for v in A.S24_VARIANTS:
        m = models.awb(f"s24-{v}")
        cap_raw = A.capture_features(m.config.capture_data, iso, shutter, noise, snr)
        rows.append(_psnr_row("awb_s24", f"awb_{v}_capture_raw", cap_raw, z[f"awb_{v}_capture_raw"], "param"))
        cap = A.min_max_normalise(torch.from_numpy(np.asarray(z[f"awb_{v}_capture_raw"]))[None], m.config.norm_min,
                                  m.config.norm_max)
        rows.append(_psnr_row("awb_s24", f"awb_{v}_capture", cap, z[f"awb_{v}_capture"], "param"))
        out = m(torch.from_numpy(z["s24_hist"]), torch.from_numpy(np.asarray(z[f"awb_{v}_capture"]))[None])
        rows.append(_angle_row("awb_s24", f"awb_{v}_illum", out[0], z[f"awb_{v}_illum"]))
    return rows


@torch.inference_mode()
def _route_rows(z, models: _Models) -> list[dict]:
    raw = torch.from_numpy(np.asarray(z["raw"], np.float32))
    denoised = models.denoiser()(raw)
    calib = _calibration(z)
    capture = CaptureData(float(z["iso"]), float(z["shutter_speed"]), "golden", "golden")
    errors = json.loads(str(z["pipe_errors"])) if "pipe_errors" in z else {}
    rows: list[dict] = []
    for key in ROUTE_KEYS:
        route, pref = ("c5", key == "c5_pref") if key.startswith("c5") else (f"s24-{key[4:]}", False)
        stage = "awb route"
        try:
            res = models.estimator(route, pref).estimate(raw, denoised, calib, capture)
        except Exception as exc:
            rows.append({"stage": stage, "output": f"pipe_{key}", "psnr": None, "pass": False,
                         "error": f"{type(exc).__name__}: {exc}"})
            continue
        if f"pipe_{key}" in errors:
            ill = ", ".join(f"{v:.4f}" for v in res.illum)
            rows.append({"stage": stage, "output": f"pipe_{key}", "psnr": None, "pass": None,
                         "skipped": f"official code raised ({errors[f'pipe_{key}']}); toolkit: illuminant ({ill}), "
                                    f"CCT {res.cct if res.cct is None else round(res.cct)}; {'; '.join(res.notes)}"})
            continue
        p = f"pipe_{key}"
        rows.append({**_angle_row(stage, f"{p}_illum", res.illum, z[f"{p}_illum"])})
        rows.append(_psnr_row(stage, f"{p}_ccm", res.ccm, z[f"{p}_ccm"], "param"))
        cct_err = abs(res.cct - float(z[f"{p}_cct"])) if res.cct is not None else float("inf")
        tint_err = abs(res.tint - float(z[f"{p}_tint"])) if res.tint is not None else float("inf")
        rows.append(_bound_row(stage, f"{p}_cct", "abs_K", cct_err, MAX_CCT_K))
        rows.append(_bound_row(stage, f"{p}_tint", "abs_ui", tint_err, MAX_TINT))
    return rows


_MODELS: dict[Path, _Models] = {}


def awb_rows(path: Path, weights: Path, e2e: bool = True) -> list[dict]:
    """Parity rows of one ``awb_*.npz`` file (each with ``pass`` set; ``None`` = informational/skipped)."""
    models = _MODELS.setdefault(Path(weights), _Models(Path(weights)))
    name = Path(path).stem
    try:
        with np.load(path, allow_pickle=False) as f:
            z = {k: f[k] for k in f.files}
    except Exception as exc:
        return [{"file": name, "stage": "awb", "output": "-", "psnr": None, "pass": False,
                 "error": f"{path}: not a readable golden file ({type(exc).__name__}: {exc})"}]
    rows = []
    for fn in (_stage_rows,) + ((_route_rows,) if e2e else ()):
        try:
            rows += fn(z, models)
        except Exception as exc:  # a failing row, never hidden
            rows.append({"stage": fn.__name__.strip("_"), "output": "-", "psnr": None, "pass": False,
                         "error": f"{type(exc).__name__}: {exc}"})
    return [{"file": name, **r} for r in rows]


def check_awb(path: Path, weights: Path, min_psnr: float, e2e: bool = True) -> list[dict]:
    """:data:`isp.parity.FILE_CHECKERS` entry for ``awb_*.npz``: the rows of :func:`awb_rows`, each carrying its
    own limit (``MIN_PSNR`` for PSNR rows, the metric's bound otherwise); ``min_psnr`` of the raw-to-sRGB chain
    does not apply to these keys."""
    rows = awb_rows(path, weights, e2e)
    for r in rows:
        r.setdefault("limit", r["metric"]["limit"] if r.get("metric") else MIN_PSNR)
    return rows
