"""The PyTorch reference on the device's evaluation frames: every unit's inputs and expected outputs, cached on
disk (``--reference-cache``) so another run or another artifact set of the same pipeline reuses the renders."""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from android_harness.host_runner import sanitize_name
from isp.atomic import write_atomic
from isp.jsonio import write_json_atomic
from isp.units import UNIT_ORDER, UNITS, plan_for, window_of
from runtime_py.bench.options import EXIT_USAGE, BenchError, BenchOptions
from runtime_py.bench.state import digest

log = logging.getLogger("runtime_py.bench")

__all__ = ["Reference", "build_reference", "write_npys", "savez_atomic"]


@dataclass
class Reference:
    """Reference data: per frame the reference intermediates (numpy, batch 1); per unit the timed run's inputs and
    expected outputs (frame 0, in the unit's positional order) and the tile they were cut from; a key for all of it."""

    key: str
    frames: list[dict[str, np.ndarray]]
    unit_inputs: dict[str, list[np.ndarray]]
    unit_outputs: dict[str, list[np.ndarray]]
    unit_window: dict[str, list[int] | None]
    source: str


def _eval_frames(opts: BenchOptions, aset) -> tuple[list, str]:
    """The evaluation frames (``runtime_py.drift.EvalFrame``) and a description of where they came from."""
    from runtime_py import drift

    g = aset.geometry
    if opts.eval_set is not None:
        from calibration import load_set
        root = Path(opts.eval_set)
        if not (root / "set.json").is_file() and (root / "eval" / "set.json").is_file():
            root = root / "eval"
        try:
            cs = load_set(root, verify=False)
            drift.check_eval_set(cs, aset)
        except ValueError as exc:
            raise BenchError(f"--eval-set: {exc}", EXIT_USAGE) from None
        frames = drift.frames_from_eval_set(cs, limit=opts.frames)
        return frames, f"evaluation set {root}, frame(s) 0..{len(frames) - 1}"
    from isp import paths
    from runtime_py.pipeline import center_crop_box
    from isp.io.dng import read_dng
    candidates = [Path(opts.eval_dng)] if opts.eval_dng else sorted(paths.dng_dir().glob("*.dng"))
    usable = []
    for f in candidates:
        try:
            full = read_dng(f, crop=[0, 0, 4, 4]).full_size            # the size only
            center_crop_box(full, g.size)
        except (ValueError, FileNotFoundError) as exc:
            if opts.eval_dng:
                raise BenchError(f"--eval-dng: {exc}", EXIT_USAGE) from None
            continue
        usable.append(f)
        if len(usable) >= opts.frames:
            break
    if not usable:
        raise BenchError(f"no DNG of at least {g.width}x{g.height} for an evaluation frame; pass --eval-dng or "
                         f"--eval-set", EXIT_USAGE)
    frames = drift.frames_from_dngs(usable, g, fit="crop")
    return frames, f"centre {g.width}x{g.height} crop of {', '.join(f.name for f in usable)}"


