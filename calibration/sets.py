"""Calibration and evaluation sets: what every exported stage receives, captured from the reference pipeline.

A set is a folder::

    set.json          manifest: sources, seeds, per-sample augmentation, geometry, pipeline (style, denoiser,
                      checkpoints with sha256), tool versions, and per stage / per array shape, dtype, min/max/mean
                      and the sha256 of every .npz
    <stage>.npz       input_0..k (the tensors the stage receives, in SPEC.inputs order) and output_0..k (the
                      reference outputs, SPEC.outputs order), stacked along the batch axis; full-resolution stages
                      add frame_index (rows -> frame) and tile_origin ((y0, x0) of each tile in the frame)
    frames.npz        the augmented frames for end-to-end evaluation: raw (N, 3, H, W), illum (N, 3),
                      ccm (N, 3, 3) and the reference pipeline's final srgb (N, 3, H, W)

Capture, per frame (:func:`capture_frame`): the reference :class:`isp.pipeline.Pipeline` renders the augmented frame
(its full-resolution networks run in the geometry's tiles); every intermediate it returns is named by the golden
files, so a stage's inputs are simply ``SPEC.input_names`` looked up in that dictionary. Two additions:

* ``-lut`` styles: the 3-D LUT sits between LTM and chroma (with tone edits off, as here, it receives
  ``lsrgb_ltm`` itself), so ``lut3d`` gets ``lsrgb_ltm`` and ``chroma``'s input is the LUT output ``lsrgb_lut``
  (returned by the pipeline when the style has a 3-D LUT).
* full-resolution stages: image inputs (shape ``B,C,H,W``) are cut into the export tiles of the geometry
  (:class:`isp.tiling.TilePlan`, the windows phones run) and a random subset of ``tiles_per_frame`` tiles per frame
  is kept (the same tiles for all full-resolution stages of a frame). Inputs that are not full-resolution images
  (``illum``, ``ccm``, and the quarter-resolution ``lsrgb_ds`` / ``gamma_out`` of ``upsample``) are stored once per
  frame (``per: frame`` in the manifest) and repeated for its tiles by the loader.
  Reference outputs of a *tile-local* stage (no quarter-resolution input: denoise, color, enhance) are the stage
  module evaluated on the stored tile, i.e. exactly what an exported tile model must reproduce. ``upsample`` is not
  tile-local (its bilateral grid is fitted on the whole quarter frame and its slice positions depend on the tile's
  place in the frame), so its outputs are crops of the whole-frame output; ``tile_origin`` and the geometry give
  what a tiled slice needs (``isp.stages.upsample.bgu_slice_mobile(offset=..., full_size=...)``).

Storage is bounded in memory: arrays are spooled row by row into ``.npy`` memory maps and zipped (uncompressed, so the
loader can memory-map them again) into ``<stage>.npz``; the set is written in a temporary folder next to its target
and renamed into place only when complete, so a crash never leaves a half-written set.
"""
from __future__ import annotations

import platform
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch

from calibration.augment import AugmentConfig, Geometry, apply_augmentation, draw_augmentation, split_region
from isp import paths
from isp.atomic import publish_dir
from isp.hashing import sha256_file
from isp.jsonio import write_json_atomic
from isp.versions import tool_versions as read_versions
from isp.registry import STAGE_ORDER, BuildConfig, get_stage
from calibration.sources import (_ROLE_ASSIGN, _ROLE_SAMPLE, _STREAM, SPLITS, Source, SourcePool,  # noqa: F401
                                 _rng, assign_sources, find_dngs)
from calibration.storage import NpzSpool, open_npz
from isp.units import UNITS

__all__ = ["FORMAT", "FORMAT_VERSION", "KINDS", "SPLITS", "ArrayPlan", "StagePlan", "Source", "SourcePool",
           "Frame", "CalibrationSet", "find_dngs", "plan_stages", "assign_sources", "capture_frame", "build_set",
           "build_sets", "load_set", "describe_set", "tool_versions"]

FORMAT = "isp-calibration-set"
FORMAT_VERSION = 1
KINDS = ("calib", "eval")
_TOOL_DISTRIBUTIONS = ("torch", "numpy", "rawpy", "tqdm")


# ------------------------------------------------------------------------------------------------- stage plans

