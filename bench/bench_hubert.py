"""Content encoder and RMVPE throughput on full-size networks with random weights.

Prints JSON: HuBERT-base seconds per audio second (v1 and v2 taps) on 10 s
and 60 s inputs, RMVPE (the released E2E(4, 1, (2, 2)) size) seconds per
audio second on 10 s, each the median of ``--runs`` runs, plus peak RSS.

    .venv/bin/python bench/bench_hubert.py [--runs 3] [--lengths 10 60] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
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


def _median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def full_size_hubert(device: str):
    """A ContentEncoder around a random HuBERT-base (768 wide, 12 layers, 512-ch convs)."""
    import torch
    from transformers import HubertConfig, HubertModel

    from engines.rvc.hubert import ContentEncoder, EncoderInfo

    torch.manual_seed(0)
    config = HubertConfig(hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                          feat_proj_dropout=0.0, layerdrop=0.0)
    model = HubertModel(config)
    proj = torch.nn.Linear(768, 256)
    info = EncoderInfo("random-hubert-base", "transformers", 768, 12, 256, False)
    return ContentEncoder(model, proj, info, torch.device(device))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--lengths", type=float, nargs="+", default=[10.0, 60.0])
    parser.add_argument("--rmvpe-seconds", type=float, default=10.0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    from engines.rvc.rmvpe import RMVPE, PitchNet

    result: dict = {
        "machine": {"cpu_threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version()},
        "runs": args.runs,
        "hubert_base": {},
        "rmvpe": {},
    }
    encoder = full_size_hubert(args.device)
    encoder.extract(_audio(1.0), "v2")  # warm-up
    for seconds in args.lengths:
        audio = _audio(seconds)
        entry = {}
        for version in ("v2", "v1"):
            t = _median_time(lambda: encoder.extract(audio, version), args.runs)
            entry[f"{version}_s_per_audio_s"] = round(t / seconds, 4)
        entry["frames"] = encoder.num_frames(audio.size)
        result["hubert_base"][f"{seconds:g}s"] = entry
    result["hubert_base"]["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    del encoder

    torch.manual_seed(0)
    rmvpe = RMVPE(PitchNet(), args.device)
    rmvpe.infer(_audio(1.0))  # warm-up
    audio = _audio(args.rmvpe_seconds)
    t = _median_time(lambda: rmvpe.infer(audio), args.runs)
    result["rmvpe"] = {
        f"{args.rmvpe_seconds:g}s_s_per_audio_s": round(t / args.rmvpe_seconds, 4),
        "x_realtime": round(args.rmvpe_seconds / t, 2),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
