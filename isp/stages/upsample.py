"""Bilateral guided upsampling with per-channel gated regularisation (paper Sec. 2.4; supplementary Sec. E), and the
1/4 downscale that feeds photofinishing.

Photofinishing runs on ``lsrgb_ds`` (1/4 resolution) and returns ``gamma_out``. BGU [Chen et al. 2016] transfers that
edit to full resolution: it fits one affine colour transform per cell of a bilateral grid (``lsrgb_ds -> gamma_out``)
and slices the grid with the full-resolution ``lsrgb`` as guide.

Grid (fixed, as the official pipeline's ``BGU(reg_lambda=1e-7, reg_T=True)``)
    ``gh = round(h / 16)``, ``gw = round(w / 16)`` spatial cells (Python rounding: halves go to even, so the low-res
    image must be at least 9x9) and ``gd = 16`` depth bins over the guide ``z = 0.2989 R + 0.5870 G + 0.1140 B``.
    A low-res pixel (x, y) sits at grid position ``((x + .5)(gw - 1) / w, (y + .5)(gh - 1) / h, z (gd - 1))`` and is
    splatted with trilinear (tent) weights ``w_pk``; a full-res pixel is sliced at ``((x + .5)(gw - 1) / W, ...)``.

Fit, per cell k, with ``a = (R, G, B, 1)`` of the low-res input and ``o`` the low-res target
    ``S_k = sum_p w_pk a a^T`` (4x4), ``T_k = sum_p w_pk o a^T`` (3x4), cell weight ``n_k = S_k[3, 3]``,
    ``mu_k = lambda (n_k + 1)`` with ``lambda = 1e-7``;
    ``gamma_k = argmin sum_p w_pk |o - gamma a|^2 + mu_k |gamma - D_k|_F^2``, i.e. ``gamma_k (S_k + mu_k I) =
    T_k + mu_k D_k``. ``D_k = [diag(g_k) | 0]`` pulls *each channel separately* towards a pure gain (no achromatic
    coupling, no grid blur): the local gain ``g_k,c = T_k[c, 3] / (S_k[c, 3] + mu_k)`` (``sum o_c / sum in_c``)
    in a cell with weight, and in an empty cell (``n_k == 0``) the global gain
    ``sum_k T_k[c, 3] / (sum_k S_k[c, 3] + lambda (sum_k n_k + 1))`` pooled over the whole grid, which makes an empty
    cell exactly ``[diag(g_global) | 0]``.
Slice
    trilinear interpolation of the 12 coefficients at each full-res pixel, ``out = gamma(p) a(p)``, clipped to [0, 1].

Two modes, chosen in ``__init__``; both give grids in the layout ``(B, 12, gd, gh, gw)`` (coefficient ``4 c + j``,
``j = 3`` the offset):

``"reference"``: the official algorithm step by step. Per-pixel outer products are scatter-added into the grid
    (pixel major, corner minor, in the official corner order, which is also the official float32 summation
    order); ``torch.linalg.solve`` runs per cell in float32 and is redone in float64 on ``LinAlgError``; slicing is a
    5-D ``grid_sample``. Golden parity 78.4–93.6 dB.
``"mobile"``: matmul, elementwise ops, floor/abs/relu/clamp, cat, reshape and slicing with static bounds only.
    * splat: which cells a pixel reaches along x and y is fixed by the image size, so the spatial splat is
      ``W_y @ F @ W_x^T`` with constant tent matrices (built with numpy from the shapes at trace time). Along depth,
      each pixel's two bins depend on the data; they are handled densely with one pass per bin, weight
      ``(1 - f_z)[z0 == k] + f_z [z1 == k]``, where ``[v == k]`` is written ``relu(1 - |v - k|)``. Nothing
      needs scatter.
    * solve: the same normal equations, rewritten to keep their precision in float32. A second splat pass
      accumulates moments *centred on each cell's mean* ``c_k = sum w in / (n + mu)``: the pixel's shift is the
      value of the cell it is splatted into, gathered with one-hot matrices. The 4 spatial corners sit side by side
      in one ``(2h, 2w)`` map, so gathering and splatting are one matmul pair per depth bin. The offset column is
      then eliminated (Schur complement; exact for any shift, since the ``mu |gamma - D|^2`` term is carried through
      the change of variables). The remaining 3x3 SPD system is solved with an unrolled LDL^T, and the offset is
      shifted back. The empty-cell gate ``n == 0`` becomes ``1 - clamp(n * 1e30, 0, 1)``, so a cell whose total
      weight is below 1e-30 counts as empty.
    * slice: for each depth bin, the coefficient grid is interpolated bilinearly with constant matrices
      ``R_y @ G_k @ R_x^T``, the affine transform is applied, and the bins are summed with tent weights
      ``relu(1 - |z (gd - 1) - k|)`` (the same as ``grid_sample``'s zero padding outside the grid).

Numerics: why mobile is not bit-equal to reference. The normal equations are badly conditioned: the regulariser
``mu = 1e-7 n`` is at the float32 rounding level of the raw moments ``S`` (entries ~n). So the official float32
result depends on summation order: accumulating the same contributions in another order moves the golden outputs by
up to ~2e-2, and the reference in float32 differs from the same algorithm in float64 by 2.0e-5 … 3.2e-2 (max abs,
per golden file). The mobile mode is the same mathematics, evaluated stably:
    * in float64 it matches the float64 reference to ~1e-10;
    * in float32 it is within 1.0e-6 … 4.3e-4 (max abs) of the float64 reference on the golden files, with 99.99 %
      of pixels within 5.1e-5. That is 20–200x closer to the exact solution than the official float32 code.
Its golden parity is 74.4–93.6 dB: the golden files carry the official float32 noise. The worst pixels come from
cells with tiny total weight (n ~ 0.1–2) and large coefficients (|gamma| ~ 20). The fit needs float32, since fp16
would lose the regulariser entirely; the slice is benign.

Tiling: what is global and what is local.
    * The fit is global. The grid geometry depends on the full low-res size, and the fallback gain of empty cells is
      pooled over the whole grid. Run it once on the whole 1/4-res image (1/16 of the pixels); the grid is
      ``B x 12 x 16 x gh x gw`` floats, about 2 MB for a 12 MP frame.
    * The slice is pixel-local given the grid. A full-res pixel reads only the cells around its grid position
      ``((x + .5)(gw - 1) / W, ...)``, which depends on the *full* frame size and on the pixel's absolute
      coordinates. This stage therefore needs no tile overlap: pass ``offset`` and ``full_size`` to
      :func:`bgu_slice_mobile`, which reads only the grid window the tile touches and equals slicing the whole
      frame and cropping.
    * :func:`downsample` is global in its sampling positions (``align_corners=True`` maps output i to input
      ``i (H - 1) / (h - 1)``), so run it on the whole ``lsrgb``, or on tiles with those exact positions.

Cost (mobile). The splat matmuls are dense over banded tent matrices: about ``16 x (91 gh + 12 gw)`` MAC per low-res
pixel, roughly 60 GMAC for a 12 MP frame. Contracting each cell's band (slice and sum) would cut this about 30x, and it is
the first thing to optimise for phones. The slice costs about ``16 x 12 x min(rows, cols)`` MAC per full-res pixel,
where ``rows x cols`` is the grid window the tile reads (about 10 x 10 for 512-pixel tiles of a 12 MP frame). Memory
is bounded by one depth bin at a time.

Sizes: ``lsrgb (B, 3, H, W)`` with any ``H, W >= 1``; ``lsrgb_ds`` and ``gamma_out (B, 3, h, w)`` with ``h, w >= 9``
(``round(h / 16) >= 1``). ``H = 4h`` is not required; the official code does not require it either. The guide is
expected in [0, 1]; outside that range the splat clamps to the end bins and the slice fades to zero, as the
official code does.

Deliberate deviations. The official global gain adds the pooled regulariser of shape ``(B,)`` to a ``(B, 3)``
tensor, which fails for ``B = 2`` and mixes images for ``B = 3``; here it is per image (identical for ``B = 1``,
the official pipeline's batch). The official ``weight_image`` and ``grid_size`` options are not exposed, since the
pipeline uses neither. ``"mobile"`` differs from ``"reference"`` only by float32 rounding, as described above.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from isp.registry import BuildConfig, StageSpec, TensorSpec

__all__ = ["REG_LAMBDA", "GRID_DEPTH", "MODES", "downsample", "luma", "grid_shape", "bgu_fit_reference",
           "bgu_slice_reference", "bgu_fit_mobile", "bgu_slice_mobile", "guided_upsample", "check_inputs",
           "GuidedUpsampling", "SPEC"]

REG_LAMBDA = 1e-7
GRID_DEPTH = 16
CELL_SIZE = 16                      # low-res pixels per spatial cell (before rounding)
MODES = ("reference", "mobile")
_LUMA = (0.2989, 0.5870, 0.1140)
_EMPTY_SCALE = 1e30                 # n * 1e30 >= 1 for any cell weight n >= 1e-30


# ----------------------------------------------------------------------------------------------------------- common

def downsample(x: torch.Tensor) -> torch.Tensor:
    """The photofinishing input: bilinear 1/4 downscale with ``align_corners=True``.

    ``(B, C, H, W) -> (B, C, floor(H/4), floor(W/4))`` (``H, W >= 4``). With ``align_corners=True`` the scale factor
    only sets the output size; output pixel i samples input position ``i (H - 1) / (h - 1)``.
    """
    return F.interpolate(x, scale_factor=0.25, mode="bilinear", align_corners=True)


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """BGU guide ``0.2989 R + 0.5870 G + 0.1140 B``: ``(B, 3, H, W) -> (B, 1, H, W)``."""
    return _LUMA[0] * rgb[:, 0:1] + _LUMA[1] * rgb[:, 1:2] + _LUMA[2] * rgb[:, 2:3]


def grid_shape(h: int, w: int) -> tuple[int, int, int]:
    """``(gh, gw, gd)`` for a low-res image of ``h x w`` (Python ``round``: halves to even)."""
    return round(h / CELL_SIZE), round(w / CELL_SIZE), GRID_DEPTH


def _np_dtype(dtype: torch.dtype):
    return np.float64 if dtype == torch.float64 else np.float32


def _splat_positions(n_px: int, n_cells: int, dt) -> np.ndarray:
    """Grid position of each low-res pixel centre along one axis, in the official float arithmetic."""
    i = np.arange(n_px, dtype=dt)
    return (i + dt(0.5)) * dt(n_cells - 1) / dt(n_px)


def _slice_positions(start: int, n_px: int, n_full: int, n_cells: int, dt) -> np.ndarray:
    """Grid position of full-res pixels ``start … start + n_px - 1`` of an axis of length ``n_full``
    (the official normalised coordinate, unnormalised as ``grid_sample(align_corners=True)`` does)."""
    i = np.arange(start, start + n_px, dtype=dt)
    g = (i + dt(0.5)) * dt(2.0 / n_full) - dt(1.0)
    return ((g + dt(1.0)) / dt(2.0)) * dt(n_cells - 1)


def _tent(pos: np.ndarray, n_cells: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Linear-interpolation structure of positions on ``n_cells`` nodes: one-hot ``(cells, px)`` matrices of the
    lower and upper node and their weights ``(px,)`` (upper node clamped to the last cell, as the official code)."""
    i0 = np.clip(np.floor(pos), 0, n_cells - 1)
    i1 = np.minimum(i0 + 1, n_cells - 1)
    f = pos - i0
    cells = np.arange(n_cells, dtype=pos.dtype)[:, None]
    return (cells == i0[None]).astype(pos.dtype), (cells == i1[None]).astype(pos.dtype), 1 - f, f


