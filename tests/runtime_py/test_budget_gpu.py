"""The GPU budget, enforced in CI (marker ``budget``): the LiteRT fp16 set at the CI geometry (512x320, tile 128,
overlap 32; the cached set of ``test_budget``) on LiteRT's GPU delegate in fp16 (``--runtime litert-gpu``; here
WebGPU on Mesa's lavapipe, installed by ``scripts/setup_vulkan.sh``), on every shipped DNG:

* every unit of the GPU set (the ``pixel8`` profile's GPU units) runs wholly on the GPU: at export (the manifest's
  measured ``backend_coverage["gpu"]``) and in the chain (a unit the delegate does not take whole fails it);
* the end-to-end chain (GPU set on the delegate in fp16, ``upsample_fit``/``upsample_slice`` on the CPU) is within
  ``runtime_py.drift.CI_BUDGETS["end_to_end"]["gpu-fp16"]``: >= 45 dB and mean ΔE2000 <= 0.5 on every frame.

Skips with the probe's reason where no GPU adapter exists. The JSON and HTML reports stay under the test's temporary
folder.
"""
from __future__ import annotations

import json

import pytest

from isp import paths
from runtime_py import drift, gpu

from .artifact_sets import cached_set

pytestmark = [pytest.mark.budget, pytest.mark.slow]


def test_gpu_budget(request, tmp_path_factory, shared_root, tmp_path):
    reason = gpu.skip_reason()
    if reason:
        pytest.skip(reason)
    folder = cached_set(request, tmp_path_factory, "litert", "policy:fp16")
    units = set(gpu.gpu_units())
    manifest = json.loads((folder / "manifest.json").read_text())
    for a in manifest["artifacts"]:
        if a["unit"] in units and a["target"] == "litert":
            cov = (a.get("backend_coverage") or {}).get("gpu") or {}
            assert cov.get("measured") and cov.get("fully_accelerated"), (a["file"], cov)
    dngs = sorted(paths.dng_dir().glob("*.dng"))
    result = drift.run_drift(folder, dngs=dngs, budgets=drift.load_budgets("ci"), runtimes=("litert-gpu",),
                             per_unit=False)
    drift.write_reports(result, tmp_path / "drift_gpu.json", tmp_path / "drift_gpu.html")
    report = result.report
    assert len(report["frames"]) == len(dngs)
    (chain,) = report["end_to_end"]
    assert chain["status"] == "ok", chain["error"]
    assert chain["class"] == "gpu-fp16"
    on_gpu = {u for u, v in chain["selection"].items() if v[2] == "litert-gpu"}
    assert on_gpu == units & set(chain["selection"])
    assert set(chain["gpu_coverage"]) == on_gpu
    assert all(c["fully_accelerated"] for c in chain["gpu_coverage"].values()), chain["gpu_coverage"]
    assert result.violations == [], f"GPU fp16 over budget (report: {tmp_path}):\n" + "\n".join(result.violations)
