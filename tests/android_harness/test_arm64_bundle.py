"""The arm64 push bundle (android_harness/bundle.py) in a userland that holds only busybox, under qemu-user with a
Cortex-A76: the ExecuTorch and LiteRT runners need nothing of the device but a shell."""
from __future__ import annotations

import json

import numpy as np
import pytest

from android_harness.bundle import bundle_runner_spec, needed, read_bundle
from android_harness.device import AndroidDevice
from tests.android_harness.arm64 import S24_ARM64_PROPS, arm64_bundle, arm64_fakeadbd_args, arm64_userland

pytestmark = pytest.mark.device


@pytest.fixture(scope="module")
def bundle():
    return arm64_bundle()


@pytest.fixture(scope="module")
def arm64_dev(device_tools, _start_fake, make_transport, bundle):
    rootfs = arm64_userland()
    fake = _start_fake(*arm64_fakeadbd_args(rootfs, device_tools), props=S24_ARM64_PROPS, host_ro=False)
    dev = AndroidDevice.open(make_transport("adb-shell", fake, io_timeout_s=120.0), root="/data/local/tmp/isp_arm64")
    yield dev
    dev.close()


def test_bundle_is_self_contained(bundle):
    meta = read_bundle(bundle)
    files = meta["files"]
    assert {"bin/isp_runner", "bin/isp_et_runner", "bin/isp_litert_runner", "lib/ld-linux-aarch64.so.1",
            "lib/libc.so.6", "lib/libstdc++.so.6", "lib/libexecutorch.so", "lib/libLiteRt.so"} <= set(files)
    for rel in files:                                # every library any file needs is in the bundle
        if rel.startswith("lib/") and rel.endswith((".so", ".1", ".2", ".6", ".0")) or rel in (
                "bin/isp_et_runner", "bin/isp_litert_runner"):
            missing = [n for n in needed(bundle / rel) if f"lib/{n}" not in files]
            assert not missing, f"{rel} needs {missing}, not in the bundle"


def test_userland_has_no_libc(arm64_dev):
    res = arm64_dev.shell("uname -m; ls /lib /usr/lib 2>&1; ls -l /bin/sh; grep -m1 'CPU part' /proc/cpuinfo")
    assert res.text.splitlines()[0] == "aarch64"
    assert "libc.so" not in res.text and "ld-linux" not in res.text
    assert "busybox" in res.text and "0xd0b" in res.text            # Cortex-A76


@pytest.mark.parametrize("fmt,inp,out", [("pte", "image", "features"), ("tflite", "args_0", "output_0")])
def test_runner_on_arm64(arm64_dev, bundle, tiny, tiny_models, fmt, inp, out, tmp_path):
    spec = bundle_runner_spec(bundle, root=arm64_dev.root)
    res = arm64_dev.run_model(spec, tiny_models(fmt), {inp: tiny.example}, warmup=1, iterations=3, timeout_s=300,
                              out_dir=tmp_path)
    np.testing.assert_allclose(res.outputs[out], tiny.reference(tiny.example), rtol=1e-4, atol=1e-5)
    t = res.timings
    assert t["runner"] == {"pte": "isp_et_runner", "tflite": "isp_litert_runner"}[fmt]
    assert len(t["iteration_ms"]) == 3 and t["peak_rss_bytes"] > 0
    assert t["runtime_version"].startswith({"pte": "1.5.1", "tflite": "2.3.0"}[fmt])
    # pushed once: a second run sends no runner file again
    again = arm64_dev.push(list(spec.files))
    assert again.bytes_pushed == 0 and not again.pushed


def test_launcher_errors(arm64_dev, bundle, tiny, tiny_models, tmp_path):
    spec = bundle_runner_spec(bundle, root=arm64_dev.root)
    arm64_dev.push(list(spec.files))
    res = arm64_dev.shell(" ".join(spec.argv) + " --model x.onnx --inputs i --outputs o --timings t.json")
    assert res.returncode == 2 and b"no runner in this bundle" in res.stderr
    # the GPU accelerator asked for where the device has none: CPU, and the record says so
    r = arm64_dev.run_model(spec, tiny_models("tflite"), {"args_0": tiny.example}, warmup=0, iterations=1,
                            timeout_s=300, out_dir=tmp_path, extra_args=["--accelerator", "gpu"])
    assert "CPU" in r.timings["backend"], json.dumps(r.timings)
