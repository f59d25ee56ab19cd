"""Loading the official checkpoints into this project's modules.

The official release stores plain ``state_dict`` files whose key names follow the authors' module layout. Our
stage modules use their own names; each stage file declares an ordered list of ``(regex, replacement)`` rules that
maps official keys to ours (timm-style pure remapping). Loading is always strict: a missing or unexpected key is an
error that names the checkpoint file and the keys.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import torch
from torch import nn

__all__ = ["read_state_dict", "select_prefix", "remap_keys", "load_strict", "count_parameters"]

RemapRules = Sequence[tuple[str, str]]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.pth``/``.pt`` state dict on CPU. Errors name the file and say what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: checkpoint not found. Point --weights (or $ISP_WEIGHTS) at the official release folder; "
            "see README 'Weights'.")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, pickle with objects, truncated download …
        raise ValueError(f"{path}: not a readable PyTorch state dict ({type(exc).__name__}: {exc})") from exc
    if not isinstance(sd, Mapping):
        raise ValueError(f"{path}: expected a state dict (mapping of tensors), got {type(sd).__name__}")
    return dict(sd)


def select_prefix(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Keys under ``prefix`` (with the prefix stripped); ``prefix`` should end with ``.``."""
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def remap_keys(sd: Mapping[str, torch.Tensor], rules: RemapRules) -> dict[str, torch.Tensor]:
    """Apply ``re.sub(pattern, repl, key)`` for every rule in order to every key; ``repl=None``-free."""
    compiled = [(re.compile(p), r) for p, r in rules]
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        nk = k
        for pat, rep in compiled:
            nk = pat.sub(rep, nk)
        if nk in out:
            raise ValueError(f"key remap collision: {k!r} -> {nk!r}")
        out[nk] = v
    return out


def load_strict(module: nn.Module, sd: Mapping[str, torch.Tensor], source: str | Path,
                ignore: Iterable[str] = ()) -> nn.Module:
    """``module.load_state_dict(sd, strict=True)`` with an error that names ``source`` and the keys at fault.

    ``ignore`` lists checkpoint keys that are known to be derivable constants (e.g. an identity-grid buffer that we
    rebuild) and are dropped after checking that their value is what we rebuild.
    """
    sd = dict(sd)
    own = module.state_dict()
    buffers = dict(module.named_buffers())          # includes non-persistent ones
    for k in ignore:
        if k in sd:
            v = sd.pop(k)
            ref = own.get(k, buffers.get(k))
            if ref is not None and (ref.shape != v.shape or not torch.allclose(ref.float(), v.float(), atol=1e-6)):
                raise ValueError(f"{source}: constant {k!r} differs from the value this project rebuilds")
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shape_bad = sorted(k for k in set(own) & set(sd) if own[k].shape != sd[k].shape)
    if missing or unexpected or shape_bad:
        lines = [f"{source}: checkpoint does not match {type(module).__name__}"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {missing[:8]}{' …' if len(missing) > 8 else ''}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {unexpected[:8]}{' …' if len(unexpected) > 8 else ''}")
        for k in shape_bad[:8]:
            lines.append(f"  shape of {k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}")
        raise ValueError("\n".join(lines))
    module.load_state_dict(sd, strict=True)
    return module


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters (what the paper and the official code report)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
