"""Optional image-independent 11x11x11 RGB 3-D LUT of the artistic "-lut" styles (paper Sec. 2.3, "For artistic
picture styles ...").

Applied to the tone-mapped image ``lsrgb_ltm`` before chroma mapping: each pixel's RGB, clamped to [0, 1], is looked
up by trilinear interpolation in a table with 11 nodes per axis (nodes at k/10, ``align_corners=True``).

Table layout (as stored in the checkpoint, ``(1, 3, 11, 11, 11)`` = ``(1, C_out, D, H, W)``): the official lookup is
a 5-D ``grid_sample`` whose grid holds ``(R, G, B)``, and ``grid_sample`` reads the last grid component as the
*first* volume axis, so::

    out[c](R, G, B) = trilinear table[0, c, B-axis, G-axis, R-axis]

i.e. **B indexes D, G indexes H, R indexes W**. (The official initialisation builds its "identity" with the R
coordinate along D, so under this lookup it starts as an R<->B swap; the trained tables inherit that: output R
mostly follows input B. The golden style-3 file confirms this axis order bit-exactly, see tests.)

The stored tensor is the pre-activation; the table is ``softplus`` of it (3,993 values), so it is positive and the
output is not clamped (the next stage clamps before its Y'CbCr conversion).

Two formulations, picked in ``__init__`` (``mode``):

* ``"grid_sample"`` (reference): 5-D ``F.grid_sample``, bilinear, ``align_corners=True``;
* ``"tent"`` (export): no ``grid_sample`` and no gathers. Per axis, the 11 tent weights
  ``relu(1 - |p - k|)`` with ``p = 10 * clamp(v, 0, 1)`` (two non-zero, summing to 1); the G and R weights form a
  per-pixel 121-vector (outer product), one matmul with the table as ``(3*11, 121)`` contracts G and R, and a
  weighted sum over the 11 B nodes finishes. About 4.1k multiply-adds and ~220 floats of intermediates per pixel
  (for a 1000x750 quarter-resolution frame: ~0.66 GB in float32 at peak if run in one piece, so runtimes may
  want to tile it). Equal to the reference to ~2e-7 on the shipped tables (tested < 1e-5).

The reference uses ``padding_mode="border"`` where the official call uses the default ``"zeros"``; the two are
identical here because the coordinates are clamped to the table's extent first.

Checkpoint: key ``_3d_lut._lut`` of the five ``photofinishing_s24-style-{1..5}-lut.pth`` files (absent from the
others); building this stage for a configuration without the LUT is a ``ValueError``.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from isp.checkpoints import load_strict, read_state_dict, remap_keys, select_prefix
from isp.registry import BuildConfig, StageSpec, TensorSpec

__all__ = ["LUT_SIZE", "LUT_MODES", "identity_table", "apply_lut3d", "apply_lut3d_grid_sample", "apply_lut3d_tent",
           "tent_weights", "RGBLut3D", "LUT3D_KEY_RULES", "build", "SPEC"]

LUT_SIZE = 11
LUT_MODES = ("grid_sample", "tent")


# ----------------------------------------------------------------------------------------------- pure functions

def identity_table(size: int = LUT_SIZE, dtype: torch.dtype = torch.float32,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """The table that maps every RGB in [0, 1] to itself under :func:`apply_lut3d`: ``(1, 3, N, N, N)``, axes
    ``[c_out, B, G, R]``, so channel 0 grows along the last axis and channel 2 along the first."""
    k = torch.linspace(0.0, 1.0, size, dtype=dtype, device=device)
    b, g, r = torch.meshgrid(k, k, k, indexing="ij")
    return torch.stack([r, g, b], dim=0).unsqueeze(0)



def apply_lut3d_grid_sample(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Reference lookup. ``x`` ``(B, 3, H, W)`` RGB, ``table`` ``(1, 3, N, N, N)`` -> ``(B, 3, H, W)``."""
    b = x.shape[0]
    grid = (x.clamp(0.0, 1.0) * 2.0 - 1.0).permute(0, 2, 3, 1).unsqueeze(1)   # (B, 1, H, W, 3) = (R, G, B)
    vol = table.expand(b, -1, -1, -1, -1)                                     # (B, 3, N, N, N)
    out = F.grid_sample(vol, grid, mode="bilinear", padding_mode="border", align_corners=True)  # (B, 3, 1, H, W)
    return out.squeeze(2)


def tent_weights(v: torch.Tensor, n: int) -> torch.Tensor:
    """Linear-interpolation weights of ``v`` (clamped to [0, 1]) over ``n`` nodes at ``k / (n - 1)``.

    ``(B, H, W) -> (B, n, H, W)``; at most two weights are non-zero and they sum to 1.
    """
    p = v.clamp(0.0, 1.0).unsqueeze(1) * float(n - 1)                        # (B, 1, H, W)
    nodes = torch.arange(n, dtype=v.dtype, device=v.device).reshape(1, n, 1, 1)
    return torch.relu(1.0 - (p - nodes).abs())                               # (B, n, H, W)