def _middle(plan) -> tuple[int, int]:
    wins = list(plan.windows())
    _, _, y0, x0 = wins[len(wins) // 2]
    return y0, x0


def build_reference(aset, opts: BenchOptions, cache: Path) -> Reference:
    """Render the evaluation frames with the PyTorch reference (``runtime_py.drift.Reference``: the pipeline built
    like the set, tiled at its geometry) and cut every unit's inputs and expected outputs.

    Cached in ``cache``: the frame renders keyed by the frames and the set's pipeline settings (style, 3-D LUT,
    denoiser, weights, geometry), each unit's reference keyed by that and the unit's input shapes — so another
    artifact set of the same pipeline reuses the renders and only cuts its own units."""
    frames, source = _eval_frames(opts, aset)
    g = aset.geometry
    frames_key = digest({"frames": [hashlib.sha256(f.raw.numpy().tobytes()).hexdigest() for f in frames],
                          "illum": [f.illum.tolist() for f in frames], "ccm": [f.ccm.tolist() for f in frames],
                          "geometry": [g.width, g.height, g.tile, g.overlap], "style": aset.style, "lut": aset.lut,
                          "denoiser": aset.denoiser, "weights": str(opts.weights or aset.weights), "version": 3})
    present = {}
    for a in aset.artifacts:
        present.setdefault(a.unit, digest({"frames": frames_key, "unit": a.unit, "inputs": a.input_shapes}))
    meta: dict[str, Any] = {}
    try:
        meta = json.loads((cache / "reference.json").read_text())
    except (OSError, ValueError):
        pass
    ref = None
    if meta.get("frames_key") == frames_key:
        try:
            ref = _load_reference(cache, meta, {u: k for u, k in present.items()
                                                if meta.get("units", {}).get(u, {}).get("key") == k})
        except (OSError, ValueError, KeyError) as exc:
            log.warning("reference cache unreadable (%s); recomputing", exc)
            meta, ref = {}, None
    missing = [u for u in present if ref is None or u not in ref.unit_inputs]
    if ref is not None and not missing:
        ref.key = digest({"frames": frames_key, "units": present})
        return ref
    t0 = time.monotonic()
    if ref is None:
        log.info("rendering %d reference frame(s) with the PyTorch pipeline (%s)", len(frames), source)
    ref = _compute_reference(aset, frames, opts.weights, missing, cached=ref)
    ref.source = source
    _save_reference(cache, ref, frames_key, {u: present[u] for u in missing}, meta if meta.get("frames_key") ==
                    frames_key else {})
    ref.key = digest({"frames": frames_key, "units": present})
    log.info("reference ready in %.1f s (cached in %s)", time.monotonic() - t0, cache)
    return ref


def _compute_reference(aset, frames, weights, units: Sequence[str], cached: Reference | None = None) -> Reference:
    import torch

    from convert.units import slice_operands
    from runtime_py import drift

    dref = drift.Reference(aset, weights=weights)
    if cached is not None:
        for fr, arrays in zip(frames, cached.frames):        # reuse the cached renders (no second pipeline run)
            dref.adopt(fr, {n: torch.from_numpy(np.ascontiguousarray(v)) for n, v in arrays.items()
                            if n not in ("illum", "ccm")})
    g = aset.geometry
    h, w = g.size
    th, tw = g.tile_shape
    out_frames: list[dict[str, np.ndarray]] = []
    unit_inputs: dict[str, list[np.ndarray]] = dict(cached.unit_inputs) if cached else {}
    unit_outputs: dict[str, list[np.ndarray]] = dict(cached.unit_outputs) if cached else {}
    unit_window: dict[str, list[int] | None] = dict(cached.unit_window) if cached else {}
    with torch.inference_mode():
        for k, fr in enumerate(frames):
            inter = dict(dref.intermediates(fr))
            inter["illum"], inter["ccm"] = fr.illum, fr.ccm
            out_frames.append({n: v.detach().float().numpy() for n, v in inter.items()
                               if isinstance(v, torch.Tensor)})
            if k:
                continue
            for unit in (u for u in UNIT_ORDER if u in units):
                ins, outs = drift.Reference.unit_io(unit, inter, fr)
                plan = plan_for(g, unit)
                if plan is None:
                    unit_window[unit] = None
                else:
                    y0, x0 = _middle(plan)
                    unit_window[unit] = [y0, x0, th, tw]
                    crop = lambda t: t[..., y0:y0 + th, x0:x0 + tw]             # noqa: E731
                    if UNITS[unit].windowed:
                        art = next(a for a in aset.artifacts if a.unit == unit)
                        window = window_of(unit, art.input_shapes)
                        ins = (crop(ins[0]), *slice_operands(ins[1].float(), (y0, x0), (th, tw), (h, w), *window))
                    else:
                        ins = tuple(crop(t) if t.ndim == 4 and tuple(t.shape[-2:]) == (h, w) else t for t in ins)
                    outs = dref.tile_output(unit, fr, (y0, x0))
                unit_inputs[unit] = [t.detach().float().numpy() for t in ins]
                unit_outputs[unit] = [t.detach().float().numpy() for t in outs]
                if len(unit_outputs[unit]) != len(UNITS[unit].outputs):
                    raise RuntimeError(f"reference of {unit}: {len(unit_outputs[unit])} outputs, expected "
                                       f"{len(UNITS[unit].outputs)}")
    return Reference("", out_frames, unit_inputs, unit_outputs, unit_window, "")


def _save_reference(cache: Path, ref: Reference, frames_key: str, new_units: Mapping[str, str],
                    meta: Mapping[str, Any]) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    if meta.get("frames_key") != frames_key:
        for k, f in enumerate(ref.frames):
            savez_atomic(cache / f"frame{k}.npz", f)
    units = dict(meta.get("units", {})) if meta.get("frames_key") == frames_key else {}
    for unit, key in new_units.items():
        savez_atomic(cache / f"unit_{unit}.npz", {**{f"in{i}": v for i, v in enumerate(ref.unit_inputs[unit])},
                                                   **{f"out{i}": v for i, v in enumerate(ref.unit_outputs[unit])}})
        units[unit] = {"key": key, "window": ref.unit_window.get(unit)}
    write_json_atomic(cache / "reference.json", {"frames_key": frames_key, "frames": len(ref.frames),
                                                 "source": ref.source, "units": units})


def _load_reference(cache: Path, meta: Mapping[str, Any], units: Mapping[str, str]) -> Reference:
    frames = [dict(np.load(cache / f"frame{k}.npz")) for k in range(int(meta["frames"]))]
    ui, uo, win = {}, {}, {}
    for unit in units:
        d = np.load(cache / f"unit_{unit}.npz")
        ui[unit] = [d[f"in{i}"] for i in range(sum(1 for k in d.files if k.startswith("in")))]
        uo[unit] = [d[f"out{i}"] for i in range(sum(1 for k in d.files if k.startswith("out")))]
        win[unit] = meta["units"][unit].get("window")
    return Reference("", frames, ui, uo, win, meta.get("source", ""))


def savez_atomic(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    write_atomic(path, lambda f: np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()}))


def write_npys(folder: Path, arrays: Mapping[str, np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, a in arrays.items():
        np.save(folder / (sanitize_name(name) + ".npy"), np.ascontiguousarray(a), allow_pickle=False)
