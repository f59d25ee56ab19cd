"""The packages import downward only and have no import cycle (scripts/import_graph.py states the layers)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location("import_graph", Path(__file__).resolve().parents[1] / "scripts" /
                                               "import_graph.py")
graph_mod = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(graph_mod)


def test_no_import_cycle():
    assert graph_mod.cycles(graph_mod.graph()) == []


def test_no_upward_import():
    assert graph_mod.upward(graph_mod.graph()) == []


def test_the_checker_sees_cycles_and_upward_edges():
    g = {"isp.a": {"runtime_py.b"}, "runtime_py.b": {"isp.a"}, "convert.c": set()}
    assert graph_mod.cycles(g) == [["isp.a", "runtime_py.b"]]
    assert graph_mod.upward(g) == [("isp.a", "runtime_py.b")]
    assert graph_mod.layer("ios_harness.device") < graph_mod.layer("runtime_py.bench.run") < \
        graph_mod.layer("ios_harness.driver")


def test_modules_stay_small():
    """No module of the packages over ~700 lines (split by role instead)."""
    big = {m: n for m, p in graph_mod.modules().items() if (n := len(p.read_text().splitlines())) > 720}
    assert big == {}, f"modules over 720 lines: {big}"
