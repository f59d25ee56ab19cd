"""Detail enhancement, the last stage (paper Sec. 2.5, Eq. (10); supplementary Sec. C.7).

``I_out = f_enh(I_gamma_up)``: a small NAFNet (:mod:`isp.stages.nafnet`; stem width 8, encoder [2, 2], middle 4,
decoder [2, 2] NAF blocks, about 50 K parameters) with a global residual refines the guided-upsampled sRGB image at
full resolution, compensating residual artefacts of denoising and upsampling. One checkpoint per picture style
(``enhancement_s24-style-{0..5}.pth``). As in the official pipeline the result is clamped to [0, 1].

Deliberate deviations: none in the maths. The shipped layout is also built in (:data:`ENHANCER_CONFIG`) so the
module can be built, counted and exported without the weights folder; the registry build reads the release's
``enhancement/configs/enhancement_s24-style-<N>.json`` as the official code does (a test checks they agree). The
official "enhancement strength" blend with the input is an edit applied by the pipeline, not part of this stage.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from isp.checkpoints import load_strict, read_state_dict, remap_keys
from isp.registry import BuildConfig, StageSpec, TensorSpec
from isp.stages.nafnet import NAFNET_KEY_RULES, NAFNet, NAFNetConfig, read_nafnet_config

__all__ = ["ENHANCER_CONFIG", "clamp_unit", "DetailEnhancer", "KEY_RULES", 
           "build_enhancer", "load_enhancer_weights", "SPEC"]

#: the release's enhancement/configs/enhancement_s24-style-N.json (identical for all styles)
ENHANCER_CONFIG = NAFNetConfig(width=8, middle_block_num=4, encoder_block_nums=(2, 2), decoder_block_nums=(2, 2))


def clamp_unit(x: torch.Tensor) -> torch.Tensor:
    """Clamp to the display range [0, 1] (applied to the network output)."""
    return x.clamp(0.0, 1.0)


class DetailEnhancer(nn.Module):
    """NAFNet detail enhancer. ``srgb_upsampled (B, 3, H, W)`` in [0, 1] -> ``srgb (B, 3, H, W)`` in [0, 1].

    Any H, W (padded internally to a multiple of 4 and cropped back).
    """

    def __init__(self, config: NAFNetConfig = ENHANCER_CONFIG) -> None:
        super().__init__()
        self.net = NAFNet(config)

    def forward(self, srgb_upsampled: torch.Tensor) -> torch.Tensor:
        return clamp_unit(self.net(srgb_upsampled))


#: official enhancement checkpoint keys -> :class:`DetailEnhancer` keys
KEY_RULES = tuple(NAFNET_KEY_RULES) + ((r"^", "net."),)


def load_enhancer_weights(module: DetailEnhancer, checkpoint: str | Path) -> DetailEnhancer:
    """Strictly load an official enhancement ``.pth`` into ``module``; errors name the file."""
    sd = remap_keys(read_state_dict(checkpoint), KEY_RULES)
    return load_strict(module, sd, checkpoint)


def build_enhancer(config: NAFNetConfig | Mapping[str, Any] | None = None,
                   checkpoint: str | Path | None = None) -> DetailEnhancer:
    """Build an enhancer (eval mode), by default of the shipped layout; load ``checkpoint`` if given."""
    if config is None:
        config = ENHANCER_CONFIG
    elif not isinstance(config, NAFNetConfig):
        config = NAFNetConfig.from_dict(config)
    module = DetailEnhancer(config)
    if checkpoint is not None:
        load_enhancer_weights(module, checkpoint)
    return module.eval()


def _build(cfg: BuildConfig) -> DetailEnhancer:
    return build_enhancer(read_nafnet_config(cfg.enhancement_config), cfg.enhancement_checkpoint)


SPEC = StageSpec(
    id="enhance",
    build=_build,
    inputs=(TensorSpec("srgb_upsampled", "B,3,H,W", (0.0, 1.0), "guided-upsampled photofinished sRGB"),),
    outputs=(TensorSpec("srgb", "B,3,H,W", (0.0, 1.0), "final sRGB after detail enhancement, clamped"),),
    resolution="full",
    paper="Sec. 2.5, Eq. (10); supp. C.7",
    checkpoint=lambda cfg: cfg.enhancement_checkpoint,
)