@dataclass(frozen=True)
class ArrayPlan:
    """One stored array of a stage: npz key, golden name, where the data comes from, one row per tile or frame."""
    key: str          # input_0, output_1, ...
    name: str         # the SPEC name
    source: str       # the captured tensor it is taken from
    per: str          # "tile" | "frame"


@dataclass(frozen=True)
class StagePlan:
    id: str
    resolution: str                     # "full" | "quarter"
    inputs: tuple[ArrayPlan, ...]
    outputs: tuple[ArrayPlan, ...]
    tile_local: bool                    # full-resolution stage whose output on a tile depends on that tile only

    @property
    def arrays(self) -> tuple[ArrayPlan, ...]:
        return self.inputs + self.outputs


def _full_res_image(shape: str) -> bool:
    dims = [d.strip() for d in shape.split(",")]
    return len(dims) == 4 and dims[2:] == ["H", "W"]


def plan_stages(lut: bool, enhance: bool = True) -> list[StagePlan]:
    """Stages of a pipeline in order (``lut3d`` only for ``-lut`` styles, ``enhance`` only when enabled), with the
    source of every input and output (see the module docstring)."""
    plans = []
    for sid in STAGE_ORDER:
        if (sid == "lut3d" and not lut) or (sid == "enhance" and not enhance):
            continue
        spec = get_stage(sid)
        full = spec.resolution == "full"

        def arrays(prefix: str, specs) -> tuple[ArrayPlan, ...]:
            out = []
            for k, ts in enumerate(specs):
                source = ts.name
                if lut and prefix == "input" and sid in UNITS:     # chroma reads lsrgb_lut after a 3-D LUT
                    source = next(iter(UNITS[sid].alt_inputs.get(ts.name, ())), ts.name)
                per = "tile" if full and _full_res_image(ts.shape) else "frame"
                out.append(ArrayPlan(f"{prefix}_{k}", ts.name, source, per))
            return tuple(out)

        tile_local = full and not any("/4" in ts.shape for ts in spec.inputs)
        plans.append(StagePlan(sid, spec.resolution, arrays("input", spec.inputs), arrays("output", spec.outputs),
                               tile_local))
    return plans


# ------------------------------------------------------------------------------------------------------ capture

def _full_res_module(pipeline, stage: str) -> torch.nn.Module:
    module = getattr(pipeline, stage, None)
    if not isinstance(module, torch.nn.Module):
        raise RuntimeError(f"the pipeline has no '{stage}' module to compute tile reference outputs")
    return module


@torch.inference_mode()
def capture_frame(pipeline, plans: Sequence[StagePlan], raw: torch.Tensor, illum: torch.Tensor, ccm: torch.Tensor,
                  tiles: Sequence[tuple[int, int]], tile_shape: tuple[int, int],
                  progress: Callable[[str], None] | None = None,
                  tile_progress: Callable[[int], None] | None = None) -> tuple[dict[str, list[np.ndarray]], np.ndarray]:
    """Run the reference pipeline on one frame and cut what every stage receives.

    Args:
        raw (1, 3, H, W), illum (1, 3), ccm (1, 3, 3): the pipeline input.
        tiles: ``(y0, x0)`` of the full-resolution tiles to keep; ``tile_shape``: their ``(th, tw)``.
        progress, tile_progress: called with each pipeline step / with 1 after each tile of a tiled network.

    Returns:
        ``({stage: [array per ArrayPlan in plan.arrays order]}, srgb)``: each array has a leading row axis — one row
        for ``per == "frame"`` arrays, one per kept tile for ``per == "tile"`` — and ``srgb`` (3, H, W) is the final
        image.
    """
    say = progress or (lambda _s: None)
    out = pipeline.run(raw, illum, ccm, progress=say, tile_progress=tile_progress)
    captured: dict[str, torch.Tensor] = dict(out)
    captured.setdefault("illum", illum)
    captured.setdefault("ccm", ccm)
    th, tw = tile_shape

    def crop(t: torch.Tensor) -> torch.Tensor:           # (1, C, H, W) -> (T, C, th, tw)
        return torch.cat([t[..., y0:y0 + th, x0:x0 + tw] for y0, x0 in tiles])

    result: dict[str, list[np.ndarray]] = {}
    for plan in plans:
        say(f"cut {plan.id}")
        arrays: list[torch.Tensor] = []
        for a in plan.inputs:
            t = captured[a.source]
            arrays.append(crop(t) if a.per == "tile" else t)
        if plan.resolution == "full" and plan.tile_local:
            module = _full_res_module(pipeline, plan.id)
            rows = []
            for r in range(len(tiles)):
                args = [x[r:r + 1] if a.per == "tile" else x for a, x in zip(plan.inputs, arrays)]
                y = module(*args)
                rows.append(y if isinstance(y, tuple) else (y,))
            for k, _a in enumerate(plan.outputs):
                arrays.append(torch.cat([row[k] for row in rows]))
        else:
            for a in plan.outputs:
                t = captured[a.source] if a.source in captured else None
                if t is None:
                    raise RuntimeError(f"the pipeline did not return '{a.source}' (output of {plan.id})")
                arrays.append(crop(t) if a.per == "tile" else t)
        result[plan.id] = [x.detach().to(torch.float32).cpu().numpy() for x in arrays]
    return result, out["srgb"][0].detach().to(torch.float32).cpu().numpy()


