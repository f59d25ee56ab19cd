"""Fuzz of the DNG decoder (issue 9): seeded mutations of the shipped DNGs (``tests/isp/dng_mutate.py``: retyped,
recounted, NaN/inf/negative values, tag-aware damage, bit flips, truncations, zeroed ranges), decoded in-process
with a per-file timeout.

Every mutated file must either decode with nothing but finite numbers (pixels, levels, colour, metadata) or raise
:class:`isp.io.dng.DngError` with a one-line message naming the file; any other exception, an unnamed error or a
file still decoding after the timeout fails the test, listing the mutations that did it (the files are kept in
``tmp_path`` for replay with ``python -m tests.isp.dng_mutate FILE``-style debugging).

Slices: a quick one in the default run, a larger one when ``CI`` is set, a ``slow`` one of a few thousand files.
A campaign of any size with another seed: ``python -m tests.isp.dng_mutate --count 3000 --seed N``.
"""
from __future__ import annotations

import os

import pytest

from isp import paths
from tests.isp.dng_mutate import fuzz

DNG_FILES = sorted(paths.dng_dir().glob("*.dng")) if paths.dng_dir().is_dir() else []
_NEED_SHARED = pytest.mark.skipif(not DNG_FILES, reason="shared data folder (DNG samples) not found")
#: seconds one file may take before it counts as a hang (decoding a shipped DNG takes ~0.05 s here)
HANG_SECONDS = 30.0


def _check(tmp_path, count: int, seed: int) -> None:
    report = fuzz(DNG_FILES, count, seed, tmp_path / "fuzz", timeout=HANG_SECONDS)
    bad = "\n".join(f"{f['outcome']}: {f['file']}: {f['mutation']}: {f['detail'][:300]}"
                    for f in report.failures[:20])
    assert not report.failures, f"{len(report.failures)} of {count} mutated DNGs misbehaved " \
                                f"(counts {report.counts}):\n{bad}"
    assert sum(report.counts.values()) == count
    # the mutations do reach both outcomes (a mutator that broke every file, or none, would prove nothing)
    assert report.counts["ok"] > 0 and report.counts["dng_error"] > count // 4, report.counts


@_NEED_SHARED
def test_fuzz_quick(tmp_path):
    _check(tmp_path, 1000, seed=9001)


@_NEED_SHARED
@pytest.mark.skipif(not os.environ.get("CI"), reason="the larger fuzz slice runs when CI is set")
def test_fuzz_ci(tmp_path):
    _check(tmp_path, 4000, seed=9002)


@_NEED_SHARED
@pytest.mark.slow
def test_fuzz_slow(tmp_path):
    _check(tmp_path, 8000, seed=9003)
