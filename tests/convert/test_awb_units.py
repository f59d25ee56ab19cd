"""AWB export units: the export formulation (float32 histogram in the graph, DFT filtering) equals the reference
on every golden AWB input, exports without graph breaks, and the ONNX artifact runs with fp32 drift >= 60 dB."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from convert.awb_units import AWB_UNITS, build_awb_unit, example_inputs
from isp import paths
from isp.metrics import psnr
from isp.parity_awb import angular_error_deg
from isp.stages import awb as A


@pytest.fixture(scope="module")
def golden_inputs(shared_root):
    files = sorted((paths.shared_root() / "golden_ext").glob("awb_*.npz"))
    if not files:
        pytest.skip("no awb_*.npz golden files")
    out = []
    for f in files:
        with np.load(f) as z:
            out.append((A.resize_for_awb(torch.from_numpy(z["raw"])),
                        torch.from_numpy(z[f"awb_{A.S24_DEFAULT}_capture"])[None]))
    return out


@functools.lru_cache(maxsize=None)
def _unit(uid: str, weights: str):
    return build_awb_unit(uid, weights), A.build_awb(weights, AWB_UNITS[uid])


def _inputs(uid, img, cap):
    return (img,) if uid == "awb_c5" else (img, cap)


@pytest.mark.parametrize("uid", list(AWB_UNITS))
def test_export_formulation_equals_reference(weights_dir, golden_inputs, uid):
    unit, ref = _unit(uid, str(weights_dir))
    for img, cap in golden_inputs:
        with torch.no_grad():
            got = unit(*_inputs(uid, img, cap))
            want = ref(ref.histogram(img), None if ref.is_c5 else cap)
        assert angular_error_deg(got[0], want[0]) < 1e-3 and psnr(got, want) >= 100


@pytest.mark.parametrize("uid", list(AWB_UNITS))
def test_onnx_fp32_drift(weights_dir, golden_inputs, tmp_path, uid):
    pytest.importorskip("onnxruntime")
    from convert.targets import ExportRequest, export
    from runtime_py.runtimes import load
    unit, ref = _unit(uid, str(weights_dir))
    names = ["awb_img"] + ([] if uid == "awb_c5" else ["capture"])
    res = export("onnx", ExportRequest(unit, example_inputs(unit), names, ["illum"], out_dir=tmp_path, stem=uid))
    runner = load(res.path, input_names=names, output_names=["illum"])
    for img, cap in golden_inputs:
        x = _inputs(uid, img, cap)
        got = torch.from_numpy(np.asarray(runner.run([t.numpy() for t in x])[0])).reshape(1, 3)
        with torch.no_grad():
            want = ref(ref.histogram(img), None if ref.is_c5 else cap)
        assert psnr(got, want) >= 60.0