# ------------------------------------------------------------------------------------------------------ versions

def tool_versions() -> dict[str, str]:
    """Versions of Python, the numerical packages, the calibration format and the repository commit."""
    out = {"python": platform.python_version(), "calibration_format": str(FORMAT_VERSION),
           **read_versions(_TOOL_DISTRIBUTIONS, python=False)}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=paths.REPO_ROOT, capture_output=True, text=True,
                                timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=paths.REPO_ROOT,
                               capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            out["isp_commit"] = commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def _checkpoints(weights: Path, style: int, denoiser: str, lut: bool, enhance: bool) -> dict[str, Any]:
    cfg = BuildConfig(weights, style=style, denoiser=denoiser, use_lut=lut if style else None)
    files = {"denoise": cfg.denoiser_checkpoint, "photofinishing": cfg.photofinishing_checkpoint}
    if enhance:
        files["enhance"] = cfg.enhancement_checkpoint
    return {k: {"file": str(p.relative_to(weights)) if p.is_relative_to(weights) else str(p),
                "sha256": sha256_file(p) if p.is_file() else None} for k, p in files.items()}


# ---------------------------------------------------------------------------------------------------- building

def _check_counts(count: int, eval_count: int, seed: int, tiles_per_frame: int) -> None:
    for name, v, lo in (("count", count, 1), ("eval_count", eval_count, 0), ("seed", seed, 0),
                        ("tiles_per_frame", tiles_per_frame, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")


def _publish(tmp: Path, target: Path, force: bool) -> None:
    """Rename the finished ``tmp`` folder to ``target`` (replacing an existing one only with ``force``)."""
    if target.exists():
        if not force:
            raise FileExistsError(f"{target} already exists; pass force=True (--force) to replace it")
    publish_dir(tmp, target)


def build_set(kind: str, assignments: Sequence[tuple[Source, str]], target: str | Path, *, pool: SourcePool,
              pipeline, geometry: Geometry, seed: int, tiles_per_frame: int = 4,
              augment: AugmentConfig = AugmentConfig(), record: Mapping[str, Any] | None = None,
              force: bool = False, progress: bool = True) -> Path:
    """Build one set (``kind`` ``calib`` or ``eval``) of ``len(assignments)`` frames into ``target``.

    ``assignments[i] = (source, part)`` feeds sample ``i`` (:func:`assign_sources`); sample ``i`` draws every random
    choice from the generator keyed ``(seed, kind, sample, i)``. ``record`` is merged into the manifest (pipeline
    and split description). Returns ``target``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not assignments:
        raise ValueError(f"{kind} set: no samples to build")
    target = Path(target)
    if target.exists() and not force:
        raise FileExistsError(f"{target} already exists; pass force=True (--force) to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    lut = "lut3d" in pipeline.photofinishing[pipeline.style]
    plans = plan_stages(lut, enhance=pipeline.enhance is not None)
    all_tiles = geometry.tiles
    keep = min(int(tiles_per_frame), len(all_tiles))
    n = len(assignments)
    frame_hw = (geometry.height, geometry.width)

    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    spools: dict[str, NpzSpool] = {}
    try:
        for plan in plans:
            rows = {a.key: n * keep if a.per == "tile" else n for a in plan.arrays}
            if plan.resolution == "full":
                rows.update(frame_index=n * keep, tile_origin=n * keep)
            spools[plan.id] = NpzSpool(tmp / ".spool" / plan.id, rows)
        spools["frames"] = NpzSpool(tmp / ".spool" / "frames", {"raw": n, "illum": n, "ccm": n, "srgb": n})

        samples = []
        t0 = time.perf_counter()
        bar = _progress_bar(n, kind, progress)
        status = _StepStatus(bar, len(all_tiles))
        try:
            for i, (source, part) in enumerate(assignments):
                rng = _rng(seed, kind, _ROLE_SAMPLE, i)
                rgb = pool.rgb(source)
                aug = draw_augmentation(rng, source.name, source.shape, split_region(source.shape, part), frame_hw,
                                        source.color, augment)
                raw_np, illum_np = apply_augmentation(rgb, aug, frame_hw, source.saturation)
                chosen = sorted(int(k) for k in rng.choice(len(all_tiles), size=keep, replace=False))
                tiles = [all_tiles[k] for k in chosen]
                raw = torch.from_numpy(raw_np)[None]
                illum = torch.from_numpy(illum_np)[None]
                ccm = torch.from_numpy(source.ccm)[None]
                t_frame = time.perf_counter()
                captured, srgb = capture_frame(pipeline, plans, raw, illum, ccm, tiles, geometry.tile_shape,
                                               progress=status.step, tile_progress=status.tile)
                for plan in plans:
                    spool = spools[plan.id]
                    for a, values in zip(plan.arrays, captured[plan.id]):
                        spool.put(a.key, i * keep if a.per == "tile" else i, values)
                    if plan.resolution == "full":
                        spool.put("frame_index", i * keep, np.full(keep, i, dtype=np.int64))
                        spool.put("tile_origin", i * keep, np.asarray(tiles, dtype=np.int64).reshape(keep, 2))
                fr = spools["frames"]
                fr.put("raw", i, raw_np[None])
                fr.put("illum", i, illum_np[None])
                fr.put("ccm", i, source.ccm[None])
                fr.put("srgb", i, srgb[None])
                samples.append({"index": i, "source": source.name, "part": part,
                                "rng_key": [int(seed), _STREAM[kind], _ROLE_SAMPLE, i],
                                "augmentation": aug.to_json(), "tile_indices": chosen,
                                "tiles": [list(t) for t in tiles],
                                "seconds": round(time.perf_counter() - t_frame, 3)})
                bar.update(1)
        finally:
            bar.close()

        stages: dict[str, Any] = {}
        for plan in plans:
            spool = spools[plan.id]
            entry: dict[str, Any] = {"file": f"{plan.id}.npz", "resolution": plan.resolution,
                                     "rows": n * keep if plan.resolution == "full" else n}
            if plan.resolution == "full":
                entry["tile_local"] = plan.tile_local
                entry["tiles_per_frame"] = keep
            for group, arrays in (("inputs", plan.inputs), ("outputs", plan.outputs)):
                entry[group] = [{"key": a.key, "name": a.name, "source": a.source, "per": a.per,
                                 **spool.describe(a.key)} for a in arrays]
            entry["sha256"] = spool.write(tmp / entry["file"])
            spool.close()
            stages[plan.id] = entry
        fr = spools["frames"]
        frames_entry = {"file": "frames.npz", "count": n,
                        "arrays": {k: fr.describe(k) for k in ("raw", "illum", "ccm", "srgb")}}
        frames_entry["sha256"] = fr.write(tmp / "frames.npz")
        fr.close()
        shutil.rmtree(tmp / ".spool", ignore_errors=True)

        used = sorted({s.name for s, _p in assignments})
        by_name = {s.name: s for s, _p in assignments}
        manifest = {
            "format": FORMAT, "version": FORMAT_VERSION, "kind": kind,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seed": int(seed), "rng": "numpy.random.default_rng([seed, stream, role, index]); "
                                      f"streams {_STREAM}, roles assign={_ROLE_ASSIGN} sample={_ROLE_SAMPLE}",
            "count": n, "geometry": geometry.to_json(), "augment": augment.to_json(),
            **(dict(record) if record else {}),
            "stage_order": [p.id for p in plans],
            "sources": [by_name[name].to_json() for name in used],
            "samples": samples, "stages": stages, "frames": frames_entry,
            "versions": tool_versions(),
            "seconds": round(time.perf_counter() - t0, 3),
        }
        write_json_atomic(tmp / "set.json", manifest)
        _publish(tmp, target, force)
    finally:
        for spool in spools.values():
            spool.maps.clear()
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


class _StepStatus:
    """Shows the current pipeline step (and tile count of tiled networks) as the progress bar's postfix."""

    def __init__(self, bar, tiles: int) -> None:
        self.bar, self.tiles, self.name, self.done = bar, tiles, "", 0

    def step(self, name: str) -> None:
        self.name, self.done = name, 0
        self.bar.set_postfix_str(name)

    def tile(self, n: int) -> None:
        self.done += n
        self.bar.set_postfix_str(f"{self.name} tile {self.done}/{self.tiles}")


def _progress_bar(total: int, kind: str, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, desc=kind, unit="frame", disable=not enabled, dynamic_ncols=True, leave=True)


def build_sets(dngs: str | Path | Sequence[str | Path] | None, out: str | Path, *, geometry: Geometry,
               count: int = 8, eval_count: int = 4, seed: int = 0, style: int = 0, denoiser: str = "s24_lite",
               tiles_per_frame: int = 4, augment: AugmentConfig = AugmentConfig(), split: str = "auto",
               weights: str | Path | None = None, pipeline=None, force: bool = False,
               progress: bool = True) -> dict[str, Path]:
    """Build ``out/calib`` (``count`` frames) and ``out/eval`` (``eval_count`` frames, skipped when 0).

    Args:
        dngs: a folder of DNGs (default ``isp.paths.dng_dir()``) or a list of files. Unreadable files are skipped
            with a warning naming them; ``ValueError`` when none is usable or the folder holds no DNG.
        geometry: frame and tile size (:class:`isp.geometry.FrameGeometry`).
        style, denoiser, weights: the reference pipeline (``Pipeline(style=..., denoiser=..., tile=geometry.tile,
            overlap=geometry.overlap)``); a prebuilt ``pipeline`` may be passed instead (it must match ``style``
            and ``denoiser``, which are recorded).
        split: how the two sets are kept apart (:func:`assign_sources`).
        force: replace existing set folders (each is replaced atomically).

    Returns:
        ``{"calib": path, "eval": path}`` (``eval`` absent when ``eval_count`` is 0).
    """
    _check_counts(count, eval_count, seed, tiles_per_frame)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    out = Path(out)
    targets = {"calib": out / "calib", **({"eval": out / "eval"} if eval_count else {})}
    if not force:
        for t in targets.values():
            if t.exists():
                raise FileExistsError(f"{t} already exists; pass --force to replace it")
    if dngs is None or isinstance(dngs, (str, Path)):
        files = find_dngs(paths.dng_dir() if dngs is None else dngs)
    else:
        files = [Path(f) for f in dngs]
        if not files:
            raise ValueError("no DNG files given; pass a folder or a list of .dng files")
    weights = Path(weights) if weights is not None else paths.weights_root()
    if pipeline is None:                    # first: a bad style / denoiser / weights folder fails before decoding
        from isp.pipeline import Pipeline
        pipeline = Pipeline(weights, style=style, denoiser=denoiser, tile=geometry.tile, overlap=geometry.overlap)
    pool = SourcePool(files)
    sources = pool.probe()
    used, assignment = assign_sources(sources, count, eval_count, seed, split)
    lut = "lut3d" in pipeline.photofinishing[pipeline.style]
    enhance = pipeline.enhance is not None
    record = {
        "pipeline": {"style": int(pipeline.style), "denoiser": denoiser, "lut": lut, "enhance": enhance,
                     "weights": str(weights), "tile": pipeline.tile, "overlap": pipeline.overlap,
                     "checkpoints": _checkpoints(weights, int(pipeline.style), denoiser, lut, enhance)},
        "split": {"mode": used, "calib_sources": sorted({s.name for s, _ in assignment["calib"]}),
                  "eval_sources": sorted({s.name for s, _ in assignment["eval"]})},
        "skipped_sources": [{"file": p.name, "reason": r} for p, r in pool.skipped],
    }
    built = {}
    for kind, target in targets.items():
        built[kind] = build_set(kind, assignment[kind], target, pool=pool, pipeline=pipeline, geometry=geometry,
                                seed=seed, tiles_per_frame=tiles_per_frame, augment=augment, record=record,
                                force=force, progress=progress)
    return built


# ------------------------------------------------------------------------------------------------------ loading

@dataclass
class Frame:
    """One augmented frame: the pipeline input (batch 1) and the reference output."""
    raw: torch.Tensor                   # (1, 3, H, W)
    illum: torch.Tensor                 # (1, 3)
    ccm: torch.Tensor                   # (1, 3, 3)
    srgb: torch.Tensor                  # (1, 3, H, W) reference pipeline output
    augmentation: dict[str, Any]


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a, copy=True))[None]


