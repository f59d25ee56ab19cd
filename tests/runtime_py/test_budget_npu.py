"""The npu policy's budget, enforced in CI (marker ``budget``): ``--target tflite --policy npu`` and ``--target
executorch --policy npu`` at the CI geometry (512x320, tile 128, overlap 32; the fp32 set of ``test_budget`` of the
same target for the units the policy keeps float, the denoiser and enhancer exported here as the policy says),
measured end to end on every shipped DNG against the float32 reference with ``runtime_py.drift.NPU_BUDGETS``:
>= 40 dB and mean ΔE2000 <= 0.5 on every frame.

Checked on the manifest too: both network units are integer and carry the policy's note (why it chose what it
did); LiteRT: int8 weights, int16 activations and I/O, the layers whose weights were split; ExecuTorch: XNNPACK
W8A8 with the layers the policy keeps float listed (``details.float_layers``). The JSON and HTML reports stay under
the test's temporary folder.
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
    _within_npu_budget(folder, "litert", policy, tmp_path)


def test_npu_budget_executorch(request, tmp_path_factory, shared_root, tmp_path):
    from convert.policy import load_policy

    folder = cached_set(request, tmp_path_factory, "executorch", "policy:npu")
    manifest = json.loads((folder / "manifest.json").read_text())
    policy = load_policy(policy="npu")
    nets = {a["unit"]: a for a in manifest["artifacts"] if a["unit"] in ("denoise", "enhance")
            and a["precision"] != "fp32"}
    assert set(nets) == {"denoise", "enhance"}, [(a["unit"], a["precision"]) for a in manifest["artifacts"]]
    for unit, a in nets.items():
        assert a["precision"] == "int8" and "static per-tensor int8 activations" in a["details"]["quantization"], \
            (unit, a["details"])
        want = policy.unit_options(unit, "executorch")["quantize_exclude"]
        assert a["details"].get("float_layers") == want, (unit, a["details"])
        assert a["op_coverage"]["delegated_ops"] > 0, a["op_coverage"]
        assert unit in policy.notes and "ExecuTorch" in policy.notes[unit]
    _within_npu_budget(folder, "executorch", policy, tmp_path)


def _within_npu_budget(folder, target, policy, tmp_path) -> None:
    """``runtime_py.drift --budget npu`` on every shipped DNG: the chain exactly as ``policy`` exports it for
    ``target`` is judged, and no frame is over the budget."""
    from convert.units import units_for

    dngs = sorted(paths.dng_dir().glob("*.dng"))
    result = drift.run_drift(folder, dngs=dngs, budgets=drift.load_budgets("npu"), per_unit=False)
    drift.write_reports(result, tmp_path / "drift_npu.json", tmp_path / "drift_npu.html")
    report = result.report
    assert len(report["frames"]) == len(dngs)
    chains = [e for e in report["end_to_end"] if e["class"] == "int8"]
    planned = {p.unit: [target, p.precision] for p in policy.plan(units_for(False), target)}
    assert planned in [e["selection"] for e in chains], (planned, [e["selection"] for e in report["end_to_end"]])
    assert all(e["status"] == "ok" for e in chains), chains
    assert result.violations == [], f"{target} npu over budget (report: {tmp_path}):\n" + "\n".join(result.violations)
