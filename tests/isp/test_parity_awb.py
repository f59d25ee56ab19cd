"""`python -m isp.parity` on golden_ext files: awb_* files are checked by their registered checker, file kinds
without a checker are reported as skipped, a perturbed AWB golden fails with exit status 1."""
import json

import numpy as np
import pytest

from isp import paths
from isp.parity import main


@pytest.fixture(scope="module")
def ext_dir(shared_root):
    d = paths.shared_root() / "golden_ext"
    if not (d / "awb_chelsea_phone-a_mixed_iso400.npz").is_file():
        pytest.skip("golden_ext/awb_chelsea_phone-a_mixed_iso400.npz not found")
    return d


def test_awb_file_passes_and_other_kinds_are_skipped(tmp_path, ext_dir):
    g = tmp_path / "g"
    g.mkdir()
    (g / "awb_chelsea_phone-a_mixed_iso400.npz").symlink_to(ext_dir / "awb_chelsea_phone-a_mixed_iso400.npz")
    np.savez(g / "other_dummy.npz", x=np.zeros(1))   # a kind no checker claims
    out = tmp_path / "report.json"
    assert main([str(g), "--no-e2e", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {r["stage"] for r in rows} >= {"awb_hist", "awb_c5", "awb_pref", "awb_features", "awb_s24"}
    skipped = [r for r in rows if r.get("skipped")]
    assert [r["file"] for r in skipped] == ["other_dummy"] and skipped[0]["pass"] is None
    angles = [r["metric"]["value"] for r in rows if r.get("metric")]
    assert len(angles) == 10 and max(angles) <= 0.01


def test_perturbed_awb_golden_fails(tmp_path, ext_dir):
    with np.load(ext_dir / "awb_chelsea_phone-a_mixed_iso400.npz") as z:
        data = {k: z[k] for k in z.files}
    data["awb_iso_shutter_speed_snr_illum"] = data["awb_iso_shutter_speed_snr_illum"][[2, 1, 0]]
    (tmp_path / "g").mkdir()
    np.savez(tmp_path / "g" / "awb_perturbed.npz", **data)
    out = tmp_path / "report.json"
    assert main([str(tmp_path / "g"), "--no-e2e", "--json", str(out)]) == 1
    failing = [r["output"] for r in json.loads(out.read_text())["rows"] if r["pass"] is False]
    assert failing == ["awb_iso_shutter_speed_snr_illum"]
