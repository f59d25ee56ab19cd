"""runtime_py.bench.native: the default artifact set of a profile, the arm64 runner choice, emulation labels."""
from __future__ import annotations

import json
import subprocess
from types import SimpleNamespace

import pytest

from android_harness.transport import ShellResult
from runtime_py.bench import native as bn
from runtime_py.devices import get_profile


def test_default_export_is_the_profiles_first_choice():
    assert bn.default_export_args(get_profile("pixel8")) == ["--target", "tflite", "--policy", "int8"]
    assert bn.default_export_args(get_profile("galaxy-s24")) == ["--target", "executorch", "--policy", "int8"]


def test_artifacts_given_or_found(tmp_path):
    assert bn.resolve_artifacts(tmp_path / "mine", get_profile("pixel8")) == tmp_path / "mine"
    found = tmp_path / "artifacts"
    found.mkdir()
    (found / "manifest.json").write_text("{}")
    assert bn.resolve_artifacts(None, get_profile("pixel8"), out=found) == found


def test_no_set_exports_the_default_first(tmp_path, monkeypatch):
    calls = []

    def fake_run(cmd, *a, **kw):
        calls.append(cmd)
        out = cmd[cmd.index("--out") + 1]
        (tmp_path / "artifacts").mkdir()
        (tmp_path / "artifacts" / "manifest.json").write_text(json.dumps({"out": out}))
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(bn.subprocess, "run", fake_run)
    got = bn.resolve_artifacts(None, get_profile("pixel8"), "--size 512x320 --tile 128", out=tmp_path / "artifacts")
    assert got == tmp_path / "artifacts"
    cmd = calls[0]
    assert cmd[1].endswith("convert/export.py") and cmd[2:6] == ["--target", "tflite", "--policy", "int8"]
    assert cmd[6:10] == ["--size", "512x320", "--tile", "128"]


def test_export_args_replace_the_profiles_choice(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(bn.subprocess, "run", lambda cmd, *a, **kw: calls.append(cmd) or
                        subprocess.CompletedProcess(cmd, 1))
    with pytest.raises(RuntimeError):
        bn.resolve_artifacts(None, get_profile("pixel8"), "--precision fp32 --stages gain", out=tmp_path / "a")
    assert calls[0][2:] == ["--target", "tflite", "--precision", "fp32", "--stages", "gain", "--out",
                            str(tmp_path / "a")]


def test_failed_export_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setattr(bn.subprocess, "run", lambda cmd, *a, **kw: subprocess.CompletedProcess(cmd, 1))
    with pytest.raises(RuntimeError, match="export for galaxy-s24 failed .*convert/export.py --target executorch"):
        bn.resolve_artifacts(None, get_profile("galaxy-s24"), out=tmp_path / "artifacts")


def test_runner_formats_and_args(tmp_path):
    from runtime_py.bench.device import runner_entry
    assert runner_entry("native", get_profile("galaxy-s24")).suffixes == (".pte", ".tflite")
    assert runner_entry("native", get_profile("host")).suffixes == (".pte",)
    assert runner_entry("native", get_profile("galaxy-s24")).unit_args is bn.unit_runner_args
    assert bn.unit_runner_args(tmp_path / "m.tflite", "gpu") == ["--accelerator", "gpu"]
    assert bn.unit_runner_args(tmp_path / "m.tflite", "xnnpack") == []
    assert bn.unit_runner_args(tmp_path / "m.pte", "gpu") == []


@pytest.mark.parametrize("out,emulated", [
    ("1\n6.1.0-28-amd64\naarch64\n", True),                      # the arm64 stand-in (ro.kernel.qemu=1)
    ("\n6.1.0-28-amd64\nx86_64\n", True),                        # the x86 stand-in: not an Android kernel
    ("\n5.15.123-android14-11-gabc\naarch64\n", False),          # a phone
])
def test_emulation_label(out, emulated):
    dev = SimpleNamespace(shell=lambda cmd, retry=True: ShellResult(0, out.encode(), b"", 0.01))
    note = bn.emulation_note(dev)
    assert (note is not None) == emulated
    if emulated:
        assert note.startswith("EMULATION") and "not a phone's" in note
