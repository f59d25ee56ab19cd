"""LiteRT's GPU delegate out of process: a worker child that compiles and runs models, so a delegate crash (a
segfault in the WebGPU/Vulkan driver stack) or hang never takes down the caller (pytest, an export, a drift run).

    worker = Worker("convert.gpu_delegate")   # spawns ``python -m convert.gpu_worker convert.gpu_delegate``
    reply = worker.call("open", dict(...), timeout=300, what="compiling x.tflite")
    worker.close()

Frames on the child's stdin/stdout: an 8-byte little-endian length, then a pickle of ``(op, kwargs)`` (request) or
``("ok", value)`` / ``("error", kind, message, extra)`` (reply). The child moves its own stdout to stderr before it
loads anything, so native code that prints cannot corrupt the frames; its stderr goes to a temporary file whose tail
is quoted when it dies. A child that dies raises :class:`GpuWorkerCrash` (``signal`` set when a signal killed it);
one that does not answer within the timeout is killed and raises :class:`GpuWorkerTimeout`. The requests the child
serves are the ``WORKER_OPS`` table of the module named when the worker is made (:mod:`convert.gpu_delegate`).

``ISP_GPU_TIMEOUT`` (seconds) overrides the default timeout of a request.
"""
from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

__all__ = ["Worker", "GpuWorkerCrash", "GpuWorkerTimeout", "default_timeout", "ensure_runtime_dir"]

_HEADER = struct.Struct("<Q")


def ensure_runtime_dir() -> str:
    """``XDG_RUNTIME_DIR`` as an existing folder (WebGPU's environment needs one); set when unset or missing."""
    cur = os.environ.get("XDG_RUNTIME_DIR")
    if cur and Path(cur).is_dir():
        return cur
    path = Path(tempfile.gettempdir()) / f"isp-xdg-runtime-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    os.environ["XDG_RUNTIME_DIR"] = str(path)
    return str(path)


def default_timeout(fallback: float = 600.0) -> float:
    """``ISP_GPU_TIMEOUT`` in seconds when set, else ``fallback``."""
    raw = os.environ.get("ISP_GPU_TIMEOUT")
    if raw:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"ISP_GPU_TIMEOUT={raw!r}: expected a number of seconds") from None
        if value > 0:
            return value
    return fallback


class GpuWorkerCrash(RuntimeError):
    """The GPU worker process died while serving a request; ``signal`` is the signal number that killed it
    (``None`` when it exited)."""

    def __init__(self, message: str, signal_number: int | None, returncode: int | None) -> None:
        super().__init__(message)
        self.signal = signal_number
        self.returncode = returncode


class GpuWorkerTimeout(RuntimeError):
    """The GPU worker did not answer in time (it was killed)."""


def _signal_name(n: int) -> str:
    try:
        return signal.Signals(n).name
    except ValueError:
        return f"signal {n}"


def _shutdown(proc: subprocess.Popen, log: Any) -> None:
    try:
        if proc.poll() is None:
            try:
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
    finally:
        for f in (proc.stdout, log):
            try:
                f.close()
            except (OSError, AttributeError):
                pass


class Worker:
    """One GPU worker child; :meth:`call` sends a request and waits for its reply. Not shared between threads
    concurrently (a lock serialises calls)."""

    def __init__(self, ops_module: str = "convert.gpu_delegate") -> None:
        env = dict(os.environ)
        env["XDG_RUNTIME_DIR"] = ensure_runtime_dir()
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._log = tempfile.TemporaryFile(mode="w+b")
        self._proc = subprocess.Popen([sys.executable, "-m", "convert.gpu_worker", ops_module], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self._log, env=env)
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _shutdown, self._proc, self._log)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def close(self) -> None:
        self._finalizer()

    def _stderr_tail(self, lines: int = 4) -> str:
        try:
            self._log.seek(0)
            text = self._log.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        kept = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return " / ".join(kept[-lines:])

    def _died(self, what: str) -> GpuWorkerCrash:
        try:
            rc = self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            rc = self._proc.wait()
        sig = -rc if rc is not None and rc < 0 else None
        how = f"crashed (signal {sig}, {_signal_name(sig)})" if sig else f"exited with status {rc}"
        tail = self._stderr_tail()
        self._finalizer()
        return GpuWorkerCrash(f"the GPU delegate {how} while {what}" + (f" (its stderr: {tail})" if tail else ""),
                              sig, rc)

    def _read_exact(self, n: int, deadline: float, what: str) -> bytes:
        fd = self._proc.stdout.fileno()
        chunks, have = [], 0
        while have < n:
            left = deadline - time.monotonic()
            if left <= 0:
                self._proc.kill()
                self._finalizer()
                raise GpuWorkerTimeout(f"the GPU delegate did not finish {what} within the timeout (killed; "
                                       f"ISP_GPU_TIMEOUT sets it)")
            ready, _, _ = select.select([fd], [], [], min(left, 5.0))
            if not ready:
                continue
            chunk = os.read(fd, min(n - have, 1 << 20))
            if not chunk:
                raise self._died(what)
            chunks.append(chunk)
            have += len(chunk)
        return b"".join(chunks)

    def call(self, op: str, kwargs: dict[str, Any], timeout: float, what: str) -> Any:
        """The child's value for ``op(**kwargs)``; its exception is re-raised here as ``("error", kind,
        message, extra)`` for :mod:`convert.gpu_delegate` to map (see :meth:`_raise`)."""
        with self._lock:
            if self._proc.poll() is not None or self._proc.stdin.closed:
                raise self._died(what) if self._proc.returncode else GpuWorkerCrash(
                    f"the GPU worker is closed (was asked to do {what})", None, self._proc.returncode)
            body = pickle.dumps((op, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
            try:
                self._proc.stdin.write(_HEADER.pack(len(body)) + body)
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError):
                raise self._died(what) from None
            deadline = time.monotonic() + timeout
            (size,) = _HEADER.unpack(self._read_exact(_HEADER.size, deadline, what))
            reply = pickle.loads(self._read_exact(size, deadline, what))
        return reply


# ------------------------------------------------------------------------------------------------- the child

def _serve() -> int:
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)                                   # stray prints of native code go to stderr, not the frames
    sys.stdout = sys.stderr
    proto_in = os.fdopen(0, "rb")
    import importlib
    ops = importlib.import_module(sys.argv[1] if len(sys.argv) > 1 else "convert.gpu_delegate").WORKER_OPS

    while True:
        head = proto_in.read(_HEADER.size)
        if len(head) < _HEADER.size:
            return 0
        (size,) = _HEADER.unpack(head)
        op, kwargs = pickle.loads(proto_in.read(size))
        try:
            reply = ("ok", ops[op](**kwargs))
        except Exception as exc:                    # noqa: BLE001 - every failure goes back to the parent
            extra = getattr(exc, "worker_extra", None)
            reply = ("error", type(exc).__name__, str(exc), extra)
        body = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        proto_out.write(_HEADER.pack(len(body)) + body)
        proto_out.flush()


if __name__ == "__main__":
    sys.exit(_serve())
