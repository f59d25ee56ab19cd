"""runtime_py.artifacts: manifest reading, selection and mixing, and the errors (missing files, sha256, units,
geometry, Core ML on Linux). Uses the exported ONNX fp32 set at 512x320 (see artifact_sets.py); extra entries for
other targets/precisions are added to a copy of its manifest (they point at copies of real files; selection never
loads a runner, so only their names, shapes and digests matter)."""
from __future__ import annotations

import copy
import json
import platform
import shutil

import pytest

from runtime_py.artifacts import (ArtifactIntegrityError, ArtifactSet, FrameGeometry, NotRunnableError,
                                  UnitMissingError, file_sha256, normalize_target, parse_selection)

from .artifact_sets import copy_set, onnx_set  # noqa: F401  (fixtures)

UNITS_STYLE0 = ["denoise", "color", "downsample", "gain", "gtm", "ltm", "chroma", "gamma", "upsample_fit",
                "upsample_slice", "enhance"]


def _manifest(src) -> dict:
    return json.loads((src / "manifest.json").read_text())


def _entry(m: dict, unit: str, target: str = "onnx", precision: str = "fp32") -> dict:
    return next(a for a in m["artifacts"] if (a["unit"], a["target"], a["precision"]) == (unit, target, precision))


def _add_variant(folder, m: dict, unit: str, target: str, precision: str, ext: str) -> dict:
    """A new entry for ``unit`` with its own file (a copy of the ONNX one, renamed) and a matching digest."""
    base = _entry(m, unit)
    name = f"{unit}_{target}_{precision}.{ext}"
    shutil.copy2((folder / base["file"]).resolve(), folder / name)
    e = copy.deepcopy(base)
    e.update(target=target, precision=precision, file=name, sha256=file_sha256(folder / name),
             backend={"executorch": "xnnpack", "litert": "cpu"}.get(target, e.get("backend")))
    m["artifacts"].append(e)
    return e


# --------------------------------------------------------------------------------------------------- opening

def test_open_reads_geometry_and_entries(onnx_set):
    aset = ArtifactSet.open(onnx_set)
    g = aset.geometry
    assert (g.width, g.height, g.tile, g.overlap) == (512, 320, 128, 32)
    assert g.quarter == (80, 128) and g.tile_shape == (128, 128) and g.grid == (16, 5, 8)
    assert aset.required_units == tuple(UNITS_STYLE0) and aset.targets == ["onnx"]
    assert aset.style == 0 and not aset.lut and aset.denoiser == "s24_lite"
    assert ArtifactSet.open(onnx_set / "manifest.json").root == onnx_set


