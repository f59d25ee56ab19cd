"""The one PSNR (isp.metrics.psnr): fixed data range and the reference's own range (export verification)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from convert.targets.base import psnr as verify_psnr
from isp.metrics import psnr


def test_fixed_range_default_is_one():
    ref = np.zeros((4, 4))
    assert psnr(ref + 0.1, ref) == pytest.approx(20.0)
    assert psnr(ref + 0.1, ref, data_range=2.0) == pytest.approx(20.0 + 20 * math.log10(2.0))


def test_reference_range_uses_the_references_peak_to_peak():
    ref = np.linspace(0.0, 5.0, 16).reshape(4, 4)
    pred = ref + 0.05
    assert psnr(pred, ref, data_range="reference") == pytest.approx(10 * math.log10(25.0 / 0.0025))
    assert verify_psnr(pred, ref) == psnr(pred, ref, data_range="reference")
    flat = np.full((4, 4), 3.0)
    assert psnr(flat + 0.1, flat, data_range="reference") == pytest.approx(20.0)   # flat reference: range 1


def test_identical_is_inf_and_bad_arguments_are_errors():
    a = np.ones((2, 3))
    assert psnr(a, a) == math.inf and psnr(a, a, data_range="reference") == math.inf
    with pytest.raises(ValueError, match="shape mismatch"):
        psnr(a, a[:1])
    with pytest.raises(ValueError, match="data_range"):
        psnr(a, a + 1, data_range="peak")
