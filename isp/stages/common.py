"""Building blocks shared by the photofinishing stages (paper supplementary Sec. C.3–C.6).

* :class:`MultiBranchConv` — the "MBConv" block of Figs. 14–17: three depthwise branches (3x3, 3x3 with dilation 2,
  5x5), each reflect-padded and followed by LeakyReLU, summed and fused by a 1x1 convolution.
* :class:`CoordAttention` — coordinate attention (the "CA" block): the feature map is averaged along each spatial
  axis, both profiles go through one shared 1x1 conv + GroupNorm(4) + LeakyReLU, and two 1x1 convs give sigmoid
  gates along H and along W that multiply the input.
* :func:`tone_curve` — the three-parameter tone curve shared by GTM (global a, b, c) and LTM (per-pixel maps),
  ``x^a / (x^a + (c (1 - x))^b)``, with powers computed as ``exp(e * log(x))`` under the same clamps as the official
  code (exponent to [-4, 32], logs to [-40, 40]) so it is finite everywhere and stays elementwise exp/log on every
  mobile backend.
* BT.709 Y'CbCr conversion used by the chroma stage and the tone edits. Both directions clamp RGB to [0, 1] as the
  official implementation does.

All LeakyReLUs use slope 0.01. ``EPS`` is the small constant the official code adds to denominators.

Checkpoint key remapping: the official modules name their parts ``_branch1.1`` … ``_fuse`` and ``_conv1``/``_n1``/
``_conv_h``/``_conv_w``; :data:`BLOCK_KEY_RULES` rewrites those names to ours wherever they appear in a key.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from isp.stages.nafnet import spatial_mean

__all__ = ["EPS", "LEAKY_SLOPE", "act", "LeakyReLU", "MultiBranchConv", "CoordAttention", "rgb_to_ycbcr",
           "ycbcr_to_rgb", "RGB_TO_YCBCR", "YCBCR_TO_RGB", "BLOCK_KEY_RULES", "safe_pow", "tone_curve",
           "log_softplus", "tone_curve_log_c", "BlockGroupNorm"]

EPS = 1e-8
LEAKY_SLOPE = 0.01

#: BT.709 analogue-form matrices (rows give Y, Cb, Cr from R, G, B and back)
RGB_TO_YCBCR = ((0.2126, 0.7152, 0.0722), (-0.114572, -0.385428, 0.5), (0.5, -0.454153, -0.045847))
YCBCR_TO_RGB = ((1.0, 0.0, 1.5748), (1.0, -0.1873, -0.4681), (1.0, 1.8556, 0.0))


def act(x: torch.Tensor) -> torch.Tensor:
    """The activation used throughout photofinishing: LeakyReLU(0.01)."""
    return F.leaky_relu(x, LEAKY_SLOPE)


class LeakyReLU(nn.LeakyReLU):
    """``nn.LeakyReLU(0.01)`` so ``nn.Sequential`` layouts can carry it as a parameter-free layer."""

    def __init__(self) -> None:
        super().__init__(LEAKY_SLOPE)


class MultiBranchConv(nn.Module):
    """Multi-branch depthwise block. ``(B, C, H, W) -> (B, C, H, W)``; needs H, W > 4 (reflect padding of 2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.dw3 = nn.Conv2d(channels, channels, 3, groups=channels)
        self.dw3_dil2 = nn.Conv2d(channels, channels, 3, dilation=2, groups=channels)
        self.dw5 = nn.Conv2d(channels, channels, 5, groups=channels)
        self.fuse = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad1 = F.pad(x, (1, 1, 1, 1), mode="reflect")
        pad2 = F.pad(x, (2, 2, 2, 2), mode="reflect")
        y = act(self.dw3(pad1)) + act(self.dw3_dil2(pad2)) + act(self.dw5(pad2))
        return self.fuse(y)


class CoordAttention(nn.Module):
    """Coordinate attention gate. ``(B, C, H, W) -> (B, C, H, W)``; bottleneck width ``max(8, C // reduction)``."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        mid = max(8, channels // reduction)
        self.squeeze = nn.Conv2d(channels, mid, 1, bias=False)
        self.norm = nn.GroupNorm(4, mid)
        self.gate_h = nn.Conv2d(mid, channels, 1, bias=False)
        self.gate_w = nn.Conv2d(mid, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        prof_h = x.mean(dim=3, keepdim=True)                      # (B, C, H, 1)
        prof_w = x.mean(dim=2, keepdim=True).transpose(2, 3)      # (B, C, W, 1)
        y = act(self.norm(self.squeeze(torch.cat([prof_h, prof_w], dim=2))))   # (B, mid, H+W, 1)
        y_h, y_w = torch.split(y, [h, w], dim=2)
        gate_h = torch.sigmoid(self.gate_h(y_h))                  # (B, C, H, 1)
        gate_w = torch.sigmoid(self.gate_w(y_w.transpose(2, 3)))  # (B, C, 1, W)
        return x * gate_h * gate_w


#: official sub-module names -> ours (applied with ``re.sub`` anywhere in a key)
BLOCK_KEY_RULES = (
    (r"\._branch1\.1\.", ".dw3."),
    (r"\._branch2\.1\.", ".dw3_dil2."),
    (r"\._branch3\.1\.", ".dw5."),
    (r"\._fuse\.", ".fuse."),
    (r"\._conv1\.", ".squeeze."),
    (r"\._n1\.", ".norm."),
    (r"\._conv_h\.", ".gate_h."),
    (r"\._conv_w\.", ".gate_w."),
)


def _mix3(x: torch.Tensor, rows) -> torch.Tensor:
    """``rows @ x`` over the channel axis of a ``(B, 3, H, W)`` tensor, as plain elementwise arithmetic (no constant
    tensors are created, so exported graphs stay free of copies and the op stays on every delegate)."""
    c0, c1, c2 = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return torch.cat([r[0] * c0 + r[1] * c1 + r[2] * c2 for r in rows], dim=1)


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB (clamped to [0, 1] first) -> Y'CbCr, Y in [0, 1], Cb/Cr in [-0.5, 0.5]."""
    return _mix3(rgb.clamp(0.0, 1.0), RGB_TO_YCBCR)


def ycbcr_to_rgb(ycbcr: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` Y'CbCr -> RGB clamped to [0, 1]."""
    return _mix3(ycbcr, YCBCR_TO_RGB).clamp(0.0, 1.0)


def safe_pow(base: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """``base ** exponent`` for ``base > 0`` as ``exp(clamp(e * clamp(log(base))))``, finite for all inputs.

    ``base`` is clamped to at least ``EPS``, the exponent to [-4, 32], ``log(base)`` and the product to [-40, 40].
    """
    return _pow_of_log(torch.log(base.clamp_min(EPS)).clamp(-40.0, 40.0), exponent)


def _pow_of_log(logb: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """The tail of :func:`safe_pow` given ``logb = clamp(log(max(base, EPS)), -40, 40)``."""
    return torch.exp((exponent.clamp(-4.0, 32.0) * logb).clamp(-40.0, 40.0))


#: below this pre-activation :func:`log_softplus` uses the series; ``log(1 + exp(h))`` in float16 keeps ``exp(h)``
#: to about 5e-4 absolute (1 + u rounds), i.e. ~4e-3 relative at the knee and all of it once ``exp(h) < 5e-4``
_LOG_SOFTPLUS_KNEE = -2.0
#: terms of ``log1p(u) / u = sum_n (-u)^n / (n + 1)``; the tail at ``u = exp(-2)`` is < 2e-8
_LOG1P_TERMS = 9


def log_softplus(h: torch.Tensor) -> torch.Tensor:
    """``log(softplus(h))``, also in float16 where ``softplus(h)`` of a negative ``h`` is rounded away (a phone GPU
    computes ``log(1 + exp(h))``: ``1 + exp(h)`` rounds to 1 below ``h ~ -7.6``, and a result under 6.1e-5 is
    flushed to 0, so ``log`` gives -inf; GTM's ``c`` sits at ``h ~ -12``).

    With ``lo = min(h, K)``, ``hi = max(h, K)`` (``K = -2``) and ``u = exp(lo)``:
    ``lo + log(P(u)) + log(softplus(hi)) - log(softplus(K))`` where ``P(u) = log1p(u) / u`` as its alternating
    series (9 terms: exact to float32 rounding for ``u <= exp(-2)``). For ``h <= K`` the last two terms cancel and
    ``log(softplus(h)) = h + log(log1p(u) / u)``; for ``h > K`` the first two give ``log(softplus(K))`` and cancel.
    ``P`` lies in [0.93, 1], so its log is accurate in float16 too. No select op (GPU delegates differ in it)."""
    lo = h.clamp_max(_LOG_SOFTPLUS_KNEE)
    hi = h.clamp_min(_LOG_SOFTPLUS_KNEE)
    u = torch.exp(lo)
    p = torch.full_like(u, (-1.0) ** (_LOG1P_TERMS - 1) / _LOG1P_TERMS)
    for n in range(_LOG1P_TERMS - 2, -1, -1):                     # Horner: p = sum_n (-u)^n / (n + 1)
        p = p * u + ((-1.0) ** n / (n + 1))
    knee = math.log(math.log1p(math.exp(_LOG_SOFTPLUS_KNEE)))
    return lo + torch.log(p) + (torch.log(F.softplus(hi)) - knee)


def tone_curve(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Parametric tone curve ``x^a / (x^a + (c (1 - x))^b + EPS)`` on ``x`` clamped to [EPS, 1 - EPS].

    ``a``, ``b``, ``c`` broadcast against ``x`` (``(B, 1, 1, 1)`` for GTM, ``(B, 1, H, W)`` for LTM). Output in [0, 1].
    """
    xc = x.clamp(EPS, 1.0 - EPS)
    xa = safe_pow(xc, a)
    rest = safe_pow(c * (1.0 - xc).clamp(EPS, 1.0), b)
    return xa / (xa + rest + EPS)


_LOG_EPS = math.log(EPS)


def tone_curve_log_c(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, log_c: torch.Tensor) -> torch.Tensor:
    """:func:`tone_curve` given ``log(c)`` instead of ``c``: the same function in float32, and in float16 it keeps
    a ``c`` below float16's normal range (e.g. GTM's ``c`` ~ 7e-6, which a GPU flushes to 0 and so bends the whole
    curve). ``(c m)^b`` with ``m = clamp(1 - x, EPS, 1)`` is ``exp(b * clamp(log c + log m, log EPS, 40))``, which
    is :func:`safe_pow`'s ``log(max(c m, EPS))`` without forming ``c m``."""
    xc = x.clamp(EPS, 1.0 - EPS)
    xa = safe_pow(xc, a)
    log_cm = (log_c + torch.log((1.0 - xc).clamp(EPS, 1.0))).clamp(_LOG_EPS, 40.0)
    return xa / (xa + _pow_of_log(log_cm, b) + EPS)


class BlockGroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` (same parameters and state-dict keys) with its statistics taken as means of block means
    (:func:`isp.stages.nafnet.spatial_mean`) per channel, then over the group's channels, and the variance as the mean
    of squared deviations: the same function in float32 (``tests/isp/test_gtm_fp16.py``), but no reduction adds
    more than 64 values, so a float16 accumulator (a phone GPU) does not saturate on LTM's 384 x 384 maps (a group
    there holds 1.8 million values)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, k = x.shape[1], x.shape[1] // self.num_groups
        # channel means -> their group's mean on every channel: a 1x1 conv with a constant block-diagonal weight
        # (a reshape + broadcast became BROADCAST_TO, which GPU delegates refuse)
        avg = torch.tensor([[1.0 / k if i // k == j // k else 0.0 for j in range(c)] for i in range(c)],
                           dtype=x.dtype, device=x.device).reshape(c, c, 1, 1)

        def group_mean(t: torch.Tensor) -> torch.Tensor:          # (B, C, H, W) -> (B, C, 1, 1), per group
            return F.conv2d(spatial_mean(t), avg)

        d = x - group_mean(x)
        y = d / torch.sqrt(group_mean(d * d) + self.eps)
        if self.affine:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y