class CalibrationSet:
    """A built set (see :func:`load_set`). Arrays are memory-mapped; tensors are materialised on request."""

    def __init__(self, root: str | Path, manifest: Mapping[str, Any]) -> None:
        self.root = Path(root)
        self.manifest = dict(manifest)
        self._arrays: dict[str, dict[str, np.ndarray]] = {}

    # ---------------------------------------------------------------------------------------------- metadata
    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def geometry(self) -> Geometry:
        return Geometry.from_json(self.manifest["geometry"])

    @property
    def stages(self) -> list[str]:
        return list(self.manifest["stage_order"])

    @property
    def samples(self) -> list[dict[str, Any]]:
        return list(self.manifest["samples"])

    def __len__(self) -> int:
        return int(self.manifest["count"])

    def __repr__(self) -> str:
        return f"CalibrationSet({str(self.root)!r}, kind={self.kind}, frames={len(self)}, {self.geometry})"

    def _entry(self, stage: str) -> Mapping[str, Any]:
        if stage not in self.manifest["stages"]:
            raise KeyError(f"{self.root}: no stage {stage!r} in this set; stages are {', '.join(self.stages)}")
        return self.manifest["stages"][stage]

    def arrays(self, stage: str) -> dict[str, np.ndarray]:
        """The raw arrays of ``<stage>.npz`` (``"frames"`` for frames.npz), read-only memory maps."""
        if stage not in self._arrays:
            file = self.manifest["frames"]["file"] if stage == "frames" else self._entry(stage)["file"]
            self._arrays[stage] = open_npz(self.root / file)
        return self._arrays[stage]

    # ---------------------------------------------------------------------------------------------- tensors
    def _tuples(self, stage: str, group: str) -> list[tuple[torch.Tensor, ...]]:
        entry = self._entry(stage)
        arrays = self.arrays(stage)
        specs = entry[group]
        rows = int(entry["rows"])
        frame_index = arrays.get("frame_index")
        out = []
        for r in range(rows):
            items = []
            for s in specs:
                a = arrays[s["key"]]
                row = r if s["per"] == "tile" or frame_index is None else int(frame_index[r])
                items.append(_tensor(a[row]))
            out.append(tuple(items))
        return out

    def stage_inputs(self, stage: str) -> list[tuple[torch.Tensor, ...]]:
        """What ``stage`` receives, one batch-1 tuple per row (tile or frame), in ``SPEC.inputs`` order; ready
        for ``ExportRequest.calibration``."""
        return self._tuples(stage, "inputs")

    def stage_outputs(self, stage: str) -> list[tuple[torch.Tensor, ...]]:
        """The reference outputs, aligned with :meth:`stage_inputs`, in ``SPEC.outputs`` order."""
        return self._tuples(stage, "outputs")

    def tile_origins(self, stage: str) -> list[tuple[int, int, int]]:
        """``(frame, y0, x0)`` of every row of a full-resolution stage."""
        self._entry(stage)
        arrays = self.arrays(stage)
        if "tile_origin" not in arrays:
            raise ValueError(f"{stage} is a quarter-resolution stage: its rows are whole frames")
        return [(int(f), int(y), int(x)) for f, (y, x) in zip(arrays["frame_index"], arrays["tile_origin"])]

    def frames(self) -> "FrameSequence":
        """The augmented frames with their reference output, for end-to-end evaluation (loaded on access)."""
        return FrameSequence(self)

    # ---------------------------------------------------------------------------------------------- checks
    def verify(self) -> None:
        """Recompute the sha256 of every file; ``ValueError`` listing those that differ from the manifest."""
        entries = [(e["file"], e["sha256"]) for e in self.manifest["stages"].values()]
        entries.append((self.manifest["frames"]["file"], self.manifest["frames"]["sha256"]))
        bad = []
        for file, digest in entries:
            path = self.root / file
            if not path.is_file():
                bad.append(f"{file} is missing")
            elif sha256_file(path) != digest:
                bad.append(f"{file} sha256 differs from set.json")
        if bad:
            raise ValueError(f"{self.root}: calibration set is damaged: {'; '.join(bad)}; rebuild it")


