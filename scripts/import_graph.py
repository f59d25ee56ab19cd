"""Import graph of the toolkit's packages: cycles between modules and imports that point up the layers.

    python scripts/import_graph.py            # exit 1 and the offending edges when there is a cycle or an upward import

Every ``import`` / ``from ... import`` in the packages' modules counts, at module level or inside a function (a lazy
import is still a dependency). The layers, lowest first (a module may import its own layer and the ones below):

    isp < calibration < convert < android_harness < ios_harness.device < runtime_py < ios_harness < benchmarks

``isp`` is the reference and the contracts every layer reads (unit table, frame geometry, atomic writes, hashing,
tool versions); ``android_harness`` and ``ios_harness.device`` are the devices (transports, runners' protocol);
``runtime_py`` runs artifacts on the host and benchmarks devices; ``ios_harness.driver`` is the iOS command line
(its ``bench`` subcommand starts ``runtime_py.bench``); ``benchmarks`` are scripts over everything. A module belongs
to the longest layer name that prefixes it.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: lowest first
LAYERS = ("isp", "calibration", "convert", "android_harness", "ios_harness.device", "runtime_py", "ios_harness",
          "benchmarks")
PACKAGES = ("isp", "calibration", "convert", "android_harness", "runtime_py", "ios_harness", "benchmarks")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for p in sorted((REPO / pkg).rglob("*.py")):
            out[module_name(p)] = p
    return out


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Project modules ``path`` imports (resolved to the longest known module name)."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[:len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for t in targets:
            parts = t.split(".")
            while parts and ".".join(parts) not in known:
                parts.pop()
            if parts:
                found.add(".".join(parts))
    found.discard(name)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports(p, m, known) for m, p in mods.items()}


def layer(mod: str) -> int:
    """Index in :data:`LAYERS` of the longest layer name that is ``mod`` or a package above it."""
    best = max((name for name in LAYERS if mod == name or mod.startswith(name + ".")), key=len)
    return LAYERS.index(best)


def upward(g: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((a, b) for a, deps in g.items() for b in deps if layer(b) > layer(a))


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted. A package's ``__init__``
    re-exporting its submodules is not a cycle with them (edges from a package to its own submodules are left
    out)."""
    edges = {a: {b for b in deps if not b.startswith(a + ".")} for a, deps in g.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main() -> int:
    g = graph()
    bad = 0
    for comp in cycles(g):
        print("cycle: " + " <-> ".join(comp))
        bad += 1
    for a, b in upward(g):
        print(f"upward import: {a} -> {b}")
        bad += 1
    if not bad:
        print(f"{len(g)} modules: no import cycle, no upward import ({' < '.join(LAYERS)})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
