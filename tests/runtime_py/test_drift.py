"""runtime_py.drift: per-unit and end-to-end drift of the ONNX fp32 set (512x320, tile 128) on a shipped DNG, the
JSON + HTML reports, budgets (ci, files, violations and exit status), tampered artifacts, Core ML listing, and the
evaluation-set path. The project budgets on every runnable target are in ``test_budget.py``."""
from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest

from isp import paths
from runtime_py import drift
from runtime_py.artifacts import file_sha256

from .artifact_sets import FRAME, copy_set, onnx_set  # noqa: F401  (fixtures)

IMPOSSIBLE = {"unit": {"fp32": {"psnr_min": 1000}}, "end_to_end": {"fp32": {"de2000_max_max": 0.0}}}


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.headings, self.imgs, self.links, self._h = [], [], [], False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("h1", "h2"):
            self._h = True
            self.headings.append("")
        elif tag == "img":
            self.imgs.append(a.get("src", ""))
        elif tag in ("script", "link"):
            self.links.append(tag)

    def handle_endtag(self, tag):
        if tag in ("h1", "h2"):
            self._h = False

    def handle_data(self, data):
        if self._h:
            self.headings[-1] += data


@pytest.fixture(scope="module")
def impossible_run(onnx_set, tmp_path_factory):
    """One CLI run on the whole set with an impossible budget file: exit 1, reports written anyway."""
    tmp = tmp_path_factory.mktemp("drift")
    budget = tmp / "budget.json"
    budget.write_text(json.dumps(IMPOSSIBLE))
    out_json, out_html = tmp / "drift.json", tmp / "drift.html"
    import contextlib
    import io
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = drift.main(["--artifacts", str(onnx_set), "--dng", str(paths.dng_dir() / FRAME), "--json",
                           str(out_json), "--html", str(out_html), "--budget", str(budget), "--max-tiles", "4",
                           "--quiet"])
    return code, err.getvalue(), json.loads(out_json.read_text()), out_html.read_text()


def test_impossible_budget_fails_naming_unit_and_target(impossible_run):
    code, err, report, _page = impossible_run
    assert code == 1
    assert not report["passed"] and report["budget"]["name"] == "budget.json"
    assert "unit denoise (onnx/fp32): denoised_raw [frame] psnr" in err and "< 1000 dB" in err
    assert "unit upsample_fit (onnx/fp32): srgb_upsampled (sliced)" in err
    assert "bgu_grid" not in err                                   # the raw grid is reported, not budgeted
    assert "end to end onnx fp32: srgb de2000_max" in err


def test_report_contents_and_ci_budget(impossible_run):
    _code, _err, report, _page = impossible_run
    assert report["format"] == "isp-drift/1" and report["set"]["geometry"]["tile_shape"] == [128, 128]
    assert [f["name"] for f in report["frames"]] == [FRAME] and report["frames"][0]["crop"] == [9, 44, 320, 512]
    units = {u["unit"]: u for u in report["units"]}
    assert list(units) == ["denoise", "color", "downsample", "gain", "gtm", "ltm", "chroma", "gamma",
                           "upsample_fit", "upsample_slice", "enhance"]
    assert all(u["status"] == "ok" and u["target"] == "onnx" for u in units.values())
    scopes = {(s["output"], s["scope"]): s for s in units["denoise"]["summary"]}
    assert scopes[("denoised_raw", "tiles")]["n"] == 4 and scopes[("denoised_raw", "frame")]["n"] == 1
    assert {s["output"] for s in units["gain"]["summary"]} == {"lsrgb_gain", "gain_param"}
    for u in units.values():                                       # fp32: every budgeted output >= 60 dB
        for s in u["summary"]:
            if s["budgeted"] and s["psnr"] is not None:
                assert s["psnr"] >= 60.0, (u["unit"], s)
    fit = {s["output"]: s for s in units["upsample_fit"]["summary"]}
    assert not fit["bgu_grid"]["budgeted"] and fit["srgb_upsampled (sliced)"]["budgeted"]
    (e2e,) = report["end_to_end"]
    assert e2e["name"] == "onnx fp32" and e2e["class"] == "fp32" and e2e["status"] == "ok"
    assert e2e["summary"]["psnr"] >= 60.0 and e2e["summary"]["de2000_mean"] < 0.05
    frame = e2e["frames"][0]
    assert set(frame["timings"]) == set(units) and frame["timings"]["denoise"]["calls"] == 15
    assert frame["chain"]["lsrgb"]["kind"] == "linear" and frame["chain"]["gain_param"]["kind"] == "data"
    # the same numbers are within the project's budgets
    assert drift.check_budgets(report, drift.load_budgets("ci")) == []


