"""runtime_py.metrics: CIEDE2000 against Sharma et al.'s published pairs, SSIM against analytic and independent
values, compare(), heat maps."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import isp.metrics
from runtime_py import metrics as M

# Sharma, Wu & Dalal (2005), Table 1: L1 a1 b1 | L2 a2 b2 | ΔE00 (published to 4 decimals)
SHARMA_PAIRS = np.array([
    [50.0000, 2.6772, -79.7751, 50.0000, 0.0000, -82.7485, 2.0425],
    [50.0000, 3.1571, -77.2803, 50.0000, 0.0000, -82.7485, 2.8615],
    [50.0000, 2.8361, -74.0200, 50.0000, 0.0000, -82.7485, 3.4412],
    [50.0000, -1.3802, -84.2814, 50.0000, 0.0000, -82.7485, 1.0000],
    [50.0000, -1.1848, -84.8006, 50.0000, 0.0000, -82.7485, 1.0000],
    [50.0000, -0.9009, -85.5211, 50.0000, 0.0000, -82.7485, 1.0000],
    [50.0000, 0.0000, 0.0000, 50.0000, -1.0000, 2.0000, 2.3669],
    [50.0000, -1.0000, 2.0000, 50.0000, 0.0000, 0.0000, 2.3669],
    [50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0009, 7.1792],
    [50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0010, 7.1792],
    [50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0011, 7.2195],
    [50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0012, 7.2195],
    [50.0000, -0.0010, 2.4900, 50.0000, 0.0009, -2.4900, 4.8045],
    [50.0000, -0.0010, 2.4900, 50.0000, 0.0010, -2.4900, 4.8045],
    [50.0000, -0.0010, 2.4900, 50.0000, 0.0011, -2.4900, 4.7461],
    [50.0000, 2.5000, 0.0000, 50.0000, 0.0000, -2.5000, 4.3065],
    [50.0000, 2.5000, 0.0000, 73.0000, 25.0000, -18.0000, 27.1492],
    [50.0000, 2.5000, 0.0000, 61.0000, -5.0000, 29.0000, 22.8977],
    [50.0000, 2.5000, 0.0000, 56.0000, -27.0000, -3.0000, 31.9030],
    [50.0000, 2.5000, 0.0000, 58.0000, 24.0000, 15.0000, 19.4535],
    [50.0000, 2.5000, 0.0000, 50.0000, 3.1736, 0.5854, 1.0000],
    [50.0000, 2.5000, 0.0000, 50.0000, 3.2972, 0.0000, 1.0000],
    [50.0000, 2.5000, 0.0000, 50.0000, 1.8634, 0.5757, 1.0000],
    [50.0000, 2.5000, 0.0000, 50.0000, 3.2592, 0.3350, 1.0000],
    [60.2574, -34.0099, 36.2677, 60.4626, -34.1751, 39.4387, 1.2644],
    [63.0109, -31.0961, -5.8663, 62.8187, -29.7946, -4.0864, 1.2630],
    [61.2901, 3.7196, -5.3901, 61.4292, 2.2480, -4.9620, 1.8731],
    [35.0831, -44.1164, 3.7933, 35.0232, -40.0716, 1.5901, 1.8645],
    [22.7233, 20.0904, -46.6940, 23.0331, 14.9730, -42.5619, 2.0373],
    [36.4612, 47.8580, 18.3852, 36.2715, 50.5065, 21.2231, 1.4146],
    [90.8027, -2.0831, 1.4410, 91.1528, -1.6435, 0.0447, 1.4441],
    [90.9257, -0.5406, -0.9208, 88.6381, -0.8985, -0.7239, 1.5381],
    [6.7747, -0.2908, -2.4247, 5.8714, -0.0985, -2.2286, 0.6377],
    [2.0776, 0.0795, -1.1350, 0.9033, -0.0636, -0.5514, 0.9082],
])


def _smooth_image(h=40, w=52, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([0.5 + 0.4 * np.sin(5 * x + 1), 0.2 + 0.7 * y, 0.5 + 0.3 * np.cos(4 * x * y)], axis=-1)
    return np.clip(base + 0.02 * rng.standard_normal(base.shape), 0.0, 1.0)


def _to_bchw(hwc):
    return torch.from_numpy(np.ascontiguousarray(hwc.transpose(2, 0, 1)))[None]


class TestDeltaE2000:
    def test_sharma_pairs(self):
        assert SHARMA_PAIRS.shape == (34, 7)
        de = M.delta_e2000_lab(SHARMA_PAIRS[:, 0:3], SHARMA_PAIRS[:, 3:6])
        np.testing.assert_allclose(de, SHARMA_PAIRS[:, 6], rtol=0, atol=1e-4)

    def test_sharma_pairs_one_by_one(self):
        for i, row in enumerate(SHARMA_PAIRS):
            de = M.delta_e2000_lab(row[0:3], row[3:6])
            assert de.shape == (), f"pair {i + 1}: one pair gives a 0-d result, got shape {de.shape}"
            assert abs(float(de) - row[6]) < 1e-4, f"pair {i + 1}"

    def test_shape_follows_the_broadcast_of_the_inputs(self):
        a = SHARMA_PAIRS[:4, 0:3].reshape(2, 2, 3)
        assert M.delta_e2000_lab(a, a).shape == (2, 2)
        assert M.delta_e2000_lab(a, SHARMA_PAIRS[0, 3:6]).shape == (2, 2)

    def test_symmetric(self):
        np.testing.assert_allclose(M.delta_e2000_lab(SHARMA_PAIRS[:, 3:6], SHARMA_PAIRS[:, 0:3]),
                                   M.delta_e2000_lab(SHARMA_PAIRS[:, 0:3], SHARMA_PAIRS[:, 3:6]), atol=1e-12)

    def test_srgb_to_lab_known_values(self):
        lab = M.srgb_to_lab(np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0],
                                      [0.0, 0.0, 1.0]]))
        np.testing.assert_allclose(lab[0], [100.0, 0.0, 0.0], atol=1e-9)
        np.testing.assert_allclose(lab[1], [0.0, 0.0, 0.0], atol=1e-9)
        # commonly published sRGB primaries in CIELAB (D65)
        np.testing.assert_allclose(lab[2], [53.24, 80.09, 67.20], atol=0.02)
        np.testing.assert_allclose(lab[3], [87.73, -86.18, 83.18], atol=0.02)
        np.testing.assert_allclose(lab[4], [32.30, 79.19, -107.86], atol=0.02)

    def test_greys_are_neutral(self):
        g = np.linspace(0, 1, 11)[:, None].repeat(3, axis=1)
        lab = M.srgb_to_lab(g)
        np.testing.assert_allclose(lab[:, 1:], 0.0, atol=1e-9)
        assert np.all(np.diff(lab[:, 0]) > 0)

    def test_transfer_round_trip_and_continuity(self):
        v = np.linspace(0, 1, 1001)
        np.testing.assert_allclose(M.linear_to_srgb(M.srgb_to_linear(v)), v, atol=1e-12)
        assert abs(0.04045 / 12.92 - ((0.04045 + 0.055) / 1.055) ** 2.4) < 1e-7
        assert float(M.srgb_to_linear(np.array(0.5))) == pytest.approx(0.21404114, abs=1e-8)

    def test_map_shapes_and_dtype(self):
        a, b = _smooth_image(), _smooth_image(seed=1)
        m = M.delta_e2000(a, b)
        assert m.shape == a.shape[:2] and m.dtype == np.float64
        mb = M.delta_e2000(torch.cat([_to_bchw(a), _to_bchw(b)]), torch.cat([_to_bchw(b), _to_bchw(a)]))
        assert mb.shape == (2,) + a.shape[:2]
        np.testing.assert_allclose(mb[0], m, atol=1e-12)
        np.testing.assert_allclose(mb[1], m, atol=1e-9)     # symmetric
        assert np.all(M.delta_e2000(a, a) == 0.0)

    def test_float32_tensor_input(self):
        a, b = _smooth_image(), _smooth_image(seed=1)
        m32 = M.delta_e2000(_to_bchw(a).float(), _to_bchw(b).float())[0]
        np.testing.assert_allclose(m32, M.delta_e2000(a, b), atol=1e-4)

    def test_chunking_matches(self, monkeypatch):
        a, b = _smooth_image(), _smooth_image(seed=1)
        whole = M.delta_e2000(a, b)
        monkeypatch.setattr(M, "_DE_CHUNK", 97)
        np.testing.assert_array_equal(M.delta_e2000(a, b), whole)

    def test_rejects_bad_input(self):
        a = _smooth_image()
        with pytest.raises(ValueError, match="same shape"):
            M.delta_e2000(a, a[:-1])
        with pytest.raises(ValueError, match="floating-point"):
            M.delta_e2000((a * 255).astype(np.uint8), a)
        with pytest.raises(ValueError, match=r"\(B, 3, H, W\) or \(H, W, 3\)"):
            M.delta_e2000(a[..., :2], a[..., :2])
        bad = a.copy()
        bad[0, 0, 0] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            M.delta_e2000(bad, a)

    def test_stats(self):
        s = M.delta_e_stats(np.arange(101, dtype=np.float64).reshape(1, 101))
        assert s == {"mean": 50.0, "p95": 95.0, "max": 100.0}
        with pytest.raises(ValueError):
            M.delta_e_stats(np.zeros(0))


def _ssim_reference_scipy(a, b):
    """Independent SSIM: scipy Gaussian filtering (radius 5), border cropped, per channel, averaged."""
    from scipy.ndimage import gaussian_filter
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    vals = []
    for ch in range(3):
        x, y = a[..., ch], b[..., ch]

        def f(t):
            return gaussian_filter(t, sigma=1.5, truncate=3.5, mode="reflect")
        mx, my = f(x), f(y)
        vx, vy, cxy = f(x * x) - mx ** 2, f(y * y) - my ** 2, f(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
        vals.append(s[5:-5, 5:-5].mean())
    return float(np.mean(vals))


class TestSSIM:
    def test_identical_is_one(self):
        a = _smooth_image()
        assert M.ssim(a, a) == 1.0
        assert M.ssim(_to_bchw(a).float(), _to_bchw(a).float()) == 1.0

    @pytest.mark.parametrize("u,v", [(0.2, 0.6), (0.5, 0.5), (0.0, 1.0), (0.9, 0.3)])
    def test_constant_images_analytic(self, u, v):
        # no variance: SSIM = (2uv + C1) / (u^2 + v^2 + C1) at every position
        a, b = np.full((16, 20, 3), u), np.full((16, 20, 3), v)
        c1 = 0.01 ** 2
        assert M.ssim(a, b) == pytest.approx((2 * u * v + c1) / (u * u + v * v + c1), abs=1e-12)

    def test_negated_structure_analytic(self):
        # x = 0.5 + p, y = 0.5 - p for a +-0.1 checkerboard p. Under any window position the local mean of p is
        # +-m (m = 0.1 * sum of the window weights times the checkerboard signs, the sign depending on the
        # parity of the centre) and E[p^2] = 0.01, so var_x = var_y = 0.01 - m^2, cov = -(0.01 - m^2),
        # mu_x = 0.5 +- m, mu_y = 0.5 -+ m, and the SSIM map is the same constant everywhere:
        # (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1) * (C2 - 2 var) / (C2 + 2 var).
        yy, xx = np.mgrid[0:64, 0:64]
        pat = np.where((yy + xx) % 2 == 0, 0.1, -0.1)[..., None].repeat(3, axis=2)
        g = M._gaussian_window()
        signs = np.where(np.add.outer(np.arange(11), np.arange(11)) % 2 == 0, 1.0, -1.0)
        m = 0.1 * (np.outer(g, g) * signs).sum()
        var = 0.01 - m * m
        c1, c2 = 0.01 ** 2, 0.03 ** 2
        lum = (2 * (0.5 + m) * (0.5 - m) + c1) / ((0.5 + m) ** 2 + (0.5 - m) ** 2 + c1)
        expected = lum * (c2 - 2 * var) / (c2 + 2 * var)
        assert expected < -0.9
        assert M.ssim(0.5 + pat, 0.5 - pat) == pytest.approx(expected, abs=1e-10)

    def test_matches_independent_scipy_implementation(self):
        a = _smooth_image(37, 45)
        b = np.clip(a + 0.05 * np.random.default_rng(3).standard_normal(a.shape), 0, 1)
        assert M.ssim(a, b) == pytest.approx(_ssim_reference_scipy(a, b), abs=1e-10)

    def test_matches_skimage(self):
        skm = pytest.importorskip("skimage.metrics", reason="scikit-image is not installed (optional cross-check)")
        a = _smooth_image(37, 45)
        b = np.clip(a ** 1.2 + 0.03 * np.random.default_rng(4).standard_normal(a.shape), 0, 1)
        ref = skm.structural_similarity(a, b, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, data_range=1.0)
        assert M.ssim(a, b) == pytest.approx(ref, abs=1e-8)

    def test_layouts_and_batch(self):
        a, b = _smooth_image(), _smooth_image(seed=2)
        s_hwc = M.ssim(a, b)
        assert M.ssim(_to_bchw(a), _to_bchw(b)) == pytest.approx(s_hwc, abs=1e-14)
        s_other = M.ssim(b, b ** 2)
        batch = M.ssim(torch.cat([_to_bchw(a), _to_bchw(b)]), torch.cat([_to_bchw(b), _to_bchw(b ** 2)]))
        assert batch == pytest.approx((s_hwc + s_other) / 2, abs=1e-12)

    def test_decreases_with_noise(self):
        a = _smooth_image()
        rng = np.random.default_rng(5)
        vals = [M.ssim(a, np.clip(a + s * rng.standard_normal(a.shape), 0, 1)) for s in (0.01, 0.05, 0.2)]
        assert 1.0 > vals[0] > vals[1] > vals[2]

    def test_too_small(self):
        with pytest.raises(ValueError, match="at least 11x11"):
            M.ssim(np.zeros((10, 30, 3)), np.zeros((10, 30, 3)))


class TestCompare:
    def test_psnr_is_reexported(self):
        assert M.psnr is isp.metrics.psnr

    def test_srgb(self):
        a = _smooth_image()
        b = np.clip(a + 0.01, 0, 1)
        r = M.compare(b, a, kind="srgb")
        assert set(r) == {"kind", "psnr", "ssim", "de2000_mean", "de2000_p95", "de2000_max", "de_space", "max_abs"}
        assert r["de_space"] == "srgb" and r["kind"] == "srgb"
        assert r["psnr"] == pytest.approx(isp.metrics.psnr(b, a))
        assert r["ssim"] == pytest.approx(M.ssim(b, a))
        st = M.delta_e_stats(M.delta_e2000(b, a))
        assert (r["de2000_mean"], r["de2000_p95"], r["de2000_max"]) == (st["mean"], st["p95"], st["max"])
        assert r["max_abs"] == pytest.approx(0.01, abs=1e-12)
        assert 0 < r["de2000_mean"] <= r["de2000_p95"] <= r["de2000_max"]

    def test_identical(self):
        a = _to_bchw(_smooth_image())
        r = M.compare(a, a, kind="srgb")
        assert r["psnr"] == math.inf and r["ssim"] == 1.0 and r["de2000_max"] == 0.0 and r["max_abs"] == 0.0

    def test_linear_encodes_first(self):
        a = _smooth_image() ** 2.2
        b = np.clip(a * 1.05, 0, 1)
        r = M.compare(b, a, kind="linear")
        assert r["de_space"] == "srgb-encoded linear"
        expected = M.delta_e2000(M.linear_to_srgb(b), M.linear_to_srgb(a)).mean()
        assert r["de2000_mean"] == pytest.approx(expected, abs=1e-12)
        assert r["psnr"] == pytest.approx(isp.metrics.psnr(b, a))     # PSNR / SSIM on the linear values

    def test_linear_overshoot_counts_in_max_abs_only(self):
        a = np.full((12, 12, 3), 0.9)
        b = np.full((12, 12, 3), 1.3)
        r = M.compare(b, a, kind="linear")
        assert r["max_abs"] == pytest.approx(0.4)
        assert r["de2000_max"] > 0

    def test_data_kind(self):
        a = torch.rand(2, 2, 24, 24, dtype=torch.float64)
        r = M.compare(a + 0.001, a, kind="data")
        assert r["ssim"] is None and r["de2000_mean"] is None and r["de_space"] is None
        assert r["max_abs"] == pytest.approx(0.001)
        assert r["psnr"] == pytest.approx(60.0, abs=1e-6)

    def test_small_images_have_no_ssim(self):
        a = np.full((4, 4, 3), 0.5)
        assert M.compare(a, a)["ssim"] is None

    def test_errors(self):
        a = _smooth_image()
        with pytest.raises(ValueError, match="kind must be one of"):
            M.compare(a, a, kind="raw")
        with pytest.raises(ValueError, match="same shape"):
            M.compare(a, a[:, :-1])


class TestHeatmap:
    def test_colormap_lightness_monotonic(self):
        rgb = M.colorize(np.linspace(0, 1, 256), 1.0).astype(np.float64) / 255.0
        lightness = M.srgb_to_lab(rgb)[:, 0]
        assert np.all(np.diff(lightness) > 0)
        assert lightness[0] < 2 and lightness[-1] > 95

    def test_colorize_ends_and_clipping(self):
        out = M.colorize(np.array([-1.0, 0.0, 2.0, 5.0]), vmax=2.0)
        assert out.dtype == np.uint8 and out.shape == (4, 3)
        np.testing.assert_array_equal(out[0], M.HEATMAP_ANCHORS[0])
        np.testing.assert_array_equal(out[1], M.HEATMAP_ANCHORS[0])
        np.testing.assert_array_equal(out[2], M.HEATMAP_ANCHORS[-1])
        np.testing.assert_array_equal(out[3], M.HEATMAP_ANCHORS[-1])
        with pytest.raises(ValueError):
            M.colorize(np.zeros(3), vmax=0.0)

    @pytest.mark.parametrize("mode", ["rgb", "de2000"])
    def test_shapes_dtype(self, mode):
        a, b = _smooth_image(21, 33), _smooth_image(21, 33, seed=1)
        h = M.error_heatmap(a, b, mode=mode)
        assert h.shape == (21, 33, 3) and h.dtype == np.uint8
        h2 = M.error_heatmap(_to_bchw(a), _to_bchw(b), vmax=1.0, mode=mode)
        assert h2.shape == (21, 33, 3) and h2.dtype == np.uint8

    def test_auto_vmax_reaches_top_and_zero_is_black(self):
        a = np.zeros((8, 9, 3))
        b = a.copy()
        b[3, 4] = 0.5
        h = M.error_heatmap(b, a)
        np.testing.assert_array_equal(h[3, 4], M.HEATMAP_ANCHORS[-1])
        np.testing.assert_array_equal(h[0, 0], M.HEATMAP_ANCHORS[0])
        assert np.all(M.error_heatmap(a, a) == M.HEATMAP_ANCHORS[0].astype(np.uint8))

    def test_rgb_error_magnitude(self):
        a = np.zeros((2, 2, 3))
        b = np.zeros((2, 2, 3))
        b[0, 0] = [0.3, 0.4, 0.0]
        np.testing.assert_allclose(M.error_map(b, a)[0, 0], 0.5)

    def test_brighter_means_larger_error(self):
        a = np.zeros((1, 5, 3))
        b = np.linspace(0, 0.5, 5)[None, :, None].repeat(3, axis=2)
        h = M.error_heatmap(b, a, vmax=1.0).astype(np.float64) / 255
        assert np.all(np.diff(M.srgb_to_lab(h[0])[:, 0]) > 0)

    def test_batch_rejected(self):
        x = torch.rand(2, 3, 12, 12)
        with pytest.raises(ValueError, match="one image at a time"):
            M.error_heatmap(x, x)

    def test_legend(self):
        bar = M.heatmap_legend(100, 7)
        assert bar.shape == (7, 100, 3) and bar.dtype == np.uint8
        np.testing.assert_array_equal(bar[0, 0], M.HEATMAP_ANCHORS[0])
        np.testing.assert_array_equal(bar[-1, -1], M.HEATMAP_ANCHORS[-1])
