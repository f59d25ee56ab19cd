"""Builders of the auxiliary export units (:data:`isp.units.AUX_UNITS`): what a phone runs to estimate its own white
balance, and to get the raw back out of a saved JPEG. Built by :func:`convert.units.build_unit` like every unit.

=====================  ======================================================================  ==================
unit                   inputs                                                                  output
=====================  ======================================================================  ==================
``awb_c5``             awb_img (1,3,256,384): the noisy raw resized by the host                 illum (1,3), unit
                       (:func:`isp.stages.awb.resize_for_awb`)                                  norm
``awb_s24``            awb_img, capture (1,8): the scaled capture vector of the default        illum (1,3)
                       variant ``iso_shutter_speed_noise`` (:meth:`AutoWhiteBalance.capture_vector`)
``raw_jpeg_decode``    raw_jpeg (1,3,H,W) = decoded JPEG / 255, gamma_map (1,1,100,100),        rec_raw (1,3,H,W)
                       lut (1,3,129) (the side data the JPEG carries)
=====================  ======================================================================  ==================

Export formulations, each proven against the reference in ``tests/convert/test_aux_units.py``: the AWB histograms
are built in float32 from comparisons and matrix products (:func:`isp.stages.awb.c5_histogram` /
:func:`~isp.stages.awb.s24_histogram` with ``hist_dtype=float32``, the reference uses float64) and C5's FFT
circular filtering runs as a real DFT in matrix products (``AutoWhiteBalance(fft=False)``); the decoder is
``RawJpegDecoder(lookup="mobile")`` (inverse LUT as a sum of clamped segment ramps, power as exp/log). The resize and
the capture statistics (noise / SNR over the full-resolution frame, float64) stay on the host.

Data: :meth:`AuxUnit.calibration_inputs` ignores the calibration set's tiles (they hold no AWB or JPEG inputs) and
builds the inputs from the reference on the golden_ext inputs (``awb_*.npz``: the noisy raws and the default
variant's capture vectors; ``jpeg_*.npz``: raws stored by the reference encoder at quality 95, resized to the
frame). The units stay float in every policy (:data:`convert.recipes.UNSUPPORTED`).
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from isp import paths
from isp.registry import BuildConfig
from isp.stages import awb as A
from isp.stages import raw_jpeg as RJ
from isp.units import AUX_UNITS, S24_CAPTURE, UNITS, unit_shapes

__all__ = ["AWB_MODELS", "AwbUnit", "build_aux_unit", "build_awb_module", "awb_reference", "golden_inputs",
           "decoder_inputs"]

#: AWB unit id -> AWB model (the default S24 variant is the official demo's)
AWB_MODELS = {"awb_c5": "c5", "awb_s24": f"s24-{A.S24_DEFAULT}"}
#: the adapter quality whose encoder makes the decoder's data (the decoder itself has no weights)
DATA_QUALITY = 95


class AwbUnit(nn.Module):
    """``awb_img (1,3,256,384)[, capture (1,n)] -> illum (1,3)``: float32 histogram + the AWB network."""

    def __init__(self, stage: A.AutoWhiteBalance) -> None:
        super().__init__()
        self.stage = stage

    def forward(self, awb_img: torch.Tensor, capture: torch.Tensor | None = None) -> torch.Tensor:
        hist = self.stage.histogram(awb_img, hist_dtype=torch.float32)       # (1, 4, 48, 48)
        return self.stage(hist, capture)


def build_awb_module(unit: str, weights: str | Path) -> tuple[AwbUnit, A.AutoWhiteBalance]:
    """The export module of ``awb_c5`` / ``awb_s24`` (official weights, DFT filtering, eval) and the reference
    stage (float64 histogram, FFT filtering)."""
    ref = A.build_awb(Path(weights), AWB_MODELS[unit])
    if not ref.is_c5 and ref.config.n_capture != S24_CAPTURE:
        raise ValueError(f"{AWB_MODELS[unit]}: {ref.config.n_capture} capture features, the unit table declares "
                         f"{S24_CAPTURE} (isp.units.S24_CAPTURE)")
    stage = A.AutoWhiteBalance(ref.model, ref.config, fft=False)
    stage.net.load_state_dict(ref.net.state_dict())
    return AwbUnit(stage).eval(), ref.eval()


def awb_reference(ref: A.AutoWhiteBalance) -> Callable[..., tuple[torch.Tensor, ...]]:
    @torch.no_grad()
    def call(awb_img: torch.Tensor, capture: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        return (ref(ref.histogram(awb_img), capture).float(),)
    return call


# ------------------------------------------------------------------------------------------------ data

@functools.lru_cache(maxsize=4)
def golden_inputs(root: str) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """``(awb_img, capture)`` per ``awb_*.npz`` of ``root``: the resized noisy raw and the default S24 variant's
    scaled capture vector (both what the official code fed its models)."""
    out = []
    for f in sorted(Path(root).glob("awb_*.npz")):
        with np.load(f) as z:
            out.append((A.resize_for_awb(torch.from_numpy(z["raw"])).float(),
                        torch.from_numpy(z[f"awb_{A.S24_DEFAULT}_capture"]).float()[None]))
    return tuple(out)


@functools.lru_cache(maxsize=2)
def _encoder(weights: str) -> RJ.RawJpegEncoder:
    return RJ.build_encoder(BuildConfig(Path(weights)))


@torch.no_grad()
def decoder_inputs(raw: torch.Tensor, weights: str | Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(raw_jpeg, gamma_map, lut)`` of a raw ``(1,3,H,W)`` stored by the reference encoder (quality 95): the
    8-bit image as the official writer truncates it (the JPEG compression itself is left out: the decoder sees the
    decoded 8-bit image either way) and the side data."""
    enc = _encoder(str(weights))
    jpeg_input, gamma_map, lut = enc(raw.float().clamp(0, 1))
    u8 = torch.from_numpy(RJ.to_uint8(jpeg_input)).permute(2, 0, 1)[None].float() / 255.0
    return u8.contiguous(), gamma_map.float(), lut.float()


