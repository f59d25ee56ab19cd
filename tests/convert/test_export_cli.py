"""The exporter around the targets: recipes, policies, the manifest, and ``convert/export.py`` end to end.

Default tests: the recipe table, policies, manifest merging and sidecars, CLI argument errors, a failing unit
(exit status 1, recorded, nothing left behind), and at the CI geometry (512x320, tile 128) the ONNX fp32 export of
every unit, whose artifacts run through ``runtime_py.runtimes.load`` and match the units within 1e-4.

``-m slow``: the matrix — every target x styles 0 and 3 x fp32 / fp16 / the int8 policy / w8 at the CI geometry,
with calibration sets built once per style. ``python -m tests.convert.test_export_cli --out DIR`` runs the same
matrix outside pytest and writes ``DIR/matrix.json`` and ``DIR/matrix.md`` (the per target x unit x precision
table).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from convert import manifest as mf
from convert import recipes
from convert.export import main as export_main
from convert.policy import BUILTIN, Policy, load_policy
from isp.units import ALL_UNITS
from convert.units import UNIT_ORDER, Geometry, build_unit, synthetic_image, units_for
from isp.stages import upsample as up
from isp.registry import BuildConfig

REPO = Path(__file__).resolve().parents[2]
CI_ARGS = ["--size", "512x320", "--tile", "128", "--overlap", "32", "--quiet"]
CI = Geometry(512, 320, 128, 32)
TARGETS = ("onnx", "executorch", "tflite", "coreml")
MATRIX_PRECISIONS = (("fp32", ["--precision", "fp32"]), ("fp16", ["--precision", "fp16"]),
                     ("int8", ["--policy", "int8"]), ("w8", ["--precision", "w8"]))


# ------------------------------------------------------------------------------------------------------ recipes

class TestRecipes:
    def test_every_row_exists_and_unsupported_rows_say_why(self):
        assert len(recipes.RECIPES) == len(ALL_UNITS) * len(recipes.TARGETS) * len(recipes.PRECISIONS)
        for r in recipes.RECIPES.values():
            assert r.supported or len(r.reason) > 20, r
            assert r.module in ("executorch", "litert", "coreml", "onnx")

    def test_fp32_is_supported_everywhere(self):
        assert all(recipes.recipe(u, t, "fp32").supported for u in ALL_UNITS for t in recipes.TARGETS)

    def test_known_unsupported_rows(self):
        assert "regulariser" in recipes.recipe("upsample_fit", "onnx", "fp16").reason
        assert "0.25-3.7" in recipes.recipe("lut3d", "coreml", "int8").reason
        assert not recipes.recipe("upsample_slice", "tflite", "w8").supported

    def test_tflite_is_litert(self):
        assert recipes.recipe("gain", "tflite", "fp16").module == "litert"
        with pytest.raises(ValueError, match="expected one of"):
            recipes.canonical_target("tensorrt")

    @pytest.mark.parametrize("unit", sorted(recipes.SCOPED_INT8))
    def test_mixed_units_quantize_only_their_network(self, unit):
        assert recipes.recipe(unit, "executorch", "int8").quant_scope
        for target in recipes.TARGETS:
            r, _ = recipes.resolve(unit, target, "int8")
            if recipes.target_honours_scope(target):
                assert r.supported and r.options[recipes.SCOPE_OPTION] == list(r.quant_scope)
            else:
                assert not r.supported and recipes.SCOPE_OPTION in r.reason

    def test_cli_options_merge_into_the_row(self):
        r, _ = recipes.resolve("denoise", "executorch", "fp32", backends=("xnnpack", "vulkan"))
        assert r.backends == ("xnnpack", "vulkan")
        r, _ = recipes.resolve("denoise", "coreml", "fp16", options={"compute_units": "cpu_and_ne"})
        assert r.options["compute_units"] == "cpu_and_ne" and r.backends is None


# ------------------------------------------------------------------------------------------------------ policies

class TestPolicy:
    @pytest.mark.parametrize("name", BUILTIN)
    def test_builtin_policies_load(self, name):
        p = Policy.load(name)
        assert p.name == name
        assert p.default == name if name in recipes.PRECISIONS else p.default in recipes.PRECISIONS  # npu: a mix

    def test_int8_policy_falls_back_where_the_quantizer_cannot_be_scoped(self):
        plan = {p.unit: p for p in Policy.uniform("int8").plan(list(UNIT_ORDER), "executorch")}
        assert plan["denoise"].precision == "int8" and plan["enhance"].precision == "int8"
        if not recipes.target_honours_scope("executorch"):
            assert plan["gain"].precision == "fp32" and "quantize_modules" in plan["gain"].warnings[0]
            assert plan["enhance"].precision == "fp32"

    def test_fp16_policy_keeps_the_half_precision_sensitive_units_in_float(self):
        p = Policy.load("fp16")
        float_units = {u for u in UNIT_ORDER if p.requested(u) == "fp32"}
        assert float_units == {"gtm", "chroma", "upsample_fit"}
        assert float_units - {"upsample_fit"} == set(recipes.FP16_POLICY_FLOAT)

    def test_default_int8_policy_is_the_design(self):
        p = Policy.load("int8")
        assert {u: p.requested(u) for u in UNIT_ORDER} == {
            "denoise": "fp16", "color": "fp32", "downsample": "fp32", "gain": "fp32", "gtm": "fp32", "ltm": "fp32",
            "lut3d": "fp32", "chroma": "fp32", "gamma": "fp32", "upsample_fit": "fp32", "upsample_slice": "fp32",
            "enhance": "int8"}

    def test_default_int8_policy_quantizes_the_enhancer_body(self):
        """The int8 policy's int8 unit is the enhancer, scoped to its NAFNet body on every target."""
        from convert.units import NAFNET_BODY
        for target in recipes.TARGETS:
            plan = {p.unit: p for p in Policy.load("int8").plan(list(UNIT_ORDER), target)}
            assert plan["enhance"].precision == "int8", (target, plan["enhance"])
            assert plan["enhance"].recipe.options[recipes.SCOPE_OPTION] == list(NAFNET_BODY)
            assert plan["denoise"].precision == "fp16" and not plan["denoise"].warnings

    def test_uniform_falls_back_to_fp32_with_a_warning(self):
        plan = {p.unit: p for p in Policy.uniform("fp16").plan(list(UNIT_ORDER), "onnx")}
        assert plan["upsample_fit"].precision == "fp32" and plan["upsample_fit"].requested == "fp16"
        assert "regulariser" in plan["upsample_fit"].warnings[0]
        assert plan["denoise"].precision == "fp16" and not plan["denoise"].warnings

    def test_custom_file(self, tmp_path):
        f = tmp_path / "mix.json"
        f.write_text(json.dumps({"default": "fp16", "units": {"denoise": "int8"}}))
        p = load_policy(policy=str(f))
        assert p.requested("denoise") == "int8" and p.requested("gain") == "fp16"
        f.write_text(json.dumps({"default": "fp16", "units": {"denoiser": "int8"}}))
        with pytest.raises(ValueError, match="unknown units"):
            load_policy(policy=str(f))
        with pytest.raises(ValueError, match="not both"):
            load_policy("fp16", str(f))
        with pytest.raises(ValueError, match="one of"):
            Policy.from_json({"default": "int4"})


