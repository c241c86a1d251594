"""Seconds of CPU compute per second of audio for a full-size RVC synthesizer (random weights).

Usage: python bench/bench_synth.py [--version v2] [--sr 48k] [--seconds 10] [--runs 3] [--threads 0]
Prints one JSON object (median of runs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--version", default="v2")
    ap.add_argument("--sr", default="48k")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--f0", type=int, default=1)
    args = ap.parse_args()

    import resource

    import torch

    from engines.rvc.models.configs import CONTENT_DIM, small_model_config
    from engines.rvc.models.noise import seeded_noise
    from engines.rvc.models.synthesizer import build_synthesizer

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = small_model_config(args.version, args.sr)
    net = build_synthesizer(cfg, args.version, bool(args.f0), with_posterior=False).eval()
    net.remove_weight_norm()
    frames = int(args.seconds * 100)
    phone = torch.randn(1, frames, CONTENT_DIM[args.version])
    lengths = torch.tensor([frames])
    pitchf = 100.0 + 50.0 * torch.rand(1, frames)
    pitch = torch.randint(1, 255, (1, frames))
    sid = torch.tensor([0])
    call = (phone, lengths, pitch, pitchf, sid) if args.f0 else (phone, lengths, sid)
    times, cpu_times = [], []

    def cpu_seconds() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime
    with torch.inference_mode(), seeded_noise(0):
        net.infer(*[c[:, :50] if c.dim() > 1 else (torch.tensor([50]) if c is lengths else c) for c in call])
        for _ in range(args.runs):
            t, c = time.perf_counter(), cpu_seconds()
            audio = net.infer(*call)[0]
            times.append(time.perf_counter() - t)
            cpu_times.append(cpu_seconds() - c)
    med = statistics.median(times)
    print(
        json.dumps(
            {
                "bench": "synthesizer",
                "version": args.version,
                "sr": args.sr,
                "f0": bool(args.f0),
                "audio_seconds": args.seconds,
                "threads": torch.get_num_threads(),
                "runs": times,
                "median_s": med,
                "s_per_audio_s": med / args.seconds,
                "cpu_s_per_audio_s": statistics.median(cpu_times) / args.seconds,
                "out_samples": int(audio.shape[-1]),
            }
        )
    )


if __name__ == "__main__":
    main()
