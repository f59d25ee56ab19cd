"""Builders of the auxiliary export units (:data:`isp.units.AUX_UNITS`): what a phone runs to estimate its own white
balance, and to get the raw back out of a saved JPEG: their modules, references and data. :func:`convert.units.build_unit` builds them
like every unit (as an ``AuxExportUnit``).

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

Data: :func:`golden_unit_inputs` (what the built unit's ``calibration_inputs`` returns) ignores the calibration set's tiles (they hold no AWB or JPEG inputs) and
builds the inputs from the reference on the golden_ext inputs (``awb_*.npz``: the noisy raws and the default
variant's capture vectors; ``jpeg_*.npz``: raws stored by the reference encoder at quality 95, resized to the
frame). The units stay float in every policy (:data:`convert.recipes.UNSUPPORTED`).
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from isp import paths
from isp.registry import BuildConfig
from isp.stages import awb as A
from isp.stages import raw_jpeg as RJ
from isp.units import AUX_UNITS, S24_CAPTURE, UNITS

__all__ = ["AWB_MODELS", "AwbUnit", "DecoderUnit", "build_aux_module", "build_awb_module", "awb_reference",
           "golden_inputs", "golden_unit_inputs", "example_inputs", "decoder_inputs"]

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


# ------------------------------------------------------------------------------------------------ unit parts

def example_inputs(unit_id: str, shapes, weights: str | Path, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Plausible inputs of the fixed shapes from a smooth synthetic ``image`` of the first input's shape."""
    if unit_id == "raw_jpeg_decode":
        return decoder_inputs(image * 0.8, weights)
    img = image * 0.6
    return (img,) if unit_id == "awb_c5" else (img, torch.full(tuple(shapes[1]), 0.4))


def golden_unit_inputs(unit_id: str, weights: str | Path, size: tuple[int, int], limit: int | None = None
                       ) -> list[tuple[torch.Tensor, ...]]:
    """The unit's inputs from the reference on the golden_ext inputs (decoder: resized to ``size`` (H, W));
    ``ValueError`` if there are none."""
    root = paths.shared_root() / "golden_ext"
    if unit_id == "raw_jpeg_decode":
        rows = list(_golden_decoder_inputs(str(root), str(weights), tuple(size)))
    else:
        rows = [(img,) if unit_id == "awb_c5" else (img, cap) for img, cap in golden_inputs(str(root))]
    if not rows:
        raise ValueError(f"{unit_id}: no golden_ext inputs in {root} to calibrate or verify with")
    return rows[:limit]


def build_aux_module(unit_id: str, cfg: BuildConfig) -> tuple[nn.Module, Callable[..., tuple[torch.Tensor, ...]]]:
    """The export module of an auxiliary unit (eval, float32) and its reference (tuple-returning callable)."""
    if unit_id not in AUX_UNITS:
        raise ValueError(f"unknown auxiliary unit {unit_id!r}; they are {', '.join(AUX_UNITS)}")
    if unit_id == "raw_jpeg_decode":
        module: nn.Module = DecoderUnit(RJ.build_decoder(cfg, **UNITS[unit_id].mode))
        reference = RJ.build_decoder(cfg)
        return module.eval(), torch.no_grad()(lambda *xs: (reference(*xs),))
    module, stage = build_awb_module(unit_id, cfg.weights)
    return module, awb_reference(stage)


class DecoderUnit(nn.Module):
    """``raw_jpeg, gamma_map, lut -> rec_raw``: the decoder (mobile formulation) at ``self.stage``."""

    def __init__(self, stage: nn.Module) -> None:
        super().__init__()
        self.stage = stage

    def forward(self, raw_jpeg: torch.Tensor, gamma_map: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
        return self.stage(raw_jpeg, gamma_map, lut)