# ------------------------------------------------------------------------------------------------------ manifest

def _entry(unit, target="onnx", precision="fp32", **kw):
    return {"unit": unit, "target": target, "precision": precision, "file": f"{unit}_{target}_{precision}.x", **kw}


def _run_manifest(artifacts=(), failures=(), **kw):
    base = dict(geometry={"width": 512, "height": 320}, style=0, lut=False, denoiser="s24_lite", weights="w",
                policy={"default": "fp32", "units": {}}, tool_versions={"torch": "x"})
    base.update(kw)
    m = mf.new_manifest(**base)
    m["artifacts"], m["failures"] = list(artifacts), list(failures)
    return m


class TestManifest:
    def test_runs_merge_by_unit_target_precision(self, tmp_path):
        mf.update_manifest(tmp_path, _run_manifest([_entry("gain"), _entry("denoise", bytes=1)]))
        mf.update_manifest(tmp_path, _run_manifest([_entry("denoise", bytes=2), _entry("gain", precision="int8")],
                                                   [{"unit": "ltm", "target": "onnx", "precision": "fp32",
                                                     "error": "boom"}]))
        m = mf.read_manifest(tmp_path)
        assert m["format"] == mf.FORMAT
        keys = [mf.artifact_key(a) for a in m["artifacts"]]
        assert keys == [("denoise", "onnx", "fp32"), ("gain", "onnx", "fp32"), ("gain", "onnx", "int8")]
        assert mf.find_artifact(m, "denoise")["bytes"] == 2
        assert [f["unit"] for f in m["failures"]] == ["ltm"]
        mf.update_manifest(tmp_path, _run_manifest([_entry("ltm")]))
        assert mf.read_manifest(tmp_path)["failures"] == []

    def test_a_run_without_calibration_keeps_the_recorded_one(self, tmp_path):
        calib = {"calib": "/sets/calib", "eval": "/sets/eval"}
        mf.update_manifest(tmp_path, _run_manifest([_entry("gain", precision="int8")], calibration=calib))
        mf.update_manifest(tmp_path, _run_manifest([_entry("ltm")]))                # fp32 only: no calibration
        assert mf.read_manifest(tmp_path)["calibration"] == calib
        other = {"calib": "/other/calib", "eval": "/other/eval"}
        mf.update_manifest(tmp_path, _run_manifest([_entry("gtm", precision="int8")], calibration=other))
        assert mf.read_manifest(tmp_path)["calibration"] == other

    def test_a_different_geometry_does_not_merge(self, tmp_path):
        mf.update_manifest(tmp_path, _run_manifest([_entry("gain")]))
        with pytest.raises(ValueError, match="geometry"):
            mf.update_manifest(tmp_path, _run_manifest([_entry("gain")], geometry={"width": 4000, "height": 3000}))

    def test_sidecar(self, tmp_path):
        pte = tmp_path / "denoise_executorch_fp32.pte"
        pte.write_bytes(b"x")
        mf.write_io_sidecar(pte, [{"name": "raw", "shape": [1, 3, 8, 8], "dtype": "float32", "range": [0, 1]}],
                            [{"name": "denoised_raw", "shape": [1, 3, 8, 8], "dtype": "float32"}])
        side = mf.read_io_sidecar(pte)
        assert side["inputs"] == ["raw"] and side["outputs"] == ["denoised_raw"]     # the runners' io-spec format
        assert side["tensors"]["inputs"] == [{"name": "raw", "shape": [1, 3, 8, 8], "dtype": "float32"}]
        from android_harness.host_runner import read_io_spec
        assert read_io_spec(pte, None) == {"inputs": ["raw"], "outputs": ["denoised_raw"]}
        assert (tmp_path / "denoise_executorch_fp32.pte.io.json").is_file()

    def test_not_a_manifest(self, tmp_path):
        (tmp_path / "manifest.json").write_text('{"format": "other"}')
        with pytest.raises(ValueError, match="format"):
            mf.read_manifest(tmp_path)


