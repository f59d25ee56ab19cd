"""Capture a raw photo on an Android phone over adb and bring the DNG back, checked.

    python -m runtime_py.capture --device pixel8 [--serial S] [--transport adb|adb-shell] -o DIR [--name NAME]
           [--camera-id ID] [--iso N] [--exposure-ns N] [--timeout-s 60]

Flow:

1. connect to the device of the profile (:func:`runtime_py.devices.open_android_device`: the one matching device,
   or ``--serial`` checked against the profile);
2. start the capture: with ``am`` on the device (a phone), the capture app of ``android_harness/app``::

       pm grant <package> android.permission.CAMERA
       appops set <package> MANAGE_EXTERNAL_STORAGE allow
       am start -W -n <package>/.CaptureActivity --es output /sdcard/DCIM/isp_capture/<name>.dng \\
                [--es camera_id ID] [--ei iso N] [--el exposure_ns N]

   Extras of ``CaptureActivity``: ``output`` (string, required: absolute path of the DNG, ``.dng``),
   ``camera_id`` (string: a Camera2 id; default the first back camera with RAW capability), ``iso`` (int,
   SENSOR_SENSITIVITY) and ``exposure_ns`` (long, SENSOR_EXPOSURE_TIME) — both or neither: manual exposure
   instead of auto-exposure. Without ``am`` (the stand-in device) the same command line runs the pushed
   ``isp_capture`` script (``android_harness/app/stand_in/isp_capture.sh``), which copies a DNG from
   ``--fake-source`` (a host folder the stand-in device sees through ``fakeadbd.py --host-ro``; ``--fake-name``
   picks the file) instead of using a camera;
3. wait (polling every ``--poll-s``, up to ``--timeout-s``) for the app's file protocol: ``<output>`` appears
   complete (it is written as ``.<name>.dng.pending`` and renamed), ``<output>.json`` holds the capture metadata,
   ``<output>.error`` a failure message;
4. pull DNG and metadata, check the DNG's sha256 against the device's and that it decodes with
   :func:`isp.io.dng.read_dng`, then publish ``DIR/<name>.dng`` and ``DIR/<name>.json`` atomically (temporary name
   + rename; a capture that fails any check leaves nothing under the final names);
5. remove the device copy unless ``--keep-on-device``.

The metadata written next to the DNG: the app's (or stand-in's) sidecar under ``"device_sidecar"``, the device
identification (getprop), how it was started (``"launcher": "am"`` or ``"isp_capture"``), the sha256, and what
``read_dng`` found (size, CFA, make/model, ISO, exposure, white balance).

Exit codes: 0 done; 2 bad arguments / profile / mismatch; 3 device fault (not found, unauthorized, lost, full);
4 the capture failed or timed out; 5 the pulled file is not a readable DNG.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from android_harness.faults import HarnessError
from isp.hashing import sha256_file

log = logging.getLogger(__name__)

__all__ = ["CAPTURE_PACKAGE", "CAPTURE_ACTIVITY", "DEVICE_DIR", "STAND_IN_SCRIPT", "CaptureError", "CaptureResult",
           "capture_command", "capture", "build_parser", "main"]

CAPTURE_PACKAGE = "org.modularisp.capture"
CAPTURE_ACTIVITY = ".CaptureActivity"
DEVICE_DIR = "/sdcard/DCIM/isp_capture"
STAND_IN_SCRIPT = Path(__file__).resolve().parents[1] / "android_harness" / "app" / "stand_in" / "isp_capture.sh"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")


class CaptureError(RuntimeError):
    """The capture did not produce a usable DNG (the app reported an error, it timed out, or the file is bad)."""

    def __init__(self, message: str, code: int = 4):
        super().__init__(message)
        self.code = code


@dataclass
class CaptureResult:
    dng: Path
    metadata_path: Path
    metadata: dict
    seconds: float


def capture_command(launcher: str, output: str, *, package: str = CAPTURE_PACKAGE, camera_id: str | None = None,
                    iso: int | None = None, exposure_ns: int | None = None,
                    extra: Sequence[tuple[str, str, str]] = ()) -> list[str]:
    """The ``am start`` argument list (``launcher`` = ``"am"`` or the stand-in script's device path)."""
    argv = [launcher, "start", "-W", "-n", f"{package}/{CAPTURE_ACTIVITY}", "--es", "output", output]
    if camera_id is not None:
        argv += ["--es", "camera_id", str(camera_id)]
    if iso is not None:
        argv += ["--ei", "iso", str(int(iso))]
    if exposure_ns is not None:
        argv += ["--el", "exposure_ns", str(int(exposure_ns))]
    for kind, key, value in extra:
        argv += [kind, key, value]
    return argv


def _q(s: str) -> str:
    return shlex.quote(str(s))


def _dng_summary(path: Path) -> dict[str, Any]:
    """Decode with the project's reader (raises ValueError for anything that is not a usable DNG)."""
    from isp.io.dng import read_dng

    img = read_dng(path)
    h, w = img.shape
    return {"height": h, "width": w, "cfa": img.cfa, "make": img.make, "model": img.model, "iso": img.iso,
            "exposure_time_s": img.exposure_time, "f_number": img.f_number, "focal_length_mm": img.focal_length,
            "white_level": img.white_level, "black_level": list(img.black_level),
            "as_shot_neutral": [float(v) for v in img.as_shot_neutral], "orientation": img.orientation}


def _has_am(dev) -> bool:
    res = dev.shell("command -v am >/dev/null 2>&1 && echo yes || echo no")
    return res.text.strip().endswith("yes")


def capture(dev, out_dir: str | os.PathLike, name: str | None = None, *, package: str = CAPTURE_PACKAGE,
            camera_id: str | None = None, iso: int | None = None, exposure_ns: int | None = None,
            timeout_s: float = 60.0, poll_s: float = 0.25, device_dir: str = DEVICE_DIR,
            fake_source: str | os.PathLike | None = None, fake_name: str | None = None,
            keep_on_device: bool = False, force_stand_in: bool = False) -> CaptureResult:
    """Capture one DNG on ``dev`` (an open ``AndroidDevice``) into ``out_dir`` (see the module docstring)."""
    t0 = time.monotonic()
    name = name or time.strftime("isp_%Y%m%d_%H%M%S")
    if name.endswith(".dng"):
        name = name[:-4]
    if not _NAME_RE.match(name):
        raise CaptureError(f"capture name {name!r}: use letters, digits, '.', '_' and '-' only", code=2)
    if (iso is None) != (exposure_ns is None):
        raise CaptureError("give --iso and --exposure-ns together (manual exposure) or neither (auto)", code=2)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final_dng, final_meta = out_dir / f"{name}.dng", out_dir / f"{name}.json"
    remote = f"{device_dir.rstrip('/')}/{name}.dng"

    use_am = not force_stand_in and _has_am(dev)
    if use_am:
        launcher = "am"
        for cmd in (f"pm grant {_q(package)} android.permission.CAMERA",
                    f"appops set {_q(package)} MANAGE_EXTERNAL_STORAGE allow"):
            res = dev.shell(cmd)
            if res.returncode != 0:
                log.warning("%s: `%s` failed (%s); the app may ask for the permission on screen", dev.serial, cmd,
                            res.stderr_tail(2) or res.text.strip())
        extra: list[tuple[str, str, str]] = []
        env = ""
    else:
        launcher = f"{dev.root}/bin/isp_capture"
        if fake_source is None:
            from isp import paths
            fake_source = paths.dng_dir()
        fake_source = str(fake_source)
        dev.push([(STAND_IN_SCRIPT, launcher, True)])
        probe = dev.shell(f"test -e {_q(fake_source)} && echo yes || echo no")
        if probe.text.strip() != "yes":
            raise CaptureError(
                f"the device has no `am` (not a phone: the stand-in device?) and the fake capture source "
                f"{fake_source} is not visible on it; start fakeadbd.py with --host-ro {fake_source} or pass "
                f"--fake-source with a path the device sees", code=2)
        extra = [("--es", "source", fake_name)] if fake_name else []
        env = f"ISP_CAPTURE_SOURCE={_q(fake_source)} "
    argv = capture_command(launcher, remote, package=package, camera_id=camera_id, iso=iso,
                           exposure_ns=exposure_ns, extra=extra)
    if not use_am:
        argv = ["sh"] + argv          # run the script with the device's sh whatever its #! line says
    dev.shell(f"mkdir -p {_q(device_dir)} && rm -f {_q(remote)} {_q(remote + '.json')} {_q(remote + '.error')}",
              check=True)
    log.info("%s: %s", dev.serial, " ".join(argv))
    res = dev.shell(env + " ".join(_q(a) for a in argv), timeout_s=max(30.0, timeout_s), retry=False)
    text = res.text + res.err_text
    if res.returncode != 0 or re.search(r"^Error", text, re.M):
        hint = (f" Is the capture app installed (adb install android_harness/app/.../app-debug.apk, package "
                f"{package})?" if use_am and "does not exist" in text else "")
        raise CaptureError(f"starting the capture on {dev.serial} failed (exit {res.returncode}): "
                           f"{text.strip()[-800:]}{hint}")

    # wait for the file protocol: <output> (complete) or <output>.error
    deadline = time.monotonic() + timeout_s
    state = ""
    while True:
        probe = dev.shell(f"if [ -f {_q(remote + '.error')} ]; then echo ERROR; cat {_q(remote + '.error')}; "
                          f"elif [ -f {_q(remote)} ]; then echo DONE; sha256sum {_q(remote)} 2>/dev/null; "
                          f"else echo WAIT; fi")
        lines = probe.text.strip().splitlines()
        state = lines[0] if lines else ""
        if state == "ERROR":
            raise CaptureError(f"the capture app reported an error on {dev.serial}: "
                               f"{' '.join(lines[1:]).strip() or '(empty message)'}")
        if state == "DONE":
            remote_sha = lines[1].split()[0] if len(lines) > 1 and lines[1].split() else None
            break
        if time.monotonic() > deadline:
            raise CaptureError(f"no DNG at {remote} on {dev.serial} after {timeout_s:g} s (the app writes it "
                               f"when the capture completes). Is the screen unlocked and the app allowed to use "
                               f"the camera? `adb logcat -s IspCapture` shows what it did.")
        time.sleep(poll_s)

    token = uuid.uuid4().hex[:8]
    tmp_dng = out_dir / f".{name}.dng.tmp-{token}"
    tmp_side = out_dir / f".{name}.sidecar.tmp-{token}"
    try:
        dev.pull(remote, tmp_dng)
        sidecar: dict[str, Any] = {}
        if dev.shell(f"test -f {_q(remote + '.json')}").returncode == 0:
            dev.pull(remote + ".json", tmp_side)
            try:
                sidecar = json.loads(tmp_side.read_text())
            except ValueError as exc:
                sidecar = {"unreadable": f"{exc}"}
        digest = sha256_file(tmp_dng)
        if remote_sha and remote_sha != digest:
            raise CaptureError(f"the pulled DNG's sha256 {digest[:12]}… differs from the device's "
                               f"{remote_sha[:12]}…; retry the capture", code=5)
        try:
            summary = _dng_summary(tmp_dng)
        except (ValueError, OSError) as exc:
            raise CaptureError(f"the DNG pulled from {dev.serial} does not decode: {exc}", code=5) from exc
        info = dev.info()
        meta = {"schema": "isp_capture/1", "name": name, "file": final_dng.name, "bytes": tmp_dng.stat().st_size,
                "sha256": digest, "device_path": remote, "launcher": "am" if use_am else "isp_capture",
                "command": argv, "device": info.as_dict(), "captured_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                         time.gmtime()),
                "dng": summary, "device_sidecar": sidecar,
                "seconds": round(time.monotonic() - t0, 3)}
        from isp.jsonio import write_json_atomic
        os.replace(tmp_dng, final_dng)
        write_json_atomic(final_meta, meta)
    finally:
        tmp_dng.unlink(missing_ok=True)
        tmp_side.unlink(missing_ok=True)
    if not keep_on_device:
        dev.shell(f"rm -f {_q(remote)} {_q(remote + '.json')}")
    return CaptureResult(final_dng, final_meta, meta, time.monotonic() - t0)


# ---------------------------------------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    from android_harness.device import add_adb_args

    p = argparse.ArgumentParser(prog="python -m runtime_py.capture",
                                description="Capture a DNG on an Android phone (capture app via `am start`) and "
                                            "pull it, verified, with its metadata.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", required=True, help="device profile (python -m runtime_py.devices list)")
    p.add_argument("--profile-file", action="append", default=[], metavar="FILE", help="extra profile file")
    add_adb_args(p)
    p.add_argument("--allow-mismatch", action="store_true", help="use --serial even if it is another model")
    p.add_argument("-o", "--out", required=True, type=Path, help="folder for <name>.dng and <name>.json")
    p.add_argument("--name", default=None, help="file name without .dng (default isp_<date>_<time>)")
    p.add_argument("--package", default=CAPTURE_PACKAGE, help=f"capture app package (default {CAPTURE_PACKAGE})")
    p.add_argument("--camera-id", default=None, help="Camera2 camera id (default: first back RAW camera)")
    p.add_argument("--iso", type=int, default=None, help="manual sensitivity (with --exposure-ns)")
    p.add_argument("--exposure-ns", type=int, default=None, help="manual exposure time in ns (with --iso)")
    p.add_argument("--timeout-s", type=float, default=60.0, help="how long to wait for the DNG (default 60)")
    p.add_argument("--poll-s", type=float, default=0.25, help=argparse.SUPPRESS)
    p.add_argument("--device-dir", default=DEVICE_DIR, help=f"folder on the device (default {DEVICE_DIR})")
    p.add_argument("--keep-on-device", action="store_true", help="leave the DNG on the device")
    p.add_argument("--fake-source", default=None,
                   help="stand-in device only (no `am`): device-visible DNG folder or file to 'capture' "
                        "(default the shared DNG folder, visible via fakeadbd --host-ro)")
    p.add_argument("--fake-name", default=None, help="stand-in device only: which DNG of --fake-source")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    from runtime_py.devices import DeviceMismatch, ProfileError, get_profile, open_android_device

    try:
        profile = get_profile(args.device, args.profile_file)
        dev = open_android_device(profile, args.serial, args.transport, key_path=args.key,
                                  allow_mismatch=args.allow_mismatch)
    except (ProfileError, DeviceMismatch) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    try:
        res = capture(dev, args.out, args.name, package=args.package, camera_id=args.camera_id, iso=args.iso,
                      exposure_ns=args.exposure_ns, timeout_s=args.timeout_s, poll_s=args.poll_s,
                      device_dir=args.device_dir, fake_source=args.fake_source, fake_name=args.fake_name,
                      keep_on_device=args.keep_on_device)
    except CaptureError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    finally:
        dev.close()
    d = res.metadata["dng"]
    print(f"{res.dng} ({res.metadata['bytes']} bytes, {d['width']}x{d['height']} {d['cfa']}, "
          f"{d['make'] or '?'} {d['model'] or ''}, via {res.metadata['launcher']}) in {res.seconds:.1f} s; "
          f"metadata {res.metadata_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
