"""Android device harness: adb transports, a device driver, the device-side runner protocol and runners.

    transport.py          AdbTransport protocol; AdbShellTransport (adb-shell PyPI) and AdbClientTransport (adb binary)
    device.py             AndroidDevice: identify, push with sha256 skip, run the runner with a timeout, pull, clean up
    faults.py             typed errors (DeviceNotFound, DeviceUnauthorized, DeviceLost, DeviceStorageFull, ...)
    host_runner.py        the runner protocol in Python (ExecuTorch .pte, LiteRT .tflite, ONNX .onnx), for hosts
    native/               the ExecuTorch runner in C++ (same protocol), for Android via the NDK
    runner_protocol.md    the command-line / file / exit-code contract every runner follows

Nothing here imports a model runtime at import time; backends load inside functions.
"""
from android_harness.faults import (
    CommandTimeout,
    DeviceLost,
    DeviceNotFound,
    DeviceStorageFull,
    DeviceUnauthorized,
    HarnessError,
    RunnerCrashed,
    RunnerTimeout,
    TransferFailed,
)

__all__ = [
    "HarnessError",
    "DeviceNotFound",
    "DeviceUnauthorized",
    "DeviceLost",
    "DeviceStorageFull",
    "TransferFailed",
    "CommandTimeout",
    "RunnerCrashed",
    "RunnerTimeout",
]
