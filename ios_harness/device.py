"""The iPhone as a benchmark device: the Core ML runner app driven through ``xcrun devicectl`` or ``ios-deploy``
(:class:`IosDevice`, at the level ``runtime_py.bench`` uses an ``AndroidDevice``), and :func:`open_ios_device`.

The protocol, the tools' commands and the failure mapping are described in :mod:`ios_harness.driver` (the CLI).
This module sits below :mod:`runtime_py` (it imports only ``android_harness`` and ``isp``), so the benchmark can open an
iPhone through its table of device openers without importing the CLI that, in turn, starts the benchmark.
"""
from __future__ import annotations

import json
import logging
import os
import posixpath
import shlex
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from android_harness.device import DeviceInfo, PushReport, RunResult, RunnerSpec, stage_inputs
from android_harness.faults import (DeviceLost, DeviceMismatch, DeviceNotFound, DeviceStorageFull,
                                    DeviceUnauthorized, HarnessError, RunnerCrashed, RunnerTimeout, TransferFailed)
from isp.atomic import replace_path
from isp.hashing import sha256_file

log = logging.getLogger("ios_harness.driver")

__all__ = ["BUNDLE_ID", "DEVICE_ROOT", "IosDeviceEntry", "DevicectlTool", "IosDeployTool", "IosDevice", "TOOLS",
           "make_tool", "list_ios_devices", "open_ios_device", "compute_units_for"]

BUNDLE_ID = "org.modularisp.IspBenchRunner"
DEVICE_ROOT = "Documents/isp_bench"          # inside the app's data container
INDEX = ".pushed.json"
#: profile delegate (runtime_py.devices) -> the runner's --compute-units
COMPUTE_UNITS = {"ane": "cpu_and_ne", "cpu_and_ne": "cpu_and_ne", "neural_engine": "cpu_and_ne", "all": "all",
                 "gpu": "cpu_and_gpu", "cpu_and_gpu": "cpu_and_gpu", "cpu": "cpu_only", "cpu_only": "cpu_only"}

Run = Callable[[Sequence[str], float | None], subprocess.CompletedProcess]


