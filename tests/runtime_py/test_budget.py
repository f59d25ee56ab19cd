"""The export quality budget, enforced in CI (marker ``budget``; a plain ``pytest`` runs it only when ``CI`` is set,
``pytest -m budget`` runs it anywhere).

For each runnable target (ExecuTorch, LiteRT, ONNX Runtime) and each of fp32, the fp16 policy and the default int8
policy, the set is exported at the reduced CI geometry (512x320, tile 128, overlap 32; cached like the other artifact
sets) and :func:`runtime_py.drift.run_drift` measures it on every shipped DNG against the float32 reference with the
project's budget (``runtime_py.drift.CI_BUDGETS``): every fp32 unit >= 60 dB, fp16 end to end >= 45 dB, int8 end to
end >= 38 dB with mean ΔE2000 <= 1.0. A failure lists each violation with its unit, target, precision and metric;
the JSON and HTML reports of every run are kept under the test's temporary folder.
"""
from __future__ import annotations

import json

import pytest

from convert.export import nafnet_statistics

from isp import paths
from runtime_py import drift

from .artifact_sets import cached_set

pytestmark = [pytest.mark.budget, pytest.mark.slow]

TARGETS = ("executorch", "litert", "onnx")
PRECISIONS = ("fp32", "policy:fp16", "policy:int8")


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("target", TARGETS)
def test_budget(request, tmp_path_factory, shared_root, target, precision, tmp_path):
    folder = cached_set(request, tmp_path_factory, target, precision)
    dngs = sorted(paths.dng_dir().glob("*.dng"))
    result = drift.run_drift(folder, dngs=dngs, budgets=drift.load_budgets("ci"), max_tiles=4)
    drift.write_reports(result, tmp_path / "drift.json", tmp_path / "drift.html")
    report = result.report
    assert len(report["frames"]) == len(dngs)
    klass = precision.partition(":")[2] or precision
    chains = [e for e in report["end_to_end"] if e["class"] == klass and e["name"].startswith(target)]
    assert chains, f"no {klass} end-to-end chain for {target}: {[e['name'] for e in report['end_to_end']]}"
    assert all(e["status"] == "ok" for e in chains), chains
    policy = precision.partition(":")[2]
    if policy:                                 # the chain exactly as the policy exports it is among those judged
        from convert.policy import load_policy
        from convert.units import units_for
        planned = {p.unit: [target, p.precision] for p in load_policy(policy=policy).plan(units_for(False), target)}
        assert planned in [e["selection"] for e in chains], (planned, [e["selection"] for e in chains])
    for e in json.loads((folder / "manifest.json").read_text())["artifacts"]:
        if e["unit"] in ("denoise", "enhance"):
            want = nafnet_statistics(target, e["precision"])     # the form its target and precision need
            assert e["details"].get("nafnet_statistics") == want, (e["unit"], e["precision"], e["details"])
    if klass == "fp32":                        # every unit ran (and, by the budget below, is >= 60 dB)
        assert {u["target"] for u in report["units"]} == {target}
        assert all(u["status"] == "ok" for u in report["units"]), [u for u in report["units"] if u["status"] != "ok"]
    assert result.violations == [], f"{target} {precision} over budget (report: {tmp_path}):\n" + \
        "\n".join(result.violations)
