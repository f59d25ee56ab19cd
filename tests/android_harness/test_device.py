"""AndroidDevice against the stand-in Pixel 8, through both transports: identify, shell, push/pull with sha256 skip."""
from __future__ import annotations

import os

import numpy as np
import pytest

from android_harness.device import list_devices
from android_harness.transport import AdbTransport

pytestmark = pytest.mark.device


class TestConnect:
    def test_identify(self, pixel8_device, kind):
        assert isinstance(pixel8_device.transport, AdbTransport)
        info = pixel8_device.info()
        assert (info.model, info.device, info.soc, info.sdk, info.abi) == ("Pixel 8", "shiba", "Tensor G3", 34,
                                                                          "arm64-v8a")
        assert info.manufacturer == "Google" and info.release == "14"
        assert info.transport == kind and info.serial == pixel8_device.serial

    def test_shell_exit_code_and_stderr(self, pixel8_device):
        res = pixel8_device.shell("echo out; echo err >&2; exit 3")
        assert (res.returncode, res.text, res.err_text) == (3, "out\n", "err\n")
        assert pixel8_device.shell("exit 0").returncode == 0

    def test_list_devices(self, pixel8_device, adb_server, kind):
        if kind != "adb":
            pytest.skip("only the adb server has a device list (adb-shell connects by address)")
        entries = {e.serial: e for e in list_devices(server_port=adb_server["server_port"], home=adb_server["home"])}
        assert entries[pixel8_device.serial].state == "device"
        assert entries[pixel8_device.serial].attrs.get("model") == "Pixel_8"


class TestPushPull:
    def test_round_trip_and_hash_skip(self, pixel8_device, pixel8, tmp_path):
        rng = np.random.default_rng(1)
        big, small, exe = tmp_path / "big.bin", tmp_path / "small.txt", tmp_path / "tool.sh"
        big.write_bytes(rng.bytes(3 << 20))
        small.write_text("hello\n")
        exe.write_text("#!/bin/sh\necho tool-ok\n")
        os.chmod(exe, 0o755)
        root = pixel8_device.root
        files = [(big, f"{root}/data/big.bin"), (small, f"{root}/data/sub dir/small.txt"), (exe, f"{root}/bin/tool.sh")]

        first = pixel8_device.push(files)
        assert sorted(first.pushed) == sorted(r for _, r in files) and first.skipped == []
        assert first.bytes_pushed == sum(p.stat().st_size for p, _ in files)
        second = pixel8_device.push(files)
        assert second.pushed == [] and second.bytes_pushed == 0 and len(second.skipped) == 3
        small.write_text("changed\n")
        third = pixel8_device.push(files)
        assert third.pushed == [f"{root}/data/sub dir/small.txt"]

        assert pixel8_device.shell(f"{root}/bin/tool.sh").text == "tool-ok\n"  # executable bit kept
        for local, remote in files:
            back = pixel8_device.pull(remote, tmp_path / "back" / local.name)
            assert back.read_bytes() == local.read_bytes()
        assert not list(pixel8.host_path(root).rglob("*.part"))
        print(f"\n{pixel8_device.transport.name}: pushed {first.bytes_pushed / 1e6:.1f} MB at "
              f"{first.mb_per_s:.0f} MB/s (incl. hashing, df and renames)")

    def test_pull_missing_file(self, pixel8_device, tmp_path):
        from android_harness.faults import TransferFailed
        with pytest.raises(TransferFailed):
            pixel8_device.pull(f"{pixel8_device.root}/nope.npy", tmp_path / "nope.npy")
        assert not (tmp_path / "nope.npy").exists()
