"""Measure this machine's matrix-multiply throughput, printing one line per second.

Run as a subprocess by the ``system.benchmark`` job (``python -m
engines.core.machine_check --seconds N``) so it can be cancelled like any
training run: it tells a user how fast their CPU/GPU is before they start a
long job (the synthesizer needs ~113 GFLOP per audio second on CPU).
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def measure(seconds: float, size: int, device: str) -> dict:
    import torch

    dev = torch.device(device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    a = torch.randn(size, size, device=dev)
    b = torch.randn(size, size, device=dev)
    flop = 2.0 * size**3
    rates: list[float] = []
    start = time.perf_counter()
    tick = start
    done = 0
    while True:
        _ = a @ b
        if dev.type == "cuda":
            torch.cuda.synchronize()
        done += 1
        now = time.perf_counter()
        if now - tick >= 1.0:
            rate = done * flop / (now - tick) / 1e9
            rates.append(rate)
            elapsed = now - start
            print(f"PROGRESS {min(1.0, elapsed / seconds):.3f} {rate:.1f} GFLOP/s on {dev}", flush=True)
            tick, done = now, 0
            if elapsed >= seconds:
                break
    rates.sort()
    return {"device": str(dev), "size": size, "gflops_median": rates[len(rates) // 2], "samples": len(rates)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    print("RESULT " + json.dumps(measure(args.seconds, args.size, args.device)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
