"""Auxiliary export units (``awb_c5``, ``awb_s24``, ``raw_jpeg_decode``): in the one unit table but outside the chain;
the export formulations (float32 histogram in the graph + DFT filtering; the mobile decoder) equal the reference on
the golden inputs; each unit exports to ONNX, ExecuTorch and LiteRT and runs back >= 60 dB (illuminant angle
<= 0.01 deg) against the reference, and converts to Core ML (structural check on Linux)."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from convert.units import build_unit, expand_stages, units_for
from isp.geometry import FrameGeometry
from isp.metrics import psnr
from isp.parity_awb import angular_error_deg
from isp.registry import BuildConfig
from isp.units import ALL_UNITS, AUX_UNITS, UNIT_ORDER, UNITS, chain_tensors

#: a small frame for the decoder (the AWB units' shapes are fixed by the models)
GEO = FrameGeometry(256, 128, 128, 32)


@functools.lru_cache(maxsize=None)
def _unit(uid: str, weights: str):
    return build_unit(uid, BuildConfig(weights), GEO)


def _golden(unit, n: int | None = None):
    return unit.calibration_inputs(None, limit=n)


def test_table_keeps_the_chain(weights_dir):
    assert ALL_UNITS == UNIT_ORDER + AUX_UNITS and set(AUX_UNITS) <= set(UNITS)
    assert not set(AUX_UNITS) & set(units_for(True)) and not set(AUX_UNITS) & set(expand_stages("all", True))
    assert "illum" not in chain_tensors(params=True, grid=True) and "rec_raw" not in chain_tensors(params=True)
    assert expand_stages("aux", False) == list(AUX_UNITS)
    assert expand_stages("awb,raw_jpeg_decode", False) == list(AUX_UNITS)
    assert expand_stages("gain,awb_s24", False) == ["gain", "awb_s24"]
    with pytest.raises(ValueError, match="aux"):
        expand_stages("awb_c7", False)
    s24 = _unit("awb_s24", str(weights_dir))
    assert s24.input_shapes == ((1, 3, 256, 384), (1, 8)) and s24.output_shapes == ((1, 3),)
    dec = _unit("raw_jpeg_decode", str(weights_dir))
    assert dec.input_shapes[0] == (1, 3, 128, 256) and dec.output_shapes == ((1, 3, 128, 256),)


def test_policies_keep_them_float():
    from convert.policy import load_policy
    for name in ("int8", "w8", "fp32"):
        for p in load_policy(name).plan(list(AUX_UNITS), "onnx"):
            assert p.precision == "fp32", (name, p.unit, p.precision)


@pytest.mark.parametrize("uid", AUX_UNITS)
def test_export_formulation_equals_reference(weights_dir, uid):
    unit = _unit(uid, str(weights_dir))
    rows = _golden(unit)
    assert len(rows) >= 6
    for x in rows:
        got, want = unit(*x)[0], unit.reference(*x)[0]
        assert psnr(got.double(), want.double()) >= 100
        if uid != "raw_jpeg_decode":
            assert angular_error_deg(got[0], want[0]) < 1e-3


def _check_runner(unit, path, target):
    from convert.runtimes import load
    runner = load(path, input_names=list(unit.input_names), output_names=list(unit.output_names))
    if target == "coreml":
        assert runner.compute_precision == "FLOAT32"
        assert [tuple(i.shape) for i in runner.inputs] == list(unit.input_shapes)
        assert [tuple(o.shape) for o in runner.outputs] == list(unit.output_shapes)
        return
    for x in _golden(unit, 2):
        got = torch.from_numpy(np.asarray(runner.run([t.numpy() for t in x])[0])).reshape(unit.output_shapes[0])
        want = unit.reference(*x)[0].float()
        assert psnr(got.double(), want.double()) >= 60.0
        if unit.id != "raw_jpeg_decode":
            assert angular_error_deg(got[0], want[0]) <= 0.01


#: ExecuTorch and LiteRT conversions take 20-60 s per unit on 2 cores: ``slow`` here; CI exports and measures them in
#: the budget test (tests/runtime_py/test_budget_aux.py)
_TARGETS = ["onnx", "coreml"] + [pytest.param(t, marks=pytest.mark.slow) for t in ("executorch", "litert")]


@pytest.mark.parametrize("target", _TARGETS)
@pytest.mark.parametrize("uid", AUX_UNITS)
def test_exports_and_runs(weights_dir, tmp_path, uid, target):
    from convert.targets import ExportRequest, export
    unit = _unit(uid, str(weights_dir))
    req = ExportRequest(unit.module, _golden(unit, 1)[0], list(unit.input_names), list(unit.output_names),
                        out_dir=tmp_path, stem=uid)
    res = export(target, req)
    assert res.path.exists() and res.op_coverage.total_ops > 0
    _check_runner(unit, res.path, target)
