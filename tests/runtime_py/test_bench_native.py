"""runtime_py.bench.native: the arm64 runner choice, emulation labels (the default set: test_bench_default_set)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from android_harness.transport import ShellResult
from runtime_py.bench import native as bn
from runtime_py.devices import get_profile


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
