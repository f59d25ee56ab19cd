"""Device drift from ARM kernels next to x86's: each artifact set benchmarked on the arm64 stand-in (native arm64
runners under qemu-user) and on this x86 host, per unit and end to end, in one JSON + HTML report.

    python benchmarks/arm64_drift.py --serial 127.0.0.1:PORT SET [SET ...] [--device galaxy-s24] [--out DIR]
           [--transport adb-shell] [--key FILE] [--iterations 1]

Both sides are ``python -m runtime_py.bench`` runs with the same reference (``--reference-cache`` shared): the
arm64 side with ``--device PROFILE --serial …`` (the arm64 bundle), the x86 side with ``--device host --runner host``
(the same artifacts through the runtimes' Python bindings on this CPU). Latencies from the stand-in are emulation
(qemu-user on x86) and are labelled so; x86 latencies are this host's. Start the stand-in with
``scripts/arm64_device.sh`` (it prints the command).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _bench(argv: list[str], out: Path) -> dict | None:
    from runtime_py import bench
    code = bench.main(argv + ["--out", str(out)])
    res = out / "results.json"
    if not res.exists():
        print(f"error: bench {' '.join(argv)} wrote no results (exit {code})", file=sys.stderr)
        return None
    return json.loads(res.read_text())


def _unit_psnr(r: dict) -> float | None:
    vals = [d.get("psnr") for d in r.get("drift") or [] if d.get("psnr") is not None]
    return min(vals) if vals else None


def _final(s: dict | None) -> dict:
    return ((s or {}).get("chain") or [{}])[0].get("final") or {}


def compare(arm: dict | None, x86: dict | None) -> dict:
    """Per unit and end to end: arm64 vs x86 PSNR (min over the unit's outputs), ΔE2000 of the final image, p50."""
    units = {}
    for side, s in (("arm64", arm), ("x86", x86)):
        for r in (s or {}).get("units", []):
            u = units.setdefault(r["unit"], {"unit": r["unit"], "file": r.get("file")})
            u[f"{side}_psnr"] = _unit_psnr(r) if r.get("status") == "ok" else None
            u[f"{side}_p50_ms"] = (r.get("latency_ms") or {}).get("p50")
            u[f"{side}_backend"] = r.get("backend") or r.get("error", "")[:80]
    fa, fx = _final(arm), _final(x86)
    return {"units": list(units.values()),
            "final": {"arm64_psnr": fa.get("psnr"), "x86_psnr": fx.get("psnr"),
                      "arm64_de2000_mean": fa.get("de2000_mean"), "x86_de2000_mean": fx.get("de2000_mean")},
            "arm64_frame_ms": (arm or {}).get("measured_frame_ms"), "x86_frame_ms": (x86 or {}).get("measured_frame_ms"),
            "emulation": (arm or {}).get("emulation")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sets", nargs="+", type=Path, help="artifact folders (manifest.json)")
    ap.add_argument("--serial", required=True, help="the arm64 stand-in (127.0.0.1:PORT)")
    ap.add_argument("--device", default="galaxy-s24", help="Android profile (default galaxy-s24)")
    ap.add_argument("--transport", default="adb-shell")
    ap.add_argument("--key", default=None)
    ap.add_argument("--iterations", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("bench_out/arm64_drift"))
    a = ap.parse_args(argv)
    from isp.jsonio import write_json_atomic
    from runtime_py.report import Section, tool_versions, write_html_report

    common = ["--iterations", str(a.iterations), "--warmup", "0", "--reference-cache", str(a.out / "reference")]
    report, sections = {"schema": "isp_bench.arm64_drift/1", "sets": {}}, []
    for folder in a.sets:
        name = folder.resolve().name
        arm = _bench(["--device", a.device, "--serial", a.serial, "--transport", a.transport, "--artifacts",
                      str(folder), "--timeout-s", "1800", *common] + (["--key", a.key] if a.key else []),
                     a.out / name / "arm64")
        x86 = _bench(["--device", "host", "--runner", "host", "--artifacts", str(folder), *common],
                     a.out / name / "x86")
        c = compare(arm, x86)
        report["sets"][name] = c
        f = c["final"]
        rows = c["units"] + [{"unit": "END TO END (final sRGB)", "arm64_psnr": f["arm64_psnr"],
                              "x86_psnr": f["x86_psnr"], "arm64_p50_ms": c["arm64_frame_ms"],
                              "x86_p50_ms": c["x86_frame_ms"],
                              "arm64_backend": f"mean ΔE2000 {f['arm64_de2000_mean']}",
                              "x86_backend": f"mean ΔE2000 {f['x86_de2000_mean']}"}]
        sections.append(Section(f"{name}: arm64 stand-in vs x86", table=rows,
                                text=("PSNR in dB against the float32 PyTorch reference (min over a unit's "
                                      "outputs). arm64 latencies are EMULATION (qemu-user on x86), not a phone's: "
                                      + (c["emulation"] or "") + ". x86 latencies: this host, Python runner.")))
        print(f"{name}: final sRGB arm64 {f['arm64_psnr']} dB / x86 {f['x86_psnr']} dB; mean ΔE2000 arm64 "
              f"{f['arm64_de2000_mean']} / x86 {f['x86_de2000_mean']}")
    write_json_atomic(a.out / "arm64_drift.json", report)
    write_html_report(a.out / "arm64_drift.html", "Drift on ARM kernels (arm64 stand-in) vs x86", sections,
                      versions=tool_versions("executorch"))
    print(f"report: {a.out / 'arm64_drift.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
