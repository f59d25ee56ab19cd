"""The arm64 push bundle: native runners a phone can start from /data/local/tmp without root, an NDK or a libc.

    python -m android_harness.bundle [--out DIR] [--runners et,litert] [--force]     # build (cached) and print DIR

What it builds (on a Debian/Ubuntu x86_64 host, with Debian's aarch64 cross toolchain ``g++-aarch64-linux-gnu``):

* ``isp_et_runner`` — ``native/runner.cpp`` linked against the aarch64 ``executorch`` wheel's ``libexecutorch*.so``
  (headers and CMake config from the same wheel; no torch);
* ``isp_litert_runner`` — ``native/litert_runner.cpp`` against ``libLiteRt.so`` (LiteRT's C API) from the aarch64
  ``ai-edge-litert`` wheel;
* both in one folder with every shared library they need (the wheels' and glibc's: ``libc.so.6``, ``libm.so.6``,
  ``libstdc++.so.6``, ``libgcc_s.so.1`` from the cross toolchain's sysroot), glibc's loader
  ``ld-linux-aarch64.so.1``, and ``isp_runner``, a ``sh`` script that picks the runner by the ``--model`` suffix and
  starts it as ``ld-linux-aarch64.so.1 --library-path LIB BINARY …`` — so a phone (bionic, no glibc) runs it as a
  plain user. ``bundle.json`` lists every file with its sha256.

The wheels, the builds and the bundle are cached under ``$ISP_ARM64_CACHE`` (default ``~/.cache/isp-arm64``), keyed
by the runtime versions and a hash of the runner sources, so a second call costs a few stat calls.

The NDK (bionic) build of the same sources is the CMake command in ``README.md``, with the NDK's
``$ANDROID_NDK_HOME/build/cmake/android.toolchain.cmake`` as toolchain file and ExecuTorch built from source for
Android; it was NOT built here (no NDK: Debian has only the installer packages that download it from Google, which
is not reachable). With ``ANDROID_NDK_HOME`` set, :func:`build_runner` refuses the glibc bundle (it would link the
wheels' glibc libraries) and points there — the glibc cross build is what the stand-in runs.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Sequence

from android_harness.device import DEFAULT_ROOT, RunnerSpec

EXECUTORCH_VERSION = "1.5.1"
LITERT_VERSION = "2.3.0"
PY_TAG = "3.11"
#: wheel platform tags pip may pick for aarch64 Linux (executorch: manylinux_2_28, ai-edge-litert: 2_27)
PLATFORMS = ("manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux2014_aarch64")
NATIVE = Path(__file__).resolve().with_name("native")
TOOLCHAIN = NATIVE / "cmake" / "aarch64-linux-gnu.cmake"
SYSROOT_LIB = Path("/usr/aarch64-linux-gnu/lib")
LOADER = "ld-linux-aarch64.so.1"
LAUNCHER = "isp_runner"
RUNNERS = {"et": "isp_et_runner", "litert": "isp_litert_runner"}
SUFFIXES = {"et": (".pte",), "litert": (".tflite",)}
#: libraries a runtime opens by name at run time (not DT_NEEDED): LiteRT's GPU accelerator, used where the phone has
#: a GPU it supports; the stand-in has none and the runner falls back to the CPU
DLOPENED = {"litert": ("libLiteRtWebGpuAccelerator.so",)}


class BundleError(RuntimeError):
    """The bundle cannot be built here; the message says what is missing and what to install."""


def cache_root() -> Path:
    return Path(os.environ.get("ISP_ARM64_CACHE") or Path.home() / ".cache" / "isp-arm64")


def _run(cmd: Sequence[str], what: str, **kw) -> None:
    r = subprocess.run(list(cmd), capture_output=True, text=True, **kw)
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-25:])
        raise BundleError(f"{what} failed (exit {r.returncode}): {' '.join(cmd)}\n{tail}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_toolchain() -> None:
    missing = [t for t in ("aarch64-linux-gnu-g++", "aarch64-linux-gnu-readelf", "cmake") if shutil.which(t) is None]
    if missing or not (SYSROOT_LIB / LOADER).exists():
        raise BundleError(f"the arm64 runners need Debian's aarch64 cross toolchain ({', '.join(missing) or LOADER} "
                          f"missing): run `bash scripts/arm64_device.sh DIR` as root, or `apt-get install -y "
                          f"g++-aarch64-linux-gnu cmake ninja-build`")


# ------------------------------------------------------------------------------------------------ wheels

def fetch_wheel(package: str, version: str, cache: Path | None = None) -> Path:
    """The aarch64 wheel of ``package==version`` (pip download, cached), extracted; returns the extraction folder."""
    cache = cache or cache_root()
    dest = cache / f"{package}-{version}-aarch64"
    if (dest / ".complete").exists():
        return dest
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    stem = package.replace("-", "_")
    found = sorted(wheels.glob(f"{stem}-{version}-*aarch64*.whl"))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
               PY_TAG, "-d", str(wheels)]
        for p in PLATFORMS:
            cmd += ["--platform", p]
        _run(cmd + [f"{package}=={version}"], f"downloading the aarch64 {package} {version} wheel")
        found = sorted(wheels.glob(f"{stem}-{version}-*aarch64*.whl"))
        if not found:
            raise BundleError(f"pip downloaded no aarch64 wheel of {package} {version} into {wheels}")
    import zipfile
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(found[-1]) as z:
        names = [n for n in z.namelist() if n.endswith(".so") or "/include/" in n or "/share/cmake/" in n
                 or "/lib/cmake/" in n]
        z.extractall(tmp, members=names)
    (tmp / ".complete").write_text(found[-1].name + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return dest


# ------------------------------------------------------------------------------------------------ build

def _sources_key(*extra: str) -> str:
    h = hashlib.sha256()
    for p in sorted(NATIVE.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(NATIVE).as_posix().encode() + b"\0" + p.read_bytes())
    for e in extra:
        h.update(e.encode())
    return h.hexdigest()[:12]


def build_runner(kind: str, cache: Path | None = None) -> tuple[Path, list[Path]]:
    """Cross-builds one runner (``et`` or ``litert``); returns (binary, folders holding its shared libraries)."""
    cache = cache or cache_root()
    check_toolchain()
    if kind == "et":
        wheel = fetch_wheel("executorch", EXECUTORCH_VERSION, cache)
        prefix = wheel / "executorch"
        cmake_args = [f"-DCMAKE_PREFIX_PATH={prefix}", "-DISP_BUILD_LITERT=OFF"]
        libdirs = [prefix / "lib"]
        version = EXECUTORCH_VERSION
    elif kind == "litert":
        wheel = fetch_wheel("ai-edge-litert", LITERT_VERSION, cache)
        libdir = wheel / "ai_edge_litert"
        cmake_args = ["-DISP_BUILD_EXECUTORCH=OFF", "-DISP_BUILD_LITERT=ON", f"-DISP_LITERT_LIB_DIR={libdir}",
                      f"-DISP_LITERT_VERSION={LITERT_VERSION}"]
        libdirs = [libdir]
        version = LITERT_VERSION
    else:
        raise BundleError(f"unknown runner {kind!r}; one of {sorted(RUNNERS)}")
    ndk = os.environ.get("ANDROID_NDK_HOME")
    if ndk:
        raise BundleError("ANDROID_NDK_HOME is set: the NDK build links bionic and cannot use the wheels' glibc "
                          "libraries; build it with cmake as android_harness/README.md shows, or unset "
                          "ANDROID_NDK_HOME for the glibc bundle")
    build = cache / "build" / f"{kind}-{version}-{_sources_key(kind, version)}"
    binary = build / RUNNERS[kind]
    if binary.exists():
        return binary, libdirs
    tmp = build.with_name(build.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    _run(["cmake", "-S", str(NATIVE), "-B", str(tmp), *gen, f"-DCMAKE_TOOLCHAIN_FILE={TOOLCHAIN}",
          "-DCMAKE_BUILD_TYPE=Release", *cmake_args], f"configuring {RUNNERS[kind]} for arm64")
    _run(["cmake", "--build", str(tmp), "--target", RUNNERS[kind], "-j2"], f"building {RUNNERS[kind]} for arm64")
    shutil.rmtree(build, ignore_errors=True)
    os.replace(tmp, build)
    return binary, libdirs


def needed(elf: Path) -> list[str]:
    """DT_NEEDED entries of an ELF file (the cross toolchain's readelf)."""
    r = subprocess.run(["aarch64-linux-gnu-readelf", "-d", str(elf)], capture_output=True, text=True)
    if r.returncode != 0:
        raise BundleError(f"readelf could not read {elf}: {r.stderr.strip()}")
    return [line.split("[", 1)[1].split("]", 1)[0] for line in r.stdout.splitlines() if "(NEEDED)" in line]


def closure(binaries: Iterable[Path], libdirs: Sequence[Path]) -> dict[str, Path]:
    """Every shared library the binaries load, transitively: {soname: file}, searched in ``libdirs`` then the
    cross sysroot. A library found nowhere is an error naming who needs it."""
    search = [*libdirs, SYSROOT_LIB]
    found: dict[str, Path] = {}
    todo = [(b, n) for b in binaries for n in needed(b)]
    while todo:
        who, name = todo.pop()
        if name in found:
            continue
        hit = next((d / name for d in search if (d / name).exists()), None)
        if hit is None:
            raise BundleError(f"{who.name} needs {name}, found in none of {', '.join(map(str, search))}")
        found[name] = hit.resolve()
        todo += [(hit, n) for n in needed(hit)]
    return found


LAUNCHER_TEXT = """#!/system/bin/sh
# Written by android_harness/bundle.py. Starts the runner for --model's format with the glibc loader pushed beside it
# (a phone has no glibc), so it needs nothing of the device but a shell.
here=$(cd "${0%/*}" && pwd)
lib="$here/../lib"
m=
prev=
for a in "$@"; do
  [ "$prev" = --model ] && m=$a
  prev=$a
done
case "$m" in
@CASES@
  *) echo "runner: error: no runner in this bundle for model '$m' (@FORMATS@)" >&2; exit 2 ;;
esac
exec "$lib/@LOADER@" --library-path "$lib" "$here/$bin" "$@"
"""


def make_bundle(binaries: dict[str, Path], libdirs: Sequence[Path], out: Path) -> Path:
    """Assembles ``out/bin`` (launcher + runner binaries) and ``out/lib`` (loader + libraries), then
    ``out/bundle.json``; atomic (built beside ``out`` and renamed)."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "bin").mkdir(parents=True)
    (tmp / "lib").mkdir()
    dlopened = [d / n for k in binaries for n in DLOPENED.get(k, ()) for d in libdirs if (d / n).exists()]
    libs = closure([*binaries.values(), *dlopened], libdirs)
    libs.update({p.name: p.resolve() for p in dlopened})
    libs.setdefault(LOADER, (SYSROOT_LIB / LOADER).resolve())
    for soname, src in sorted(libs.items()):
        shutil.copyfile(src, tmp / "lib" / soname)
    cases = []
    for kind, b in binaries.items():
        shutil.copyfile(b, tmp / "bin" / b.name)
        os.chmod(tmp / "bin" / b.name, 0o755)
        pats = "|".join(f"*{s}" for s in SUFFIXES[kind])
        cases.append(f"  {pats}) bin={b.name} ;;")
    text = (LAUNCHER_TEXT.replace("@CASES@", "\n".join(cases)).replace("@LOADER@", LOADER)
            .replace("@FORMATS@", ", ".join(s for k in binaries for s in SUFFIXES[k])))
    (tmp / "bin" / LAUNCHER).write_text(text)
    os.chmod(tmp / "bin" / LAUNCHER, 0o755)
    os.chmod(tmp / "lib" / LOADER, 0o755)
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    meta = {"schema": "isp_bench.arm64_bundle/1", "abi": "arm64-v8a", "libc": "glibc (pushed, with its loader)",
            "runners": {k: b.name for k, b in binaries.items()},
            "versions": {"executorch": EXECUTORCH_VERSION, "litert": LITERT_VERSION},
            "formats": [s for k in binaries for s in SUFFIXES[k]],
            "files": {p.relative_to(tmp).as_posix(): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
                      for p in files}}
    (tmp / "bundle.json").write_text(json.dumps(meta, indent=1) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def ensure_bundle(runners: Sequence[str] = ("et", "litert"), cache: Path | None = None,
                  force: bool = False) -> Path:
    """The bundle folder for ``runners`` (built on first use, then reused from the cache)."""
    cache = cache or cache_root()
    key = hashlib.sha256(json.dumps([sorted(runners), EXECUTORCH_VERSION, LITERT_VERSION, _sources_key(),
                                     _sha256(Path(__file__))]).encode()).hexdigest()[:12]
    out = cache / "bundles" / f"{'-'.join(sorted(runners))}-{key}"
    if (out / "bundle.json").exists() and not force:
        return out
    built = {k: build_runner(k, cache) for k in sorted(runners)}
    libdirs = [d for _, dirs in built.values() for d in dirs]
    return make_bundle({k: b for k, (b, _) in built.items()}, libdirs, out)


def read_bundle(folder: Path) -> dict:
    meta = Path(folder) / "bundle.json"
    if not meta.exists():
        raise BundleError(f"{folder} is not an arm64 runner bundle (no bundle.json); build one with "
                          f"`python -m android_harness.bundle`")
    return json.loads(meta.read_text())


def bundle_runner_spec(folder: str | os.PathLike, root: str = DEFAULT_ROOT) -> RunnerSpec:
    """The bundle as a ``RunnerSpec``: every file to ``<root>/arm64/…`` (sha256-skipped: pushed once), started as
    ``sh <root>/arm64/bin/isp_runner`` (the launcher ``exec``s the loader, so the pid on file is the runner's)."""
    folder = Path(folder)
    meta = read_bundle(folder)
    base = f"{root}/arm64"
    files = tuple((folder / rel, f"{base}/{rel}", rel.startswith("bin/") or rel == f"lib/{LOADER}")
                  for rel in sorted(meta["files"]))
    return RunnerSpec(f"{LAUNCHER} (arm64 bundle: {', '.join(meta['runners'].values())})",
                      ("sh", f"{base}/bin/{LAUNCHER}"), files, ())


def bundle_formats(folder: str | os.PathLike) -> tuple[str, ...]:
    return tuple(read_bundle(Path(folder))["formats"])


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m android_harness.bundle", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runners", default="et,litert", help="comma list of et, litert (default both)")
    ap.add_argument("--force", action="store_true", help="rebuild the bundle (wheels and builds stay cached)")
    a = ap.parse_args(argv)
    try:
        out = ensure_bundle(tuple(r.strip() for r in a.runners.split(",") if r.strip()), force=a.force)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