def _const(a: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """A shape-derived constant (built with numpy at trace time, so it is a constant of the exported graph)."""
    return torch.from_numpy(np.ascontiguousarray(a)).to(device=like.device, dtype=like.dtype)


# -------------------------------------------------------------------------------------------------------- reference

#: low-res pixels splatted at once by :func:`bgu_fit_reference`
FIT_PIXELS = 1 << 16


def bgu_fit_reference(lsrgb_ds: torch.Tensor, gamma_out: torch.Tensor, reg_lambda: float = REG_LAMBDA,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Official fit: ``(B, 3, h, w)`` input and target -> grid ``(B, 12, 16, gh, gw)`` in ``dtype``.

    Scatter-add of per-pixel outer products and ``torch.linalg.solve``; not exportable to mobile converters.
    """
    x = lsrgb_ds.to(dtype)
    y = gamma_out.to(dtype)
    b, c, h, w = x.shape
    gh, gw, gd = grid_shape(h, w)
    n_px, n_cells, k = h * w, gh * gw * gd, c + 1

    dt = _np_dtype(dtype)
    dev = x.device
    gy = torch.from_numpy(_splat_positions(h, gh, dt)).to(dev).view(1, h, 1).expand(b, h, w)
    gx = torch.from_numpy(_splat_positions(w, gw, dt)).to(dev).view(1, 1, w).expand(b, h, w)
    gz = luma(x)[:, 0] * (gd - 1)
    x0, y0, z0 = (t.floor().long().clamp(0, m - 1) for t, m in ((gx, gw), (gy, gh), (gz, gd)))
    x1, y1, z1 = (x0 + 1).clamp(max=gw - 1), (y0 + 1).clamp(max=gh - 1), (z0 + 1).clamp(max=gd - 1)
    fx, fy, fz = ((t - i.to(dtype)).reshape(b, n_px) for t, i in ((gx, x0), (gy, y0), (gz, z0)))

    # the 8 corners, x-major then y then z (the official order)
    corners = [(xi, yi, zi) for xi in (x0, x1) for yi in (y0, y1) for zi in (z0, z1)]
    index = torch.stack([(yi * (gw * gd) + xi * gd + zi).reshape(b, n_px) for xi, yi, zi in corners], -1)
    wx, wy, wz = (1 - fx, fx), (1 - fy, fy), (1 - fz, fz)
    weight = torch.stack([wx[i] * wy[j] * wz[l] for i in (0, 1) for j in (0, 1) for l in (0, 1)], -1)  # (B, N, 8)

    a = torch.cat([x, torch.ones_like(x[:, :1])], 1).permute(0, 2, 3, 1).reshape(b, n_px, k)
    o = y.permute(0, 2, 3, 1).reshape(b, n_px, 3)
    flat = (index + (torch.arange(b, device=dev) * n_cells).view(b, 1, 1))                      # (B, N, 8)
    s = torch.zeros(b * n_cells, k, k, dtype=dtype, device=dev)
    t = torch.zeros(b * n_cells, 3, k, dtype=dtype, device=dev)
    # scatter-add pixel major, corner minor (the official order), FIT_PIXELS pixels at a time: chunks in pixel
    # order add to every cell in the same order as one pass, with temporaries of ~FIT_PIXELS * 1 KB, not ~N KB
    for p0 in range(0, n_px, FIT_PIXELS):
        sl = slice(p0, p0 + FIT_PIXELS)
        wgt = weight[:, sl, :, None, None]
        aa = (a[:, sl, :, None] * a[:, sl, None, :])[:, :, None] * wgt                    # (B, n, 8, 4, 4)
        oa = (o[:, sl, :, None] * a[:, sl, None, :])[:, :, None] * wgt                    # (B, n, 8, 3, 4)
        idx = flat[:, sl].reshape(-1).view(-1, 1, 1)
        s.scatter_add_(0, idx.expand(-1, k, k), aa.reshape(-1, k, k))
        t.scatter_add_(0, idx.expand(-1, 3, k), oa.reshape(-1, 3, k))
    s, t = s.view(b, n_cells, k, k), t.view(b, n_cells, 3, k)

    n = s[..., -1, -1]                                                                   # (B, M)
    mu = reg_lambda * (n + 1)
    s_reg = s + mu[..., None, None] * torch.eye(k, dtype=dtype, device=dev)
    mu_global = reg_lambda * (n.sum(1) + 1.0)                                            # (B,)
    gain_global = t.sum(1)[:, :, 3] / (s.sum(1)[:, :3, 3] + mu_global[:, None])          # (B, 3)
    gain_local = t[..., :, 3] / (s[..., :3, 3] + mu[..., None])                          # (B, M, 3)
    gain = torch.where((n == 0)[..., None], gain_global[:, None, :].expand_as(gain_local), gain_local)
    default = torch.cat([torch.diag_embed(gain), torch.zeros_like(t[..., 3:])], -1)     # [diag(g) | 0]
    t_reg = t + mu[..., None, None] * default
    gamma = torch.linalg.solve(s_reg.transpose(-1, -2), t_reg.transpose(-1, -2)).transpose(-1, -2)  # (B, M, 3, 4)
    return gamma.reshape(b, gh, gw, gd, 3 * k).permute(0, 4, 3, 1, 2).contiguous()      # (B, 12, gd, gh, gw)


def _fit_reference_official(lsrgb_ds: torch.Tensor, gamma_out: torch.Tensor, reg_lambda: float) -> torch.Tensor:
    """Float32 fit, redone in float64 if a cell system is singular (the official fallback); float32 grid."""
    try:
        return bgu_fit_reference(lsrgb_ds, gamma_out, reg_lambda, torch.float32)
    except torch.linalg.LinAlgError:
        return bgu_fit_reference(lsrgb_ds, gamma_out, reg_lambda, torch.float64).float()


#: rows of the full-resolution frame sliced at once by :func:`bgu_slice_reference` (its per-pixel coefficients are
#: 12 floats a pixel: a whole 12 MP frame at once would need ~1.2 GB of temporaries)
SLICE_ROWS = 128


def bgu_slice_reference(grid: torch.Tensor, lsrgb: torch.Tensor, rows: int = SLICE_ROWS) -> torch.Tensor:
    """Official slice: 5-D ``grid_sample`` of the grid at each full-res pixel, affine transform, clip.

    ``grid (B, 12, gd, gh, gw)``, ``lsrgb (B, 3, H, W)`` -> ``(B, 3, H, W)`` in [0, 1], computed in ``grid.dtype``.
    Every pixel is sliced on its own, so the frame is done ``rows`` rows at a time (bounded memory, same values).
    """
    dtype = grid.dtype
    b, _, h, w = lsrgb.shape
    out = torch.empty(b, 3, h, w, dtype=dtype, device=lsrgb.device)
    gx = (torch.arange(w, dtype=dtype, device=lsrgb.device) + 0.5) * (2.0 / w) - 1.0
    gy_all = (torch.arange(h, dtype=dtype, device=lsrgb.device) + 0.5) * (2.0 / h) - 1.0
    for r0 in range(0, h, rows):
        x = lsrgb[:, :, r0:r0 + rows].to(dtype)
        n = x.shape[2]
        gz = luma(x)[:, 0] * 2.0 - 1.0
        yy, xx = torch.meshgrid(gy_all[r0:r0 + n], gx, indexing="ij")
        coords = torch.stack([xx.expand(b, n, w), yy.expand(b, n, w), gz], -1).unsqueeze(1)  # (B, 1, n, W, 3)
        coef = F.grid_sample(grid, coords, mode="bilinear", align_corners=True)[:, :, 0]        # (B, 12, n, W)
        coef = coef.reshape(b, 3, 4, n, w).permute(0, 3, 4, 1, 2)                               # (B, n, W, 3, 4)
        a = torch.cat([x, torch.ones_like(x[:, :1])], 1).permute(0, 2, 3, 1)                    # (B, n, W, 4)
        out[:, :, r0:r0 + n] = torch.einsum("bhwij,bhwj->bhwi", coef, a).permute(0, 3, 1, 2).clamp(0.0, 1.0)
    return out


# ----------------------------------------------------------------------------------------------------------- mobile

def _is_index(v: torch.Tensor, k: int) -> torch.Tensor:
    """``[v == k]`` as 0/1 for integer-valued ``v`` using elementwise ops only."""
    return torch.relu(1.0 - torch.abs(v - float(k)))


def _depth_splat_weights(guide: torch.Tensor, gd: int) -> list[torch.Tensor]:
    """Tent weight of each pixel for each depth bin, clamped at the ends as in the official splat. ``(B,1,h,w)``."""
    gz = guide * float(gd - 1)
    z0 = torch.floor(gz).clamp(0.0, float(gd - 1))
    z1 = (z0 + 1.0).clamp(max=float(gd - 1))
    fz = gz - z0
    return [(1.0 - fz) * _is_index(z0, k) + fz * _is_index(z1, k) for k in range(gd)]


def _solve_cells(n, sx, so, c, cov, sd, od, reg_lambda: float) -> torch.Tensor:
    """Per-cell regularised least squares from centred moments, elementwise over ``(B, gd, gh, gw)``.

    ``n`` weight, ``sx``/``so`` (lists of 3) raw sums of input/target, ``c`` (3) the centring shift, ``cov`` (6: 00 01
    02 11 12 22) and ``sd`` (3) the moments of ``d = a - c``, ``od`` (3x3) ``sum w o d^T``. Returns ``(B,12,gd,gh,gw)``.
    """
    mu = reg_lambda * (n + 1.0)
    r = n + mu
    q = [sd[i] - mu * c[i] for i in range(3)]
    sym = {(0, 0): 0, (0, 1): 1, (0, 2): 2, (1, 1): 3, (1, 2): 4, (2, 2): 5}

    def m(i: int, j: int) -> torch.Tensor:           # 3x3 Schur complement of the offset row/column
        p = cov[sym[(min(i, j), max(i, j))]] + mu * c[i] * c[j]
        p = p + mu if i == j else p
        return p - q[i] * q[j] / r

    # gated per-channel default gains: local sum(o)/sum(in) in cells with weight, pooled global gain in empty ones
    mu_global = reg_lambda * (n.sum(dim=(1, 2, 3), keepdim=True) + 1.0)
    empty = 1.0 - torch.clamp(n * _EMPTY_SCALE, 0.0, 1.0)
    gain = []
    for ch in range(3):
        local = so[ch] / (sx[ch] + mu)
        pooled = so[ch].sum(dim=(1, 2, 3), keepdim=True) / (sx[ch].sum(dim=(1, 2, 3), keepdim=True) + mu_global)
        gain.append(local + empty * (pooled - local))

    # unrolled LDL^T of the SPD 3x3 system
    d0 = m(0, 0)
    l10, l20 = m(1, 0) / d0, m(2, 0) / d0
    d1 = m(1, 1) - l10 * l10 * d0
    l21 = (m(2, 1) - l20 * l10 * d0) / d1
    d2 = m(2, 2) - l20 * l20 * d0 - l21 * l21 * d1

    rows = []
    for o in range(3):
        rhs = [od[o][j] - so[o] * q[j] / r for j in range(3)]
        rhs[o] = rhs[o] + mu * gain[o]
        y1 = rhs[1] - l10 * rhs[0]
        y2 = rhs[2] - l20 * rhs[0] - l21 * y1
        a2 = y2 / d2
        a1 = y1 / d1 - l21 * a2
        a0 = rhs[0] / d0 - l10 * a1 - l20 * a2
        offset_centred = (so[o] - (a0 * q[0] + a1 * q[1] + a2 * q[2])) / r
        offset = offset_centred - (a0 * c[0] + a1 * c[1] + a2 * c[2])
        rows += [a0, a1, a2, offset]
    return torch.stack(rows, 1)                                                     # (B, 12, gd, gh, gw)


def bgu_fit_mobile(lsrgb_ds: torch.Tensor, gamma_out: torch.Tensor, reg_lambda: float = REG_LAMBDA) -> torch.Tensor:
    """Export-friendly fit (same maths as :func:`bgu_fit_reference`, centred for float32 accuracy).

    ``(B, 3, h, w)`` input and target -> grid ``(B, 12, 16, gh, gw)`` in the input dtype.
    """
    x, y = lsrgb_ds, gamma_out.to(lsrgb_ds.dtype)
    b, _, h, w = x.shape
    gh, gw, gd = grid_shape(h, w)
    dt = _np_dtype(x.dtype)
    ylo, yhi, wylo, wyhi = _tent(_splat_positions(h, gh, dt), gh)               # (gh, h) one-hots, (h,) weights
    xlo, xhi, wxlo, wxhi = _tent(_splat_positions(w, gw, dt), gw)
    splat_y = _const(ylo * wylo + yhi * wyhi, x)                                 # (gh, h) tent splat matrix
    splat_xt = _const((xlo * wxlo + xhi * wxhi).T, x)                            # (w, gw)
    # the 4 spatial corners side by side: quadrant (i, j) of a (2h, 2w) map holds corner (y_i, x_j); gathering a cell
    # value to every pixel of every quadrant and splatting all quadrants back are one matmul pair each
    gather_y4 = _const(np.concatenate([ylo, yhi], 1).T, x)                       # (2h, gh)
    gather_x4 = _const(np.concatenate([xlo, xhi], 1), x)                         # (gw, 2w)
    splat_y4 = _const(np.concatenate([ylo * wylo, yhi * wyhi], 1), x)            # (gh, 2h)
    splat_x4t = _const(np.concatenate([xlo * wxlo, xhi * wxhi], 1).T, x)         # (2w, gw)
    x4 = torch.cat([torch.cat([x, x], 2), torch.cat([x, x], 2)], 3)              # (B, 3, 2h, 2w)
    y4 = torch.cat([torch.cat([y, y], 2), torch.cat([y, y], 2)], 3)

    # pass 1: weight and raw sums of input and target per cell
    base = torch.cat([torch.ones_like(x[:, :1]), x, y], 1)                       # (B, 7, h, w)
    raw = torch.stack([splat_y @ (base * wk) @ splat_xt for wk in _depth_splat_weights(luma(x), gd)], 2)
    n, sx, so = raw[:, 0], raw[:, 1:4], raw[:, 4:7]                              # (B, [3,] gd, gh, gw)
    shift = sx / (n + reg_lambda * (n + 1.0)).unsqueeze(1)                       # (B, 3, gd, gh, gw) cell means

    # pass 2: moments of d = input - (mean of the cell it is splatted into)
    centred = []
    for k, wk in enumerate(_depth_splat_weights(luma(x4), gd)):
        d = x4 - gather_y4 @ shift[:, :, k] @ gather_x4                          # (B, 3, 2h, 2w)
        dw = d * wk
        feats = torch.cat([(dw.unsqueeze(2) * d.unsqueeze(1)).flatten(1, 2), dw,
                           (y4.unsqueeze(2) * dw.unsqueeze(1)).flatten(1, 2)], 1)  # (B, 21, 2h, 2w)
        centred.append(splat_y4 @ feats @ splat_x4t)                             # (B, 21, gh, gw)
    mom = torch.stack(centred, 2)                                                # (B, 21, gd, gh, gw)

    ch = lambda t, i: t[:, i]                                                    # noqa: E731  (B, gd, gh, gw)
    return _solve_cells(n, [ch(sx, i) for i in range(3)], [ch(so, i) for i in range(3)],
                        [ch(shift, i) for i in range(3)],
                        [ch(mom, 3 * i + j) for i, j in ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))],
                        [ch(mom, 9 + i) for i in range(3)],
                        [[ch(mom, 12 + 3 * o + j) for j in range(3)] for o in range(3)], reg_lambda)


def _slice_window(start: int, n_px: int, n_full: int, n_cells: int, dt) -> tuple[int, int, np.ndarray]:
    """Interpolation matrix ``(px, cells_in_window)`` of a run of full-res pixels and the grid window it reads."""
    lo, hi, wlo, whi = _tent(_slice_positions(start, n_px, n_full, n_cells, dt), n_cells)
    mat = (lo * wlo + hi * whi).T                                                # (px, cells)
    used = np.flatnonzero((lo + hi).sum(1) > 0)
    c0, c1 = int(used.min()), int(used.max()) + 1
    return c0, c1, mat[:, c0:c1]


def bgu_slice_mobile(grid: torch.Tensor, lsrgb: torch.Tensor, offset: tuple[int, int] = (0, 0),
                     full_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Export-friendly slice. ``grid (B, 12, gd, gh, gw)``, ``lsrgb (B, 3, Ht, Wt)`` -> ``(B, 3, Ht, Wt)`` in [0, 1].

    For a tile, ``offset`` is its top-left pixel and ``full_size`` the ``(H, W)`` of the whole frame (default: the
    tile is the frame). The result equals slicing the whole frame and cropping; only the grid window the tile
    touches is read.
    """
    b, _, ht, wt = lsrgb.shape
    full_h, full_w = full_size if full_size is not None else (ht, wt)
    gd, gh, gw = grid.shape[2:]
    dt = _np_dtype(grid.dtype)
    r0, r1, ry = _slice_window(offset[0], ht, full_h, gh, dt)
    c0, c1, rx = _slice_window(offset[1], wt, full_w, gw, dt)
    ry, rxt = _const(ry, grid), _const(rx.T, grid)                               # (Ht, rows), (cols, Wt)
    x = lsrgb.to(grid.dtype)
    iz = luma(x) * float(gd - 1)                                                 # (B, 1, Ht, Wt)
    window = grid[:, :, :, r0:r1, c0:c1]
    out = None
    y_first = (c1 - c0) <= (r1 - r0)          # contract the smaller grid window at full resolution
    for k in range(gd):
        g = window[:, :, k]                                                       # (B, 12, rows, cols)
        coef = ((ry @ g) @ rxt if y_first else ry @ (g @ rxt)).reshape(b, 3, 4, ht, wt)   # (B, 3, 4, Ht, Wt)
        val = (coef[:, :, :3] * x.unsqueeze(1)).sum(2) + coef[:, :, 3]            # (B, 3, Ht, Wt)
        term = torch.relu(1.0 - torch.abs(iz - float(k))) * val
        out = term if out is None else out + term
    return out.clamp(0.0, 1.0)


# ------------------------------------------------------------------------------------------------------ stage entry

def guided_upsample(lsrgb: torch.Tensor, lsrgb_ds: torch.Tensor, gamma_out: torch.Tensor, mode: str = "reference",
                    reg_lambda: float = REG_LAMBDA) -> torch.Tensor:
    """Fit the grid on ``(lsrgb_ds -> gamma_out)`` and slice it with ``lsrgb``: ``(B, 3, H, W)`` in [0, 1]."""
    if mode == "reference":
        return bgu_slice_reference(_fit_reference_official(lsrgb_ds, gamma_out, reg_lambda), lsrgb)
    if mode == "mobile":
        return bgu_slice_mobile(bgu_fit_mobile(lsrgb_ds, gamma_out, reg_lambda), lsrgb)
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def check_inputs(lsrgb: torch.Tensor, lsrgb_ds: torch.Tensor, gamma_out: torch.Tensor) -> None:
    """Raise ``ValueError`` (expected vs got) unless ``lsrgb (B,3,H,W)``, ``lsrgb_ds`` and ``gamma_out`` both
    ``(B,3,h,w)`` with ``h, w >= 9``. For the pipeline entry and CLIs; ``forward`` does not validate."""
    problems = []
    for name, t in (("lsrgb", lsrgb), ("lsrgb_ds", lsrgb_ds), ("gamma_out", gamma_out)):
        if t.dim() != 4 or t.shape[1] != 3:
            problems.append(f"{name}: expected (B, 3, H, W), got {tuple(t.shape)}")
    if not problems:
        if lsrgb_ds.shape != gamma_out.shape:
            problems.append(f"gamma_out: expected the shape of lsrgb_ds {tuple(lsrgb_ds.shape)}, "
                            f"got {tuple(gamma_out.shape)}")
        if lsrgb.shape[0] != lsrgb_ds.shape[0]:
            problems.append(f"batch sizes differ: lsrgb {lsrgb.shape[0]}, lsrgb_ds {lsrgb_ds.shape[0]}")
        h, w = lsrgb_ds.shape[2:]
        if min(grid_shape(h, w)[:2]) < 1:
            problems.append(f"lsrgb_ds: expected at least 9x9 pixels (a grid of >= 1 cell of ~{CELL_SIZE} px), "
                            f"got {h}x{w}; the full-resolution image must be at least 36x36")
    if problems:
        raise ValueError("guided upsampling: " + "; ".join(problems))


class GuidedUpsampling(nn.Module):
    """``forward(lsrgb, lsrgb_ds, gamma_out) -> srgb_upsampled``; ``mode`` is ``"reference"`` or ``"mobile"``.

    :meth:`fit` (global, 1/4 resolution) and :meth:`slice` (pixel-local, full resolution) are exposed for tiling.
    """

    def __init__(self, mode: str = "reference", reg_lambda: float = REG_LAMBDA) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.reg_lambda = float(reg_lambda)

    def fit(self, lsrgb_ds: torch.Tensor, gamma_out: torch.Tensor) -> torch.Tensor:
        if self.mode == "mobile":
            return bgu_fit_mobile(lsrgb_ds, gamma_out, self.reg_lambda)
        return _fit_reference_official(lsrgb_ds, gamma_out, self.reg_lambda)

    def slice(self, grid: torch.Tensor, lsrgb: torch.Tensor) -> torch.Tensor:
        if self.mode == "mobile":
            return bgu_slice_mobile(grid, lsrgb)
        return bgu_slice_reference(grid, lsrgb)

    def forward(self, lsrgb: torch.Tensor, lsrgb_ds: torch.Tensor, gamma_out: torch.Tensor) -> torch.Tensor:
        return self.slice(self.fit(lsrgb_ds, gamma_out), lsrgb)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, reg_lambda={self.reg_lambda:g}"


def _build(cfg: BuildConfig, mode: str = "reference") -> GuidedUpsampling:
    """No weights; ``mode="mobile"`` for export."""
    return GuidedUpsampling(mode=mode).eval()


SPEC = StageSpec(
    id="upsample",
    build=_build,
    inputs=(
        TensorSpec("lsrgb", "B,3,H,W", (0.0, 1.0), "full-resolution linear sRGB: the guide and the image transformed"),
        TensorSpec("lsrgb_ds", "B,3,H/4,W/4", (0.0, 1.0), "the photofinishing input (downsample(lsrgb))"),
        TensorSpec("gamma_out", "B,3,H/4,W/4", (0.0, 1.0), "the photofinishing output"),
    ),
    outputs=(TensorSpec("srgb_upsampled", "B,3,H,W", (0.0, 1.0), "photofinishing transferred to full resolution"),),
    resolution="full",
    paper="Sec. 2.4; supp. E",
)
