"""An ONNX artifact set run by OpenVINO's CPU plugin instead of ONNX Runtime (``--runtime openvino[-bf16]``).

    sel = on_openvino(aset.select(["onnx"]), "openvino-bf16")
    ArtifactPipeline(sel) ...                       # or render_streaming(pipe, ...)

The files are the set's own ``.onnx`` artifacts, unchanged; only the kernels differ
(:class:`convert.runtimes.OpenVinoRunner`): OpenVINO fuses NAFNet's channel layer norms, gates and attention into
its convolutions where ONNX Runtime runs them as separate memory-bound ops. ``openvino`` runs every unit in float32
(126-130 dB against ONNX Runtime on shipped DNGs at CI geometry). ``openvino-bf16`` runs the units of
:data:`REDUCED_UNITS` in reduced precision and the rest in float32: the enhancer (~60 % of a frame's arithmetic) with
OpenVINO's bfloat16 inference precision, on AMX / AVX512-BF16 where the CPU has them (62-63 dB against the float32
chain), and the BGU slice in float16 (AVX512-FP16: 0.073 -> 0.051 s per 512-px tile on one core; the chain with
only the slice in float16 71-93 dB against float32 on the shipped DNGs). The denoiser in bfloat16 fell to 39-41 dB
(its output feeds every later unit) and was not faster in float16, so it stays float32, as do the bilateral-grid fit
(small linear systems) and the photofinishing units (the LTM network was slower in float16). Compiled models are
cached in :func:`cache_dir` (``ISP_OPENVINO_CACHE``; empty: no cache; the runner keeps one folder per precision
hint there, since OpenVINO 2026.4's cache key does not tell a float16 compile from a float32 one), so only a set's first run pays OpenVINO's compile time. The tiled units run one OpenVINO stream per core
(:func:`tile_streams`): each core computes its own window with one thread instead of both threads sharing one
window (the NAFNets' layer norms and gates are memory-bound and synchronise often): 12 MP on the 2-core Xeon,
in-process, quiet, 2 rounds: denoise + colour pass 5.05 / 4.76 -> 4.24 / 4.20 s, slice + enhance pass 8.10 / 8.07
-> 7.44 / 7.34 s, the same image. Non-ONNX artifacts of the selection keep their own runner. The int8 units of an ONNX int8-policy set run
on OpenVINO too, with its integer kernels (VNNI / AMX; the enhancer 0.36 s per 512-px tile against ONNX Runtime's
1.18 s, the same image within 0.05 dB on the shipped DNGs), except where the export flagged this CPU's saturating
u8s8 kernels (:meth:`runtime_py.artifacts.Artifact.load_options`): those keep ONNX Runtime's float emulation.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

__all__ = ["RUNTIMES", "REDUCED_UNITS", "on_openvino", "tile_streams", "available", "unit_precision", "cache_dir"]

#: ``--runtime`` values of this module
RUNTIMES = ("openvino", "openvino-bf16")
#: the units ``openvino-bf16`` runs in reduced precision, and OpenVINO's inference precision hint for each
REDUCED_UNITS = {"enhance": "bf16", "upsample_slice": "f16"}


def available() -> str | None:
    """``None`` when OpenVINO can be imported, else why not (for skips and error messages)."""
    try:
        import openvino  # noqa: F401
    except ImportError as exc:
        return f"openvino is not installed (pip install openvino; scripts/setup.sh does): {exc}"
    return None


def cache_dir() -> Path | None:
    """Where compiled models are cached: ``$ISP_OPENVINO_CACHE`` (empty: none), else ``~/.cache/isp-openvino``."""
    env = os.environ.get("ISP_OPENVINO_CACHE")
    if env is not None:
        return Path(env) if env else None
    from isp.paths import user_cache
    return user_cache("isp-openvino")


def unit_precision(runtime: str, unit: str, precision: str = "fp32") -> str:
    """OpenVINO inference precision hint (``f32``, ``bf16`` or ``f16``) of ``unit``'s artifact of ``precision``
    under ``runtime``. An int8 (Q/DQ) artifact always gets ``f32``: OpenVINO runs its quantized convolutions in int8
    (VNNI / AMX) under that hint, and its reduced-precision hints have no kernel for them."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime == "openvino-bf16" and precision in ("fp32", "fp16"):
        return REDUCED_UNITS.get(unit, "f32")
    return "f32"


def tile_streams(unit: str, streams: int | None = None) -> int:
    """OpenVINO streams of ``unit``'s runner: the tiled units (run window after window) get one stream per thread
    of :func:`convert.runtimes.default_threads` unless ``streams`` says otherwise, so that each core runs its own
    tile; a unit run once per frame gets one stream with every thread. :func:`runtime_py.stream.render_streaming`
    feeds a runner as many windows at once as it has streams; a caller that runs the windows one after another
    (``ArtifactPipeline.run``) should pass ``streams=1``, or each window gets only one stream's threads."""
    from runtime_py.artifacts import TILING
    if TILING.get(unit) in ("frame", "quarter"):
        return 1
    if streams is not None:
        return max(1, int(streams))
    from convert.runtimes import default_threads
    return default_threads()


def on_openvino(selection: Any, runtime: str, streams: int | None = None) -> Any:
    """``selection`` (a :class:`runtime_py.artifacts.Selection`) with its ONNX units on OpenVINO under ``runtime``;
    ``streams``: of the tiled units (default :func:`tile_streams`)."""
    why = available()
    if why:
        raise RuntimeError(why)
    onnx = [u for u, a in selection.items() if a.family == "onnx"]
    if not onnx:
        raise ValueError(f"--runtime {runtime} runs ONNX artifacts; this selection has none "
                         f"({selection.label}); choose them with --prefer onnx")
    return _selection_class()(selection.set, dict(selection), runtime, selection.ort_int8, streams)


def _selection_class() -> type:
    from runtime_py.artifacts import Selection

    class OpenVinoSelection(Selection):
        """A selection whose ONNX units run on OpenVINO (the others on their own runner)."""

        def __init__(self, aset: Any, chosen: Mapping[str, Any], runtime: str, ort_int8: str,
                     streams: int | None = None) -> None:
            super().__init__(aset, chosen, ort_int8=ort_int8)
            self.runtime, self.streams = runtime, streams

        def _on_openvino(self, artifact: Any) -> bool:
            if artifact.family != "onnx" or artifact.precision not in ("fp32", "fp16", "int8"):
                return False
            # an int8 file whose export flagged this CPU's saturating u8s8 kernels keeps ONNX Runtime's emulation
            return artifact.precision != "int8" or not artifact.load_options(self.ort_int8)

        def _load(self, unit: str, artifact: Any) -> Any:
            if not self._on_openvino(artifact):
                return super()._load(unit, artifact)
            from convert.runtimes import OpenVinoRunner
            return OpenVinoRunner(artifact.path, artifact.input_names, artifact.output_names,
                                  precision=unit_precision(self.runtime, unit, artifact.precision),
                                  cache_dir=cache_dir(), streams=tile_streams(unit, self.streams))

        def _load_label(self, unit: str, artifact: Any) -> str:
            return (f" on OpenVINO {unit_precision(self.runtime, unit, artifact.precision)}"
                    if self._on_openvino(artifact) else "")

        @property
        def label(self) -> str:
            return f"{super().label} on {self.runtime}"

    return OpenVinoSelection
