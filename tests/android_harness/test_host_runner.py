"""host_runner.py on this machine (no device): the runner protocol for each format, its exit codes and its files."""
from __future__ import annotations

import json

import numpy as np
import pytest

from android_harness import host_runner
from android_harness.host_runner import sanitize_name

INPUT_NAMES = {"onnx": "image", "pte": "image", "tflite": "args_0"}
OUTPUT_NAMES = {"onnx": "features", "pte": "features", "tflite": "output_0"}


def _run(model, tmp_path, x, input_name, *extra):
    ins = tmp_path / "in"
    ins.mkdir(exist_ok=True)
    np.save(ins / f"{input_name}.npy", x)
    argv = ["--model", str(model), "--inputs", str(ins), "--outputs", str(tmp_path / "out"), "--warmup", "1",
            "--iterations", "4", "--timings", str(tmp_path / "t.json"), *extra]
    return host_runner.main(argv)


class TestHostRunner:
    @pytest.mark.parametrize("fmt", ["onnx", "pte", "tflite"])
    def test_outputs_and_timings(self, fmt, tiny, tiny_models, tmp_path):
        model = tiny_models(fmt)
        assert _run(model, tmp_path, tiny.example, INPUT_NAMES[fmt]) == 0
        out = np.load(tmp_path / "out" / f"{OUTPUT_NAMES[fmt]}.npy")
        np.testing.assert_allclose(out, tiny.reference(tiny.example), rtol=1e-4, atol=1e-5)
        t = json.loads((tmp_path / "t.json").read_text())
        assert t["schema"] == host_runner.SCHEMA
        assert t["runtime"] == {"onnx": "onnxruntime", "pte": "executorch", "tflite": "litert"}[fmt]
        assert t["runtime_version"] and t["runtime_version"] != "unknown"
        assert len(t["iteration_ms"]) == 4 and len(t["warmup_ms"]) == 1
        assert all(ms > 0 for ms in t["iteration_ms"])
        assert t["summary"]["min_ms"] <= t["summary"]["median_ms"] <= t["summary"]["max_ms"]
        assert t["peak_rss_bytes"] > 10 * 2**20
        assert t["outputs"][0]["name"] == OUTPUT_NAMES[fmt] and t["outputs"][0]["shape"] == [1, 4, 16, 16]
        if fmt == "pte":
            assert t["backend"] == "XnnpackBackend"
        assert not list((tmp_path / "out").glob("*.tmp"))

    def test_missing_input_exit_4(self, tiny_onnx, tiny, tmp_path, capsys):
        assert _run(tiny_onnx, tmp_path, tiny.example, "wrong_name") == host_runner.EXIT_INPUTS
        assert "missing image.npy" in capsys.readouterr().err

    def test_wrong_shape_exit_4(self, tiny_onnx, tmp_path, capsys):
        x = np.zeros((1, 3, 8, 8), np.float32)
        assert _run(tiny_onnx, tmp_path, x, "image") == host_runner.EXIT_INPUTS
        assert "shape [1, 3, 8, 8]" in capsys.readouterr().err

    def test_corrupt_model_exit_3(self, tiny, tmp_path, capsys):
        bad = tmp_path / "bad.onnx"
        bad.write_bytes(b"not a model")
        assert _run(bad, tmp_path, tiny.example, "image") == host_runner.EXIT_LOAD
        assert "could not load" in capsys.readouterr().err
        assert not (tmp_path / "t.json").exists()

    def test_unknown_format_exit_2(self, tiny, tmp_path):
        bad = tmp_path / "m.bin"
        bad.write_bytes(b"x")
        assert _run(bad, tmp_path, tiny.example, "image") == host_runner.EXIT_USAGE

    def test_bad_usage_exit_2(self):
        assert host_runner.main(["--model", "x.onnx"]) == host_runner.EXIT_USAGE


class TestSanitizeName:
    @pytest.mark.parametrize("name, stem", [("image", "image"), ("serving_default_x:0", "serving_default_x_0"),
                                            ("a/b c", "a_b_c"), (".hidden", "_hidden"), ("", "unnamed")])
    def test_names(self, name, stem):
        assert sanitize_name(name) == stem
