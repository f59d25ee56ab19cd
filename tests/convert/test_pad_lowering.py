"""Reflect padding as slices + cat for the ExecuTorch target (convert/pad_lowering.py): the same values as
``F.pad(mode="reflect")``, bit for bit, and XNNPACK then delegates the padding (no ``index``/``abs`` gather maths
left on portable kernels)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convert.pad_lowering import lower_reflect_pads, reflect_pad2d


@pytest.mark.parametrize("pad", [(1, 1, 1, 1), (2, 2, 2, 2), (0, 1, 2, 0), (3, 1, 0, 2), (0, 0, 0, 0)])
def test_reflect_pad2d_is_f_pad(pad):
    x = torch.randn(2, 3, 7, 9)
    assert torch.equal(reflect_pad2d(x, pad), F.pad(x, pad, mode="reflect"))
    h = x.half()
    assert torch.equal(reflect_pad2d(h, pad), F.pad(h, pad, mode="reflect"))


def test_reflect_pad2d_too_wide():
    with pytest.raises(ValueError, match="smaller than the padded dimension"):
        reflect_pad2d(torch.zeros(1, 1, 3, 3), (3, 0, 0, 0))


class _Net(nn.Module):
    """A reflect-padded 3x3 conv (as in the LTM/GTM/chroma networks), an explicit 2-px reflect pad, a zero pad."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect")
        self.b = nn.Conv2d(8, 4, 5)

    def forward(self, x):
        y = torch.relu(self.a(x))
        return self.b(F.pad(y, (2, 2, 2, 2), mode="reflect")) + F.pad(x[:, :1], (0, 0, 0, 0))


def _fallback(program) -> dict[str, int]:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from convert.targets.executorch import coverage
    edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    return coverage(edge, "xnnpack").fallback, edge


def test_lowered_program_is_equal_and_delegated():
    pytest.importorskip("executorch")
    from executorch.runtime import Runtime
    torch.manual_seed(0)
    net = _Net().eval()
    x = torch.rand(1, 3, 20, 24)
    program = torch.export.export(net, (x,), strict=False)
    lowered, n = lower_reflect_pads(program)
    assert n == 2                                        # the conv's reflect padding and the explicit one
    assert lower_reflect_pads(lowered)[1] == 0           # nothing left to lower
    before, _ = _fallback(program)
    after, edge = _fallback(lowered)
    assert "aten.index.Tensor" in before                 # the gather form the edge lowering makes of reflection_pad2d
    assert not {"aten.index.Tensor", "aten.abs", "aten.arange.start_step"} & set(after), after
    out = Runtime.get().load_program(edge.to_executorch().buffer).load_method("forward").execute([x])[0]
    with torch.no_grad():
        ref = net(x)
    assert torch.allclose(out, ref, atol=1e-5), float((out - ref).abs().max())