# --------------------------------------------------------------------------------------------------------- CLI

class TestCLIErrors:
    @pytest.mark.parametrize("argv,message", [
        (["--target", "onnx", "--stages", "lut3d"], "lut3d exists only"),
        (["--target", "onnx", "--backend", "vulkan"], "--backend"),
        (["--target", "onnx", "--compute-units", "cpu_and_ne"], "--compute-units"),
        (["--target", "onnx", "--size", "510x320"], "multiples of 4"),
        (["--target", "onnx", "--policy", "nope.json"], "no such file"),
    ])
    def test_bad_arguments_exit_2(self, argv, message, tmp_path, capsys, shared_root):
        assert export_main(argv + ["--out", str(tmp_path), "--quiet"]) == 2
        assert message in capsys.readouterr().err

    def test_a_failing_unit_is_named_recorded_and_leaves_nothing(self, tmp_path, capsys, shared_root):
        # the release ships no checkpoint for the large denoiser: building the unit fails
        code = export_main(["--target", "onnx", "--stages", "denoise,color", "--denoiser", "large",
                            "--out", str(tmp_path)] + CI_ARGS)
        err = capsys.readouterr().err
        assert code == 1 and "FAILED denoise -> onnx (fp32)" in err
        m = mf.read_manifest(tmp_path)
        assert [f["unit"] for f in m["failures"]] == ["denoise"]
        assert [a["unit"] for a in m["artifacts"]] == ["color"]
        left = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".manifest"))
        assert left == ["color_onnx_fp32.onnx", "manifest.json"]

    def test_runs_as_a_script(self, shared_root):
        for cmd in ([sys.executable, "convert/export.py", "--help"], [sys.executable, "-m", "convert.export", "-h"]):
            out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
            assert out.returncode == 0 and "--compute-units" in out.stdout, out.stderr


# ------------------------------------------------------------------------------------------- end to end (CI)

