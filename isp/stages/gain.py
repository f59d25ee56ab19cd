"""Digital gain (paper Sec. 2.3, Eq. (3); supplementary Sec. C.3, Fig. 14).

``I_gain = d_g * I_LsRGB`` on the quarter-resolution linear sRGB image, with one global factor ``d_g`` per image.

``d_g`` is predicted by :class:`ScalarNet`, a 6,587-parameter network that the gamma stage reuses unchanged (the
two differ only in how the sigmoid output is mapped to a range):

    bilinear resize to 128x128 (align_corners=True)
    -> 3x3 conv 3->10 (reflect) -> GroupNorm(2) -> LeakyReLU -> MultiBranchConv(10) -> CoordAttention(10)
    -> 3x3 conv 10->20 (reflect) -> LeakyReLU -> average pool to 32x32
    -> 3x3 conv 20->20 (reflect) -> LeakyReLU -> global average -> linear 20->1 -> sigmoid        # s in (0, 1)

and ``d_g = 0.25 + (4 - 0.25) * s`` (about EV -2 … +2).

Deliberate deviations from the official code (numerically equivalent):

* the official adaptive average pools are written as :func:`avg_pool_to`, a plain ``avg_pool2d`` whose kernel and
  stride are computed from the static input shape (128 is divisible by every target size used here), so the graph
  exports as fixed pools; the final 1x1 pool is a mean over H and W.
* the reflect-padded convolutions are ``nn.Conv2d(..., padding_mode="reflect")``.

Checkpoint: prefix ``_gain_net.`` of ``photofinishing_s24-style-*.pth``; keys are remapped by
:func:`scalar_net_key_rules` (layer indices of the official ``nn.Sequential`` -> our names) and loaded strictly.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from isp.checkpoints import load_strict, read_state_dict, remap_keys, select_prefix
from isp.registry import BuildConfig, StageSpec, TensorSpec
from isp.stages.common import BLOCK_KEY_RULES, CoordAttention, MultiBranchConv, act

__all__ = ["NET_INPUT_SIZE", "GAIN_MIN", "GAIN_MAX", "avg_pool_to", "resize_for_net", "ScalarNet",
           "scalar_net_key_rules", "apply_gain", "DigitalGain", "GAIN_KEY_RULES", "build", "SPEC"]

#: side of the square thumbnail the parameter networks look at
NET_INPUT_SIZE = 128
#: output range of the gain factor (supplementary Sec. C.3)
GAIN_MIN = 0.25
GAIN_MAX = 4.0
#: width of the scalar network (the stem has half of it)
SCALAR_NET_CHANNELS = 20


# ----------------------------------------------------------------------------------------------- pure functions

def avg_pool_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """Average-pool ``(B, C, H, W)`` to ``(B, C, size, size)`` with a fixed kernel (= stride) from the static shape.

    Equals ``F.adaptive_avg_pool2d(x, size)`` when ``size`` divides H and W (always the case after the 128x128
    resize); otherwise falls back to the adaptive pool. ``size == 1`` is a mean over H and W.
    """
    h, w = x.shape[-2], x.shape[-1]
    if size == 1:
        return x.mean(dim=(2, 3), keepdim=True)
    if h % size == 0 and w % size == 0:
        kh, kw = h // size, w // size
        return F.avg_pool2d(x, kernel_size=(kh, kw), stride=(kh, kw))
    return F.adaptive_avg_pool2d(x, size)


def resize_for_net(x: torch.Tensor, size: int = NET_INPUT_SIZE) -> torch.Tensor:
    """``(B, C, H, W) -> (B, C, size, size)``, bilinear with ``align_corners=True`` (the official thumbnail)."""
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=True)


def apply_gain(x: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """Eq. (3): ``(B, 3, H, W) * (B, 1, 1, 1) -> (B, 3, H, W)``. No clamping (values above 1 are kept for GTM)."""
    return x * gain


# ------------------------------------------------------------------------------------------------------ modules

def _conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, padding_mode="reflect")


class ScalarNet(nn.Module):
    """Image -> one number in (0, 1). ``(B, 3, H, W) -> (B, 1)``; any H, W (resized to 128x128 inside).

    Shared by the digital-gain and gamma stages (6,587 parameters with the default width of 20).
    """

    def __init__(self, channels: int = SCALAR_NET_CHANNELS, input_size: int = NET_INPUT_SIZE) -> None:
        super().__init__()
        half = channels // 2
        self.input_size = input_size
        self.pool_size = input_size // 4
        self.stem = _conv3x3(3, half)
        self.stem_norm = nn.GroupNorm(2, half)
        self.mbconv = MultiBranchConv(half)
        self.attn = CoordAttention(half)
        self.expand = _conv3x3(half, channels)
        self.conv32 = _conv3x3(channels, channels)
        self.head = nn.Linear(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = resize_for_net(x, self.input_size)                    # (B, 3, 128, 128)
        t = act(self.stem_norm(self.stem(t)))                     # (B, 10, 128, 128)
        t = self.attn(self.mbconv(t))
        t = act(self.expand(t))                                   # (B, 20, 128, 128)
        t = avg_pool_to(t, self.pool_size)                        # (B, 20, 32, 32)
        t = act(self.conv32(t))
        t = t.mean(dim=(2, 3))                                    # (B, 20)
        return torch.sigmoid(self.head(t))                        # (B, 1)


#: official ``nn.Sequential`` index -> our attribute name (indices 2, 6, 7, 9, 10, 11, 13 hold no weights)
_SCALAR_NET_LAYERS = {0: "stem", 1: "stem_norm", 3: "mbconv", 4: "attn", 5: "expand", 8: "conv32", 12: "head"}


def scalar_net_key_rules(official_name: str, ours: str = "net") -> tuple[tuple[str, str], ...]:
    """Remap rules for a :class:`ScalarNet` stored as ``<official_name>._net.<i>.…`` and held as ``<ours>.…``."""
    rules = [(rf"^{official_name}\._net\.{i}\.", f"{ours}.{name}.") for i, name in _SCALAR_NET_LAYERS.items()]
    return tuple(rules) + tuple(BLOCK_KEY_RULES)


class DigitalGain(nn.Module):
    """Predict and apply the global digital gain.

    ``forward(x) -> (x_gain, gain)``: ``x`` is ``(B, 3, H/4, W/4)`` linear sRGB (``lsrgb_ds``), ``x_gain`` the same
    shape (``lsrgb_gain``, may exceed 1), ``gain`` ``(B, 1, 1, 1)`` in [0.25, 4] (``gain_param``).
    """

    def __init__(self, gain_min: float = GAIN_MIN, gain_max: float = GAIN_MAX) -> None:
        super().__init__()
        self.gain_min = float(gain_min)
        self.gain_max = float(gain_max)
        self.net = ScalarNet()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W) -> (B, 1, 1, 1)`` gain factor."""
        s = self.net(x)                                           # (B, 1)
        gain = self.gain_min + (self.gain_max - self.gain_min) * s
        return gain.reshape(-1, 1, 1, 1)

    def apply(self, x: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        return apply_gain(x, gain)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gain = self.predict(x)
        return apply_gain(x, gain), gain


# ------------------------------------------------------------------------------------------ checkpoint + registry

CHECKPOINT_PREFIX = "_gain_net."
GAIN_KEY_RULES = scalar_net_key_rules("_gain_net")


def load_from_state_dict(module: DigitalGain, sd: dict[str, torch.Tensor], source: str | Path) -> DigitalGain:
    """Load the ``_gain_net.`` part of a full photofinishing state dict into ``module`` (strict)."""
    return load_strict(module, remap_keys(select_prefix(sd, CHECKPOINT_PREFIX), GAIN_KEY_RULES), source)


def build(cfg: BuildConfig) -> DigitalGain:
    path = cfg.photofinishing_checkpoint
    return load_from_state_dict(DigitalGain(), read_state_dict(path), path).eval()


SPEC = StageSpec(
    id="gain",
    build=build,
    inputs=(TensorSpec("lsrgb_ds", "B,3,H/4,W/4", (0.0, 1.0), "quarter-resolution linear sRGB"),),
    outputs=(
        TensorSpec("lsrgb_gain", "B,3,H/4,W/4", None, "gain-scaled linear sRGB (not clamped)"),
        TensorSpec("gain_param", "B,1,1,1", (GAIN_MIN, GAIN_MAX), "digital gain factor d_g"),
    ),
    resolution="quarter",
    paper="Sec. 2.3 Eq. (3); supp. C.3 Fig. 14",
    checkpoint=lambda cfg: cfg.photofinishing_checkpoint,
)
