#!/usr/bin/env bash
# An arm64 phone stand-in: the userland for `fakeadbd.py --rootfs` (shared/device/README.md) and the tools to build
# and run the arm64 runner bundle (android_harness/bundle.py).
#
#   bash scripts/arm64_device.sh DIR [pixel8|galaxy-s24]   # idempotent; ~20 s the first time, instant after
#
# DIR/rootfs holds ONLY a static arm64 busybox (Debian's busybox-static, arm64) and its applet links: a phone has a
# shell and no glibc, so whatever the runners need must come in the pushed bundle — this userland proves it does.
# Installs when missing (as root): qemu-user-static + binfmt-support (arm64 binaries run under qemu-user on this
# x86 host), g++-aarch64-linux-gnu (cross-builds the runners; its sysroot gives the glibc the bundle carries), and
# enables the qemu-aarch64 binfmt handler. Prints the command that starts the stand-in in arm64 mode.
set -euo pipefail

DIR=${1:?usage: bash scripts/arm64_device.sh DIR [pixel8|galaxy-s24]}
case "${2:-pixel8}" in          # the getprop values the bench matches its --device profile against
  pixel8) PROPS="--prop ro.product.model='Pixel 8' --prop ro.product.device=shiba" ;;
  galaxy-s24) PROPS="--prop ro.product.model=SM-S921B --prop ro.product.device=e1s --prop ro.product.manufacturer=samsung" ;;
  *) echo "error: profile '$2': expected pixel8 or galaxy-s24" >&2; exit 2 ;;
esac
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
ROOTFS="$DIR/rootfs"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

need_pkgs=()
command -v qemu-aarch64-static >/dev/null || need_pkgs+=(qemu-user-static)
command -v update-binfmts >/dev/null || need_pkgs+=(binfmt-support)
command -v aarch64-linux-gnu-g++ >/dev/null || need_pkgs+=(g++-aarch64-linux-gnu)
command -v cmake >/dev/null || need_pkgs+=(cmake)
command -v ninja >/dev/null || need_pkgs+=(ninja-build)
command -v bwrap >/dev/null || need_pkgs+=(bubblewrap)
command -v adb >/dev/null || need_pkgs+=(adb)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ -n "$SUDO" ] && ! sudo -n true 2>/dev/null; then
    echo "error: missing ${need_pkgs[*]}; as root run: apt-get install -y ${need_pkgs[*]}" >&2
    exit 2
  fi
  echo "arm64_device: installing ${need_pkgs[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# binfmt: the kernel hands aarch64 ELF files to qemu (the F flag: also inside bubblewrap's new root)
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  if [ -n "$SUDO" ] && ! sudo -n true 2>/dev/null; then
    echo "error: the qemu-aarch64 binfmt handler is not enabled; as root run:" >&2
    echo "  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; update-binfmts --enable qemu-aarch64" >&2
    exit 2
  fi
  mount | grep -q binfmt_misc || $SUDO mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  $SUDO update-binfmts --enable qemu-aarch64 || true
  if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    echo "error: could not enable the qemu-aarch64 binfmt handler (a container without binfmt_misc?)" >&2
    exit 2
  fi
fi

# the userland: one static busybox, its applets as links in /bin (built once, reused)
if [ ! -x "$ROOTFS/bin/sh" ]; then
  tmp="$DIR/rootfs.tmp"
  rm -rf "$tmp" "$DIR/deb"
  mkdir -p "$tmp/bin" "$DIR/deb"
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    $SUDO dpkg --add-architecture arm64
    $SUDO apt-get update -qq
  fi
  (cd "$DIR/deb" && apt-get download -qq busybox-static:arm64 2>/dev/null || {
     $SUDO apt-get update -qq && apt-get download -qq busybox-static:arm64; })
  dpkg-deb -x "$DIR"/deb/busybox-static_*_arm64.deb "$DIR/deb/x"
  cp "$DIR/deb/x/bin/busybox" "$tmp/bin/busybox"
  for applet in $("$tmp/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$tmp/bin/$applet"
  done
  mkdir -p "$tmp/usr" "$tmp/etc" "$tmp/data" "$tmp/sdcard" "$tmp/system" "$tmp/proc" "$tmp/sys" "$tmp/dev" "$tmp/tmp"
  ln -s ../bin "$tmp/usr/bin"
  rm -rf "$DIR/deb" "$ROOTFS"
  mv "$tmp" "$ROOTFS"
fi
if [ "$("$ROOTFS/bin/busybox" uname -m)" != aarch64 ]; then
  echo "error: $ROOTFS/bin/busybox does not run as aarch64 here" >&2
  exit 2
fi

FAKE="${ISP_FAKEADBD:-$(cd "$(dirname "$0")/.." && pwd)/../shared/device/fakeadbd.py}"
echo "arm64 userland: $ROOTFS (busybox only: $(du -sh "$ROOTFS" | cut -f1))"
echo "start the stand-in in arm64 mode:"
echo "  python3 $FAKE --root $DIR/dev --rootfs $ROOTFS --cpuinfo $(dirname "$FAKE")/arm64-cpuinfo.txt \\"
echo "      --qemu-cpu cortex-a76 --port 0 --port-file $DIR/port $PROPS \\"
echo "      --prop ro.product.cpu.abi=arm64-v8a --prop ro.kernel.qemu=1 &"
echo "(the port it listens on is then in $DIR/port: --serial 127.0.0.1:PORT)"