def _check_artifact_set(out: Path, style: int, target: str, tol: float | None, weights: Path) -> dict:
    """Every unit of the style is described in the manifest, its file matches size and sha256, and (runnable
    ones) its outputs on fresh inputs match the float32 unit within ``tol`` (absolute, relative for values above
    1; the BGU grid through the slice). Returns unit -> max error."""
    from convert.targets.base import path_sha256, path_size
    from runtime_py.runtimes import load

    m = mf.read_manifest(out)
    cfg = BuildConfig(weights, style=style)
    assert m["geometry"]["quarter"] == [80, 128] and m["style"] == style and m["lut"] == cfg.lut
    errors = {}
    for uid in units_for(cfg.lut):
        entry = mf.find_artifact(m, uid, target=recipes.canonical_target(target))
        assert entry is not None, f"{uid} missing from the manifest; failures: {m['failures']}"
        path = out / entry["file"]
        assert path.exists() and path_size(path) == entry["bytes"] and path_sha256(path) == entry["sha256"]
        unit = build_unit(uid, cfg, CI)
        assert [i["name"] for i in entry["inputs"]] == list(unit.input_names)
        assert [tuple(i["shape"]) for i in entry["inputs"]] == list(unit.input_shapes)
        if path.suffix == ".pte":
            assert mf.read_io_sidecar(path)["outputs"] == list(unit.output_names)
        runner = load(path, input_names=unit.input_names, output_names=unit.output_names)
        if not entry["runnable_here"]:          # Core ML on Linux: structural check (names, shapes, op types)
            assert [tuple(i.shape) for i in runner.inputs] == list(unit.input_shapes)
            assert getattr(runner, "op_types", {"op": 1})
            continue
        if tol is None:
            continue
        inputs = unit.example_inputs(seed=7)
        got = runner.run([t.numpy() for t in inputs])
        want = unit(*inputs)
        if uid == "upsample_fit":
            # the grid of an ill-conditioned cell amplifies rounding (|coefficient| up to ~20): compare what the
            # grid is for, the sliced image
            guide = synthetic_image((1, 3, CI.height, CI.width), seed=5)
            got = [up.bgu_slice_mobile(torch.from_numpy(got[0]), guide).numpy()]
            want = (up.bgu_slice_mobile(want[0], guide),)
        # absolute error on [0, 1] data, relative above 1 (parameter maps such as ltm_param reach ~5)
        errors[uid] = max(float((np.abs(g - w.numpy()) / np.maximum(1.0, np.abs(w.numpy()))).max())
                          for g, w in zip(got, want))
    if tol is not None:
        bad = {u: e for u, e in errors.items() if e > tol}
        assert not bad, f"artifacts differ from the units by more than {tol}: {bad}"
    return errors


def test_onnx_fp32_all_units_ci_geometry(tmp_path, weights_dir):
    """The CI budget run: every style-0 unit to ONNX fp32 (about 1.5 min on 2 cores)."""
    t0 = time.perf_counter()
    code = export_main(["--target", "onnx", "--precision", "fp32", "--stages", "all", "--out", str(tmp_path)]
                       + CI_ARGS)
    seconds = time.perf_counter() - t0
    assert code == 0
    errors = _check_artifact_set(tmp_path, 0, "onnx", 1e-4, weights_dir)
    print(f"\nonnx fp32, {len(errors)} units in {seconds:.0f} s; max |artifact - unit|: "
          + ", ".join(f"{u} {e:.1e}" for u, e in errors.items()))


# ------------------------------------------------------------------------------------------------ slow matrix

@pytest.fixture(scope="session")
def calibration_sets(tmp_path_factory, shared_root):
    """One small calibration set per style at the CI geometry (built once per session)."""
    root = tmp_path_factory.mktemp("calibration")
    built = {}

    def get(style: int) -> Path:
        if style not in built:
            out = root / f"s{style}"
            subprocess.run([sys.executable, "-m", "calibration", "build", "--size", "512x320", "--tile", "128",
                            "--count", "8", "--eval-count", "2", "--style", str(style), "--out", str(out),
                            "--quiet"], cwd=REPO, check=True, timeout=1800)
            built[style] = out
        return built[style]
    return get


@pytest.mark.slow
@pytest.mark.parametrize("precision,flags", MATRIX_PRECISIONS, ids=[p for p, _ in MATRIX_PRECISIONS])
@pytest.mark.parametrize("style", (0, 3))
@pytest.mark.parametrize("target", TARGETS)
def test_matrix(target, style, precision, flags, tmp_path, calibration_sets, weights_dir):
    out = tmp_path / f"{target}_s{style}_{precision}"
    code = export_main(["--target", target, "--stages", "all", "--style", str(style), "--out", str(out),
                        "--calibration", str(calibration_sets(style))] + flags + CI_ARGS)
    m = mf.read_manifest(out)
    assert code == 0, f"failures: {m['failures']}"
    _check_artifact_set(out, style, target, 1e-4 if precision == "fp32" else None, weights_dir)