def _subprocess_run(argv: Sequence[str], timeout_s: float | None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise HarnessError(f"{argv[0]} was not found: driving an iPhone needs macOS with Xcode 15+ (xcrun devicectl) "
                           f"or ios-deploy (brew install ios-deploy) — nothing iOS runs on Linux") from exc


def compute_units_for(delegate: str | None) -> str:
    """A profile delegate (``ane``, ``cpu_and_gpu`` …) as the runner's ``--compute-units``."""
    return COMPUTE_UNITS.get(str(delegate or "all").lower(), "all")


@dataclass(frozen=True)
class IosDeviceEntry:
    udid: str
    name: str
    product_type: str                 # iPhone16,1
    model: str                        # iPhone 15 Pro (marketing name, when the tool reports it)
    os_version: str
    state: str                        # connected | available | unavailable | ...


# ====================================================================================================== tools

def _classify(serial: str, what: str, proc: subprocess.CompletedProcess) -> HarnessError:
    text = f"{proc.stdout or ''}\n{proc.stderr or ''}".strip()
    low = text.lower()
    if "locked" in low or "passcode" in low:
        return HarnessError(f"{what} on {serial}: the iPhone is locked. Unlock it (and keep it awake) and retry. "
                            f"({text[-300:]})")
    if "not paired" in low or "pairing" in low or "trust" in low:
        return DeviceUnauthorized(serial)
    if "no space" in low or "insufficient storage" in low or "disk full" in low:
        return DeviceStorageFull(serial, what, detail=text[-300:])
    if "disconnected" in low or "connection was interrupted" in low or "lost connection" in low:
        return DeviceLost(serial, what, text[-300:])
    if "no devices" in low or "device not found" in low or "unable to find device" in low or \
            "could not find" in low and "device" in low:
        return DeviceNotFound(serial, text[-300:])
    return TransferFailed(serial, what, text[-500:] or f"exit status {proc.returncode}")


class DevicectlTool:
    """``xcrun devicectl`` (Xcode 15 and later)."""

    name = "devicectl"

    def __init__(self, xcrun: str = "xcrun") -> None:
        self.base = [xcrun, "devicectl"]

    def list_cmd(self, json_path: str) -> list[str]:
        return self.base + ["list", "devices", "--json-output", json_path]

    @staticmethod
    def parse_list(data: Mapping[str, Any]) -> list[IosDeviceEntry]:
        out = []
        for d in (data.get("result") or {}).get("devices", []):
            hw = d.get("hardwareProperties") or {}
            dp = d.get("deviceProperties") or {}
            cp = d.get("connectionProperties") or {}
            out.append(IosDeviceEntry(udid=str(hw.get("udid") or d.get("identifier") or ""),
                                      name=str(dp.get("name") or ""), product_type=str(hw.get("productType") or ""),
                                      model=str(hw.get("marketingName") or ""),
                                      os_version=str(dp.get("osVersionNumber") or ""),
                                      state=str(cp.get("tunnelState") or d.get("visibilityClass") or "")))
        return out

    def install_cmd(self, udid: str, app: str) -> list[str]:
        return self.base + ["device", "install", "app", "--device", udid, app]

    def copy_to_cmd(self, udid: str, bundle: str, local: str, remote: str) -> list[str]:
        return self.base + ["device", "copy", "to", "--device", udid, "--domain-type", "appDataContainer",
                            "--domain-identifier", bundle, "--source", local, "--destination", remote]

    def copy_from_cmd(self, udid: str, bundle: str, remote: str, local: str) -> list[str]:
        return self.base + ["device", "copy", "from", "--device", udid, "--domain-type", "appDataContainer",
                            "--domain-identifier", bundle, "--source", remote, "--destination", local]

    def launch_cmd(self, udid: str, bundle: str, args: Sequence[str], app: str | None = None) -> list[str]:
        return self.base + ["device", "process", "launch", "--device", udid, "--terminate-existing", "--console",
                            bundle, "--"] + list(args)


class IosDeployTool:
    """``ios-deploy`` (needs the .app bundle to launch: it runs the app under lldb and waits for its exit)."""

    name = "ios-deploy"

    def __init__(self, binary: str = "ios-deploy") -> None:
        self.base = [binary]

    def list_cmd(self, json_path: str) -> list[str]:
        return self.base + ["--detect", "--json", "--timeout", "3"]

    @staticmethod
    def parse_list(data: Any) -> list[IosDeviceEntry]:
        events = data if isinstance(data, list) else [data]
        out = []
        for e in events:
            if not isinstance(e, Mapping) or e.get("Event") != "DeviceDetected":
                continue
            d = e.get("Device") or {}
            out.append(IosDeviceEntry(udid=str(d.get("DeviceIdentifier", "")), name=str(d.get("DeviceName", "")),
                                      product_type=str(d.get("ProductType", "")), model=str(d.get("modelName", "")),
                                      os_version=str(d.get("ProductVersion", "")), state="connected"))
        return out

    def install_cmd(self, udid: str, app: str) -> list[str]:
        return self.base + ["--id", udid, "--bundle", app]

    def copy_to_cmd(self, udid: str, bundle: str, local: str, remote: str) -> list[str]:
        return self.base + ["--id", udid, "--bundle_id", bundle, "--upload", local, "--to", "/" + remote.lstrip("/")]

    def copy_from_cmd(self, udid: str, bundle: str, remote: str, local: str) -> list[str]:
        return self.base + ["--id", udid, "--bundle_id", bundle, "--download=/" + remote.lstrip("/"), "--to", local]

    def launch_cmd(self, udid: str, bundle: str, args: Sequence[str], app: str | None = None) -> list[str]:
        if not app:
            raise HarnessError("ios-deploy launches an app from its .app bundle: pass --app PATH/IspBenchRunner.app "
                               "(or use --tool devicectl)")
        return self.base + ["--id", udid, "--bundle", app, "--noinstall", "--noninteractive", "--args",
                            " ".join(shlex.quote(a) for a in args)]


TOOLS = {"devicectl": DevicectlTool, "ios-deploy": IosDeployTool}


def make_tool(name: str):
    if name not in TOOLS:
        raise ValueError(f"unknown iOS tool {name!r}; use devicectl (Xcode 15+) or ios-deploy")
    return TOOLS[name]()


def list_ios_devices(tool, run: Run | None = None) -> list[IosDeviceEntry]:
    run = run or _subprocess_run
    with tempfile.TemporaryDirectory(prefix="ios_list_") as tmp:
        path = os.path.join(tmp, "devices.json")
        proc = run(tool.list_cmd(path), 60)
        if isinstance(tool, DevicectlTool):
            if proc.returncode != 0:
                raise _classify("(any)", "listing devices", proc)
            try:
                data = json.loads(Path(path).read_text())
            except (OSError, ValueError) as exc:
                raise HarnessError(f"devicectl wrote no readable device list: {exc}; {proc.stderr[-300:]}") from exc
        else:
            data = []
            for line in (proc.stdout or "").splitlines():     # one JSON object per line (or concatenated)
                line = line.strip()
                if line.startswith("{"):
                    try:
                        data.append(json.loads(line))
                    except ValueError:
                        pass
    return tool.parse_list(data)


# ====================================================================================================== device

class IosDevice:
    """The connected iPhone with the runner app, at the level ``runtime_py.bench`` uses an ``AndroidDevice``:
    ``info``, ``push`` (sha256 skip), ``run_model`` (the runner protocol), ``run_sets`` (a batch of input sets),
    ``pull``, ``close``. Paths on the device are relative to the app's data container (``Documents/...``)."""

    def __init__(self, udid: str, tool, *, bundle_id: str = BUNDLE_ID, app: str | os.PathLike | None = None,
                 root: str = DEVICE_ROOT, run: Run | None = None, entry: IosDeviceEntry | None = None,
                 retries: int = 1, copy_timeout_s: float = 300.0) -> None:
        if not root.startswith("Documents/"):
            raise ValueError(f"the device root must be inside the app's Documents folder, got {root!r}")
        self.serial = udid
        self.tool = tool
        self.bundle_id = bundle_id
        self.app = str(app) if app else None
        self.root = root.rstrip("/")
        self._run = run or _subprocess_run      # looked up now, so tests can replace the module's runner
        self.entry = entry
        self.retries = retries
        self.copy_timeout_s = copy_timeout_s
        self._index: dict[str, str] | None = None
        self.transport = self                    # bench's reconnect hook: nothing to reconnect with these tools

    # -- plumbing ----------------------------------------------------------------------------------------------------
    def reconnect(self) -> None:
        pass

    def close(self) -> None:
        pass

    def _call(self, what: str, argv: Sequence[str], timeout_s: float | None) -> subprocess.CompletedProcess:
        log.debug("%s: %s", self.serial, " ".join(shlex.quote(a) for a in argv))
        proc = self._run(argv, timeout_s)
        if proc.returncode != 0:
            raise _classify(self.serial, what, proc)
        return proc

    def info(self) -> DeviceInfo:
        e = self.entry
        return DeviceInfo(serial=self.serial, model=(e.model or e.product_type) if e else "", device=e.product_type
                          if e else "", manufacturer="Apple", soc="", soc_manufacturer="Apple", sdk=None,
                          release=e.os_version if e else "", abi="arm64", fingerprint=e.os_version if e else "",
                          transport=self.tool.name)

    def install(self, app: str | os.PathLike | None = None) -> None:
        app = str(app or self.app or "")
        if not app or not Path(app).exists():
            raise HarnessError(f"no runner app bundle at {app!r}: build ios_harness/IspBenchRunner (README) and pass "
                               f"--app PATH/IspBenchRunner.app")
        self._call("install", self.tool.install_cmd(self.serial, app), 600)
        self._index = {}                         # a fresh install has an empty container

    # -- files -------------------------------------------------------------------------------------------------------
    def _copy_to(self, local: Path, remote: str) -> None:
        self._call(f"push {remote}", self.tool.copy_to_cmd(self.serial, self.bundle_id, str(local), remote),
                   self.copy_timeout_s)

    def _copy_from(self, remote: str, local: Path) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        self._call(f"pull {remote}", self.tool.copy_from_cmd(self.serial, self.bundle_id, remote, str(local)),
                   self.copy_timeout_s)

    def _load_index(self) -> dict[str, str]:
        if self._index is None:
            with tempfile.TemporaryDirectory(prefix="ios_idx_") as tmp:
                local = Path(tmp) / INDEX
                try:
                    self._copy_from(f"{self.root}/{INDEX}", local)
                    self._index = json.loads(local.read_text()) if local.is_file() else {}
                except (TransferFailed, ValueError):
                    self._index = {}             # no index yet (first push since install)
        return self._index

    def push(self, files: Sequence[tuple]) -> PushReport:
        """Push ``(local, remote[, executable])`` items (a local folder is pushed file by file under ``remote``);
        items whose sha256 the device index already records are skipped."""
        report = PushReport()
        t0 = time.monotonic()
        index = self._load_index()
        changed = False
        for item in files:
            local, remote = Path(item[0]), str(item[1])
            pairs = ([(f, posixpath.join(remote, f.relative_to(local).as_posix()))
                      for f in sorted(local.rglob("*")) if f.is_file()] if local.is_dir() else [(local, remote)])
            for f, r in pairs:
                digest = sha256_file(f)
                if index.get(r) == digest:
                    report.skipped.append(r)
                    continue
                self._copy_to(f, r)
                index[r] = digest
                changed = True
                report.pushed.append(r)
                report.bytes_pushed += f.stat().st_size
        if changed:
            with tempfile.TemporaryDirectory(prefix="ios_idx_") as tmp:
                p = Path(tmp) / INDEX
                p.write_text(json.dumps(index, indent=0, sort_keys=True))
                self._copy_to(p, f"{self.root}/{INDEX}")
        report.seconds = time.monotonic() - t0
        return report

    def pull(self, remote: str, local: str | os.PathLike) -> Path:
        def fetch(tmp: Path) -> None:
            self._copy_from(remote, tmp)
            if not tmp.exists():
                raise TransferFailed(self.serial, f"pull {remote}", "the tool reported success but wrote nothing")
        return replace_path(local, fetch)

    # -- the runner ----------------------------------------------------------------------------------------------------
    def _rel(self, remote: str) -> str:
        """A container path as the app sees it: relative to its Documents folder."""
        return remote[len("Documents/"):] if remote.startswith("Documents/") else remote

    def _launch(self, args: Sequence[str], timeout_s: float | None) -> subprocess.CompletedProcess:
        argv = self.tool.launch_cmd(self.serial, self.bundle_id, list(args), self.app)
        try:
            return self._run(argv, timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise RunnerTimeout(self.serial, " ".join(args), float(timeout_s or 0), None, False) from exc

    def _collect(self, run_dir: str, timings_name: str, local: Path, proc: subprocess.CompletedProcess,
                 model: str) -> dict:
        """Pull ``timings.json`` (or the error record) of a run; RunnerCrashed when the run did not complete."""
        try:
            t = self.pull(f"{run_dir}/{timings_name}", local / "timings.json")
            return json.loads(t.read_text())
        except TransferFailed:
            pass
        try:
            e = self.pull(f"{run_dir}/{timings_name}.error.json", local / "error.json")
            err = json.loads(e.read_text())
            raise RunnerCrashed(self.serial, int(err.get("code", 1)), str(err.get("message", "")), model)
        except TransferFailed:
            tail = f"{proc.stdout or ''}\n{proc.stderr or ''}".strip()[-2000:]
            raise RunnerCrashed(self.serial, proc.returncode or 1, tail or "the app wrote neither timings nor an "
                                "error record (did it start? is the iPhone unlocked?)", model) from None

    def run_model(self, runner: RunnerSpec | None, model: str | os.PathLike, inputs, *, warmup: int = 3,
                  iterations: int = 10, timeout_s: float | None = 600.0, threads: int | None = None,
                  extra_args: Sequence[str] = (), out_dir: str | os.PathLike | None = None,
                  keep_remote: bool = False, extra_files: Sequence[str | os.PathLike] = ()) -> RunResult:
        """Push model + inputs, launch the app with the protocol flags, pull outputs and timings (the same contract
        as ``AndroidDevice.run_model``; ``runner`` is unused: the app is the runner)."""
        import numpy as np

        model = Path(model)
        local_dir = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix=f"ios_{model.stem}_"))
        local_dir.mkdir(parents=True, exist_ok=True)
        in_dir = stage_inputs(inputs, local_dir)
        r_model = f"{self.root}/models/{model.name}"
        r_inputs = f"{self.root}/inputs/{model.stem}"
        push = self.push([(model, r_model)] + [(p, f"{r_inputs}/{p.name}") for p in sorted(in_dir.glob("*.npy"))])
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        r_run = f"{self.root}/runs/{run_id}"
        args = ["--model", self._rel(r_model), "--inputs", self._rel(r_inputs), "--outputs",
                self._rel(f"{r_run}/outputs"), "--warmup", str(warmup), "--iterations", str(iterations),
                "--timings", self._rel(f"{r_run}/timings.json")] + list(extra_args)
        t0 = time.monotonic()
        proc = self._launch(args, timeout_s)
        wall = time.monotonic() - t0
        timings = self._collect(r_run, "timings.json", local_dir, proc, model.name)
        outputs = {}
        (local_dir / "outputs").mkdir(exist_ok=True)
        for entry in timings.get("outputs", []):
            f = self.pull(f"{r_run}/outputs/{entry['file']}", local_dir / "outputs" / entry["file"])
            outputs[entry["name"]] = np.load(f, allow_pickle=False)
        return RunResult(model.name, outputs, timings, local_dir, push, wall, proc.stdout or "", proc.stderr or "")

    def run_sets(self, model: str | os.PathLike, sets_dir: str | os.PathLike, *, warmup: int = 1,
                 iterations: int = 1, timeout_s: float | None = 600.0, extra_args: Sequence[str] = (),
                 out_dir: str | os.PathLike) -> tuple[list[dict], list[float], str | None]:
        """Every set folder of ``sets_dir`` through ``model`` in one launch (the runner's batch mode):
        ``(outputs per set {name: array}, timed ms per set, backend)``."""
        import numpy as np

        model, sets_dir, out_dir = Path(model), Path(sets_dir), Path(out_dir)
        names = sorted(p.name for p in sets_dir.iterdir() if p.is_dir())
        r_model = f"{self.root}/models/{model.name}"
        r_sets = f"{self.root}/inputs/sets-{model.stem}"
        self.push([(model, r_model)] + [(sets_dir / n / f.name, f"{r_sets}/{n}/{f.name}")
                                        for n in names for f in sorted((sets_dir / n).glob("*.npy"))])
        r_run = f"{self.root}/runs/sets-{uuid.uuid4().hex[:6]}"
        args = ["--model", self._rel(r_model), "--inputs", self._rel(r_sets), "--outputs", self._rel(f"{r_run}/out"),
                "--warmup", str(warmup), "--iterations", str(iterations), "--timings",
                self._rel(f"{r_run}/timings.json")] + list(extra_args)
        proc = self._launch(args, timeout_s)
        timings = self._collect(r_run, "timings.json", out_dir, proc, model.name)
        outs, ms = [], []
        for s in timings.get("sets", []):
            arrays = {}
            for o in s["outputs"]:
                f = self.pull(f"{r_run}/out/{s['name']}/{o['file']}", out_dir / s["name"] / o["file"])
                arrays[o["name"]] = np.load(f, allow_pickle=False)
            outs.append(arrays)
            ms.append(float(s["iteration_ms"][0]) if s.get("iteration_ms") else float("nan"))
        return outs, ms, timings.get("backend")


