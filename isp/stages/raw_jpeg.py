"""Raw-JPEG adapter: store a raw image as an ordinary 8-bit JPEG plus a few kilobytes of side data, and get the raw
back from it (the paper's tool, "Raw-JPEG Adapter"; official ``io_/raw_jpeg_adapter_model.py``).

**Encoder** (``raw_jpeg_encode``): a small network looks at the raw (resized bilinearly, align_corners=False, to
100x100) and predicts two invertible operators that make the raw survive 8-bit JPEG quantisation:

* a per-channel monotone LUT with 128 segments, stored as 3x129 unnormalised heights ``lut``; the knots are
  ``normalize_lut(lut)`` = softplus, cumulative sum, then scaled so that knot 0 is 0 and knot 128 is 1
  (:func:`normalize_lut`), at inputs ``t = i / 128``;
* a spatial gamma map ``gamma_map`` (1x100x100) in ``[e^-2, e^2]`` (``exp(2 tanh(.))``).

Network: encoder = [reflect pad 1, 3x3 conv stride 2 3->12, GELU, ECA] (50x50), [same 12->24] (25x25),
[1x1 conv 24->24, GELU] = latent; decoder = [1x1 conv 24->12, GELU, ECA], concat the 25x25 skip, [bilinear x2,
reflect 3x3 conv 36->12, GELU, ECA], concat the 50x50 skip, [bilinear x2, reflect 3x3 conv 24->12, GELU], reflect
3x3 conv 12->1 -> gamma; LUT head from the latent: 3x3 conv stride 2 pad 1 24->12, BatchNorm, GELU, adaptive average
pool 2x2, Linear 48->387. ECA (efficient channel attention): global average, 1-D conv (k=5, zero padded, no bias)
across channels, sigmoid gate. GELU is the exact (erf) form.

Pre-processing (:func:`encode_image`): ``x -> LUT(x)`` (knot ``i = clamp(floor(128 x), 0, 127)``, linear between
knots ``i`` and ``i + 1``), then ``max(., 1e-8) ^ clamp(gamma, 1e-8, 10)`` with the gamma map upsampled bilinearly
(align_corners=False) to the image size. The 8-bit image the JPEG carries is ``floor(clip(.) * 255)``: the
official writer **truncates** (:func:`to_uint8`), and so do we, so that the stored bytes are the official ones.

**Decoder** (``raw_jpeg_decode``, no weights; :func:`decode_image`): ``y`` = decoded JPEG / 255;
``clamp(max(y, 1e-8) ^ (1 / gamma), 0, 1)`` (exponent clamped to [1e-8, 10]); then the inverse LUT: segment
``i = clamp(searchsorted_left(knots, v), 1, 128)``, ``t = (i - 1 + alpha) / 128`` with
``alpha = (v - knot[i-1]) / max(knot[i] - knot[i-1], 1e-6)``; clamp to [0, 1].
A mobile formulation (``RawJpegDecoder(lookup="mobile")``, no searchsorted, gather or pow) computes the inverse
LUT as a sum of clamped segment ramps (:func:`invert_lut_segments`) and the power as exp/log; it is proven equal to
the reference in ``tests/isp/test_raw_jpeg.py``.

Shapes: encode ``raw (B, 3, H, W)`` in [0, 1], ``H, W >= 1`` -> ``jpeg_input (B, 3, H, W)`` (float, before
quantisation), ``gamma_map (B, 1, 100, 100)``, ``lut (B, 3, 129)``; decode ``raw_jpeg (B, 3, H, W)`` in [0, 1],
``gamma_map``, ``lut`` -> ``rec_raw (B, 3, H, W)`` in [0, 1].

Checkpoints: ``io_/models/raw_jpeg_adapter_q_{25,50,75,95}.pth`` (one per JPEG quality, the config's ``quality``
is the quality the raw JPEG is written at); keys remapped by :data:`RAW_JPEG_KEY_RULES`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from isp.checkpoints import load_strict, read_state_dict, remap_keys
from isp.registry import BuildConfig, StageSpec, TensorSpec

__all__ = ["QUALITIES", "MAP_SIZE", "LUT_BINS", "LATENT", "POW_EPS", "LOOKUPS", "normalize_lut", "apply_lut",
           "invert_lut", "invert_lut_segments",
           "encode_image", "decode_image", "to_uint8", "ECA", "RawJpegEncoder", "RawJpegDecoder",
           "RAW_JPEG_KEY_RULES", "checkpoint_path", "config_path", "build_encoder", "build_decoder",
           "SPEC_ENCODE", "SPEC_DECODE", "SPECS"]

QUALITIES = (25, 50, 75, 95)
MAP_SIZE = (100, 100)
LUT_BINS = 128
LUT_CHANNELS = 3
LATENT = 24
ECA_K = 5
#: floor of the base and of the exponent in the adapter's power (the official ``safe_pow``)
POW_EPS = 1e-8
POW_MAX = 10.0
#: floor of a LUT segment's height when inverting it
SEGMENT_EPS = 1e-6
#: decoder formulations: the official one, and one without searchsorted / gather / pow for mobile runtimes
LOOKUPS = ("reference", "mobile")


# ----------------------------------------------------------------------------------------------- pure functions

def normalize_lut(lut: torch.Tensor) -> torch.Tensor:
    """``(B, C, K+1)`` unnormalised heights -> monotone knots from exactly 0 to 1 (softplus, cumsum, rescale)."""
    y = torch.cumsum(F.softplus(lut), dim=2)
    y0, yn = y[:, :, :1], y[:, :, -1:]
    return (y - y0) / (yn - y0)


def apply_lut(x: torch.Tensor, knots: torch.Tensor) -> torch.Tensor:
    """Forward LUT: ``(B, C, H, W)`` through per-channel knots ``(B, C, K+1)`` at ``t = i / K``."""
    b, c, h, w = x.shape
    k = knots.shape[-1] - 1
    flat = x.reshape(b, c, h * w)
    i0 = torch.floor(flat * k).clamp(0, k - 1).long()
    y0 = torch.gather(knots, 2, i0)
    y1 = torch.gather(knots, 2, i0 + 1)
    alpha = flat * k - i0.to(flat.dtype)
    return (y0 + alpha * (y1 - y0)).reshape(b, c, h, w)


def invert_lut(v: torch.Tensor, knots: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`apply_lut` (piecewise linear, segment found by a left binary search)."""
    b, c, h, w = v.shape
    k = knots.shape[-1] - 1
    flat = v.reshape(b, c, h * w).contiguous()
    knots = knots.contiguous()
    i1 = torch.searchsorted(knots, flat, right=False).clamp(1, k)
    i0 = i1 - 1
    y0 = torch.gather(knots, 2, i0)
    y1 = torch.gather(knots, 2, i1)
    alpha = (flat - y0) / (y1 - y0).clamp_min(SEGMENT_EPS)
    t0 = i0.to(flat.dtype) / k
    t1 = i1.to(flat.dtype) / k
    return (t0 + alpha * (t1 - t0)).reshape(b, c, h, w)


