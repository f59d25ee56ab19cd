"""Tiled execution of full-resolution stages: geometry and exact stitching for local operators."""
import pytest
import torch
import torch.nn.functional as F

from isp.tiling import TilePlan, run_tiled, tile_starts


@pytest.mark.parametrize("length,tile,overlap", [(100, 32, 8), (64, 64, 8), (65, 64, 8), (1000, 256, 32), (10, 32, 4)])
def test_tile_starts_cover_with_fixed_size(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    t = min(tile, length)
    covered = torch.zeros(length, dtype=torch.bool)
    for s in starts:
        assert 0 <= s and s + t <= length
        covered[s:s + t] = True
    assert covered.all()
    for a, b in zip(starts, starts[1:]):
        assert a + t - b >= min(overlap, t)


def test_bad_geometry_rejected():
    with pytest.raises(ValueError):
        tile_starts(100, 16, 16)


def test_identity_is_exact():
    x = torch.rand(2, 3, 75, 131)
    assert torch.allclose(run_tiled(lambda t: t, x, tile=32, overlap=8), x, atol=1e-6)


def test_local_operator_is_exact_when_overlap_covers_receptive_field():
    torch.manual_seed(0)
    w = torch.randn(4, 3, 5, 5)
    conv = lambda t: F.conv2d(F.pad(t, (2, 2, 2, 2), mode="replicate"), w)   # radius 2
    x = torch.rand(1, 3, 90, 77)
    ref = conv(x)
    # no window contributes pixels within overlap // 4 = 3 px of its inner border, so radius-2 ops stitch exactly
    got = run_tiled(conv, x, tile=40, overlap=12)
    assert (got - ref).abs().max() < 1e-5
    too_small = run_tiled(conv, x, tile=40, overlap=4)      # hand-over margin 1 px < radius 2: seams appear
    assert (too_small - ref).abs().max() > 1e-3
    plan = TilePlan.make(90, 77, 40, 12)
    assert len(plan) == len(plan.ys) * len(plan.xs) > 1


def test_multiple_inputs_and_progress():
    a, b = torch.rand(1, 1, 50, 50), torch.rand(1, 2, 50, 50)
    calls = []
    out = run_tiled(lambda u, v: u + v, a, b, tile=20, overlap=4, progress=calls.append)
    assert torch.allclose(out, a + b, atol=1e-6)
    assert len(calls) == len(TilePlan.make(50, 50, 20, 4))
    with pytest.raises(ValueError):
        run_tiled(lambda u, v: u, a, torch.rand(1, 1, 40, 50))


def test_feather_weights_factorise_the_stitch_weight_map():
    """The streaming stitcher's separable totals equal run_tiled's accumulated weight map."""
    from isp.tiling import TilePlan, feather_weights
    plan = TilePlan.make(100, 130, 48, 12)
    wy, wx, sum_y, sum_x = feather_weights(plan)
    ones = torch.ones(1, 1, 100, 130)
    # run_tiled of the constant 1 returns out / weight with out == weight: rebuild the map window by window
    weight = torch.zeros(100, 130)
    for i, j, y0, x0 in plan.windows():
        weight[y0:y0 + plan.tile_h, x0:x0 + plan.tile_w] += wy[i][:, None] * wx[j][None, :]
    torch.testing.assert_close(weight, sum_y[:, None] * sum_x[None, :], rtol=1e-6, atol=1e-6)
    assert run_tiled(lambda t: t, ones, tile=48, overlap=12).allclose(ones)
