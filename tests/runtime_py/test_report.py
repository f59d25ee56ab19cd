"""runtime_py.report: the HTML page parses and holds what was asked for; writes are atomic; JSON delegates."""
from __future__ import annotations

import base64
import errno
import io
import json
import math
import os
from datetime import datetime, timezone
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from PIL import Image

from runtime_py import metrics as M
from runtime_py import report as R


class _PageParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables, self.imgs, self.cells, self.headings, self.text = [], [], [], [], []
        self._cell = None
        self._in_h = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.tables.append(a.get("class", ""))
        elif tag == "img":
            self.imgs.append(a)
        elif tag == "td":
            self._cell = {"class": (a.get("class") or "").split(), "text": ""}
        elif tag in ("h1", "h2"):
            self._in_h = True
            self.headings.append("")

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.cells.append(self._cell)
            self._cell = None
        elif tag in ("h1", "h2"):
            self._in_h = False

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell["text"] += data
        if self._in_h:
            self.headings[-1] += data


def _parse(page: str) -> _PageParser:
    p = _PageParser()
    p.feed(page)
    p.close()
    return p


def _decode(uri: str) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    with Image.open(io.BytesIO(base64.b64decode(uri[len(prefix):]))) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        return np.asarray(im)


def _sections():
    rng = np.random.default_rng(0)
    ref = rng.random((24, 32, 3))
    art = np.clip(ref + 0.02 * rng.standard_normal(ref.shape), 0, 1)
    heat = M.error_heatmap(art, ref, vmax=0.1)
    rows = [
        {"stage": "gtm", "target": "litert", "psnr": 52.123456, "de2000_mean": 0.2, "latency_ms": 3.14159},
        {"stage": "ltm", "target": "coreml", "psnr": 31.5, "de2000_mean": 2.5, "latency_ms": None},
        {"stage": "gamma", "target": "onnx", "psnr": math.inf, "de2000_mean": 0.0, "latency_ms": 1},
    ]
    return [
        R.Section("Drift", table=rows, budgets={"psnr": R.Budget(min=40.0), "de2000_mean": 1.0},
                  formats={"latency_ms": ".2f"}, text="PSNR in dB; ΔE00 on sRGB."),
        {"heading": "Images <gtm>", "image_rows": [R.comparison_row(ref, art, heat, "gtm", vmax=0.1, unit="RGB"),
                                                   [("uint8 only", (ref * 255).astype(np.uint8))]]},
    ]


