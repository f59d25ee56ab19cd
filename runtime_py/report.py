"""Human-readable drift / benchmark reports: one self-contained HTML page, plus the JSON twin.

``write_html_report(path, title, sections)`` writes plain HTML with inline CSS — no scripts, no external files:
images are embedded as 8-bit PNGs in ``data:image/png;base64,...`` URIs, so the page can be mailed or attached to a
CI run as one file. A section (:class:`Section`, or a plain dict with the same keys) has

* ``heading``;
* ``table``: a list of dict rows (columns in order of first appearance). Numbers are formatted with 4 significant
  digits unless ``formats`` gives a format spec for the column (``{"latency_ms": ".2f"}``); ``None`` shows as "—",
  infinities as "∞". ``budgets`` maps a column to a :class:`Budget` (or a bare number = an upper bound): a cell
  outside its budget gets the class ``over`` (red), a cell within it ``ok`` (green); NaN is always ``over``;
* ``image_rows``: a list of rows, each a list of ``(caption, image)`` or ``(caption, image, Legend)`` items; the
  image is ``(H, W, 3)`` float in [0, 1] or uint8 (numpy or torch; ``(H, W)`` greys are replicated). Images longer
  than ``max_side`` (768 px) on their long side are downscaled (Lanczos) for the page; the caption then says so.
  :func:`comparison_row` builds the usual "reference | artifact | error heat map" triplet;
* ``text``: an optional paragraph.

The header carries the generation time (UTC ISO 8601 unless given) and, when given, a tool-versions block
(:func:`tool_versions` collects the usual ones).

Writes are atomic like :mod:`isp.jsonio`: the page goes to a uniquely named temporary file in the target folder, is
fsync'ed and ``os.replace``'d over the target, so a crash or a full disk leaves the previous report untouched and no
temporary file behind. ``write_json_report`` delegates to :func:`isp.jsonio.write_json_atomic`.
"""
from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from isp.atomic import write_bytes_atomic
from isp.jsonio import write_json_atomic
from isp.versions import tool_versions as read_versions
from runtime_py.metrics import HEATMAP_ANCHORS

__all__ = ["Budget", "Legend", "Section", "comparison_row", "render_html", "write_html_report",
           "write_json_report", "tool_versions", "format_value", "MAX_SIDE"]

#: long side (pixels) above which images are downscaled for the page
MAX_SIDE = 768


@dataclass(frozen=True)
class Budget:
    """Allowed range of a column: a value below ``min`` or above ``max`` is over budget (either may be ``None``).

    ``Budget(max=1.0)`` for "ΔE mean at most 1", ``Budget(min=40.0)`` for "PSNR at least 40 dB".
    """
    min: float | None = None
    max: float | None = None

    def within(self, value: float) -> bool:
        if math.isnan(value):
            return False
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def describe(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f"≥ {format_value(self.min)}")
        if self.max is not None:
            parts.append(f"≤ {format_value(self.max)}")
        return " and ".join(parts) or "any"


@dataclass(frozen=True)
class Legend:
    """Scale of a heat map: the colour map from 0 (left) to ``vmax`` (right), in ``unit``."""
    vmax: float
    unit: str = ""


@dataclass
class Section:
    heading: str
    table: Sequence[Mapping[str, Any]] | None = None
    budgets: Mapping[str, Budget | float] | None = None
    formats: Mapping[str, str] | None = None
    image_rows: Sequence[Sequence[tuple]] = field(default_factory=list)
    text: str | None = None


# ---------------------------------------------------------------------------------------------- helpers

def tool_versions(*modules: str) -> dict[str, str]:
    """``{"python", "platform", "numpy", "torch", ...}`` versions for the report header; extra module names are
    looked up too (distribution names; ``"not installed"`` when absent)."""
    return read_versions(("numpy", "torch", *modules), system=True)


def format_value(value: Any, spec: str | None = None) -> str:
    """Table-cell text: ``None`` -> "—", NaN -> "nan", ±inf -> "±∞", ints as is, floats with ``spec``
    (default ``.4g``), anything else ``str``."""
    if value is None:
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return format(int(value), spec) if spec else str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        return format(v, spec or ".4g")
    return str(value)


def _as_number(value: Any) -> float | None:
    if isinstance(value, (bool, np.bool_)) or value is None:
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    return None


