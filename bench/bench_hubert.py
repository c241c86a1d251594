"""Content encoder and RMVPE throughput on full-size networks with random weights.

Prints JSON: HuBERT-base seconds per audio second (v1 and v2 taps) on 10 s
and 60 s inputs, RMVPE (the released E2E(4, 1, (2, 2)) size) seconds per
audio second on 10 s and 60 s, each the median of ``--runs`` runs. Wall time
and process CPU time are both given (CPU time is less disturbed by other
load on a shared machine). Each network runs in its own subprocess so its
peak RSS is its own.

    .venv/bin/python bench/bench_hubert.py [--runs 3] [--lengths 10 60] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _audio(seconds: float, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    rng = np.random.default_rng(seed)
    voice = 0.3 * np.sin(2 * np.pi * (140 + 40 * np.sin(2 * np.pi * 0.3 * t)) * t)
    return (voice + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def _median_time(fn, runs: int) -> tuple[float, float]:
    """Median (wall seconds, process CPU seconds) over ``runs`` calls."""
    wall, cpu = [], []
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def full_size_hubert(device: str):
    """A ContentEncoder around a random HuBERT-base (768 wide, 12 layers, 512-ch convs)."""
    import torch
    from transformers import HubertConfig, HubertModel

    from engines.rvc.content.encoder import ContentEncoder, EncoderInfo

    torch.manual_seed(0)
    config = HubertConfig(hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                          feat_proj_dropout=0.0, layerdrop=0.0)
    model = HubertModel(config)
    proj = torch.nn.Linear(768, 256)
    info = EncoderInfo("random-hubert-base", "transformers", 768, 12, 256, False)
    return ContentEncoder(model, proj, info, torch.device(device))


def bench_hubert(lengths: list[float], runs: int, device: str) -> dict:
    encoder = full_size_hubert(device)
    encoder.extract(_audio(1.0), "v2")  # warm-up
    out: dict = {}
    for seconds in lengths:
        audio = _audio(seconds)
        entry: dict = {"frames": encoder.num_frames(audio.size)}
        for version in ("v2", "v1"):
            wall, cpu = _median_time(lambda: encoder.extract(audio, version), runs)
            entry[f"{version}_s_per_audio_s"] = round(wall / seconds, 4)
            entry[f"{version}_cpu_s_per_audio_s"] = round(cpu / seconds, 4)
        out[f"{seconds:g}s"] = entry
    out["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    return out


def bench_rmvpe(lengths: list[float], runs: int, device: str) -> dict:
    import torch

    from engines.rvc.pitch.rmvpe import RMVPE, PitchNet

    torch.manual_seed(0)
    model = RMVPE(PitchNet(), device)
    model.infer(_audio(1.0))  # warm-up
    out: dict = {}
    for seconds in lengths:
        audio = _audio(seconds)
        wall, cpu = _median_time(lambda: model.infer(audio), runs)
        out[f"{seconds:g}s"] = {
            "s_per_audio_s": round(wall / seconds, 4),
            "cpu_s_per_audio_s": round(cpu / seconds, 4),
            "x_realtime": round(seconds / wall, 2),
        }
    out["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--lengths", type=float, nargs="+", default=[10.0, 60.0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--part", choices=["all", "hubert", "rmvpe"], default="all")
    args = parser.parse_args()

    if args.part != "all":
        fn = bench_hubert if args.part == "hubert" else bench_rmvpe
        print(json.dumps(fn(args.lengths, args.runs, args.device)))
        return

    import torch

    result: dict = {
        "machine": {
            "cpu_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "load_avg_1min": round(os.getloadavg()[0], 2),
        },
        "runs": args.runs,
    }
    for part in ("hubert", "rmvpe"):
        cmd = [sys.executable, __file__, "--part", part, "--runs", str(args.runs), "--device", args.device,
               "--lengths", *[str(x) for x in args.lengths]]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        result["hubert_base" if part == "hubert" else "rmvpe_full"] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["machine"]["load_avg_1min_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