def open_ios_device(profile, udid: str | None = None, *, tool: str = "devicectl", app: str | None = None,
                    root: str | None = None, run: Run | None = None, allow_mismatch: bool = False,
                    install: bool = False) -> IosDevice:
    """The connected iPhone for ``profile`` (``runtime_py.devices``): ``udid`` checked against it, or the one
    matching device. ``install`` (re)installs the runner app from ``app`` first."""
    t = make_tool(tool)
    entries = [e for e in list_ios_devices(t, run) if e.state not in ("unavailable", "disconnected")]
    if udid:
        entry = next((e for e in entries if e.udid == udid), None)
        if entry is None:
            raise DeviceNotFound(udid, f"{tool} lists {', '.join(e.udid for e in entries) or 'no device'}; connect "
                                       f"the iPhone, unlock it and trust this Mac")
        if not allow_mismatch and not (profile.matches(entry.product_type) or profile.matches(entry.model)):
            raise DeviceMismatch(f"device {udid} is a {entry.model or entry.product_type}, not a "
                                 f"{profile.display_name or profile.name} (profile {profile.name} expects "
                                 f"{' or '.join(profile.models)}); pass --allow-mismatch to use it anyway")
    else:
        if not entries:
            raise DeviceNotFound("(any)", f"{tool} lists no iPhone: connect it by USB (or pair it for Wi-Fi), unlock "
                                          f"it and accept 'Trust This Computer'")
        matching = [e for e in entries if profile.matches(e.product_type) or profile.matches(e.model)]
        if len(matching) != 1:
            listed = "; ".join(f"{e.udid} ({e.model or e.product_type})" for e in entries)
            raise DeviceMismatch(f"{len(matching)} connected iPhones match profile {profile.name}; connected: "
                                 f"{listed}. Pass --serial UDID.")
        entry = matching[0]
    dev = IosDevice(entry.udid, t, app=app, root=root or profile.work_dir, run=run, entry=entry)
    if install:
        dev.install()
    return dev
