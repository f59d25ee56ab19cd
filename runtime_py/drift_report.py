"""The drift tool's report: the JSON record and the HTML page (verdict, end to end, per unit, images) of a
:class:`runtime_py.drift.DriftResult`."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from runtime_py import metrics as M
from runtime_py.drift_budgets import METRICS, kind_of, violations

__all__ = ["html_sections", "write_reports"]

#: longest side of the page's images
_DISPLAY_SIDE = 512


def _hwc(t: torch.Tensor, name: str) -> np.ndarray:
    """A displayable ``(H, W, 3)`` float image of a ``(1, 3, H, W)`` tensor: linear data sRGB-encoded."""
    a = t.detach().float()[0].permute(1, 2, 0).numpy().astype(np.float64)
    a = np.clip(a, 0.0, 1.0)
    return M.linear_to_srgb(a) if kind_of(name) == "linear" else a


def _heat(ref: torch.Tensor, art: torch.Tensor, name: str) -> tuple[np.ndarray, float, str]:
    mode = "de2000" if kind_of(name) == "srgb" else "rgb"
    err = M.error_map(art, ref, mode=mode)
    vmax = max(float(err.max()), 1e-6)
    return M.colorize(err, vmax), vmax, "ΔE00" if mode == "de2000" else "|ΔRGB|"


def _fmt_where(row: Mapping[str, Any]) -> str:
    return row.get("where", "")


def html_sections(result: Any) -> list:
    """The page: verdict, end to end (table, chain, images, timings), per unit (table, images), not run, failures."""
    from runtime_py.report import Budget, Legend, Section, comparison_row

    rep = result.report
    budgets = rep.get("budget") or {}
    secs = []
    verdict = "no budget checked" if not budgets else ("within budget" if rep["passed"] else
                                                       f"{len(rep['violations'])} budget violation(s)")
    g = rep["set"]["geometry"]
    secs.append(Section(
        heading=f"Summary: {verdict}",
        text=(f"Artifacts {rep['artifacts']} — {g['width']}x{g['height']} (quarter {g['quarter'][1]}x"
              f"{g['quarter'][0]}), tile {g['tile']}, overlap {g['overlap']}; style {rep['set']['style']}, "
              f"denoiser {rep['set']['denoiser']}; targets {', '.join(rep['set']['targets'])}. Reference: "
              f"{rep['reference']['pipeline']}. Frames: {', '.join(f['name'] for f in rep['frames'])}. Budget: "
              f"{budgets.get('name', 'none') if budgets else 'none'}."),
        table=[{"violation": v} for v in rep["violations"]] or None))
    # end to end
    e2e_rows, chain_rows, timing_rows = [], [], []
    for e in rep["end_to_end"]:
        if e["status"] != "ok":
            e2e_rows.append({"chain": e["name"], "class": e["class"], "frame": "—", "status": e["error"]})
            continue
        limits = budgets.get("end_to_end", {}).get(e["class"]) if budgets else None
        for f in e["frames"]:
            s = f["srgb"]
            bad = violations(s, limits) if limits else []
            e2e_rows.append({"chain": e["name"], "class": e["class"], "frame": f["frame"],
                             **{k: s[k] for k in METRICS}, "seconds": f["seconds"],
                             "verdict": ("FAIL: " + "; ".join(bad)) if bad else ("ok" if limits else "—")})
        first = e["frames"][0]
        for n, c in first["chain"].items():
            chain_rows.append({"chain": e["name"], "tensor": n, "kind": c["kind"], "psnr": c["psnr"],
                               "ssim": c["ssim"], "de2000_mean": c["de2000_mean"], "max_abs": c["max_abs"]})
        timing_rows.append({"chain": e["name"], "frame": first["frame"],
                            **{u: t["seconds"] for u, t in first["timings"].items()}, "total": first["seconds"]})
    rows = []
    for name, ref, art, frame in result.e2e_images:
        heat, vmax, unit = _heat(ref, art, "srgb")
        rows.append(comparison_row(_hwc(ref, "srgb"), _hwc(art, "srgb"), heat, f"{name} — {frame}", vmax=vmax,
                                   unit=unit))
    secs.append(Section(heading="End to end: artifact pipeline vs reference (final srgb)", table=e2e_rows or None,
                        formats={"psnr": ".2f", "ssim": ".5f", "seconds": ".2f"}, image_rows=rows,
                        text="Worst-case budgets by chain class: " + "; ".join(
                            f"{k}: {', '.join(f'{m} {v:g}' for m, v in lim.items())}"
                            for k, lim in budgets.get("end_to_end", {}).items()) if budgets else None))
    if chain_rows:
        secs.append(Section(heading="End to end: drift along the chain (first frame)", table=chain_rows,
                            formats={"psnr": ".2f", "ssim": ".5f"}))
    if timing_rows:
        secs.append(Section(heading="End to end: seconds per unit on this host (first frame)", table=timing_rows,
                            formats={k: ".3f" for k in timing_rows[0] if k not in ("chain", "frame")}))
    # per unit
    unit_rows = []
    for u in rep["units"]:
        limits = (budgets.get("unit", {}).get(u.get("budget_class", u["precision"])) if budgets else None)
        rt = u.get("runtime", "cpu")
        if u["status"] != "ok":
            unit_rows.append({"unit": u["unit"], "target": u["target"], "precision": u["precision"], "runtime": rt,
                              "output": "—", "scope": "—", "verdict": f"FAIL: {u['error']}"})
            continue
        for s in u["summary"]:
            bad = violations(s, limits) if (limits and s["budgeted"]) else []
            runner = {"runner": "float Q/DQ emulation"} if u.get("runner_options", {}).get("optimization") == \
                "disable" else {}
            unit_rows.append({"unit": u["unit"], "target": u["target"], "precision": u["precision"], "runtime": rt,
                              **runner,
                              "output": s["output"], "scope": s["scope"], "n": s["n"],
                              **{k: s[k] for k in METRICS}, "worst at": _fmt_where(s),
                              "verdict": ("FAIL: " + "; ".join(bad)) if bad else
                              ("ok" if limits and s["budgeted"] else "—")})
    rows = []
    by_unit: dict[str, list[Any]] = {}            # unit -> its runtime_py.drift._UnitImage records
    for im in result.unit_images:
        by_unit.setdefault(im.unit, []).append(im)
    for ims in by_unit.values():         # one row per unit: the worst artifact in full, the others' heat maps
        ims = sorted(ims, key=lambda im: M.psnr(im.artifact, im.reference))
        worst = ims[0]
        heat, vmax, unit = _heat(worst.reference, worst.artifact, worst.name)
        row = comparison_row(_hwc(worst.reference, worst.name), _hwc(worst.artifact, worst.name), heat,
                             f"{worst.label}: {worst.name}" + (" (worst)" if len(ims) > 1 else ""), vmax=vmax,
                             unit=unit)
        for im in ims[1:]:
            heat, vmax, unit = _heat(im.reference, im.artifact, im.name)
            row.append((f"{im.label}: {im.name}: error heat map", heat, Legend(vmax, unit)))
        rows.append(row)
    secs.append(Section(
        heading="Per unit: artifact vs reference on the reference's inputs (worst case)", table=unit_rows or None,
        formats={"psnr": ".2f", "ssim": ".5f"},
        budgets={"psnr": Budget(min=budgets["unit"]["fp32"]["psnr_min"])}
        if budgets and "psnr_min" in budgets.get("unit", {}).get("fp32", {}) and
        all(u["precision"] == "fp32" for u in rep["units"]) else None,
        image_rows=rows,
        text=("frame = the unit over the whole frame (tiled units stitched as the pipeline does); tiles = each "
              "tile before stitching. Linear images are shown sRGB-encoded; heat maps: ΔE00 for sRGB outputs, "
              "|ΔRGB| otherwise, scaled to each map's maximum. bgu_grid is not budgeted (see the docs); "
              "upsample_fit is judged by its grid sliced with the reference slicer.")))
    if rep["not_run"]:
        secs.append(Section(heading="Not run on this host", table=[
            {"unit": r["unit"], "target": r["target"], "precision": r["precision"], "file": r["file"],
             "status": r["status"],
             "compute precision": (r.get("structural") or {}).get("compute_precision"),
             "compute units": (r.get("structural") or {}).get("compute_units"),
             "ops": (r.get("structural") or {}).get("op_count"),
             "top op types": ", ".join(f"{k} {v}" for k, v in list(((r.get("structural") or {}).get("op_types")
                                                                     or {}).items())[:6]),
             "note": r.get("structural_error") or r.get("reason")} for r in rep["not_run"]]))
    if rep["export_failures"]:
        secs.append(Section(heading="Export failures recorded in the manifest", table=[
            {k: f.get(k) for k in ("unit", "target", "precision", "error")} for f in rep["export_failures"]]))
    if rep["reference"]["eval_set_reproducibility"]:
        secs.append(Section(heading="Reference reproducibility (reference run vs the evaluation set's stored srgb)",
                            table=rep["reference"]["eval_set_reproducibility"], formats={"psnr": ".2f"}))
    return secs


def write_reports(result: Any, json_path: str | Path | None = None,
                  html_path: str | Path | None = None) -> None:
    """The JSON report and the HTML page (both atomic; folders created)."""
    from runtime_py.report import write_html_report, write_json_report

    if json_path is not None:
        write_json_report(json_path, result.report)
    if html_path is not None:
        write_html_report(html_path, f"Drift: {Path(result.report['artifacts']).name}", html_sections(result),
                          versions=result.report.get("versions"), max_side=_DISPLAY_SIDE)
