"""Reader for golden-tensor files (``NAME_sSTYLE.npz``) in the format of ``<shared>/golden/README.md``.

Each file holds one crop pushed through the official implementation: the pipeline input (``raw``, ``illum``,
``ccm``) and every intermediate output. Tensors come back as float32 ``torch.Tensor``; metadata (``style_id``,
``denoiser``, ``cfa``, ``source``, ``crop``) as plain Python values.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from isp.units import chain_tensors

__all__ = ["GoldenCase", "load_golden", "find_golden_files", "TENSOR_KEYS", "META_KEYS"]

#: every tensor a golden file must carry, in pipeline order: the inputs, then what the reference render produces
TENSOR_KEYS = ("raw", "illum", "ccm", *chain_tensors(params=True, lut=False))
META_KEYS = ("style_id", "denoiser")
OPTIONAL_META = ("cfa", "source", "crop")


@dataclass
class GoldenCase:
    path: Path
    tensors: dict[str, torch.Tensor]
    style_id: int
    denoiser: str                     # e.g. "s24_lite", "generic_base"
    meta: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.stem

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.tensors[key]


def _scalar(v: np.ndarray):
    return v.item() if isinstance(v, np.ndarray) and v.shape == () else v


def load_golden(path: str | Path) -> GoldenCase:
    """Load one golden file; raises ``ValueError`` naming the file and the missing/ill-shaped keys."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable .npz golden file ({exc})") from exc
    missing = [k for k in TENSOR_KEYS + META_KEYS if k not in data]
    if missing:
        raise ValueError(f"{path}: golden file lacks keys {missing} (format: shared/golden/README.md)")
    raw = data["raw"]
    if raw.ndim != 4 or raw.shape[1] != 3:
        raise ValueError(f"{path}: 'raw' must be 1x3xHxW, got {raw.shape}")
    h, w = raw.shape[2:]
    if h % 4 or w % 4:
        raise ValueError(f"{path}: 'raw' height and width must be multiples of 4 (1/4-res photofinishing), "
                         f"got {h}x{w}")
    tensors = {k: torch.from_numpy(np.asarray(data[k], dtype=np.float32)) for k in TENSOR_KEYS}
    meta = {k: _scalar(data[k]) for k in OPTIONAL_META if k in data}
    if "crop" in meta:
        meta["crop"] = [int(x) for x in np.asarray(meta["crop"]).ravel()]
    return GoldenCase(path=path, tensors=tensors, style_id=int(_scalar(data["style_id"])),
                      denoiser=str(_scalar(data["denoiser"])), meta=meta)


def find_golden_files(folder: str | Path) -> list[Path]:
    """All ``*.npz`` files in ``folder`` (sorted). Raises if the folder is missing or holds none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: golden folder not found")
    files = sorted(folder.glob("*.npz"))
    if not files:
        raise FileNotFoundError(f"{folder}: no .npz golden files in this folder")
    return files