def test_html_page(impossible_run):
    _code, _err, _report, page = impossible_run
    p = _Page()
    p.feed(page)
    assert p.headings[0].startswith("Drift:") and "budget violation(s)" in p.headings[1]
    assert any(h.startswith("End to end: artifact pipeline vs reference") for h in p.headings)
    assert any(h.startswith("Per unit:") for h in p.headings)
    # reference | artifact | heat map for 1 end-to-end chain and the 11 units' image outputs
    assert len(p.imgs) == 3 * (1 + 11) and all(src.startswith("data:image/png;base64,") for src in p.imgs)
    assert not p.links                                             # self-contained
    assert "FAIL:" in page and "ΔE00" in page


def test_tampered_artifact_fails_and_is_named(onnx_set, tmp_path, capsys):
    m = json.loads((onnx_set / "manifest.json").read_text())
    m["artifacts"] = [a for a in m["artifacts"] if a["unit"] in ("gain", "gtm")]      # keep the run short
    folder = copy_set(onnx_set, tmp_path / "tampered", copy=("gain_onnx_fp32.onnx",), manifest=m)
    with open(folder / "gain_onnx_fp32.onnx", "ab") as fh:
        fh.write(b"\0")
    code = drift.main(["--artifacts", str(folder), "--dng", str(paths.dng_dir() / FRAME), "--budget", "ci",
                       "--json", str(tmp_path / "d.json"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert "unit gain (onnx/fp32):" in err and "sha256" in err and "differs from the manifest" in err
    assert "end to end onnx fp32:" in err and "unit denoise" in err        # the chain cannot be built
    report = json.loads((tmp_path / "d.json").read_text())
    assert {u["unit"]: u["status"] for u in report["units"]} == {"gain": "error", "gtm": "ok"}


class _StubCheck:
    """What runtime_py.runtimes.CoreMLStructuralCheck.summary() gives (importing coremltools takes ~30 s here)."""

    def summary(self):
        return {"model_type": "mlProgram", "spec_version": 9, "inputs": [], "outputs": [],
                "op_types": {"const": 10, "mul": 2}, "compute_precision": "FLOAT16", "compute_units": "ALL",
                "tensor_dtypes": {"FLOAT16": 2}}


def test_coreml_is_listed_not_run(onnx_set, tmp_path, monkeypatch):
    from runtime_py.artifacts import Artifact
    real_load = Artifact.load
    monkeypatch.setattr(Artifact, "load", lambda self, *a, **kw: _StubCheck() if self.family == "coreml"
                        else real_load(self, *a, **kw))
    m = json.loads((onnx_set / "manifest.json").read_text())
    m["artifacts"] = [a for a in m["artifacts"] if a["unit"] == "gamma"]
    folder = copy_set(onnx_set, tmp_path / "coreml", manifest=m)
    pkg = folder / "gamma_coreml_fp16.mlpackage"
    pkg.mkdir()
    (pkg / "Manifest.json").write_text("{}")
    entry = dict(m["artifacts"][0], target="coreml", precision="fp16", backend="all", file=pkg.name,
                 sha256=file_sha256(pkg), runnable_here=False)
    m["artifacts"].append(entry)
    (folder / "manifest.json").write_text(json.dumps(m))
    result = drift.run_drift(folder, dngs=[paths.dng_dir() / FRAME], budgets=drift.load_budgets("ci"))
    (nr,) = result.report["not_run"]
    assert (nr["unit"], nr["target"], nr["status"]) == ("gamma", "coreml", "not run on this OS")
    assert nr["structural"]["compute_precision"] == "FLOAT16" and nr["structural"]["op_count"] == 12
    assert "not run on this OS" in nr["reason"]
    from runtime_py.report import render_html
    page = render_html("t", drift.html_sections(result))
    assert "Not run on this host" in page and "FLOAT16" in page
    assert [u["target"] for u in result.report["units"]] == ["onnx"]
    # Core ML is not a failure; the missing units of this partial set are
    assert result.report["units"][0]["status"] == "ok"
    assert result.violations and all(v.startswith("end to end onnx") for v in result.violations), result.violations


def test_budget_files(tmp_path):
    assert drift.load_budgets("none") is None and drift.load_budgets("ci")["unit"]["fp32"]["psnr_min"] == 60.0
    f = tmp_path / "b.json"
    f.write_text(json.dumps({"end_to_end": {"int8": {"psnr_min": 40, "de2000_mean_max": 0.5}}}))
    assert drift.load_budgets(f)["end_to_end"]["int8"] == {"psnr_min": 40, "de2000_mean_max": 0.5}
    for bad, msg in (({"units": {}}, "expected"), ({"unit": {"int4": {}}}, "unknown precision"),
                     ({"unit": {"fp32": {"psnr": 60}}}, "psnr_min")):
        f.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=msg):
            drift.load_budgets(f)
    with pytest.raises(ValueError, match="no such file"):
        drift.load_budgets(tmp_path / "nope.json")
    assert drift.main(["--artifacts", str(tmp_path), "--dng", "x.dng", "--budget", str(tmp_path / "nope")]) == 2


def test_violations_by_chain_class():
    report = {"units": [], "end_to_end": [
        {"name": "onnx int8+fp32", "status": "ok", "class": "int8",
         "frames": [{"frame": "f", "srgb": {"psnr": 39.0, "de2000_mean": 1.2}}]},
        {"name": "onnx fp16+fp32", "status": "ok", "class": "fp16",
         "frames": [{"frame": "f", "srgb": {"psnr": 44.0, "de2000_mean": 0.1}}]},
        {"name": "litert fp32", "status": "error", "class": None, "error": "did not run: boom", "frames": []}]}
    v = drift.check_budgets(report, drift.load_budgets("ci"))
    assert v == ["end to end onnx int8+fp32: srgb de2000_mean 1.2 > 1 on f (budget int8)",
                 "end to end onnx fp16+fp32: srgb psnr 44 dB < 45 dB on f (budget fp16)",
                 "end to end litert fp32: did not run: boom"]


def test_npu_budget_is_stricter_than_ci():
    """``--budget npu`` (the npu policy's; CI: test_budget_npu.py): an int8 chain within the ci budget
    misses it on both limits."""
    report = {"units": [], "end_to_end": [{"name": "tflite int8+fp32", "status": "ok", "class": "int8",
                                           "frames": [{"frame": "f", "srgb": {"psnr": 39.5, "de2000_mean": 0.7}}]}]}
    assert drift.check_budgets(report, drift.load_budgets("ci")) == []
    assert drift.load_budgets("npu")["name"] == "npu"
    assert drift.check_budgets(report, drift.load_budgets("npu")) == [
        "end to end tflite int8+fp32: srgb psnr 39.5 dB < 40 dB on f (budget int8)",
        "end to end tflite int8+fp32: srgb de2000_mean 0.7 > 0.5 on f (budget int8)"]


def test_eval_set_path(onnx_set, tmp_path):
    """Frames, stored tiles and quarter-frame rows from an evaluation set (a subset of units keeps it short)."""
    from calibration import build_sets
    from calibration.augment import Geometry

    sets = build_sets(None, tmp_path / "sets", geometry=Geometry(512, 320, 128, 32), count=1, eval_count=1,
                      tiles_per_frame=2, progress=False)
    m = json.loads((onnx_set / "manifest.json").read_text())
    m["artifacts"] = [a for a in m["artifacts"] if a["unit"] in ("denoise", "gain", "upsample_fit", "upsample_slice")]
    folder = copy_set(onnx_set, tmp_path / "subset", manifest=m)
    result = drift.run_drift(folder, eval_set=sets["eval"], budgets=drift.load_budgets("ci"))
    rep = result.report
    assert rep["frames"][0]["kind"] == "eval-set" and len(rep["frames"]) == 1
    (repro,) = rep["reference"]["eval_set_reproducibility"]
    assert repro["psnr"] is None or repro["psnr"] > 80            # the set was captured by the same reference
    units = {u["unit"]: u for u in rep["units"]}
    assert all(u["status"] == "ok" for u in units.values()), units
    tiles = [s for s in units["upsample_slice"]["summary"] if s["scope"] == "tiles"]
    assert tiles and tiles[0]["n"] == 2 and tiles[0]["psnr"] >= 60.0  # the stored tiles, sliced from stored inputs
    assert [s["n"] for s in units["denoise"]["summary"] if s["scope"] == "tiles"] == [2]
    assert all(s["psnr"] >= 60.0 for s in units["gain"]["summary"])
    unit_violations = [v for v in result.violations if v.startswith("unit ")]
    assert unit_violations == []
