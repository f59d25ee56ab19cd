"""Capture data for the S24 AWB models: ISO and exposure time, read from the DNG's EXIF tags.

* ISO: ``ISOSpeedRatings`` (EXIF 0x8827, "PhotographicSensitivity"), what ExifTool reports as ``EXIF:ISO``.
* Exposure time in seconds: ``ExposureTime`` (0x829A), else the APEX ``ShutterSpeedValue`` (0x9201) as
  ``2^-value`` — the two sources of ExifTool's ``Composite:ShutterSpeed`` that the official pipeline reads.

The toolkit never invents capture data: a value that is absent, zero or negative is missing, and asking for a model
that needs it is a :class:`MissingCaptureData` error that names the tag and the ``--awb`` routes (or flags) that work
instead. Values given explicitly by the caller (``--iso``, ``--exposure-time``) are used as given and reported as such.
(The golden files of ``shared/golden_ext`` inject ISO and shutter for DNGs without them; that convention lives only in
the parity harness, :mod:`isp.parity_awb`.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

__all__ = ["CaptureData", "MissingCaptureData", "read_capture_data", "require", "ISO_TAG", "EXPOSURE_TAGS"]

ISO_TAG = "ISOSpeedRatings (EXIF 0x8827)"
EXPOSURE_TAGS = "ExposureTime (EXIF 0x829A) or ShutterSpeedValue (EXIF 0x9201)"


class MissingCaptureData(ValueError):
    """A model needs capture data the DNG does not record."""


@dataclass(frozen=True)
class CaptureData:
    iso: float | None
    exposure_time: float | None          # seconds
    iso_source: str = ""                 # e.g. "ISOSpeedRatings", "given (--iso)"
    exposure_source: str = ""


def _positive(v) -> float | None:
    if isinstance(v, (list, tuple)):
        v = v[0] if v else None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f > 0 else None


def read_capture_data(metadata: Mapping[str, Any], iso: float | None = None,
                      exposure_time: float | None = None) -> CaptureData:
    """ISO and exposure time from a DNG tag dictionary (:attr:`isp.io.dng.RawImage.metadata`); ``iso`` /
    ``exposure_time`` given by the caller take precedence. Missing values come back as ``None``."""
    def given(value, flag: str, what: str) -> float:
        v = _positive(value)
        if v is None:
            raise ValueError(f"{flag} must be a positive {what}, got {value!r}")
        return v

    if iso is not None:
        iso_v, iso_src = given(iso, "--iso", "number"), "given (--iso)"
    else:
        iso_v, iso_src = _positive(metadata.get("ISOSpeedRatings")), "ISOSpeedRatings"
    if exposure_time is not None:
        exp_v, exp_src = given(exposure_time, "--exposure-time", "number of seconds"), "given (--exposure-time)"
    else:
        exp_v, exp_src = _positive(metadata.get("ExposureTime")), "ExposureTime"
        if exp_v is None:
            apex = metadata.get("ShutterSpeedValue")
            try:
                exp_v = 2.0 ** -float(apex[0] if isinstance(apex, (list, tuple)) else apex)
                exp_v, exp_src = _positive(exp_v), "ShutterSpeedValue"
            except (TypeError, ValueError, IndexError, OverflowError):
                exp_v = None
    return CaptureData(iso_v, exp_v, iso_src if iso_v else "", exp_src if exp_v else "")


def require(capture: CaptureData, needs: tuple[str, ...], source: str | Path, route: str) -> CaptureData:
    """Raise :class:`MissingCaptureData` naming the first missing value the route ``needs`` (``"iso"``,
    ``"shutter_speed"``) and what works instead."""
    missing = []
    if "iso" in needs and capture.iso is None:
        missing.append(("the ISO", ISO_TAG, "--iso N"))
    if "shutter_speed" in needs and capture.exposure_time is None:
        missing.append(("the exposure time", EXPOSURE_TAGS, "--exposure-time SECONDS"))
    if missing:
        what = " and ".join(m[0] for m in missing)
        tags = "; ".join(m[1] for m in missing)
        flags = " and ".join(m[2] for m in missing)
        raise MissingCaptureData(
            f"{source}: --awb {route} needs {what}, which this DNG does not record (tag {tags} absent or 0). "
            f"Use --awb c5 (cross-camera, needs only the image) or --awb metadata (the camera's white balance), "
            f"or give the value explicitly with {flags}.")
    return capture
