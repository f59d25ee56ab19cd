"""Time and peak memory of a 12-megapixel render with the PyTorch reference, stage by stage, on this CPU.

    .venv/bin/python benchmarks/reference_12mp.py [--denoisers s24_lite,s24_base] [--size 4000x3000]
                                                  [--tile 1024] [--repeat 1] [--json OUT]

No 12 MP phone DNG ships with the project, so the input is synthesised from the shipped data: the demosaiced raw of
``astronaut_phone-a_d65_iso100.dng`` (1024x1024) mirrored-tiled to the target size (mirroring keeps the content
continuous, so the tone networks see a natural image). White balance and CCM come from that DNG.

Each configuration runs in a fresh subprocess so its peak memory is its own: peak RSS is sampled every 5 ms by a
background thread and reported per step as the process's highest RSS while the step ran (the model weights and the
frame itself are part of it). One warm-up pass on a small crop precedes the timed run.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


class PeakRSS:
    """Samples this process's RSS in a thread; ``mark(name)`` starts a new interval."""

    def __init__(self, interval: float = 0.005) -> None:
        import psutil
        self._proc = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.current: str | None = None
        self.peaks: dict[str, int] = {}
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self._interval)

    def _sample(self) -> None:
        if self.current is not None:
            rss = self._proc.memory_info().rss
            if rss > self.peaks.get(self.current, 0):
                self.peaks[self.current] = rss

    def mark(self, name: str) -> None:
        self._sample()
        self.current = name
        self._sample()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._sample()
        self._stop.set()
        self._thread.join()


SOURCE_DNG = "astronaut_phone-a_d65_iso100.dng"


def mirror_tiled(width: int, height: int):
    """``(frame (height, width, 3) float32, RawImage)``: the demosaiced raw of the shipped :data:`SOURCE_DNG`
    mirror-tiled to the size, and the decoded source (white balance, CCM, colour tags)."""
    import numpy as np

    from isp import paths
    from isp.io.dng import read_dng

    img = read_dng(paths.dng_dir() / SOURCE_DNG)
    tile = np.concatenate([img.rgb, img.rgb[:, ::-1]], axis=1)
    tile = np.concatenate([tile, tile[::-1]], axis=0)
    reps = (-(-height // tile.shape[0]), -(-width // tile.shape[1]), 1)
    return np.tile(tile, reps)[:height, :width], img


def synthesise(width: int, height: int):
    """(raw, illum, ccm) tensors for a width x height frame tiled from the shipped astronaut DNG."""
    import numpy as np
    import torch

    frame, img = mirror_tiled(width, height)
    raw = torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1)))[None].float()
    return raw, torch.as_tensor(img.illum).float()[None], torch.as_tensor(img.ccm).float()[None]


def run_one(denoiser: str, width: int, height: int, tile: int | None, repeat: int) -> dict:
    """Render once (after a warm-up) and return per-step seconds and peak RSS in MiB."""
    import torch

    from isp.pipeline import Pipeline

    torch.set_num_threads(os.cpu_count() or 1)
    raw, illum, ccm = synthesise(width, height)
    pipe = Pipeline(style=0, denoiser=denoiser, tile=tile)
    pipe.run(raw[..., :256, :256].contiguous(), illum, ccm)          # warm-up (allocators, kernels)
    best: dict[str, float] | None = None
    with PeakRSS() as mem:
        for _ in range(repeat):
            times: dict[str, float] = {}
            state = {"name": None, "t": 0.0}

            def step(name: str) -> None:
                now = time.perf_counter()
                if state["name"] is not None:
                    times[state["name"]] = times.get(state["name"], 0.0) + now - state["t"]
                state["name"], state["t"] = name, now
                mem.mark(name)

            t0 = time.perf_counter()
            pipe.run(raw, illum, ccm, progress=step)
            end = time.perf_counter()
            times[state["name"]] = times.get(state["name"], 0.0) + end - state["t"]
            times["total"] = end - t0
            if best is None or times["total"] < best["total"]:
                best = times
    mib = {k: v / 2 ** 20 for k, v in mem.peaks.items()}
    mib["total"] = max(mib.values())
    return {"denoiser": denoiser, "width": width, "height": height, "tile": tile, "threads": torch.get_num_threads(),
            "seconds": best, "peak_rss_mib": mib}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--denoisers", default="s24_lite,s24_base")
    p.add_argument("--size", default="4000x3000", help="WIDTHxHEIGHT (default 4000x3000 = 12 MP)")
    p.add_argument("--tile", type=int, default=1024, help="tile size of the full-resolution networks (0 = none)")
    p.add_argument("--repeat", type=int, default=1, help="timed runs per configuration (best is reported)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)   # internal: run one configuration, print JSON
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    tile = args.tile or None
    if args.one:
        print(json.dumps(run_one(args.one, width, height, tile, args.repeat)))
        return 0
    load_before = os.getloadavg()[0]
    results = []
    for denoiser in args.denoisers.split(","):
        cmd = [sys.executable, __file__, "--one", denoiser, "--size", args.size, "--tile", str(args.tile),
               "--repeat", str(args.repeat)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{denoiser}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            return 1
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    steps = list(results[0]["seconds"])
    head = f"{'step':<11}" + "".join(f"{r['denoiser'] + ' s':>14}{'peak MiB':>10}" for r in results)
    import platform
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").is_file() else \
        platform.processor()
    print(f"Reference render {width}x{height} ({width * height / 1e6:.1f} MP), tile {tile}, "
          f"{results[0]['threads']} threads, {cpu}; 1-min load average at start {load_before:.2f}")
    print(head)
    for s in steps:
        print(f"{s:<11}" + "".join(f"{r['seconds'].get(s, 0):14.2f}{r['peak_rss_mib'].get(s, 0):10.0f}"
                                   for r in results))
    if args.json:
        from isp.jsonio import write_json_atomic
        write_json_atomic(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
