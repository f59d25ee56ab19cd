"""Global tone mapping (paper Sec. 2.3, Eqs. (4)-(5); supplementary Sec. C.4, Fig. 15).

Every channel of the gain-scaled linear sRGB image goes through one tone curve with image-specific parameters::

    f_TM(x; a, b, c) = x^a / (x^a + (c (1 - x))^b)                                            # Eq. (5)

computed by :func:`isp.stages.common.tone_curve` (the same operator LTM uses with per-pixel maps). The input is
clamped to [EPS, 1 - EPS] inside the curve, so gain-scaled values above 1 map to ~1.

``(a, b, c) > 0`` come from a 28,369-parameter network:

    bilinear resize to 128x128 (align_corners=True)
    -> 3x3 conv 3->10 (reflect) -> GroupNorm(2) -> LeakyReLU -> MultiBranchConv(10) -> CoordAttention(10)
    -> 3x3 conv 10->20 -> LeakyReLU -> 3x3 conv 20->20 -> LeakyReLU -> average pool to 16x16
    -> 3x3 conv 20->40 -> LeakyReLU -> average pool to 4x4
    -> 3x3 conv 40->40 -> LeakyReLU -> global average -> linear 40->3 -> softplus

(all 3x3 convolutions reflect-padded).

Deliberate deviations (numerically equivalent): the adaptive pools are fixed ``avg_pool2d`` computed from the static
shape (:func:`isp.stages.gain.avg_pool_to`); the official ``nan_to_num`` in its power helper is dropped because the
clamped ``exp`` in :func:`~isp.stages.common.safe_pow` is always finite.

Checkpoint: prefix ``_gtm_net.`` of ``photofinishing_s24-style-*.pth``, remapped by :data:`GTM_KEY_RULES`.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from isp.checkpoints import load_strict, read_state_dict, remap_keys, select_prefix
from isp.registry import BuildConfig, StageSpec, TensorSpec
from isp.stages.common import (BLOCK_KEY_RULES, CoordAttention, MultiBranchConv, act, log_softplus, tone_curve,
                               tone_curve_log_c)
from isp.stages.gain import NET_INPUT_SIZE, avg_pool_to, resize_for_net

__all__ = ["apply_gtm", "GTMNet", "GlobalToneMapping", "GTM_KEY_RULES", "build", "SPEC"]

GTM_NET_CHANNELS = 20


# ----------------------------------------------------------------------------------------------- pure functions

def apply_gtm(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Eq. (4): ``(B, 3, H, W)`` image and ``(B, 3)`` curve parameters ``(a, b, c)`` -> ``(B, 3, H, W)`` in [0, 1]."""
    p = params.reshape(-1, 3, 1, 1)                               # (B, 3, 1, 1)
    a, b, c = p[:, 0:1], p[:, 1:2], p[:, 2:3]                     # (B, 1, 1, 1) each
    return tone_curve(x, a, b, c)


# ------------------------------------------------------------------------------------------------------ modules

def _conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, padding_mode="reflect")


