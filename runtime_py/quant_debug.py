"""Quantization debugger: which quantized layer of a unit loses the accuracy, and is the calibration set enough.

    python -m runtime_py.drift --explain denoise [--calibration DIR] [--dng FILE ...] [--json OUT] [--html OUT]
                               [--e2e-top K] [--samples N] [--act-bits 8|16] [--eps E] [--fold-scales]

The unit (:mod:`convert.units`) is quantized the way the exporter quantizes it (torchao PT2E with ExecuTorch's
``XNNPACKQuantizer``: per-channel symmetric int8 weights, per-tensor int8 activations, scoped to the unit's network,
calibrated on the calibration set), then every quantize/dequantize pair of the converted graph is replaced by a
switchable fake quantizer (:class:`FakeQuant`: off, the calibrated 8-bit grid, or a 16-bit grid over the same
range). Pairs are grouped into *layers*: a leaf module (a convolution, a channel LayerNorm with all its internal
ops) or one functional op of a block (the simple-gate product, the attention mean, the residual scale, the skip
add), named ``<module path>`` or ``<module path>:<op>#<k>``.

For every layer, with only that layer quantized and everything else float:

* ``snr_db`` — SNR of the layer's output against the float network at the same point (everything before it float);
* ``unit_psnr_db`` — PSNR of the unit's output (e.g. ``denoised_raw``) against float;
* for the ``--e2e-top`` layers with the lowest unit PSNR: ``e2e_psnr_db`` and ``e2e_de2000_mean`` — the whole
  reference pipeline (:class:`isp.pipeline.Pipeline`) on the evaluation frames with only that layer quantized in
  this unit, against the float pipeline (final ``srgb``).

Calibration coverage: the calibration set size (frames, samples) and, per activation site, the fraction of the
evaluation data (the unit's inputs on the evaluation frames) outside the calibrated range; the verdict says when a
set is too small (fewer than :data:`MIN_FRAMES` frames or :data:`MIN_SAMPLES` samples) or too narrow (evaluation
inputs beyond the calibrated input range, or more than :data:`MAX_CLIPPED` of a site's values clipped).

The report is JSON (``isp-quant-debug/1``) + an HTML page (the ranked table, coloured; the error map of the worst
layer), written atomically like the drift report.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from convert.quant_prep import quantizer_for, with_eps  # noqa: F401  (re-exported for the debugger's users)

__all__ = ["FakeQuant", "Site", "Layer", "DebugGraph", "build_debug_graph", "quantizer_for", "layer_table",
           "coverage", "end_to_end", "explain", "MIN_FRAMES", "MIN_SAMPLES", "MAX_CLIPPED", "FORMAT"]

FORMAT = "isp-quant-debug/1"
#: a calibration set with fewer frames / samples than this is "too small" for a full-resolution network unit
MIN_FRAMES = 6
MIN_SAMPLES = 24
#: fraction of an activation's evaluation values outside the calibrated range above which the set is "too narrow"
MAX_CLIPPED = 1e-3


# ------------------------------------------------------------------------------------------------ fake quant

def _fq_grid(x: torch.Tensor, scale: torch.Tensor, zp: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    return (torch.clamp(torch.round(x / scale) + zp, qmin, qmax) - zp) * scale


class FakeQuant(nn.Module):
    """One quantize/dequantize pair of a PT2E-converted graph, switchable: ``bits`` 0 (identity), 8 (the calibrated
    grid, exactly the pair it replaces) or 16 (a 16-bit grid over the same real range: what LiteRT's 16x8 mode gives
    an activation). Weights are never widened (``bits`` 16 on a weight site means 8). ``record`` accumulates how
    many values fell outside the calibrated range (:meth:`clip_stats`)."""

    def __init__(self, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int, axis: int | None,
                 kind: str) -> None:
        super().__init__()
        self.register_buffer("scale", scale.detach().float().clone())
        self.register_buffer("zero_point", zero_point.detach().float().clone())
        self.qmin, self.qmax, self.axis, self.kind = int(qmin), int(qmax), axis, kind
        self.bits = 0
        self.record = False
        self.seen = 0
        self.clipped = 0
        self.lo_seen, self.hi_seen = math.inf, -math.inf

    def _shaped(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.axis is None or t.numel() == 1:
            return t.reshape(())
        shape = [1] * x.dim()
        shape[self.axis] = -1
        return t.reshape(shape)

    @property
    def range(self) -> tuple[float, float]:
        """The real range the 8-bit grid covers (per-tensor sites; the widest channel of a per-channel one)."""
        lo = ((self.qmin - self.zero_point) * self.scale).min().item()
        hi = ((self.qmax - self.zero_point) * self.scale).max().item()
        return lo, hi

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.record:
            lo, hi = self.range
            self.seen += x.numel()
            self.clipped += int(((x < lo) | (x > hi)).sum())
            self.lo_seen, self.hi_seen = min(self.lo_seen, float(x.min())), max(self.hi_seen, float(x.max()))
        if self.bits == 0:
            return x
        scale, zp = self._shaped(x, self.scale), self._shaped(x, self.zero_point)
        if self.bits == 16 and self.kind == "activation":
            lo, hi = (self.qmin - zp) * scale, (self.qmax - zp) * scale
            s16 = (hi - lo) / 65535.0
            z16 = torch.round(-32768.0 - lo / s16)
            return _fq_grid(x, s16, z16, -32768, 32767)
        return _fq_grid(x, scale, zp, self.qmin, self.qmax)

    def clip_stats(self) -> dict[str, Any]:
        lo, hi = self.range
        return {"calibrated": [lo, hi], "seen": [self.lo_seen, self.hi_seen] if self.seen else None,
                "clipped_fraction": self.clipped / self.seen if self.seen else None}


class _Tap(nn.Module):
    """Keeps the tensor flowing through it when ``active``."""

    def __init__(self) -> None:
        super().__init__()
        self.active = False
        self.value: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.active:
            self.value = x.detach().clone()
        return x


@dataclass
class Site:
    name: str                    # the FakeQuant submodule
    kind: str                    # "weight" | "activation"
    layer: str
    per_channel: bool


@dataclass
class Layer:
    name: str
    ops: list[str]               # aten op names of the layer's nodes
    sites: list[str] = field(default_factory=list)
    tap: str | None = None       # the _Tap submodule on the layer's (quantized) output


# ------------------------------------------------------------------------------------------------ graph surgery

_Q_OPS = ("quantize_per_tensor", "quantize_per_channel")
_DQ_OPS = ("dequantize_per_tensor", "dequantize_per_channel")


def _opname(node: torch.fx.Node) -> str:
    packet = getattr(node.target, "_overloadpacket", None)
    return getattr(packet, "__name__", None) or getattr(node.target, "__name__", str(node.target))


def _is(node: torch.fx.Node, names: Sequence[str]) -> bool:
    return node.op == "call_function" and _opname(node) in names


def _module_path(node: torch.fx.Node) -> str | None:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return None
    return str(list(stack.values())[-1][0])


def _const(gm: torch.fx.GraphModule, a: Any) -> torch.Tensor:
    if isinstance(a, torch.fx.Node) and a.op == "get_attr":
        return getattr(gm, a.target) if "." not in a.target else gm.get_submodule(
            a.target.rpartition(".")[0]).get_buffer(a.target.rpartition(".")[2])
    return torch.tensor(float(a) if not isinstance(a, torch.Tensor) else a)


class DebugGraph:
    """A PT2E-converted unit whose q/dq pairs are :class:`FakeQuant` switches, grouped into :class:`Layer` s."""

    def __init__(self, gm: torch.fx.GraphModule, granularity: str = "layer") -> None:
        if granularity not in ("layer", "block"):
            raise ValueError(f"granularity: expected 'layer' or 'block', got {granularity!r}")
        self.gm = gm
        self.granularity = granularity
        self.sites: dict[str, Site] = {}
        self.layers: dict[str, Layer] = {}
        self._label: dict[torch.fx.Node, str] = {}
        self._rewrite()

    # -------------------------------------------------------------------------------- construction
    def _layer_of(self, node: torch.fx.Node, counters: dict[tuple[str, str], int], leaf_paths: set[str]) -> str:
        if node in self._label:
            return self._label[node]
        path = _module_path(node) or "(top)"
        path = path.removeprefix("stage.")
        block = _block_path(node) if self.granularity == "block" else None
        if block is not None:
            label = block
        elif path in leaf_paths:
            label = path
        else:
            op = _opname(node)
            k = counters.get((path, op), 0)
            counters[(path, op)] = k + 1
            label = f"{path}:{op}#{k}"
        self._label[node] = label
        return label

    def _rewrite(self) -> None:
        gm, graph = self.gm, self.gm.graph
        leaf_paths = {n.removeprefix("stage.") for n, m in _named_leaves(gm)}
        counters: dict[tuple[str, str], int] = {}
        ops = [n for n in graph.nodes if n.op == "call_function" and not _is(n, _Q_OPS + _DQ_OPS)
               and _opname(n) not in ("getitem", "alias", "view", "chunk")]
        for n in ops:                               # layer labels in graph order
            if _module_path(n) is not None:
                self._layer_of(n, counters, leaf_paths)
        for i, q in enumerate([n for n in graph.nodes if _is(n, _Q_OPS)]):
            dqs = [u for u in q.users if _is(u, _DQ_OPS)]
            src = q.args[0]
            per_channel = _opname(q) == "quantize_per_channel"
            if per_channel:
                scale, zp, axis, qmin, qmax = (_const(gm, q.args[1]), _const(gm, q.args[2]), int(q.args[3]),
                                               int(q.args[4]), int(q.args[5]))
            else:
                scale, zp, qmin, qmax, axis = (_const(gm, q.args[1]), _const(gm, q.args[2]), int(q.args[3]),
                                               int(q.args[4]), None)
            kind = "weight" if isinstance(src, torch.fx.Node) and src.op == "get_attr" else "activation"
            consumers = [c for d in dqs for c in d.users]
            producer_label = self._label.get(src) if kind == "activation" else None
            if producer_label is not None:
                layer = producer_label
            else:
                layer = next((self._label[c] for c in consumers if c in self._label), "(input)")
            name = f"fq{i}"
            gm.add_submodule(name, FakeQuant(scale, zp, qmin, qmax, axis, kind))
            with graph.inserting_after(q):
                fq = graph.call_module(name, (src,))
            for d in dqs:
                d.replace_all_uses_with(fq)
                graph.erase_node(d)
            if not q.users:
                graph.erase_node(q)
            self.sites[name] = Site(name, kind, layer, per_channel)
            self.layers.setdefault(layer, Layer(layer, []))
            self.layers[layer].sites.append(name)
        # ops and output taps (a layer's last node; after its output fake quant when it has one)
        last: dict[str, torch.fx.Node] = {}
        for n in graph.nodes:
            if n in self._label and self._label[n] in self.layers:
                self.layers[self._label[n]].ops.append(_opname(n))
                last[self._label[n]] = n
        for i, (label, node) in enumerate(last.items()):
            fq_users = [u for u in node.users if u.op == "call_module" and str(u.target) in self.sites]
            at = fq_users[0] if fq_users else node
            tap = f"tap{i}"
            gm.add_submodule(tap, _Tap())
            with graph.inserting_after(at):
                t = graph.call_module(tap, (at,))
            at.replace_all_uses_with(t, delete_user_cb=lambda u, t=t: u is not t)
            self.layers[label].tap = tap
        graph.eliminate_dead_code()
        graph.lint()
        gm.recompile()
        self.order = [lbl for lbl in dict.fromkeys(self._label[n] for n in graph.nodes if n in self._label)
                      if lbl in self.layers]

    # -------------------------------------------------------------------------------- switches
    def fq(self, name: str) -> FakeQuant:
        return self.gm.get_submodule(name)

    def set_bits(self, bits: int | Mapping[str, int], layers: Iterable[str] | None = None) -> None:
        """``bits`` for the sites of ``layers`` (all when None); a mapping ``layer -> bits`` sets each layer."""
        if isinstance(bits, Mapping):
            for layer, b in bits.items():
                self.set_bits(int(b), [layer])
            return
        for layer in (self.layers if layers is None else layers):
            for s in self.layers[layer].sites:
                self.fq(s).bits = int(bits)

    def bits(self) -> dict[str, int]:
        return {l: max((self.fq(s).bits for s in self.layers[l].sites), default=0) for l in self.layers}

    def tap(self, layer: str) -> _Tap:
        return self.gm.get_submodule(self.layers[layer].tap)

    @torch.no_grad()
    def __call__(self, *xs: torch.Tensor) -> torch.Tensor:
        out = self.gm(*xs)
        return out[0] if isinstance(out, (tuple, list)) else out


def _block_path(node: torch.fx.Node) -> str | None:
    """The innermost NAF block (``NAFBlock``) the node was traced in, if any."""
    found = None
    for path, typ in (node.meta.get("nn_module_stack") or {}).values():
        tname = typ if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
        if tname.rsplit(".", 1)[-1] == "NAFBlock":
            found = str(path).removeprefix("stage.")
    return found


def _named_leaves(gm: torch.fx.GraphModule) -> list[tuple[str, None]]:
    """Module paths that the layer grouping treats as one layer: leaf modules (convs) and channel LayerNorms,
    recovered from the graph's ``nn_module_stack`` types."""
    out: dict[str, None] = {}
    for n in gm.graph.nodes:
        for path, typ in (n.meta.get("nn_module_stack") or {}).values():
            tname = typ if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
            if tname.rsplit(".", 1)[-1] in ("Conv2d", "ChannelLayerNorm", "LayerNorm2d"):
                out[str(path)] = None
    return [(p, None) for p in out]


