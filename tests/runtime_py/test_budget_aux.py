"""The fp32 budget of the auxiliary units (``awb_c5``, ``awb_s24``, ``raw_jpeg_decode``), enforced in CI (marker
``budget``): exported with ``--stages aux`` to each runnable target at the CI geometry into one set, measured by
:func:`runtime_py.drift.run_drift` on every shipped DNG with the project's budget (``CI_BUDGETS``: >= 60 dB on every
output, illuminant angular error <= 0.01 deg). The set has no chain units, so no end-to-end chain is judged."""
from __future__ import annotations

import pytest

from isp import paths
from isp.units import AUX_UNITS
from runtime_py import drift

from .artifact_sets import GEOMETRY

pytestmark = [pytest.mark.budget, pytest.mark.slow]

TARGETS = ("executorch", "litert", "onnx")


def test_budget_aux_units(shared_root, tmp_path):
    from convert.export import ExportOptions, run_export
    out = tmp_path / "set"
    for target in TARGETS:
        outcomes, _ = run_export(ExportOptions(target=target, out=out, stages="aux", precision="fp32",
                                               size=GEOMETRY["size"], tile=GEOMETRY["tile"],
                                               overlap=GEOMETRY["overlap"], progress=False))
        assert [o.status for o in outcomes] == ["ok"] * len(AUX_UNITS), [(o.unit, o.error) for o in outcomes]
    dngs = sorted(paths.dng_dir().glob("*.dng"))
    result = drift.run_drift(out, dngs=dngs, budgets=drift.load_budgets("ci"))
    drift.write_reports(result, tmp_path / "drift.json", tmp_path / "drift.html")
    units = result.report["units"]
    assert sorted((u["unit"], u["target"]) for u in units) == sorted((u, t) for u in AUX_UNITS for t in TARGETS)
    assert result.report["end_to_end"] == []
    for u in units:
        assert u["status"] == "ok", u
        (s,) = u["summary"]
        assert s["n"] == len(dngs) and s["psnr"] >= 60.0
        if u["unit"] != "raw_jpeg_decode":
            assert s["angle_deg"] <= 0.01
    assert result.violations == [], "\n".join(result.violations)