def invert_lut_segments(v: torch.Tensor, knots: torch.Tensor) -> torch.Tensor:
    """:func:`invert_lut` without a search or a gather (mobile form): ``t = (1/K) sum_i clamp((v - y_{i-1}) /
    max(y_i - y_{i-1}, 1e-6), 0, 1)``. For monotone knots the segments below ``v`` give 1, the one holding ``v``
    gives alpha and those above give 0, which is the reference's ``(i - 1 + alpha) / K``. K unrolled elementwise
    steps per pixel."""
    k = knots.shape[-1] - 1
    lo = knots[:, :, :-1].unsqueeze(-1).unsqueeze(-1)                                # (B, C, K, 1, 1)
    inv = 1.0 / (knots[:, :, 1:] - knots[:, :, :-1]).clamp_min(SEGMENT_EPS).unsqueeze(-1).unsqueeze(-1)
    t = torch.zeros_like(v)
    for i in range(k):
        t = t + ((v - lo[:, :, i]) * inv[:, :, i]).clamp(0.0, 1.0)
    return t / k


def _adapter_pow(x: torch.Tensor, exponent: torch.Tensor, mobile: bool = False) -> torch.Tensor:
    e = exponent.clamp(POW_EPS, POW_MAX)
    return torch.exp(e * torch.log(x.clamp_min(POW_EPS))) if mobile else torch.pow(x.clamp_min(POW_EPS), e)