# ------------------------------------------------------------------------------------------------ building

def build_debug_graph(module: nn.Module, example: tuple[torch.Tensor, ...], calibration: Sequence[tuple],
                      quantizer: Any, granularity: str = "layer") -> DebugGraph:
    """Export ``module``, PT2E-prepare with ``quantizer``, calibrate, convert (q/dq kept) and make it switchable."""
    from convert.targets.base import pt2e_quantize
    gm = pt2e_quantize(module, example, quantizer, calibration, fold_quantize=False)
    return DebugGraph(gm, granularity)


# ------------------------------------------------------------------------------------------------ measurements

def _psnr(err: float, peak: float) -> float:
    return math.inf if err <= 0 else 10.0 * math.log10(peak * peak / err)


@torch.no_grad()
def layer_table(dg: DebugGraph, samples: Sequence[tuple[torch.Tensor, ...]], bits: int = 8,
                progress: bool = True) -> list[dict[str, Any]]:
    """Per layer, only it quantized at ``bits``: SNR of its output, PSNR of the unit output (both over
    ``samples``). Sorted by unit PSNR, worst first."""
    from tqdm import tqdm
    dg.set_bits(0)
    floats: list[dict[str, torch.Tensor]] = []
    outs: list[torch.Tensor] = []
    for s in samples:
        taps = {l: dg.tap(l) for l in dg.order}
        for t in taps.values():
            t.active = True
        outs.append(dg(*s))
        floats.append({l: t.value for l, t in taps.items()})
        for t in taps.values():
            t.active, t.value = False, None
    peak = max(float(o.max() - o.min()) for o in outs) or 1.0
    rows = []
    for layer in tqdm(dg.order, desc="layers", disable=not progress):
        dg.set_bits(bits, [layer])
        tap = dg.tap(layer)
        tap.active = True
        sig = err = uerr = 0.0
        n = 0
        for s, f, o in zip(samples, floats, outs):
            y = dg(*s)
            ref = f[layer]
            sig += float((ref.double() ** 2).sum())
            err += float(((tap.value.double() - ref.double()) ** 2).sum())
            uerr += float(((y.double() - o.double()) ** 2).mean())
            n += 1
        tap.active, tap.value = False, None
        dg.set_bits(0, [layer])
        L = dg.layers[layer]
        rows.append({"layer": layer, "ops": sorted(set(L.ops)),
                     "sites": {"weight": sum(dg.sites[s].kind == "weight" for s in L.sites),
                               "activation": sum(dg.sites[s].kind == "activation" for s in L.sites)},
                     "snr_db": (10 * math.log10(sig / err) if err > 0 else math.inf) if sig > 0 else None,
                     "unit_psnr_db": _psnr(uerr / max(n, 1), peak)})
    rows.sort(key=lambda r: r["unit_psnr_db"])
    return rows


