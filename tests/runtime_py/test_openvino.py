"""runtime_py.openvino / convert.runtimes.OpenVinoRunner: the ONNX set's own files on OpenVINO's CPU kernels give
ONNX Runtime's image within the budgets (ONNX fp32 set at 512x320, tile 128, the shipped LinearRaw DNG): float32
every unit within the fp32 unit budget, the enhancer in bfloat16 and the slice in float16 within the fp16 chain budget;
each precision hint compiles into its own cache folder."""
from __future__ import annotations

import numpy as np
import pytest

from runtime_py.drift_budgets import CI_BUDGETS
from runtime_py.openvino import REDUCED_UNITS, available, on_openvino, unit_precision

from .artifact_sets import frame, geometry, onnx_set  # noqa: F401  (fixtures)

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.clip(a, 0, 1) - np.clip(b, 0, 1)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


@pytest.fixture(scope="module")
def aset(onnx_set):
    from runtime_py.artifacts import ArtifactSet
    return ArtifactSet.open(onnx_set)


@pytest.fixture(scope="module")
def ort_image(aset, frame):
    from runtime_py.pipeline import ArtifactPipeline
    from runtime_py.stream import render_streaming
    return render_streaming(ArtifactPipeline(aset.select(["onnx"])), *frame)


def test_runner_matches_onnxruntime_per_unit(aset):
    from convert.runtimes import OnnxRunner, OpenVinoRunner
    rng = np.random.default_rng(0)
    for unit in ("denoise", "color", "upsample_slice", "enhance"):
        a = aset.select(["onnx"], units=[unit])[unit]
        ref = OnnxRunner(a.path, a.input_names, a.output_names)
        ov = OpenVinoRunner(a.path, a.input_names, a.output_names, precision="f32")
        assert ov.input_names == ref.input_names and ov.output_names == ref.output_names
        assert [s.shape for s in ov.inputs] == [s.shape for s in ref.inputs]
        x = [rng.random(s.shape, dtype=np.float32) for s in ref.inputs]
        for got, want in zip(ov.run(x), ref.run(x)):
            assert got.dtype == np.float32 and got.shape == want.shape
            assert _psnr(got, want) >= CI_BUDGETS["unit"]["fp32"]["psnr_min"], unit
    with pytest.raises(ValueError, match="expects shape"):
        ov.run([np.zeros((1, 3, 8, 8), np.float32)])


def test_openvino_render_within_the_budgets(aset, frame, ort_image, tmp_path, monkeypatch):
    from runtime_py.pipeline import ArtifactPipeline
    from runtime_py.stream import render_streaming
    monkeypatch.setenv("ISP_OPENVINO_CACHE", str(tmp_path / "cache"))
    got = {}
    for runtime in ("openvino", "openvino-bf16"):
        sel = on_openvino(aset.select(["onnx"]), runtime)
        assert sel.label.endswith(f"on {runtime}")
        pipe = ArtifactPipeline(sel)
        got[runtime] = render_streaming(pipe, *frame)
        assert list(pipe.timings) == list(pipe.units)
    # compiled models cached for the next process, one folder per hint (OpenVINO's key does not tell f16 from f32)
    assert {p.name for p in (tmp_path / "cache").iterdir()} == {"f32", "bf16", "f16"}
    assert all(any(p.iterdir()) for p in (tmp_path / "cache").iterdir())
    # the float16 slice did run (a shared cache folder handed it the float32 blob: the same numbers)
    slices = [on_openvino(aset.select(["onnx"]), rt).runner("upsample_slice") for rt in ("openvino", "openvino-bf16")]
    x = [np.random.default_rng(1).random(s.shape, dtype=np.float32) for s in slices[0].inputs]
    assert not np.array_equal(slices[0].run(x)[0], slices[1].run(x)[0])
    assert _psnr(got["openvino"], ort_image) >= CI_BUDGETS["end_to_end"]["fp32"]["psnr_min"]
    assert _psnr(got["openvino-bf16"], ort_image) >= CI_BUDGETS["end_to_end"]["fp16"]["psnr_min"]
    assert not np.array_equal(got["openvino-bf16"], got["openvino"])   # bf16 did run
    assert unit_precision("openvino-bf16", "enhance") == "bf16" and unit_precision("openvino", "enhance") == "f32"
    assert unit_precision("openvino-bf16", "upsample_slice") == "f16"
    assert REDUCED_UNITS == {"enhance": "bf16", "upsample_slice": "f16"}
    assert unit_precision("openvino-bf16", "denoise") == "f32"
    assert unit_precision("openvino-bf16", "enhance", "int8") == "f32"       # no bf16 kernel for Q/DQ convs


