"""Device profiles: which phone a benchmark targets, how to recognise it, and which artifact each unit runs there.

A profile (:class:`DeviceProfile`) names a device family and holds

* how to recognise it: ``models`` — the ``getprop ro.product.model`` strings (Android) or product types
  (iOS, ``iPhone16,1``); ``fnmatch`` patterns are allowed (``SM-S921*``); ``devices`` — optional
  ``ro.product.device`` code names;
* what it is: ``soc``, ``abi``, ``platform`` (``android`` | ``ios`` | ``host``);
* where the benchmark lives on it: ``work_dir`` (Android: ``/data/local/tmp/isp_bench``; iOS: a folder inside the
  runner app's container);
* which artifact each unit should run: an ordered list of :class:`Preference` (target + delegate, optionally "only
  when at least this fraction of the graph is delegated") for all units, per-unit overrides in ``units``, and an
  ordered ``precisions`` list. :func:`select_artifacts` walks preferences first, then precisions, and takes the first
  artifact of the manifest that exists and that the chosen runner can execute.

Built-in profiles: ``pixel8``, ``galaxy-s24``, ``iphone-15-pro``, ``host`` (:data:`BUILTIN`). More come from JSON or
TOML files — one profile per file, or ``{"profiles": [...]}`` — found in ``$ISP_DEVICE_PROFILES`` (folders or files,
``os.pathsep``-separated), ``$XDG_CONFIG_HOME/isp/devices/`` (default ``~/.config/isp/devices/``), and files given
with ``--profile-file``. A file profile with a built-in's name replaces it. Example (TOML)::

    name = "pixel7"
    platform = "android"
    models = ["Pixel 7"]
    devices = ["panther"]
    soc = "Google Tensor G2"
    abi = "arm64-v8a"
    precisions = ["fp16", "fp32"]
    preferences = [{target = "tflite", delegate = "gpu", min_coverage = 0.9},
                   {target = "executorch", delegate = "xnnpack"}, {target = "onnx", delegate = "cpu"}]
    [units.upsample_fit]
    preferences = [{target = "executorch", delegate = "xnnpack"}, {target = "onnx", delegate = "cpu"}]

Delegates are what the profile *asks for*. What actually ran is what the runner reports (``timings.backend``): the
Python host runner, for one, runs ``.tflite`` on XNNPACK (CPU) whatever the profile prefers; the benchmark report
shows both.

Command line: ``python -m runtime_py.devices list | show NAME | detect [--serial S] [--transport adb|adb-shell]``.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import os
import sys
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from android_harness.faults import DeviceMismatch
from isp.units import TARGET_EXT

log = logging.getLogger(__name__)

__all__ = ["Preference", "DeviceProfile", "Selection", "BUILTIN", "PLATFORMS", "TARGET_EXTENSIONS",
           "profile_search_paths", "load_profile_file", "all_profiles", "get_profile", "select_artifacts",
           "normalize_model", "DeviceMismatch", "ProfileError", "pick_android_device", "open_android_device",
           "build_parser", "main"]

PLATFORMS = ("android", "ios", "host")
#: manifest ``target`` -> artifact file extension
TARGET_EXTENSIONS = {**{t: "." + ext for t, ext in TARGET_EXT.items()}, "tflite": ".tflite"}
#: targets that are the same thing under two names (the exporter's CLI says ``tflite``, its target module ``litert``)
_TARGET_ALIASES = {"litert": "tflite"}


class ProfileError(ValueError):
    """A profile file is malformed or a profile name is unknown (the message lists what is known)."""


# DeviceMismatch (the connected device is not the one the profile describes) is raised by the device openers of both
# harnesses, so it is declared with their errors (android_harness.faults) and re-exported here.


@dataclass(frozen=True)
class Preference:
    """One choice of runtime for a unit: ``target`` (``tflite``, ``executorch``, ``onnx``, ``coreml``) and the
    ``delegate`` wanted there (``gpu``, ``nnapi``, ``xnnpack``, ``cpu``, ``ane`` …).

    For ExecuTorch the delegate is baked into the program at export, so it must match the manifest's ``backend``
    (``executorch`` + ``xnnpack`` picks a ``.pte`` lowered to XNNPACK). For LiteRT, ONNX and Core ML the delegate
    (compute units) is chosen when the model is loaded; ``min_coverage`` (0..1) then skips an artifact whose
    manifest coverage for that delegate (``backend_coverage[delegate]``, or ``op_coverage`` when it names the
    delegate) is below that fraction, or unknown ("where converted").
    """

    target: str
    delegate: str = "cpu"
    min_coverage: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", _TARGET_ALIASES.get(self.target, self.target))
        if self.target not in TARGET_EXTENSIONS:
            raise ProfileError(f"preference target must be one of {sorted(set(TARGET_EXTENSIONS) - {'litert'})}, "
                               f"got {self.target!r}")
        if self.min_coverage is not None and not 0.0 <= float(self.min_coverage) <= 1.0:
            raise ProfileError(f"min_coverage must be in [0, 1], got {self.min_coverage!r}")

    @classmethod
    def parse(cls, value: Any) -> "Preference":
        """From ``{"target", "delegate", "min_coverage"}``, ``"tflite/gpu"`` or ``["tflite", "gpu"]``."""
        if isinstance(value, Preference):
            return value
        if isinstance(value, str):
            target, _, delegate = value.partition("/")
            return cls(target.strip(), delegate.strip() or "cpu")
        if isinstance(value, (list, tuple)) and 1 <= len(value) <= 3:
            return cls(*value)
        if isinstance(value, Mapping):
            unknown = set(value) - {"target", "delegate", "min_coverage"}
            if unknown or "target" not in value:
                raise ProfileError(f"a preference needs 'target' (and optionally 'delegate', 'min_coverage'), got "
                                   f"{dict(value)}")
            return cls(str(value["target"]), str(value.get("delegate", "cpu")), value.get("min_coverage"))
        raise ProfileError(f"cannot read a preference from {value!r}; write {{target = 'tflite', delegate = 'gpu'}} "
                           "or 'tflite/gpu'")

    def __str__(self) -> str:
        cov = f" (>= {self.min_coverage:.0%} delegated)" if self.min_coverage is not None else ""
        return f"{self.target}/{self.delegate}{cov}"


@dataclass(frozen=True)
class DeviceProfile:
    """A device family. See the module docstring for every field."""

    name: str
    platform: str
    display_name: str = ""
    models: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    soc: str = ""
    abi: str = ""
    work_dir: str = "/data/local/tmp/isp_bench"
    preferences: tuple[Preference, ...] = ()
    units: Mapping[str, tuple[Preference, ...]] = field(default_factory=dict)
    precisions: tuple[str, ...] = ("fp32", "fp16", "int8", "w8")
    runner: str = "native"              # the runner a real device of this kind uses: native | host | ios
    notes: str = ""
    source: str = "built-in"

    def __post_init__(self) -> None:
        if not self.name or any(c.isspace() for c in self.name):
            raise ProfileError(f"a profile name must be a non-empty word such as 'pixel8', got {self.name!r}")
        if self.platform not in PLATFORMS:
            raise ProfileError(f"profile {self.name}: platform must be one of {PLATFORMS}, got {self.platform!r}")
        if not self.preferences:
            raise ProfileError(f"profile {self.name}: give at least one preference (target + delegate)")
        if self.platform == "android" and not self.models:
            raise ProfileError(f"profile {self.name}: an Android profile needs 'models' (getprop ro.product.model "
                               "values, e.g. ['Pixel 8'])")
        bad = [p for p in self.precisions if p not in ("fp32", "fp16", "int8", "w8")]
        if bad:
            raise ProfileError(f"profile {self.name}: unknown precision(s) {bad}; use fp32, fp16, int8, w8")

    # ------------------------------------------------------------------------------------------- matching
    def matches(self, model: str, device: str = "") -> bool:
        """Does a device reporting ``model`` (``ro.product.model`` or ``adb devices -l``'s ``model:Pixel_8``) and
        ``device`` (``ro.product.device``) belong to this profile? ``host`` matches anything."""
        if self.platform == "host":
            return True
        m = normalize_model(model)
        if m and any(fnmatch.fnmatchcase(m, normalize_model(p)) for p in self.models):
            return True
        dev = device.strip().lower()
        return bool(dev) and any(fnmatch.fnmatchcase(dev, d.lower()) for d in self.devices)

    def preferences_for(self, unit: str) -> tuple[Preference, ...]:
        return tuple(self.units.get(unit, self.preferences))

    def describe(self) -> str:
        return (f"{self.name} ({self.display_name or self.name}; {self.platform}, SoC {self.soc or '?'}, "
                f"ABI {self.abi or '?'}; models {', '.join(self.models) or 'any'})")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["preferences"] = [asdict(p) for p in self.preferences]
        d["units"] = {u: [asdict(p) for p in ps] for u, ps in self.units.items()}
        d["models"], d["devices"], d["precisions"] = list(self.models), list(self.devices), list(self.precisions)
        return d

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = "") -> "DeviceProfile":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ProfileError(f"profile {data.get('name', '?')} ({source}): unknown field(s) {sorted(unknown)}; "
                               f"known: {sorted(known - {'source'})}")
        if "name" not in data or "platform" not in data:
            raise ProfileError(f"profile in {source or 'data'} needs at least 'name' and 'platform'")
        kw = dict(data)
        for key in ("models", "devices", "precisions"):
            if key in kw:
                v = kw[key]
                kw[key] = (v,) if isinstance(v, str) else tuple(str(x) for x in v)
        kw["preferences"] = tuple(Preference.parse(p) for p in kw.get("preferences", ()))
        units = {}
        for unit, spec in dict(kw.get("units", {})).items():
            prefs = spec.get("preferences") if isinstance(spec, Mapping) else spec
            units[str(unit)] = tuple(Preference.parse(p) for p in (prefs or ()))
        kw["units"] = units
        kw["source"] = source or kw.get("source", "file")
        return cls(**kw)


def normalize_model(model: str) -> str:
    """``"Pixel_8"`` (``adb devices -l``) and ``" pixel 8 "`` (getprop) -> ``"pixel 8"``."""
    return " ".join(str(model).replace("_", " ").split()).lower()


# ---------------------------------------------------------------------------------------------- built-ins

_P = Preference

BUILTIN: dict[str, DeviceProfile] = {p.name: p for p in (
    DeviceProfile(
        name="pixel8", platform="android", display_name="Google Pixel 8",
        models=("Pixel 8",), devices=("shiba",), soc="Google Tensor G3", abi="arm64-v8a",
        # LiteRT on the GPU where the converted graph is (almost) all GPU-compatible, NNAPI next (the Tensor TPU is
        # reached through NNAPI, deprecated since Android 15), then ExecuTorch on XNNPACK, then the CPU paths
        preferences=(_P("tflite", "gpu", 0.9), _P("tflite", "nnapi", 0.9), _P("executorch", "xnnpack"),
                     _P("tflite", "xnnpack"), _P("onnx", "cpu")),
        # the BGU fit needs float32 (its 1e-7 regulariser vanishes in fp16, which the GPU delegate computes in);
        # the BGU slice takes a 5-D grid window and runtime interpolation matrices (a BATCH_MATMUL of two runtime
        # tensors), which LiteRT's GPU delegate rejects (measured: 56 of 282 ops on the GPU): both on the CPU
        units={"upsample_fit": (_P("executorch", "xnnpack"), _P("tflite", "xnnpack"), _P("onnx", "cpu")),
               "upsample_slice": (_P("executorch", "xnnpack"), _P("tflite", "xnnpack"), _P("onnx", "cpu"))},
        precisions=("int8", "fp16", "fp32", "w8"),
        notes="Tensor G3: Mali-G715 GPU, TPU via NNAPI (Android 14)."),
    DeviceProfile(
        name="galaxy-s24", platform="android", display_name="Samsung Galaxy S24",
        # SM-S921B/N: Exynos 2400 (e1s); SM-S921U/U1/W/0/Q: Snapdragon 8 Gen 3 for Galaxy (e1q)
        models=("SM-S921*",), devices=("e1s", "e1q"), soc="Exynos 2400 / Snapdragon 8 Gen 3", abi="arm64-v8a",
        # no QNN / Samsung NPU delegate in this toolkit: ExecuTorch on XNNPACK first, LiteRT (GPU, then CPU) next
        preferences=(_P("executorch", "xnnpack"), _P("tflite", "gpu", 0.9), _P("tflite", "xnnpack"),
                     _P("onnx", "cpu")),
        units={"upsample_fit": (_P("executorch", "xnnpack"), _P("tflite", "xnnpack"), _P("onnx", "cpu"))},
        precisions=("int8", "fp16", "fp32", "w8"),
        notes="Exynos 2400 (Xclipse 940) or Snapdragon 8 Gen 3 (Adreno 750) depending on the region."),
    DeviceProfile(
        name="iphone-15-pro", platform="ios", display_name="Apple iPhone 15 Pro",
        models=("iPhone16,1", "iPhone 15 Pro"), soc="Apple A17 Pro", abi="arm64",
        work_dir="Documents/isp_bench",
        preferences=(_P("coreml", "ane"), _P("coreml", "cpu_and_gpu"), _P("executorch", "coreml"),
                     _P("executorch", "xnnpack")),
        units={"upsample_fit": (_P("coreml", "cpu_only"), _P("executorch", "xnnpack"))},
        precisions=("fp16", "int8", "fp32", "w8"), runner="ios",
        notes="Core ML picks the compute units at load time; the runner asks for the delegate's MLComputeUnits."),
    DeviceProfile(
        name="host", platform="host", display_name="this machine",
        soc="", abi="", work_dir="",
        preferences=(_P("onnx", "cpu"), _P("executorch", "xnnpack"), _P("tflite", "xnnpack")),
        precisions=("fp32", "fp16", "int8", "w8"), runner="host",
        notes="Runs the runner protocol in a local folder (no adb): a baseline for the device numbers."),
)}


# ---------------------------------------------------------------------------------------------- files

def profile_search_paths() -> list[Path]:
    """Folders and files searched for user profiles, in order (later ones win on equal names)."""
    out: list[Path] = []
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    out.append(Path(xdg) / "isp" / "devices")
    for item in filter(None, os.environ.get("ISP_DEVICE_PROFILES", "").split(os.pathsep)):
        out.append(Path(item).expanduser())
    return out


def load_profile_file(path: str | os.PathLike) -> list[DeviceProfile]:
    """Profiles in one ``.json`` / ``.toml`` file: a single profile or ``{"profiles": [...]}``."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(path.read_text())
        elif path.suffix.lower() == ".json":
            data = json.loads(path.read_text())
        else:
            raise ProfileError(f"{path}: a profile file must end in .json or .toml")
    except FileNotFoundError:
        raise ProfileError(f"profile file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ProfileError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from None
    items = data.get("profiles") if isinstance(data, Mapping) and "profiles" in data else [data]
    if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
        raise ProfileError(f"{path}: expected one profile table or {{\"profiles\": [ ... ]}}")
    return [DeviceProfile.from_json(i, source=str(path)) for i in items]


def all_profiles(profile_files: Iterable[str | os.PathLike] = (), search: bool = True) -> dict[str, DeviceProfile]:
    """Built-ins, then the search path's files, then ``profile_files`` (each may replace an earlier name)."""
    profiles = dict(BUILTIN)
    files: list[Path] = []
    if search:
        for p in profile_search_paths():
            if p.is_dir():
                files += sorted(f for f in p.iterdir() if f.suffix.lower() in (".json", ".toml") and f.is_file())
            elif p.is_file():
                files.append(p)
    files += [Path(f) for f in profile_files]
    for f in files:
        for prof in load_profile_file(f):
            if prof.name in profiles:
                log.info("profile %s from %s replaces the one from %s", prof.name, f, profiles[prof.name].source)
            profiles[prof.name] = prof
    return profiles


def get_profile(name: str, profile_files: Iterable[str | os.PathLike] = ()) -> DeviceProfile:
    profiles = all_profiles(profile_files)
    if name not in profiles:
        raise ProfileError(f"unknown device profile {name!r}; known: {', '.join(sorted(profiles))}. Add one with "
                           f"--profile-file FILE.toml or a file in {profile_search_paths()[0]}")
    return profiles[name]


# ---------------------------------------------------------------------------------------------- selection

@dataclass(frozen=True)
class Selection:
    """The artifact chosen for one unit and why."""

    unit: str
    artifact: Mapping[str, Any]          # the manifest entry
    preference: Preference
    rank: int                            # index of the preference that matched (0 = first choice)
    considered: tuple[str, ...] = ()     # "file: reason" for candidates passed over

    @property
    def file(self) -> str:
        return str(self.artifact["file"])

    def describe(self) -> str:
        a = self.artifact
        return f"{self.unit}: {a['file']} ({a.get('target')}/{a.get('backend') or '-'}, {a.get('precision')}) " \
               f"as {self.preference}"


def _coverage_fraction(artifact: Mapping[str, Any], delegate: str) -> float | None:
    """Fraction of the artifact's ops the ``delegate`` takes, from the manifest: ``backend_coverage[delegate]``
    (LiteRT's ``gpu``: measured by the GPU delegate at export; the ONNX exporter's NNAPI / Core ML estimates) or,
    only where nothing was measured, ``op_coverage`` when its delegate names this one (LiteRT's
    ``gpu-delegate (static check)``, a guess); None when the manifest says nothing about this delegate."""
    def frac(cov: Mapping[str, Any]) -> float | None:
        if isinstance(cov.get("fraction"), (int, float)):
            return float(cov["fraction"])
        total, done = cov.get("total_ops"), cov.get("delegated_ops")
        if isinstance(total, int) and isinstance(done, int) and total > 0:
            return done / total
        return None

    by_backend = artifact.get("backend_coverage") or {}
    if isinstance(by_backend.get(delegate), Mapping):
        return frac(by_backend[delegate])       # LiteRT "gpu": measured by the delegate at export
    cov = artifact.get("op_coverage") or {}
    if delegate.lower() in str(cov.get("delegate") or "").lower():
        return frac(cov)
    return None


def _artifact_matches(pref: Preference, a: Mapping[str, Any]) -> str | None:
    """None when ``a`` satisfies ``pref``, else the reason it does not."""
    target = str(a.get("target")).split("-")[0]          # "executorch-vulkan": a secondary ExecuTorch backend
    target = _TARGET_ALIASES.get(target, target)
    if target != pref.target:
        return f"target {target} is not {pref.target}"
    backend = str(a.get("backend") or "").lower()
    if pref.target in ("executorch",) and backend and backend != pref.delegate.lower():
        return f"lowered to {backend}, not {pref.delegate}"
    if pref.min_coverage is not None:
        frac = _coverage_fraction(a, pref.delegate)
        if frac is None:
            return f"no op coverage recorded for {pref.delegate}"
        if frac < pref.min_coverage:
            return f"{frac:.0%} of ops delegated < {pref.min_coverage:.0%}"
    return None


def select_artifacts(profile: DeviceProfile, artifacts: Sequence[Mapping[str, Any]], *,
                     runnable_suffixes: Sequence[str] | None = None, precisions: Sequence[str] | None = None,
                     folder: str | os.PathLike | None = None, units: Sequence[str] | None = None
                     ) -> tuple[dict[str, Selection], dict[str, str]]:
    """One artifact per unit: ``({unit: Selection}, {unit: why none})``.

    ``runnable_suffixes``: file suffixes the runner can execute (``(".pte",)`` for the native runner); ``folder``:
    where the files are (missing files are passed over); ``precisions`` overrides the profile's order; ``units``
    restricts the units (default: every unit in the manifest, in manifest order).
    """
    order = list(precisions or profile.precisions)
    by_unit: dict[str, list[Mapping[str, Any]]] = {}
    for a in artifacts:
        by_unit.setdefault(str(a["unit"]), []).append(a)
    wanted = list(units) if units else list(by_unit)
    chosen: dict[str, Selection] = {}
    missing: dict[str, str] = {}
    for unit in wanted:
        cands = by_unit.get(unit, [])
        if not cands:
            missing[unit] = "no artifact for this unit in the manifest"
            continue
        passed: list[str] = []
        found = None
        for rank, pref in enumerate(profile.preferences_for(unit)):
            for prec in order:
                for a in cands:
                    if a.get("precision") != prec:
                        continue
                    why = _artifact_matches(pref, a)
                    if why is None and runnable_suffixes is not None and \
                            not str(a["file"]).endswith(tuple(runnable_suffixes)):
                        why = f"the runner cannot execute {Path(str(a['file'])).suffix} files"
                    if why is None and folder is not None and not (Path(folder) / str(a["file"])).exists():
                        why = "file missing from the artifact folder"
                    if why is None:
                        found = Selection(unit, a, pref, rank, tuple(passed))
                        break
                    passed.append(f"{a['file']} for {pref}: {why}")
                if found:
                    break
            if found:
                break
        if found is None:
            prefs = ", ".join(str(p) for p in profile.preferences_for(unit))
            missing[unit] = (f"none of {[a['file'] for a in cands]} fits the preferences [{prefs}] with precisions "
                             f"{order}" + (f" and runner formats {list(runnable_suffixes)}" if runnable_suffixes
                                           else ""))
        else:
            chosen[unit] = found
    return chosen, missing


# ---------------------------------------------------------------------------------------------- devices

def pick_android_device(profile: DeviceProfile, serial: str | None, entries, info_of) -> str:
    """The serial to use for ``profile``.

    ``entries``: ``adb devices -l`` entries (``android_harness.transport.DeviceEntry``); ``info_of(serial)`` returns
    the device's ``DeviceInfo`` (getprop). With ``serial`` the device is checked against the profile; without, the
    one connected device that matches is taken. Raises ``DeviceMismatch`` (what is connected, what the profile
    wants, the fix), or ``android_harness`` faults for a missing / unauthorized device.
    """
    from android_harness.faults import DeviceNotFound, DeviceUnauthorized

    if serial:
        info = info_of(serial)
        if not profile.matches(info.model, info.device):
            raise DeviceMismatch(
                f"device {serial} is a {info.model or '?'} ({info.device or '?'}, SoC {info.soc or '?'}), not a "
                f"{profile.display_name or profile.name} (profile {profile.name} expects model "
                f"{' or '.join(profile.models)}). Pick the matching --device profile (python -m runtime_py.devices "
                f"list), add a profile with --profile-file, or pass --allow-mismatch to benchmark it anyway.")
        return serial
    entries = list(entries)
    if not entries:
        raise DeviceNotFound("(any)", "`adb devices` lists no device; connect the phone (USB debugging on) or "
                                      "`adb connect HOST:PORT`, or pass --serial")
    ready = [e for e in entries if e.state == "device"]
    unauthorized = [e for e in entries if e.state == "unauthorized"]
    matching = []
    for e in ready:
        hint = e.attrs.get("model", "")
        if hint and not profile.matches(hint):
            continue
        info = info_of(e.serial)                     # confirm with getprop (adb's model attr can be missing)
        if profile.matches(info.model, info.device):
            matching.append((e.serial, info))
    if len(matching) == 1:
        return matching[0][0]
    if len(matching) > 1:
        raise DeviceMismatch(f"{len(matching)} connected devices match profile {profile.name}: "
                             f"{', '.join(s for s, _ in matching)}; choose one with --serial")
    if unauthorized and not ready:
        raise DeviceUnauthorized(unauthorized[0].serial)
    listed = "; ".join(f"{e.serial} ({e.state}, {e.attrs.get('model', '?')})" for e in entries)
    raise DeviceMismatch(f"no connected device matches profile {profile.name} (model "
                         f"{' or '.join(profile.models)}); connected: {listed}. Pass --serial and the matching "
                         f"--device, or --allow-mismatch.")


def open_android_device(profile: DeviceProfile, serial: str | None = None, transport: str = "adb", *,
                        key_path: str | os.PathLike | None = None, allow_mismatch: bool = False,
                        root: str | None = None, transport_kwargs: Mapping[str, Any] | None = None,
                        **device_kwargs: Any):
    """Connect to the Android device for ``profile`` and return an open ``AndroidDevice``.

    Without ``serial`` the connected device matching the profile is found with ``adb devices -l`` + getprop (the
    adb transport only; adb-shell has no server to ask, so it needs ``serial`` = ``host:port``). With ``serial`` the
    device's getprop model must match the profile unless ``allow_mismatch``. ``transport_kwargs`` go to the
    transport (``server_port``, ``home``, timeouts); ``device_kwargs`` to ``AndroidDevice`` (``retries``, ...).
    """
    from android_harness.device import AndroidDevice, make_transport
    from android_harness.transport import AdbClientTransport

    if profile.platform != "android":
        raise DeviceMismatch(f"profile {profile.name} is for {profile.platform}, not an Android device")
    tkw = dict(transport_kwargs or {})
    if key_path is not None:
        tkw["key_path"] = key_path
    if transport == "adb-shell":
        tkw = {k: v for k, v in tkw.items() if k not in ("server_port", "home", "adb")}
    if serial is None and transport != "adb":
        raise DeviceMismatch("the adb-shell transport talks to one host:port and cannot list devices; pass "
                             "--serial HOST:PORT (or use --transport adb)")
    root = root or profile.work_dir

    def info_of(s: str):
        dev = AndroidDevice.open(make_transport(s, transport, **tkw), root=root)
        try:
            return dev.info()
        finally:
            dev.close()

    if serial is None:
        lister = AdbClientTransport("", **{k: v for k, v in tkw.items()
                                          if k in ("adb", "server_port", "home", "key_path")})
        serial = pick_android_device(profile, None, lister.list_devices(), info_of)
        dev = AndroidDevice.open(make_transport(serial, transport, **tkw), root=root, **device_kwargs)
    else:
        dev = AndroidDevice.open(make_transport(serial, transport, **tkw), root=root, **device_kwargs)
        info = dev.info()
        if not allow_mismatch:
            try:
                pick_android_device(profile, serial, (), lambda _s: info)
            except DeviceMismatch:
                dev.close()
                raise
        elif not profile.matches(info.model, info.device):
            log.warning("device %s is a %s, not a %s; continuing (--allow-mismatch)", serial, info.model,
                        profile.display_name or profile.name)
    return dev


# ---------------------------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    from android_harness.device import add_adb_args

    p = argparse.ArgumentParser(prog="python -m runtime_py.devices",
                                description="List, show and detect benchmark device profiles.")
    p.add_argument("--profile-file", action="append", default=[], metavar="FILE",
                   help="extra profile file (.json / .toml); repeatable")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every known profile, one line each")
    s = sub.add_parser("show", help="one profile as JSON")
    s.add_argument("name")
    d = sub.add_parser("detect", help="which profile the connected Android device(s) match")
    add_adb_args(d, serial_help="adb serial or HOST:PORT (default: every connected device)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        profiles = all_profiles(args.profile_file)
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "list":
        for prof in profiles.values():
            print(f"{prof.name:16s} {prof.platform:8s} {prof.display_name:28s} {prof.soc:36s} "
                  f"first choice {prof.preferences[0]}   [{prof.source}]")
        return 0
    if args.command == "show":
        if args.name not in profiles:
            print(f"error: unknown profile {args.name!r}; known: {', '.join(sorted(profiles))}", file=sys.stderr)
            return 2
        print(json.dumps(profiles[args.name].to_json(), indent=1))
        return 0
    from android_harness.device import AndroidDevice, list_devices, make_transport
    from android_harness.faults import HarnessError

    try:
        serials = [args.serial] if args.serial else [e.serial for e in list_devices() if e.state == "device"]
        if not serials:
            print("no device connected (adb devices lists none in state 'device')", file=sys.stderr)
            return 3
        for serial in serials:
            kw = {"key_path": args.key} if args.key else {}
            with AndroidDevice.open(make_transport(serial, args.transport, **kw)) as dev:
                info = dev.info()
            names = [p.name for p in profiles.values() if p.platform == "android" and p.matches(info.model,
                                                                                                   info.device)]
            print(f"{serial}\t{info.model}\t{info.device}\t{info.soc}\t{info.abi}\tprofile: "
                  f"{', '.join(names) or 'none (add one with --profile-file)'}")
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
