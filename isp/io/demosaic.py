"""Bayer demosaicing: DDFAPD, Menon, Andriani & Calvagno (2007).

"Demosaicing With Directional Filtering and a posteriori Decision", IEEE TIP 16(1):132-141. The official Modular
Neural ISP demosaics its DNG input with the colour-demosaicing package's implementation of this paper (default
``refining_step=True``); this module is our own vectorised numpy/scipy implementation of that variant, so that
``isp.io.read_dng`` reproduces the golden ``raw`` tensors. The steps:

1. **Directional green** (paper Sec. II-A, Eq. (3)): at every red/blue site estimate G twice, horizontally and
   vertically: the mean of the two green neighbours (``h0 = [0, 1/2, 0, 1/2, 0]``) plus a Laplacian correction from
   the same-colour samples (``h1 = [-1/4, 0, 1/2, 0, -1/4]``), filtered separately and summed like the reference.
2. **A posteriori decision** (Sec. II-B, Eqs. (5)-(7)): colour differences ``C = R-G`` / ``B-G`` at red/blue sites
   for both estimates; gradients of ``C`` across two pixels along each direction; classifier ``d_H`` / ``d_V`` sums
   those gradients over a 5x5 window (weights 1 and 3, the centre column/row counted 3x). Where ``d_V >= d_H`` the
   horizontal estimate wins (``M = 1``), else the vertical one.
3. **Red and blue** (Sec. II-C): at green sites the bilinear colour difference along the row (or column) holding
   that colour; at blue (red) sites the colour difference to red (blue) along the direction chosen in step 2.
4. **Refining** (Sec. III): the green at red/blue sites is re-estimated from the 3-tap mean of ``R-G`` / ``B-G``
   along the chosen direction; R and B at green sites from the updated differences; R (B) at B (R) sites from the
   3-tap mean of ``R-B`` along the chosen direction.

Boundary handling follows the reference implementation exactly (it matters for parity at the image border): all 1-D
filters use whole-sample mirror padding (``scipy.ndimage`` ``mode="mirror"`` = numpy ``"reflect"``); the two-pixel
colour-difference gradient reflects past the right/bottom edge; the 5x5 classifier window zero-pads.

The output is float64 (the reference promotes its input to float64 too) and **not** clipped: values slightly below
0 or above the input range appear near edges. The caller clips (``read_dng`` clips to [0, 1] as the official
pipeline does).
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import convolve, convolve1d
from isp.versions import usable_cpus

__all__ = ["BAYER_PATTERNS", "TILE_HALO", "bayer_masks", "demosaic_menon2007", "demosaic_bilinear"]

#: the 2x2 Bayer arrangements this module supports, read row-major from the top-left photosite
BAYER_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")

# green interpolation: neighbour mean h0 and same-colour Laplacian h1 (paper Eq. (3))
_H0 = np.array([0.0, 0.5, 0.0, 0.5, 0.0])
_H1 = np.array([-0.25, 0.0, 0.5, 0.0, -0.25])
# two-neighbour average for colour differences
_PAIR_MEAN = np.array([0.5, 0.0, 0.5])
# three-tap mean used by the refining step
_MEAN3 = np.full(3, 1.0 / 3.0)
# classifier window of the horizontal gradients (the vertical one is its transpose), applied as a true (flipped)
# convolution with zero padding like the reference: weight 3 on the centre row, 1 one and two rows away
_CLASSIFIER_H = np.array([[0, 0, 1, 0, 1],
                          [0, 0, 0, 1, 0],
                          [0, 0, 3, 0, 3],
                          [0, 0, 0, 1, 0],
                          [0, 0, 1, 0, 1]], dtype=np.float64)


def bayer_masks(shape: tuple[int, int], pattern: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean (H, W) masks of the red, green and blue photosites for a 2x2 Bayer ``pattern`` (e.g. ``"GRBG"``)."""
    pattern = pattern.upper()
    if pattern not in BAYER_PATTERNS:
        raise ValueError(f"unsupported Bayer pattern {pattern!r}; expected one of {', '.join(BAYER_PATTERNS)}")
    masks = {c: np.zeros(shape, dtype=bool) for c in "RGB"}
    for letter, (dy, dx) in zip(pattern, ((0, 0), (0, 1), (1, 0), (1, 1))):
        masks[letter][dy::2, dx::2] = True
    return masks["R"], masks["G"], masks["B"]


