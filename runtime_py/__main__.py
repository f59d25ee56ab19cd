"""``python -m runtime_py [COMMAND] [ARGS...]``: the runtime_py command-line tools.

Each command is a module with ``main(argv) -> int`` (``python -m runtime_py.<command>`` runs the same); without a
command, or with ``-h``, the list is printed with each module's one-line summary.
"""
from __future__ import annotations

import importlib
import sys

#: command -> module under runtime_py (the modules are imported only when run or listed)
COMMANDS = ("render", "drift", "bench", "devices", "capture")


def _summary(name: str) -> str:
    try:
        doc = importlib.import_module(f"runtime_py.{name}").__doc__ or ""
    except ImportError as exc:
        return f"(unavailable: {exc})"
    return doc.strip().splitlines()[0] if doc.strip() else ""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m runtime_py COMMAND [ARGS...]   (COMMAND -h for its options)\n\ncommands:")
        for name in COMMANDS:
            print(f"  {name:<9} {_summary(name)}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; commands are {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return int(importlib.import_module(f"runtime_py.{name}").main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
