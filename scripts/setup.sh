#!/usr/bin/env bash
# One-command set-up on a fresh Debian/Ubuntu machine: system packages (when run as root or with sudo),
# a virtual environment in .venv with the pinned CPU torch and the whole export toolchain, then this project.
# Usage: bash scripts/setup.sh            (VENV=path to choose another venv location)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

apt_packages="adb bubblewrap"
if command -v apt-get >/dev/null 2>&1; then
  missing=""
  for p in $apt_packages; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    echo "== apt-get install$missing"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq $missing \
      || echo "warning: could not install$missing; device tests will be skipped" >&2
  fi
fi

# software Vulkan (lavapipe) for the LiteRT GPU delegate; warns and goes on when it cannot
bash scripts/setup_vulkan.sh || echo "warning: scripts/setup_vulkan.sh failed; GPU delegate tests will be skipped" >&2

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip install --disable-pip-version-check -q -c constraints.txt"
$VENV/bin/python -m pip install -q --upgrade pip setuptools wheel
echo "== torch (CPU build, pinned)"
if [ -d /opt/wheels ] && ls /opt/wheels/torch-2.13.0*.whl >/dev/null 2>&1; then
  $PIP --find-links /opt/wheels torch==2.13.0
else
  $PIP torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
fi
echo "== export toolchain"
$PIP executorch==1.5.1 torchao==0.18.0 coremltools==9.0
$PIP tensorflow-cpu==2.21.0
$PIP onnx==1.23.2 onnxruntime==1.31.1 onnxscript==0.7.2 onnx-graphsurgeon==0.6.1 sng4onnx==2.0.1 \
     onnxslim==0.1.98 onnxsim==0.8.1 psutil
$PIP ai-edge-litert==2.3.0 litert-torch==0.10.0 ai-edge-quantizer==0.10.0
# OpenVINO: a second host runtime for the ONNX sets (runtime_py.render --runtime openvino[-bf16]); ~180 MB, numpy only
$PIP openvino==2026.4.1
$PIP rawpy==0.28.0 adb-shell==0.4.4
# Their metadata pins old TF/numpy/onnx and the full tensorflow dist; they run fine with the versions above.
$PIP --no-deps tf-keras==2.21.0 onnx2tf==1.29.24
echo "== this project"
$PIP -e ".[dev]"
# The arm64 phone stand-in (busybox userland under qemu-user) and the arm64 runner bundle (cross-built against the
# aarch64 executorch / ai-edge-litert wheels; cached in ~/.cache/isp-arm64): measured 8.5 s (userland) + 2 min 50 s
# (wheels download + cross build) the first time on a loaded 2-vCPU Xeon, apt installs not included; 0.4 s after.
# Warn-only: a machine without binfmt_misc still sets up (under CI the arm64 tests then fail, as they must).
echo "== arm64 stand-in and runner bundle"
if bash scripts/arm64_device.sh "${ISP_ARM64_CACHE:-$HOME/.cache/isp-arm64}/device" >/dev/null; then
  $VENV/bin/python -m android_harness.bundle >/dev/null \
    || echo "warning: the arm64 runner bundle did not build; arm64 device tests will be skipped" >&2
else
  echo "warning: no arm64 stand-in here (see scripts/arm64_device.sh); arm64 device tests will be skipped" >&2
fi
echo "== GPU delegate (LiteRT on Vulkan): the adapter the GPU runtime sees"
$VENV/bin/python -m runtime_py.gpu || echo "warning: no GPU adapter for LiteRT; GPU delegate tests will be skipped" >&2
echo "done: $VENV"
