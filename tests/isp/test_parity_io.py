"""``python -m isp.parity`` on the golden files of other kinds: lin_* and jpeg_* are checked by their registered
checkers (stage-wise and end to end, >= 60 dB or identical bytes), kinds nobody registered are skipped, not failed."""
from __future__ import annotations

import json

from isp.parity import FILE_CHECKERS, file_checker, main


def test_checkers_registered_by_prefix(tmp_path):
    assert FILE_CHECKERS["lin_"] and FILE_CHECKERS["jpeg_"]
    assert file_checker(tmp_path / "lin_x.npz").__name__ == "check_lin"
    assert file_checker(tmp_path / "jpeg_x.npz").__name__ == "check_jpeg"
    assert file_checker(tmp_path / "astronaut_s0.npz") is None


def test_lin_and_jpeg_pass_unknown_kinds_skipped(golden_ext, weights_dir, tmp_path):
    picked = golden_ext("lin_") + golden_ext("jpeg_")             # all of them: CI runs the whole check
    for f in picked:
        (tmp_path / f.name).symlink_to(f)
    (tmp_path / "zzz_unknown_kind.npz").symlink_to(picked[0])
    out = tmp_path / "parity.json"
    assert main([str(tmp_path), "--weights", str(weights_dir), "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    checked = [r for r in rows if not r.get("skipped")]
    assert {r["file"] for r in checked} == {f.stem for f in picked}
    assert all(r["pass"] for r in checked), [r for r in checked if not r["pass"]]
    assert any(r["stage"] == "end-to-end" and r["output"] == "raw" for r in checked)
    assert any(r["stage"].startswith("end-to-end q") for r in checked)
    assert all(r["psnr"] is None or r["psnr"] >= 60.0 for r in checked)
    skipped = [r for r in rows if r.get("skipped")]
    assert [r["file"] for r in skipped] == ["zzz_unknown_kind"] and skipped[0]["pass"] is None