@torch.no_grad()
def unit_psnr(dg: DebugGraph, samples: Sequence[tuple[torch.Tensor, ...]]) -> float:
    """PSNR of the unit output in the current switch state against all-float."""
    state = {s: dg.fq(s).bits for s in dg.sites}
    for s in dg.sites:
        dg.fq(s).bits = 0
    refs = [dg(*s) for s in samples]
    for s, b in state.items():
        dg.fq(s).bits = b
    peak = max(float(r.max() - r.min()) for r in refs) or 1.0
    err = sum(float(((dg(*s).double() - r.double()) ** 2).mean()) for s, r in zip(samples, refs)) / len(samples)
    return _psnr(err, peak)


@torch.no_grad()
def coverage(dg: DebugGraph, calib: Sequence[tuple], evaluation: Sequence[tuple], frames: int | None
             ) -> dict[str, Any]:
    """Is the calibration set big and wide enough for the unit? (module docstring)"""
    dg.set_bits(0)
    for s in dg.sites.values():
        fq = dg.fq(s.name)
        fq.record, fq.seen, fq.clipped = s.kind == "activation", 0, 0
        fq.lo_seen, fq.hi_seen = math.inf, -math.inf
    for x in evaluation:
        dg(*x)
    sites = []
    for s in dg.sites.values():
        fq = dg.fq(s.name)
        if s.kind == "activation" and fq.seen:
            sites.append({"site": s.name, "layer": s.layer, **fq.clip_stats()})
        fq.record = False
    sites.sort(key=lambda r: -(r["clipped_fraction"] or 0.0))
    cin = torch.cat([c[0].reshape(-1) for c in calib])
    ein = torch.cat([e[0].reshape(-1) for e in evaluation])
    q = torch.tensor([0.001, 0.5, 0.999])
    c_q = torch.quantile(cin[torch.randperm(cin.numel())[:1_000_000]], q).tolist()
    e_q = torch.quantile(ein[torch.randperm(ein.numel())[:1_000_000]], q).tolist()
    problems = []
    if frames is not None and frames < MIN_FRAMES:
        problems.append(f"too small: {frames} calibration frames (< {MIN_FRAMES})")
    if len(calib) < MIN_SAMPLES:
        problems.append(f"too small: {len(calib)} calibration samples (< {MIN_SAMPLES})")
    if float(ein.max()) > float(cin.max()) * 1.05 or float(ein.min()) < float(cin.min()) - 0.05 * abs(float(cin.max())):
        problems.append(f"too narrow: evaluation inputs span [{float(ein.min()):.4g}, {float(ein.max()):.4g}], "
                        f"calibration inputs [{float(cin.min()):.4g}, {float(cin.max()):.4g}]")
    wide = [r for r in sites if (r["clipped_fraction"] or 0) > MAX_CLIPPED]
    if wide:
        problems.append(f"too narrow: {len(wide)} activation sites clip more than {MAX_CLIPPED:.1%} of the "
                        f"evaluation values (worst {wide[0]['layer']}: {wide[0]['clipped_fraction']:.2%})")
    return {"calibration_samples": len(calib), "calibration_frames": frames, "evaluation_samples": len(evaluation),
            "input_quantiles": {"q": q.tolist(), "calibration": c_q, "evaluation": e_q},
            "sites_clipping": sites[:20], "verdict": "ok" if not problems else "; ".join(problems),
            "problems": problems}


