"""The schema of ``manifest.json`` (``docs/EXPORT_DESIGN.md``) and a small validator (standard library only).

A schema is a type (``str``, ``int``, ``float``, ``bool``, ``dict``, ``list``), a tuple of alternatives (``None``
allows null), :class:`Obj` (an object: required and optional fields, others allowed), :class:`ListOf` or
:class:`OneOf` (a string from a fixed set). :func:`validate` raises ``ValueError`` naming the file and the field
(``manifest.json: artifacts[3].inputs[0].shape[2]: expected an integer, got 'x'``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from isp.units import PRECISIONS, UNIT_ORDER

__all__ = ["MANIFEST", "Obj", "ListOf", "OneOf", "validate"]


@dataclass(frozen=True)
class Obj:
    required: Mapping[str, Any]
    optional: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ListOf:
    item: Any


@dataclass(frozen=True)
class OneOf:
    choices: tuple[str, ...]


_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "an object",
          list: "a list", type(None): "null"}

_TENSOR = Obj({"name": str, "shape": ListOf(int)},
              {"dtype": str, "range": (ListOf((int, float)), None), "layout": (str, None)})
_GEOMETRY = Obj({"width": int, "height": int},
                {"tile": int, "overlap": int, "quarter": ListOf(int), "tile_shape": ListOf(int)})
#: targets are strings (secondary ExecuTorch backends are ``executorch-vulkan`` ...; ArtifactSet normalizes them)
_KEY = {"unit": OneOf(UNIT_ORDER), "target": str, "precision": OneOf(PRECISIONS)}
#: ``inputs`` / ``outputs`` are optional here (the exporter always writes them; runtime_py.artifacts requires them
#: of the entries it runs)
_ARTIFACT = Obj({**_KEY, "file": str},
                {"inputs": ListOf(_TENSOR), "outputs": ListOf(_TENSOR), "stage": str, "backend": (str, None), "bytes": (int, None), "sha256": (str, None),
                 "tiling": dict, "runnable_here": (bool, None), "warnings": (list, None), "details": (dict, None)})
_FAILURE = Obj({}, {"unit": str, "target": str, "precision": str, "error": (str, None)})

#: ``manifest.json`` (format ``isp-artifacts/1``)
MANIFEST = Obj({"format": str, "geometry": _GEOMETRY},
               {"created": str, "updated": str, "style": int, "lut": bool, "denoiser": str, "weights": (str, None),
                "policy": (dict, None), "versions": (dict, None), "calibration": (dict, None),
                "artifacts": ListOf(_ARTIFACT), "failures": ListOf(_FAILURE)})


def _is(value: Any, t: type) -> bool:
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if t is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, t)


def _describe(schema: Any) -> str:
    if isinstance(schema, tuple):
        return " or ".join(_describe(s) for s in schema)
    if isinstance(schema, Obj):
        return "an object"
    if isinstance(schema, ListOf):
        return "a list"
    if isinstance(schema, OneOf):
        return "one of " + ", ".join(schema.choices)
    return _NAMES.get(schema if schema is not None else type(None), str(schema))


def _check(value: Any, schema: Any, where: str) -> str | None:
    """The first problem as ``"field: message"``, or ``None``."""
    if isinstance(schema, tuple):
        for alt in schema:
            if (alt is None and value is None) or (alt is not None and _check(value, alt, where) is None):
                return None
        return f"{where}: expected {_describe(schema)}, got {value!r:.80}"
    if isinstance(schema, Obj):
        if not isinstance(value, dict):
            return f"{where}: expected an object, got {value!r:.80}"
        for key, sub in schema.required.items():
            if key not in value:
                return f"{where}.{key}: missing" if where else f"{key}: missing"
        for key, sub in (*schema.required.items(), *schema.optional.items()):
            if key in value:
                problem = _check(value[key], sub, f"{where}.{key}" if where else key)
                if problem:
                    return problem
        return None
    if isinstance(schema, ListOf):
        if not isinstance(value, list):
            return f"{where}: expected a list, got {value!r:.80}"
        for i, item in enumerate(value):
            problem = _check(item, schema.item, f"{where}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(schema, OneOf):
        if value not in schema.choices:
            return f"{where}: expected {_describe(schema)}, got {value!r:.80}"
        return None
    if not _is(value, schema):
        return f"{where}: expected {_describe(schema)}, got {value!r:.80}"
    return None


def validate(data: Any, path: Any, schema: Any = MANIFEST) -> None:
    """``ValueError`` ``"<path>: <field>: <problem>; re-export the set"`` when ``data`` does not fit ``schema``."""
    problem = _check(data, schema, "")
    if problem:
        raise ValueError(f"{path}: {problem}; the manifest is malformed (re-export the set)")
