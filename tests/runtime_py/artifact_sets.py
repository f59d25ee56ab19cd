"""Shared fixtures of the runtime_py artifact tests (test_artifacts, test_pipeline, test_drift): a small exported
artifact set at the CI geometry, a frame, its reference. Test modules import the fixtures they use from here.

The set is ``python convert/export.py --target onnx --precision fp32 --size 512x320 --tile 128`` (its Python API).
Exporting takes one to two minutes on 2 cores, so the set is kept in pytest's cache folder
(``.pytest_cache/d/runtime_py-artifacts/...``), keyed by a hash of the exporter and stage sources and the tool
versions; a cached set is re-verified (sha256 of every file) before use. ``ISP_TEST_FRESH_ARTIFACTS=1`` exports into
the session's temporary folder instead; ``pytest --cache-clear`` drops the cache. Expensive values are memoised per
process, so importing the fixtures into several modules costs nothing extra.

Tests never modify the cached set: :func:`copy_set` makes a folder of symlinks (copies for files a test tampers with).
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import uuid
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
GEOMETRY = {"size": "512x320", "tile": 128, "overlap": 32}
FRAME = "lg-g4_linear_real.dng"            # 600x338 LinearRaw: centre-cropped to 512x320


def _source_key(target: str, precision: str) -> str:
    h = hashlib.sha256(json.dumps([target, precision, GEOMETRY]).encode())
    family = {"tflite": "litert"}.get(target, target)
    conv = ROOT / "convert"
    files = sorted(f for f in conv.glob("*.py")) + sorted(conv.rglob("*.json")) + \
        [conv / "targets" / "__init__.py", conv / "targets" / "base.py", conv / "targets" / f"{family}.py"] + \
        sorted((ROOT / "isp").rglob("*.py"))                     # what decides the artifacts of this target
    for f in files:
        if f.is_file():
            h.update(f.relative_to(ROOT).as_posix().encode())
            h.update(f.read_bytes())
    for dist in ("torch", "onnx", "onnxruntime", "onnxscript", "executorch", "ai-edge-litert", "litert-torch"):
        try:
            h.update(f"{dist}={importlib.metadata.version(dist)}".encode())
        except importlib.metadata.PackageNotFoundError:
            pass
    return h.hexdigest()[:16]


def _valid(folder: Path) -> bool:
    from runtime_py.artifacts import ArtifactSet
    try:
        aset = ArtifactSet.open(folder)
        for a in aset.artifacts:
            a.check_file(verify=True)
        return set(aset.required_units) <= {a.unit for a in aset.artifacts}
    except Exception:  # noqa: BLE001 — any problem: export again
        return False


def export_set(out: Path, target: str = "onnx", precision: str = "fp32", base: Path | None = None) -> Path:
    """Export every unit at the CI geometry into ``out`` (the exporter's Python API). ``precision`` is a uniform
    precision (``fp32``) or ``policy:NAME`` (a built-in policy: ``policy:int8`` is the design's default int8 policy).

    With ``base`` (the fp32 set of the same target) a policy set starts as links to it and exports only the units the
    policy puts in another precision — the fp32 rows of a policy are the same recipes, so the set is the one a full
    ``--policy`` export writes, with its manifest merged by the exporter."""
    from convert.export import ExportOptions, run_export
    from convert.policy import load_policy
    from convert.units import units_for

    policy = precision.partition(":")[2] if precision.startswith("policy:") else None
    stages = "all"
    if policy and base is not None:
        plan = [p for p in load_policy(policy=policy).plan(units_for(False), target) if p.precision != "fp32"]
        if plan:
            copy_set(base, out)
            stages = ",".join(p.unit for p in plan)
    opts = ExportOptions(target=target, out=out, precision=None if policy else precision, policy=policy,
                         stages=stages, size=GEOMETRY["size"],
                         tile=GEOMETRY["tile"], overlap=GEOMETRY["overlap"], verify=False, progress=False)
    outcomes, _ = run_export(opts)
    failed = [f"{o.unit}: {o.error}" for o in outcomes if o.status == "failed"]
    if failed:
        raise RuntimeError(f"export of the test set failed: {failed}")
    return out


_MEMO: dict[str, object] = {}


def cache_dir(request, tmp_path_factory, name: str) -> Path:
    """pytest's cache folder ``name``, or a session temporary folder when the cache is off (``-p no:cacheprovider``)
    or ``ISP_TEST_FRESH_ARTIFACTS`` is set."""
    if os.environ.get("ISP_TEST_FRESH_ARTIFACTS") or getattr(request.config, "cache", None) is None:
        return tmp_path_factory.mktemp(name)
    return Path(request.config.cache.mkdir(name))


def cached_set(request, tmp_path_factory, target: str = "onnx", precision: str = "fp32") -> Path:
    """The set for ``target``/``precision`` from pytest's cache folder, exported there first if needed.

    Several pytest sessions may share the cache (colleagues running the suite at once): a lock file serialises the
    check-and-export, a finished set is moved into place whole, and sets of other source keys are removed only when
    they are more than a day old (a session started before a source edit may still be reading one)."""
    memo_key = f"set:{target}:{precision}"
    if memo_key not in _MEMO:                     # once per process (the base fp32 set serves several policies)
        _MEMO[memo_key] = _cached_set(request, tmp_path_factory, target, precision)
    return _MEMO[memo_key]


def _cached_set(request, tmp_path_factory, target: str, precision: str) -> Path:
    import fcntl
    import time

    base_set = cached_set(request, tmp_path_factory, target, "fp32") if precision.startswith("policy:") else None
    if os.environ.get("ISP_TEST_FRESH_ARTIFACTS") or getattr(request.config, "cache", None) is None:
        return export_set(tmp_path_factory.mktemp(f"artifacts-{target}-{precision.replace(':', '-')}"), target,
                          precision, base_set)
    base = Path(request.config.cache.mkdir("runtime_py-artifacts"))
    label = f"{target}-{precision.replace(':', '-')}"
    folder = base / f"{label}-{_source_key(target, precision)}"
    with open(base / ".lock", "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            if (folder / "manifest.json").is_file() and _valid(folder):
                return folder
            staging = base / f".staging-{uuid.uuid4().hex[:8]}"
            try:
                export_set(staging, target, precision, base_set)
                shutil.rmtree(folder, ignore_errors=True)
                os.replace(staging, folder)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            for old in base.iterdir():
                if old.name.startswith(f"{label}-") and old != folder and len(old.name) == len(folder.name) \
                        and time.time() - old.stat().st_mtime > 86400:
                    shutil.rmtree(old, ignore_errors=True)
            return folder
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def onnx_set(request, tmp_path_factory, shared_root) -> Path:
    """The ONNX fp32 artifact set at 512x320, tile 128 (cached, see the module docstring)."""
    return cached_set(request, tmp_path_factory)


def copy_set(src: Path, dst: Path, copy: tuple[str, ...] = (), manifest: dict | None = None) -> Path:
    """A folder with symlinks to ``src``'s files (real copies for ``copy``) and ``manifest`` (default: src's)."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.name == "manifest.json" or f.name.startswith("."):
            continue
        if f.name in copy:
            shutil.copy2(f, dst / f.name) if f.is_file() else shutil.copytree(f, dst / f.name)
        else:
            (dst / f.name).symlink_to(f.resolve())
    data = manifest if manifest is not None else json.loads((src / "manifest.json").read_text())
    (dst / "manifest.json").write_text(json.dumps(data, indent=1))
    return dst


@pytest.fixture(scope="session")
def geometry(onnx_set):
    from runtime_py.artifacts import ArtifactSet
    return ArtifactSet.open(onnx_set).geometry


@pytest.fixture(scope="session")
def frame(geometry, shared_root):
    """``(raw, illum, ccm)`` of the shipped LinearRaw DNG, centre-cropped to the geometry."""
    from isp import paths
    from runtime_py.pipeline import read_frame
    raw, illum, ccm, _img = read_frame(paths.dng_dir() / FRAME, geometry, fit="crop")
    return raw, illum, ccm


@pytest.fixture(scope="session")
def reference_out(frame, onnx_set):
    """The reference pipeline's intermediates on ``frame`` (built like the set, tiles of the geometry)."""
    from runtime_py.artifacts import ArtifactSet
    from runtime_py.drift import EvalFrame, Reference
    if "reference_out" not in _MEMO:
        ref = Reference(ArtifactSet.open(onnx_set))
        raw, illum, ccm = frame
        with torch.inference_mode():
            _MEMO["reference_out"] = ref.intermediates(EvalFrame("frame", raw, illum, ccm))
    return _MEMO["reference_out"]
