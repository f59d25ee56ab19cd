"""runtime_py.bench.default_set: without --artifacts the bench uses ./artifacts or exports the profile's default set
there first — arguments checked before the device is asked, geometry by device kind, the set renamed into place
only when complete (the exporter is replaced by a fake that writes what it would)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from runtime_py.bench import default_set as ds
from runtime_py.devices import get_profile

PIXEL8 = get_profile("pixel8")
NATIVE = (".pte", ".tflite")


class FakeExporter:
    """Stands in for ``subprocess.run([python, convert/export.py, ...])``: records the command, writes a manifest
    (with the calibration paths inside its --out, as the exporter does) and a file, returns ``code``."""

    def __init__(self, code: int = 0, failures: list | None = None, interrupt: bool = False):
        self.calls: list[list[str]] = []
        self.had_calibration: list[bool] = []                   # the staging folder held one when it started
        self.code, self.failures, self.interrupt = code, failures or [], interrupt

    def __call__(self, cmd, *a, **kw):
        self.calls.append(list(cmd))
        out = Path(cmd[cmd.index("--out") + 1])
        self.had_calibration.append((out / "calibration" / "calib" / "set.json").is_file())
        (out / "calibration" / "calib").mkdir(parents=True, exist_ok=True)
        (out / "calibration" / "calib" / "set.json").write_text("{}")     # a finished calibration set
        (out / "gain_litert_fp32.tflite").write_bytes(b"x")
        if self.interrupt:
            raise KeyboardInterrupt
        (out / "manifest.json").write_text(json.dumps({
            "format": "isp-export-manifest", "artifacts": [], "failures": self.failures,
            "calibration": {"path": str(out / "calibration" / "calib"), "eval": str(out / "calibration" / "eval")}}))
        return subprocess.CompletedProcess(cmd, self.code)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".artifacts.") and
                  p.name != ".artifacts.calibration")


def test_default_export_is_the_profiles_first_choice():
    assert ds.default_export_args(PIXEL8) == ["--target", "tflite", "--policy", "int8"]
    assert ds.default_export_args(get_profile("galaxy-s24")) == ["--target", "executorch", "--policy", "int8"]


def test_artifacts_given_or_found(tmp_path):
    never = lambda: pytest.fail("the device must not be probed when no export is needed")  # noqa: E731
    assert ds.resolve_artifacts(tmp_path / "mine", PIXEL8, probe=never) == (tmp_path / "mine", None)
    found = tmp_path / "artifacts"
    found.mkdir()
    (found / "manifest.json").write_text("{}")
    assert ds.resolve_artifacts(None, PIXEL8, out=found, probe=never) == (found, None)


def test_export_args_without_an_export_are_said_to_be_ignored(tmp_path, capsys):
    assert ds.resolve_artifacts(tmp_path, PIXEL8, "--size 12mp") == (tmp_path, None)
    assert "--export-args ignored" in capsys.readouterr().err


@pytest.mark.parametrize("emulated,extra,geometry", [
    (True, "", ["--size", "512x320", "--tile", "128"]),          # stand-in: the CI geometry, said so
    (False, "", []),                                             # a phone: the exporter's default (12 MP)
    (True, "--size 1024x640", ["--size", "1024x640"]),           # the user's size wins
])
def test_geometry_by_device(tmp_path, monkeypatch, emulated, extra, geometry):
    fake = FakeExporter()
    monkeypatch.setattr(ds.subprocess, "run", fake)
    out = tmp_path / "artifacts"
    got, record = ds.resolve_artifacts(None, PIXEL8, extra, out=out, probe=lambda: emulated, runnable=NATIVE)
    assert got == out and record["emulated"] is emulated and (record["note"] is not None) == (emulated and not extra)
    cmd = fake.calls[0]
    assert cmd[1].endswith("convert/export.py") and cmd[2:6] == ["--target", "tflite", "--policy", "int8"]
    assert cmd[6:-2] == geometry and record["argv"] == cmd[2:-2]
    # exported into a hidden sibling, then renamed: the manifest's calibration paths follow the set
    staging = Path(cmd[-1])
    assert staging.parent == out.parent and staging.name.startswith(".artifacts.") and not staging.exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["calibration"]["eval"] == str(out / "calibration" / "eval")
    assert (out / "gain_litert_fp32.tflite").is_file() and _leftovers(tmp_path) == []


def test_export_args_replace_the_profiles_choice(tmp_path, monkeypatch):
    fake = FakeExporter()
    monkeypatch.setattr(ds.subprocess, "run", fake)
    ds.resolve_artifacts(None, PIXEL8, "--precision fp32 --stages gain", out=tmp_path / "a", probe=lambda: False)
    assert fake.calls[0][2:-2] == ["--target", "tflite", "--precision", "fp32", "--stages", "gain"]


@pytest.mark.parametrize("fake,match", [
    (FakeExporter(code=1), r"failed \(exit 1\).*nothing was written.*convert/export.py --target tflite"),
    (FakeExporter(failures=[{"unit": "enhance"}]), r"failed: enhance"),
])
def test_failed_export_leaves_nothing(tmp_path, monkeypatch, fake, match):
    monkeypatch.setattr(ds.subprocess, "run", fake)
    with pytest.raises(RuntimeError, match=match):
        ds.resolve_artifacts(None, PIXEL8, out=tmp_path / "artifacts", probe=lambda: True)
    assert not (tmp_path / "artifacts").exists() and _leftovers(tmp_path) == []


def test_interrupted_export_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(ds.subprocess, "run", FakeExporter(interrupt=True))
    with pytest.raises(KeyboardInterrupt):
        ds.resolve_artifacts(None, PIXEL8, out=tmp_path / "artifacts", probe=lambda: True)
    assert not (tmp_path / "artifacts").exists() and _leftovers(tmp_path) == []


def test_killed_exports_staging_is_removed_by_the_next_run(tmp_path, monkeypatch):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".artifacts.{dead.pid}-deadbeef.export"
    live = tmp_path / f".artifacts.{os.getpid()}-cafecafe.export"          # another run still exporting
    stale.mkdir()
    live.mkdir()
    monkeypatch.setattr(ds.subprocess, "run", FakeExporter())
    ds.resolve_artifacts(None, PIXEL8, out=tmp_path / "artifacts", probe=lambda: True)
    assert not stale.exists() and live.exists()


@pytest.mark.parametrize("args,match", [
    ("--sise 512x320", "unrecognized arguments: --sise"),
    ("--size 510x320", "multiples of 4"),
    ("--size 512x320 --tile", "expected one argument"),
    ("--policy int9", "int9"),
    ("--out elsewhere", "must not set --out"),
    ("--size '512x320", "No closing quotation"),
    ("--help", "not --help"),
    ("--target coreml", r"\.mlpackage files, which the pixel8 runner does not load"),
])
def test_bad_export_args_fail_before_the_device_is_asked(tmp_path, monkeypatch, args, match):
    monkeypatch.setattr(ds.subprocess, "run", lambda *a, **k: pytest.fail("must not export"))
    with pytest.raises(ds.ExportArgsError, match=match):
        ds.resolve_artifacts(None, PIXEL8, args, out=tmp_path / "artifacts", runnable=NATIVE,
                             probe=lambda: pytest.fail("must not probe the device"))


def test_a_folder_that_is_no_set_is_left_alone(tmp_path, monkeypatch):
    out = tmp_path / "artifacts"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    monkeypatch.setattr(ds.subprocess, "run", lambda *a, **k: pytest.fail("must not export"))
    with pytest.raises(ds.ExportArgsError, match="holds no artifact set"):
        ds.resolve_artifacts(None, PIXEL8, out=out, probe=lambda: True)
    assert (out / "notes.txt").read_text() == "mine"


def test_a_retry_reuses_the_calibration_set_of_the_failed_export(tmp_path, monkeypatch):
    failing, ok = FakeExporter(code=1), FakeExporter()
    monkeypatch.setattr(ds.subprocess, "run", failing)
    with pytest.raises(RuntimeError):
        ds.resolve_artifacts(None, PIXEL8, out=tmp_path / "artifacts", probe=lambda: True)
    assert (tmp_path / ".artifacts.calibration" / "calib" / "set.json").is_file()
    assert failing.had_calibration == [False] and not (tmp_path / "artifacts").exists()
    monkeypatch.setattr(ds.subprocess, "run", ok)
    ds.resolve_artifacts(None, PIXEL8, out=tmp_path / "artifacts", probe=lambda: True)
    assert ok.had_calibration == [True]                      # moved into the retry's staging folder
    assert (tmp_path / "artifacts" / "calibration" / "calib" / "set.json").is_file()
    assert not (tmp_path / ".artifacts.calibration").exists()
