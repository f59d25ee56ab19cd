"""The host runner inside the stand-in Pixel 8, through both transports: push, run, pull, compare with torch."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from android_harness.device import host_runner_spec

pytestmark = pytest.mark.device

INPUT_NAMES = {"onnx": "image", "pte": "image", "tflite": "args_0"}
OUTPUT_NAMES = {"onnx": "features", "pte": "features", "tflite": "output_0"}


class TestRunner:
    @pytest.mark.parametrize("fmt", ["onnx", "pte", "tflite"])
    def test_host_runner_inside_device(self, fmt, pixel8_device, pixel8, tiny, tiny_models, tmp_path):
        model = tiny_models(fmt)
        res = pixel8_device.run_model(host_runner_spec(sys.executable, pixel8_device.root), model,
                                      {INPUT_NAMES[fmt]: tiny.example}, warmup=1, iterations=5, timeout_s=120,
                                      out_dir=tmp_path)
        np.testing.assert_allclose(res.outputs[OUTPUT_NAMES[fmt]], tiny.reference(tiny.example), rtol=1e-4,
                                   atol=1e-5)
        t = res.timings
        assert len(t["iteration_ms"]) == 5 and t["runtime"] in ("onnxruntime", "executorch", "litert")
        assert t["peak_rss_bytes"] > 0 and t["model"] == model.name
        assert json.loads((tmp_path / "timings.json").read_text()) == t
        assert (tmp_path / "outputs" / f"{OUTPUT_NAMES[fmt]}.npy").exists()
        # the run folder is gone from the device, the model and inputs stay for the next run (hash skip)
        assert pixel8_device.list_dir(f"{pixel8_device.root}/runs") == []
        if fmt != "onnx":
            return  # one format is enough for the re-run check (each Python start-up in the device costs seconds)
        again = pixel8_device.run_model(host_runner_spec(sys.executable, pixel8_device.root), model,
                                        {INPUT_NAMES[fmt]: tiny.example}, warmup=0, iterations=1, timeout_s=120,
                                        out_dir=tmp_path / "again")
        assert again.push.pushed == [] and again.push.bytes_pushed == 0
