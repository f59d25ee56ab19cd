"""Editing controls: ranges, neutral values, and the maths of each edit."""
import colorsys

import numpy as np
import pytest
import torch

from isp.edits import (EDIT_RANGES, Edits, adjust_contrast, adjust_highlights, adjust_saturation, adjust_shadows,
                       adjust_vibrance, gaussian_blur, luma_chroma_denoise, sharpen)


class TestRanges:
    @pytest.mark.parametrize("name", sorted(EDIT_RANGES))
    def test_bounds_accepted_and_outside_rejected(self, name):
        lo, hi, neutral, _ = EDIT_RANGES[name]
        Edits(**{name: lo})
        Edits(**{name: hi})
        assert getattr(Edits(), name) == neutral
        for bad in (lo - 1e-3, hi + 1e-3, float("nan"), float("inf")):
            with pytest.raises(ValueError, match=name):
                Edits(**{name: bad})

    def test_message_names_range(self):
        with pytest.raises(ValueError, match=r"\[-1, 1\].*1\.5"):
            Edits(contrast=1.5)

    def test_rejects_non_numbers(self):
        with pytest.raises(ValueError):
            Edits(ev="1")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            Edits(ev=True)  # type: ignore[arg-type]


def _hsv_reference(rgb: np.ndarray, fn) -> np.ndarray:
    out = np.empty_like(rgb)
    for idx in np.ndindex(rgb.shape[:-1]):
        h, s, v = colorsys.rgb_to_hsv(*rgb[idx])
        out[idx] = colorsys.hsv_to_rgb(h, min(max(fn(s), 0.0), 1.0), v)
    return out


class TestColourEdits:
    @pytest.mark.parametrize("amount", [-1.0, -0.3, 0.4, 1.0])
    def test_saturation_matches_hsv_round_trip(self, amount):
        torch.manual_seed(0)
        x = torch.rand(1, 3, 6, 7)
        got = adjust_saturation(x, amount)[0].permute(1, 2, 0).numpy()
        ref = _hsv_reference(x[0].permute(1, 2, 0).double().numpy(), lambda s: s * (1 + amount))
        assert np.abs(got - ref).max() < 1e-5

    @pytest.mark.parametrize("amount", [-1.0, 0.5, 1.0])
    def test_vibrance_matches_hsv_round_trip(self, amount):
        torch.manual_seed(1)
        x = torch.rand(2, 3, 5, 4)
        got = adjust_vibrance(x, amount).permute(0, 2, 3, 1).numpy()
        ref = np.stack([_hsv_reference(x[i].permute(1, 2, 0).double().numpy(), lambda s: s * (1 + amount * (1 - s)))
                        for i in range(2)])
        assert np.abs(got - ref).max() < 1e-5

    def test_greys_stay_grey(self):
        g = torch.full((1, 3, 4, 4), 0.4)
        assert torch.allclose(adjust_saturation(g, 1.0), g)
        assert torch.allclose(adjust_vibrance(g, 1.0), g)

    def test_minus_one_saturation_is_greyscale_value(self):
        x = torch.rand(1, 3, 8, 8)
        y = adjust_saturation(x, -1.0)
        assert torch.allclose(y, x.amax(1, keepdim=True).expand_as(y), atol=1e-6)


class TestToneEdits:
    def test_contrast_pivot_and_direction(self):
        y = torch.tensor([0.2, 0.5, 0.8]).view(1, 1, 1, 3)
        ycc = torch.cat([y, torch.zeros(1, 2, 1, 3)], 1)
        up = adjust_contrast(ycc, 1.0)[:, 0].flatten()
        assert torch.allclose(up, torch.tensor([0.05, 0.5, 0.95]))
        assert torch.allclose(adjust_contrast(ycc, 0.0), ycc)

    def test_highlights_only_touch_bright_midtones(self):
        y = torch.linspace(0, 1, 101).view(1, 1, 1, -1)
        ycc = torch.cat([y, torch.zeros(1, 2, 1, 101)], 1)
        d = (adjust_highlights(ycc, 1.0) - ycc)[:, 0].flatten()
        assert torch.all(d[:70] == 0) and torch.all(d[90:] == 0) and d[75:90].min() > 0

    def test_shadows_only_touch_dark_midtones(self):
        y = torch.linspace(0, 1, 101).view(1, 1, 1, -1)
        ycc = torch.cat([y, torch.zeros(1, 2, 1, 101)], 1)
        d = (adjust_shadows(ycc, -1.0) - ycc)[:, 0].flatten()
        assert torch.all(d[:11] == 0) and torch.all(d[41:] == 0) and d[11:30].max() < 0


class TestFilters:
    def test_gaussian_preserves_constant_interior(self):
        x = torch.full((1, 2, 20, 20), 0.3)
        y = gaussian_blur(x, 1.5)
        assert torch.allclose(y[..., 6:-6, 6:-6], x[..., 6:-6, 6:-6], atol=1e-6)

    def test_sharpen_increases_edge_contrast_and_stays_in_range(self):
        x = torch.zeros(1, 3, 16, 16)
        x[..., 8:] = 0.6
        y = sharpen(x, 10.0)
        assert y.min() >= 0 and y.max() <= 1
        assert (y[..., 8] - y[..., 7]).mean() > (x[..., 8] - x[..., 7]).mean()
        assert torch.equal(sharpen(x, 0.0), x)

    def test_luma_chroma_denoise_reduces_noise(self):
        torch.manual_seed(0)
        clean = torch.full((1, 3, 600, 64), 0.0)      # chroma blur scales with height (sigma ~3 px at 600)
        clean[:, 0] = 0.5
        noisy = clean + 0.05 * torch.randn_like(clean)
        out = luma_chroma_denoise(noisy, luma=0.8, chroma=0.8)
        # the guided filter is edge preserving (noise of this size survives partly); the chroma blur is strong
        for ch, ratio in ((slice(0, 1), 0.8), (slice(1, 3), 0.2)):
            assert (out - clean)[:, ch].pow(2).mean() < ratio * (noisy - clean)[:, ch].pow(2).mean()
        assert torch.equal(luma_chroma_denoise(noisy, 0.0, 0.0), noisy)
