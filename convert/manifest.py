"""``manifest.json``: the description of an artifact set (format ``isp-artifacts/1``, ``docs/EXPORT_DESIGN.md``).

One manifest per output folder, next to the artifacts. Several export runs into one folder merge into it: an
artifact is keyed by ``(unit, target, precision)`` and a later run replaces the entry of the same key; a failure is
keyed the same way, is dropped when a later run exports that key, and leaves an earlier artifact of that key in
place (its file was never touched: targets write atomically). Runs into one folder must agree on the frame
geometry, style, 3-D LUT and denoiser (those decide what the artifacts compute); a mismatch is a ``ValueError``
naming both.

Writes are atomic (temporary file + rename, :func:`isp.jsonio.write_json_atomic`) and the read-merge-write of
:func:`update_manifest` holds an exclusive ``flock`` on ``.manifest.lock`` so concurrent runs into one folder
do not lose each other's entries.

``.pte`` files store no tensor names, so every ``.pte`` also gets a ``<file>.io.json`` sidecar with the input and
output names, shapes and dtypes (:func:`write_io_sidecar`).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import platform
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from convert.manifest_schema import validate
from isp.jsonio import read_json, write_json_atomic

__all__ = ["FORMAT", "MANIFEST_NAME", "SIDECAR_SUFFIX", "IDENTITY_KEYS", "new_manifest", "artifact_key",
           "read_manifest", "merge_manifests", "write_manifest", "update_manifest", "write_io_sidecar",
           "read_io_sidecar", "find_artifact", "versions"]

FORMAT = "isp-artifacts/1"
MANIFEST_NAME = "manifest.json"
SIDECAR_SUFFIX = ".io.json"
#: top-level fields that must agree for two runs to share a folder
IDENTITY_KEYS = ("geometry", "style", "lut", "denoiser")
_LOCK_NAME = ".manifest.lock"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def versions() -> dict[str, str]:
    """Python and the toolchain versions (``convert.targets.base.tool_versions``)."""
    from convert.targets.base import tool_versions
    return {"python": platform.python_version(), **tool_versions()}


def new_manifest(*, geometry: Mapping[str, Any], style: int, lut: bool, denoiser: str, weights: str,
                 policy: Mapping[str, Any], calibration: Mapping[str, Any] | None = None,
                 tool_versions: Mapping[str, str] | None = None) -> dict[str, Any]:
    """An empty manifest for one run (artifacts and failures are added by the exporter)."""
    return {"format": FORMAT, "created": _now(), "geometry": dict(geometry), "style": int(style), "lut": bool(lut),
            "denoiser": denoiser, "weights": str(weights), "policy": dict(policy),
            "versions": dict(tool_versions) if tool_versions is not None else versions(),
            "calibration": dict(calibration) if calibration else None, "artifacts": [], "failures": []}


def artifact_key(entry: Mapping[str, Any]) -> tuple[str, str, str]:
    return str(entry["unit"]), str(entry["target"]), str(entry["precision"])


def read_manifest(path: str | Path) -> dict[str, Any]:
    """A manifest file, or the ``manifest.json`` of a folder. ``ValueError`` for a file of another format or one that
    does not fit the schema (:mod:`convert.manifest_schema`; the message names the file and the field)."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    data = read_json(path, missing=f"{path}: no artifact manifest here (run python convert/export.py --out "
                                   f"{path.parent})")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: format {got!r}, expected {FORMAT!r}")
    validate(data, path)
    data.setdefault("artifacts", [])
    data.setdefault("failures", [])
    return data


