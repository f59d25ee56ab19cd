"""The benchmark's options (what the CLI parses), exit codes and its one error type."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SCHEMA", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_DEVICE", "BenchError", "BenchOptions"]

SCHEMA = "isp_bench.results/1"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DEVICE = 0, 1, 2, 3


class BenchError(RuntimeError):
    """A benchmark that cannot go on; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


@dataclass
class BenchOptions:
    """What the CLI parses (see ``build_parser`` for every field's meaning)."""

    device: str
    artifacts: Path | None
    out: Path = Path("bench_out")
    serial: str | None = None
    transport: str = "adb"
    key: str | None = None
    iterations: int = 10
    warmup: int = 3
    eval_set: Path | None = None
    eval_dng: Path | None = None
    frames: int = 1
    runner: str = "auto"
    device_python: str = sys.executable
    native_runner: Path | None = None
    native_libs: tuple[str, ...] = ()
    units: tuple[str, ...] | None = None
    precision: tuple[str, ...] | None = None
    force: bool = False
    chain: bool = True
    retries: int = 2
    timeout_s: float = 600.0
    threads: int | None = None
    runner_args: tuple[str, ...] = ()
    profile_files: tuple[str, ...] = ()
    allow_mismatch: bool = False
    root: str | None = None
    connect_timeout_s: float = 10.0
    auth_timeout_s: float = 10.0
    weights: Path | None = None
    reference_cache: Path | None = None
    ios_tool: str = "devicectl"
    ios_app: str | None = None
    ios_install: bool = False
    transport_kwargs: dict = field(default_factory=dict)
    export_args: str = ""
    chain_only: bool = False
