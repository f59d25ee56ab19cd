"""The NAFNet encoder-decoder shared by the raw denoiser (supp. C.1) and the detail enhancer (supp. C.7).

NAFNet (Chen et al., "Simple Baselines for Image Restoration", ECCV 2022) as the official release configures it:

* a 3x3 stem convolution ``3 -> width``;
* ``len(encoder_blocks)`` encoder stages, each a run of NAF blocks followed by a stride-2 2x2 convolution that halves
  the resolution and doubles the channels;
* a middle stage of ``middle_blocks`` NAF blocks at the lowest resolution;
* as many decoder stages, each a bias-free 1x1 convolution to twice the channels + pixel shuffle (x2 up, half the
  channels), an additive skip from the encoder stage of the same resolution, then a run of NAF blocks;
* a 3x3 output convolution ``width -> 3`` and a global residual: the network predicts a correction to its input.

The input is zero-padded on the bottom/right to a multiple of ``2 ** len(encoder_blocks)`` and the output cropped
back, so any H, W works. Padding amounts come from the static input shape only.

A NAF block (no activation functions; "gating" supplies the non-linearity), with ``c`` channels::

    y = x + beta  * P(CA(G(DW(E(LN1(x))))))           # E: 1x1 c->2c, DW: 3x3 depthwise, G: split-and-multiply,
    z = y + gamma * F2(G(F1(LN2(y))))                 # CA: x * 1x1(mean_hw(x)), P: 1x1 c->c, F1: 1x1 c->2c, F2: c->c

``LN`` normalises over the channel axis at every pixel (biased variance, learnable per-channel affine) with
eps = 1e-5. Note: megvii's NAFNet LayerNorm2d defaults to 1e-6, but the official ISP's goldens are reproduced only
with 1e-5 (enhancer: ~75 dB with 1e-6 vs 77-95 dB with 1e-5; the denoiser is less sensitive), so 1e-5 it is.

Export notes: global average pooling is a mean of block means (:func:`spatial_mean`: same maths as adaptive pooling
to 1x1) and the LayerNorm is centred and rescaled (:func:`channel_layer_norm`), both so that a GPU computing in
float16 neither overflows nor loses the statistics; no in-place ops; the only shape arithmetic is the pad/crop
amount.

Checkpoint keys: the official module names (``in_layer``, ``encoder_blocks``, ``down_layers``, ``middle_blocks``,
``up_layers``, ``decoder_blocks``, ``out_layer`` and, inside a block, ``norm1``/``conv1``/…/``sca.1``/``beta``)
are rewritten to ours by :data:`NAFNET_KEY_RULES`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LAYER_NORM_EPS", "NAFNetConfig", "channel_layer_norm", "channel_layer_norm_reference", "spatial_mean",
           "simple_gate", "pad_to_multiple", "with_statistics",
           "ChannelLayerNorm", "NAFBlock", "NAFNet", "NAFNET_KEY_RULES", "read_nafnet_config"]

#: epsilon added to the per-pixel channel variance (what the official ISP's NAFNet uses; see module docstring)
LAYER_NORM_EPS = 1e-5


@dataclass(frozen=True)
class NAFNetConfig:
    """Shape of a NAFNet: stem width, blocks per encoder stage, middle blocks, blocks per decoder stage.

    Field names follow the official JSON configs (``width``, ``middle_block_num``, ``encoder_block_nums``,
    ``decoder_block_nums``) so ``NAFNetConfig.from_dict(json.load(f))`` reads them directly.
    """
    width: int
    middle_block_num: int
    encoder_block_nums: tuple[int, ...]
    decoder_block_nums: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoder_block_nums", tuple(int(n) for n in self.encoder_block_nums))
        object.__setattr__(self, "decoder_block_nums", tuple(int(n) for n in self.decoder_block_nums))
        if self.width < 1 or self.middle_block_num < 0:
            raise ValueError(f"NAFNet config: width must be >= 1 and middle_block_num >= 0, got {self}")
        if len(self.encoder_block_nums) != len(self.decoder_block_nums):
            raise ValueError("NAFNet config: encoder_block_nums and decoder_block_nums must have the same length "
                             f"(one decoder stage per encoder stage), got {self.encoder_block_nums} and "
                             f"{self.decoder_block_nums}")
        if any(n < 0 for n in self.encoder_block_nums + self.decoder_block_nums):
            raise ValueError(f"NAFNet config: block counts must be >= 0, got {self}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "NAFNetConfig":
        keys = ("width", "middle_block_num", "encoder_block_nums", "decoder_block_nums")
        missing = [k for k in keys if k not in d]
        if missing:
            raise ValueError(f"NAFNet config lacks {missing}; expected keys {list(keys)}")
        return cls(int(d["width"]), int(d["middle_block_num"]), tuple(d["encoder_block_nums"]),
                   tuple(d["decoder_block_nums"]))

    @property
    def depth(self) -> int:
        """Number of 2x down-sampling steps; inputs are padded to a multiple of ``2 ** depth``."""
        return len(self.encoder_block_nums)

    @property
    def bottleneck_width(self) -> int:
        return self.width * 2 ** self.depth


def read_nafnet_config(path: str | Path) -> NAFNetConfig:
    """Read an official ``configs/*.json``. Errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: NAFNet config not found (expected the official release layout, "
                                "e.g. denoising/configs/lite.json)")
    try:
        return NAFNetConfig.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a valid NAFNet config ({exc})") from exc


# ----------------------------------------------------------------------------------------------- pure functions

def channel_layer_norm_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                                 eps: float = LAYER_NORM_EPS) -> torch.Tensor:
    """The textbook formulation: ``(x - mean) / sqrt(var + eps)`` over C, then the per-channel affine. Exact in
    float32; in float16 its squares overflow above 256 and its channel sum loses the mean (see
    :func:`channel_layer_norm`, which the network uses)."""
    mean = x.mean(dim=1, keepdim=True)
    centred = x - mean
    var = (centred * centred).mean(dim=1, keepdim=True)       # biased variance
    y = centred / torch.sqrt(var + eps)
    return y * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)


def channel_layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                       eps: float = LAYER_NORM_EPS) -> torch.Tensor:
    """Normalise ``(B, C, H, W)`` over C at every pixel, then per-channel affine ``weight``/``bias`` of shape (C,).

    The same function as :func:`channel_layer_norm_reference`, written to survive float16 (phone GPUs, ARM fp16
    kernels; ``tests/isp/test_nafnet_fp16.py`` proves the two equal in float32):

    * the mean is taken of differences to the pixel's first channel, each pre-divided by C (a sum of values no
      larger than the channels' spread, never C times it), then added back: no overflow, and a common offset of the
      channels does not eat the mean's precision;
    * the centred values are divided by ``s = max(max_c |x - mean|, sqrt(eps))`` before squaring, so every square
      is <= 1 and the variance ``v`` of the scaled values is a mean of squares (never negative, unlike
      E[x^2] - E[x]^2) in [0, 1];
    * ``y = u / sqrt(v + (sqrt(eps) / s)^2)`` equals ``(x - mean) / sqrt(var + eps)``; the term under the root is
      >= 1/C where the pixel varies (the largest |u| is 1) and >= 1 where it is flat (s = sqrt(eps)), so the
      division never meets zero, inf or NaN.
    """
    c = x.shape[1]
    pivot = x[:, :1]
    d = x - pivot
    mean = pivot + (d * (1.0 / c)).sum(dim=1, keepdim=True)
    centred = x - mean
    root_eps = math.sqrt(eps)
    scale = centred.abs().amax(dim=1, keepdim=True).clamp_min(root_eps)
    u = centred / scale
    v = (u * u).mean(dim=1, keepdim=True)
    floor = root_eps / scale
    y = u * torch.rsqrt(v + floor * floor)
    return y * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)


def spatial_mean(x: torch.Tensor, block: int = 8) -> torch.Tensor:
    """``x.mean(dim=(2, 3), keepdim=True)`` as a mean of block means: average pools of at most ``block`` x
    ``block`` (the largest size that divides both sides, repeated while one exists), then the mean of what is
    left. Every partial sum holds at most ``block**2`` values, so a float16 accumulator neither saturates (a sum
    of 512 x 512 values near 1 is 262144 > 65504) nor drops the small addends; with equal blocks the result is
    the plain mean."""
    while True:
        h, w = x.shape[-2], x.shape[-1]
        k = next((k for k in range(min(block, h, w), 1, -1) if h % k == 0 and w % k == 0), 1)
        if k == 1 or h * w <= block * block:
            break
        x = F.avg_pool2d(x, k)
    return x.mean(dim=(2, 3), keepdim=True)


def simple_gate(x: torch.Tensor) -> torch.Tensor:
    """``(B, 2C, H, W) -> (B, C, H, W)``: first half of the channels times the second half."""
    a, b = x.chunk(2, dim=1)
    return a * b


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad ``(B, C, H, W)`` at the bottom and right so H and W become multiples of ``multiple``."""
    h, w = x.shape[-2], x.shape[-1]
    return F.pad(x, (0, (-w) % multiple, 0, (-h) % multiple))


# ----------------------------------------------------------------------------------------------------- modules

class ChannelLayerNorm(nn.Module):
    """:func:`channel_layer_norm` with learnable ``weight`` (ones) and ``bias`` (zeros). ``(B, C, H, W)``."""

    def __init__(self, channels: int, eps: float = LAYER_NORM_EPS) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    #: ``"fp16_safe"`` (:func:`channel_layer_norm`) or ``"textbook"`` (:func:`channel_layer_norm_reference`); see
    #: :func:`with_statistics`
    statistics = "fp16_safe"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.statistics == "textbook":
            return channel_layer_norm_reference(x, self.weight, self.bias, self.eps)
        return channel_layer_norm(x, self.weight, self.bias, self.eps)


class NAFBlock(nn.Module):
    """One NAF block (see module docstring). ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        c, c2 = channels, 2 * channels
        # spatial-mixing half
        self.mix_norm = ChannelLayerNorm(c)
        self.mix_expand = nn.Conv2d(c, c2, 1)
        self.mix_depthwise = nn.Conv2d(c2, c2, 3, padding=1, groups=c2)
        self.mix_attention = nn.Conv2d(c, c, 1)          # simplified channel attention on the pooled features
        self.mix_project = nn.Conv2d(c, c, 1)
        self.mix_scale = nn.Parameter(torch.zeros(1, c, 1, 1))
        # feed-forward half
        self.ffn_norm = ChannelLayerNorm(c)
        self.ffn_expand = nn.Conv2d(c, c2, 1)
        self.ffn_project = nn.Conv2d(c, c, 1)
        self.ffn_scale = nn.Parameter(torch.zeros(1, c, 1, 1))

    #: how the channel attention pools: ``"fp16_safe"`` (:func:`spatial_mean`) or ``"textbook"`` (one mean)
    statistics = "fp16_safe"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = simple_gate(self.mix_depthwise(self.mix_expand(self.mix_norm(x))))          # (B, C, H, W)
        pooled = t.mean(dim=(2, 3), keepdim=True) if self.statistics == "textbook" else spatial_mean(t)
        t = t * self.mix_attention(pooled)                                            # gate by (B, C, 1, 1)
        y = x + self.mix_project(t) * self.mix_scale
        t = simple_gate(self.ffn_expand(self.ffn_norm(y)))
        return y + self.ffn_project(t) * self.ffn_scale


STATISTICS = ("fp16_safe", "textbook")


def with_statistics(module: nn.Module, statistics: str) -> nn.Module:
    """``module`` whose NAFNet layer norms and channel-attention means use ``statistics``: the module itself when
    it has none or they already do, else a deep copy (the argument is never modified).

    ``"fp16_safe"`` (the default) is what a float16 GPU or ARM fp16 kernel needs; ``"textbook"`` is the plain
    formulation, equal in float32, and what integer quantization needs: the safe form's per-pixel rescale
    (``centred / max|centred|``) and its pivot/partial sums add activations whose per-tensor int8 range cannot hold
    a flat pixel's small spread: the int8 enhancer measured 28.9 dB against its float self with the safe form and
    48.6 dB with the textbook one (ExecuTorch XNNPACK, CI geometry, README "ARM kernels")."""
    if statistics not in STATISTICS:
        raise ValueError(f"statistics must be one of {STATISTICS}, got {statistics!r}")
    owners = [m for m in module.modules() if isinstance(m, (ChannelLayerNorm, NAFBlock))]
    if all(m.statistics == statistics for m in owners):
        return module
    import copy
    module = copy.deepcopy(module)
    for m in module.modules():
        if isinstance(m, (ChannelLayerNorm, NAFBlock)):
            m.statistics = statistics
    return module


def _stage(channels: int, blocks: int) -> nn.Sequential:
    return nn.Sequential(*[NAFBlock(channels) for _ in range(blocks)])


class NAFNet(nn.Module):
    """NAFNet U-Net with global residual. ``(B, 3, H, W) -> (B, 3, H, W)`` for any H, W (pad, run, crop).

    The output is not clamped; wrappers decide (the enhancer clamps to [0, 1], the denoiser does not).
    """

    def __init__(self, config: NAFNetConfig, channels: int = 3) -> None:
        super().__init__()
        self.config = config
        self.multiple = 2 ** config.depth
        width = config.width
        self.stem = nn.Conv2d(channels, width, 3, padding=1)
        self.encoders = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        c = width
        for n in config.encoder_block_nums:
            self.encoders.append(_stage(c, n))
            self.downsamplers.append(nn.Conv2d(c, 2 * c, 2, stride=2))
            c *= 2
        self.middle = _stage(c, config.middle_block_num)
        self.upsamplers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for n in config.decoder_block_nums:
            self.upsamplers.append(nn.Conv2d(c, 2 * c, 1, bias=False))   # then pixel shuffle: 2c -> c/2 channels
            c //= 2
            self.decoders.append(_stage(c, n))
        self.head = nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        xp = pad_to_multiple(x, self.multiple)                          # (B, 3, Hp, Wp), Hp, Wp multiples of 2^depth
        f = self.stem(xp)                                               # (B, width, Hp, Wp)
        skips = []
        for encoder, down in zip(self.encoders, self.downsamplers):
            f = encoder(f)
            skips.append(f)
            f = down(f)                                                 # (B, 2c, h/2, w/2)
        f = self.middle(f)                                              # (B, width * 2^depth, Hp/2^depth, Wp/2^depth)
        for decoder, up, skip in zip(self.decoders, self.upsamplers, skips[::-1]):
            f = F.pixel_shuffle(up(f), 2)                               # (B, c/2, 2h, 2w)
            f = decoder(f + skip)
        out = self.head(f) + xp                                         # (B, 3, Hp, Wp)
        return out[:, :, :h, :w]                                        # (B, 3, H, W)


# ------------------------------------------------------------------------------------------- checkpoint remap

#: official NAFNet key names -> ours (``re.sub`` in order). Applies to a bare NAFNet state dict.
NAFNET_KEY_RULES: Sequence[tuple[str, str]] = (
    (r"^in_layer\.", "stem."),
    (r"^out_layer\.", "head."),
    (r"^encoder_blocks\.", "encoders."),
    (r"^decoder_blocks\.", "decoders."),
    (r"^middle_blocks\.", "middle."),
    (r"^down_layers\.", "downsamplers."),
    (r"^up_layers\.(\d+)\.0\.", r"upsamplers.\1."),
    (r"\.norm1\.", ".mix_norm."),
    (r"\.conv1\.", ".mix_expand."),
    (r"\.conv2\.", ".mix_depthwise."),
    (r"\.sca\.1\.", ".mix_attention."),
    (r"\.conv3\.", ".mix_project."),
    (r"\.beta$", ".mix_scale"),
    (r"\.norm2\.", ".ffn_norm."),
    (r"\.conv4\.", ".ffn_expand."),
    (r"\.conv5\.", ".ffn_project."),
    (r"\.gamma$", ".ffn_scale"),
)