def _to_uint8_rgb(img, caption: str) -> np.ndarray:
    try:
        import torch
        if isinstance(img, torch.Tensor):
            img = img.detach().to("cpu").numpy()
    except ImportError:  # pragma: no cover - torch is a project dependency
        pass
    a = np.asarray(img)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"image {caption!r}: expected (H, W, 3) or (H, W), got shape {a.shape} "
                         "(for a (1, 3, H, W) tensor pass x[0].permute(1, 2, 0))")
    if a.dtype == np.uint8:
        return a
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"image {caption!r}: expected uint8 or float in [0, 1], got dtype {a.dtype}")
    if np.isnan(a).any():
        raise ValueError(f"image {caption!r}: contains NaN values")
    return np.rint(np.clip(a.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def _png_data_uri(rgb8: np.ndarray, max_side: int) -> tuple[str, tuple[int, int]]:
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(rgb8), mode="RGB")
    w, h = im.size
    if max(w, h) > max_side:
        s = max_side / max(w, h)
        im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), im.size


def _gradient_css() -> str:
    n = len(HEATMAP_ANCHORS) - 1
    stops = ", ".join(f"rgb({r:.0f},{g:.0f},{b:.0f}) {100.0 * i / n:.1f}%"
                      for i, (r, g, b) in enumerate(HEATMAP_ANCHORS))
    return f"linear-gradient(to right, {stops})"


def comparison_row(reference, artifact, heatmap, label: str, *, vmax: float | None = None,
                   unit: str = "") -> list[tuple]:
    """One image row "reference | artifact | error heat map" captioned with ``label``.

    Give ``vmax`` (and ``unit``, e.g. "ΔE00") — the value at full brightness of the heat map, as passed to
    :func:`runtime_py.metrics.error_heatmap` — to draw the colour scale under the heat map.
    """
    heat: tuple = (f"{label}: error heat map", heatmap)
    if vmax is not None:
        heat += (Legend(float(vmax), unit),)
    return [(f"{label}: reference", reference), (f"{label}: artifact", artifact), heat]


# ---------------------------------------------------------------------------------------------- rendering

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f; margin: 24px auto;
       max-width: 1280px; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
