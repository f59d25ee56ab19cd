"""runtime_py.stream: the bounded-memory render gives the table run's image (ONNX fp32 set at 512x320, tile 128:
15 feathered windows, 12 plain tiles), with the per-unit timings and call counts of a streamed run."""
from __future__ import annotations

import numpy as np
import pytest

from runtime_py.pipeline import ArtifactPipeline
from runtime_py.stream import STREAM_PHASES, render_streaming, streaming_calls

from .artifact_sets import frame, geometry, onnx_set  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def pipe(onnx_set):
    return ArtifactPipeline.open(onnx_set, prefer=["onnx"])


def test_streaming_equals_the_table_run(pipe, frame):
    table = pipe.run(*frame)["srgb"][0].permute(1, 2, 0).numpy()
    ticks = []
    got = render_streaming(pipe, *frame, progress=ticks.append)
    assert got.shape == table.shape and got.dtype == np.float32 and got.flags.c_contiguous
    # the same windows through the same artifacts; only the feathered normalisation (separable totals instead
    # of an accumulated map) and the slice of feathered instead of plain windows round differently
    diff = np.abs(got - table)
    assert diff.max() < 1e-4, diff.max()
    assert 10 * np.log10(1.0 / float(np.mean(diff ** 2))) > 120.0
    assert sum(ticks) == streaming_calls(pipe)
    windows, plain = len(pipe.geometry.plan()), len(pipe.geometry.plan(overlap=0))
    assert windows == 15 and plain == 12
    calls = {u: t["calls"] for u, t in pipe.timings.items()}
    assert calls["denoise"] == calls["enhance"] == calls["upsample_slice"] == windows
    assert calls["color"] == plain and calls["gain"] == 1
    assert list(pipe.timings) == list(pipe.units)
    assert set(pipe.phases) == set(STREAM_PHASES)


def test_streaming_checks_its_inputs(pipe, frame):
    raw, illum, ccm = frame
    with pytest.raises(ValueError, match="export geometry|exported for"):
        render_streaming(pipe, raw[..., :64, :64], illum, ccm)
