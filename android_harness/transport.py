"""How bytes and commands reach an Android device: one protocol, two implementations.

``AdbTransport`` is the small surface the device layer needs (connect, shell with exit code and separate stderr,
push, pull, reconnect, close). Implementations:

- ``AdbShellTransport``: the ``adb-shell`` PyPI package (pure Python, no adb server) over TCP; RSA key from a key file
  (``~/.android/adbkey`` by default), generated with ``adb_shell.auth.keygen`` if absent. adb-shell has no shell v2,
  so the exit code and stderr come back through a wrapper (stderr to a device file, exit status after a marker).
- ``AdbClientTransport``: the platform-tools ``adb`` binary in a subprocess; optionally a private server
  (``ANDROID_ADB_SERVER_PORT``), private ``HOME`` and a key file (``ADB_VENDOR_KEYS``); shell v2 gives the exit code
  and stderr directly (a device without shell v2 gets the same wrapper as above).

Both translate failures into the typed errors of ``android_harness.faults``: nothing listening → ``DeviceNotFound``,
key not accepted within ``auth_timeout_s`` → ``DeviceUnauthorized``, connection cut → ``DeviceLost``,
``No space left on device`` → ``DeviceStorageFull``, a shell command past its timeout → ``CommandTimeout``.
Retrying is the device layer's job (``device.AndroidDevice``), not the transport's.
"""
from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from isp.atomic import replace_path
from android_harness.faults import (
    CommandTimeout,
    DeviceLost,
    DeviceNotFound,
    DeviceStorageFull,
    DeviceUnauthorized,
    HarnessError,
    TransferFailed,
)

DEFAULT_KEY_PATH = Path("~/.android/adbkey")
_NO_TIMEOUT_S = 7 * 24 * 3600.0  # adb-shell needs a number; a week stands for "no limit"
_ERR_DIR = "/data/local/tmp"  # writable by the shell user on every Android


@dataclass(frozen=True)
class ShellResult:
    """Outcome of one device shell command: exit status, raw stdout / stderr bytes and wall time on the host."""

    returncode: int
    stdout: bytes
    stderr: bytes
    seconds: float

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def err_text(self) -> str:
        return self.stderr.decode("utf-8", "replace")

    def stderr_tail(self, lines: int = 25, chars: int = 4000) -> str:
        tail = "\n".join(self.err_text.rstrip().splitlines()[-lines:])
        return tail[-chars:]


@runtime_checkable
class AdbTransport(Protocol):
    """What the device layer needs from a connection to one device."""

    serial: str
    name: str

    def connect(self) -> None:
        """Open the connection and wait until the device is usable (authorized, online)."""

    def reconnect(self) -> None:
        """Drop whatever is left of the connection and open it again (after ``DeviceLost``)."""

    def close(self) -> None:
        """Release the connection; safe to call twice."""

    def shell(self, command: str, timeout_s: float | None = None) -> ShellResult:
        """Run ``command`` with ``/system/bin/sh -c``; ``CommandTimeout`` past ``timeout_s`` (the device-side session
        is closed, which is all a transport can do: killing what it started is the caller's job)."""

    def push(self, local: Path, remote: str, *, executable: bool = False) -> None:
        """Copy one file; ``DeviceStorageFull`` when the device is full, ``DeviceLost`` when the link drops."""

    def pull(self, remote: str, local: Path) -> None:
        """Copy one file back; written to a temporary name then renamed, so ``local`` is complete or absent."""


# ----------------------------------------------------------------------------------------------------------------------
# helpers shared by both transports

def ensure_adb_key(key_path: str | os.PathLike | None = None) -> Path:
    """Return the private key path (``~/.android/adbkey`` by default), generating key + ``.pub`` if absent."""
    path = Path(key_path or DEFAULT_KEY_PATH).expanduser()
    if not path.exists() or not path.with_name(path.name + ".pub").exists():
        try:
            from adb_shell.auth.keygen import keygen
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError("generating an adb key needs the adb-shell package: pip install 'adb-shell==0.4.4' "
                               "(the project's [device] extra)") from exc
        path.parent.mkdir(parents=True, exist_ok=True)
        keygen(str(path))
        os.chmod(path, 0o600)
    return path


