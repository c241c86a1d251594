"""Pitch extraction benchmark: throughput of every f0 method on 10 s of 16 kHz audio.

The input is a synthetic voice-like signal (five harmonics on a gliding
120-250 Hz contour, syllable-rate amplitude envelope, pauses, light noise),
so the result does not depend on espeak-ng being installed. Each method
is called once to load its network (reported as ``load_s``), then timed
``--runs`` times; the median wall time gives ``x_realtime`` (audio seconds
per wall second, higher is faster). CPU seconds are reported too, since a
shared machine makes wall time noisy.

RMVPE uses assets/rmvpe/rmvpe.pt when present; otherwise a released-size
network with random weights (same cost, meaningless pitch), flagged in
the output.

    python bench/bench_f0.py [--seconds 10] [--runs 3] [--methods pm harvest ...] [--device cpu]

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def voice_like(seconds: float, sr: int = 16000, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    contour = 175 + 55 * np.sin(2 * np.pi * 0.3 * t) + 10 * np.sin(2 * np.pi * 5.5 * t)
    phase = 2 * np.pi * np.cumsum(contour) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = np.clip(np.sin(2 * np.pi * 2.0 * t), 0, None) ** 0.5  # ~4 syllables/s with gaps
    envelope[(t % 2.5) > 2.1] = 0.0  # a pause every 2.5 s
    audio = 0.3 * voiced * envelope + 0.003 * rng.standard_normal(len(t))
    return audio.astype(np.float32)


def random_rmvpe(folder: Path) -> Path:
    import torch

    from engines.rvc.pitch.rmvpe import PitchNet

    torch.manual_seed(0)
    path = folder / "rmvpe_random.pt"
    torch.save(PitchNet().state_dict(), path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import warnings

    warnings.filterwarnings("ignore")  # pyworld's pkg_resources deprecation notice
    import torch

    from engines.rvc.pitch.f0 import (
        F0_METHODS,
        available_f0_methods,
        default_rmvpe_path,
        extract_f0,
    )

    audio = voice_like(args.seconds)
    methods = args.methods or list(F0_METHODS)
    tmp = tempfile.TemporaryDirectory()
    rmvpe_path = default_rmvpe_path()
    rmvpe_random = False
    if "rmvpe" in methods and not rmvpe_path.is_file():
        rmvpe_path, rmvpe_random = random_rmvpe(Path(tmp.name)), True
    status = available_f0_methods(rmvpe_path)

    results: dict[str, dict] = {}
    for method in methods:
        ok, reason = status.get(method, (False, "unknown method"))
        if not ok:
            results[method] = {"available": False, "reason": reason}
            continue
        kwargs = {"device": args.device, "rmvpe_path": rmvpe_path}
        t0 = time.perf_counter()
        f0 = extract_f0(audio, method, **kwargs)  # loads and caches the network
        load_s = time.perf_counter() - t0
        walls, cpus = [], []
        for _ in range(args.runs):
            w0, c0 = time.perf_counter(), time.process_time()
            f0 = extract_f0(audio, method, **kwargs)
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
        wall = statistics.median(walls)
        results[method] = {
            "available": True,
            "x_realtime": round(args.seconds / wall, 2),
            "median_wall_s": round(wall, 3),
            "median_cpu_s": round(statistics.median(cpus), 3),
            "runs_wall_s": [round(w, 3) for w in walls],
            "first_call_s": round(load_s, 3),
            "frames": int(len(f0)),
            "voiced_fraction": round(float((f0 > 0).mean()), 3),
        }
        if method == "rmvpe" and rmvpe_random:
            results[method]["note"] = "random weights (assets/rmvpe/rmvpe.pt absent): timing only"
        print(f"{method}: {results[method]}", file=sys.stderr, flush=True)

    report = {
        "benchmark": "f0_throughput",
        "audio_seconds": args.seconds,
        "runs": args.runs,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "methods": results,
    }
    print(json.dumps(report, indent=2))
    tmp.cleanup()


if __name__ == "__main__":
    main()
