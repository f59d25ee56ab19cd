"""Export the tiny test model (3x3 conv + ReLU) to .onnx, .pte and .tflite; run as a background process by conftest.

    python tiny_models.py --weights tiny.pt --out DIR [--formats onnx,pte,tflite]

For each format it writes ``tiny.<ext>`` (temporary name, then renamed) and then ``<fmt>.done``, or ``<fmt>.skip``
(a package is missing: the reason) or ``<fmt>.error`` (the traceback). Exporting in a separate process lets the
device tests that need no model run meanwhile and keeps exir / TensorFlow out of the pytest process.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

import torch


class TinyConv(torch.nn.Module):
    """(B, 3, H, W) -> (B, 4, H, W): conv 3x3 + ReLU."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x))


EXAMPLE_SHAPE = (1, 3, 16, 16)


def export_onnx(m, x, path: Path) -> None:
    torch.onnx.export(m, (x,), str(path), dynamo=True, input_names=["image"], output_names=["features"],
                      external_data=False, verbose=False)


def export_pte(m, x, path: Path) -> None:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    prog = to_edge_transform_and_lower(torch.export.export(m, (x,)), partitioner=[XnnpackPartitioner()])
    path.write_bytes(prog.to_executorch().buffer)
    # .pte keeps no tensor names: the sidecar gives them (runner_protocol.md)
    path.with_name(path.name.replace(".tmp", "") + ".io.json").write_text(
        '{"inputs": ["image"], "outputs": ["features"]}')


def export_tflite(m, x, path: Path) -> None:
    import litert_torch

    litert_torch.convert(m, (x,)).export(str(path))


EXPORTERS = {"onnx": export_onnx, "pte": export_pte, "tflite": export_tflite}
REQUIRES = {"onnx": ("onnxscript", "onnxruntime"), "pte": ("executorch",), "tflite": ("litert_torch", "ai_edge_litert")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--weights", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--formats", default="onnx,pte,tflite")
    args = p.parse_args(argv)
    out = Path(args.out)
    torch.set_num_threads(1)
    m = TinyConv().eval()
    m.load_state_dict(torch.load(args.weights))
    x = torch.zeros(EXAMPLE_SHAPE)
    for fmt in args.formats.split(","):
        missing = []
        for mod in REQUIRES[fmt]:
            try:
                __import__(mod)
            except ImportError as exc:
                missing.append(f"{mod} ({exc})")
        if missing:
            (out / f"{fmt}.skip").write_text(f"making a .{fmt} needs {', '.join(missing)}")
            continue
        tmp = out / f"tiny.tmp.{fmt}"  # keeps the extension the exporters look at
        try:
            EXPORTERS[fmt](m, x, tmp)
            os.replace(tmp, out / f"tiny.{fmt}")
            (out / f"{fmt}.done").write_text("ok")
        except Exception:  # noqa: BLE001 - reported to the waiting test
            (out / f"{fmt}.error").write_text(traceback.format_exc())
    return 0


if __name__ == "__main__":
    sys.exit(main())
