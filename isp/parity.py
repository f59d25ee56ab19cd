"""Golden parity: does the reference reproduce the official implementation?

    python -m isp.parity GOLDEN_DIR [--weights DIR] [--min-psnr 50] [--min-e2e-psnr 40] [--json OUT]

For every ``*.npz`` in ``GOLDEN_DIR`` (format: ``shared/golden/README.md``) each stage is run on *that stage's golden
input* and compared with its golden output(s); then the whole chain runs from ``raw`` (with the file's ``illum`` and
``ccm``) and every intermediate is compared. Images are compared with PSNR over a [0, 1] range; predicted parameters
with PSNR over the peak magnitude of the golden parameter (a relative measure). Prints a table, optionally writes it
as JSON, and exits 1 when any stage-wise PSNR is below ``--min-psnr`` or the end-to-end ``srgb`` is below
``--min-e2e-psnr`` (or a stage cannot run).

Golden files of other kinds (``shared/golden_ext``: ``lin_*``, ``jpeg_*``, …) are checked by the function their
file-name prefix registers in :data:`FILE_CHECKERS`, with per-row limits of their own; a kind nobody registered is
listed as skipped, which does not fail the run.
"""
from __future__ import annotations

import argparse
import importlib
import math
import re
import sys
from pathlib import Path

import torch

from isp import paths
from isp.jsonio import write_json_atomic
from isp.golden import GoldenCase, find_golden_files, load_golden
from isp.metrics import psnr
from isp.registry import STAGE_ORDER, BuildConfig, build_stage, get_stage

__all__ = ["stage_rows", "end_to_end_rows", "run_parity", "build_parser", "main"]

#: golden tensors stored without the batch dimension
_UNBATCHED = {"illum": 1, "ccm": 2}
#: stages compared stage-wise (lut3d has no golden output of its own: it is checked inside chroma for -lut styles)
STAGEWISE = tuple(s for s in STAGE_ORDER if s != "lut3d")

#: golden files of other kinds (``shared/golden_ext``): file-name prefix -> "module:function". The function is
#: called as ``f(path, weights, min_psnr, e2e=...)`` and returns rows like the ones below, each with its own
#: ``limit`` and ``pass``. A file that is neither a raw-to-sRGB golden file (``NAME_sSTYLE.npz``) nor claimed here
#: is reported as skipped.
FILE_CHECKERS = {
    "awb_": "isp.parity_awb:check_awb",
    "lin_": "isp.parity_io:check_lin",
    "jpeg_": "isp.parity_io:check_jpeg",
}
_CHAIN_FILE = re.compile(r".+_s\d+$")


def _readable_npz(path: Path) -> bool:
    import numpy as np
    try:
        with np.load(path, allow_pickle=False) as z:
            return bool(z.files)
    except Exception:
        return False


def file_checker(path: Path):
    """The checker function registered for ``path``'s kind, or ``None`` (raw-to-sRGB file, or unknown kind)."""
    for prefix, target in FILE_CHECKERS.items():
        if path.stem.startswith(prefix):
            module, _, func = target.partition(":")
            return getattr(importlib.import_module(module), func)
    return None


def _golden_input(case: GoldenCase, name: str) -> torch.Tensor:
    t = case[name]
    return t.unsqueeze(0) if t.ndim == _UNBATCHED.get(name, -1) else t


def _is_param(name: str) -> bool:
    return name.endswith("_param")


def compare(name: str, got: torch.Tensor, ref: torch.Tensor) -> dict:
    got = got.detach().float().reshape(ref.shape) if got.numel() == ref.numel() else got
    if got.shape != ref.shape:
        return {"output": name, "psnr": None, "error": f"shape {tuple(got.shape)} != golden {tuple(ref.shape)}"}
    rng = max(float(ref.abs().max()), 1e-6) if _is_param(name) else 1.0
    return {"output": name, "psnr": psnr(got, ref, data_range=rng),
            "max_abs": float((got.double() - ref.double()).abs().max()), "kind": "param" if _is_param(name) else "image"}


