"""One table of the ISP stages: id -> how to build it, what goes in and out, where its weights come from.

Every stage file in :mod:`isp.stages` ends with a module-level ``SPEC = StageSpec(...)``; this module imports them
in pipeline order. Nothing outside a stage file knows a stage's insides: the pipeline, the parity checker, the
exporter and the tests go through this table.

Conventions for a stage ``nn.Module``:

* ``forward`` takes and returns plain tensors (a tuple when there are several outputs), in the order of
  ``SPEC.inputs`` / ``SPEC.outputs``. Names are those of the golden files (``shared/golden/README.md``).
* no Python branching on tensor values, no ``.item()``, no in-place slice writes; modes are chosen in ``__init__``.
* photofinishing stages (gain, gtm, ltm, chroma, gamma) return ``(image, param)`` and also expose
  ``predict(...) -> param`` and ``apply(image_inputs..., param) -> image`` so the pipeline can blend parameters of
  several styles and the parity check can test the operator on the golden parameter alone. Chroma also has
  ``predict_ycbcr`` / ``apply_ycbcr`` (the pipeline applies tone edits in Y'CbCr just before it).
* ``lut3d`` returns one tensor and exposes ``table``, ``identity_table()`` and ``apply(x, table)``.
* export-friendly formulations (no grid_sample, no linalg, pow as exp/log) are chosen by constructor flags and
  proven equal to the reference formulation in the stage's tests.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from torch import nn

__all__ = ["BuildConfig", "TensorSpec", "StageSpec", "STAGE_ORDER", "AUX_STAGES", "get_stage",
           "all_stages", "build_stage"]

#: pipeline order; ``lut3d`` is only present for the ``-lut`` photofinishing checkpoints
STAGE_ORDER = ("denoise", "color", "gain", "gtm", "ltm", "lut3d", "chroma", "gamma", "upsample", "enhance")
#: stages outside the raw-to-sRGB chain, run on demand: stage id -> module in isp.stages (a module with several
#: stages has ``SPECS = {id: spec}`` instead of ``SPEC``)
AUX_STAGES: dict[str, str] = {
    "awb": "awb", "awb_pref": "awb_pref",                      # auto white balance, user-preference mapping
    "linearize": "linearize",                                  # sRGB -> raw (CIE XYZ Net)
    "raw_jpeg_encode": "raw_jpeg", "raw_jpeg_decode": "raw_jpeg",   # raw stored inside the output JPEG
}

DENOISER_CAMERAS = ("s24", "generic")
DENOISER_SIZES = ("lite", "base", "large")
NUM_STYLES = 6


@dataclass(frozen=True)
class BuildConfig:
    """What to build: which weights, which style, which denoiser.

    ``denoiser`` is ``"<camera>_<size>"`` (``s24_lite`` … ``generic_large``). ``use_lut`` selects the ``-lut``
    photofinishing checkpoint; ``None`` means "styles 1-5 use the -lut checkpoints, style 0 does not" (the official
    release has no style-0 -lut checkpoint).
    """
    weights: Path
    style: int = 0
    denoiser: str = "s24_lite"
    use_lut: bool | None = None
    ltm_refine: bool = False          # multi-scale LTM + bilateral-solver refinement (supp. Sec. A-B.1)
    solver_iters: int = 80
    awb: str = "c5"                   # AWB model of the awb stage: "c5" or "s24-<variant>" (isp.stages.awb)
    raw_quality: int = 95             # JPEG quality of the raw-JPEG adapter checkpoint (25, 50, 75, 95)

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", Path(self.weights))
        if not (0 <= self.style < NUM_STYLES):
            raise ValueError(f"style must be 0..{NUM_STYLES - 1}, got {self.style}")
        cam, _, size = self.denoiser.partition("_")
        if cam not in DENOISER_CAMERAS or size not in DENOISER_SIZES:
            raise ValueError(f"denoiser must be <{'|'.join(DENOISER_CAMERAS)}>_<{'|'.join(DENOISER_SIZES)}>, "
                             f"got {self.denoiser!r}")
        if self.use_lut and self.style == 0:
            raise ValueError("style 0 has no -lut checkpoint in the official release")

    @property
    def lut(self) -> bool:
        return self.style > 0 if self.use_lut is None else bool(self.use_lut)

    @property
    def photofinishing_checkpoint(self) -> Path:
        suffix = "-lut" if self.lut else ""
        return self.weights / "photofinishing" / "models" / f"photofinishing_s24-style-{self.style}{suffix}.pth"

    @property
    def enhancement_checkpoint(self) -> Path:
        return self.weights / "enhancement" / "models" / f"enhancement_s24-style-{self.style}.pth"

    @property
    def enhancement_config(self) -> Path:
        return self.weights / "enhancement" / "configs" / f"enhancement_s24-style-{self.style}.json"

    @property
    def denoiser_checkpoint(self) -> Path:
        return self.weights / "denoising" / "models" / f"{self.denoiser}.pth"

    @property
    def denoiser_config(self) -> Path:
        return self.weights / "denoising" / "configs" / f"{self.denoiser.partition('_')[2]}.json"


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: golden-file name, shape template, value range, meaning."""
    name: str
    shape: str                         # e.g. "B,3,H,W", "B,3,H/4,W/4", "B,1,1,1", "B,2,24,24"
    range: tuple[float, float] | None = (0.0, 1.0)
    doc: str = ""


@dataclass(frozen=True)
class StageSpec:
    id: str
    build: Callable[[BuildConfig], nn.Module]     # returns the module in eval mode with weights loaded
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    resolution: str                               # "full" | "quarter"
    paper: str = ""                               # section / equations implemented
    checkpoint: Callable[[BuildConfig], Path | None] = field(default=lambda cfg: None)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)


_CACHE: dict[str, StageSpec] = {}


def get_stage(stage_id: str) -> StageSpec:
    if stage_id not in STAGE_ORDER and stage_id not in AUX_STAGES:
        raise KeyError(f"unknown stage {stage_id!r}; stages are {', '.join(STAGE_ORDER + tuple(AUX_STAGES))}")
    if stage_id not in _CACHE:
        module = importlib.import_module(f"isp.stages.{AUX_STAGES.get(stage_id, stage_id)}")
        _CACHE[stage_id] = module.SPECS[stage_id] if hasattr(module, "SPECS") else module.SPEC
    return _CACHE[stage_id]


def all_stages() -> list[StageSpec]:
    return [get_stage(s) for s in STAGE_ORDER]


def build_stage(stage_id: str, cfg: BuildConfig) -> nn.Module:
    return get_stage(stage_id).build(cfg).eval()