def test_missing_folder_and_manifest(tmp_path):
    with pytest.raises(FileNotFoundError, match="artifact folder not found"):
        ArtifactSet.open(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        ArtifactSet.open(tmp_path)


def test_other_format_and_bad_geometry(onnx_set, tmp_path):
    m = _manifest(onnx_set)
    bad = copy_set(onnx_set, tmp_path / "fmt", manifest={**m, "format": "something/2"})
    with pytest.raises(ValueError, match="isp-artifacts/1"):
        ArtifactSet.open(bad)
    geo = copy_set(onnx_set, tmp_path / "geo", manifest={**m, "geometry": {**m["geometry"], "quarter": [128, 80]}})
    with pytest.raises(ValueError, match=r"quarter \[128, 80\] does not match"):
        ArtifactSet.open(geo)


def test_geometry_validation():
    with pytest.raises(ValueError, match="multiples of 4"):
        FrameGeometry(514, 320, 128, 32)
    with pytest.raises(ValueError, match="overlap < tile"):
        FrameGeometry(512, 320, 128, 128)
    assert FrameGeometry(512, 320, 1024, 32).tile_shape == (320, 512)      # a tile larger than the frame is clipped


# --------------------------------------------------------------------------------------------------- selection

def test_default_selection_is_lazy(onnx_set):
    sel = ArtifactSet.open(onnx_set).select()
    assert list(sel) == UNITS_STYLE0
    assert all(a.target == "onnx" and a.precision == "fp32" for a in sel.values())
    assert sel.label == "onnx fp32" and sel.precision_class == "fp32"
    assert sel._runners == {}                                   # nothing loaded until used
    runner = sel.runner("gain")
    assert runner.input_names == ["lsrgb_ds"] and runner.output_names == ["lsrgb_gain", "gain_param"]
    assert sel.runner("gain") is runner


def test_mixing_targets_and_precisions(onnx_set, tmp_path):
    folder = copy_set(onnx_set, tmp_path / "mix")
    m = _manifest(onnx_set)
    _add_variant(folder, m, "denoise", "onnx", "int8", "onnx")
    _add_variant(folder, m, "enhance", "onnx", "fp16", "onnx")
    _add_variant(folder, m, "denoise", "litert", "fp32", "tflite")
    _add_variant(folder, m, "gain", "executorch", "fp32", "pte")
    (folder / "manifest.json").write_text(json.dumps(m))
    aset = ArtifactSet.open(folder)

    # precision preference: int8 where present, fp32 elsewhere -> an int8-class chain
    sel = aset.select(prefer=["onnx"], precision_prefer=["int8", "fp16", "fp32"])
    assert sel["denoise"].precision == "int8" and sel["enhance"].precision == "fp16"
    assert sel["color"].precision == "fp32" and sel.precision_class == "int8"
    assert sel.label == "onnx int8+fp16+fp32"
    # an absent precision in a strict list is a clear error naming the unit and what the set has
    with pytest.raises(UnitMissingError, match=r"unit color: no artifact .* precisions int8; the set has onnx/fp32"):
        aset.select(prefer=["onnx"], precision_prefer=["int8"])
    # target preference ("tflite" is LiteRT): first target that has the unit wins, target before precision
    sel = aset.select(prefer=["tflite", "executorch", "onnx"])
    assert sel["denoise"].target == "litert" and sel["gain"].target == "executorch"
    assert sel["color"].target == "onnx"
    assert sel.label == "onnx fp32 (+litert: denoise; executorch: gain)"
    # explicit choice wins over preferences; the rest follows the preferences
    sel = aset.select(prefer=["onnx"], explicit={"denoise": ("litert", "fp32"), "enhance": ("ort", "fp16")})
    assert (sel["denoise"].target, sel["enhance"].precision, sel["gtm"].target) == ("litert", "fp16", "onnx")
    assert sel.as_dict()["denoise"] == ["litert", "fp32"]
    with pytest.raises(UnitMissingError, match=r"unit enhance: no litert/int8 artifact; the set has"):
        aset.select(explicit={"enhance": ("litert", "int8")})
    with pytest.raises(ValueError, match="unknown unit"):
        aset.select(explicit={"sharpen": ("onnx", "fp32")})


def test_default_precision_follows_the_policy(onnx_set, tmp_path):
    folder = copy_set(onnx_set, tmp_path / "policy")
    m = _manifest(onnx_set)
    _add_variant(folder, m, "denoise", "onnx", "int8", "onnx")
    _add_variant(folder, m, "color", "onnx", "int8", "onnx")
    m["policy"] = {"default": "int8", "units": {"color": "fp32"}}
    (folder / "manifest.json").write_text(json.dumps(m))
    sel = ArtifactSet.open(folder).select()
    assert sel["denoise"].precision == "int8" and sel["color"].precision == "fp32"


def test_parse_selection_and_targets():
    assert parse_selection("denoise=onnx:int8, enhance=tflite:fp16") == {"denoise": ("onnx", "int8"),
                                                                         "enhance": ("litert", "fp16")}
    with pytest.raises(ValueError, match="UNIT=TARGET:PRECISION"):
        parse_selection("denoise=onnx")
    with pytest.raises(ValueError, match="unknown precision"):
        parse_selection("denoise=onnx:int4")
    assert normalize_target("pte") == "executorch" and normalize_target("executorch-vulkan") == "executorch-vulkan"
    with pytest.raises(ValueError, match="unknown target"):
        normalize_target("tensorrt")


# ---------------------------------------------------------------------------------------------------- errors

def test_missing_artifact_file(onnx_set, tmp_path):
    folder = copy_set(onnx_set, tmp_path / "missing")
    (folder / "gtm_onnx_fp32.onnx").unlink()
    with pytest.raises(FileNotFoundError, match=r"artifact file missing: .*gtm_onnx_fp32.onnx \(gtm onnx/fp32"):
        ArtifactSet.open(folder).select()


def test_sha256_mismatch(onnx_set, tmp_path):
    folder = copy_set(onnx_set, tmp_path / "tampered", copy=("gain_onnx_fp32.onnx",))
    with open(folder / "gain_onnx_fp32.onnx", "ab") as fh:
        fh.write(b"\0")
    aset = ArtifactSet.open(folder)
    with pytest.raises(ArtifactIntegrityError, match=r"gain_onnx_fp32.onnx: sha256 .* differs from the manifest"):
        aset.select()
    assert aset.select(verify=False)["gain"].file == "gain_onnx_fp32.onnx"


def test_unit_missing(onnx_set, tmp_path):
    m = _manifest(onnx_set)
    m["artifacts"] = [a for a in m["artifacts"] if a["unit"] != "enhance"]
    m["failures"] = [{"unit": "enhance", "target": "onnx", "precision": "fp32", "error": "boom"}]
    folder = copy_set(onnx_set, tmp_path / "no-enhance", manifest=m)
    with pytest.raises(UnitMissingError, match=r"unit enhance: .*no artifact for enhance \(export failures: "
                                               r"onnx/fp32: boom\)"):
        ArtifactSet.open(folder).select()


def test_shapes_must_fit_the_geometry(onnx_set, tmp_path):
    m = _manifest(onnx_set)
    _entry(m, "denoise")["inputs"][0]["shape"] = [1, 3, 64, 64]
    folder = copy_set(onnx_set, tmp_path / "shape", manifest=m)
    with pytest.raises(ValueError, match=r"denoise_onnx_fp32.onnx .*input 'raw' has shape \(1, 3, 64, 64\), the "
                                         r"geometry 512x320 .* needs \(1, 3, 128, 128\)"):
        ArtifactSet.open(folder).select()


def test_runner_must_match_the_manifest(onnx_set, tmp_path):
    m = _manifest(onnx_set)
    e = _entry(m, "gain")
    e["file"] = "gtm_onnx_fp32.onnx"                     # a real model, but not the one the entry describes
    e["sha256"] = _entry(m, "gtm")["sha256"]
    folder = copy_set(onnx_set, tmp_path / "swap", manifest=m)
    sel = ArtifactSet.open(folder).select()
    with pytest.raises(ValueError, match="gtm_onnx_fp32.onnx"):
        sel.runner("gain")


def test_coreml_is_not_run_on_linux(onnx_set, tmp_path):
    if platform.system() == "Darwin":
        pytest.skip("checks the non-macOS message")
    folder = copy_set(onnx_set, tmp_path / "coreml")
    m = _manifest(onnx_set)
    pkg = folder / "denoise_coreml_fp32.mlpackage"
    (pkg / "Data").mkdir(parents=True)
    (pkg / "Data" / "model.mlmodel").write_bytes(b"stand-in")
    e = copy.deepcopy(_entry(m, "denoise"))
    e.update(target="coreml", backend="all", file=pkg.name, sha256=file_sha256(pkg), runnable_here=False)
    m["artifacts"].append(e)
    (folder / "manifest.json").write_text(json.dumps(m))
    aset = ArtifactSet.open(folder)
    assert aset.select()["denoise"].target == "onnx"                 # default preferences never pick Core ML
    for kwargs in ({"prefer": ["coreml", "onnx"]}, {"explicit": {"denoise": ("coreml", "fp32")}}):
        with pytest.raises(NotRunnableError, match=r"unit denoise: .*Core ML artifacts are not run on this OS"):
            aset.select(**kwargs)


def test_secondary_executorch_backend_is_passed_over(onnx_set, tmp_path):
    folder = copy_set(onnx_set, tmp_path / "vulkan")
    m = _manifest(onnx_set)
    e = _add_variant(folder, m, "enhance", "executorch-vulkan", "fp32", "pte")
    e["backend"] = "vulkan"
    (folder / "manifest.json").write_text(json.dumps(m))
    aset = ArtifactSet.open(folder)
    assert aset.targets == ["executorch-vulkan", "onnx"]
    assert aset.select(prefer=["executorch-vulkan", "onnx"])["enhance"].target == "onnx"
    with pytest.raises(NotRunnableError, match="delegated to vulkan"):
        aset.select(prefer=["executorch-vulkan"], units=["enhance"])


def test_onnx_int8_runs_as_emulation_when_flagged(onnx_set, tmp_path):
    folder = copy_set(onnx_set, tmp_path / "int8")
    m = _manifest(onnx_set)
    e = _add_variant(folder, m, "gain", "onnx", "int8", "onnx")
    e["details"] = {"host_int8_caveat": "this x86 CPU has no VNNI"}
    _add_variant(folder, m, "gtm", "onnx", "int8", "onnx")            # not flagged: the optimized kernels
    (folder / "manifest.json").write_text(json.dumps(m))
    aset = ArtifactSet.open(folder)
    gain, gtm = aset.find("gain", "onnx", "int8"), aset.find("gtm", "onnx", "int8")
    assert gain.load_options() == {"optimization": "disable"} and gain.load_options("host") == {}
    assert gtm.load_options() == {} and aset.find("gain", "onnx", "fp32").load_options() == {}
    sel = aset.select(precision_prefer=["int8", "fp32"], ort_int8="host")
    assert sel.ort_int8 == "host" and sel["gain"].precision == "int8"
    with pytest.raises(ValueError, match="ort_int8"):
        aset.select(ort_int8="fast")