class GTMNet(nn.Module):
    """Image -> positive tone-curve parameters. ``(B, 3, H, W) -> (B, 3)``; resized to 128x128 inside."""

    def __init__(self, channels: int = GTM_NET_CHANNELS, input_size: int = NET_INPUT_SIZE) -> None:
        super().__init__()
        half, wide = channels // 2, channels * 2
        self.input_size = input_size
        self.pool_size = input_size // 8
        self.stem = _conv3x3(3, half)
        self.stem_norm = nn.GroupNorm(2, half)
        self.mbconv = MultiBranchConv(half)
        self.attn = CoordAttention(half)
        self.expand = _conv3x3(half, channels)
        self.conv128 = _conv3x3(channels, channels)
        self.conv16 = _conv3x3(channels, wide)
        self.conv4 = _conv3x3(wide, wide)
        self.head = nn.Linear(wide, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(self.logits(x))                         # (B, 3)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The head's pre-activation ``(B, 3)`` (the parameters are its softplus)."""
        t = resize_for_net(x, self.input_size)                    # (B, 3, 128, 128)
        t = act(self.stem_norm(self.stem(t)))                     # (B, 10, 128, 128)
        t = self.attn(self.mbconv(t))
        t = act(self.expand(t))                                   # (B, 20, 128, 128)
        t = act(self.conv128(t))
        t = avg_pool_to(t, self.pool_size)                        # (B, 20, 16, 16)
        t = act(self.conv16(t))                                   # (B, 40, 16, 16)
        t = avg_pool_to(t, 4)                                     # (B, 40, 4, 4)
        t = act(self.conv4(t))
        t = t.mean(dim=(2, 3))                                    # (B, 40)
        return self.head(t)


class GlobalToneMapping(nn.Module):
    """Predict and apply the global tone curve.

    ``forward(x_gain) -> (x_gtm, params)``: ``x_gain`` ``(B, 3, H/4, W/4)`` (``lsrgb_gain``), ``x_gtm`` same shape in
    [0, 1] (``lsrgb_gtm``), ``params`` ``(B, 3)`` = ``(a, b, c)`` (``gtm_param``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.net = GTMNet()

    def predict(self, x_gain: torch.Tensor) -> torch.Tensor:
        return self.net(x_gain)

    def apply(self, x_gain: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return apply_gtm(x_gain, params)

    def forward(self, x_gain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`apply_gtm` of :meth:`predict`, the parameters as ``exp(log_softplus(head))`` and the curve given
        ``log c`` (:func:`~isp.stages.common.log_softplus`, :func:`~isp.stages.common.tone_curve_log_c`; equal in
        float32): ``c`` is often ~1e-5, under float16's normal range, and a phone GPU in fp16 computed it as 0 (the
        curve off by up to 0.5)."""
        log_p = log_softplus(self.net.logits(x_gain))             # (B, 3): log(a, b, c)
        params = torch.exp(log_p)
        p, lp = params.reshape(-1, 3, 1, 1), log_p.reshape(-1, 3, 1, 1)
        return tone_curve_log_c(x_gain, p[:, 0:1], p[:, 1:2], lp[:, 2:3]), params


# ------------------------------------------------------------------------------------------ checkpoint + registry

CHECKPOINT_PREFIX = "_gtm_net."
#: official ``nn.Sequential`` index -> our attribute name (the other indices hold no weights)
_GTM_LAYERS = {0: "stem", 1: "stem_norm", 3: "mbconv", 4: "attn", 5: "expand", 7: "conv128", 10: "conv16",
               13: "conv4", 17: "head"}
GTM_KEY_RULES = tuple((rf"^_gtm_net\.{i}\.", f"net.{name}.") for i, name in _GTM_LAYERS.items()) + \
    tuple(BLOCK_KEY_RULES)


def load_from_state_dict(module: GlobalToneMapping, sd: dict[str, torch.Tensor],
                         source: str | Path) -> GlobalToneMapping:
    """Load the ``_gtm_net.`` part of a full photofinishing state dict into ``module`` (strict)."""
    return load_strict(module, remap_keys(select_prefix(sd, CHECKPOINT_PREFIX), GTM_KEY_RULES), source)


def build(cfg: BuildConfig) -> GlobalToneMapping:
    path = cfg.photofinishing_checkpoint
    return load_from_state_dict(GlobalToneMapping(), read_state_dict(path), path).eval()


SPEC = StageSpec(
    id="gtm",
    build=build,
    inputs=(TensorSpec("lsrgb_gain", "B,3,H/4,W/4", None, "gain-scaled linear sRGB"),),
    outputs=(
        TensorSpec("lsrgb_gtm", "B,3,H/4,W/4", (0.0, 1.0), "globally tone-mapped linear sRGB"),
        TensorSpec("gtm_param", "B,3", None, "tone-curve parameters (a, b, c), all > 0"),
    ),
    resolution="quarter",
    paper="Sec. 2.3 Eqs. (4)-(5); supp. C.4 Fig. 15",
    checkpoint=lambda cfg: cfg.photofinishing_checkpoint,
)
