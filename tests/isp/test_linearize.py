"""sRGB linearization (CIE XYZ Net): golden parity, strict checkpoint, shapes, functional == module, torch.export,
and the render route for JPEG/PNG inputs that carry no raw."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from isp.checkpoints import count_parameters, read_state_dict
from isp.metrics import psnr
from isp.registry import BuildConfig, build_stage, get_stage
from isp.stages import linearize as lin_mod
from isp.stages.linearize import D50_CCM, D50_INV_RAW_TO_XYZ, D50_RAW_ILLUM, Linearize, xyz_to_raw

MIN_DB = 60.0


@functools.lru_cache(maxsize=None)
def _stage(weights: str) -> Linearize:
    return build_stage("linearize", BuildConfig(weights))


@pytest.fixture(scope="module")
def lin_files(golden_ext):
    return golden_ext("lin_")


class TestGoldenParity:
    def test_network_and_projection(self, weights_dir, lin_files):
        stage = _stage(str(weights_dir))
        for f in lin_files:
            z = np.load(f)
            with torch.inference_mode():
                xyz = stage.net(torch.from_numpy(z["net_in"]))
                raw = xyz_to_raw(torch.from_numpy(z["xyz"]))[0].permute(1, 2, 0)
                # the stage from the 8-bit pixels (0.85 scaling in float32 rather than float64)
                full, _ = stage(torch.from_numpy(z["srgb_u8"]).permute(2, 0, 1)[None].float() / 255.0)
            db = (psnr(xyz, torch.from_numpy(z["xyz"])), psnr(raw, torch.from_numpy(z["raw"])),
                  psnr(full[0].permute(1, 2, 0), torch.from_numpy(z["raw"])))
            print(f"linearize {f.stem}: xyz {db[0]:.1f} dB, raw {db[1]:.1f} dB, from pixels {db[2]:.1f} dB")
            assert min(db) >= 90.0, (f.stem, db)

    def test_constants_are_the_official_ones(self, lin_files):
        z = np.load(lin_files[0])
        assert np.allclose(np.asarray(D50_INV_RAW_TO_XYZ), z["d50_inv_raw_to_xyz"], atol=0, rtol=0)
        assert np.allclose(np.asarray(D50_RAW_ILLUM), z["d50_raw_illum"], atol=0, rtol=0)
        import json
        meta = json.loads(str(z["metadata_json"]))
        assert np.array_equal(np.asarray(D50_CCM), np.asarray(meta["ccm"]))
        assert np.array_equal(np.asarray(D50_RAW_ILLUM), np.asarray(meta["illum_color"]))

    def test_render_route_linearizes_plain_jpeg(self, weights_dir, lin_files, tmp_path):
        from isp.sources import load_source
        z = np.load(lin_files[1])
        f = tmp_path / "plain.jpg"
        f.write_bytes(z["file_bytes"].tobytes())
        img, kind = load_source(f, weights_dir)
        assert kind == "srgb" and img.cfa == "LinearRaw" and not img.is_galaxy_s24
        assert psnr(torch.from_numpy(img.rgb), torch.from_numpy(z["raw"])) >= MIN_DB
        assert np.allclose(img.illum / img.illum[1], np.asarray(D50_RAW_ILLUM, np.float32), atol=1e-6)
        assert np.array_equal(img.ccm, np.asarray(D50_CCM, np.float32))


class TestCheckpoint:
    def test_strict_and_param_count(self, weights_dir):
        stage = _stage(str(weights_dir))
        assert count_parameters(stage) == 693_493        # 32,571 local + 660,922 global
        path = lin_mod.checkpoint_path(BuildConfig(weights_dir))
        sd = read_state_dict(path)
        sd["srgb2xyz_globa_net.net.extra.weight"] = torch.zeros(1)
        from isp.checkpoints import load_strict, remap_keys
        with pytest.raises(ValueError, match="unexpected keys"):
            load_strict(Linearize(), remap_keys(sd, lin_mod.LINEARIZE_KEY_RULES), path)

    def test_registry_entry(self):
        spec = get_stage("linearize")
        assert spec.input_names == ("srgb",) and spec.output_names == ("raw", "xyz")


class TestShapesAndForms:
    @pytest.mark.parametrize("shape", [(1, 3, 17, 29), (2, 3, 64, 48), (1, 3, 200, 96)])
    def test_any_size(self, weights_dir, shape):
        x = torch.rand(*shape)
        with torch.inference_mode():
            raw, xyz = _stage(str(weights_dir))(x)
        assert raw.shape == shape and xyz.shape == shape
        assert float(raw.min()) >= 0.0 and float(raw.max()) <= 1.0

    def test_batch_equals_singles(self, weights_dir):
        x = torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(1))
        stage = _stage(str(weights_dir))
        with torch.inference_mode():
            both, _ = stage(x)
            one, _ = stage(x[1:])
        assert torch.allclose(both[1:], one, atol=1e-6)

    def test_functional_equals_module(self, weights_dir):
        x = torch.rand(1, 3, 48, 40, generator=torch.Generator().manual_seed(2))
        stage = _stage(str(weights_dir))
        with torch.inference_mode():
            raw, xyz = stage(x)
            assert torch.equal(xyz, stage.net(lin_mod.SRGB_SCALE * x))
            assert torch.equal(raw, xyz_to_raw(xyz))
            # folded matrix == the official three steps (0.7 scale, inverse matrix, illuminant), in float64
            m = (np.diag(D50_RAW_ILLUM) @ np.asarray(D50_INV_RAW_TO_XYZ)) * lin_mod.XYZ_SCALE
            ref = np.clip(np.einsum("ij,bjhw->bihw", m, xyz.double().numpy()), 0, 1)
        assert np.abs(raw.double().numpy() - ref).max() < 1e-6

    def test_torch_export(self, weights_dir):
        stage = _stage(str(weights_dir))
        x = torch.rand(1, 3, 64, 96)
        ep = torch.export.export(stage, (x,), strict=True)
        with torch.inference_mode():
            ref = stage(x)
        for a, b in zip(ep.module()(x), ref):
            assert torch.allclose(a, b, atol=1e-6)
