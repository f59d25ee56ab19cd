"""Gamma correction (paper Sec. 2.3, Eq. (8); supplementary Sec. C.3, Fig. 14).

``I_gamma = clamp(I_chroma ^ (1 / gamma), 0, 1)`` with one image-specific ``gamma`` in [1.2, 3].

The gamma network is :class:`isp.stages.gain.ScalarNet` (6,587 parameters, same layout as the gain network) on a
128x128 bilinear thumbnail; its sigmoid output ``s`` gives ``gamma = 1.2 + (3 - 1.2) * s``. What the stage predicts
and passes around as its parameter is the *exponent* ``1 / gamma`` in [1/3, 1/1.2] — this is what the official
network returns and what the golden files store as ``gamma_param``.

Two interchangeable formulations of the power, picked in ``__init__`` (``pow_mode``):

* ``"pow"`` (reference): ``torch.pow(x, g)`` as the official code does;
* ``"exp_log"`` (mobile): ``exp(g * log(max(x, tiny)))`` with ``x <= 0`` sent to exactly 0 by an elementwise select,
  for runtimes whose ``pow`` with a tensor exponent is missing or slow. Equal to ``"pow"`` on [0, 1] (tested).
  Deviation: a negative input gives 0 here where ``torch.pow`` gives NaN (the stage input is the output of the
  chroma stage, already clamped to [0, 1], so this never happens in the pipeline).

Checkpoint: prefix ``_gamma_net.`` of ``photofinishing_s24-style-*.pth``, remapped by
:func:`isp.stages.gain.scalar_net_key_rules`.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from isp.checkpoints import load_strict, read_state_dict, remap_keys, select_prefix
from isp.registry import BuildConfig, StageSpec, TensorSpec
from isp.stages.gain import ScalarNet, scalar_net_key_rules

__all__ = ["GAMMA_MIN", "GAMMA_MAX", "POW_MODES", "apply_gamma", "pow_exp_log", "GammaCorrection",
           "GAMMA_KEY_RULES", "build", "SPEC"]

#: range of gamma (the exponent applied is its inverse)
GAMMA_MIN = 1.2
GAMMA_MAX = 3.0
POW_MODES = ("pow", "exp_log")
#: smallest normal float32; the log argument is clamped to it
_TINY = float(torch.finfo(torch.float32).tiny)


# ----------------------------------------------------------------------------------------------- pure functions

def pow_exp_log(x: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """``x ** exponent`` for ``x >= 0`` and ``exponent > 0`` using only exp, log, max and select; ``x <= 0`` -> 0."""
    y = torch.exp(exponent * torch.log(x.clamp_min(_TINY)))
    return torch.where(x > 0.0, y, torch.zeros_like(y))


def apply_gamma(x: torch.Tensor, exponent: torch.Tensor, pow_mode: str = "pow") -> torch.Tensor:
    """Eq. (8): ``(B, 3, H, W)`` in [0, 1] and ``(B, 1, 1, 1)`` exponent ``1/gamma`` -> ``(B, 3, H, W)`` in [0, 1].

    ``pow_mode`` is ``"pow"`` (reference, ``torch.pow``) or ``"exp_log"`` (mobile formulation).
    """
    if pow_mode == "pow":
        y = torch.pow(x, exponent)
    elif pow_mode == "exp_log":
        y = pow_exp_log(x, exponent)
    else:
        raise ValueError(f"pow_mode must be one of {POW_MODES}, got {pow_mode!r}")
    return y.clamp(0.0, 1.0)


# ------------------------------------------------------------------------------------------------------ module

class GammaCorrection(nn.Module):
    """Predict and apply the gamma correction.

    ``forward(x) -> (out, exponent)``: ``x`` ``(B, 3, H/4, W/4)`` in [0, 1] (``processed_lsrgb``), ``out`` same shape in
    [0, 1] (``gamma_out``), ``exponent`` ``(B, 1, 1, 1)`` = ``1/gamma`` in [1/3, 1/1.2] (``gamma_param``).
    """

    def __init__(self, pow_mode: str = "pow", gamma_min: float = GAMMA_MIN, gamma_max: float = GAMMA_MAX) -> None:
        super().__init__()
        if pow_mode not in POW_MODES:
            raise ValueError(f"pow_mode must be one of {POW_MODES}, got {pow_mode!r}")
        self.pow_mode = pow_mode
        self.gamma_min = float(gamma_min)
        self.gamma_max = float(gamma_max)
        self.net = ScalarNet()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W) -> (B, 1, 1, 1)`` exponent ``1 / gamma``."""
        s = self.net(x)                                           # (B, 1)
        gamma = self.gamma_min + (self.gamma_max - self.gamma_min) * s
        return (1.0 / gamma).reshape(-1, 1, 1, 1)

    def apply(self, x: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
        return apply_gamma(x, exponent, self.pow_mode)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        exponent = self.predict(x)
        return apply_gamma(x, exponent, self.pow_mode), exponent


# ------------------------------------------------------------------------------------------ checkpoint + registry

CHECKPOINT_PREFIX = "_gamma_net."
GAMMA_KEY_RULES = scalar_net_key_rules("_gamma_net")


def load_from_state_dict(module: GammaCorrection, sd: dict[str, torch.Tensor],
                         source: str | Path) -> GammaCorrection:
    """Load the ``_gamma_net.`` part of a full photofinishing state dict into ``module`` (strict)."""
    return load_strict(module, remap_keys(select_prefix(sd, CHECKPOINT_PREFIX), GAMMA_KEY_RULES), source)


def build(cfg: BuildConfig, pow_mode: str = "pow") -> GammaCorrection:
    path = cfg.photofinishing_checkpoint
    return load_from_state_dict(GammaCorrection(pow_mode), read_state_dict(path), path).eval()


SPEC = StageSpec(
    id="gamma",
    build=build,
    inputs=(TensorSpec("processed_lsrgb", "B,3,H/4,W/4", (0.0, 1.0), "chroma-mapped linear sRGB"),),
    outputs=(
        TensorSpec("gamma_out", "B,3,H/4,W/4", (0.0, 1.0), "display-referred quarter-resolution image"),
        TensorSpec("gamma_param", "B,1,1,1", (1.0 / GAMMA_MAX, 1.0 / GAMMA_MIN), "exponent 1/gamma"),
    ),
    resolution="quarter",
    paper="Sec. 2.3 Eq. (8); supp. C.3 Fig. 14",
    checkpoint=lambda cfg: cfg.photofinishing_checkpoint,
)
