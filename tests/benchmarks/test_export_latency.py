"""Smoke test of ``benchmarks/export_latency.py`` on a tiny artifact set (CI geometry 512x320, tile 128, ONNX fp32,
the ``color`` and ``gain`` units only): the table, the JSON report, the chains, and failures reported rather than
raised. Only that numbers exist and fit together is checked — never how fast anything is (speed is for the
benchmark to print, not for tests to assert)."""
from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = "color,gain"


def _load_script():
    spec = importlib.util.spec_from_file_location("export_latency", ROOT / "benchmarks" / "export_latency.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("export_latency", mod)
    spec.loader.exec_module(mod)
    return mod


bench = _load_script()


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory, shared_root) -> Path:
    pytest.importorskip("onnxruntime")
    from convert.export import ExportOptions, run_export

    out = tmp_path_factory.mktemp("tiny-onnx-fp32")
    opts = ExportOptions(target="onnx", out=out, precision="fp32", stages=UNITS, size="512x320", tile=128,
                         overlap=32, verify=False, progress=False, threads=1)
    outcomes, _ = run_export(opts)
    assert all(o.status == "ok" for o in outcomes), [(o.unit, o.error) for o in outcomes]
    return out


def test_table_and_report(tiny_set, tmp_path, capsys):
    report_path = tmp_path / "latency.json"
    rc = bench.main([str(tiny_set), "--units", UNITS, "--threads", "1", "--repeat", "2", "--warmup", "1",
                     "--no-isolate", "--quiet", "--json", str(report_path), "--markdown", str(tmp_path / "t.md")])
    table = capsys.readouterr().out
    assert rc == 0, table
    report = json.loads(report_path.read_text())
    assert report["schema"] == bench.SCHEMA
    assert report["host"]["threads"] == 1 and report["host"]["cpu"] and "torch" in report["host"]["versions"]
    assert list(report["units"]) == ["color", "gain"]
    # calls per frame follow the runtime's tile plans: color runs on plain 128x128 windows, gain once
    from runtime_py.artifacts import ArtifactSet
    geo = ArtifactSet.open(tiny_set).geometry
    assert report["units"]["color"]["calls_per_frame"] == len(geo.plan(overlap=0)) > 1
    assert report["units"]["gain"]["calls_per_frame"] == 1
    for unit, u in report["units"].items():
        t = u["torch"]["per_call_ms"]
        assert t["n"] == 2 and t["median"] > 0
        (a,) = u["artifacts"].values()
        assert a["status"] == "ok" and a["per_call_ms"]["n"] == 2
        assert a["frame_ms"] == pytest.approx(a["per_call_ms"]["median"] * u["calls_per_frame"])
        assert a["ratio"] == pytest.approx(a["per_call_ms"]["median"] / t["median"])
        assert max(a["max_abs_err_vs_torch"]) < 1e-3            # the artifact computes what the torch unit does
    (chain,) = report["chains"]
    assert chain["label"] == "onnx fp32" and chain["complete"]
    assert chain["ratio"] == pytest.approx(chain["frame_ms"] / chain["torch_frame_ms"])
    # the markdown table: header, one row per unit, the frame row; host facts above it
    assert "| unit | calls/frame | PyTorch fp32 | onnx fp32 |" in table
    assert "| color | " in table and "| gain | 1 | " in table and "| **frame** |" in table
    assert "1 thread(s)" in table and report["host"]["cpu"] in table
    assert (tmp_path / "t.md").read_text().strip() == report["markdown"].strip()


def test_failures_are_reported_not_raised(tiny_set, tmp_path, capsys):
    """A broken artifact (isolated child process) and a Core ML entry: both in the table, the torch baseline and
    the run still complete, exit status 1."""
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_set.iterdir():
        if f.suffix == ".onnx":
            shutil.copy2(f, broken / f.name)
    (broken / "gain_onnx_fp32.onnx").write_bytes(b"not an onnx model")
    manifest = json.loads((tiny_set / "manifest.json").read_text())
    gain = next(a for a in manifest["artifacts"] if a["unit"] == "gain")
    coreml = dict(gain, target="coreml", backend="all", file="gain_coreml_fp32.mlpackage", runnable_here=False)
    (broken / coreml["file"]).mkdir()
    manifest["artifacts"].append(coreml)
    (broken / "manifest.json").write_text(json.dumps(manifest))

    report_path = tmp_path / "latency.json"
    rc = bench.main([str(broken), "--units", "gain", "--threads", "1", "--repeat", "1", "--warmup", "0",
                     "--no-verify", "--quiet", "--json", str(report_path)])
    table = capsys.readouterr().out
    assert rc == 1, table
    report = json.loads(report_path.read_text())
    u = report["units"]["gain"]
    assert u["torch"]["per_call_ms"]["median"] > 0
    by_target = {a["target"]: a for a in u["artifacts"].values()}
    assert by_target["onnx"]["status"] == "load failed" and by_target["onnx"]["error"]
    assert by_target["coreml"]["status"] == "not runnable here"
    assert "Core ML" in by_target["coreml"]["error"]
    assert "n/a (Core ML, not run on Linux)" in table
    assert "Failures:" in table and "load failed" in table


def test_bad_arguments(tmp_path, capsys):
    assert bench.main([str(tmp_path / "nowhere")]) == bench.EXIT_USAGE
    assert "no such folder" in capsys.readouterr().err
