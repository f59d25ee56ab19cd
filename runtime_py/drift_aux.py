"""Reference inputs and outputs of the auxiliary units (:data:`isp.units.AUX_UNITS`) on a drift frame: what
:meth:`runtime_py.drift.Reference.unit_io` returns for them (the drift tool and the device benchmark both read it).

Per frame (the noisy raw at the export geometry, as the chain's reference sees it):

* ``awb_c5``: ``awb_img`` = the raw resized by :func:`isp.stages.awb.resize_for_awb`; expected ``illum`` = the
  reference C5 (float64 histogram, FFT filtering).
* ``awb_s24``: also ``capture`` = the default variant's scaled capture vector from the frame's ISO and exposure time
  (a DNG frame's tags; frames without them, e.g. an evaluation set's, use ISO 100 and 1/100 s, recorded under
  ``source["capture"]``) and the noise statistics of the raw against the reference's own ``denoised_raw``.
* ``raw_jpeg_decode``: the raw stored by the reference encoder (quality 95, 8-bit truncation:
  :func:`convert.aux_units.decoder_inputs`); expected ``rec_raw`` = the reference decoder (searchsorted, pow).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from isp.units import AUX_UNITS

__all__ = ["AuxReference", "DEFAULT_CAPTURE"]

#: ISO and exposure time (s) for frames that do not record them
DEFAULT_CAPTURE = (100.0, 0.01)


class AuxReference:
    """The reference of the auxiliary units for one weights folder (models built on first use, results cached per
    frame name)."""

    def __init__(self, weights: str | Path) -> None:
        self.weights = Path(weights)
        self._models: dict[str, Any] = {}
        self._cache: dict[tuple[str, str], tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]] = {}

    def _model(self, unit: str):
        if unit not in self._models:
            from convert.aux_units import build_awb_module
            from isp.registry import BuildConfig
            from isp.stages.raw_jpeg import build_decoder
            self._models[unit] = (build_decoder(BuildConfig(self.weights)) if unit == "raw_jpeg_decode"
                                  else build_awb_module(unit, self.weights)[1])
        return self._models[unit]

    @torch.inference_mode()
    def io(self, unit: str, ref: Mapping[str, torch.Tensor], frame: Any
           ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """``(inputs, expected outputs)`` of ``unit`` on ``frame`` (``ref``: the frame's chain intermediates)."""
        if unit not in AUX_UNITS:
            raise ValueError(f"{unit} is not an auxiliary unit ({', '.join(AUX_UNITS)})")
        key = (unit, frame.name)
        if key not in self._cache:
            self._cache[key] = self._io(unit, ref, frame)
        return self._cache[key]

    def _io(self, unit: str, ref: Mapping[str, torch.Tensor], frame: Any):
        from isp.stages import awb as A
        raw = frame.raw.float()
        model = self._model(unit)
        if unit == "raw_jpeg_decode":
            from convert.aux_units import decoder_inputs
            ins = decoder_inputs(raw, self.weights)
            return ins, (model(*ins).float(),)
        awb_img = A.resize_for_awb(raw).float()
        hist = model.histogram(awb_img)
        if model.is_c5:
            return (awb_img,), (model(hist).float(),)
        iso, exposure = frame.source.get("iso"), frame.source.get("exposure_time")
        if not iso or not exposure:
            iso, exposure = DEFAULT_CAPTURE
            frame.source["capture"] = f"not recorded: ISO {iso:g}, {exposure:g} s assumed"
        feats = model.capture_data
        noise = A.noise_statistics(raw, ref["denoised_raw"].float()) if "noise_stats" in feats else None
        snr = A.snr_statistics(raw) if "snr_stats" in feats else None
        vec = model.capture_vector(torch.tensor([float(iso)], dtype=torch.float64),
                                   torch.tensor([float(exposure)], dtype=torch.float64), noise, snr).float()
        return (awb_img, vec), (model(hist, vec).float(),)
