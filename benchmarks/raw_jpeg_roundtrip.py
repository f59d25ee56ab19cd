"""How much does storing the raw inside the JPEG cost? Re-render PSNR per adapter quality on the shipped DNGs.

    .venv/bin/python benchmarks/raw_jpeg_roundtrip.py [--dngs DIR] [--qualities 25,50,75,95] [--style 0]
                                                      [--json OUT] [--md OUT]

For every DNG: render it (the CLI's defaults: style 0, lite denoiser of the camera's kind, enhancement on, 1024-px
tiles) = the reference; then for each quality write the reference sRGB JPEG with the raw stored inside exactly as
``render --store-raw --raw-quality Q`` does (:func:`isp.sources.store_raw`), read it back the way ``render saved.jpg``
does (:func:`isp.sources.load_source`) and render the recovered raw with the recovered illuminant and CCM. Reported:
PSNR of the re-render against the reference render (float sRGB, [0, 1], before 8-bit output), PSNR of the recovered
raw against the original raw, and the bytes the stored raw adds to the JPEG. Writes JSON and a markdown table.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    import torch
    from tqdm import tqdm

    from isp import paths
    from isp.io.dng import read_dng
    from isp.io.image import encode_jpeg
    from isp.jsonio import write_json_atomic
    from isp.metrics import psnr
    from isp.pipeline import Pipeline
    from isp.sources import load_source, store_raw

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dngs", type=Path, default=None, help="folder of DNGs (default: the shipped ones)")
    p.add_argument("--only", default=None, help="comma list of DNG file names to run (default: all in the folder)")
    p.add_argument("--qualities", default="25,50,75,95")
    p.add_argument("--style", type=int, default=0)
    p.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "raw_jpeg_roundtrip.json")
    p.add_argument("--md", type=Path, default=REPO / "benchmarks" / "results" / "raw_jpeg_roundtrip.md")
    args = p.parse_args(argv)
    qualities = [int(q) for q in args.qualities.split(",")]
    dngs = sorted((args.dngs or paths.dng_dir()).glob("*.dng"))
    if args.only:
        dngs = [d for d in dngs if d.name in args.only.split(",")]
    weights = paths.weights_root()
    pipes: dict[str, Pipeline] = {}
    rows = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        for dng in tqdm(dngs, desc="DNGs", unit="dng", file=sys.stderr):
            img = read_dng(dng)
            denoiser = ("s24" if img.is_galaxy_s24 else "generic") + "_lite"
            if denoiser not in pipes:
                pipes[denoiser] = Pipeline(weights, style=args.style, denoiser=denoiser, tile=1024)
            pipe = pipes[denoiser]
            ref = pipe.run(img.raw_tensor(), torch.as_tensor(img.illum)[None], torch.as_tensor(img.ccm)[None])["srgb"]
            srgb = ref[0].permute(1, 2, 0).numpy()
            plain = len(encode_jpeg(srgb, 95))
            for q in qualities:
                f = Path(tmp) / f"{dng.stem}_q{q}.jpg"
                store_raw(f, srgb, img, raw_quality=q, weights=weights)
                back, kind = load_source(f, weights)
                assert kind == "stored-raw", kind
                out = pipe.run(back.raw_tensor(), torch.as_tensor(back.illum)[None],
                               torch.as_tensor(back.ccm)[None])["srgb"]
                rows.append({"dng": dng.name, "size": f"{img.shape[1]}x{img.shape[0]}", "quality": q,
                             "denoiser": denoiser, "rerender_psnr": psnr(out, ref),
                             "raw_psnr": psnr(back.raw_tensor(), img.raw_tensor()),
                             "stored_bytes": f.stat().st_size - plain, "jpeg_bytes": f.stat().st_size})
                r = rows[-1]
                tqdm.write(f"{dng.name} q{q}: re-render {r['rerender_psnr']:.2f} dB, raw {r['raw_psnr']:.2f} dB, "
                           f"+{r['stored_bytes'] / 1024:.0f} KiB", file=sys.stderr)
            write_json_atomic(args.json, {"complete": False, "cpu": _cpu(), "rows": rows})   # kept if interrupted
    info = {"complete": True, "cpu": _cpu(), "threads": torch.get_num_threads(), "torch": torch.__version__, "style": args.style,
            "seconds": time.perf_counter() - t0, "rows": rows}
    write_json_atomic(args.json, info)
    lines = [f"Re-render PSNR (dB) of a `--store-raw` JPEG against rendering the original raw, style {args.style}; "
             f"raw PSNR in brackets; {info['cpu']}, torch {torch.__version__}, {info['threads']} threads.", "",
             "| DNG | size | " + " | ".join(f"q{q}" for q in qualities) + " |",
             "|---|---|" + "---:|" * len(qualities)]
    for dng in dict.fromkeys(r["dng"] for r in rows):
        rs = {r["quality"]: r for r in rows if r["dng"] == dng}
        lines.append(f"| {dng} | {rs[qualities[0]]['size']} | " + " | ".join(
            f"{rs[q]['rerender_psnr']:.1f} ({rs[q]['raw_psnr']:.1f})" for q in qualities) + " |")
    mean = {q: sum(r["rerender_psnr"] for r in rows if r["quality"] == q) / len(dngs) for q in qualities}
    kib = {q: sum(r["stored_bytes"] for r in rows if r["quality"] == q) / len(dngs) / 1024 for q in qualities}
    lines.append("| **mean** | | " + " | ".join(f"**{mean[q]:.1f}**" for q in qualities) + " |")
    lines.append("| stored raw, mean KiB | | " + " | ".join(f"{kib[q]:.0f}" for q in qualities) + " |")
    from isp.io.image import _atomic_write_bytes
    args.md.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write_bytes(args.md, ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
