"""Gamma correction stage, what only it has: the ``exp_log`` pow formulation proven equal to ``torch.pow`` and the
constructor's check (golden parity, checkpoints, shapes, functional == module and export of both formulations are in
``tests/isp/test_stages.py``)."""
from __future__ import annotations

import pytest
import torch

from isp.stages.gamma import GAMMA_MAX, GAMMA_MIN, GammaCorrection, apply_gamma, pow_exp_log


def _unit_inputs() -> torch.Tensor:
    """[0, 1] values with the edge cases: exact 0 and 1, denormals, the smallest normal, dense mid-range."""
    torch.manual_seed(0)
    special = torch.tensor([0.0, 1.0, 1e-45, 1e-40, 1.1754944e-38, 1e-30, 1e-12, 1e-7, 1e-3, 0.5, 1 - 1e-7])
    return torch.cat([special, torch.rand(4000), torch.rand(1000) ** 8])


def test_bad_pow_mode():
    with pytest.raises(ValueError, match="pow_mode"):
        GammaCorrection(pow_mode="fast")


class TestPowFormulations:
    @pytest.mark.parametrize("exponent", [1 / GAMMA_MAX, 0.45, 1 / 2.2, 0.6, 0.75, 1 / GAMMA_MIN, 1.0])
    def test_exp_log_equals_pow_on_unit_interval(self, exponent):
        x = _unit_inputs()
        e = torch.tensor(exponent)
        ref = torch.pow(x, e)
        got = pow_exp_log(x, e)
        assert got[0] == 0.0 and got[1] == 1.0          # x = 0 -> exactly 0, x = 1 -> exactly 1
        assert (got - ref).abs().max() < 1e-6
        assert torch.allclose(got, ref, rtol=2e-6, atol=1e-12)

    def test_apply_modes_agree_per_sample_exponent(self):
        torch.manual_seed(1)
        x = torch.rand(2, 3, 9, 11)
        x[0, 0, 0, 0] = 0.0
        x[1, 2, 3, 4] = 1.0
        e = torch.tensor([1 / 2.4, 1 / 1.3]).reshape(2, 1, 1, 1)
        a, b = apply_gamma(x, e, "pow"), apply_gamma(x, e, "exp_log")
        assert (a - b).abs().max() < 1e-6
        assert b[0, 0, 0, 0] == 0.0 and b[1, 2, 3, 4] == 1.0