class _TiledUnit(nn.Module):
    """A fixed-shape (1, 3, th, tw) unit graph behind the pipeline's full-resolution module call."""

    def __init__(self, dg: DebugGraph, post: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__()
        self.dg, self.post = dg, post

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dg(x.contiguous())
        return y if self.post is None else self.post(y)


@torch.no_grad()
def end_to_end(pipeline: Any, unit: str, dg: DebugGraph, frames: Sequence[Any], refs: Sequence[Mapping[str, Any]],
               full: bool = False, images: list | None = None) -> dict[str, Any]:
    """The reference ``pipeline`` with its ``unit`` network replaced by ``dg`` in its current switch state: worst
    PSNR and worst mean ΔE2000 over ``frames`` against the float intermediates ``refs``.

    ``enhance``: the tiled unit over the reference ``srgb_upsampled``, against ``srgb`` (exact end to end).
    ``denoise``: the pipeline from the denoiser on; without ``full`` the enhancer is left out and the comparison is
    at ``srgb_upsampled`` (the enhancer is a residual network over it and costs more than the rest of the pipeline;
    ``full`` runs it and compares ``srgb``)."""
    from isp.tiling import run_tiled
    from runtime_py import metrics as M
    psnrs, des = [], []
    tile, overlap = pipeline.tile, pipeline.overlap
    runner = _TiledUnit(dg)
    for f, ref in zip(frames, refs):
        if unit == "enhance":
            out, name = run_tiled(runner, ref["srgb_upsampled"], tile=tile, overlap=overlap), "srgb"
        else:
            denoiser, enhancer = pipeline.denoise, pipeline.enhance
            pipeline.denoise = runner
            if not full:
                pipeline.enhance = None
            try:
                out_all = pipeline.run(f.raw, f.illum, f.ccm)
            finally:
                pipeline.denoise, pipeline.enhance = denoiser, enhancer
            name = "srgb" if full else "srgb_upsampled"
            out = out_all["srgb"]
        if not bool(torch.isfinite(out).all()):           # a quantized division by zero (see explain)
            psnrs.append(math.nan)
            des.append(math.inf)
            continue
        m = M.compare(out, ref[name], "srgb")
        if images is not None and not images:
            images.append((f.name, name, ref[name], out))
        psnrs.append(float(m["psnr"]))
        des.append(float(m["de2000_mean"]))
    return {"e2e_psnr_db": math.nan if any(map(math.isnan, psnrs)) else min(psnrs), "e2e_de2000_mean": max(des),
            "e2e_at": name, "per_frame_psnr": psnrs,
            "per_frame_de": des}


# ------------------------------------------------------------------------------------------------ the report

def _tiles(img: torch.Tensor, geometry: Any) -> list[tuple[torch.Tensor]]:
    th, tw = geometry.tile_shape
    return [(img[..., y:y + th, x:x + tw].contiguous(),) for y, x in geometry.tiles]


def _even(seq: Sequence[Any], k: int) -> list[Any]:
    if k <= 0 or k >= len(seq):
        return list(seq)
    step = len(seq) / k
    return [seq[int(i * step)] for i in range(k)]


_UNIT_INPUT = {"denoise": "raw", "enhance": "srgb_upsampled"}


def explain(unit_id: str, *, calibration: str | Path | None = None, dngs: Sequence[str | Path] | None = None,
            weights: str | Path | None = None, style: int = 0, denoiser: str = "s24_lite", size: str = "512x320",
            tile: int = 128, overlap: int = 32, samples: int = 4, calib_samples: int = 32, e2e_top: int = 8,
            act_bits: int = 8, eps: float | None = None, fold_scales: bool = False, exclude: Sequence[str] = (),
            statistics: str = "textbook", scope: str = "network",
            sixteen: Sequence[str] = (), full_summary: bool = False, granularity: str = "layer",
            progress: bool = True, say: Callable[[str], None] = lambda s: None
            ) -> dict[str, Any]:
    """The debugger's report for one NAFNet unit (module docstring). ``exclude`` keeps layers float (scope
    filter syntax of :func:`convert.targets.base.scope_filter`), ``sixteen`` puts layers on the 16-bit grid, both
    for the "as configured" rows; the per-layer table always quantizes one layer at a time at ``act_bits``."""
    from calibration import load_set
    from convert.quant_prep import prepare_for_quantization
    from convert.units import build_unit
    from isp import paths
    from isp.geometry import FrameGeometry, parse_size
    from isp.pipeline import Pipeline
    from isp.registry import BuildConfig
    from isp.units import UNITS
    from runtime_py.pipeline import read_frame

    if unit_id not in _UNIT_INPUT:
        raise ValueError(f"--explain: expected one of {', '.join(_UNIT_INPUT)} (the quantized network units), "
                         f"got {unit_id!r}")
    t_start = time.perf_counter()
    w = Path(weights) if weights else paths.weights_root()
    geometry = FrameGeometry(*parse_size(size), tile, overlap)
    unit = build_unit(unit_id, BuildConfig(w, style=style, denoiser=denoiser), geometry)
    from isp.stages.nafnet import with_statistics
    # the NAFNet form the integer exports quantize (convert.export.nafnet_statistics: textbook). Its layer norm at
    # W8A8 holds var + eps on one per-tensor int8 grid (eps itself rounds to 0): a pixel whose channel variance is
    # below half a step divides by sqrt(0), so a quantized norm fed flat float features gives inf/NaN (the frame's
    # metrics are then NaN / inf, see end_to_end); keep the norms float (--exclude 'stage.net.*_norm')
    module, prep = prepare_for_quantization(with_statistics(unit.module, statistics), {"fold_block_scales": fold_scales})
    if calibration is None:
        raise ValueError("--explain needs --calibration DIR (python -m calibration build, or an export's "
                         "OUT/calibration)")
    root = Path(calibration)
    root = root / "calib" if (root / "calib" / "set.json").is_file() else root
    cs = load_set(root)
    calib = unit.calibration_inputs(cs, limit=calib_samples)
    frames_in_set = len(cs.samples)
    say(f"{len(calib)} calibration samples from {frames_in_set} frames of {root}")

    dng_list = list(dngs) if dngs else sorted(paths.dng_dir().glob("*.dng"))
    frames = []                     # as runtime_py.drift.frames_from_dngs (which imports this module for --explain)
    for f in dng_list:
        raw, illum, ccm, _ = read_frame(f, geometry, "crop")
        frames.append(SimpleNamespace(name=Path(f).name, raw=raw, illum=illum, ccm=ccm))
    pipe = Pipeline(w, style=style, denoiser=denoiser, tile=tile, overlap=overlap)
    say(f"reference pipeline on {len(frames)} frames")
    with torch.no_grad():
        refs = [pipe.run(f.raw, f.illum, f.ccm) for f in frames]
    evaluation = [t for r in refs for t in _tiles(r[_UNIT_INPUT[unit_id]], geometry)]

    say("PT2E prepare / calibrate / convert")
    # "network": the NAFNet body (the ExecuTorch int8 recipe's scope); "unit": everything (LiteRT 16x8's scope)
    quantizer = quantizer_for(list(UNITS[unit_id].network or []) if scope == "network" else ["stage"], eps=eps,
                              exclude=exclude)
    dg = build_debug_graph(module, unit.example_inputs(), calib, quantizer, granularity)
    picked = _even(evaluation, samples)

    def configured(bits: int) -> None:
        dg.set_bits(bits)
        dg.set_bits(16, [l for l in dg.layers if any(l == s or l.startswith(s) for s in sixteen)])

    summary = []
    for label, bits in ((f"all layers {act_bits}-bit activations", act_bits), ("all layers 16-bit activations", 16)):
        configured(bits)
        say(f"end to end, {label}")
        row = {"config": label, "unit_psnr_db": unit_psnr(dg, picked)}
        row.update(end_to_end(pipe, unit_id, dg, frames, refs, full=full_summary))
        summary.append(row)
    say(f"per-layer table ({len(dg.order)} layers x {len(picked)} tiles)")
    table = layer_table(dg, picked, bits=act_bits, progress=progress)
    for row in table[:e2e_top]:
        dg.set_bits(0)
        dg.set_bits(act_bits, [row["layer"]])
        row.update({k: v for k, v in end_to_end(pipe, unit_id, dg, frames, refs).items()
                    if not k.startswith("per_frame")})
    images: list = []
    if table:                                     # the worst layer's error on the first frame, for the page
        dg.set_bits(0)
        dg.set_bits(act_bits, [table[0]["layer"]])
        end_to_end(pipe, unit_id, dg, frames[:1], refs[:1], images=images)
    dg.set_bits(0)
    cov = coverage(dg, calib, evaluation, frames_in_set)
    return {"format": FORMAT, "unit": unit_id, "denoiser": denoiser, "style": style,
            "geometry": {"size": size, "tile": tile, "overlap": overlap},
            "frames": [f.name for f in frames], "calibration": str(root),
            "quantizer": {"kind": f"XNNPACKQuantizer symmetric per-channel W8A{act_bits} (PT2E), scoped to the "
                                  + ("network" if scope == "network" else "whole unit"),
                          "eps": eps, "exclude": list(exclude), "sixteen": list(sixteen), "prep": prep,
                          "nafnet_statistics": statistics, "scope": scope},
            "sites": len(dg.sites), "layers": len(dg.layers), "table_samples": len(picked),
            "summary": summary, "table": table, "coverage": cov,
            "seconds": round(time.perf_counter() - t_start, 1),
            "_images": [(f"only {table[0]['layer']} quantized, {frame}", name, ref, out)
                        for frame, name, ref, out in images]}


def _num(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def write_explain_reports(report: Mapping[str, Any], json_path: str | Path | None, html_path: str | Path | None
                          ) -> None:
    """JSON (non-finite numbers as null) and the HTML page, both atomic."""
    import json
    from runtime_py.drift_report import _heat, _hwc
    from runtime_py.report import Budget, Section, comparison_row, write_html_report, write_json_report

    images = report.get("_images") or []
    report = {k: v for k, v in report.items() if k != "_images"}
    clean = json.loads(json.dumps(report, default=str).replace("Infinity", "null").replace("NaN", "null"))
    if json_path is not None:
        write_json_report(json_path, clean)
    if html_path is None:
        return
    cols = ("layer", "ops", "snr_db", "unit_psnr_db", "e2e_psnr_db", "e2e_de2000_mean")
    rows = [{c: (", ".join(r[c]) if c == "ops" else _num(r.get(c))) for c in cols} for r in clean["table"]]
    cov = clean["coverage"]
    sections = [
        Section("Whole unit quantized", table=[{k: _num(v) for k, v in r.items() if not k.startswith("per_frame")}
                                              for r in clean["summary"]],
                budgets={"e2e_psnr_db": Budget(min=40.0), "e2e_de2000_mean": Budget(max=0.5)},
                text=f"{clean['unit']}: {clean['sites']} quantize/dequantize sites in {clean['layers']} layers; "
                     f"quantizer {clean['quantizer']}"),
        Section("Layers ranked by the unit's output PSNR with only that layer quantized", table=rows,
                budgets={"e2e_psnr_db": Budget(min=40.0), "e2e_de2000_mean": Budget(max=0.5)},
                text="snr_db: the layer's own output against float (everything before it float); unit_psnr_db: the "
                     "unit output; e2e_*: the whole pipeline on the frames (worst frame), for the top rows"),
        Section("Where the worst layer's error lands", image_rows=[
            comparison_row(_hwc(ref, name), _hwc(out, name), heat, label, vmax=vmax, unit=unit)
            for label, name, ref, out in images for heat, vmax, unit in [_heat(ref, out, name)]]),
        Section("Calibration coverage", table=cov["sites_clipping"][:10],
                text=f"verdict: {cov['verdict']}. {cov['calibration_samples']} calibration samples from "
                     f"{cov['calibration_frames']} frames; input quantiles {cov['input_quantiles']}"),
    ]
    write_html_report(html_path, f"Quantization debugger: {clean['unit']}", sections)


def build_parser() -> Any:
    import argparse
    p = argparse.ArgumentParser(prog="python -m runtime_py.drift --explain UNIT",
                                description="Which quantized layer of a network unit loses the accuracy")
    p.add_argument("--explain", required=True, metavar="UNIT", help="denoise or enhance")
    p.add_argument("--calibration", type=Path, required=True, metavar="DIR",
                   help="calibration set (python -m calibration build output, or an export's OUT/calibration)")
    p.add_argument("--dng", type=Path, nargs="+", default=None, metavar="FILE", help="frames (default: shipped)")
    p.add_argument("--weights", type=Path, default=None)
    p.add_argument("--style", type=int, default=0)
    p.add_argument("--denoiser", default="s24_lite")
    p.add_argument("--size", default="512x320")
    p.add_argument("--tile", type=int, default=128)
    p.add_argument("--overlap", type=int, default=32)
    p.add_argument("--samples", type=int, default=4, help="evaluation tiles for the per-layer table")
    p.add_argument("--e2e-top", type=int, default=8, help="end-to-end runs for this many worst layers")
    p.add_argument("--granularity", choices=("layer", "block"), default="layer",
                   help="one row per layer (conv, norm, functional op) or per NAF block")
    p.add_argument("--full", action="store_true",
                   help="denoise: the whole-unit rows run the enhancer too (slow); default compares srgb_upsampled")
    p.add_argument("--act-bits", type=int, choices=(8, 16), default=8)
    p.add_argument("--eps", type=float, default=None, help="smallest observer scale (default 2^-12)")
    p.add_argument("--fold-scales", action="store_true", help="fold the NAF block scales into the projections")
    from isp.stages.nafnet import STATISTICS
    p.add_argument("--statistics", choices=STATISTICS, default="textbook",
                   help="NAFNet layer-norm / attention-mean form (default textbook: what integer exports quantize)")
    p.add_argument("--scope", choices=("network", "unit"), default="network",
                   help="quantize the NAFNet body (ExecuTorch W8A8's scope, default) or the whole unit (LiteRT 16x8)")
    p.add_argument("--exclude", default="", help="comma list of layers kept float (scope_filter syntax)")
    p.add_argument("--sixteen", default="", help="comma list of layer prefixes on the 16-bit grid")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--html", type=Path, default=None)
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    import sys
    args = build_parser().parse_args(argv)
    say = (lambda s: None) if args.quiet else (lambda s: print(f"explain: {s}", file=sys.stderr, flush=True))
    csv = lambda t: [s.strip() for s in t.split(",") if s.strip()]              # noqa: E731
    try:
        rep = explain(args.explain, calibration=args.calibration, dngs=args.dng, weights=args.weights,
                      style=args.style, denoiser=args.denoiser, size=args.size, tile=args.tile, overlap=args.overlap,
                      samples=args.samples, e2e_top=args.e2e_top, act_bits=args.act_bits, eps=args.eps,
                      fold_scales=args.fold_scales, exclude=csv(args.exclude), sixteen=csv(args.sixteen),
                      statistics=args.statistics, scope=args.scope,
                      granularity=args.granularity, full_summary=args.full,
                      progress=not args.quiet and sys.stderr.isatty(), say=say)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_explain_reports(rep, args.json, args.html)
    for r in rep["summary"]:
        print(f"{r['config']:<36} unit {r['unit_psnr_db']:.2f} dB  end to end {r['e2e_psnr_db']:.2f} dB  "
              f"ΔE00 mean {r['e2e_de2000_mean']:.3f}")
    print(f"{'layer':<40} {'snr':>7} {'unit':>7} {'e2e':>7} {'ΔE00':>6}")
    for r in rep["table"][:20]:
        e2e = f"{r['e2e_psnr_db']:7.2f} {r['e2e_de2000_mean']:6.3f}" if "e2e_psnr_db" in r else ""
        print(f"{r['layer']:<40} {r['snr_db'] or float('nan'):7.2f} {r['unit_psnr_db']:7.2f} {e2e}")
    print(f"calibration: {rep['coverage']['verdict']}")
    return 0
