"""The modular ISP: stages composed by id (paper Fig. 2).

    raw ──denoise──> denoised_raw ──color(illum, ccm)──> lsrgb ──1/4 downscale──> lsrgb_ds
    lsrgb_ds ──gain──> ──gtm──> ──ltm──> [tone edits] ──[lut3d]──> ──chroma──> ──gamma──> [colour edits] = gamma_out
    (lsrgb, lsrgb_ds, gamma_out) ──upsample──> srgb_upsampled ──enhance──> srgb ──[sharpen]

Only :mod:`isp.registry` knows how stages are built; this module knows their order, the edits between them, and
how picture styles are mixed.

Style mixing (the official tool's semantics): every style with a non-zero weight runs its own photofinishing chain
on the same ``lsrgb_ds`` (a stage whose weight is zero for that style is skipped in that style's chain); the
predicted parameters of each photofinishing stage are averaged with that stage's normalised weights; the blended
parameters are applied in one final chain. A stage whose weights are all zero is switched off. Deliberate
deviation: the 3-D LUTs of ``-lut`` styles are blended with the chroma weights (identity for styles without one);
the official tool applies only the first listed style's 3-D LUT.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection, Mapping

import torch

from isp import paths
from isp.edits import (Edits, adjust_contrast, adjust_highlights, adjust_saturation, adjust_shadows,
                       adjust_vibrance, apply_exposure, luma_chroma_denoise, sharpen)
from isp.registry import NUM_STYLES, BuildConfig, build_stage
from isp.stages import color as color_stage
from isp.stages.common import rgb_to_ycbcr, ycbcr_to_rgb
from isp.stages.upsample import downsample
from isp.tiling import run_tiled

__all__ = ["StyleMix", "Pipeline", "PHOTOFINISHING_STAGES", "MIN_SIZE"]

PHOTOFINISHING_STAGES = ("gain", "gtm", "ltm", "chroma", "gamma")
#: smallest frame the photofinishing networks accept (1/4-res guidance pyramid + reflect padding)
MIN_SIZE = 64
#: smallest frame with LTM refinement (its 1/16-scale pass must still feed the guidance pyramid)
MIN_SIZE_REFINE = 4 * 192


@dataclass(frozen=True)
class StyleMix:
    """Weights over picture styles for each photofinishing stage: ``{stage: {style: weight}}``.

    Weights of a stage are normalised to sum to 1 (all-zero switches the stage off).
    """
    weights: Mapping[str, Mapping[int, float]]

    def __post_init__(self) -> None:
        for stage in PHOTOFINISHING_STAGES:
            if stage not in self.weights:
                raise ValueError(f"style mix lacks weights for stage '{stage}'")
        for stage, per_style in self.weights.items():
            if stage not in PHOTOFINISHING_STAGES:
                raise ValueError(f"style mix: unknown stage '{stage}' (stages: {', '.join(PHOTOFINISHING_STAGES)})")
            for style, w in per_style.items():
                if not 0 <= int(style) < NUM_STYLES:
                    raise ValueError(f"style mix: style must be 0..{NUM_STYLES - 1}, got {style}")
                if not 0.0 <= float(w):
                    raise ValueError(f"style mix: weight of style {style} for {stage} must be >= 0, got {w}")

    @classmethod
    def single(cls, style: int) -> "StyleMix":
        return cls({s: {style: 1.0} for s in PHOTOFINISHING_STAGES})

    @classmethod
    def parse(cls, overall: str | None = None, per_stage: Mapping[str, str] | None = None) -> "StyleMix":
        """From ``"1:0.5,5:0.5"`` for all stages, optionally overridden per stage (``{"chroma": "0:0.2,3:0.8"}``)."""
        def one(spec: str) -> dict[int, float]:
            out: dict[int, float] = {}
            for item in filter(None, (p.strip() for p in spec.split(","))):
                m = re.fullmatch(r"(\d+)\s*[:=]\s*([0-9.eE+-]+)", item)
                if not m:
                    raise ValueError(f"style weights must look like '1:0.5,5:0.5', got {spec!r}")
                out[int(m.group(1))] = float(m.group(2))
            if not out:
                raise ValueError(f"empty style weight list {spec!r}")
            return out
        base = one(overall) if overall else None
        weights = {}
        for stage in PHOTOFINISHING_STAGES:
            if per_stage and stage in per_stage:
                weights[stage] = one(per_stage[stage])
            elif base is not None:
                weights[stage] = dict(base)
            else:
                raise ValueError(f"no style weights for stage '{stage}' (give overall weights or all per-stage ones)")
        return cls(weights)

    @property
    def styles(self) -> list[int]:
        return sorted({int(s) for per in self.weights.values() for s, w in per.items() if w > 0})

    @property
    def is_single(self) -> bool:
        styles = self.styles
        return len(styles) == 1 and all(sum(per.values()) > 0 for per in self.weights.values())

    def normalised(self, stage: str) -> dict[int, float]:
        per = {int(s): float(w) for s, w in self.weights[stage].items() if w > 0}
        total = sum(per.values())
        return {s: w / total for s, w in per.items()} if total > 0 else {}


def _lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    return b if t == 1.0 else a if t == 0.0 else (1.0 - t) * a + t * b


class Pipeline:
    """The full reference ISP.

    Args:
        weights: official release folder (default ``$ISP_WEIGHTS`` or ``<shared>/weights/official``).
        style: picture style 0-5 (ignored when ``mix`` is given).
        denoiser: ``s24_lite`` (default), ``s24_base``, ``generic_lite``, ``generic_base``, ``*_large`` (weights not
            in the official release copy here).
        mix: :class:`StyleMix` to blend styles per stage.
        use_lut: ``None`` = styles 1-5 use their ``-lut`` checkpoints; ``False`` = the plain ones.
        ltm_refine, solver_iters: LTM multi-scale + bilateral-solver refinement (supp. Sec. A, B.1).
        tile, overlap: run the full-resolution networks (denoiser, enhancer) in tiles to bound memory;
            ``None`` runs them on the whole frame.
    """

    def __init__(self, weights: str | Path | None = None, style: int = 0, denoiser: str = "s24_lite",
                 mix: StyleMix | None = None, use_lut: bool | None = None, ltm_refine: bool = False,
                 solver_iters: int = 80, tile: int | None = None, overlap: int = 32,
                 enhance: bool = True) -> None:
        self.weights = Path(weights) if weights is not None else paths.weights_root()
        self.mix = mix or StyleMix.single(style)
        self.ltm_refine = ltm_refine
        self.tile, self.overlap = tile, overlap
        first = self.mix.styles[0] if self.mix.styles else style
        self.style = first
        cfgs = {s: BuildConfig(self.weights, style=s, denoiser=denoiser, use_lut=use_lut if s else None,
                               ltm_refine=ltm_refine, solver_iters=solver_iters)
                for s in (self.mix.styles or [style])}
        base = cfgs[first]
        self.denoise = build_stage("denoise", base).to(memory_format=torch.channels_last)
        self.color = build_stage("color", base)
        self.upsample = build_stage("upsample", base)
        self.enhance = build_stage("enhance", base).to(memory_format=torch.channels_last) if enhance else None
        self.photofinishing: dict[int, dict[str, torch.nn.Module]] = {}
        for s, cfg in cfgs.items():
            stages = {sid: build_stage(sid, cfg) for sid in PHOTOFINISHING_STAGES}
            if cfg.lut:
                stages["lut3d"] = build_stage("lut3d", cfg)
            self.photofinishing[s] = stages

    @property
    def steps(self) -> tuple[str, ...]:
        """The progress steps :meth:`run` reports, in order."""
        pf = PHOTOFINISHING_STAGES if self.mix.is_single else ("photofinishing",)
        return ("denoise", "color", "downsample") + pf + ("upsample", "enhance")

    # ------------------------------------------------------------------------------------------ validation
    def check_inputs(self, raw: torch.Tensor, illum: torch.Tensor, ccm: torch.Tensor) -> None:
        """Raise ``ValueError`` (expected vs got, and the fix) for inputs the pipeline cannot take."""
        if not isinstance(raw, torch.Tensor) or raw.ndim != 4 or raw.shape[1] != 3:
            got = tuple(raw.shape) if isinstance(raw, torch.Tensor) else type(raw).__name__
            raise ValueError(f"raw must be a (B, 3, H, W) demosaiced tensor, got {got}; "
                             "decode DNGs with isp.io.dng.read_dng")
        b, _, h, w = raw.shape
        least = MIN_SIZE_REFINE if self.ltm_refine else MIN_SIZE
        if h < least or w < least:
            why = " with LTM refinement" if self.ltm_refine else ""
            raise ValueError(f"raw must be at least {least}x{least}{why}, got {h}x{w}")
        if not raw.is_floating_point():
            raise ValueError(f"raw must be floating point in [0, 1], got {raw.dtype}")
        color_stage.check_inputs(raw, illum, ccm)
        if illum.shape[0] != b or ccm.shape[0] != b:
            raise ValueError(f"illum and ccm need the batch size of raw ({b}), got {illum.shape[0]} and {ccm.shape[0]}")
        if not torch.isfinite(raw).all():
            raise ValueError("raw contains NaN or infinite values")

    # ------------------------------------------------------------------------------------- full resolution
    def _full_res(self, module: torch.nn.Module, x: torch.Tensor, progress) -> torch.Tensor:
        """A full-resolution network, tiled when configured. Runs channels-last: on CPU the depthwise convolutions
        of NAFNet are 1.4-1.8x faster that way, with results equal to 2e-7."""
        def run(t: torch.Tensor) -> torch.Tensor:
            return module(t.contiguous(memory_format=torch.channels_last)).contiguous()
        if self.tile is None or (x.shape[-2] <= self.tile and x.shape[-1] <= self.tile):
            return run(x)
        return run_tiled(run, x, tile=self.tile, overlap=self.overlap, progress=progress)

    # -------------------------------------------------------------------------------------- photofinishing
    def _chain(self, style: int, x: torch.Tensor, edits: Edits, params: Mapping[str, torch.Tensor | None],
               lut_table: torch.Tensor | None, enabled: Mapping[str, bool],
               say: Callable[[str], None] = lambda _s: None) -> dict[str, torch.Tensor]:
        """One photofinishing pass. ``params[stage]`` overrides the prediction; disabled stages are identity."""
        st = self.photofinishing[style]
        out: dict[str, torch.Tensor] = {"lsrgb_ds": x}

        def run(stage: str, *inputs: torch.Tensor) -> torch.Tensor:
            say(stage)
            p = params.get(stage)
            if p is None:
                p = st[stage].predict(*inputs)
            out[f"{stage}_param" if stage != "chroma" else "chroma_lut_param"] = p
            return st[stage].apply(*inputs, p)

        x_gain = run("gain", x) if enabled["gain"] else x
        x_gtm = run("gtm", x_gain) if enabled["gtm"] else x_gain
        x_ltm = run("ltm", x_gain, x_gtm) if enabled["ltm"] else x_gtm
        out.update(lsrgb_gain=x_gain, lsrgb_gtm=x_gtm, lsrgb_ltm=x_ltm)

        say("chroma")
        ycc = rgb_to_ycbcr(x_ltm)
        if edits.contrast:
            ycc = adjust_contrast(ycc, edits.contrast)
        if edits.highlights or edits.shadows:
            ycc = adjust_shadows(adjust_highlights(ycc, edits.highlights), edits.shadows)
        if lut_table is not None:
            rgb = ycbcr_to_rgb(ycc) if edits.tone_edits else x_ltm
            lut_stage = st.get("lut3d") or next(s["lut3d"] for s in self.photofinishing.values() if "lut3d" in s)
            lut_out = lut_stage.apply(rgb, lut_table)
            out["lsrgb_lut"] = lut_out
            ycc = rgb_to_ycbcr(lut_out)
        if enabled["chroma"]:
            chroma = st["chroma"]
            p = params.get("chroma")
            if p is None:
                p = chroma.predict_ycbcr(ycc)
            out["chroma_lut_param"] = p
            processed = chroma.apply_ycbcr(ycc, p)
        else:
            processed = ycbcr_to_rgb(ycc)
        out["processed_lsrgb"] = processed
        srgb = run("gamma", processed) if enabled["gamma"] else processed
        if edits.vibrance:
            srgb = adjust_vibrance(srgb, edits.vibrance)
        if edits.saturation:
            srgb = adjust_saturation(srgb, edits.saturation)
        out["gamma_out"] = srgb
        return out

    def _lut_table(self, weights: Mapping[int, float]) -> torch.Tensor | None:
        tables = {s: self.photofinishing[s]["lut3d"].table for s in weights if "lut3d" in self.photofinishing[s]}
        if not tables:
            return None
        identity = None
        blended = 0.0
        for s, w in weights.items():
            if s in tables:
                blended = blended + w * tables[s]
            else:
                if identity is None:
                    identity = self.photofinishing[next(iter(tables))]["lut3d"].identity_table()
                blended = blended + w * identity
        return blended

    def photofinish(self, lsrgb_ds: torch.Tensor, edits: Edits = Edits(),
                    say: Callable[[str], None] = lambda _s: None) -> dict[str, torch.Tensor]:
        """Photofinishing of a 1/4-resolution linear sRGB image under the configured style mix.

        ``say(stage)`` is called as each photofinishing stage starts (single-style renders only)."""
        mix = self.mix
        if mix.is_single:
            s = mix.styles[0]
            lut = self.photofinishing[s]["lut3d"].table if "lut3d" in self.photofinishing[s] else None
            return self._chain(s, lsrgb_ds, edits, {}, lut, {k: True for k in PHOTOFINISHING_STAGES}, say)
        # 1) each style's own chain, 2) blend parameters per stage, 3) one final chain with blended parameters
        per_style = {}
        for s in mix.styles:
            enabled = {k: mix.weights[k].get(s, 0.0) > 0 for k in PHOTOFINISHING_STAGES}
            lut = self.photofinishing[s]["lut3d"].table if "lut3d" in self.photofinishing[s] else None
            per_style[s] = self._chain(s, lsrgb_ds, edits, {}, lut, enabled)
        blended: dict[str, torch.Tensor | None] = {}
        enabled = {}
        for stage in PHOTOFINISHING_STAGES:
            w = mix.normalised(stage)
            enabled[stage] = bool(w)
            key = "chroma_lut_param" if stage == "chroma" else f"{stage}_param"
            blended[stage] = sum(wt * per_style[s][key] for s, wt in w.items()) if w else None
        lut = self._lut_table(mix.normalised("chroma")) if enabled["chroma"] else None
        return self._chain(mix.styles[0], lsrgb_ds, edits, blended, lut, enabled)

    # ---------------------------------------------------------------------------------------------- render
    @torch.inference_mode()
    def run(self, raw: torch.Tensor, illum: torch.Tensor, ccm: torch.Tensor, edits: Edits = Edits(),
            progress: Callable[[str], None] | None = None,
            tile_progress: Callable[[int], None] | None = None,
            awb: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
            keep: Collection[str] | None = None) -> dict[str, torch.Tensor]:
        """Render ``raw`` (B, 3, H, W) in [0, 1] with white balance ``illum`` (B, 3) and ``ccm`` (B, 3, 3).

        Returns every intermediate under its golden-file name; the final image is ``out["srgb"]``.
        ``progress(step)`` is called as each step starts: denoise, [awb,] color, downsample, gain, gtm, ltm, chroma
        (with tone edits and the 3-D LUT), gamma, upsample, enhance (with sharpening); a style mix reports its whole
        photofinishing as one step. ``keep``: return only these names, and let go of the full-resolution
        intermediates outside it as soon as they are consumed (``keep={"srgb"}`` renders a 12 MP frame with ~300 MB
        less at its peak); default: everything.

        ``awb(noisy_raw, denoised_raw) -> (illum (B, 3), ccm (B, 3, 3))`` replaces ``illum``/``ccm`` with an estimate
        (:mod:`isp.awb`); it sees the raw after the exposure edit, as the official pipeline's AWB does. The values
        used are returned as ``out["illum"]`` and ``out["ccm"]``.
        """
        self.check_inputs(raw, illum, ccm)
        say = progress or (lambda _s: None)
        out: dict[str, torch.Tensor] = {"raw": raw}
        x = apply_exposure(raw, edits.ev) if edits.ev else raw
        say("denoise")
        den = self._full_res(self.denoise, x, tile_progress) if edits.denoise > 0 else x
        out["denoised_raw"] = den
        if awb is not None:
            say("awb")
            illum, ccm = awb(x, den)
        out["illum"], out["ccm"] = illum, ccm
        den = _lerp(x, den, edits.denoise)
        say("color")
        lsrgb = self.color(den, illum, ccm)
        del den
        if keep is not None and "denoised_raw" not in keep:
            del out["denoised_raw"]
        if edits.luma_denoise or edits.chroma_denoise:
            lsrgb = ycbcr_to_rgb(luma_chroma_denoise(rgb_to_ycbcr(lsrgb), edits.luma_denoise, edits.chroma_denoise))
        out["lsrgb"] = lsrgb
        say("downsample")
        lsrgb_ds = downsample(lsrgb)
        if self.mix.is_single:
            pf = self.photofinish(lsrgb_ds, edits, say)
        else:
            say("photofinishing")
            pf = self.photofinish(lsrgb_ds, edits)
        out.update(pf)
        say("upsample")
        up = self.upsample(lsrgb, pf["lsrgb_ds"], pf["gamma_out"])
        out["srgb_upsampled"] = up
        del lsrgb
        for name in ("lsrgb", "srgb_upsampled"):
            if keep is not None and name not in keep:
                del out[name]
        say("enhance")
        if self.enhance is not None and edits.enhance > 0:
            srgb = _lerp(up, self._full_res(self.enhance, up, tile_progress), edits.enhance)
        else:
            srgb = up
        if edits.sharpening:
            srgb = sharpen(srgb, edits.sharpening)
        out["srgb"] = srgb
        return out if keep is None else {k: v for k, v in out.items() if k in keep}