def test_render_cli_runtime_openvino(onnx_set, tmp_path, monkeypatch):
    from isp import paths
    from runtime_py.render import main
    from .artifact_sets import FRAME
    monkeypatch.setenv("ISP_OPENVINO_CACHE", "")
    out = tmp_path / "ov.jpg"
    rc = main([str(paths.dng_dir() / FRAME), "-o", str(out), "--artifacts", str(onnx_set), "--fit", "crop",
               "--runtime", "openvino-bf16", "--quiet"])
    assert rc == 0 and out.stat().st_size > 0


def test_bad_runtime_and_non_onnx_selection(aset):
    with pytest.raises(ValueError, match="runtime must be one of"):
        unit_precision("openvino-int4", "enhance")
    from convert.runtimes import OpenVinoRunner
    with pytest.raises(ValueError, match="precision"):
        OpenVinoRunner(aset.select(["onnx"], units=["color"])["color"].path, precision="fp16")


@pytest.mark.budget
@pytest.mark.slow
def test_int8_policy_set_on_openvino_within_the_int8_budget(request, tmp_path_factory, shared_root, tmp_path,
                                                             monkeypatch):
    """The ONNX int8-policy set's int8 enhancer runs on OpenVINO's integer kernels (not left on ONNX Runtime) and
    the chain stays within the int8 end-to-end budget against the reference on every shipped DNG."""
    import torch

    from convert.runtimes import OpenVinoRunner
    from isp import paths
    from runtime_py import metrics as M
    from runtime_py.artifacts import ArtifactSet
    from runtime_py.drift import EvalFrame, Reference
    from runtime_py.pipeline import ArtifactPipeline, read_frame
    from runtime_py.stream import render_streaming

    from .artifact_sets import cached_set

    monkeypatch.setenv("ISP_OPENVINO_CACHE", str(tmp_path / "cache"))
    aset = ArtifactSet.open(cached_set(request, tmp_path_factory, "onnx", "policy:int8"))
    budget = CI_BUDGETS["end_to_end"]["int8"]
    ref = Reference(aset)
    for dng in sorted(paths.dng_dir().glob("*.dng")):
        raw, illum, ccm, _img = read_frame(dng, aset.geometry, fit="crop")
        with torch.inference_mode():
            want = ref.intermediates(EvalFrame(dng.stem, raw, illum, ccm))["srgb"]
        sel = on_openvino(aset.select(["onnx"]), "openvino-bf16")
        assert sel["enhance"].precision == "int8"
        if sel["enhance"].load_options(sel.ort_int8):       # flagged for this CPU: stays on ONNX Runtime
            pytest.skip("this CPU's int8 kernels are flagged by the export; the int8 unit keeps ONNX Runtime")
        assert isinstance(sel.runner("enhance"), OpenVinoRunner)
        got = render_streaming(ArtifactPipeline(sel), raw, illum, ccm)
        m = M.compare(got, np.asarray(want[0].permute(1, 2, 0)), kind="srgb")
        assert m["psnr"] >= budget["psnr_min"] and m["de2000_mean"] <= budget["de2000_mean_max"], (dng.name, m)


def test_tiles_on_streams_give_the_same_image(aset, frame, monkeypatch):
    """Tiled units get one OpenVINO stream per thread and the stream runs two windows at once; the quarter units one
    stream with every thread; the image is the one-stream image."""
    import convert.runtimes as rt
    from runtime_py.openvino import tile_streams
    from runtime_py.pipeline import ArtifactPipeline
    from runtime_py.stream import render_streaming
    monkeypatch.setattr(rt, "default_threads", lambda: 2)
    monkeypatch.setenv("ISP_OPENVINO_CACHE", "")
    assert (tile_streams("denoise"), tile_streams("enhance", 1), tile_streams("ltm"), tile_streams("gain", 2)) == \
        (2, 1, 1, 1)
    got = {}
    for streams in (1, 2):
        sel = on_openvino(aset.select(["onnx"]), "openvino", streams=streams)
        assert sel.runner("denoise").concurrency == streams and sel.runner("upsample_slice").concurrency == streams
        assert sel.runner("gain").concurrency == 1
        got[streams] = render_streaming(ArtifactPipeline(sel), *frame)
    np.testing.assert_allclose(got[2], got[1], atol=1e-5)
    with pytest.raises(ValueError, match="streams"):
        from convert.runtimes import OpenVinoRunner
        OpenVinoRunner(aset.select(["onnx"])["gain"].path, streams=0)