def _h(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    return convolve1d(x, k, axis=1, mode="mirror")


def _v(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``convolve1d(x, k, axis=0, mode="mirror")`` for an odd symmetric ``k``, with whole rows at a time.

    scipy filters column by column through a line buffer (3x slower along axis 0 here); this sums the same terms in
    scipy's order for symmetric kernels, ``x*k[m] + (x[-m] + x[+m])*k[0] + ... + (x[-1] + x[+1])*k[m-1]``, so the
    values are identical (tested). Zero-weight terms are skipped: they can only change the sign of a zero."""
    m, n = k.size // 2, x.shape[0]
    pad = np.empty((n + 2 * m,) + x.shape[1:], dtype=np.float64)
    pad[m:m + n] = x
    for o in range(1, m + 1):                       # mirror: ... x[2] x[1] | x[0] ... x[n-1] | x[n-2] x[n-3] ...
        pad[m - o], pad[m + n - 1 + o] = x[o], x[n - 1 - o]
    out = x * k[m] if k[m] != 0 else None
    for o in range(m, 0, -1):
        if k[m - o] == 0:
            continue
        term = pad[m - o:m - o + n] + pad[m + o:m + o + n]
        term *= k[m - o]
        out = term if out is None else np.add(out, term, out=out)
    return out


def _rows_with(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool: True on every pixel of a row that holds at least one site of ``mask``."""
    return np.broadcast_to(mask.any(axis=1, keepdims=True), mask.shape)


def _cols_with(mask: np.ndarray) -> np.ndarray:
    return np.broadcast_to(mask.any(axis=0, keepdims=True), mask.shape)


#: tile overlap in pixels (even, to keep the CFA phase): more than the reach of every Menon step (8 suffices)
TILE_HALO = 16


def demosaic_menon2007(cfa: np.ndarray, pattern: str = "RGGB", refine: bool = True,
                       tile: int | None = 1024, *, clip: tuple[float, float] | None = None,
                       dtype=np.float64, threads: int | None = None) -> np.ndarray:
    """Demosaic a Bayer mosaic with DDFAPD (Menon 2007).

    Args:
        cfa: (H, W) mosaic, any real dtype (computed in float64); H, W >= 3 (mirror padding needs 2 samples).
        pattern: one of ``BAYER_PATTERNS``, the colours of the top-left 2x2 block read row by row.
        refine: run the paper's refining step (Sec. III), as the reference implementation does by default.
        tile: process in ``tile`` x ``tile`` blocks with a ``TILE_HALO`` margin (rounded up to even) to bound
            memory and stay in cache; the result is bit-identical to a single pass because every block sees the
            whole neighbourhood its pixels depend on and block origins keep the CFA phase. ``None``: one pass.
        clip: ``(lo, hi)`` to clip the float64 result to, block by block (the same values as clipping afterwards).
        dtype: the returned array's dtype; the float64 result is cast block by block (as ``astype`` would).
        threads: blocks demosaiced at once (numpy and scipy release the GIL in their loops, so blocks run in
            parallel; each block is computed alone, so the result does not depend on it). Default: the CPUs this
            process may run on.

    Returns:
        (H, W, 3) RGB in ``dtype`` (float64 by default), not clipped unless ``clip``. Each photosite keeps its own
        sample in its own channel; refining only changes interpolated values.
    """
    cfa = np.asarray(cfa, dtype=np.float64)
    if cfa.ndim != 2:
        raise ValueError(f"demosaic_menon2007 expects a 2-D (H, W) mosaic, got shape {cfa.shape}")
    if min(cfa.shape) < 3:
        raise ValueError(f"demosaic_menon2007 needs at least 3x3 pixels, got {cfa.shape}")
    bayer_masks((2, 2), pattern)                      # validates the pattern before any work

    def finish(block: np.ndarray) -> np.ndarray:
        if clip is not None:
            np.clip(block, clip[0], clip[1], out=block)
        return block.astype(dtype, copy=False)

    h, w = cfa.shape
    if tile is None or (h <= tile + 2 * TILE_HALO and w <= tile + 2 * TILE_HALO):
        return finish(_menon_single(cfa, pattern, refine))
    step = max(2, int(tile) // 2 * 2)
    out = np.empty((h, w, 3), dtype=dtype)

    def one(y0: int, x0: int) -> None:
        y1, x1 = min(y0 + step, h), min(x0 + step, w)
        ry0, ry1 = max(0, y0 - TILE_HALO), min(h, y1 + TILE_HALO)
        rx0, rx1 = max(0, x0 - TILE_HALO), min(w, x1 + TILE_HALO)
        # block origins are even (step and halo are even), so the block has the same CFA phase
        block = _menon_single(cfa[ry0:ry1, rx0:rx1], pattern, refine)
        out[y0:y1, x0:x1] = finish(block[y0 - ry0:y1 - ry0, x0 - rx0:x1 - rx0])

    starts = [(y0, x0) for y0 in range(0, h, step) for x0 in range(0, w, step)]
    workers = max(1, min(len(starts), threads or usable_cpus()))
    if workers == 1:
        for y0, x0 in starts:
            one(y0, x0)
    else:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(workers) as pool:
            for f in [pool.submit(one, y0, x0) for y0, x0 in starts]:
                f.result()
    return out


def _menon_single(cfa: np.ndarray, pattern: str, refine: bool) -> np.ndarray:
    """One-pass DDFAPD over a whole (H, W) float64 mosaic (see module docstring for the steps)."""
    r_m, g_m, b_m = bayer_masks(cfa.shape, pattern)

    r = np.where(r_m, cfa, 0.0)
    g = np.where(g_m, cfa, 0.0)
    b = np.where(b_m, cfa, 0.0)

    # 1. directional green estimates at red/blue sites
    g_hor = np.where(g_m, g, _h(cfa, _H0) + _h(cfa, _H1))
    g_ver = np.where(g_m, g, _v(cfa, _H0) + _v(cfa, _H1))

    # 2. a posteriori decision on the colour-difference gradients
    rb_m = r_m | b_m
    c_hor = np.where(rb_m, cfa - g_hor, 0.0)
    c_ver = np.where(rb_m, cfa - g_ver, 0.0)
    grad_hor = np.abs(c_hor - np.pad(c_hor, ((0, 0), (0, 2)), mode="reflect")[:, 2:])
    grad_ver = np.abs(c_ver - np.pad(c_ver, ((0, 2), (0, 0)), mode="reflect")[2:, :])
    d_hor = convolve(grad_hor, _CLASSIFIER_H, mode="constant")
    d_ver = convolve(grad_ver, _CLASSIFIER_H.T, mode="constant")
    horizontal = d_ver >= d_hor                      # M = 1 in the paper's notation
    g = np.where(horizontal, g_hor, g_ver)

    # 3. red and blue by colour-difference interpolation
    red_rows, blue_rows = _rows_with(r_m), _rows_with(b_m)
    g_h_mean, g_v_mean = _h(g, _PAIR_MEAN), _v(g, _PAIR_MEAN)
    r = np.where(g_m & red_rows, g + _h(r, _PAIR_MEAN) - g_h_mean, r)
    r = np.where(g_m & blue_rows, g + _v(r, _PAIR_MEAN) - g_v_mean, r)
    b = np.where(g_m & blue_rows, g + _h(b, _PAIR_MEAN) - g_h_mean, b)
    b = np.where(g_m & red_rows, g + _v(b, _PAIR_MEAN) - g_v_mean, b)
    # at blue sites: red from the chosen direction (and vice versa)
    r = np.where(b_m, np.where(horizontal, b + _h(r, _PAIR_MEAN) - _h(b, _PAIR_MEAN),
                               b + _v(r, _PAIR_MEAN) - _v(b, _PAIR_MEAN)), r)
    b = np.where(r_m, np.where(horizontal, r + _h(b, _PAIR_MEAN) - _h(r, _PAIR_MEAN),
                               r + _v(b, _PAIR_MEAN) - _v(r, _PAIR_MEAN)), b)

    if refine:
        r, g, b = _refine(r, g, b, r_m, g_m, b_m, horizontal)
    return np.stack([r, g, b], axis=-1)


def _directional_mean3(x: np.ndarray, horizontal: np.ndarray) -> np.ndarray:
    return np.where(horizontal, _h(x, _MEAN3), _v(x, _MEAN3))


def _refine(r, g, b, r_m, g_m, b_m, horizontal):
    """Menon 2007 Sec. III: refine G at R/B sites, then R/B at G sites, then R (B) at B (R) sites."""
    # green at red / blue sites from the smoothed colour difference along the chosen direction
    rg_at_r = np.where(r_m, _directional_mean3(r - g, horizontal), 0.0)
    bg_at_b = np.where(b_m, _directional_mean3(b - g, horizontal), 0.0)
    g = np.where(r_m, r - rg_at_r, g)
    g = np.where(b_m, b - bg_at_b, g)

    # red and blue at green sites from the updated colour differences
    red_rows, red_cols = _rows_with(r_m), _cols_with(r_m)
    blue_rows, blue_cols = _rows_with(b_m), _cols_with(b_m)
    rg, bg = r - g, b - g
    r = np.where(g_m & blue_rows, g + _v(rg, _PAIR_MEAN), r)
    r = np.where(g_m & blue_cols, g + _h(rg, _PAIR_MEAN), r)
    b = np.where(g_m & red_rows, g + _v(bg, _PAIR_MEAN), b)
    b = np.where(g_m & red_cols, g + _h(bg, _PAIR_MEAN), b)

    # red at blue sites and blue at red sites
    # (one difference image for both: the 3-tap windows at red sites never reach a blue site)
    rb_mean = _directional_mean3(r - b, horizontal)
    r = np.where(b_m, b + rb_mean, r)
    b = np.where(r_m, r - rb_mean, b)
    return r, g, b


def demosaic_bilinear(cfa: np.ndarray, pattern: str = "RGGB") -> np.ndarray:
    """Plain bilinear demosaic, (H, W) -> (H, W, 3) float64; a cheap fallback and a test oracle for flat fields."""
    cfa = np.asarray(cfa, dtype=np.float64)
    r_m, g_m, b_m = bayer_masks(cfa.shape, pattern)
    k_g = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]]) / 4.0
    k_rb = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 4.0
    out = [convolve(np.where(m, cfa, 0.0), k, mode="mirror") for m, k in ((r_m, k_rb), (g_m, k_g), (b_m, k_rb))]
    return np.stack(out, axis=-1)
