"""Raw denoising, the first stage (paper Sec. 2.1, Eq. (1); supplementary Sec. C.1).

``I_raw' = f_enh-raw(I_raw)``: a NAFNet (:mod:`isp.stages.nafnet`) with a global residual maps the demosaiced,
black-level-subtracted raw image in [0, 1] to its denoised version, at full resolution. Three sizes share one layout
and differ only in stem width (lite 4, base 8, large 16; doubled at each of the 4 encoder stages; encoder
[2, 2, 4, 8], middle 4, decoder [2, 2, 2, 2] NAF blocks). Camera-specific (``s24_*``) and generic (``generic_*``)
checkpoints exist for lite and base; the release ships only the config of ``large``.

As in the official pipeline the output is **not** clamped: it can leave [0, 1] slightly.

Deliberate deviations: none in the maths. The shipped sizes are also built in (:data:`DENOISER_CONFIGS`) so a
denoiser can be built, counted and exported without the weights folder; :func:`build_denoiser` uses them, while the
registry build reads the release's ``denoising/configs/<size>.json`` as the official code does (a test checks they
agree).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from isp.checkpoints import load_strict, read_state_dict, remap_keys
from isp.registry import BuildConfig, StageSpec, TensorSpec
from isp.stages.nafnet import NAFNET_KEY_RULES, NAFNet, NAFNetConfig, read_nafnet_config

__all__ = ["DENOISER_CONFIGS", "RawDenoiser", "KEY_RULES", "denoiser_config", "build_denoiser",
           "load_denoiser_weights", "SPEC"]

#: the release's denoising/configs/{lite,base,large}.json
DENOISER_CONFIGS: dict[str, NAFNetConfig] = {
    size: NAFNetConfig(width=width, middle_block_num=4, encoder_block_nums=(2, 2, 4, 8),
                       decoder_block_nums=(2, 2, 2, 2))
    for size, width in (("lite", 4), ("base", 8), ("large", 16))
}


class RawDenoiser(nn.Module):
    """NAFNet raw denoiser. ``raw (B, 3, H, W)`` in [0, 1] -> ``denoised_raw (B, 3, H, W)`` (not clamped).

    Any H, W (padded internally to a multiple of 16 and cropped back).
    """

    def __init__(self, config: NAFNetConfig) -> None:
        super().__init__()
        self.net = NAFNet(config)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return self.net(raw)


#: official denoiser checkpoint keys -> :class:`RawDenoiser` keys
KEY_RULES = tuple(NAFNET_KEY_RULES) + ((r"^", "net."),)


def denoiser_config(size: str | NAFNetConfig | Mapping[str, Any]) -> NAFNetConfig:
    """``"lite" | "base" | "large"``, a config dict (official JSON fields) or a :class:`NAFNetConfig`."""
    if isinstance(size, NAFNetConfig):
        return size
    if isinstance(size, Mapping):
        return NAFNetConfig.from_dict(size)
    if size not in DENOISER_CONFIGS:
        raise ValueError(f"denoiser size must be one of {sorted(DENOISER_CONFIGS)}, got {size!r}")
    return DENOISER_CONFIGS[size]


def load_denoiser_weights(module: RawDenoiser, checkpoint: str | Path) -> RawDenoiser:
    """Strictly load an official denoiser ``.pth`` into ``module``; errors name the file."""
    sd = remap_keys(read_state_dict(checkpoint), KEY_RULES)
    return load_strict(module, sd, checkpoint)


def build_denoiser(size: str | NAFNetConfig | Mapping[str, Any] = "lite",
                   checkpoint: str | Path | None = None) -> RawDenoiser:
    """Build a denoiser (eval mode) of the given size/config; load ``checkpoint`` if given, else random init."""
    module = RawDenoiser(denoiser_config(size))
    if checkpoint is not None:
        load_denoiser_weights(module, checkpoint)
    return module.eval()


def _build(cfg: BuildConfig) -> RawDenoiser:
    return build_denoiser(read_nafnet_config(cfg.denoiser_config), cfg.denoiser_checkpoint)


SPEC = StageSpec(
    id="denoise",
    build=_build,
    inputs=(TensorSpec("raw", "B,3,H,W", (0.0, 1.0), "demosaiced raw RGB, black level subtracted, / white level"),),
    outputs=(TensorSpec("denoised_raw", "B,3,H,W", None, "denoised raw RGB (not clamped; about [0, 1])"),),
    resolution="full",
    paper="Sec. 2.1, Eq. (1); supp. C.1",
    checkpoint=lambda cfg: cfg.denoiser_checkpoint,
)