class FrameSequence(Sequence):
    """Lazy, indexable view of a set's frames."""

    def __init__(self, cs: CalibrationSet) -> None:
        self._cs = cs

    def __len__(self) -> int:
        return len(self._cs)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(f"frame {i} out of range (set has {len(self)})")
        i = i % len(self)
        a = self._cs.arrays("frames")
        return Frame(raw=_tensor(a["raw"][i]), illum=_tensor(a["illum"][i]), ccm=_tensor(a["ccm"][i]),
                     srgb=_tensor(a["srgb"][i]), augmentation=self._cs.manifest["samples"][i]["augmentation"])

    def __iter__(self) -> Iterator[Frame]:
        for i in range(len(self)):
            yield self[i]


def load_set(root: str | Path, verify: bool = True) -> CalibrationSet:
    """Open a set folder written by :func:`build_set`. ``verify`` checks every file's sha256 against the
    manifest. ``ValueError`` for anything that is not a complete set of this format."""
    import json
    root = Path(root)
    manifest_path = root / "set.json"
    if not manifest_path.is_file():
        hint = ""
        if root.is_dir() and any((root / k / "set.json").is_file() for k in KINDS):
            hint = f" (it holds sets: pass {root}/calib or {root}/eval)"
        raise ValueError(f"{root} is not a calibration set: no set.json{hint}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{manifest_path}: not valid JSON ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{manifest_path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    if manifest.get("version") != FORMAT_VERSION:
        raise ValueError(f"{manifest_path}: format version {manifest.get('version')}, this tool reads "
                         f"{FORMAT_VERSION}; rebuild the set")
    cs = CalibrationSet(root, manifest)
    if verify:
        cs.verify()
    return cs


def describe_set(root: str | Path, verify: bool = False) -> str:
    """Human-readable summary: geometry, pipeline, sources, and per stage every array's shape and range."""
    cs = load_set(root, verify=verify)
    m = cs.manifest
    g = cs.geometry
    p = m.get("pipeline", {})
    lines = [f"{cs.root} — {m['kind']} set, {len(cs)} frame(s), seed {m['seed']}",
             f"  geometry  {g}; {m['geometry']['tiles']} tile(s) per frame, tile shape "
             f"{m['geometry']['tile_shape'][0]}x{m['geometry']['tile_shape'][1]}",
             f"  pipeline  style {p.get('style')}, denoiser {p.get('denoiser')}, lut {p.get('lut')}, "
             f"enhance {p.get('enhance')}",
             f"  split     {m.get('split', {}).get('mode')}; sources: "
             + ", ".join(s["file"] for s in m["sources"]),
             f"  built     {m.get('created')} in {m.get('seconds')} s; versions "
             + ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())]
    header = f"  {'stage':<9} {'rows':>5}  {'array':<9} {'tensor':<22} {'per':<5} {'shape':<22} " \
             f"{'min':>9} {'max':>9} {'mean':>9}"
    lines += ["", header]
    for stage in cs.stages:
        e = m["stages"][stage]
        first = True
        for a in e["inputs"] + e["outputs"]:
            name = a["name"] if a["source"] == a["name"] else f"{a['name']}<-{a['source']}"
            shape = "(" + ",".join(str(v) for v in a["shape"]) + ")"
            stats = [f"{a[k]:9.4g}" if k in a and a[k] is not None else f"{'-':>9}" for k in ("min", "max", "mean")]
            lines.append(f"  {stage if first else '':<9} {e['rows'] if first else '':>5}  {a['key']:<9} "
                         f"{name:<22} {a['per']:<5} {shape:<22} {' '.join(stats)}")
            first = False
    fa = m["frames"]["arrays"]
    lines.append(f"  {'frames':<9} {len(cs):>5}  " + "; ".join(
        f"{k} (" + ",".join(str(v) for v in fa[k]["shape"]) + ")" for k in ("raw", "illum", "ccm", "srgb")))
    return "\n".join(lines)
