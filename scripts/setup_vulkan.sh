#!/usr/bin/env bash
# Software Vulkan driver for the LiteRT GPU delegate (WebGPU on Vulkan): Mesa's lavapipe.
# Debian 12's own Mesa (22.3) is too old for LiteRT's WebGPU ("No adapters found"), so on bookworm the driver
# comes from bookworm-backports (Mesa 25). Idempotent; only acts as root or with sudo; every failure is a warning
# (the GPU tests then skip and say why). Run by scripts/setup.sh; `python -m runtime_py.gpu` shows the result.
set -uo pipefail
mesa_ok() {  # lavapipe installed, and new enough (Mesa >= 23) for LiteRT's WebGPU
  local v; v=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null) || return 1
  [ -n "$v" ] && dpkg --compare-versions "$v" ge 23 && dpkg -s libvulkan1 >/dev/null 2>&1
}
mesa_ok && exit 0
command -v apt-get >/dev/null 2>&1 || { echo "warning: no apt-get; GPU delegate tests will be skipped" >&2; exit 0; }
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"
  else echo "warning: not root and no sudo; software Vulkan not installed, GPU delegate tests will be skipped" >&2; exit 0; fi
fi
codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
target=()
if [ "$codename" = bookworm ]; then
  src=/etc/apt/sources.list.d/bookworm-backports.sources
  if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "== apt source bookworm-backports ($src)"
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      | $SUDO tee "$src" >/dev/null || echo "warning: could not write $src" >&2
  fi
  target=(-t bookworm-backports)
fi
echo "== apt-get install ${target[*]} mesa-vulkan-drivers libvulkan1"
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${target[@]}" mesa-vulkan-drivers libvulkan1 \
  || { echo "warning: could not install the software Vulkan driver; GPU delegate tests will be skipped" >&2; exit 0; }
mesa_ok || echo "warning: mesa-vulkan-drivers is older than 23; LiteRT's WebGPU may find no adapter" >&2
exit 0