# ------------------------------------------------------------------------------------- matrix outside pytest

def _matrix_rows(out: Path, target: str, style: int, label: str, seconds: float) -> list[dict]:
    m = mf.read_manifest(out)
    rows = []
    for a in m["artifacts"]:
        v = a.get("verify", {})
        cov = a["op_coverage"]
        rows.append({"target": a["target"], "style": style, "policy": label, "unit": a["unit"],
                     "precision": a["precision"], "exported": True, "file": a["file"], "bytes": a["bytes"],
                     "delegated": cov["delegated_ops"], "total": cov["total_ops"], "delegate": cov["delegate"],
                     "runs_here": bool(v.get("ran")), "max_abs_err": v.get("max_abs_err"),
                     "psnr_db": v.get("psnr_db"), "verify_inputs": v.get("inputs"),
                     "export_seconds": a["export_seconds"], "warnings": a["warnings"]})
    for f in m["failures"]:
        rows.append({"target": f["target"], "style": style, "policy": label, "unit": f["unit"],
                     "precision": f["precision"], "exported": False, "error": f["error"]})
    rows.append({"target": target, "style": style, "policy": label, "unit": "(run)", "seconds": round(seconds, 1)})
    return rows


def _markdown(rows: list[dict]) -> str:
    lines = ["| target | style | policy | unit | precision | exported | delegated/total | runs here | max err | "
             "export s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["unit"] == "(run)":
            lines.append(f"| {r['target']} | {r['style']} | {r['policy']} | *whole run* | | | | | | "
                         f"{r['seconds']} |")
        elif r["exported"]:
            err = f"{r['max_abs_err']:.2e}" if r["max_abs_err"] is not None else "–"
            lines.append(f"| {r['target']} | {r['style']} | {r['policy']} | {r['unit']} | {r['precision']} | yes | "
                         f"{r['delegated']}/{r['total']} | {'yes' if r['runs_here'] else 'no'} | {err} | "
                         f"{r['export_seconds']:.1f} |")
        else:
            lines.append(f"| {r['target']} | {r['style']} | {r['policy']} | {r['unit']} | {r['precision']} | "
                         f"**no**: {r['error'][:160]} | | | | |")
    return "\n".join(lines)


def run_matrix(out: Path, targets=TARGETS, styles=(0, 3), precisions=MATRIX_PRECISIONS,
               calibration: dict[int, Path] | None = None) -> list[dict]:
    rows: list[dict] = []
    for style in styles:
        cal = (calibration or {}).get(style)
        if cal is None:
            cal = out / f"calibration_s{style}"
            if not (cal / "calib" / "set.json").is_file():
                subprocess.run([sys.executable, "-m", "calibration", "build", "--size", "512x320", "--tile", "128",
                                "--count", "8", "--eval-count", "2", "--style", str(style), "--out", str(cal),
                                "--quiet", "--force"], cwd=REPO, check=True)
        for target in targets:
            for label, flags in precisions:
                dest = out / f"{target}_s{style}_{label}"
                t0 = time.perf_counter()
                code = export_main(["--target", target, "--stages", "all", "--style", str(style), "--out",
                                    str(dest), "--calibration", str(cal)] + list(flags) + CI_ARGS)
                rows += _matrix_rows(dest, target, style, label, time.perf_counter() - t0)
                print(f"{target} style {style} {label}: exit {code} in {time.perf_counter() - t0:.0f} s",
                      file=sys.stderr, flush=True)
                (out / "matrix.json").write_text(json.dumps(rows, indent=1))
                (out / "matrix.md").write_text(_markdown(rows) + "\n")
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="export matrix at the CI geometry -> DIR/matrix.json, DIR/matrix.md")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--styles", default="0,3")
    ap.add_argument("--precisions", default=",".join(p for p, _ in MATRIX_PRECISIONS))
    ap.add_argument("--calibration", action="append", default=[], metavar="STYLE=DIR",
                    help="prebuilt calibration build output per style")
    a = ap.parse_args()
    torch.set_num_threads(2)
    cal = {int(k): Path(v) for k, v in (c.split("=", 1) for c in a.calibration)}
    want = set(a.precisions.split(","))
    run_matrix(a.out, tuple(a.targets.split(",")), tuple(int(s) for s in a.styles.split(",")),
               tuple(p for p in MATRIX_PRECISIONS if p[0] in want), cal)
