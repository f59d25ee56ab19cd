"""What makes a re-run resume: results saved per unit and per chain step (folders published atomically, the
``result.json`` last) and the keys that say whether a saved result still holds."""
from __future__ import annotations

import hashlib
import json
import shlex
import uuid
from pathlib import Path
from typing import Any, Mapping

from isp.atomic import publish_dir
from isp.jsonio import write_json_atomic

__all__ = ["State", "digest"]


def digest(obj: Any) -> str:
    """A short stable key of a JSON-able value."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


def q(s: str) -> str:
    """Shell quoting for device commands."""
    return shlex.quote(str(s))


class State:
    """``OUT/units/<unit>/`` and ``OUT/chain/frame<k>/<unit>/``: each a folder renamed into place when complete,
    ``result.json`` inside; a folder whose key differs from the current run is stale and redone."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def unit_dir(self, unit: str) -> Path:
        return self.out / "units" / unit

    def step_dir(self, frame: int, unit: str) -> Path:
        return self.out / "chain" / f"frame{frame}" / unit

    @staticmethod
    def read(folder: Path) -> dict | None:
        try:
            return json.loads((folder / "result.json").read_text())
        except (OSError, ValueError):
            return None

    @staticmethod
    def staging(folder: Path) -> Path:
        tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        return tmp

    @staticmethod
    def publish(tmp: Path, folder: Path, result: Mapping[str, Any]) -> None:
        """``result.json`` last into ``tmp``, then ``tmp`` renamed to ``folder`` (an older one moved aside first)."""
        write_json_atomic(tmp / "result.json", result)
        publish_dir(tmp, folder)
