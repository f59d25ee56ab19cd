"""Calibration and evaluation sets for the exported ISP stages, built from raw photos.

    DNG folder ──read_dng──> augment (crop / mirror-tile, flips, scene light, exposure)
               ──reference Pipeline──> per stage: the tensors it receives (+ reference outputs)
               ──> OUT/calib, OUT/eval: <stage>.npz, frames.npz, set.json

* post-training quantization: ``load_set(OUT / "calib").stage_inputs("ltm")`` is a list of batch-1 input tuples,
  the ``calibration`` of a :class:`convert.targets.base.ExportRequest`;
* drift checks: ``load_set(OUT / "eval")`` pairs every stage input with the reference output
  (``stage_outputs``), and ``frames()`` gives whole augmented frames with the reference image for end-to-end runs.

Command line: ``python -m calibration build --dngs DIR --out DIR [...]`` and ``python -m calibration info DIR``
(:mod:`calibration.__main__`). Geometry and augmentations: :mod:`calibration.augment`; capture and storage:
:mod:`calibration.sets`.
"""
from calibration.augment import SIZE_PRESETS, AugmentConfig, Augmentation, Geometry, parse_size
from calibration.sets import (CalibrationSet, Frame, build_set, build_sets, describe_set, find_dngs, load_set,
                              plan_stages)

__all__ = ["SIZE_PRESETS", "AugmentConfig", "Augmentation", "Geometry", "parse_size", "CalibrationSet", "Frame",
           "build_set", "build_sets", "describe_set", "find_dngs", "load_set", "plan_stages"]
