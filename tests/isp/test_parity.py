"""`python -m isp.parity` on arbitrary golden folders: passes on true goldens, fails (exit 1) on a perturbed one."""
import json

import numpy as np
import pytest

from isp.parity import main


@pytest.fixture(scope="module")
def one_golden(golden_files):
    return next(f for f in golden_files if "chelsea" in f.name)


def test_passes_and_writes_json(tmp_path, one_golden):
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / one_golden.name).symlink_to(one_golden)
    out = tmp_path / "report.json"
    assert main([str(tmp_path / "g"), "--no-e2e", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["pass"] is True
    stages = {r["stage"] for r in report["rows"]}
    assert {"denoise", "color", "gain", "gtm", "ltm", "chroma", "gamma", "upsample", "enhance"} <= stages
    assert all(r["psnr"] is None or r["psnr"] >= 60 for r in report["rows"])


def test_perturbed_golden_fails_with_exit_1(tmp_path, one_golden):
    with np.load(one_golden) as z:
        data = {k: z[k] for k in z.files}
    data["lsrgb_gtm"] = data["lsrgb_gtm"] + np.float32(0.01)          # a real difference: ~40 dB
    (tmp_path / "g").mkdir()
    np.savez(tmp_path / "g" / "perturbed_s0.npz", **data)
    out = tmp_path / "report.json"
    assert main([str(tmp_path / "g"), "--no-e2e", "--json", str(out)]) == 1
    failing = [r for r in json.loads(out.read_text())["rows"] if r["pass"] is False]
    assert [(r["stage"], r["output"]) for r in failing] == [("gtm", "lsrgb_gtm")]


def test_bad_folders(tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.npz").write_bytes(b"junk")
    assert main([str(tmp_path / "broken")]) == 2
    assert "x.npz" in capsys.readouterr().err
