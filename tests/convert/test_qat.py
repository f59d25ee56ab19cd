"""convert.qat: the int8-weight fine-tune brings the weight-rounded network closer to the float one, and is cached."""
from __future__ import annotations

import pytest
import torch

from tests.convert.test_units import _small_nafnet_unit


def _err(module, teacher, x):
    from convert.qat import weight_quantized
    with torch.no_grad():
        return float(((weight_quantized(module)(x) - teacher(x)) ** 2).mean())


def test_int8_weight_rounds_per_output_channel():
    from convert.qat import int8_weight
    w = torch.tensor([[1.0, 0.5, -0.004], [0.01, -0.02, 0.0]]).reshape(2, 3, 1, 1).requires_grad_(True)
    q = int8_weight(w)
    s = torch.tensor([1.0, 0.02]) / 127
    assert torch.allclose(q.detach().reshape(2, 3), torch.round(w.detach().reshape(2, 3) / s[:, None]) * s[:, None])
    q.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))                  # straight through


def test_finetune_reduces_the_weight_rounding_error_and_is_cached(tmp_path, monkeypatch):
    from convert import qat

    m = _small_nafnet_unit(seed=2)
    with torch.no_grad():                       # coarse weights: int8 rounding costs something to win back
        for name, p in m.named_parameters():
            if name.endswith("weight") and p.dim() == 4:
                p.mul_(1 + 3 * (torch.rand(p.shape) < 0.05))
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(1, 3, 32, 32, generator=g) for _ in range(4)]
    x = torch.rand(4, 3, 16, 16, generator=g)
    before = _err(m, m, x)
    state = qat.finetune(m, images, steps=25, lr=1e-4, crop=16, batch=4)
    tuned = _small_nafnet_unit(seed=2)
    tuned.load_state_dict(state)
    after = _err(tuned, m, x)
    assert after < 0.7 * before, (before, after)
    assert set(state) == set(m.state_dict())

    monkeypatch.setenv("ISP_CACHE", str(tmp_path))
    ck = tmp_path / "net.pth"
    ck.write_bytes(b"weights")
    settings = {"steps": 1, "crop": 16, "batch": 1}
    s1, path, made = qat.finetuned_state(m, ck, images, settings, progress=False)
    assert made and path.is_file() and path.parent == tmp_path / "qat"
    s2, path2, made2 = qat.finetuned_state(m, ck, images, settings, progress=False)
    assert not made2 and path2 == path and all(torch.equal(s1[k], s2[k]) for k in s1)
    assert qat.cache_file(ck, {**settings, "steps": 3}) != path
    with pytest.raises(ValueError, match="unknown settings"):
        qat.finetuned_state(m, ck, images, {"epochs": 1})
    with pytest.raises(ValueError, match="multiple of 16"):
        qat.finetune(m, images, steps=1, crop=20)


def test_weight_quantized_keeps_the_split_convolutions_float():
    from convert.qat import _Int8WeightConv, weight_quantized

    m = _small_nafnet_unit(seed=4)
    q = weight_quantized(m, keep=["stage.net.stem", "stage.net.encoders.0"])
    assert isinstance(q.stage.net.stem, torch.nn.Conv2d) and isinstance(q.stage.net.head, _Int8WeightConv)
    assert all(not isinstance(c, _Int8WeightConv) for c in q.stage.net.encoders[0].modules())
    assert isinstance(q.stage.net.encoders[1][0].mix_expand, _Int8WeightConv)
    plain = weight_quantized(m)
    assert not any(type(c) is torch.nn.Conv2d and not isinstance(p, _Int8WeightConv)
                   for p in plain.modules() for c in p.children())