.meta { color: #555; font-size: 12px; } .meta table td { padding: 1px 10px 1px 0; }
table.data { border-collapse: collapse; margin: 8px 0; font-variant-numeric: tabular-nums; }
table.data th, table.data td { border: 1px solid #d0d0d0; padding: 3px 8px; }
table.data th { background: #f3f3f3; text-align: left; }
td.num { text-align: right; } td.over { background: #f8d0d0; color: #8b0000; } td.ok { background: #d6f0d6; }
.budget { font-weight: normal; color: #666; font-size: 11px; display: block; }
.row { display: flex; flex-wrap: wrap; gap: 12px; margin: 10px 0; }
figure { margin: 0; min-width: 160px; }
figure img { display: block; max-width: 100%; height: auto; }
figcaption { font-size: 12px; color: #333; margin-top: 3px; }
.legend { height: 10px; margin-top: 4px; border: 1px solid #999; }
.legend-labels { display: flex; justify-content: space-between; font-size: 11px; color: #555; }
"""


def _coerce_section(sec: Section | Mapping[str, Any]) -> Section:
    if isinstance(sec, Section):
        return sec
    if isinstance(sec, Mapping):
        known = {f.name for f in fields(Section)}
        unknown = set(sec) - known
        if unknown:
            raise ValueError(f"section keys {sorted(unknown)} are not understood; a section has {sorted(known)}")
        if "heading" not in sec:
            raise ValueError("a section needs a 'heading'")
        return Section(**sec)
    raise TypeError(f"a section is a runtime_py.report.Section or a dict, got {type(sec).__name__}")


def _budget(b: Budget | float | int) -> Budget:
    if isinstance(b, Budget):
        return b
    if isinstance(b, (int, float, np.integer, np.floating)) and not isinstance(b, bool):
        return Budget(max=float(b))
    raise ValueError(f"a budget is a runtime_py.report.Budget or a number (upper bound), got {b!r}")


def _render_table(rows: Sequence[Mapping[str, Any]], budgets: Mapping[str, Any] | None,
                  formats: Mapping[str, str] | None) -> str:
    if not rows:
        return '<p class="meta">(no rows)</p>'
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    budgets = {k: _budget(v) for k, v in (budgets or {}).items()}
    formats = dict(formats or {})
    out = ['<table class="data"><thead><tr>']
    for col in columns:
        note = f'<span class="budget">budget {html.escape(budgets[col].describe())}</span>' if col in budgets else ""
        out.append(f"<th>{html.escape(str(col))}{note}</th>")
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>")
        for col in columns:
            value = row.get(col)
            classes = []
            number = _as_number(value)
            if number is not None:
                classes.append("num")
                if col in budgets:
                    classes.append("ok" if budgets[col].within(number) else "over")
            cls = f' class="{" ".join(classes)}"' if classes else ""
            out.append(f"<td{cls}>{html.escape(format_value(value, formats.get(col)))}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _render_figure(item: tuple, max_side: int) -> str:
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
        raise ValueError("an image-row item is (caption, image) or (caption, image, Legend), got "
                         f"{type(item).__name__} (an image row is a list of such items)")
    caption, img = str(item[0]), item[1]
    legend = item[2] if len(item) == 3 else None
    rgb8 = _to_uint8_rgb(img, caption)
    uri, (w, h) = _png_data_uri(rgb8, max_side)
    full_h, full_w = rgb8.shape[:2]
    size_note = f" (shown at {w}×{h} of {full_w}×{full_h})" if (w, h) != (full_w, full_h) else ""
    parts = [f'<figure style="width:{w}px"><img src="{uri}" width="{w}" height="{h}" '
             f'alt="{html.escape(caption, quote=True)}">']
    if legend is not None:
        if not isinstance(legend, Legend):
            raise ValueError(f"image {caption!r}: the third item must be a runtime_py.report.Legend")
        unit = f" {legend.unit}" if legend.unit else ""
        parts.append(f'<div class="legend" style="background:{_gradient_css()}"></div>'
                     f'<div class="legend-labels"><span>0</span>'
                     f"<span>{html.escape(format_value(legend.vmax) + unit)}</span></div>")
    parts.append(f"<figcaption>{html.escape(caption + size_note)}</figcaption></figure>")
    return "".join(parts)


def render_html(title: str, sections: Sequence[Section | Mapping[str, Any]], *,
                generated: datetime | str | None = None, versions: Mapping[str, Any] | None = None,
                max_side: int = MAX_SIDE) -> str:
    """The report page as a string (see the module docstring); :func:`write_html_report` writes it."""
    secs = [_coerce_section(s) for s in sections]
    if generated is None:
        generated = datetime.now(timezone.utc)
    stamp = generated.isoformat(timespec="seconds") if isinstance(generated, datetime) else str(generated)
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
           f"<h1>{html.escape(title)}</h1>", f'<div class="meta"><p>Generated {html.escape(stamp)}</p>']
    if versions:
        out.append('<table class="versions"><tbody>')
        for name, ver in versions.items():
            out.append(f"<tr><td>{html.escape(str(name))}</td><td>{html.escape(str(ver))}</td></tr>")
        out.append("</tbody></table>")
    out.append("</div>")
    for sec in secs:
        out.append(f"<section><h2>{html.escape(sec.heading)}</h2>")
        if sec.text:
            out.append(f"<p>{html.escape(sec.text)}</p>")
        if sec.table is not None:
            out.append(_render_table(sec.table, sec.budgets, sec.formats))
        for row in sec.image_rows:
            out.append('<div class="row">' + "".join(_render_figure(item, max_side) for item in row) + "</div>")
        out.append("</section>")
    out.append("</body></html>\n")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------- writing

def write_html_report(path: str | Path, title: str, sections: Sequence[Section | Mapping[str, Any]], *,
                      generated: datetime | str | None = None, versions: Mapping[str, Any] | None = None,
                      max_side: int = MAX_SIDE) -> Path:
    """Render the page (:func:`render_html`) and write it atomically to ``path`` (folders created); returns it."""
    path = Path(path)
    page = render_html(title, sections, generated=generated, versions=versions, max_side=max_side)
    write_bytes_atomic(path, page.encode("utf-8"), what="the report ")
    return path


def write_json_report(path: str | Path, payload: Any) -> Path:
    """The machine-readable twin of the page: :func:`isp.jsonio.write_json_atomic` (non-finite floats -> null)."""
    return write_json_atomic(path, payload)