def merge_manifests(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """``new`` merged into ``old`` (see the module docstring). Top-level descriptive fields come from ``new``;
    ``created`` stays the first run's and ``updated`` is the latest."""
    if old is None:
        out = dict(new)
        out["updated"] = out.get("created", _now())
        out["artifacts"] = sorted(new.get("artifacts", []), key=_order)
        return out
    clash = [k for k in IDENTITY_KEYS if k in old and k in new and _norm(old[k]) != _norm(new[k])]
    if clash:
        detail = "; ".join(f"{k}: folder has {old[k]!r}, this run {new[k]!r}" for k in clash)
        raise ValueError(f"cannot merge into this folder's manifest: {detail}. Export a different geometry, style or "
                         f"denoiser into another --out folder")
    artifacts = {artifact_key(a): a for a in old.get("artifacts", [])}
    failures = {artifact_key(f): f for f in old.get("failures", [])}
    for a in new.get("artifacts", []):
        artifacts[artifact_key(a)] = a
        failures.pop(artifact_key(a), None)
    for f in new.get("failures", []):
        failures[artifact_key(f)] = f
    # a run that needed no calibration (no int8 unit) keeps the calibration record of the runs that did
    keep = ("artifacts", "failures", "created") + (("calibration",) if new.get("calibration") is None else ())
    out = {**dict(old), **{k: v for k, v in new.items() if k not in keep}}
    out["updated"] = new.get("created", _now())
    out["artifacts"] = sorted(artifacts.values(), key=_order)
    out["failures"] = sorted(failures.values(), key=_order)
    return out


def _norm(v: Any) -> Any:
    return json.loads(json.dumps(v))


def _order(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    from convert.units import UNIT_ORDER
    unit = entry.get("unit")
    return (UNIT_ORDER.index(unit) if unit in UNIT_ORDER else len(UNIT_ORDER), str(entry.get("target")),
            str(entry.get("precision")))


def write_manifest(folder: str | Path, manifest: Mapping[str, Any]) -> Path:
    """Write ``folder/manifest.json`` atomically (no merge)."""
    return write_json_atomic(Path(folder) / MANIFEST_NAME, manifest)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / _LOCK_NAME, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def update_manifest(folder: str | Path, run: Mapping[str, Any]) -> dict[str, Any]:
    """Merge one run's manifest into ``folder/manifest.json`` (created if absent) under a lock; returns it."""
    folder = Path(folder)
    with _locked(folder):
        path = folder / MANIFEST_NAME
        old = read_manifest(path) if path.is_file() else None
        merged = merge_manifests(old, run)
        write_manifest(folder, merged)
    return merged


def write_io_sidecar(artifact: str | Path, inputs: Sequence[Mapping[str, Any]],
                     outputs: Sequence[Mapping[str, Any]]) -> Path:
    """``<artifact>.io.json`` (atomic), in the device runner's io-spec format
    (``android_harness/runner_protocol.md``): ``{"inputs": [names], "outputs": [names]}`` in order, plus
    ``"file"`` and ``"tensors": {"inputs": [{name, shape, dtype}], "outputs": [...]}`` for people and tools."""
    artifact = Path(artifact)
    keep = ("name", "shape", "dtype")
    payload = {"file": artifact.name,
               "inputs": [str(t["name"]) for t in inputs], "outputs": [str(t["name"]) for t in outputs],
               "tensors": {"inputs": [{k: t[k] for k in keep} for t in inputs],
                           "outputs": [{k: t[k] for k in keep} for t in outputs]}}
    return write_json_atomic(artifact.with_name(artifact.name + SIDECAR_SUFFIX), payload)


def read_io_sidecar(artifact: str | Path) -> dict[str, Any]:
    """The sidecar of ``artifact``: ``inputs``/``outputs`` are the names in order (for
    ``runtime_py.runtimes.load(..., input_names=...)`` and the device runners), ``tensors`` their shapes and dtypes."""
    artifact = Path(artifact)
    return json.loads(artifact.with_name(artifact.name + SIDECAR_SUFFIX).read_text())


def find_artifact(manifest: Mapping[str, Any], unit: str, target: str | None = None,
                  precision: str | None = None) -> dict[str, Any] | None:
    """The first artifact entry of ``unit`` matching ``target``/``precision`` (None = any)."""
    for a in manifest.get("artifacts", []):
        if a["unit"] == unit and target in (None, a["target"]) and precision in (None, a["precision"]):
            return dict(a)
    return None
