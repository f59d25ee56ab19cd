"""Typed errors of the device harness.

Every error says what happened and what to do about it, so a benchmark log is actionable without the traceback.
All derive from ``HarnessError`` (a ``RuntimeError``); the classes carry the facts as attributes so callers can
branch on them (``DeviceLost.completed``, ``RunnerCrashed.returncode`` ...).
"""
from __future__ import annotations

from typing import Sequence


class HarnessError(RuntimeError):
    """Base class of every error raised by ``android_harness``."""


class DeviceMismatch(RuntimeError):
    """The connected device is not the one the profile describes (or several / none match). A usage error, not a
    device fault, hence not a :class:`HarnessError` (``runtime_py.devices`` re-exports it)."""


class DeviceNotFound(HarnessError):
    """Nothing answers at the device address / serial."""

    def __init__(self, serial: str, detail: str = ""):
        self.serial = serial
        self.detail = detail
        super().__init__(
            f"no Android device answers at {serial!r}{': ' + detail if detail else ''}. "
            "Check the cable or the network address, that USB/wireless debugging is on, and `adb devices`; "
            "for a TCP device run `adb connect HOST:PORT` (or `adb tcpip 5555` first over USB)."
        )


class DeviceUnauthorized(HarnessError):
    """The device answered but did not accept this host's RSA key within the timeout."""

    def __init__(self, serial: str, key_path: str | None = None, waited_s: float | None = None):
        self.serial = serial
        self.key_path = key_path
        self.waited_s = waited_s
        waited = f" within {waited_s:.1f} s" if waited_s is not None else ""
        key = f" (host key: {key_path})" if key_path else ""
        super().__init__(
            f"device {serial!r} did not authorize this host{waited}{key}. "
            "Unlock the phone and accept the 'Allow USB debugging?' prompt (tick 'Always allow'), "
            "or add the host's adbkey.pub to the device's adb_keys; then retry."
        )


class DeviceLost(HarnessError):
    """The connection dropped mid-operation and could not be re-established.

    ``completed`` lists what finished before the loss (device paths pushed or skipped, results pulled); it stays valid
    and a retry skips it. ``pending`` lists what did not finish."""

    def __init__(self, serial: str, during: str, detail: str = "", completed: Sequence[str] = (),
                 pending: Sequence[str] = (), attempts: int = 1):
        self.serial = serial
        self.during = during
        self.detail = detail
        self.completed = list(completed)
        self.pending = list(pending)
        self.attempts = attempts
        done = f"; {len(self.completed)} item(s) finished before the loss and are kept" if self.completed else ""
        super().__init__(
            f"lost device {serial!r} during {during} after {attempts} attempt(s)"
            f"{': ' + detail if detail else ''}{done}. "
            "Check the cable / Wi-Fi and that the phone did not reboot or sleep, then rerun: "
            "finished transfers are skipped by their sha256."
        )


class DeviceStorageFull(HarnessError):
    """The device has not enough free space for a push. No partial file is left under the target name."""

    def __init__(self, serial: str, path: str, needed_bytes: int | None = None, free_bytes: int | None = None,
                 detail: str = ""):
        self.serial = serial
        self.path = path
        self.needed_bytes = needed_bytes
        self.free_bytes = free_bytes
        self.detail = detail
        sizes = ""
        if needed_bytes is not None and free_bytes is not None:
            sizes = f" (needs {needed_bytes / 2**20:.1f} MiB, {free_bytes / 2**20:.1f} MiB free)"
        super().__init__(
            f"device {serial!r} storage is full while writing {path}{sizes}{': ' + detail if detail else ''}. "
            "Free space on the phone (remove old runs with AndroidDevice.cleanup() or `adb shell rm -r "
            "/data/local/tmp/isp_bench`), or push fewer / smaller models."
        )


class TransferFailed(HarnessError):
    """A push or pull failed for a reason other than a lost device or full storage (bad path, permission)."""

    def __init__(self, serial: str, what: str, detail: str):
        self.serial = serial
        self.what = what
        self.detail = detail
        super().__init__(f"{what} on {serial!r} failed: {detail}. Check the paths and their permissions.")


class CommandTimeout(HarnessError):
    """A device shell command did not finish in time."""

    def __init__(self, serial: str, command: str, timeout_s: float):
        self.serial = serial
        self.command = command
        self.timeout_s = timeout_s
        super().__init__(
            f"command on {serial!r} did not finish within {timeout_s:g} s: {_short(command)}. "
            "Raise the timeout if the work is legitimately long, otherwise look for a hang."
        )


class RunnerCrashed(HarnessError):
    """The device-side runner exited with a nonzero status (see runner_protocol.md for the codes)."""

    def __init__(self, serial: str, returncode: int, stderr_tail: str, model: str = ""):
        self.serial = serial
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        self.model = model
        meaning = RUNNER_EXIT_MEANINGS.get(returncode)
        if meaning is None and returncode > 128:
            meaning = f"killed by signal {returncode - 128}"
        super().__init__(
            f"runner for {model or 'the model'} on {serial!r} exited with {returncode}"
            f"{' (' + meaning + ')' if meaning else ''}. "
            "Read the stderr tail below; rerun by hand with `adb shell` to reproduce.\n"
            f"--- stderr tail ---\n{stderr_tail.rstrip()}"
        )


class RunnerTimeout(CommandTimeout):
    """The runner did not finish in time; it was killed on the device (``killed`` says whether that worked)."""

    def __init__(self, serial: str, command: str, timeout_s: float, pid: int | None, killed: bool):
        self.pid = pid
        self.killed = killed
        HarnessError.__init__(
            self,
            f"runner on {serial!r} did not finish within {timeout_s:g} s and was "
            f"{'killed' if killed else 'NOT confirmed killed'} (pid {pid}): {_short(command)}. "
            "Raise the timeout or lower --iterations for slow models; if it hangs, run it by hand with `adb shell`."
            + ("" if killed else " Check `adb shell ps -A | grep runner` and kill it before benchmarking again."),
        )
        self.serial = serial
        self.command = command
        self.timeout_s = timeout_s


# Exit codes of the runner protocol (runner_protocol.md); shared by host_runner.py and the native runner.
RUNNER_EXIT_MEANINGS = {
    2: "bad command line",
    3: "model failed to load",
    4: "inputs missing or not matching the model",
    5: "inference failed",
    6: "could not write outputs or timings",
    7: "runtime for this model format is not available",
}


def _short(command: str, limit: int = 200) -> str:
    return command if len(command) <= limit else command[:limit] + " ..."