class TestHtmlReport:
    def test_renders(self, tmp_path):
        out = R.write_html_report(tmp_path / "r" / "report.html", "Drift <report>", _sections(),
                                  versions={"torch": torch.__version__, "numpy": np.__version__},
                                  generated=datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
        page = out.read_text(encoding="utf-8")
        assert page.startswith("<!DOCTYPE html>")
        assert "<script" not in page.lower() and "Drift &lt;report&gt;" in page
        p = _parse(page)
        assert p.tables.count("data") == 1 and p.tables.count("versions") == 1
        assert len(p.imgs) == 4
        assert all(i["src"].startswith("data:image/png;base64,") for i in p.imgs)
        assert p.headings == ["Drift <report>", "Drift", "Images <gtm>"]
        body = "".join(p.text)
        assert "2025-01-02T03:04:05+00:00" in body and torch.__version__ in body
        assert "gtm: reference" in body and "gtm: artifact" in body and "gtm: error heat map" in body
        assert "0.1 RGB" in body and "linear-gradient" in page                       # heat-map legend

    def test_images_round_trip(self, tmp_path):
        secs = _sections()
        p = _parse(R.render_html("t", secs))
        ref = secs[1]["image_rows"][0][0][1]
        np.testing.assert_array_equal(_decode(p.imgs[0]["src"]), np.rint(ref * 255).astype(np.uint8))
        heat = secs[1]["image_rows"][0][2][1]
        np.testing.assert_array_equal(_decode(p.imgs[2]["src"]), heat)
        assert p.imgs[0]["width"] == "32" and p.imgs[0]["height"] == "24"

    def test_budget_highlighting(self):
        p = _parse(R.render_html("t", _sections()))
        by_text = {}
        for c in p.cells:
            by_text.setdefault(c["text"], []).append(c["class"])
        # psnr >= 40: 52.12 ok, 31.5 over, inf ok; de2000_mean <= 1: 0.2 ok, 2.5 over, 0 ok
        assert "ok" in by_text["52.12"][0] and "over" in by_text["31.5"][0] and "ok" in by_text["∞"][0]
        assert "ok" in by_text["0.2"][0] and "over" in by_text["2.5"][0] and "ok" in by_text["0"][0]
        assert sum("over" in c["class"] for c in p.cells) == 2
        assert sum("ok" in c["class"] for c in p.cells) == 4
        # columns without a budget are not highlighted; formats apply; None shows as a dash
        assert by_text["3.14"] == [["num"]] and by_text["1.00"] == [["num"]] and by_text["—"] == [[]]
        assert by_text["litert"] == [[]]

    def test_nan_is_over_budget(self):
        page = R.render_html("t", [R.Section("s", table=[{"psnr": float("nan")}], budgets={"psnr": R.Budget(min=1)})])
        assert [c["class"] for c in _parse(page).cells] == [["num", "over"]]

    def test_large_images_downscaled(self):
        big = np.zeros((900, 1600, 3), dtype=np.float32)
        big[:, 800:] = 1.0
        p = _parse(R.render_html("t", [R.Section("s", image_rows=[[("big", torch.from_numpy(big))]])]))
        small = _decode(p.imgs[0]["src"])
        assert small.shape == (432, 768, 3)
        assert "shown at 768×432 of 1600×900" in "".join(p.text)

    def test_grey_and_bad_images(self):
        p = _parse(R.render_html("t", [R.Section("s", image_rows=[[("grey", np.full((5, 6), 0.5))]])]))
        assert _decode(p.imgs[0]["src"]).shape == (5, 6, 3)
        with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
            R.render_html("t", [R.Section("s", image_rows=[[("chw", np.zeros((3, 5, 6)))]])])
        with pytest.raises(ValueError, match="NaN"):
            R.render_html("t", [R.Section("s", image_rows=[[("nan", np.full((2, 2, 3), np.nan))]])])

    def test_bad_sections(self):
        with pytest.raises(ValueError, match="not understood"):
            R.render_html("t", [{"heading": "x", "images": []}])
        with pytest.raises(ValueError, match="heading"):
            R.render_html("t", [{"table": []}])
        with pytest.raises(ValueError, match="budget"):
            R.render_html("t", [R.Section("s", table=[{"a": 1}], budgets={"a": "low"})])

    def test_format_value(self):
        assert R.format_value(None) == "—"
        assert R.format_value(float("-inf")) == "−∞"
        assert R.format_value(np.float32(0.123456)) == "0.1235"
        assert R.format_value(12.0, ".2f") == "12.00"
        assert R.format_value(np.int64(7)) == "7"
        assert R.format_value(True) == "yes"

    def test_tool_versions(self):
        v = R.tool_versions("surely_not_a_module_xyz")
        assert v["numpy"] == np.__version__ and v["surely_not_a_module_xyz"] == "not installed"


class TestAtomicWrite:
    def _failing_write(self, monkeypatch, after_bytes=100):
        real_write = os.write

        def write(fd, data):
            n = real_write(fd, bytes(data[:after_bytes]))
            if n >= after_bytes:
                raise OSError(errno.ENOSPC, "No space left on device")
            return n

        monkeypatch.setattr(os, "write", write)

    def test_failure_mid_write_keeps_previous(self, tmp_path, monkeypatch):
        target = tmp_path / "report.html"
        R.write_html_report(target, "first", [R.Section("a", table=[{"x": 1}])])
        before = target.read_bytes()
        self._failing_write(monkeypatch)
        with pytest.raises(OSError, match="disk full") as ei:
            R.write_html_report(target, "second", _sections())
        assert ei.value.errno == errno.ENOSPC
        monkeypatch.undo()
        assert target.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]

    def test_failure_on_rename_leaves_nothing(self, tmp_path, monkeypatch):
        target = tmp_path / "report.html"

        def boom(src, dst):
            raise PermissionError(errno.EACCES, "denied")

        monkeypatch.setattr(os, "replace", boom)
        with pytest.raises(PermissionError):
            R.write_html_report(target, "t", _sections())
        monkeypatch.undo()
        assert list(tmp_path.iterdir()) == []

    def test_json_report(self, tmp_path):
        out = R.write_json_report(tmp_path / "d" / "r.json", {"psnr": math.inf, "v": np.float32(0.5),
                                                              "rows": [M.compare(np.zeros((4, 4, 3)),
                                                                                 np.zeros((4, 4, 3)))]})
        data = json.loads(out.read_text())
        assert data["psnr"] is None and data["v"] == 0.5 and data["rows"][0]["max_abs"] == 0.0
        assert sorted(p.name for p in out.parent.iterdir()) == ["r.json"]