def _wrap_for_status(command: str, token: str, *, stderr_to_file: bool = True) -> str:
    """Wrap a command so its exit status follows a marker line on stdout.

    The marker is how a lost connection is told from a command that printed nothing: adb's shell v2 client exits 0
    when the device vanishes mid-command. Without shell v2 (adb-shell, old devices) stderr is merged into stdout,
    so ``stderr_to_file`` parks it in a device file and prints it after the marker."""
    if not stderr_to_file:
        return f"( {command}\n); __ah_rc=$?; printf '\\n{token}=%d\\n' $__ah_rc; exit $__ah_rc"
    err = f"{_ERR_DIR}/.ah_err_{token}"
    return (f"( {command}\n) 2>{err}; __ah_rc=$?; printf '\\n{token}=%d\\n' $__ah_rc; "
            f"cat {err} 2>/dev/null; rm -f {err}")


def _unwrap_status(out: bytes, token: str) -> tuple[int, bytes, bytes] | None:
    """Split the wrapped output back into (returncode, stdout, stderr); None if the marker never came."""
    marker = b"\n" + token.encode() + b"="
    i = out.rfind(marker)
    if i < 0:
        return None
    rest = out[i + len(marker):]
    line, _, stderr = rest.partition(b"\n")
    try:
        rc = int(line)
    except ValueError:
        return None
    return rc, out[:i], stderr


def _is_tcp_serial(serial: str) -> bool:
    return re.fullmatch(r"[^:\s]+:\d+", serial) is not None


# ----------------------------------------------------------------------------------------------------------------------
# adb-shell (PyPI) over TCP

def _eof_aware_tcp_transport(host: str, port: int):
    """adb-shell's TcpTransport with two fixes: a closed socket fails at once (the stock one busy-waits until its read
    timeout), and TCP_NODELAY is set (without it each small ADB packet waits for a delayed ACK: ~50 ms per command)."""
    from adb_shell.transport.tcp_transport import TcpTransport

    class EofAwareTcpTransport(TcpTransport):
        def connect(self, transport_timeout_s):
            super().connect(transport_timeout_s)
            self._connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def bulk_read(self, numbytes, transport_timeout_s):
            data = super().bulk_read(numbytes, transport_timeout_s)
            if not data:
                raise ConnectionResetError("the device closed the connection")
            return data

    return EofAwareTcpTransport(host, port)


