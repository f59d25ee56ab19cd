"""manifest.json is checked against its schema when read: a malformed entry names the file and the field."""
from __future__ import annotations

import copy
import json

import pytest

from convert.manifest import read_manifest
from convert.manifest_schema import ListOf, Obj, OneOf, validate

GOOD = {"format": "isp-artifacts/1", "geometry": {"width": 512, "height": 320, "quarter": [80, 128], "tile": 128,
                                                  "overlap": 32},
        "style": 0, "lut": False, "denoiser": "s24_lite",
        "artifacts": [{"unit": "gain", "target": "onnx", "precision": "fp32", "file": "gain_onnx_fp32.onnx",
                       "sha256": None, "inputs": [{"name": "lsrgb_ds", "shape": [1, 3, 80, 128], "dtype": "float32",
                                                   "range": [0, 1], "layout": "NCHW"}],
                       "outputs": [{"name": "lsrgb_gain", "shape": [1, 3, 80, 128]}], "tiling": {"mode": "quarter"}}],
        "failures": [{"unit": "gtm", "target": "onnx", "precision": "int8", "error": "boom"}]}


def _write(tmp_path, data):
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    return tmp_path / "manifest.json"


def test_a_good_manifest_reads(tmp_path):
    m = read_manifest(_write(tmp_path, GOOD))
    assert m["artifacts"][0]["unit"] == "gain"


@pytest.mark.parametrize("edit,field", [
    (lambda m: m["artifacts"][0]["inputs"][0]["shape"].__setitem__(2, "80"), r"artifacts\[0\]\.inputs\[0\]\.shape\[2\]"),
    (lambda m: m["artifacts"][0].pop("file"), r"artifacts\[0\]\.file: missing"),
    (lambda m: m["artifacts"][0].__setitem__("unit", "sharpen"), r"artifacts\[0\]\.unit: expected one of denoise"),
    (lambda m: m["artifacts"][0].__setitem__("precision", "int4"), r"artifacts\[0\]\.precision"),
    (lambda m: m["geometry"].__setitem__("width", 512.5), r"geometry\.width: expected an integer"),
    (lambda m: m.__setitem__("lut", "no"), r"lut: expected true or false"),
    (lambda m: m.__setitem__("artifacts", {}), r"artifacts: expected a list"),
    (lambda m: m["artifacts"][0]["outputs"][0].__setitem__("name", None), r"outputs\[0\]\.name: expected a string"),
])
def test_a_malformed_entry_names_the_file_and_the_field(tmp_path, edit, field):
    bad = copy.deepcopy(GOOD)
    edit(bad)
    path = _write(tmp_path, bad)
    with pytest.raises(ValueError, match=field) as exc:
        read_manifest(path)
    assert str(path) in str(exc.value)


def test_validator_alternatives_and_nesting():
    schema = Obj({"a": (int, None)}, {"b": ListOf(OneOf(("x", "y")))})
    validate({"a": None, "b": ["x", "y"]}, "f", schema)
    validate({"a": 3}, "f", schema)
    with pytest.raises(ValueError, match=r"f: b\[1\]: expected one of x, y, got 'z'"):
        validate({"a": 1, "b": ["x", "z"]}, "f", schema)
    with pytest.raises(ValueError, match="a: expected an integer or null, got True"):
        validate({"a": True}, "f", schema)
