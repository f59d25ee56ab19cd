"""Weight-quantization-aware fine-tune of a NAFNet unit against its own float outputs (the npu recipes' last fix).

With 16-bit activations (LiteRT 16x8) the int8 weights are what is left of the denoiser's error (the debugger's
16-bit rows; the exported lite denoiser measured the same end to end as its weights rounded alone). This fits the
float weights so that *their int8 rounding* reproduces the float network:

* every ``Conv2d`` of the unit runs with its weight on the grid the converters use (symmetric per output channel,
  ``max |w_c| / 127``; depthwise: per channel), the rounding passed straight through to the latent float weight;
* the teacher is the untouched float unit, the data crops of the calibration inputs (and optional extra images)
  at exposure gains 0.5-2, clipped to [0, 1];
* the loss is the squared difference of the two outputs divided by the crop's mean level (+0.01): the pipeline's
  white balance, colour matrix and digital gain amplify an error in a dark frame by about its inverse level.

The result is a state dict of the same module (float weights the exporters then quantize as usual). It is derived
from the release's checkpoints, so it is written to a cache folder (``$ISP_CACHE`` or ``~/.cache/isp/qat``), never
into the repository, keyed by the checkpoint's sha256 and the settings; ``python -m convert.qat`` makes it; the
exporter loads it (and makes it when absent: recipe option ``weight_finetune``: ``true`` or settings)
and applies it to the unit before the target quantizes and records it in the manifest entry's ``details``.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DEFAULTS", "int8_weight", "weight_quantized", "finetune", "cache_file", "finetuned_state",
           "finetuned_module", "unit_checkpoint", "main"]

#: steps, Adam learning rate (cosine to 0), crop side (a multiple of 16), crops per step, seed, and the convolutions
#: (paths or prefixes) whose weights the export splits into two int8 parts (:func:`convert.quant_prep.split_weights`):
#: ~15-bit weights, so the fine-tune leaves them unrounded
DEFAULTS = {"steps": 40, "lr": 1e-4, "crop": 64, "batch": 4, "seed": 0, "split_weights": []}


def int8_weight(w: torch.Tensor) -> torch.Tensor:
    """``w`` rounded to symmetric per-output-channel int8 (``max |w_c| / 127``: :func:`convert.quant_prep.int8_grid`),
    with a straight-through gradient."""
    from convert.quant_prep import int8_grid
    return w + (int8_grid(w.detach()) - w).detach()


class _Int8WeightConv(nn.Module):
    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        return F.conv2d(x, int8_weight(c.weight), c.bias, c.stride, c.padding, c.dilation, c.groups)


def weight_quantized(module: nn.Module, keep: Sequence[str] = ()) -> nn.Module:
    """A deep copy of ``module`` whose every ``Conv2d`` but those at or under ``keep`` computes with int8-rounded
    weights (parameters shared with nothing; names gain a ``.conv`` level: :func:`finetune` strips it again)."""
    from convert.targets.base import in_scope

    def swap(m: nn.Module, prefix: str) -> None:
        for name, child in list(m.named_children()):
            path = f"{prefix}{name}"
            if isinstance(child, nn.Conv2d):
                if not in_scope(path, keep):
                    setattr(m, name, _Int8WeightConv(child))
            else:
                swap(child, path + ".")
    out = copy.deepcopy(module)
    swap(out, "")
    return out


def _first(y: Any) -> torch.Tensor:
    return y[0] if isinstance(y, (tuple, list)) else y


def _crops(images: Sequence[torch.Tensor], n: int, side: int, g: torch.Generator) -> torch.Tensor:
    out = []
    for _ in range(n):
        img = images[int(torch.randint(len(images), (), generator=g))]
        h, w = img.shape[-2:]
        if h < side or w < side:
            raise ValueError(f"qat: an image of {h}x{w} is smaller than the crop side {side}")
        y = int(torch.randint(h - side + 1, (), generator=g))
        x = int(torch.randint(w - side + 1, (), generator=g))
        gain = float(torch.empty(()).uniform_(0.5, 2.0, generator=g)) if bool(torch.rand((), generator=g) < 0.5) else 1.0
        out.append((img[..., y:y + side, x:x + side].reshape(1, -1, side, side) * gain).clamp(0.0, 1.0))
    return torch.cat(out)


def finetune(module: nn.Module, images: Sequence[torch.Tensor], *, steps: int = DEFAULTS["steps"],
             lr: float = DEFAULTS["lr"], crop: int = DEFAULTS["crop"], batch: int = DEFAULTS["batch"],
             seed: int = DEFAULTS["seed"], split_weights: Sequence[str] = (), progress: bool = False
             ) -> dict[str, torch.Tensor]:
    """Fine-tune a copy of ``module`` (one image input, first output compared) with int8-rounded weights (float
    ones for the ``split_weights`` convolutions) against ``module`` itself on crops of ``images`` ((1, C, H, W) or
    (C, H, W) tensors in [0, 1]); returns its state dict (keys of ``module``). ``module`` is not changed."""
    if steps < 1 or crop % 16 or not images:
        raise ValueError(f"qat: need steps >= 1, a crop side that is a multiple of 16 and images; got steps={steps}, "
                         f"crop={crop}, {len(images)} images")
    g = torch.Generator().manual_seed(seed)
    teacher = module.eval()
    student = weight_quantized(module, keep=list(split_weights)).train()
    params = [p for p in student.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    bar = range(steps)
    if progress:
        from tqdm import tqdm
        bar = tqdm(bar, desc="int8-weight fine-tune", unit="step")
    for _ in bar:
        x = _crops(images, batch, crop, g)
        with torch.no_grad():
            y = _first(teacher(x))
        level = x.mean(dim=tuple(range(1, x.dim())), keepdim=True) + 0.01
        loss = (((_first(student(x)) - y) / level) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if progress:
            bar.set_postfix(loss=f"{loss.item():.3g}")
    state = {k.replace(".conv.weight", ".weight").replace(".conv.bias", ".bias"): v.detach().clone()
             for k, v in student.state_dict().items()}
    missing = set(module.state_dict()) ^ set(state)
    if missing:
        raise RuntimeError(f"qat: state dict keys differ from the module's: {sorted(missing)[:5]}")
    return state


def _cache_root() -> Path:
    return Path(os.environ.get("ISP_CACHE") or Path.home() / ".cache" / "isp") / "qat"


def cache_file(checkpoint: str | Path, settings: Mapping[str, Any]) -> Path:
    """Where the fine-tune of ``checkpoint`` with ``settings`` is cached (sha256 of the checkpoint + settings)."""
    h = hashlib.sha256(Path(checkpoint).read_bytes())
    h.update(json.dumps({**DEFAULTS, **settings}, sort_keys=True).encode())
    return _cache_root() / f"{Path(checkpoint).stem}-{h.hexdigest()[:16]}.pt"


def finetuned_state(module: nn.Module, checkpoint: str | Path, images: Sequence[torch.Tensor],
                    settings: Mapping[str, Any], progress: bool = True) -> tuple[dict[str, torch.Tensor], Path, bool]:
    """The cached fine-tune of ``module`` (built from ``checkpoint``) or a new one, written atomically to the cache.
    Returns (state dict, cache file, whether it was made now)."""
    from isp.atomic import write_atomic
    unknown = set(settings) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"weight_finetune: unknown settings {sorted(unknown)} (known: {sorted(DEFAULTS)})")
    path = cache_file(checkpoint, settings)
    if path.is_file():
        return torch.load(path, weights_only=True), path, False
    state = finetune(module, images, progress=progress, **{**DEFAULTS, **settings})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda f: torch.save(state, f), what="int8-weight fine-tune")
    return state, path, True


def finetuned_module(unit: Any, settings: Mapping[str, Any] | bool,
                     calibration: Sequence[tuple[torch.Tensor, ...]], split_weights: Sequence[str] = ()
                     ) -> tuple[nn.Module, dict[str, Any]]:
    """A copy of ``unit.module`` with the cached (or new) fine-tune on ``calibration``'s first inputs, and what was
    done (for the manifest). ``settings``: ``True`` (the defaults) or a dict of :data:`DEFAULTS` keys;
    ``split_weights``: the recipe's split convolutions (left unrounded, unless ``settings`` names its own)."""
    settings = {} if settings is True else dict(settings)
    if split_weights:
        settings.setdefault("split_weights", list(split_weights))
    images = [row[0] for row in calibration]
    state, path, made = finetuned_state(unit.module, unit_checkpoint(unit), images, settings)
    module = copy.deepcopy(unit.module).eval()
    module.load_state_dict(state)
    return module, {**DEFAULTS, **settings, "cache": str(path), "made_now": made, "images": len(images)}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m convert.qat --calibration DIR [--unit denoise] [--denoiser s24_lite] [--steps N] ...``: make
    (or find) the cached fine-tune the npu policy's ``weight_finetune`` option uses."""
    import argparse

    from calibration import load_set
    from convert.units import build_unit
    from isp import paths
    from isp.geometry import FrameGeometry, parse_size
    from isp.registry import BuildConfig
    ap = argparse.ArgumentParser(prog="python -m convert.qat", description=main.__doc__)
    ap.add_argument("--calibration", required=True, help="a calibration set (python -m calibration build)")
    ap.add_argument("--unit", default="denoise", choices=("denoise", "enhance"))
    ap.add_argument("--denoiser", default="s24_lite")
    ap.add_argument("--style", type=int, default=0)
    ap.add_argument("--size", default="512x320")
    ap.add_argument("--tile", type=int, default=128)
    ap.add_argument("--overlap", type=int, default=32)
    for k, v in DEFAULTS.items():
        if isinstance(v, list):
            ap.add_argument(f"--{k.replace('_', '-')}", dest=k, default=v, type=lambda t: [x for x in t.split(",") if x],
                            help="comma list of convolution paths (unit module names, e.g. stage.net.stem)")
        else:
            ap.add_argument(f"--{k}", type=type(v), default=v)
    a = ap.parse_args(argv)
    cfg = BuildConfig(paths.weights_root(), style=a.style, denoiser=a.denoiser)
    unit = build_unit(a.unit, cfg, FrameGeometry(*parse_size(a.size), a.tile, a.overlap))
    root = Path(a.calibration)
    cs = load_set(root / "calib" if (root / "calib" / "set.json").is_file() else root)
    images = [s[0] for s in unit.calibration_inputs(cs)]
    settings = {k: getattr(a, k) for k in DEFAULTS}
    _, path, made = finetuned_state(unit.module, unit_checkpoint(unit), images, settings)
    print(("wrote " if made else "cached ") + str(path))
    return 0


def unit_checkpoint(unit: Any) -> Path:
    """The checkpoint file an export unit's network comes from (its stage's ``checkpoint`` of the unit's config)."""
    from isp.registry import get_stage
    ck = get_stage(unit.id).checkpoint(unit.cfg)
    if ck is None:
        raise ValueError(f"{unit.id}: its stage names no checkpoint to fine-tune")
    return Path(ck)


if __name__ == "__main__":
    raise SystemExit(main())
