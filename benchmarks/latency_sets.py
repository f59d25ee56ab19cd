"""The artifact sets ``benchmarks/export_latency.py`` compares: expanding the paths, opening the sets (they must share
geometry, style, denoiser and weights), the distinct artifact files to time (:class:`Item`) and the chains to sum
(:class:`Chain`)."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from isp.units import TARGETS as TARGET_ORDER

PRECISION_ORDER = ("fp32", "fp16", "w8", "int8")


@dataclass
class Item:
    """One distinct artifact file to time (several manifest entries with the same sha256 share one item)."""
    key: str                                  # "<set>/<file>"
    set_name: str
    root: str
    file: str
    unit: str
    target: str
    precision: str
    requested: str
    sha256: str | None
    runnable: bool
    reason: str | None = None
    aliases: list[str] = field(default_factory=list)     # other "<set>/<file>" with the same content


def expand_sets(paths: Sequence[str | Path]) -> list[Path]:
    """Set folders: each path that holds a manifest.json, or the sub-folders of a path that do."""
    out: list[Path] = []
    for p in map(Path, paths):
        if (p / "manifest.json").is_file() or (p.is_file() and p.name == "manifest.json"):
            out.append(p if p.is_dir() else p.parent)
            continue
        if not p.is_dir():
            raise FileNotFoundError(f"{p}: no such folder (expected an artifact set from python convert/export.py "
                                    "--out DIR)")
        subs = sorted(d for d in p.iterdir() if (d / "manifest.json").is_file())
        if not subs:
            raise FileNotFoundError(f"{p}: holds no manifest.json and no sub-folder with one; export a set with "
                                    "python convert/export.py --out DIR")
        out += subs
    seen, unique = set(), []
    for p in out:
        r = p.resolve()
        if r not in seen:
            seen.add(r)
            unique.append(p)
    return unique


def _names(sets: Sequence[Path]) -> list[str]:
    names = [p.name or str(p) for p in sets]
    if len(set(names)) != len(names):
        names = [str(p) for p in sets]
    return names


def open_sets(paths: Sequence[Path]) -> tuple[list[Any], dict[str, Any]]:
    """``(ArtifactSet per path, identity)``; ``ValueError`` when the sets do not share geometry / style /
    denoiser / LUT (one torch baseline cannot serve them)."""
    from runtime_py.artifacts import ArtifactSet

    sets = [ArtifactSet.open(p) for p in paths]
    ident = None
    for s in sets:
        g = s.geometry
        me = {"geometry": {"width": g.width, "height": g.height, "tile": g.tile, "overlap": g.overlap},
              "style": s.style, "denoiser": s.denoiser, "lut": s.lut, "weights": s.weights}
        if ident is None:
            ident = me
        elif {k: v for k, v in me.items() if k != "weights"} != {k: v for k, v in ident.items() if k != "weights"}:
            raise ValueError(f"{s.root}: {me} differs from {sets[0].root}: {ident}; benchmark sets of one geometry, "
                             "style and denoiser together (one torch baseline)")
    return sets, ident or {}


def collect_items(sets: Sequence[Any], names: Sequence[str], units: Sequence[str] | None,
                  targets: Sequence[str] | None
                  ) -> tuple[dict[str, list[Item]], dict[tuple[str, str], Item], list[dict[str, Any]]]:
    """``({unit: [items]}, {(set, file): item}, export failures)`` of the selected entries."""
    from isp.units import normalize_target, target_family

    want_targets = {normalize_target(t) for t in targets} if targets else None
    by_unit: dict[str, list[Item]] = {}
    by_file: dict[tuple[str, str], Item] = {}
    by_sha: dict[tuple[str, str], Item] = {}
    failures = []
    for s, name in zip(sets, names):
        for f in s.failures:
            if units and f.get("unit") not in units:
                continue
            ft = normalize_target(str(f.get("target")))
            if want_targets and ft not in want_targets and target_family(ft) not in want_targets:
                continue
            failures.append({"set": name, **f})
        for a in s.artifacts:
            if units and a.unit not in units:
                continue
            if want_targets and target_family(a.target) not in want_targets and a.target not in want_targets:
                continue
            requested = str(a.entry.get("requested_precision") or a.precision)
            reason = a.not_runnable_reason
            dup = by_sha.get((a.unit, a.sha256)) if a.sha256 else None
            if dup is not None and dup.target == a.target:
                dup.aliases.append(f"{name}/{a.file}")
                by_file[(name, a.file)] = dup
                continue
            item = Item(key=f"{name}/{a.file}", set_name=name, root=str(s.root), file=a.file, unit=a.unit,
                        target=a.target, precision=a.precision, requested=requested, sha256=a.sha256,
                        runnable=reason is None, reason=reason)
            by_unit.setdefault(a.unit, []).append(item)
            by_file[(name, a.file)] = item
            if a.sha256:
                by_sha[(a.unit, a.sha256)] = item
    return by_unit, by_file, failures


@dataclass
class Chain:
    """One column of the table: a target and a precision label, one artifact per unit."""
    label: str
    target: str
    precision: str
    sets: list[str]
    units: dict[str, Item]                     # unit -> item
    missing: dict[str, str]                    # unit -> why (no artifact / export failed)


def _policy_name(manifest: Mapping[str, Any]) -> str:
    """The label of a set's run: its policy's name (``int8``, ``fp16``, a policy file's name), or the precision of a
    uniform ``--precision P`` run (policy ``uniform P``)."""
    pol = manifest.get("policy") or {}
    name, default = str(pol.get("name") or ""), str(pol.get("default") or "fp32")
    return default if not name or name.startswith("uniform") else name


def build_chains(sets: Sequence[Any], names: Sequence[str], units: Sequence[str],
                 by_file: Mapping[tuple[str, str], Item], failures: Sequence[Mapping[str, Any]],
                 targets: Sequence[str] | None = None) -> list[Chain]:
    """The columns: one per target and precision label.

    A set exported with one policy (``--precision P`` or ``--policy P``, one folder per run as ``convert/export.py``
    writes it) gives the chain *target P*: per unit its artifact of precision P, else the float artifact the policy
    keeps (marked in the table). A folder into which several runs were merged also gives a chain per other
    precision found in it, when that chain is complete there. Chains of the same target and label from several sets
    fill each other's gaps (the first set given wins)."""
    from isp.units import normalize_target, target_family

    want = {normalize_target(t) for t in targets} if targets else None

    def pick(cands: Sequence[Any], unit: str, label: str, unit_policy: str | None) -> Any | None:
        mine = [a for a in cands if a.unit == unit]
        for ok in (lambda a: a.precision == label,
                   lambda a: str(a.entry.get("requested_precision") or "") == label and a.precision == "fp32",
                   lambda a: unit_policy is not None and a.precision == unit_policy,
                   lambda a: a.precision == "fp32" and label in ("fp16", "int8", "w8")):
            hit = [a for a in mine if ok(a)]
            if hit:
                return hit[0]
        return None

    primary: dict[tuple[str, str], Chain] = {}
    secondary: list[tuple[tuple[str, str], Chain]] = []
    for s, name in zip(sets, names):
        policy = _policy_name(s.manifest)
        pol = s.manifest.get("policy") or {}
        labels = [policy] + sorted({a.precision for a in s.artifacts} - {policy},
                                   key=lambda p: PRECISION_ORDER.index(p) if p in PRECISION_ORDER else 9)
        for target in sorted({a.target for a in s.artifacts} |
                             {normalize_target(str(f.get("target"))) for f in s.failures}):
            if want and target not in want and target_family(target) not in want:
                continue
            cands = [a for a in s.artifacts if a.target == target and (name, a.file) in by_file]
            for label in labels:
                chosen: dict[str, Item] = {}
                missing: dict[str, str] = {}
                for unit in units:
                    unit_policy = (pol.get("units") or {}).get(unit, pol.get("default")) if label == policy else None
                    a = pick(cands, unit, label, unit_policy)
                    if a is not None:
                        chosen[unit] = by_file[(name, a.file)]
                        continue
                    why = [str(f.get("error", "")) for f in s.failures if f.get("unit") == unit and
                           normalize_target(str(f.get("target"))) == target and
                           f.get("precision") in (label, unit_policy)]
                    missing[unit] = f"export failed: {why[0]}" if why else "no artifact"
                if not any(it.precision == label for it in chosen.values()) and label != policy:
                    continue
                chain = Chain(label=f"{target} {label}", target=target, precision=label, sets=[name],
                              units=chosen, missing=missing)
                key = (target, label)
                if label == policy or not missing:
                    if key in primary:
                        _fill(primary[key], chain)
                    else:
                        primary[key] = chain
                else:
                    secondary.append((key, chain))
    for key, chain in secondary:
        if key in primary:
            _fill(primary[key], chain)

    def order(k: tuple[str, str]) -> tuple:
        fam = target_family(k[0])
        return (TARGET_ORDER.index(fam) if fam in TARGET_ORDER else 9, k[0],
                PRECISION_ORDER.index(k[1]) if k[1] in PRECISION_ORDER else 9)
    return [primary[k] for k in sorted(primary, key=order)]


def _fill(into: Chain, other: Chain) -> None:
    for unit, item in other.units.items():
        if unit in into.missing:
            into.units[unit] = item
            into.missing.pop(unit)
            if other.sets[0] not in into.sets:
                into.sets.append(other.sets[0])
