"""Where the shared data lives: papers, official weights, golden tensors, sample DNGs.

Nothing under the shared folder is part of this project's history: it is read from a path that users can point
at their own copy. Resolution order for the shared root:

1. ``$ISP_SHARED`` if set;
2. ``../shared`` relative to the repository root (the layout CI uses);
3. ``../shared`` relative to the current working directory.

The weights folder can be overridden separately with ``$ISP_WEIGHTS`` (it must hold the official release layout:
``denoising/``, ``photofinishing/``, ``enhancement/`` …).
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

__all__ = ["REPO_ROOT", "shared_root", "weights_root", "golden_dir", "dng_dir", "user_cache"]


def shared_root() -> Path:
    """The shared data root (see module docstring). Raises ``FileNotFoundError`` with the fix if absent."""
    env = os.environ.get("ISP_SHARED")
    candidates = [Path(env)] if env else [REPO_ROOT.parent / "shared", Path.cwd().parent / "shared"]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"shared data folder not found (tried {tried}); set ISP_SHARED to the folder that holds "
        "weights/official, golden/ and data/dng/")


def weights_root() -> Path:
    """Folder with the official release layout (``$ISP_WEIGHTS`` or ``<shared>/weights/official``)."""
    env = os.environ.get("ISP_WEIGHTS")
    return Path(env).resolve() if env else shared_root() / "weights" / "official"


def golden_dir() -> Path:
    return shared_root() / "golden"


def dng_dir() -> Path:
    return shared_root() / "data" / "dng"


def user_cache(name: str) -> Path:
    """``name`` in the user's cache folder: ``$XDG_CACHE_HOME`` if set, else ``~/.cache``."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / name