class _StageCache:
    def __init__(self, weights: Path) -> None:
        self.weights = weights
        self._modules: dict[tuple, torch.nn.Module] = {}

    def config(self, case: GoldenCase) -> BuildConfig:
        return BuildConfig(self.weights, style=case.style_id, denoiser=case.denoiser)

    def get(self, stage: str, cfg: BuildConfig) -> torch.nn.Module:
        key = (stage, cfg.style, cfg.denoiser, cfg.lut)
        if key not in self._modules:
            self._modules[key] = build_stage(stage, cfg)
        return self._modules[key]


@torch.inference_mode()
def stage_rows(case: GoldenCase, cache: _StageCache) -> list[dict]:
    cfg = cache.config(case)
    rows = []
    for stage in STAGEWISE:
        spec = get_stage(stage)
        base = {"file": case.name, "stage": stage}
        try:
            module = cache.get(stage, cfg)
            inputs = [_golden_input(case, n) for n in spec.input_names]
            if stage == "chroma" and cfg.lut:          # -lut styles: the 3-D LUT precedes chroma mapping
                base["stage"] = "lut3d+chroma"
                inputs[0] = cache.get("lut3d", cfg)(inputs[0])
            outs = module(*inputs)
            outs = outs if isinstance(outs, tuple) else (outs,)
            for name, got in zip(spec.output_names, outs):
                rows.append({**base, **compare(name, got, case[name])})
        except Exception as exc:  # reported as a failing row, never hidden
            rows.append({**base, "output": ",".join(spec.output_names), "psnr": None,
                         "error": f"{type(exc).__name__}: {exc}"})
    return rows


@torch.inference_mode()
def end_to_end_rows(case: GoldenCase, weights: Path, keys: tuple[str, ...] | None = None) -> list[dict]:
    from isp.pipeline import Pipeline   # heavy import only when needed
    try:
        pipe = Pipeline(weights, style=case.style_id, denoiser=case.denoiser)
        out = pipe.run(case["raw"], _golden_input(case, "illum"), _golden_input(case, "ccm"))
    except Exception as exc:
        return [{"file": case.name, "stage": "end-to-end", "output": "srgb", "psnr": None,
                 "error": f"{type(exc).__name__}: {exc}"}]
    names = keys or ("denoised_raw", "lsrgb", "lsrgb_ds", "lsrgb_gain", "lsrgb_gtm", "lsrgb_ltm", "processed_lsrgb",
                     "gamma_out", "srgb_upsampled", "srgb")
    return [{"file": case.name, "stage": "end-to-end", **compare(n, out[n], case[n])} for n in names]


def _fmt(v) -> str:
    if v is None:
        return "ERROR"
    return "inf" if math.isinf(v) else f"{v:6.2f}"