class AdbShellTransport:
    """``AdbTransport`` on the adb-shell package (``AdbDevice`` over TCP, as ``AdbDeviceTcp``), no adb server needed.

    ``key_path`` is the private RSA key (``~/.android/adbkey`` by default, generated if absent); the phone must accept
    its ``.pub`` once. ``auth_timeout_s`` bounds the wait for that acceptance (``DeviceUnauthorized`` after it)."""

    name = "adb-shell"

    def __init__(self, host: str, port: int = 5555, *, key_path: str | os.PathLike | None = None,
                 connect_timeout_s: float = 10.0, auth_timeout_s: float = 10.0, io_timeout_s: float = 30.0):
        self.host = host
        self.port = int(port)
        self.serial = f"{host}:{self.port}"
        self.key_path = key_path
        self.connect_timeout_s = connect_timeout_s
        self.auth_timeout_s = auth_timeout_s
        self.io_timeout_s = io_timeout_s
        self._dev = None

    # -- connection --------------------------------------------------------------------------------------------------
    def connect(self) -> None:
        try:
            from adb_shell import exceptions as ax
            from adb_shell.adb_device import AdbDevice
            from adb_shell.auth.sign_pythonrsa import PythonRSASigner
        except ImportError as exc:
            raise RuntimeError("AdbShellTransport needs the adb-shell package: pip install 'adb-shell==0.4.4' "
                               "(the project's [device] extra)") from exc
        key = ensure_adb_key(self.key_path)
        signer = PythonRSASigner.FromRSAKeyPath(str(key))
        dev = AdbDevice(_eof_aware_tcp_transport(self.host, self.port),
                        default_transport_timeout_s=self.io_timeout_s)
        asked = []  # set when our public key was offered, i.e. the phone now shows its prompt
        t0 = time.monotonic()
        try:
            dev.connect(rsa_keys=[signer], transport_timeout_s=self.connect_timeout_s,
                        auth_timeout_s=self.auth_timeout_s, auth_callback=lambda _d: asked.append(True))
        except ax.DeviceAuthError as exc:
            dev.close()
            raise DeviceUnauthorized(self.serial, str(key)) from exc
        except (ax.TcpTimeoutException, ax.AdbTimeoutError, socket.timeout) as exc:
            dev.close()
            if asked:
                raise DeviceUnauthorized(self.serial, str(key), time.monotonic() - t0) from exc
            raise DeviceNotFound(self.serial, f"no ADB handshake within {self.connect_timeout_s:g} s") from exc
        except (OSError, ax.InvalidResponseError, ax.InvalidCommandError, ax.InvalidChecksumError) as exc:
            dev.close()
            raise DeviceNotFound(self.serial, f"{type(exc).__name__}: {exc}") from exc
        self._dev = dev

    def reconnect(self) -> None:
        self.close()
        self.connect()

    def close(self) -> None:
        if self._dev is not None:
            try:
                self._dev.close()
            except OSError:
                pass
            self._dev = None

    def _device(self, what: str):
        if self._dev is None:
            raise DeviceLost(self.serial, what, "not connected (call connect() / reconnect())")
        return self._dev

    def _lost(self, what: str, exc: BaseException) -> DeviceLost:
        self.close()
        return DeviceLost(self.serial, what, f"{type(exc).__name__}: {exc}")

    # -- commands ----------------------------------------------------------------------------------------------------
    def shell(self, command: str, timeout_s: float | None = None) -> ShellResult:
        from adb_shell import exceptions as ax

        dev = self._device("shell")
        token = "__AH_RC_" + uuid.uuid4().hex[:12]
        limit = float(timeout_s) if timeout_s is not None else _NO_TIMEOUT_S
        t0 = time.monotonic()
        try:
            out = dev.shell(_wrap_for_status(command, token), transport_timeout_s=limit, read_timeout_s=limit,
                            timeout_s=limit, decode=False)
        except (ax.TcpTimeoutException, ax.AdbTimeoutError) as exc:
            # A late CLSE of the abandoned stream would confuse the next command; a fresh connection also makes
            # adbd close the session (and SIGHUP / kill what it started).
            try:
                self.reconnect()
            except HarnessError as again:
                raise DeviceLost(self.serial, "shell", f"timed out, then reconnect failed: {again}") from exc
            raise CommandTimeout(self.serial, command, limit) from exc
        except (OSError, EOFError, ax.AdbConnectionError, ax.InvalidResponseError, ax.InvalidCommandError,
                ax.InvalidChecksumError) as exc:
            raise self._lost("shell", exc) from exc
        seconds = time.monotonic() - t0
        parsed = _unwrap_status(out, token)
        if parsed is None:
            raise DeviceLost(self.serial, "shell", f"output ended without an exit status: {out[-200:]!r}")
        rc, stdout, stderr = parsed
        return ShellResult(rc, stdout, stderr, seconds)

    def push(self, local: Path, remote: str, *, executable: bool = False) -> None:
        from adb_shell import exceptions as ax

        dev = self._device(f"push {remote}")
        mode = 0o100755 if executable else 0o100644
        try:
            dev.push(str(local), remote, st_mode=mode, mtime=int(os.stat(local).st_mtime))
        except ax.PushFailedError as exc:
            msg = bytes(exc.args[0]).decode("utf-8", "replace") if exc.args and isinstance(
                exc.args[0], (bytes, bytearray)) else str(exc)
            if "No space left" in msg:
                raise DeviceStorageFull(self.serial, remote, detail=msg) from exc
            raise TransferFailed(self.serial, f"push {local} -> {remote}", msg) from exc
        except (OSError, EOFError, ax.AdbConnectionError, ax.AdbTimeoutError, ax.TcpTimeoutException,
                ax.InvalidResponseError, ax.InvalidCommandError, ax.InvalidChecksumError) as exc:
            if isinstance(exc, FileNotFoundError) and not Path(local).exists():
                raise
            raise self._lost(f"push {remote}", exc) from exc

    def pull(self, remote: str, local: Path) -> None:
        from adb_shell import exceptions as ax

        dev = self._device(f"pull {remote}")
        try:
            replace_path(local, lambda tmp: dev.pull(remote, str(tmp)))
        except (ax.AdbCommandFailureException, ax.DevicePathInvalidError) as exc:
            raise TransferFailed(self.serial, f"pull {remote}", str(exc)) from exc
        except (OSError, EOFError, ax.AdbConnectionError, ax.AdbTimeoutError, ax.TcpTimeoutException,
                ax.InvalidResponseError, ax.InvalidCommandError, ax.InvalidChecksumError) as exc:
            raise self._lost(f"pull {remote}", exc) from exc


# ----------------------------------------------------------------------------------------------------------------------
# the adb binary

_LOST_PATTERNS = ("device offline", "closed", "no devices", "not found", "protocol fault", "connection reset",
                  "couldn't read from device", "broken pipe", "failed to get feature set", "transport",
                  "connection refused", "cannot connect")


@dataclass(frozen=True)
class DeviceEntry:
    """One line of ``adb devices -l``."""

    serial: str
    state: str  # device | unauthorized | offline | recovery | ...
    attrs: dict


