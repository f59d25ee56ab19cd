"""The npu policy's budget, enforced in CI (marker ``budget``): ``--target tflite --policy npu`` at the CI geometry
(512x320, tile 128, overlap 32; the LiteRT fp32 set of ``test_budget`` for the units the policy keeps float, the
denoiser and enhancer exported here as the policy says: LiteRT 16x8, the layers the policy names with split int8
weights), measured end to end on every shipped DNG against the float32 reference with
``runtime_py.drift.NPU_BUDGETS``: >= 40 dB and mean ΔE2000 <= 0.5 on every frame.

Checked on the manifest too: both network units are integer (int8 weights, int16 activations and I/O), each
records the layers whose weights were split and why the policy chose them (its note). The JSON and HTML reports
stay under the test's temporary folder.
"""
from __future__ import annotations

import json

import pytest

from isp import paths
from runtime_py import drift

from .artifact_sets import cached_set

pytestmark = [pytest.mark.budget, pytest.mark.slow]


def test_npu_budget_litert(request, tmp_path_factory, shared_root, tmp_path):
    from convert.policy import load_policy
    from convert.units import units_for

    folder = cached_set(request, tmp_path_factory, "litert", "policy:npu")
    manifest = json.loads((folder / "manifest.json").read_text())
    policy = load_policy(policy="npu")
    nets = {a["unit"]: a for a in manifest["artifacts"] if a["unit"] in ("denoise", "enhance")}
    assert set(nets) == {"denoise", "enhance"}
    for unit, a in nets.items():
        assert a["precision"] == "int8" and a["details"]["int8_method"] == "aeq16", (unit, a["details"])
        assert a["details"]["io_dtype"].startswith("int16"), a["details"]
        want = policy.unit_options(unit, "litert").get("split_weights") or []
        assert len(a["details"].get("split_weights", [])) >= len(want), (unit, a["details"])
        assert unit in policy.notes
    dngs = sorted(paths.dng_dir().glob("*.dng"))
    result = drift.run_drift(folder, dngs=dngs, budgets=drift.load_budgets("npu"), per_unit=False)
    drift.write_reports(result, tmp_path / "drift_npu.json", tmp_path / "drift_npu.html")
    report = result.report
    assert len(report["frames"]) == len(dngs)
    chains = [e for e in report["end_to_end"] if e["class"] == "int8"]
    planned = {p.unit: ["litert", p.precision] for p in policy.plan(units_for(False), "litert")}
    assert planned in [e["selection"] for e in chains], (planned, [e["selection"] for e in report["end_to_end"]])
    assert all(e["status"] == "ok" for e in chains), chains
    assert result.violations == [], f"litert npu over budget (report: {tmp_path}):\n" + "\n".join(result.violations)
