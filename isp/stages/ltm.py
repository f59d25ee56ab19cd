"""Local tone mapping (LTM) — paper Sec. 2.3 Eqs. (6)-(7), supplementary C.5 (network), A and B.1 (refinement).

The LTM network predicts a coarse bilateral grid ``M_LTM`` of five coefficients (64 x 64 cells, 18 depth slices)
from the gain-adjusted image ``I_gain`` and the globally tone-mapped image ``I_GTM``; a guidance map ``G_guide`` in
[-1, 1], predicted from the first channel (R) of ``I_gain`` by a three-scale guidance network, selects the depth at
which each pixel reads the grid (trilinear slicing). The five sliced maps, in channel order, are

    0: W'   (blend weight before the sigmoid)     1: A     2: B     3: C     4: G   (local gain)

and the operator (Eqs. 6-7) is

    I_LTM = (1 - W) * I_GTM + W * f_TM(I_gain * G; A, B, C),      W = sigmoid(W'),

with ``f_TM`` the tone curve of :func:`isp.stages.common.tone_curve`. All maps come out of a softplus, so they are
non-negative (and hence ``W >= 0.5``) for the shipped checkpoints.

Slicing comes in two interchangeable formulations, chosen with ``slicing=`` in the constructor:

* ``"reference"`` — one 5-D ``F.grid_sample`` (trilinear, ``align_corners=True``, border padding), as trained;
* ``"mobile"`` — a 4-D bilinear resize (``align_corners=True``) of the grid seen as ``(B, 5*18, 64, 64)`` to the
  image size, then a tent-weighted sum over the 18 depth slices, the depth coordinate ``(g + 1) / 2 * 17`` clamped
  to [0, 17] (border padding). Trilinear interpolation is separable, so both agree to float rounding (~1e-6); the
  mobile one avoids 5-D ``grid_sample``, which no mobile converter accepts (``shared/toolchain/README.md``). Its
  price is memory: the resized grid holds 90 floats per pixel (~270 MB in float32 for a 1000 x 750 quarter-res
  frame), so a runtime may want to run it in row bands.

Optional refinement (``refine=True``, supplementary B.1 then A): the coefficient maps are predicted at the scales
1, 1/2, 1/4, 1/8, 1/16 (inputs downsampled bilinearly, guidance map and 384x384 grid-net input each smoothed by a
reflect-padded 5x5 box filter), upsampled back and averaged; the average is then smoothed edge-aware by the
iterative bilateral solver of supplementary Alg. 1 (7x7 neighbourhood, sigma_s = 3 px, sigma_r = 0.008,
lambda = 5e-4, omega = 1.6, luminance of ``I_gain`` as guide). This mode is not covered by the golden files. It
needs the quarter-resolution image to be at least 192 px on each side (the 1/16 scale still has to feed the
guidance network's own 1/4 branch).

Deliberate deviations from the official code (none changes the numbers beyond float rounding):

* the grid net's ``AdaptiveAvgPool2d(64)`` after the fixed 384x384 resize is written as ``avg_pool2d(6)``;
* the refinement is not wrapped in ``no_grad``; its input is detached instead (same values, no gradient);
* the 384x384 resize is always applied (it is the identity when the input already is 384x384).

Checkpoint: the ``_ltm_net.`` entries of ``photofinishing_s24-style-*.pth``, renamed by :data:`KEY_RULES`.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from isp.checkpoints import load_strict, read_state_dict, remap_keys, select_prefix
from isp.registry import BuildConfig, StageSpec, TensorSpec
from isp.stages.common import (BLOCK_KEY_RULES, EPS, BlockGroupNorm, CoordAttention, MultiBranchConv, act,
                               tone_curve)

__all__ = ["NUM_MAPS", "GRID_DEPTH", "GRID_SIZE", "NET_INPUT_SIZE", "REFINE_SCALES", "SLICING_MODES",
           "slice_grid_reference", "slice_grid_mobile", "apply_ltm", "luma", "box_blur5", "bilateral_solver",
           "map_roughness", "GuidanceBranch", "MultiScaleGuidance", "GridNet", "LocalToneMapping", "KEY_RULES",
           "load_ltm", "SPEC"]

NUM_MAPS = 5              # W', A, B, C, G
GRID_DEPTH = 18           # N_c
GRID_SIZE = 64            # N_g
NET_INPUT_SIZE = 384      # the grid net sees the inputs resized to 384 x 384
BASE_CHANNELS = 48
REFINE_SCALES = (1.0, 0.5, 0.25, 0.125, 0.0625)
SLICING_MODES = ("reference", "mobile")

# bilateral-solver settings the official multi-scale refinement uses (supplementary A.3 / B.1)
SOLVER_KERNEL = 7
SOLVER_SIGMA_SPATIAL = 3.0
SOLVER_SIGMA_RANGE = 0.008
SOLVER_LAMBDA = 5e-4
SOLVER_OMEGA = 1.6
LUMA_WEIGHTS = (0.2989, 0.5870, 0.1140)


# ----------------------------------------------------------------------------------------------- pure functions

def slice_grid_reference(grid: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """Trilinear slicing with one 5-D ``grid_sample`` (the trained formulation).

    ``grid``: ``(B, 5, D, Ng, Ng)`` coefficients; ``guide``: ``(B, 1, H, W)`` in [-1, 1] (depth coordinate, values
    outside are clamped to the border slices). Returns ``(B, 5, H, W)``. Pixel ``(i, j)`` reads the grid at the
    normalised position ``(-1 + 2 j / (W - 1), -1 + 2 i / (H - 1))`` (``align_corners=True``).
    """
    b, _, h, w = guide.shape
    ys = torch.linspace(-1.0, 1.0, h, dtype=guide.dtype, device=guide.device)
    xs = torch.linspace(-1.0, 1.0, w, dtype=guide.dtype, device=guide.device)
    yy = ys.view(1, h, 1).expand(b, h, w)
    xx = xs.view(1, 1, w).expand(b, h, w)
    coords = torch.stack([xx, yy, guide[:, 0]], dim=-1).unsqueeze(1)         # (B, 1, H, W, 3): x, y, depth
    out = F.grid_sample(grid, coords, mode="bilinear", padding_mode="border", align_corners=True)
    return out[:, :, 0]                                                      # (B, 5, H, W)


def slice_grid_mobile(grid: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """Trilinear slicing without ``grid_sample``: 4-D bilinear resize + tent weights over depth.

    Same contract and result as :func:`slice_grid_reference`.
    """
    b, n, d, gh, gw = grid.shape
    h, w = guide.shape[-2], guide.shape[-1]
    planes = F.interpolate(grid.reshape(b, n * d, gh, gw), size=(h, w), mode="bilinear",
                           align_corners=True)                               # (B, 5*D, H, W), map-major
    z = ((guide + 1.0) * (0.5 * (d - 1))).clamp(0.0, float(d - 1))           # (B, 1, H, W) in slice units
    nodes = torch.arange(d, dtype=guide.dtype, device=guide.device).view(1, d, 1, 1)
    tent = (1.0 - (z - nodes).abs()).clamp_min(0.0)                         # (B, D, H, W), sums to 1
    # per map, the tent-weighted sum over its D slices, as two 1x1 convs with constant 0/1 weights (tent copied to
    # every map, then each map's D products summed): every tensor stays 4-D (GPU delegates take <= 4-D), and no
    # channel slice at an offset, which LiteRT's GPU delegate (WebGPU) got wrong even in fp32 (maps 1-4 off by ~4)
    copy = torch.tensor([[1.0 if j % d == k else 0.0 for k in range(d)] for j in range(n * d)],
                        dtype=guide.dtype, device=guide.device).reshape(n * d, d, 1, 1)
    total = torch.tensor([[1.0 if j // d == i else 0.0 for j in range(n * d)] for i in range(n)],
                         dtype=guide.dtype, device=guide.device).reshape(n, n * d, 1, 1)
    return F.conv2d(planes * F.conv2d(tent, copy), total)                   # (B, 5, H, W)


def apply_ltm(x_gain: torch.Tensor, x_gtm: torch.Tensor, ltm_param: torch.Tensor) -> torch.Tensor:
    """Eqs. (6)-(7). ``x_gain``, ``x_gtm``: ``(B, 3, H, W)``; ``ltm_param``: ``(B, 5, H, W)`` = (W', A, B, C, G).

    Returns ``(B, 3, H, W)``, a per-pixel convex combination of ``x_gtm`` and a tone curve output, both in [0, 1].
    """
    weight = torch.sigmoid(ltm_param[:, 0:1])
    a, b, c, g = ltm_param[:, 1:2], ltm_param[:, 2:3], ltm_param[:, 3:4], ltm_param[:, 4:5]
    local = tone_curve(x_gain * g, a, b, c)
    return (1.0 - weight) * x_gtm + weight * local


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W) -> (B, 1, H, W)`` with the BT.601 weights the solver uses for its guide."""
    lw = torch.tensor(LUMA_WEIGHTS, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return (rgb * lw).sum(dim=1, keepdim=True)


def box_blur5(t: torch.Tensor) -> torch.Tensor:
    """5x5 box filter on a reflect-padded tensor (the smoothing of supplementary B.1). Needs H, W > 2."""
    return F.avg_pool2d(F.pad(t, (2, 2, 2, 2), mode="reflect"), kernel_size=5, stride=1)


def bilateral_solver(guide: torch.Tensor, maps: torch.Tensor, iters: int, kernel: int = SOLVER_KERNEL,
                     sigma_spatial: float = SOLVER_SIGMA_SPATIAL, sigma_range: float = SOLVER_SIGMA_RANGE,
                     lam: float = SOLVER_LAMBDA, omega: float = SOLVER_OMEGA) -> torch.Tensor:
    """Iterative image-space bilateral solver (supplementary Sec. A, Eqs. 11-14, Alg. 1).

    ``guide``: ``(B, 3, H, W)`` RGB (its BT.601 luma is used) or ``(B, 1, H, W)``; ``maps``: ``(B, C, H, W)``.
    Affinities over a ``kernel x kernel`` reflect-padded neighbourhood are normalised to sum to one and reused for
    all channels and iterations; ``iters`` SOR steps with relaxation ``omega`` start from ``maps``. ``iters=0``
    returns ``maps`` unchanged. Needs H, W > kernel // 2.
    """
    if guide.shape[1] == 3:
        guide = luma(guide)
    b, c, h, w = maps.shape
    pad = kernel // 2
    k2 = kernel * kernel
    neigh = F.unfold(F.pad(guide, (pad, pad, pad, pad), mode="reflect"), kernel).view(b, 1, k2, h, w)
    range_w = torch.exp(-(neigh - guide.unsqueeze(2)) ** 2 / (2.0 * sigma_range ** 2))
    offs = torch.arange(-pad, pad + 1, dtype=maps.dtype, device=maps.device)
    spatial = torch.exp(-(offs.view(-1, 1) ** 2 + offs.view(1, -1) ** 2) / (2.0 * sigma_spatial ** 2))
    affinity = range_w * spatial.reshape(1, 1, k2, 1, 1)
    affinity = affinity / affinity.sum(dim=2, keepdim=True).clamp_min(EPS)   # (B, 1, k*k, H, W)
    out = maps
    for _ in range(iters):
        neigh_maps = F.unfold(F.pad(out, (pad, pad, pad, pad), mode="reflect"), kernel).view(b, c, k2, h, w)
        target = (lam * maps + (neigh_maps * affinity).sum(dim=2)) / (lam + 1.0)
        out = out + omega * (target - out)
    return out


def map_roughness(maps: torch.Tensor, guide: torch.Tensor | None = None, flat: float = 0.01) -> torch.Tensor:
    """Mean absolute difference between horizontally and vertically adjacent pixels, per batch item ``(B,)``.

    With ``guide`` (``(B, 1, H, W)`` luma or ``(B, 3, H, W)`` RGB), only pixel pairs whose guide values differ by
    less than ``flat`` count: the roughness inside flat image regions, where halos show and where the edge-aware
    refinement smooths (it keeps, and may sharpen, the map edges that follow image edges).
    """
    dx = (maps[..., :, 1:] - maps[..., :, :-1]).abs().mean(dim=1)           # (B, H, W-1)
    dy = (maps[..., 1:, :] - maps[..., :-1, :]).abs().mean(dim=1)           # (B, H-1, W)
    if guide is None:
        return dx.mean(dim=(1, 2)) + dy.mean(dim=(1, 2))
    g = luma(guide) if guide.shape[1] == 3 else guide
    mx = ((g[..., :, 1:] - g[..., :, :-1]).abs() < flat).to(maps.dtype)[:, 0]
    my = ((g[..., 1:, :] - g[..., :-1, :]).abs() < flat).to(maps.dtype)[:, 0]
    return ((dx * mx).sum(dim=(1, 2)) / mx.sum(dim=(1, 2)).clamp_min(1.0)
            + (dy * my).sum(dim=(1, 2)) / my.sum(dim=(1, 2)).clamp_min(1.0))


# ----------------------------------------------------------------------------------------------- networks

def _conv3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, padding_mode="reflect")


class GuidanceBranch(nn.Module):
    """One scale of the guidance network: ``(B, 1, h, w) -> (B, 24, h, w)``; needs h, w >= 3."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.conv_in = _conv3(1, half)
        self.norm_in = BlockGroupNorm(2, half)
        self.mbconv = MultiBranchConv(half)
        self.attn = CoordAttention(half)
        self.conv1 = _conv3(half, channels)
        self.conv2 = _conv3(channels, channels)
        self.conv3 = _conv3(channels, channels)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = act(self.norm_in(self.conv_in(x)))                               # (B, 12, h, w)
        y = self.attn(self.mbconv(y))
        y = act(self.conv1(y))                                               # (B, 24, h, w)
        y = act(self.conv2(y))
        y = act(self.conv3(y))
        return self.proj(y)


class MultiScaleGuidance(nn.Module):
    """Guidance map ``G_guide``: ``(B, 1, H, W)`` channel -> ``(B, 1, H, W)`` in [-1, 1] (tanh).

    Branches at 1/4 and 1/2 (average pooling) and full scale; the coarse outputs are upsampled bilinearly
    (``align_corners=True``), concatenated and fused by a 3x3 conv, LeakyReLU, 1x1 conv, tanh.
    """

    def __init__(self, channels: int = BASE_CHANNELS // 2) -> None:
        super().__init__()
        self.branch_quarter = GuidanceBranch(channels)
        self.branch_half = GuidanceBranch(channels)
        self.branch_full = GuidanceBranch(channels)
        self.fuse = _conv3(3 * channels, channels)
        self.out = nn.Conv2d(channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[-2], x.shape[-1])
        g_quarter = F.interpolate(self.branch_quarter(F.avg_pool2d(x, 4)), size=size, mode="bilinear",
                                  align_corners=True)                        # (B, 24, H, W)
        g_half = F.interpolate(self.branch_half(F.avg_pool2d(x, 2)), size=size, mode="bilinear",
                               align_corners=True)
        g_full = self.branch_full(x)
        y = act(self.fuse(torch.cat([g_quarter, g_half, g_full], dim=1)))    # (B, 24, H, W)
        return torch.tanh(self.out(y))                                       # (B, 1, H, W)


class GridNet(nn.Module):
    """Coefficient grid ``M_LTM``: ``(B, 6, 384, 384) -> (B, 5, 18, 64, 64)`` (softplus, non-negative)."""

    def __init__(self, channels: int = BASE_CHANNELS) -> None:
        super().__init__()
        half = channels // 2
        self.conv_in = _conv3(6, half)
        self.norm_in = BlockGroupNorm(2, half)
        self.mbconv = MultiBranchConv(half)
        self.attn = CoordAttention(half)
        self.conv1 = _conv3(half, channels)
        self.conv2 = _conv3(channels, channels)
        self.norm2 = BlockGroupNorm(4, channels)
        self.conv3 = _conv3(channels, channels)
        self.norm3 = BlockGroupNorm(4, channels)
        self.head = nn.Conv2d(channels, NUM_MAPS * GRID_DEPTH, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = act(self.norm_in(self.conv_in(x)))                               # (B, 24, 384, 384)
        y = self.attn(self.mbconv(y))
        y = act(self.conv1(y))                                               # (B, 48, 384, 384)
        y = act(self.norm2(self.conv2(y)))
        y = F.avg_pool2d(y, NET_INPUT_SIZE // GRID_SIZE)                     # (B, 48, 64, 64)
        y = act(self.norm3(self.conv3(y)))
        y = F.softplus(self.head(y))                                         # (B, 90, 64, 64)
        return y.reshape(y.shape[0], NUM_MAPS, GRID_DEPTH, GRID_SIZE, GRID_SIZE)


class LocalToneMapping(nn.Module):
    """LTM stage: ``forward(x_gain, x_gtm) -> (x_ltm, ltm_param)``.

    ``x_gain``: ``(B, 3, H, W)`` gain-adjusted linear sRGB (may exceed 1); ``x_gtm``: ``(B, 3, H, W)`` in [0, 1];
    ``ltm_param``: ``(B, 5, H, W)`` maps (W', A, B, C, G). H, W >= 12 on the default path (the guidance network's
    1/4 branch is reflect-padded by 2); at least 192 with ``refine=True``.

    ``slicing``: ``"reference"`` (5-D grid_sample) or ``"mobile"`` (resize + tent weights, export friendly).
    ``refine``: multi-scale prediction + bilateral-solver refinement with ``solver_iters`` iterations.
    """

    def __init__(self, slicing: str = "reference", refine: bool = False, solver_iters: int = 80) -> None:
        super().__init__()
        if slicing not in SLICING_MODES:
            raise ValueError(f"slicing must be one of {SLICING_MODES}, got {slicing!r}")
        if solver_iters < 0:
            raise ValueError(f"solver_iters must be >= 0, got {solver_iters}")
        self.slicing = slicing
        self.refine = bool(refine)
        self.solver_iters = int(solver_iters)
        self._slice = slice_grid_reference if slicing == "reference" else slice_grid_mobile
        self.guidance = MultiScaleGuidance()
        self.grid = GridNet()

    def _grid_input(self, x_gain: torch.Tensor, x_gtm: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x_gain, x_gtm], dim=1)                                # (B, 6, H, W)
        return F.interpolate(x, size=(NET_INPUT_SIZE, NET_INPUT_SIZE), mode="bilinear", align_corners=True)

    def predict_single_scale(self, x_gain: torch.Tensor, x_gtm: torch.Tensor) -> torch.Tensor:
        """The trained prediction at the input scale: ``(B, 5, H, W)``."""
        guide = self.guidance(x_gain[:, 0:1])                                # (B, 1, H, W)
        grid = self.grid(self._grid_input(x_gain, x_gtm))                    # (B, 5, 18, 64, 64)
        return self._slice(grid, guide)

    def predict_multiscale(self, x_gain: torch.Tensor, x_gtm: torch.Tensor) -> torch.Tensor:
        """Average of the smoothed predictions over :data:`REFINE_SCALES` (supplementary B.1): ``(B, 5, H, W)``."""
        h, w = x_gain.shape[-2], x_gain.shape[-1]
        total = None
        for s in REFINE_SCALES:
            if s == 1.0:
                xg, xt = x_gain, x_gtm
            else:
                size = (int(math.floor(h * s)), int(math.floor(w * s)))
                xg = F.interpolate(x_gain, size=size, mode="bilinear", align_corners=True)
                xt = F.interpolate(x_gtm, size=size, mode="bilinear", align_corners=True)
            guide = box_blur5(self.guidance(xg[:, 0:1]))
            grid = self.grid(box_blur5(self._grid_input(xg, xt)))
            maps = self._slice(grid, guide)
            if s != 1.0:
                maps = F.interpolate(maps, size=(h, w), mode="bilinear", align_corners=True)
            total = maps if total is None else total + maps
        return total / float(len(REFINE_SCALES))

    def refine_maps(self, x_gain: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """Bilateral-solver refinement of ``maps`` guided by the luma of ``x_gain`` (no gradient flows)."""
        return bilateral_solver(x_gain.detach(), maps.detach(), self.solver_iters)

    def predict(self, x_gain: torch.Tensor, x_gtm: torch.Tensor) -> torch.Tensor:
        """``ltm_param`` ``(B, 5, H, W)``."""
        if self.refine:
            return self.refine_maps(x_gain, self.predict_multiscale(x_gain, x_gtm))
        return self.predict_single_scale(x_gain, x_gtm)

    def apply(self, x_gain: torch.Tensor, x_gtm: torch.Tensor, ltm_param: torch.Tensor) -> torch.Tensor:
        return apply_ltm(x_gain, x_gtm, ltm_param)

    def forward(self, x_gain: torch.Tensor, x_gtm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ltm_param = self.predict(x_gain, x_gtm)
        return apply_ltm(x_gain, x_gtm, ltm_param), ltm_param


# ----------------------------------------------------------------------------------------------- checkpoint

CHECKPOINT_PREFIX = "_ltm_net."

_BRANCH_LAYERS = (("0", "conv_in"), ("1", "norm_in"), ("3", "mbconv"), ("4", "attn"), ("5", "conv1"),
                  ("7", "conv2"), ("9", "conv3"), ("11", "proj"))
_GRID_LAYERS = (("0", "conv_in"), ("1", "norm_in"), ("3", "mbconv"), ("4", "attn"), ("5", "conv1"),
                ("7", "conv2"), ("8", "norm2"), ("11", "conv3"), ("12", "norm3"), ("14", "head"))

#: official ``_ltm_net.*`` keys (prefix stripped) -> ours, applied in order after :data:`BLOCK_KEY_RULES`
KEY_RULES = (
    *BLOCK_KEY_RULES,
    (r"^_guide_conv\._guide_conv_low\.", "guidance.branch_quarter."),
    (r"^_guide_conv\._guide_conv_mid\.", "guidance.branch_half."),
    (r"^_guide_conv\._guide_conv_high\.", "guidance.branch_full."),
    (r"^_guide_conv\._fusion\.0\.", "guidance.fuse."),
    (r"^_guide_conv\._fusion\.2\.", "guidance.out."),
    *((rf"^(guidance\.branch_[a-z]+)\.{i}\.", rf"\1.{name}.") for i, name in _BRANCH_LAYERS),
    *((rf"^_grid_net\.{i}\.", f"grid.{name}.") for i, name in _GRID_LAYERS),
)


def load_ltm(path: str | Path, slicing: str = "reference", refine: bool = False,
             solver_iters: int = 80) -> LocalToneMapping:
    """Build :class:`LocalToneMapping` and load the ``_ltm_net.`` weights of a photofinishing checkpoint strictly."""
    module = LocalToneMapping(slicing=slicing, refine=refine, solver_iters=solver_iters)
    sd = remap_keys(select_prefix(read_state_dict(path), CHECKPOINT_PREFIX), KEY_RULES)
    load_strict(module, sd, path)
    return module.eval()


def _build(cfg: BuildConfig, slicing: str = "reference") -> LocalToneMapping:
    return load_ltm(cfg.photofinishing_checkpoint, slicing=slicing, refine=cfg.ltm_refine,
                    solver_iters=cfg.solver_iters)


SPEC = StageSpec(
    id="ltm",
    build=_build,
    inputs=(
        TensorSpec("lsrgb_gain", "B,3,H/4,W/4", None, "gain-scaled linear sRGB (may exceed 1)"),
        TensorSpec("lsrgb_gtm", "B,3,H/4,W/4", (0.0, 1.0), "after global tone mapping"),
    ),
    outputs=(
        TensorSpec("lsrgb_ltm", "B,3,H/4,W/4", (0.0, 1.0), "after local tone mapping"),
        TensorSpec("ltm_param", "B,5,H/4,W/4", None,
                   "sliced maps W' (pre-sigmoid blend weight), A, B, C, G (local gain); all >= 0"),
    ),
    resolution="quarter",
    paper="Sec. 2.3 Eqs. (6)-(7); supp. C.5 (network, Fig. 16), A and B.1 (optional refinement)",
    checkpoint=lambda cfg: cfg.photofinishing_checkpoint,
)
