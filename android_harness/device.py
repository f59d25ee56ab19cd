"""One Android device, at the level a benchmark wants: who is it, put files there, run the runner, get results back.

    with AndroidDevice.open(AdbClientTransport("R5CX...")) as dev:
        print(dev.info())                                   # model, device, SoC, SDK, ABI via getprop
        result = dev.run_model(host_runner_spec(python), "denoise_executorch_fp32.pte", {"input_0": x},
                               warmup=3, iterations=20, timeout_s=300)
        result.outputs["output_0"], result.timings["summary"]["median_ms"]

Device layout (default root ``/data/local/tmp/isp_bench``):

    <root>/bin/                     runner binary or script (+ lib/ for shared libraries)
    <root>/models/<model file>      models and their sidecars (<model>.io.json, <model>.onnx.data)
    <root>/inputs/<model stem>/     <input name>.npy
    <root>/runs/<run id>/           outputs/<output name>.npy and timings.json of one run (removed after pulling)

Pushes skip files whose device copy has the same sha256 (computed on the device with ``sha256sum``, which toybox
has since Android 8); each file goes to ``<name>.part`` then is renamed, so a device path is either complete or absent.
Free space is checked (``df``) before pushing. A lost connection is retried ``retries`` times (reconnect with backoff)
before ``DeviceLost`` is raised with the finished items listed. A runner past its timeout is killed on the device by pid.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import posixpath
import shlex
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from android_harness.faults import (
    CommandTimeout,
    DeviceLost,
    DeviceNotFound,
    DeviceStorageFull,
    DeviceUnauthorized,
    HarnessError,
    RunnerCrashed,
    RunnerTimeout,
)
from android_harness.transport import AdbClientTransport, AdbShellTransport, AdbTransport, DeviceEntry, ShellResult
from isp.hashing import sha256_file

log = logging.getLogger(__name__)

DEFAULT_ROOT = "/data/local/tmp/isp_bench"

# field -> getprop keys tried in order (SoC names moved between Android releases)
IDENTIFY_PROPS: dict[str, tuple[str, ...]] = {
    "model": ("ro.product.model",),
    "device": ("ro.product.device",),
    "manufacturer": ("ro.product.manufacturer",),
    "soc": ("ro.soc.model", "ro.board.platform", "ro.hardware.chipname", "ro.hardware"),
    "soc_manufacturer": ("ro.soc.manufacturer",),
    "sdk": ("ro.build.version.sdk",),
    "release": ("ro.build.version.release",),
    "abi": ("ro.product.cpu.abi",),
    "fingerprint": ("ro.build.fingerprint",),
}


@dataclass(frozen=True)
class DeviceInfo:
    """What ``getprop`` says about the device (empty string where a property is unset)."""

    serial: str
    model: str
    device: str
    manufacturer: str
    soc: str
    soc_manufacturer: str
    sdk: int | None
    release: str
    abi: str
    fingerprint: str
    transport: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class PushReport:
    """What a push did: device paths sent / skipped (same sha256 already there), bytes sent, time, retries."""

    pushed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_pushed: int = 0
    seconds: float = 0.0
    retries: int = 0

    @property
    def mb_per_s(self) -> float | None:
        return self.bytes_pushed / 1e6 / self.seconds if self.seconds > 0 and self.bytes_pushed else None


@dataclass(frozen=True)
class RunnerSpec:
    """How to start a runner on the device: the command prefix and the files it needs there.

    ``files`` are (local path, device path, executable) pushed before the run (sha256-skipped); ``env`` is exported
    for the runner only."""

    name: str
    argv: tuple[str, ...]
    files: tuple[tuple[Path, str, bool], ...] = ()
    env: tuple[tuple[str, str], ...] = ()


@dataclass
class RunResult:
    """One runner invocation: outputs by name, the timings record, where the local copies are."""

    model: str
    outputs: dict
    timings: dict
    local_dir: Path
    push: PushReport
    wall_s: float
    stdout: str
    stderr: str


def host_runner_spec(python: str, root: str = DEFAULT_ROOT) -> RunnerSpec:
    """The Python host runner: ``host_runner.py`` is pushed to ``<root>/bin`` and run by ``python`` (a device path).

    On the stand-in device that is the project venv made visible with ``--host-ro``; a phone needs a Python with numpy
    and the runtimes (e.g. Termux), which is why phones use the native runner instead."""
    script = Path(__file__).with_name("host_runner.py")
    remote = f"{root}/bin/host_runner.py"
    return RunnerSpec("host_runner.py", (python, "-u", remote), ((script, remote, False),),
                      (("PYTHONDONTWRITEBYTECODE", "1"),))


def native_runner_spec(binary: str | os.PathLike, libs: Sequence[str | os.PathLike] = (),
                       root: str = DEFAULT_ROOT) -> RunnerSpec:
    """The C++ runner (android_harness/native): the binary to ``<root>/bin``, its shared libraries to ``<root>/lib``."""
    binary = Path(binary)
    files = [(binary, f"{root}/bin/{binary.name}", True)]
    files += [(Path(lib), f"{root}/lib/{Path(lib).name}", False) for lib in libs]
    env = ((("LD_LIBRARY_PATH", f"{root}/lib"),) if libs else ())
    return RunnerSpec(binary.name, (f"{root}/bin/{binary.name}",), tuple(files), env)


def stage_inputs(inputs: Mapping[str, object] | str | os.PathLike, local_dir: str | os.PathLike) -> Path:
    """The folder of ``<input name>.npy`` a runner reads: ``inputs`` itself when it is a folder, else
    ``local_dir/inputs`` with each ``{input name: array}`` item saved there (file stem: ``sanitize_name``)."""
    if not isinstance(inputs, Mapping):
        return Path(inputs)
    import numpy as np

    from android_harness.host_runner import sanitize_name

    in_dir = Path(local_dir) / "inputs"
    in_dir.mkdir(parents=True, exist_ok=True)
    for name, arr in inputs.items():
        np.save(in_dir / (sanitize_name(name) + ".npy"), np.asarray(arr), allow_pickle=False)
    return in_dir


_HASH_CACHE: dict[tuple, str] = {}  # (resolved path, size, mtime_ns) -> sha256, for the life of the process


def _sha256_file(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        _HASH_CACHE[key] = sha256_file(path)
    return _HASH_CACHE[key]


def _q(s: str) -> str:
    return shlex.quote(str(s))


class AndroidDevice:
    """A connected device plus the policies around it (root folder, retries, free-space margin).

    ``on_retry(attempt, error)`` is called before each reconnect attempt (logging; tests use it to inject faults)."""

    def __init__(self, transport: AdbTransport, *, root: str = DEFAULT_ROOT, retries: int = 2,
                 retry_backoff_s: float = 0.5, free_space_margin_bytes: int = 16 << 20,
                 on_retry: Callable[[int, BaseException], None] | None = None):
        if not root.startswith("/") or root.rstrip("/") in ("", "/data", "/sdcard", "/data/local/tmp"):
            raise ValueError(f"root must be a dedicated absolute folder such as {DEFAULT_ROOT}, got {root!r}")
        self.transport = transport
        self.root = root.rstrip("/")
        self.retries = retries
        self.retry_backoff_s = retry_backoff_s
        self.free_space_margin_bytes = free_space_margin_bytes
        self.on_retry = on_retry
        self._info: DeviceInfo | None = None
        self._has_sha256sum: bool | None = None

    @classmethod
    def open(cls, transport: AdbTransport, **kwargs) -> "AndroidDevice":
        dev = cls(transport, **kwargs)
        dev.connect()
        return dev

    @property
    def serial(self) -> str:
        return self.transport.serial

    def connect(self) -> None:
        self.transport.connect()

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> "AndroidDevice":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- retry policy ------------------------------------------------------------------------------------------------
    def _with_retry(self, what: str, fn, completed: Sequence[str] = (), pending: Sequence[str] = ()):
        """Call ``fn``; on ``DeviceLost`` reconnect (backoff) and call again, up to ``retries`` more times."""
        last: BaseException | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                if self.on_retry is not None:
                    self.on_retry(attempt, last)
                time.sleep(self.retry_backoff_s * attempt)
                try:
                    self.transport.reconnect()
                except DeviceUnauthorized:
                    raise
                except (DeviceNotFound, DeviceLost) as exc:
                    log.warning("%s: reconnect %d/%d failed: %s", self.serial, attempt, self.retries, exc)
                    last = exc
                    continue
                log.info("%s: reconnected (attempt %d/%d), retrying %s", self.serial, attempt, self.retries, what)
            try:
                return fn()
            except DeviceLost as exc:
                last = exc
        detail = getattr(last, "detail", "") or str(last)
        raise DeviceLost(self.serial, what, detail, completed=completed, pending=pending,
                         attempts=self.retries + 1) from last

    # -- shell -------------------------------------------------------------------------------------------------------
    def shell(self, command: str, *, timeout_s: float | None = 60.0, check: bool = False,
              retry: bool = True) -> ShellResult:
        """Run a shell command (idempotent ones are retried on ``DeviceLost`` when ``retry``)."""
        call = lambda: self.transport.shell(command, timeout_s=timeout_s)  # noqa: E731
        res = self._with_retry("shell", call) if retry else call()
        if check and res.returncode != 0:
            raise HarnessError(f"`{command}` on {self.serial} exited with {res.returncode}: "
                               f"{res.stderr_tail(5) or res.text[-500:]}")
        return res

    def info(self, refresh: bool = False) -> DeviceInfo:
        """Identify the device with ``getprop`` (one round trip)."""
        if self._info is None or refresh:
            keys = sorted({k for ks in IDENTIFY_PROPS.values() for k in ks})
            cmd = "; ".join(f"echo \"{k}=$(getprop {k})\"" for k in keys)
            props = dict(line.split("=", 1) for line in self.shell(cmd, check=True).text.splitlines() if "=" in line)
            vals = {f: next((props[k] for k in ks if props.get(k, "").strip()), "").strip()
                    for f, ks in IDENTIFY_PROPS.items()}
            sdk = int(vals.pop("sdk")) if vals["sdk"].isdigit() else None
            self._info = DeviceInfo(serial=self.serial, sdk=sdk, transport=self.transport.name, **vals)
        return self._info

    def getprop(self, key: str) -> str:
        return self.shell(f"getprop {_q(key)}", check=True).text.strip()

    def free_bytes(self, path: str | None = None) -> int | None:
        """Free bytes on the file system holding ``path`` (default: root), from ``df -k``; None if unparsable."""
        path = path or self.root
        res = self.shell(f"d={_q(path)}; while [ ! -e \"$d\" ]; do d=$(dirname \"$d\"); done; df -k \"$d\"")
        lines = [ln for ln in res.text.splitlines() if ln.strip()]
        try:
            return int(lines[-1].split()[-3]) * 1024  # ... 1K-blocks Used Available Use% Mounted-on
        except (IndexError, ValueError):
            log.warning("%s: cannot parse df output %r; skipping the free-space check", self.serial, res.text)
            return None

    def remote_sha256(self, paths: Sequence[str]) -> dict[str, str]:
        """sha256 of the device files that exist (missing ones are absent from the result)."""
        if not paths or self._has_sha256sum is False:
            return {}
        found: dict[str, str] = {}
        for i in range(0, len(paths), 64):  # keep each command line short
            chunk = paths[i:i + 64]
            res = self.shell("sha256sum -- " + " ".join(_q(p) for p in chunk) + " 2>/dev/null; true")
            if res.returncode == 127 or "not found" in res.err_text:
                log.warning("%s: no sha256sum on the device; every file will be pushed", self.serial)
                self._has_sha256sum = False
                return {}
            for line in res.text.splitlines():
                digest, _, name = line.partition("  ")
                if len(digest) == 64 and name:
                    found[name.strip()] = digest
        self._has_sha256sum = True
        return found

    # -- files -------------------------------------------------------------------------------------------------------
    def push(self, files: Iterable[tuple] | Mapping, *, skip_same: bool = True) -> PushReport:
        """Push (local, device path[, executable]) items; skip the ones already there with the same sha256.

        Raises ``DeviceStorageFull`` before sending anything when ``df`` says the new bytes do not fit, or when the
        device reports ENOSPC (no partial file is left under the target name), and ``DeviceLost`` with
        ``completed`` / ``pending`` after the retries."""
        items = list(files.items()) if isinstance(files, Mapping) else list(files)
        norm = []
        for it in items:
            local, remote = Path(it[0]), str(it[1])
            executable = bool(it[2]) if len(it) > 2 else os.access(local, os.X_OK)
            if not local.is_file():
                raise FileNotFoundError(f"cannot push {local}: no such file")
            norm.append((local, remote, executable))
        report = PushReport()
        t0 = time.monotonic()
        remote_hashes = self.remote_sha256([r for _, r, _ in norm]) if skip_same else {}
        todo = []
        for local, remote, executable in norm:
            if remote_hashes.get(remote) == _sha256_file(local):
                report.skipped.append(remote)
            else:
                todo.append((local, remote, executable))
        need = sum(local.stat().st_size for local, _, _ in todo)
        if todo:
            free = self.free_bytes(posixpath.dirname(todo[0][1]))
            if free is not None and need + self.free_space_margin_bytes > free:
                raise DeviceStorageFull(self.serial, todo[0][1], need + self.free_space_margin_bytes, free,
                                        "checked with df before pushing")
        for k, (local, remote, executable) in enumerate(todo):
            pending = [r for _, r, _ in todo[k:]]
            attempts = {"n": 0}

            def once(local=local, remote=remote, executable=executable):
                attempts["n"] += 1
                self._push_one(local, remote, executable)

            self._with_retry(f"push {remote}", once, completed=report.skipped + report.pushed, pending=pending)
            report.retries += attempts["n"] - 1
            report.pushed.append(remote)
            report.bytes_pushed += local.stat().st_size
        report.seconds = time.monotonic() - t0
        return report

    def _push_one(self, local: Path, remote: str, executable: bool) -> None:
        part = remote + ".part"
        try:
            self.transport.push(local, part, executable=executable)
        except DeviceStorageFull as exc:
            try:
                self.transport.shell(f"rm -f {_q(part)}", timeout_s=30)
            except HarnessError:
                pass
            raise DeviceStorageFull(self.serial, remote, local.stat().st_size, self.free_bytes(
                posixpath.dirname(remote)), exc.detail) from exc
        res = self.transport.shell(f"mv -f {_q(part)} {_q(remote)}", timeout_s=30)
        if res.returncode != 0:
            raise HarnessError(f"renaming {part} on {self.serial} failed: {res.stderr_tail(3)}")

    def pull(self, remote: str, local: str | os.PathLike) -> Path:
        """Copy one device file to ``local`` (complete or absent)."""
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        self._with_retry(f"pull {remote}", lambda: self.transport.pull(remote, local))
        return local

    def list_dir(self, remote_dir: str) -> list[str]:
        res = self.shell(f"ls -1 {_q(remote_dir)}")
        if res.returncode != 0:
            return []
        return [ln.strip() for ln in res.text.splitlines() if ln.strip()]

    def cleanup(self, path: str | None = None) -> None:
        """Remove ``path`` (default: the whole root) on the device; only paths under the root are accepted."""
        target = (path or self.root).rstrip("/")
        if target != self.root and not target.startswith(self.root + "/"):
            raise ValueError(f"refusing to remove {target!r}: not under {self.root}")
        self.shell(f"rm -rf {_q(target)}", check=True)

    # -- processes ---------------------------------------------------------------------------------------------------
    def run(self, argv: Sequence[str], *, timeout_s: float | None, env: Iterable[tuple[str, str]] = (),
            cwd: str | None = None) -> ShellResult:
        """Run a program on the device; past ``timeout_s`` kill it by pid and raise ``RunnerTimeout``.

        The program is ``exec``-ed by a ``sh -c`` that first writes its pid to ``<root>/.pids/<id>``, so the pid
        on file is the program's own."""
        pidfile = f"{self.root}/.pids/{uuid.uuid4().hex[:12]}"
        inner = "echo $$ > " + _q(pidfile) + "; "
        if cwd:
            inner += f"cd {_q(cwd)} || exit 2; "
        inner += "".join(f"export {k}={_q(v)}; " for k, v in env)
        inner += "exec " + " ".join(_q(a) for a in argv)
        command = (f"mkdir -p {_q(posixpath.dirname(pidfile))} && sh -c {_q(inner)}; __rc=$?; "
                   f"rm -f {_q(pidfile)}; exit $__rc")
        try:
            return self.transport.shell(command, timeout_s=timeout_s)
        except CommandTimeout as exc:
            pid, killed = self._kill_pidfile(pidfile)
            raise RunnerTimeout(self.serial, " ".join(argv), exc.timeout_s, pid, killed) from exc

    def _kill_pidfile(self, pidfile: str) -> tuple[int | None, bool]:
        """SIGKILL the pid on file; (pid, whether it is gone or a zombie now)."""
        script = (f"p=$(cat {_q(pidfile)} 2>/dev/null); "
                  "if [ -n \"$p\" ]; then kill -9 $p 2>/dev/null; sleep 0.2; "
                  "s=$(grep '^State:' /proc/$p/status 2>/dev/null | cut -f2 | cut -c1); fi; "
                  f"rm -f {_q(pidfile)}; echo \"pid=$p state=$s\"")
        try:
            res = self.shell(script, timeout_s=30)
        except HarnessError as exc:
            log.warning("%s: could not kill the timed-out runner: %s", self.serial, exc)
            return None, False
        fields = dict(f.split("=", 1) for f in res.text.split() if "=" in f)
        pid = int(fields["pid"]) if fields.get("pid", "").isdigit() else None
        return pid, fields.get("state", "") in ("", "Z", "X")

    def process_state(self, pid: int) -> str:
        """``/proc/<pid>`` state letter (R, S, D, Z, ...) or "" when there is no such process."""
        res = self.shell(f"grep '^State:' /proc/{int(pid)}/status 2>/dev/null | cut -f2 | cut -c1")
        return res.text.strip()

    # -- the runner protocol -----------------------------------------------------------------------------------------
    def run_model(self, runner: RunnerSpec, model: str | os.PathLike,
                  inputs: Mapping[str, object] | str | os.PathLike, *, warmup: int = 3, iterations: int = 10,
                  timeout_s: float | None = 600.0, threads: int | None = None, extra_args: Sequence[str] = (),
                  out_dir: str | os.PathLike | None = None, keep_remote: bool = False,
                  extra_files: Sequence[str | os.PathLike] = ()) -> RunResult:
        """Push runner + model (+ sidecars) + inputs, run the runner protocol, pull outputs and timings.

        ``inputs`` is {input name: array} (written as .npy) or a folder of ``<input name>.npy``. Outputs land in
        ``out_dir`` (a new temporary folder by default) as ``outputs/<name>.npy`` and ``timings.json``.
        Raises ``RunnerCrashed`` (nonzero exit, stderr tail attached), ``RunnerTimeout`` (killed), ``DeviceLost``,
        ``DeviceStorageFull``."""
        import numpy as np

        model = Path(model)
        if not model.is_file():
            raise FileNotFoundError(f"model {model} does not exist")
        local_dir = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix=f"isp_bench_{model.stem}_"))
        local_dir.mkdir(parents=True, exist_ok=True)
        own_dir = out_dir is None
        try:
            in_dir = stage_inputs(inputs, local_dir)
            input_files = sorted(in_dir.glob("*.npy"))
            if not input_files:
                raise FileNotFoundError(f"no .npy inputs in {in_dir}")

            r_model = f"{self.root}/models/{model.name}"
            r_inputs = f"{self.root}/inputs/{model.stem}"
            run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
            r_run = f"{self.root}/runs/{run_id}"
            sidecars = [p for p in model.parent.glob(model.name + ".*") if p.is_file()] + [Path(p) for p in extra_files]
            files = list(runner.files) + [(model, r_model, False)]
            files += [(p, f"{self.root}/models/{p.name}", False) for p in sidecars]
            files += [(p, f"{r_inputs}/{p.name}", False) for p in input_files]
            push = self.push(files)

            self.shell(f"rm -rf {_q(r_run)} && mkdir -p {_q(r_run)}/outputs", check=True)
            argv = list(runner.argv) + ["--model", r_model, "--inputs", r_inputs, "--outputs", f"{r_run}/outputs",
                                        "--warmup", str(warmup), "--iterations", str(iterations),
                                        "--timings", f"{r_run}/timings.json"]
            if threads:
                argv += ["--threads", str(threads)]
            argv += list(extra_args)
            t0 = time.monotonic()
            res = self.run(argv, timeout_s=timeout_s, env=runner.env, cwd=r_run)
            wall = time.monotonic() - t0
            if res.returncode != 0:
                raise RunnerCrashed(self.serial, res.returncode, res.stderr_tail(), model.name)

            out_local = local_dir / "outputs"
            out_local.mkdir(exist_ok=True)
            outputs = {}
            timings_path = self.pull(f"{r_run}/timings.json", local_dir / "timings.json")
            timings = json.loads(timings_path.read_text())
            for entry in timings.get("outputs", []):
                f = self.pull(f"{r_run}/outputs/{entry['file']}", out_local / entry["file"])
                outputs[entry["name"]] = np.load(f, allow_pickle=False)
            if not keep_remote:
                self.shell(f"rm -rf {_q(r_run)}")
            return RunResult(model.name, outputs, timings, local_dir, push, wall, res.text, res.err_text)
        except BaseException:
            if own_dir:                    # a failed run leaves no temporary folder behind
                shutil.rmtree(local_dir, ignore_errors=True)
            raise


