"""Shared fixtures. The shared data folder (``$ISP_SHARED`` or ``../shared``) is required: under CI a missing
folder is an error, elsewhere the tests that need it are skipped with the reason."""
from __future__ import annotations

import os

# idle OpenMP workers sleep instead of spinning: on a shared 2-core machine spinning threads starve each other
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import torch

from isp import paths
from isp.golden import find_golden_files, load_golden

torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))

#: what a plain ``pytest`` selects when no ``-m`` is given: everything but ``slow`` on a workstation; under CI
#: (``CI`` set) the export quality budget (``budget``) runs too, slow or not. ``-m ""`` selects everything.
DEFAULT_MARKERS = "not slow"
CI_MARKERS = "not slow or budget"


def pytest_configure(config):
    if not config.option.markexpr and "-m" not in config.invocation_params.args:
        config.option.markexpr = CI_MARKERS if os.environ.get("CI") else DEFAULT_MARKERS


def _shared_or_skip():
    try:
        return paths.shared_root()
    except FileNotFoundError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def shared_root():
    return _shared_or_skip()


@pytest.fixture(scope="session")
def weights_dir(shared_root):
    return paths.weights_root()


@pytest.fixture(scope="session")
def golden_files(shared_root):
    return find_golden_files(paths.golden_dir())


@pytest.fixture(scope="session")
def golden_cases(golden_files):
    return [load_golden(f) for f in golden_files]


@pytest.fixture(scope="session")
def dng_files(shared_root):
    return sorted(paths.dng_dir().glob("*.dng"))


@pytest.fixture(scope="session")
def golden_ext(shared_root):
    """``golden_ext("lin_")``: the files of one kind in ``shared/golden_ext`` (the test skips when there are none)."""
    def files(prefix: str):
        found = sorted((shared_root / "golden_ext").glob(f"{prefix}*.npz"))
        if not found:
            pytest.skip(f"no {prefix}*.npz golden files in {shared_root / 'golden_ext'}")
        return found
    return files