def apply_lut3d_tent(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Export-friendly lookup (matmul + elementwise only); same contract as :func:`apply_lut3d_grid_sample`."""
    bsz, _, h, w = x.shape
    n = table.shape[-1]
    w_r = tent_weights(x[:, 0], n).reshape(bsz, 1, n, h * w)                  # (B, 1, N, HW)  -> W axis
    w_g = tent_weights(x[:, 1], n).reshape(bsz, n, 1, h * w)                  # (B, N, 1, HW)  -> H axis
    w_b = tent_weights(x[:, 2], n).reshape(bsz, 1, n, h * w)                  # (B, 1, N, HW)  -> D axis
    w_gr = (w_g * w_r).reshape(bsz, n * n, h * w)                             # (B, N*N, HW), index g*N + r
    t = table.reshape(3 * n, n * n)                                           # (3*N [c, b], N*N [g, r])
    per_b = torch.matmul(t, w_gr).reshape(bsz, 3, n, h * w)                   # (B, 3, N, HW)
    out = (per_b * w_b).sum(dim=2)                                            # (B, 3, HW)
    return out.reshape(bsz, 3, h, w)


def apply_lut3d(x: torch.Tensor, table: torch.Tensor, mode: str = "grid_sample") -> torch.Tensor:
    """Trilinear RGB lookup. ``x`` ``(B, 3, H, W)`` (clamped to [0, 1] inside), ``table`` ``(1, 3, N, N, N)`` laid out
    ``[c_out, B, G, R]`` -> ``(B, 3, H, W)``. ``mode``: ``"grid_sample"`` (reference) or ``"tent"`` (export)."""
    if mode == "grid_sample":
        return apply_lut3d_grid_sample(x, table)
    if mode == "tent":
        return apply_lut3d_tent(x, table)
    raise ValueError(f"mode must be one of {LUT_MODES}, got {mode!r}")


# ------------------------------------------------------------------------------------------------------ module

class RGBLut3D(nn.Module):
    """The learned RGB 3-D LUT. ``forward(x)`` ``(B, 3, H/4, W/4)`` (``lsrgb_ltm``) -> same shape (``lsrgb_lut``).

    ``logits`` holds the checkpoint's pre-activation ``(1, 3, N, N, N)``; :attr:`table` is ``softplus(logits)``.
    """

    def __init__(self, mode: str = "grid_sample", size: int = LUT_SIZE) -> None:
        super().__init__()
        if mode not in LUT_MODES:
            raise ValueError(f"mode must be one of {LUT_MODES}, got {mode!r}")
        self.mode = mode
        self.logits = nn.Parameter(torch.zeros(1, 3, size, size, size))

    @property
    def table(self) -> torch.Tensor:
        """``(1, 3, N, N, N)`` positive table, axes ``[c_out, B, G, R]``."""
        return F.softplus(self.logits)

    def identity_table(self) -> torch.Tensor:
        """:func:`identity_table` of this LUT's size, dtype and device (e.g. the "no LUT" end of a style blend)."""
        return identity_table(self.logits.shape[-1], self.logits.dtype, self.logits.device)

    def apply(self, x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        return apply_lut3d(x, table, self.mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return apply_lut3d(x, F.softplus(self.logits), self.mode)


# ------------------------------------------------------------------------------------------ checkpoint + registry

CHECKPOINT_PREFIX = "_3d_lut."
LUT3D_KEY_RULES = ((r"^_lut$", "logits"),)


def load_from_state_dict(module: RGBLut3D, sd: dict[str, torch.Tensor], source: str | Path) -> RGBLut3D:
    """Load ``_3d_lut._lut`` of a full photofinishing state dict into ``module`` (strict). A state dict without it
    is a ``ValueError`` that names ``source``."""
    sub = select_prefix(sd, CHECKPOINT_PREFIX)
    if not sub:
        raise ValueError(f"{source}: no 3-D LUT ('{CHECKPOINT_PREFIX}*' keys) in this checkpoint; only the "
                         "photofinishing_s24-style-{1..5}-lut.pth checkpoints carry one")
    return load_strict(module, remap_keys(sub, LUT3D_KEY_RULES), source)


def build(cfg: BuildConfig, mode: str = "grid_sample") -> RGBLut3D:
    if not cfg.lut:
        raise ValueError(
            f"lut3d: style {cfg.style} with use_lut={cfg.use_lut} selects {cfg.photofinishing_checkpoint.name}, "
            "which has no 3-D LUT; the stage exists only for the -lut checkpoints (styles 1-5 with use_lut=True "
            "or None). Skip the stage for this configuration.")
    path = cfg.photofinishing_checkpoint
    return load_from_state_dict(RGBLut3D(mode), read_state_dict(path), path).eval()


SPEC = StageSpec(
    id="lut3d",
    build=build,
    inputs=(TensorSpec("lsrgb_ltm", "B,3,H/4,W/4", None, "locally tone-mapped linear sRGB (clamped inside)"),),
    outputs=(TensorSpec("lsrgb_lut", "B,3,H/4,W/4", None,
                        "after the RGB 3-D LUT (positive, not clamped; no golden key of its own)"),),
    resolution="quarter",
    paper="Sec. 2.3 (optional 3-D LuT L_RGB of the artistic styles)",
    checkpoint=lambda cfg: cfg.photofinishing_checkpoint if cfg.lut else None,
)