# ----------------------------------------------------------------------------------------------------------------------

def list_devices(*, adb: str = "adb", server_port: int | None = None,
                 home: str | os.PathLike | None = None) -> list[DeviceEntry]:
    """Devices the adb server knows (``adb devices -l``), with their state (device / unauthorized / offline)."""
    return AdbClientTransport("", adb=adb, server_port=server_port, home=home).list_devices()


def add_adb_args(p: argparse.ArgumentParser,
                 serial_help: str = "adb serial or HOST:PORT (default: the matching connected device)") -> None:
    """The CLIs' ``--serial``, ``--transport`` and ``--key``: how to reach the device (see :func:`make_transport`)."""
    p.add_argument("--serial", default=None, help=serial_help)
    p.add_argument("--transport", choices=("adb", "adb-shell"), default="adb",
                   help="adb: the platform-tools client; adb-shell: the Python package over TCP (HOST:PORT)")
    p.add_argument("--key", default=None, help="adb private key file (default ~/.android/adbkey)")


def make_transport(serial: str, kind: str = "adb", **kwargs) -> AdbTransport:
    """``kind`` "adb" (the adb binary; any serial) or "adb-shell" (PyPI package; ``host:port`` serials only)."""
    if kind == "adb":
        return AdbClientTransport(serial, **kwargs)
    if kind == "adb-shell":
        host, _, port = serial.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"adb-shell needs a host:port serial, got {serial!r}")
        return AdbShellTransport(host, int(port), **kwargs)
    raise ValueError(f"unknown transport {kind!r}; expected 'adb' or 'adb-shell'")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m android_harness.device",
                                description="Inspect and tidy an Android device used for benchmarks.")
    add_adb_args(p, serial_help="adb serial or host:port (not needed for 'list')")
    p.add_argument("--root", default=DEFAULT_ROOT, help=f"device folder (default {DEFAULT_ROOT})")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="devices the adb server knows")
    sub.add_parser("info", help="getprop identification as JSON")
    sub.add_parser("cleanup", help="remove the device folder")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list":
        for e in list_devices():
            print(f"{e.serial}\t{e.state}\t{' '.join(f'{k}:{v}' for k, v in e.attrs.items())}")
        return 0
    if not args.serial:
        print("error: --serial is required for this command", file=sys.stderr)
        return 2
    try:
        with AndroidDevice.open(make_transport(args.serial, args.transport, key_path=args.key),
                                root=args.root) as dev:
            if args.command == "info":
                print(json.dumps(dev.info().as_dict(), indent=1))
            elif args.command == "cleanup":
                dev.cleanup()
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
