"""The DNGs a calibration set is built from: finding them, decoding them once (:class:`SourcePool`), and assigning
them to the calibration and evaluation frames (whole files or halves of one, :func:`assign_sources`). All random
choices come from numpy ``SeedSequence`` streams keyed ``(seed, stream, role, index)``."""
from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np

from calibration.augment import ColorInfo, saturation_level
from isp.hashing import sha256_file

__all__ = ["SPLITS", "Source", "SourcePool", "find_dngs", "assign_sources"]

SPLITS = ("auto", "sources", "regions")

#: random streams: numpy SeedSequence keys are (seed, stream, role, index) — always four entries, because keys that
#: differ only by trailing zeros give the same stream
_STREAM = {"calib": 1, "eval": 2, "split": 3}
_ROLE_ASSIGN, _ROLE_SAMPLE = 1, 2


def find_dngs(folder: str | Path) -> list[Path]:
    """Sorted ``*.dng`` files (any case) of a folder; ``ValueError`` for a missing or DNG-less folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"DNG folder {folder} does not exist or is not a folder; pass --dngs DIR with the raw photos")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".dng" and p.is_file())
    if not files:
        raise ValueError(f"DNG folder {folder} holds no .dng files; calibration needs at least one DNG photo "
                         "(e.g. the samples in <shared>/data/dng)")
    return files


@dataclass(frozen=True)
class Source:
    """A usable DNG: where it is, what it holds (no pixels; :class:`SourcePool` decodes them)."""
    path: Path
    sha256: str
    shape: tuple[int, int]            # (H, W) of the decoded image
    ccm: np.ndarray                   # (3, 3) float32 as-shot CCM
    color: ColorInfo
    saturation: float                 # clipping point of the normalised raw
    cfa: str

    @property
    def name(self) -> str:
        return self.path.name

    def to_json(self) -> dict[str, Any]:
        return {"file": self.name, "sha256": self.sha256, "size": list(self.shape), "cfa": self.cfa,
                "illum": self.color.illum.tolist(), "ccm": self.ccm.tolist(), "saturation": self.saturation,
                "color_matrices": self.color.color_matrices is not None}


class SourcePool:
    """Decodes DNGs (``isp.io.dng.read_dng``) once to check them, then on demand, keeping the most recent decoded
    images in memory up to ``cache_bytes``."""

    def __init__(self, files: Sequence[str | Path], cache_bytes: int = 2 << 30) -> None:
        self.files = [Path(f) for f in files]
        self.cache_bytes = int(cache_bytes)
        self._cache: OrderedDict[Path, np.ndarray] = OrderedDict()
        self.sources: list[Source] = []
        self.skipped: list[tuple[Path, str]] = []

    def _decode(self, path: Path):
        from isp.io.dng import read_dng
        return read_dng(path)

    def probe(self) -> list[Source]:
        """Decode every file; unreadable ones are skipped with a warning naming them. ``ValueError`` if none is
        usable."""
        self.sources, self.skipped = [], []
        for path in self.files:
            try:
                raw = self._decode(path)
                if min(raw.shape) < 2:
                    raise ValueError(f"decoded image is only {raw.shape[1]}x{raw.shape[0]} pixels")
                src = Source(path=path, sha256=sha256_file(path), shape=tuple(int(v) for v in raw.shape),
                             ccm=np.asarray(raw.ccm, dtype=np.float32), color=ColorInfo.from_raw(raw),
                             saturation=saturation_level(raw.black_level, raw.white_level), cfa=raw.cfa)
            except Exception as exc:  # noqa: BLE001 - any failure makes the file unusable; the message names it
                reason = f"{type(exc).__name__}: {exc}"
                self.skipped.append((path, reason))
                warnings.warn(f"skipping unreadable DNG {path}: {reason}", stacklevel=2)
                continue
            self.sources.append(src)
            self._remember(path, raw.rgb)
        if not self.sources:
            details = "; ".join(f"{p.name}: {r}" for p, r in self.skipped)
            raise ValueError(f"no usable DNG among {len(self.files)} file(s): {details}")
        return self.sources

    def _remember(self, path: Path, rgb: np.ndarray) -> None:
        self._cache[path] = rgb
        self._cache.move_to_end(path)
        while len(self._cache) > 1 and sum(a.nbytes for a in self._cache.values()) > self.cache_bytes:
            self._cache.popitem(last=False)

    def rgb(self, source: Source) -> np.ndarray:
        """(H, W, 3) float32 decoded camera RGB of ``source``."""
        if source.path in self._cache:
            self._cache.move_to_end(source.path)
            return self._cache[source.path]
        rgb = self._decode(source.path).rgb
        if tuple(rgb.shape[:2]) != source.shape:
            raise RuntimeError(f"{source.path} changed while building the set (was {source.shape}, now "
                               f"{tuple(rgb.shape[:2])})")
        self._remember(source.path, rgb)
        return rgb


def _rng(seed: int, stream: str, role: int, index: int = 0) -> np.random.Generator:
    return np.random.default_rng([int(seed), _STREAM[stream], role, int(index)])


def assign_sources(sources: Sequence[Source], count: int, eval_count: int, seed: int, split: str = "auto"
                   ) -> tuple[str, dict[str, list[tuple[Source, str]]]]:
    """Which DNG (and which part of it) feeds each sample of each set: ``(split_used, {kind: [(source, part)]})``.

    ``sources``: a random subset of the DNGs (about ``eval_count / (count + eval_count)`` of them, at least one,
    never all) goes to evaluation, the rest to calibration; each set uses whole images. ``regions``: every DNG
    feeds both sets, calibration from the first half of each image along its longer side, evaluation from the
    second (:func:`calibration.augment.split_region`). ``auto``: ``sources`` when there are at least two DNGs,
    else ``regions``. Without an evaluation set calibration uses all DNGs whole. Within a set, samples go round
    robin over a seeded permutation of its DNGs.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    srcs = list(sources)
    n = len(srcs)
    if eval_count == 0:
        used, parts = "none", {"calib": [(s, "all") for s in srcs], "eval": []}
    else:
        used = split if split != "auto" else ("sources" if n >= 2 else "regions")
        if used == "sources":
            if n < 2:
                raise ValueError(f"split 'sources' needs at least 2 usable DNGs, got {n}; use split 'regions'")
            perm = _rng(seed, "split", _ROLE_ASSIGN).permutation(n)
            n_eval = min(n - 1, max(1, round(n * eval_count / (count + eval_count))))
            eval_idx = sorted(int(i) for i in perm[:n_eval])
            parts = {"calib": [(srcs[i], "all") for i in range(n) if i not in eval_idx],
                     "eval": [(srcs[i], "all") for i in eval_idx]}
        else:
            parts = {"calib": [(s, "first") for s in srcs], "eval": [(s, "second") for s in srcs]}
    out: dict[str, list[tuple[Source, str]]] = {}
    for kind, want in (("calib", count), ("eval", eval_count)):
        pool = parts[kind]
        if want == 0 or not pool:
            out[kind] = []
            continue
        perm = _rng(seed, kind, _ROLE_ASSIGN).permutation(len(pool))
        out[kind] = [pool[int(perm[i % len(pool)])] for i in range(want)]
    return used, out