@functools.lru_cache(maxsize=4)
def _golden_decoder_inputs(root: str, weights: str, size: tuple[int, int]) -> tuple[tuple[torch.Tensor, ...], ...]:
    out = []
    for f in sorted(Path(root).glob("jpeg_*.npz")) + sorted(Path(root).glob("awb_*.npz")):
        with np.load(f) as z:
            raw = torch.from_numpy(z["raw"]).float()
        raw = F.interpolate(raw, size=size, mode="bilinear", align_corners=False).clamp(0, 1)
        out.append(decoder_inputs(raw, weights))
    return tuple(out)


# ------------------------------------------------------------------------------------------------ built unit

def _export_unit_class():
    from convert.units import ExportUnit, synthetic_image

    class AuxUnit(ExportUnit):
        """An auxiliary unit: data from the golden_ext inputs instead of calibration-set tiles."""

        def example_inputs(self, seed: int = 0) -> tuple[torch.Tensor, ...]:
            if self.id == "raw_jpeg_decode":
                raw = synthetic_image(self.input_shapes[0], seed) * 0.8
                return decoder_inputs(raw, self.cfg.weights)
            img = synthetic_image(self.input_shapes[0], seed) * 0.6
            return (img,) if self.id == "awb_c5" else (img, torch.full(self.input_shapes[1], 0.4))

        def calibration_inputs(self, cs: Any = None, limit: int | None = None) -> list[tuple[torch.Tensor, ...]]:
            """The unit's inputs from the reference on the golden_ext inputs (``cs`` is not read: calibration
            sets hold no AWB or JPEG inputs); ``ValueError`` if there are none."""
            root = paths.shared_root() / "golden_ext"
            if self.id == "raw_jpeg_decode":
                rows = list(_golden_decoder_inputs(str(root), str(self.cfg.weights), self.geometry.size))
            else:
                rows = [(img,) if self.id == "awb_c5" else (img, cap) for img, cap in golden_inputs(str(root))]
            if not rows:
                raise ValueError(f"{self.id}: no golden_ext inputs in {root} to calibrate or verify with")
            return rows[:limit]

    return AuxUnit


def build_aux_unit(unit_id: str, cfg: BuildConfig, geometry: Any):
    """Build an auxiliary unit (module in eval mode, float32; a ``reference`` in the stage's reference mode)."""
    if unit_id not in AUX_UNITS:
        raise ValueError(f"unknown auxiliary unit {unit_id!r}; they are {', '.join(AUX_UNITS)}")
    from convert.units import StageUnit, _as_tuple
    spec = UNITS[unit_id]
    if unit_id == "raw_jpeg_decode":
        module: nn.Module = StageUnit(RJ.build_decoder(cfg, **spec.mode))
        ref = lambda: _as_tuple(RJ.build_decoder(cfg))                               # noqa: E731
    else:
        module, stage = build_awb_module(unit_id, cfg.weights)
        ref = lambda: awb_reference(stage)                                           # noqa: E731
    shapes_in, shapes_out = unit_shapes(unit_id, geometry)
    return _export_unit_class()(spec=spec, module=module.eval(), geometry=geometry, cfg=cfg,
                                input_names=spec.inputs, output_names=spec.outputs,
                                input_shapes=tuple(tuple(s) for s in shapes_in),
                                output_shapes=tuple(tuple(s) for s in shapes_out), reference_factory=ref)
