"""The benchmark's report: ``results.json`` (the record) and ``report.html`` (tables, reference | device | ΔE
images)."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from android_harness.host_runner import sanitize_name
from isp.jsonio import write_json_atomic
from runtime_py.bench.compare import DRIFT_BUDGETS, RAW_SPACE
from runtime_py.bench.options import SCHEMA

log = logging.getLogger("runtime_py.bench")

__all__ = ["Reporting", "write_html"]


class Reporting:
    """The report part of :class:`runtime_py.bench.run.Run` (a mixin)."""

    # ------------------------------------------------------------------------------------------------ report
    def summary(self) -> dict:
        h, w = self.height, self.width
        units = []
        estimate, complete = 0.0, True
        for unit in self.plans:
            r = self.results.get(unit)
            if r is None or r.get("status") != "ok":
                complete = False
                continue
            estimate += (r["latency_ms"]["p50"] or 0.0) * r["calls_per_frame"]
        for unit, r in self.results.items():
            units.append(r)
        chain_units = set(self.chain_units())
        est_complete = complete and chain_units <= set(self.results)
        info = self.info.as_dict() if self.info else None
        return {
            "schema": SCHEMA, "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "profile": self.profile.to_json(), "device": info, "transport": self.opts.transport,
            "runner": self.runner, "artifacts": str(self.artifacts),
            "manifest": {k: self.manifest.get(k) for k in ("geometry", "style", "lut", "denoiser", "policy",
                                                            "created", "updated")},
            "options": {"iterations": self.opts.iterations, "warmup": self.opts.warmup, "frames": self.opts.frames,
                        "threads": self.opts.threads, "timeout_s": self.opts.timeout_s, "retries": self.opts.retries},
            "reference": {"key": self.ref.key, "source": self.ref.source} if hasattr(self, "ref") else None,
            "push": self.push_report, "units": units, "skipped_units": self.missing,
            "estimate_frame_ms": estimate if est_complete else None,
            "estimate_note": ("Σ p50 × calls per frame over every unit of the render" if est_complete else
                              "incomplete: some unit of the render has no result"),
            "chain": self.chain, "chain_note": self.chain_note,
            "measured_frame_ms": float(np.mean([f["measured_ms"] for f in self.chain])) if self.chain else None,
            "chain_failed": self.chain_failed,
            "peak_rss_bytes": max((r.get("peak_rss_bytes") or 0 for r in units if r.get("status") == "ok"),
                                  default=None),
            "events": self.events, "fault": self.fault, "seconds": round(time.monotonic() - self.t0, 3),
            "frame": [h, w], "emulation": self.emulation,
            "export": self.export_record, "phases": dict(self.phases),
        }

    def write_reports(self) -> dict:
        summary = self.summary()
        write_json_atomic(self.out / "results.json", summary)
        try:
            write_html(self.out / "report.html", summary, self)
        except Exception as exc:  # noqa: BLE001 — the JSON is the record; a page problem must not lose it
            log.error("could not write the HTML report: %s", exc)
        return summary


def _fmt_mib(b: Any) -> Any:
    return None if not b else b / 2 ** 20


def _display(name: str, a: np.ndarray) -> np.ndarray:
    """An image tensor (1, 3, H, W) as an (H, W, 3) picture; linear data sRGB-encoded for viewing."""
    from runtime_py.metrics import linear_to_srgb
    img = np.clip(np.asarray(a, dtype=np.float64)[0].transpose(1, 2, 0), 0.0, 1.0)
    from runtime_py.drift import kind_of
    return linear_to_srgb(img) if kind_of(name) == "linear" or name in RAW_SPACE else img


def write_html(path: Path, s: Mapping[str, Any], run: Any) -> None:
    from runtime_py.metrics import error_heatmap, error_map
    from runtime_py.report import Budget, Section, comparison_row, tool_versions, write_html_report

    d = s.get("device") or {}
    prof = s["profile"]
    sections = []
    meta = [{"field": "profile", "value": f"{prof['name']} ({prof.get('display_name')}, SoC {prof.get('soc')})"},
            {"field": "device", "value": f"{d.get('model')} / {d.get('device')} / {d.get('soc')} / {d.get('abi')} "
                                         f"SDK {d.get('sdk')} ({d.get('serial')} via {d.get('transport')})"},
            {"field": "runner", "value": s["runner"]}, {"field": "artifacts", "value": s["artifacts"]},
            {"field": "frame", "value": f"{s['frame'][1]}x{s['frame'][0]}, tile {s['manifest']['geometry'].get('tile')}"
                                        f", overlap {s['manifest']['geometry'].get('overlap')}"},
            {"field": "reference", "value": (s.get("reference") or {}).get("source")},
            {"field": "iterations / warm-up", "value": f"{s['options']['iterations']} / {s['options']['warmup']}"},
            {"field": "push", "value": json.dumps(s.get("push"))},
            {"field": "wall time per phase (s)", "value": ", ".join(f"{k[:-2]} {v}" for k, v in
                                                                 (s.get("phases") or {}).items())}]
    if s.get("export"):
        ex = s["export"]
        meta.insert(4, {"field": "exported by this run", "value": f"convert/export.py {' '.join(ex['argv'])} "
                                                                  f"({ex['seconds']} s)" +
                                                                  (f"; {ex['note']}" if ex.get("note") else "")})
    if s.get("fault"):
        meta.insert(0, {"field": "RUN ABORTED", "value": s["fault"]})
    if s.get("emulation"):
        meta.insert(0, {"field": "TIMINGS FROM EMULATION", "value": s["emulation"]})
    sections.append(Section("Device and run", table=meta,
                            text="Timings are the device runner's own clock around each inference; the Python host "
                                 "runner's peak RSS includes the interpreter and the runtime module."))
    rows = []
    for r in s["units"]:
        lat = r.get("latency_ms") or {}
        rows.append({"unit": r["unit"], "status": r["status"] + (" (resumed)" if r.get("resumed") else ""),
                     "file": r["file"], "precision": r.get("precision"), "preferred": r.get("preferred"),
                     "ran on": r.get("backend") or r.get("error", "")[:120], "calls/frame": r.get("calls_per_frame"),
                     "p50 ms": lat.get("p50"), "p90 ms": lat.get("p90"), "p99 ms": lat.get("p99"),
                     "min ms": lat.get("min"), "mean ms": lat.get("mean"),
                     "p50 × calls": (lat.get("p50") or 0) * (r.get("calls_per_frame") or 0) if lat.get("p50")
                     else None, "peak RSS MiB": _fmt_mib(r.get("peak_rss_bytes")), "load ms": r.get("load_ms")})
    est = s.get("estimate_frame_ms")
    sections.append(Section("Latency per unit (reference inputs)", table=rows,
                            formats={c: ".3f" for c in ("p50 ms", "p90 ms", "p99 ms", "min ms", "mean ms",
                                                        "p50 × calls")} | {"peak RSS MiB": ".1f", "load ms": ".1f"},
                            text=f"Estimated frame time Σ p50 × calls: "
                                 f"{'%.2f ms' % est if est is not None else '— (' + s['estimate_note'] + ')'}"))
    drift_rows, images = [], []
    for r in s["units"]:
        for m in r.get("drift", []):
            drift_rows.append({"unit": r["unit"], "output": m["name"], "kind": m.get("kind"),
                               "psnr": m.get("psnr"), "ssim": m.get("ssim"), "de2000_mean": m.get("de2000_mean"),
                               "de2000_p95": m.get("de2000_p95"), "de2000_max": m.get("de2000_max"),
                               "max_abs": m.get("max_abs"), "error": m.get("error")})
        if r.get("status") != "ok":
            continue
        folder = run.state.unit_dir(r["unit"]) / "outputs"
        up = run.plans.get(r["unit"])
        refs = run.ref.unit_outputs.get(r["unit"], [])
        for name, ref in zip(up.output_names if up else [], refs):
            f = folder / (sanitize_name(name) + ".npy")
            if ref is None or not f.is_file() or ref.ndim != 4 or ref.shape[1] != 3 or min(ref.shape[2:]) < 8:
                continue
            dev = run.plans[r["unit"]].codec.decode(name, np.load(f))
            if dev.shape != ref.shape:
                continue
            err = error_map(_display(name, dev), _display(name, ref))
            vmax = max(float(err.max()), 1e-6)
            images.append(comparison_row(_display(name, ref), _display(name, dev),
                                         error_heatmap(_display(name, dev), _display(name, ref), vmax=vmax),
                                         f"{r['unit']}.{name}", vmax=vmax, unit="|ΔRGB|"))
            break
    sections.append(Section("Drift per unit (device vs PyTorch reference, on the reference's inputs)",
                            table=drift_rows, budgets={"psnr": Budget(min=DRIFT_BUDGETS["psnr"]),
                                                       "de2000_mean": Budget(max=DRIFT_BUDGETS["de2000_mean"])},
                            image_rows=images[:12],
                            text="Tiled units: the middle window of the tile plan. sRGB images: ΔE2000 on the values; "
                                 "linear images: ΔE2000 of the sRGB-encoded values; raw and parameters: PSNR (peak 1) "
                                 "and max |Δ|. Images: linear data sRGB-encoded for display."))
    if s.get("chain"):
        for fr in s["chain"]:
            step_rows = [{"unit": st["unit"], "calls": st["calls"], "Σ ms (measured)": st["sum_ms"],
                          "p50 ms": st["latency_ms"]["p50"], "ran on": st.get("backend"), "wall s": st["wall_s"],
                          "resumed": bool(st.get("resumed"))} for st in fr["steps"]]
            final = fr.get("final") or {}
            text = (f"Measured frame time (Σ of every inference of the frame on the device): {fr['measured_ms']:.2f} ms;"
                    f" estimate Σ p50 × calls: {'%.2f ms' % est if est is not None else '—'}; wall time of the chain "
                    f"(transfers, runner start-up, host tiling included): {fr['wall_s']:.1f} s. Final image vs the "
                    f"reference render: PSNR {format(final.get('psnr'), '.2f') if final.get('psnr') is not None else '—'}"
                    f" dB, ΔE2000 mean {format(final.get('de2000_mean'), '.3f') if final.get('de2000_mean') is not None else '—'}.")
            imgs = []
            fin = run.out / "chain" / f"frame{fr['frame']}" / "final.npz"
            if fin.is_file():
                dev_img = np.load(fin)["srgb"]
                ref_img = run.ref.frames[fr["frame"]]["srgb"]
                de = error_map(_display("srgb", dev_img), _display("srgb", ref_img), mode="de2000")
                vmax = max(float(np.percentile(de, 99.9)), 0.5)
                imgs.append(comparison_row(_display("srgb", ref_img), _display("srgb", dev_img),
                                           error_heatmap(_display("srgb", dev_img), _display("srgb", ref_img),
                                                         vmax=vmax, mode="de2000"),
                                           f"frame {fr['frame']}", vmax=vmax, unit="ΔE00"))
            sections.append(Section(f"End to end on the device, frame {fr['frame']}", table=step_rows,
                                    formats={"Σ ms (measured)": ".2f", "p50 ms": ".3f", "wall s": ".1f"},
                                    text=text, image_rows=imgs))
            sections.append(Section(f"Chain drift, frame {fr['frame']} (device chain vs reference intermediates)",
                                    table=[{"tensor": m["name"], "kind": m.get("kind"), "psnr": m.get("psnr"),
                                            "ssim": m.get("ssim"), "de2000_mean": m.get("de2000_mean"),
                                            "de2000_p95": m.get("de2000_p95"), "de2000_max": m.get("de2000_max"),
                                            "max_abs": m.get("max_abs"), "error": m.get("error")}
                                           for m in fr["drift"]],
                                    budgets={"psnr": Budget(min=DRIFT_BUDGETS["psnr"]),
                                             "de2000_mean": Budget(max=DRIFT_BUDGETS["de2000_mean"])}))
    else:
        sections.append(Section("End to end on the device", text=f"The chain was {s.get('chain_note') or 'not run'}."))
    if s.get("skipped_units"):
        sections.append(Section("Units not run", table=[{"unit": u, "why": why}
                                                       for u, why in s["skipped_units"].items()]))
    if s.get("events"):
        sections.append(Section("Events", table=[{"event": e} for e in s["events"]]))
    title = f"ISP on {prof.get('display_name') or prof['name']} ({d.get('serial', '?')}) — {Path(s['artifacts']).name}"
    write_html_report(path, title, sections, versions=tool_versions("onnxruntime", "executorch"))