class AdbClientTransport:
    """``AdbTransport`` on the platform-tools ``adb`` binary (through its server).

    ``server_port`` / ``home`` / ``key_path`` give a private server (``ANDROID_ADB_SERVER_PORT``), ``$HOME`` (where
    the server keeps ``.android/``) and key (``ADB_VENDOR_KEYS``); a server reads them when it starts, so an already
    running server on that port keeps its own. TCP serials (``host:port``) are ``adb connect``-ed."""

    name = "adb"

    def __init__(self, serial: str, *, adb: str = "adb", server_port: int | None = None,
                 home: str | os.PathLike | None = None, key_path: str | os.PathLike | None = None,
                 connect_timeout_s: float = 10.0, auth_timeout_s: float = 10.0, io_timeout_s: float | None = None):
        self.serial = serial
        self.adb = adb
        self.server_port = server_port
        self.home = Path(home) if home else None
        self.key_path = key_path
        self.connect_timeout_s = connect_timeout_s
        self.auth_timeout_s = auth_timeout_s
        self.io_timeout_s = io_timeout_s
        self._shell_v2 = True
        self._connected_tcp = False

    # -- plumbing ----------------------------------------------------------------------------------------------------
    def env(self) -> dict:
        env = dict(os.environ)
        if self.server_port is not None:
            env["ANDROID_ADB_SERVER_PORT"] = str(self.server_port)
        if self.home is not None:
            self.home.mkdir(parents=True, exist_ok=True)
            env["HOME"] = str(self.home)
        if self.key_path is not None:
            env["ADB_VENDOR_KEYS"] = str(ensure_adb_key(self.key_path))
        return env

    def _adb(self, *args: str, timeout_s: float | None = None, serial: bool = True) -> subprocess.CompletedProcess:
        argv = [self.adb] + (["-s", self.serial] if serial else []) + list(args)
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=timeout_s, env=self.env(),
                                  stdin=subprocess.DEVNULL)
        except FileNotFoundError as exc:
            raise HarnessError(f"the adb binary {self.adb!r} was not found: install Android platform-tools "
                               "(Debian: apt-get install adb) or pass adb=/path/to/adb") from exc
        if proc.returncode != 0 and (b"failed to start daemon" in proc.stderr
                                     or b"cannot connect to daemon" in proc.stderr):
            port = self.server_port or os.environ.get("ANDROID_ADB_SERVER_PORT", 5037)
            raise HarnessError(f"the adb server (port {port}) could not be started or reached: "
                               f"{self._msg(proc)[-600:]}\nCheck that $HOME is writable (the server keeps "
                               "$HOME/.android) and that no other program holds the port; `adb kill-server` resets it.")
        return proc

    @staticmethod
    def _msg(proc: subprocess.CompletedProcess) -> str:
        return (proc.stdout + proc.stderr).decode("utf-8", "replace").strip()

    def _classify(self, what: str, msg: str, exc_from=None):
        low = msg.lower()
        if "unauthorized" in low:
            return DeviceUnauthorized(self.serial, str(self.key_path) if self.key_path else None)
        if "no space left" in low:
            return DeviceStorageFull(self.serial, what, detail=msg)
        if any(p in low for p in _LOST_PATTERNS):
            return DeviceLost(self.serial, what, msg)
        return None

    # -- connection --------------------------------------------------------------------------------------------------
    def connect(self) -> None:
        t0 = time.monotonic()
        if _is_tcp_serial(self.serial):
            try:
                proc = self._adb("connect", self.serial, timeout_s=self.connect_timeout_s, serial=False)
            except subprocess.TimeoutExpired as exc:
                raise DeviceNotFound(self.serial, f"`adb connect` gave no answer in {self.connect_timeout_s:g} s") \
                    from exc
            msg = self._msg(proc).lower()
            if ("failed to connect" in msg or "cannot connect" in msg or "unable to connect" in msg
                    or "refused" in msg or "no route" in msg):
                raise DeviceNotFound(self.serial, self._msg(proc))
            self._connected_tcp = True
        self._wait_ready(t0)
        proc = self._adb("features", timeout_s=self.connect_timeout_s)
        if proc.returncode == 0:
            self._shell_v2 = "shell_v2" in proc.stdout.decode("utf-8", "replace").split()

    def _wait_ready(self, t0: float) -> None:
        last = ""
        while True:
            proc = self._adb("get-state", timeout_s=self.connect_timeout_s)
            state = proc.stdout.decode().strip()
            last = self._msg(proc)
            if proc.returncode == 0 and state == "device":
                return
            waited = time.monotonic() - t0
            if "unauthorized" in last.lower():
                if waited >= self.auth_timeout_s:
                    raise DeviceUnauthorized(self.serial, str(self.key_path) if self.key_path else None, waited)
            elif waited >= self.connect_timeout_s:
                raise DeviceNotFound(self.serial, last)
            time.sleep(0.1)

    def reconnect(self) -> None:
        if _is_tcp_serial(self.serial):
            self._adb("disconnect", self.serial, timeout_s=self.connect_timeout_s, serial=False)
        else:
            self._adb("reconnect", timeout_s=self.connect_timeout_s)
        self.connect()

    def close(self) -> None:
        if self._connected_tcp:
            try:
                self._adb("disconnect", self.serial, timeout_s=5, serial=False)
            except (subprocess.TimeoutExpired, HarnessError):
                pass
            self._connected_tcp = False

    def kill_server(self) -> None:
        """Stop the adb server on this transport's port (tests own a private one)."""
        try:
            self._adb("kill-server", timeout_s=10, serial=False)
        except (subprocess.TimeoutExpired, HarnessError):
            pass

    def list_devices(self) -> list[DeviceEntry]:
        """Parse ``adb devices -l`` of this transport's server."""
        proc = self._adb("devices", "-l", timeout_s=self.connect_timeout_s, serial=False)
        return parse_devices_l(proc.stdout.decode("utf-8", "replace"))

    # -- commands ----------------------------------------------------------------------------------------------------
    def shell(self, command: str, timeout_s: float | None = None) -> ShellResult:
        token = "__AH_RC_" + uuid.uuid4().hex[:12]
        sent = _wrap_for_status(command, token, stderr_to_file=not self._shell_v2)
        t0 = time.monotonic()
        try:
            proc = self._adb("shell", sent, timeout_s=timeout_s)  # run() kills the client on timeout
        except subprocess.TimeoutExpired as exc:
            raise CommandTimeout(self.serial, command, float(timeout_s)) from exc
        seconds = time.monotonic() - t0
        if proc.returncode == 255 and proc.stderr.lstrip().startswith((b"error:", b"adb: error")):
            err = self._classify("shell", self._msg(proc))
            if err is not None:
                raise err
        parsed = _unwrap_status(proc.stdout, token)
        if parsed is None:  # also what a device that vanished mid-command looks like (adb then exits 0)
            raise DeviceLost(self.serial, "shell", f"output ended without an exit status: {self._msg(proc)[-200:]!r}")
        return ShellResult(parsed[0], parsed[1], parsed[2] + proc.stderr, seconds)

    def push(self, local: Path, remote: str, *, executable: bool = False) -> None:
        try:
            proc = self._adb("push", str(local), remote, timeout_s=self.io_timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise DeviceLost(self.serial, f"push {remote}", f"no progress within {self.io_timeout_s:g} s") from exc
        if proc.returncode != 0:
            msg = self._msg(proc)
            if "no space left" in msg.lower():
                raise DeviceStorageFull(self.serial, remote, detail=msg)
            err = self._classify(f"push {remote}", msg)
            raise err if err is not None else TransferFailed(self.serial, f"push {local} -> {remote}", msg)
        if executable and not os.access(local, os.X_OK):
            self.shell(f"chmod 755 {shlex.quote(remote)}", timeout_s=30)

    def pull(self, remote: str, local: Path) -> None:
        def fetch(tmp: Path) -> None:
            try:
                proc = self._adb("pull", remote, str(tmp), timeout_s=self.io_timeout_s)
            except subprocess.TimeoutExpired as exc:
                raise DeviceLost(self.serial, f"pull {remote}", f"no progress within {self.io_timeout_s:g} s") \
                    from exc
            if proc.returncode != 0:
                msg = self._msg(proc)
                if "does not exist" in msg or "No such file" in msg or "Permission denied" in msg:
                    raise TransferFailed(self.serial, f"pull {remote}", msg)
                err = self._classify(f"pull {remote}", msg)
                raise err if err is not None else TransferFailed(self.serial, f"pull {remote}", msg)
        replace_path(local, fetch)


def parse_devices_l(text: str) -> list[DeviceEntry]:
    """``adb devices -l`` output → entries (``model:Pixel_8`` style attributes in ``attrs``)."""
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("List of devices", "*")):
            continue
        parts = line.split()
        if len(parts) < 2:
            continue
        attrs = dict(p.split(":", 1) for p in parts[2:] if ":" in p)
        entries.append(DeviceEntry(parts[0], parts[1], attrs))
    return entries
