"""Chroma mapping — paper Sec. 2.3 (f_chroma, D_chroma), supplementary C.6 (network, Fig. 17) and D (histogram).

The image is converted to BT.709 Y'CbCr (:func:`isp.stages.common.rgb_to_ycbcr`, which clamps RGB to [0, 1]). A
network predicts an image-specific 2-D LUT ``L_chroma`` of shape ``(B, 2, 24, 24)`` from the image resized to
128 x 128 (bilinear, ``align_corners=True``):

* a differentiable CbCr histogram (supp. Eqs. 18-19): 24 bin centres evenly spaced on [-0.5, 0.5] per axis,
  Gaussian soft assignment with sigma = 0.075, normalised to sum to one and square-rooted; rows index Cb bins,
  columns Cr bins;
* a small conv net on the histogram (4 channels, tanh), concatenated with the identity CbCr meshgrid of the bin
  centres (channel 0: Cb of the row, channel 1: Cr of the column);
* an encoder (3 stages, 28 channels, GroupNorm / MBConv), coordinate attention, a channel gate in [0, 1]^28 from a
  luminance network on Y, a mirrored decoder and a 1x1 conv with tanh: the residual LUT, added to a learned base LUT.

The LUT is applied to (Cb, Cr) clamped to [-0.5, 0.5] by bilinear interpolation over the 24 x 24 nodes; Y is kept
and the result is converted back to RGB (:func:`isp.stages.common.ycbcr_to_rgb`, clamped to [0, 1]).

Axis convention (as trained, via ``grid_sample`` with grid = 2 * (Cb, Cr)): **Cb moves along the LUT's last axis
(columns) and Cr along its rows**, i.e. ``out[c] = L[c, row(Cr), col(Cb)]``. This is the transpose of the layout of
the histogram and of the identity meshgrid the base LUT was initialised with (an identity LUT would swap Cb and Cr);
the learned base LUT absorbs it. We keep the convention bit-exact.

LUT application comes in two interchangeable formulations, chosen with ``lookup=`` in the constructor:

* ``"reference"`` — 2-D ``F.grid_sample`` (bilinear, ``align_corners=True``), as trained;
* ``"mobile"`` — separable tent weights over the 24 nodes per axis (no gather, no ``grid_sample``, which falls off
  mobile delegates): the Cb tents through a 1x1 convolution whose weights are the LUT, times the Cr tents, summed
  per output channel by a constant 1x1 convolution; about 100 floats of intermediates per pixel, 4-D tensors only.
  A batched matmul of the LUT with the tents (the earlier form) came out wrong on LiteRT's GPU delegate (WebGPU),
  off by up to 0.6 even with its fp32 kernels. With ``"mobile"`` the network's histogram is
  :func:`cbcr_histogram_mobile` too (means of Gaussian products per Cb bin: no pixel-long matmul, whose float16
  accumulation on a phone GPU lost 0.05 of the histogram).

Deliberate deviations from the official code (float rounding only):

* the histogram's Gaussian ``exp(-(dcb^2 + dcr^2) / 2s^2)`` is computed as the product of two 1-D Gaussians and
  summed over pixels with a matmul ``(24 x N) @ (N x 24)`` instead of materialising ``N x 24 x 24`` weights;
* the luminance branch's ``AdaptiveAvgPool2d(8)`` on its fixed 128 x 128 input is ``avg_pool2d(16)``;
* the identity meshgrid is rebuilt, not loaded (the checkpoint's ``identity_grid`` buffer is checked against it).

The 3-D RGB LUT of the ``-lut`` styles runs *before* this stage (stage ``lut3d``): the LUT network then sees the
3-D-LUT output.

Checkpoint: the ``_lut_net.`` entries of ``photofinishing_s24-style-*.pth``, renamed by :data:`KEY_RULES`.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from isp.checkpoints import load_strict, read_state_dict, remap_keys, select_prefix
from isp.registry import BuildConfig, StageSpec, TensorSpec
from isp.stages.common import (BLOCK_KEY_RULES, EPS, CoordAttention, MultiBranchConv, act, rgb_to_ycbcr,
                               ycbcr_to_rgb)
from isp.stages.nafnet import spatial_mean

__all__ = ["LUT_BINS", "NET_INPUT_SIZE", "CHROMA_MIN", "CHROMA_MAX", "HIST_SIGMA", "LOOKUP_MODES", "bin_centres",
           "identity_cbcr_grid", "cbcr_histogram", "cbcr_histogram_mobile", "apply_cbcr_lut_reference", "apply_cbcr_lut_mobile",
           "apply_chroma_ycbcr", "apply_chroma", "ConvStage", "HistogramNet", "LumaGate", "ChromaLutNet",
           "ChromaMapping", "KEY_RULES", "load_chroma", "SPEC"]

LUT_BINS = 24             # N_h
NET_INPUT_SIZE = 128
BOTTLENECK = 28
CHROMA_MIN, CHROMA_MAX = -0.5, 0.5
HIST_SIGMA = 0.075
LOOKUP_MODES = ("reference", "mobile")


# ----------------------------------------------------------------------------------------------- pure functions

def bin_centres(bins: int = LUT_BINS, dtype: torch.dtype = torch.float32,
                device: torch.device | str | None = None) -> torch.Tensor:
    """``(bins,)`` evenly spaced on [-0.5, 0.5] (supp. Eq. 18)."""
    return torch.linspace(CHROMA_MIN, CHROMA_MAX, bins, dtype=dtype, device=device)


def identity_cbcr_grid(bins: int = LUT_BINS) -> torch.Tensor:
    """``(1, 2, bins, bins)``: channel 0 is the Cb centre of each row, channel 1 the Cr centre of each column."""
    c = bin_centres(bins)
    return torch.stack([c.view(bins, 1).expand(bins, bins), c.view(1, bins).expand(bins, bins)]).unsqueeze(0)


def cbcr_histogram(cbcr: torch.Tensor, bins: int = LUT_BINS, sigma: float = HIST_SIGMA) -> torch.Tensor:
    """Differentiable 2-D histogram (supp. Sec. D). ``cbcr``: ``(B, 2, H, W)`` -> ``(B, 1, bins, bins)``.

    Rows index Cb bins, columns Cr bins; each pixel adds ``exp(-((cb - c_i)^2 + (cr - c_j)^2) / (2 sigma^2))``;
    the histogram is normalised to sum to one (``+ EPS``) and square-rooted.
    """
    b = cbcr.shape[0]
    centres = bin_centres(bins, cbcr.dtype, cbcr.device).view(1, 1, bins)
    flat = cbcr.reshape(b, 2, -1)                                            # (B, 2, N)
    w_cb = torch.exp(-(flat[:, 0].unsqueeze(-1) - centres) ** 2 / (2.0 * sigma ** 2))   # (B, N, bins)
    w_cr = torch.exp(-(flat[:, 1].unsqueeze(-1) - centres) ** 2 / (2.0 * sigma ** 2))   # (B, N, bins)
    hist = torch.bmm(w_cb.transpose(1, 2), w_cr).unsqueeze(1)               # (B, 1, bins, bins)
    hist = hist / (hist.sum(dim=(2, 3), keepdim=True) + EPS)
    return torch.sqrt(hist)


def apply_cbcr_lut_reference(cbcr: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Bilinear LUT lookup with 2-D ``grid_sample`` (as trained). ``cbcr``: ``(B, 2, H, W)``; ``lut``:
    ``(B, 2, n, n)``. Returns ``(B, 2, H, W)``; Cb selects the LUT column, Cr the row (see module docstring)."""
    grid = (cbcr.clamp(CHROMA_MIN, CHROMA_MAX) * 2.0).permute(0, 2, 3, 1)   # (B, H, W, 2): x = Cb, y = Cr
    return F.grid_sample(lut, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def cbcr_histogram_mobile(cbcr: torch.Tensor, bins: int = LUT_BINS, sigma: float = HIST_SIGMA) -> torch.Tensor:
    """:func:`cbcr_histogram` (equal in float32) in a form a phone GPU computes in float16: per Cb bin ``i``, the
    Gaussian of Cb times the Cr Gaussians of every column, averaged over the pixels as a mean of block means
    (:func:`isp.stages.nafnet.spatial_mean`: no accumulator adds more than 64 values), then normalised. The
    normaliser's ``EPS`` is divided by the pixel count, so that means give the same result as the reference's sums.
    4-D tensors only, no matmul."""
    b, _, h, w = cbcr.shape
    two_s2 = 2.0 * sigma ** 2
    centres = bin_centres(bins, cbcr.dtype, cbcr.device)
    cb, cr = cbcr[:, 0:1], cbcr[:, 1:2]                                      # (B, 1, H, W)
    d_cr = cr - centres.view(1, bins, 1, 1)                                 # squares as products: no POW op
    g_cr = torch.exp(-(d_cr * d_cr) / two_s2)                               # (B, bins, H, W): column j
    d_cb = [cb - centres[i] for i in range(bins)]
    rows = [spatial_mean(torch.exp(-(d * d) / two_s2) * g_cr).reshape(b, 1, 1, bins)
            for d in d_cb]                                                  # row i: (B, 1, 1, bins)
    hist = torch.cat(rows, dim=2)                                           # (B, 1, bins, bins)
    hist = hist / (hist.sum(dim=(2, 3), keepdim=True) + EPS / (h * w))
    return torch.sqrt(hist)


def apply_cbcr_lut_mobile(cbcr: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Same result as :func:`apply_cbcr_lut_reference` with separable tent weights (no gather, no matmul): per
    pixel, ``t_cb[k] = max(0, 1 - |Cb - centre_k| * (n - 1))`` (likewise ``t_cr``), ``by_col[c, r] = sum_k
    lut[c, r, k] t_cb[k]`` as a 1x1 convolution with the LUT as its weights, then ``out[c] = sum_r by_col[c, r]
    t_cr[r]`` with a constant 0/1 1x1 convolution. The tents are taken from ``Cb - centre`` (not from a node
    position up to 23), which float16 keeps 3x finer."""
    b = cbcr.shape[0]
    n = lut.shape[-1]
    c = cbcr.clamp(CHROMA_MIN, CHROMA_MAX)
    centres = bin_centres(n, cbcr.dtype, cbcr.device).view(1, n, 1, 1)
    scale = (n - 1) / (CHROMA_MAX - CHROMA_MIN)

    def tents(x: torch.Tensor) -> torch.Tensor:                             # (B, 1, H, W) -> (B, n, H, W)
        return (1.0 - (x - centres).abs() * scale).clamp_min(0.0)

    t_cb, t_cr = tents(c[:, 0:1]), tents(c[:, 1:2])                          # Cb -> columns, Cr -> rows
    weights = lut.reshape(b, 2 * n, n, 1, 1)                                 # (c, r) x k
    if b == 1:
        by_col = F.conv2d(t_cb, weights[0])                                  # (1, 2n, H, W): columns done
    else:
        by_col = torch.cat([F.conv2d(t_cb[i:i + 1], weights[i]) for i in range(b)])
    total = torch.tensor([[1.0 if j // n == i else 0.0 for j in range(2 * n)] for i in range(2)],
                         dtype=cbcr.dtype, device=cbcr.device).reshape(2, 2 * n, 1, 1)
    return F.conv2d(by_col * torch.cat([t_cr, t_cr], dim=1), total)         # (B, 2, H, W)


def apply_chroma_ycbcr(ycbcr: torch.Tensor, lut: torch.Tensor, lookup: str = "reference") -> torch.Tensor:
    """f_chroma on Y'CbCr input: ``(B, 3, H, W)`` Y'CbCr + ``(B, 2, n, n)`` LUT -> ``(B, 3, H, W)`` RGB in [0, 1]."""
    if lookup not in LOOKUP_MODES:
        raise ValueError(f"lookup must be one of {LOOKUP_MODES}, got {lookup!r}")
    apply_lut = apply_cbcr_lut_reference if lookup == "reference" else apply_cbcr_lut_mobile
    cbcr = apply_lut(ycbcr[:, 1:3], lut)
    return ycbcr_to_rgb(torch.cat([ycbcr[:, 0:1], cbcr], dim=1))


def apply_chroma(rgb: torch.Tensor, lut: torch.Tensor, lookup: str = "reference") -> torch.Tensor:
    """f_chroma on RGB input: ``(B, 3, H, W)`` (clamped to [0, 1]) -> ``(B, 3, H, W)`` RGB in [0, 1]."""
    return apply_chroma_ycbcr(rgb_to_ycbcr(rgb), lut, lookup)


# ----------------------------------------------------------------------------------------------- networks

def _conv3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, padding_mode="reflect")


class ConvStage(nn.Module):
    """3x3 reflect conv -> [GroupNorm(4)] -> LeakyReLU -> [MBConv]; ``(B, C, n, n) -> (B, C, n, n)``."""

    def __init__(self, cin: int, cout: int, norm: bool = False, mbconv: bool = False) -> None:
        super().__init__()
        self.conv = _conv3(cin, cout)
        self.norm = nn.GroupNorm(4, cout) if norm else nn.Identity()
        self.mbconv = MultiBranchConv(cout) if mbconv else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mbconv(act(self.norm(self.conv(x))))


class HistogramNet(nn.Module):
    """``(B, 1, n, n)`` histogram -> ``(B, 4, n, n)`` features in [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = _conv3(1, 8)
        self.norm1 = nn.GroupNorm(2, 8)
        self.conv2 = _conv3(8, 8)
        self.proj = nn.Conv2d(8, 4, 1)

    def forward(self, hist: torch.Tensor) -> torch.Tensor:
        y = act(self.norm1(self.conv1(hist)))
        y = act(self.conv2(y))
        return torch.tanh(self.proj(y))


class LumaGate(nn.Module):
    """Luminance-guidance subnetwork: ``(B, 1, 128, 128)`` Y -> ``(B, 28)`` channel gate in [0, 1]."""

    def __init__(self, channels: int = BOTTLENECK) -> None:
        super().__init__()
        self.conv_in = _conv3(1, 8)
        self.norm_in = nn.GroupNorm(2, 8)
        self.attn = CoordAttention(8, reduction=2)
        self.mbconv = MultiBranchConv(8)
        self.conv_pooled = nn.Conv2d(8, 8, 3, padding=1)                    # zero padding, as trained
        self.fc = nn.Linear(8, channels)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        f = act(self.norm_in(self.conv_in(y)))                              # (B, 8, 128, 128)
        f = self.mbconv(self.attn(f))
        f = F.avg_pool2d(f, NET_INPUT_SIZE // 8)                            # (B, 8, 8, 8)
        f = act(self.conv_pooled(f)).mean(dim=(2, 3))                       # (B, 8)
        return torch.sigmoid(self.fc(f))                                    # (B, 28)


class ChromaLutNet(nn.Module):
    """D_chroma: ``(B, 3, H, W)`` Y'CbCr -> ``(B, 2, 24, 24)`` CbCr LUT (base LUT + tanh residual)."""

    def __init__(self, bins: int = LUT_BINS, channels: int = BOTTLENECK, mobile_histogram: bool = False) -> None:
        super().__init__()
        self.mobile_histogram = mobile_histogram                            # cbcr_histogram_mobile (same in fp32)
        self.register_buffer("bin_grid", identity_cbcr_grid(bins), persistent=False)
        self.base_lut = nn.Parameter(identity_cbcr_grid(bins))
        self.hist = HistogramNet()
        self.enc1 = ConvStage(6, channels, norm=True)
        self.enc2 = ConvStage(channels, channels, mbconv=True)
        self.enc3 = ConvStage(channels, channels)
        self.attn = CoordAttention(channels)
        self.luma_gate = LumaGate(channels)
        self.dec1 = ConvStage(channels, channels, norm=True)
        self.dec2 = ConvStage(channels, channels, mbconv=True)
        self.dec3 = ConvStage(channels, channels)
        self.head = nn.Conv2d(channels, 2, 1)

    def forward(self, ycbcr: torch.Tensor) -> torch.Tensor:
        b = ycbcr.shape[0]
        thumb = F.interpolate(ycbcr, size=(NET_INPUT_SIZE, NET_INPUT_SIZE), mode="bilinear",
                              align_corners=True)                           # (B, 3, 128, 128)
        histogram = cbcr_histogram_mobile if self.mobile_histogram else cbcr_histogram
        hist = histogram(thumb[:, 1:3], self.bin_grid.shape[-1])            # (B, 1, 24, 24)
        grid = self.bin_grid if b == 1 else self.bin_grid.expand(b, -1, -1, -1)   # no BROADCAST_TO at batch 1
        x = torch.cat([self.hist(hist), grid], dim=1)                       # (B, 6, 24, 24)
        x = self.attn(self.enc3(self.enc2(self.enc1(x))))                   # (B, 28, 24, 24)
        x = x * self.luma_gate(thumb[:, 0:1]).view(b, -1, 1, 1)
        x = self.dec3(self.dec2(self.dec1(x)))
        return self.base_lut + torch.tanh(self.head(x))                     # (B, 2, 24, 24)


class ChromaMapping(nn.Module):
    """Chroma stage: ``forward(x_rgb) -> (x_out, chroma_lut_param)``.

    ``x_rgb``: ``(B, 3, H, W)`` linear sRGB after LTM (or after the 3-D LUT), clamped to [0, 1] on entry; returns
    RGB in [0, 1] and the ``(B, 2, 24, 24)`` LUT. ``*_ycbcr`` variants take BT.709 Y'CbCr directly (the pipeline
    applies tone edits on Y before this stage). ``lookup``: ``"reference"`` (grid_sample) or ``"mobile"`` (GPU-safe
    lookup and histogram, equal in float32; module docstring).
    """

    def __init__(self, lookup: str = "reference") -> None:
        super().__init__()
        if lookup not in LOOKUP_MODES:
            raise ValueError(f"lookup must be one of {LOOKUP_MODES}, got {lookup!r}")
        self.lookup = lookup
        self.net = ChromaLutNet(mobile_histogram=lookup == "mobile")

    def predict_ycbcr(self, ycbcr: torch.Tensor) -> torch.Tensor:
        return self.net(ycbcr)

    def predict(self, x_rgb: torch.Tensor) -> torch.Tensor:
        return self.net(rgb_to_ycbcr(x_rgb))

    def apply_ycbcr(self, ycbcr: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
        return apply_chroma_ycbcr(ycbcr, lut, self.lookup)

    def apply(self, x_rgb: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
        return apply_chroma_ycbcr(rgb_to_ycbcr(x_rgb), lut, self.lookup)

    def forward_ycbcr(self, ycbcr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lut = self.net(ycbcr)
        return apply_chroma_ycbcr(ycbcr, lut, self.lookup), lut

    def forward(self, x_rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_ycbcr(rgb_to_ycbcr(x_rgb))


# ----------------------------------------------------------------------------------------------- checkpoint

CHECKPOINT_PREFIX = "_lut_net."
#: the official buffer holding the identity meshgrid; rebuilt here (``ChromaLutNet.bin_grid``), checked, dropped
CONSTANT_KEYS = ("net.identity_grid",)

_STAGES = (("enc1", "1", "norm"), ("enc2", "2", "mbconv"), ("dec1", "1", "norm"), ("dec2", "2", "mbconv"))

#: official ``_lut_net.*`` keys (prefix stripped) -> ours (relative to :class:`ChromaMapping`), in order
KEY_RULES = (
    *BLOCK_KEY_RULES,
    (r"^_base_lut$", "base_lut"),
    (r"^_hist_net\.0\.", "hist.conv1."),
    (r"^_hist_net\.1\.", "hist.norm1."),
    (r"^_hist_net\.3\.", "hist.conv2."),
    (r"^_hist_net\.5\.", "hist.proj."),
    (r"^_(enc|dec)([123])\.0\.", r"\1\2.conv."),
    *((rf"^_{stage}\.{i}\.", f"{stage}.{name}.") for stage, i, name in _STAGES),
    (r"^_coord_attn\.", "attn."),
    (r"^_out\.0\.", "head."),
    (r"^_y_net\.0\.", "luma_gate.conv_in."),
    (r"^_y_net\.1\.", "luma_gate.norm_in."),
    (r"^_y_net\.3\.", "luma_gate.attn."),
    (r"^_y_net\.4\.", "luma_gate.mbconv."),
    (r"^_y_net\.6\.", "luma_gate.conv_pooled."),
    (r"^_y_net\.10\.", "luma_gate.fc."),
    (r"^", "net."),
)


def load_chroma(path: str | Path, lookup: str = "reference") -> ChromaMapping:
    """Build :class:`ChromaMapping` and load the ``_lut_net.`` weights of a photofinishing checkpoint strictly."""
    module = ChromaMapping(lookup=lookup)
    sd = remap_keys(select_prefix(read_state_dict(path), CHECKPOINT_PREFIX), KEY_RULES)
    rebuilt = module.net.bin_grid
    for key in CONSTANT_KEYS:
        v = sd.get(key)
        if v is None or v.shape != rebuilt.shape or not torch.allclose(v.float(), rebuilt, atol=1e-6):
            raise ValueError(f"{path}: constant {key!r} is missing or differs from the identity CbCr grid this "
                             "project rebuilds")
    load_strict(module, sd, path, ignore=CONSTANT_KEYS)
    return module.eval()


def _build(cfg: BuildConfig, lookup: str = "reference") -> ChromaMapping:
    return load_chroma(cfg.photofinishing_checkpoint, lookup=lookup)


SPEC = StageSpec(
    id="chroma",
    build=_build,
    inputs=(
        TensorSpec("lsrgb_ltm", "B,3,H/4,W/4", (0.0, 1.0),
                   "after local tone mapping (after the 3-D LUT for the -lut styles); clamped to [0, 1]"),
    ),
    outputs=(
        TensorSpec("processed_lsrgb", "B,3,H/4,W/4", (0.0, 1.0), "after chroma mapping"),
        TensorSpec("chroma_lut_param", "B,2,24,24", None,
                   "CbCr LUT: out[c] = L[c, row(Cr), col(Cb)], nodes at 24 even steps on [-0.5, 0.5]"),
    ),
    resolution="quarter",
    paper="Sec. 2.3 (chroma mapping); supp. C.6 (network, Fig. 17) and D (differentiable histogram)",
    checkpoint=lambda cfg: cfg.photofinishing_checkpoint,
)
