"""Export wrappers of the AWB stage: what a phone runs to estimate its own white balance.

Two fixed-shape modules, float32 throughout, histogram builder inside the graph:

=============  =======================================================  ===================================
unit           inputs                                                   output
=============  =======================================================  ===================================
``awb_c5``     awb_img (1,3,256,384): noisy raw resized (host:           illum (1,3) unit norm
               :func:`isp.stages.awb.resize_for_awb`)
``awb_s24``    awb_img (1,3,256,384), capture (1,n) scaled capture       illum (1,3) unit norm
               vector (host: :meth:`AutoWhiteBalance.capture_vector`)
=============  =======================================================  ===================================

Export formulations (proven against the reference in ``tests/convert/test_awb_units.py``): the histograms are
built in float32 from comparisons and matrix products (:func:`isp.stages.awb.c5_histogram` /
:func:`~isp.stages.awb.s24_histogram` with ``hist_dtype=float32``), and C5's FFT circular filtering runs as a real
DFT in matrix products (``AutoWhiteBalance(fft=False)``). The resize and the capture statistics (noise / SNR over the
full-resolution frame) stay on the host: they are cheap, shape-dependent, and the SNR statistics need float64.

Not yet in :data:`convert.units.UNITS` (the unit table moves to ``isp/units.py`` in issue 8): rows to port are
``UnitSpec("awb_c5", "awb", ("awb_img",), ("illum",), "frame", network=("stage",))`` and the same for ``awb_s24``
with inputs ``("awb_img", "capture")``, built by :func:`build_awb_unit`.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from isp.stages import awb as A

__all__ = ["AWB_UNITS", "AwbUnit", "build_awb_unit", "example_inputs"]

#: unit id -> AWB model (the default S24 variant is the official demo's)
AWB_UNITS = {"awb_c5": "c5", "awb_s24": f"s24-{A.S24_DEFAULT}"}


class AwbUnit(nn.Module):
    """``awb_img (1,3,256,384)[, capture (1,n)] -> illum (1,3)``: float32 histogram + the AWB network."""

    def __init__(self, stage: A.AutoWhiteBalance) -> None:
        super().__init__()
        self.stage = stage

    def forward(self, awb_img: torch.Tensor, capture: torch.Tensor | None = None) -> torch.Tensor:
        hist = self.stage.histogram(awb_img, hist_dtype=torch.float32)       # (1, 4, 48, 48)
        return self.stage(hist, capture)


def build_awb_unit(unit: str, weights: str | Path) -> AwbUnit:
    """``awb_c5`` or ``awb_s24`` with the official weights, export formulation, eval mode."""
    if unit not in AWB_UNITS:
        raise ValueError(f"unknown AWB unit {unit!r}; units are {', '.join(AWB_UNITS)}")
    ref = A.build_awb(Path(weights), AWB_UNITS[unit])
    stage = A.AutoWhiteBalance(ref.model, ref.config, fft=False)
    stage.net.load_state_dict(ref.net.state_dict())
    return AwbUnit(stage).eval()


def example_inputs(unit: AwbUnit, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """A plausible resized raw (and a mid-range capture vector for S24)."""
    from convert.units import synthetic_image
    img = synthetic_image((1, 3) + A.AWB_SIZE, seed) * 0.6
    if unit.stage.is_c5:
        return (img,)
    return img, torch.full((1, unit.stage.config.n_capture), 0.4)


def export_awb_units(weights: str | Path, targets: tuple[str, ...], out_dir: str | Path,
                     golden_dir: str | Path | None = None, log=print) -> list[dict]:
    """Export both AWB units in fp32 to every target and measure each artifact against the *reference* stage
    (float64 histogram, FFT filtering) on the resized raws of ``golden_dir``'s ``awb_*.npz`` files (or the example
    input). Returns one row per (unit, target): artifact path, export error, min PSNR over inputs, max angle."""
    import numpy as np

    from convert.targets import ExportError, ExportRequest, export
    from isp.parity_awb import angular_error_deg
    from isp.metrics import psnr
    from convert.runtimes import load

    rows = []
    files = sorted(Path(golden_dir).glob("awb_*.npz")) if golden_dir else []
    for uid, model in AWB_UNITS.items():
        unit = build_awb_unit(uid, weights)
        ref = A.build_awb(Path(weights), model)
        samples = []
        for f in files:
            with np.load(f) as z:
                img = A.resize_for_awb(torch.from_numpy(z["raw"]))
                cap = None if ref.is_c5 else torch.from_numpy(z[f"awb_{A.S24_DEFAULT}_capture"])[None]
            samples.append((img,) if cap is None else (img, cap))
        samples = samples or [example_inputs(unit)]
        names = ["awb_img"] + ([] if ref.is_c5 else ["capture"])
        for target in targets:
            row = {"unit": uid, "target": target, "precision": "fp32"}
            try:
                res = export(target, ExportRequest(unit, samples[0], names, ["illum"], out_dir=out_dir, stem=uid))
                row["artifact"] = str(res.path)
                runner = load(res.path, input_names=names, output_names=["illum"])
                dbs, angs = [], []
                for s in samples:
                    got = torch.from_numpy(np.asarray(runner.run([t.numpy() for t in s])[0]))
                    with torch.no_grad():
                        want = ref(ref.histogram(s[0]), s[1] if len(s) > 1 else None)
                    dbs.append(psnr(got.reshape(want.shape).float(), want, data_range=1.0))
                    angs.append(angular_error_deg(got, want[0]))
                row.update(psnr_db=min(dbs), max_angle_deg=max(angs), inputs=len(samples))
            except ExportError as exc:
                row["error"] = str(exc)
            except Exception as exc:  # noqa: BLE001 — reported per target (e.g. Core ML does not run on Linux)
                row["error"] = f"{type(exc).__name__}: {exc}"
            log(row)
            rows.append(row)
    return rows


if __name__ == "__main__":
    import argparse
    import json

    from isp import paths
    p = argparse.ArgumentParser(prog="python -m convert.awb_units",
                                description="export the AWB units (fp32) and measure them against the reference")
    p.add_argument("--targets", default="onnx,executorch,litert,coreml")
    p.add_argument("--out", type=Path, default=Path("artifacts/awb"))
    p.add_argument("--golden", type=Path, default=None, help="golden_ext folder (default <shared>/golden_ext)")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    out = export_awb_units(paths.weights_root(), tuple(a.targets.split(",")), a.out,
                           a.golden or paths.shared_root() / "golden_ext")
    if a.json:
        from isp.jsonio import write_json_atomic
        write_json_atomic(a.json, out)