def run_parity(golden_dir: Path, weights: Path, min_psnr: float, min_e2e: float, e2e: bool = True,
               log=print) -> tuple[list[dict], bool]:
    files = find_golden_files(golden_dir)
    cache = _StageCache(weights)
    rows: list[dict] = []
    try:
        from tqdm import tqdm
        iterator = tqdm(files, desc="golden files", unit="file", file=sys.stderr, disable=None)
    except ImportError:  # pragma: no cover
        iterator = files
    for f in iterator:
        checker = file_checker(f)
        if checker is not None:
            rows += checker(f, weights, min_psnr, e2e=e2e)
            continue
        try:
            case = load_golden(f)
        except ValueError:
            if _CHAIN_FILE.fullmatch(f.stem) or not _readable_npz(f):
                raise                   # a broken raw-to-sRGB golden file, or no .npz at all: exit 2
            rows.append({"file": f.stem, "stage": "-", "output": "-", "psnr": None, "pass": None,
                         "skipped": "no checker for this kind of golden file"})
            continue
        rows += stage_rows(case, cache)
        if e2e:
            rows += end_to_end_rows(case, weights)
    ok = True
    for r in rows:
        if "pass" in r:                 # judged by its file kind's checker (own limit), or skipped (None)
            ok &= r["pass"] is not False
            continue
        limit = min_e2e if r["stage"] == "end-to-end" else min_psnr
        if r["stage"] == "end-to-end" and r["output"] != "srgb":
            r["pass"] = None            # diagnostic only: intermediates of the chain accumulate upstream error
            continue
        r["pass"] = r.get("psnr") is not None and r["psnr"] >= limit
        ok &= r["pass"]
    width = max(len(r["file"]) for r in rows)
    sw, ow = max(13, *(len(r["stage"]) for r in rows)), max(17, *(len(r["output"]) for r in rows))
    log(f"{'file':<{width}}  {'stage':<{sw}} {'output':<{ow}} {'PSNR dB':>8}  {'max|d|':>9}  ok")
    for r in rows:
        mark = {True: "yes", False: "NO", None: "-"}[r["pass"]]
        extra = f"  {r['error']}" if r.get("error") else ""
        if r.get("metric"):             # a bound that is not a PSNR (e.g. an illuminant's angular error)
            m = r["metric"]
            extra = f"  {m['name']} {m['value']:.2e} (limit {m['limit']:g})" + extra
        if r.get("skipped"):
            extra = f"  skipped: {r['skipped']}" + extra
        shown = "-" if r.get("skipped") or r.get("metric") else _fmt(r.get("psnr"))
        log(f"{r['file']:<{width}}  {r['stage']:<{sw}} {r['output']:<{ow}} {shown:>8}  "
            f"{r.get('max_abs', float('nan')):9.2e}  {mark}{extra}")
    own = [r for r in rows if "limit" in r]
    rows_chain = [r for r in rows if "limit" not in r and not r.get("skipped")]
    stagewise = [r["psnr"] for r in rows_chain if r["stage"] != "end-to-end" and r.get("psnr") is not None]
    e2e_vals = [r["psnr"] for r in rows_chain if r["stage"] == "end-to-end" and r["output"] == "srgb"
                and r.get("psnr") is not None]
    if stagewise:
        log(f"stage-wise min {min(stagewise):.2f} dB (limit {min_psnr}); "
            + (f"end-to-end srgb min {min(e2e_vals):.2f} dB (limit {min_e2e})" if e2e_vals else "end-to-end: not run"))
    if own:
        vals = [r["psnr"] for r in own if r.get("psnr") is not None]
        log(f"other golden kinds: {len(own)} rows, min {min(vals) if vals else float('nan'):.2f} dB, "
            f"{sum(r['pass'] is False for r in own)} outside their limits")
    skipped = [r["file"] for r in rows if r.get("skipped")]
    if skipped:
        log(f"skipped (no checker): {', '.join(skipped)}")
    log("PASS" if ok else "FAIL")
    return rows, ok


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m isp.parity", description=__doc__.split("\n\n")[0])
    p.add_argument("golden_dir", type=Path, help="folder of golden .npz files")
    p.add_argument("--weights", type=Path, default=None, help="official weights folder (default: $ISP_WEIGHTS or "
                   "<shared>/weights/official)")
    p.add_argument("--min-psnr", type=float, default=50.0, help="stage-wise PSNR limit in dB (default 50)")
    p.add_argument("--min-e2e-psnr", type=float, default=40.0, help="end-to-end srgb PSNR limit in dB (default 40)")
    p.add_argument("--no-e2e", action="store_true", help="only stage-wise comparisons")
    p.add_argument("--json", type=Path, default=None, help="write the table as JSON here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    weights = args.weights or paths.weights_root()
    try:
        rows, ok = run_parity(args.golden_dir, weights, args.min_psnr, args.min_e2e_psnr, e2e=not args.no_e2e)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        write_json_atomic(args.json, {"golden_dir": str(args.golden_dir), "weights": str(weights),
                                       "min_psnr": args.min_psnr, "min_e2e_psnr": args.min_e2e_psnr,
                                       "pass": ok, "rows": rows})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