def _gamma_full(gamma_map: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(gamma_map, size=like.shape[2:4], mode="bilinear", align_corners=False)


def encode_image(raw: torch.Tensor, gamma_map: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Pre-processing before the JPEG: LUT, then the gamma map. Float output (quantise with :func:`to_uint8`)."""
    x = apply_lut(raw, normalize_lut(lut))
    return _adapter_pow(x, _gamma_full(gamma_map, x))


def decode_image(raw_jpeg: torch.Tensor, gamma_map: torch.Tensor, lut: torch.Tensor,
                 lookup: str = "reference") -> torch.Tensor:
    """Post-processing after the JPEG: inverse gamma, then the inverse LUT; ``(B, 3, H, W)`` in [0, 1].

    ``lookup="mobile"``: the power as exp/log and the inverse LUT by :func:`invert_lut_segments` (no searchsorted,
    no gather), equal to the reference up to float32 rounding (tested)."""
    if lookup not in LOOKUPS:
        raise ValueError(f"lookup must be one of {LOOKUPS}, got {lookup!r}")
    mobile = lookup == "mobile"
    y = _adapter_pow(raw_jpeg, 1.0 / _gamma_full(gamma_map, raw_jpeg), mobile).clamp(0.0, 1.0)
    knots = normalize_lut(lut)
    return (invert_lut_segments(y, knots) if mobile else invert_lut(y, knots)).clamp(0.0, 1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``(1, 3, H, W)`` float -> ``(H, W, 3)`` uint8 by ``floor(clip(x, 0, 1) * 255)`` (the official truncation)."""
    a = x[0].permute(1, 2, 0).detach().to("cpu", torch.float32).numpy()
    return np.ascontiguousarray((np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8))


# ------------------------------------------------------------------------------------------------------ modules

class ECA(nn.Module):
    """Efficient channel attention: ``x * sigmoid(conv1d_k(mean_hw(x)))`` with the 1-D conv across channels."""

    def __init__(self, k: int = ECA_K) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        y = self.conv(x.mean(dim=(2, 3)).reshape(b, 1, c))
        return x * torch.sigmoid(y).reshape(b, c, 1, 1)


def _reflect_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return conv(F.pad(x, (1, 1, 1, 1), mode="reflect"))


class RawJpegEncoder(nn.Module):
    """``forward(raw) -> (jpeg_input, gamma_map, lut)``; see the module docstring. ``quality`` is the JPEG quality
    this checkpoint was trained for (the raw JPEG must be written at it)."""

    def __init__(self, quality: int = 95) -> None:
        super().__init__()
        self.quality = int(quality)
        half = LATENT // 2
        self.enc1 = nn.Conv2d(3, half, 3, stride=2)
        self.enc1_eca = ECA()
        self.enc2 = nn.Conv2d(half, LATENT, 3, stride=2)
        self.enc2_eca = ECA()
        self.enc3 = nn.Conv2d(LATENT, LATENT, 1)
        self.dec = nn.Conv2d(LATENT, half, 1)
        self.dec_eca = ECA()
        self.up1 = nn.Conv2d(half + LATENT, half, 3)
        self.up1_eca = ECA()
        self.up2 = nn.Conv2d(half + half, half, 3)
        self.gamma_out = nn.Conv2d(half, 1, 3)
        self.lut_conv = nn.Conv2d(LATENT, half, 3, stride=2, padding=1)
        self.lut_norm = nn.BatchNorm2d(half)
        self.lut_head = nn.Linear(4 * half, LUT_CHANNELS * (LUT_BINS + 1))

    def params(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, H, W) -> (gamma_map (B, 1, 100, 100), lut (B, 3, 129))``."""
        x = F.interpolate(raw, size=MAP_SIZE, mode="bilinear", align_corners=False)
        s1 = self.enc1_eca(F.gelu(_reflect_conv(self.enc1, x)))          # 50x50
        s2 = self.enc2_eca(F.gelu(_reflect_conv(self.enc2, s1)))         # 25x25
        z = F.gelu(self.enc3(s2))
        x = self.dec_eca(F.gelu(self.dec(z)))
        x = F.interpolate(torch.cat([x, s2], dim=1), scale_factor=2.0, mode="bilinear", align_corners=False)
        x = self.up1_eca(F.gelu(_reflect_conv(self.up1, x)))
        x = F.interpolate(torch.cat([x, s1], dim=1), scale_factor=2.0, mode="bilinear", align_corners=False)
        x = F.gelu(_reflect_conv(self.up2, x))
        gamma_map = torch.exp(2.0 * torch.tanh(_reflect_conv(self.gamma_out, x)))
        y = F.adaptive_avg_pool2d(F.gelu(self.lut_norm(self.lut_conv(z))), (2, 2))
        lut = self.lut_head(y.flatten(1)).reshape(-1, LUT_CHANNELS, LUT_BINS + 1)
        return gamma_map, lut

    def forward(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        gamma_map, lut = self.params(raw)
        return encode_image(raw, gamma_map, lut), gamma_map, lut


class RawJpegDecoder(nn.Module):
    """``forward(raw_jpeg, gamma_map, lut) -> rec_raw`` (:func:`decode_image`). No parameters. ``lookup`` picks
    the reference or the mobile formulation."""

    def __init__(self, lookup: str = "reference") -> None:
        super().__init__()
        if lookup not in LOOKUPS:
            raise ValueError(f"lookup must be one of {LOOKUPS}, got {lookup!r}")
        self.lookup = lookup

    def forward(self, raw_jpeg: torch.Tensor, gamma_map: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
        return decode_image(raw_jpeg, gamma_map, lut, self.lookup)


# ------------------------------------------------------------------------------------------ checkpoint + registry

RAW_JPEG_KEY_RULES = (
    (r"^_encoder\._conv1\.1\.", "enc1."), (r"^_encoder\._conv1\.3\._conv\.", "enc1_eca.conv."),
    (r"^_encoder\._conv2\.1\.", "enc2."), (r"^_encoder\._conv2\.3\._conv\.", "enc2_eca.conv."),
    (r"^_encoder\._conv3\.0\.", "enc3."),
    (r"^_decoder\._conv\.0\.", "dec."), (r"^_decoder\._conv\.2\._conv\.", "dec_eca.conv."),
    (r"^_decoder\._up1\.2\.", "up1."), (r"^_decoder\._up1\.4\._conv\.", "up1_eca.conv."),
    (r"^_decoder\._up2\.2\.", "up2."),
    (r"^_decoder\._gamma_output\.1\.", "gamma_out."),
    (r"^_decoder\._lut_net\.0\.", "lut_conv."), (r"^_decoder\._lut_net\.1\.", "lut_norm."),
    (r"^_decoder\._lut_head\.1\.", "lut_head."),
)


def _quality(cfg: BuildConfig) -> int:
    q = getattr(cfg, "raw_quality", 95)
    if q not in QUALITIES:
        raise ValueError(f"raw JPEG quality must be one of {QUALITIES}, got {q}")
    return q


def checkpoint_path(cfg: BuildConfig) -> Path:
    return cfg.weights / "io_" / "models" / f"raw_jpeg_adapter_q_{_quality(cfg)}.pth"


def config_path(cfg: BuildConfig) -> Path:
    return cfg.weights / "io_" / "config" / f"raw_jpeg_adapter_q_{_quality(cfg)}.json"


def _check_config(path: Path, quality: int) -> None:
    """The architecture above is the only one the release ships; refuse a config that asks for another."""
    try:
        c = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: raw-JPEG adapter config not found (expected next to io_/models)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    want = {"latent_dim": LATENT, "map_size": list(MAP_SIZE), "eca": True, "gamma": True, "scale_dct": False,
            "lut": True, "lut_size": LUT_BINS, "lut_channels": LUT_CHANNELS, "quality": quality}
    bad = {k: (c.get(k), v) for k, v in want.items() if c.get(k) != v}
    if bad:
        raise ValueError(f"{path}: unsupported adapter configuration " +
                         ", ".join(f"{k}={got!r} (this project implements {v!r})" for k, (got, v) in bad.items()))


def build_encoder(cfg: BuildConfig) -> RawJpegEncoder:
    q = _quality(cfg)
    _check_config(config_path(cfg), q)
    path = checkpoint_path(cfg)
    return load_strict(RawJpegEncoder(q), remap_keys(read_state_dict(path), RAW_JPEG_KEY_RULES), path).eval()


def build_decoder(cfg: BuildConfig, lookup: str = "reference") -> RawJpegDecoder:
    return RawJpegDecoder(lookup).eval()


_GAMMA = TensorSpec("gamma_map", "B,1,100,100", (0.1353, 7.3891), "spatial gamma map exp(2 tanh(.))")
_LUT = TensorSpec("lut", "B,3,129", None, "unnormalised LUT heights (normalize_lut gives the knots)")

SPEC_ENCODE = StageSpec(
    id="raw_jpeg_encode",
    build=build_encoder,
    inputs=(TensorSpec("raw", "B,3,H,W", (0.0, 1.0), "demosaiced raw to store"),),
    outputs=(TensorSpec("jpeg_input", "B,3,H,W", (0.0, 1.0), "pre-processed raw, before 8-bit truncation"),
             _GAMMA, _LUT),
    resolution="full",
    paper="tool: Raw-JPEG Adapter (encoder)",
    checkpoint=checkpoint_path,
)

SPEC_DECODE = StageSpec(
    id="raw_jpeg_decode",
    build=build_decoder,
    inputs=(TensorSpec("raw_jpeg", "B,3,H,W", (0.0, 1.0), "decoded raw JPEG / 255"), _GAMMA, _LUT),
    outputs=(TensorSpec("rec_raw", "B,3,H,W", (0.0, 1.0), "reconstructed raw"),),
    resolution="full",
    paper="tool: Raw-JPEG Adapter (decoder)",
)

SPECS = {s.id: s for s in (SPEC_ENCODE, SPEC_DECODE)}
