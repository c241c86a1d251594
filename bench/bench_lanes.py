"""Listening while training: latency (submit -> audio ready) of a 10 s conversion on the warm listening
worker, alone and while a training runs in the training lane; the training's seconds per step with
and without conversions beside it; peak memory of each worker (GPU too on CUDA).

Everything goes through the studio's own job runner (worker processes, lanes), as the page does.
The voice is full size with random weights (v2 48k f0 + a HuBERT-base-sized encoder, as in
bench_convert.py); the training is a tiny generator of the real architecture with upstream's
full-size discriminator (``--train-size real`` trains the full-size generator), on a synthetic
speech-like dataset. With ``--device cuda`` both run on the same GPU: this is the GPU check of the
lanes (tiny training on CUDA with a concurrent conversion, timings and peak GPU memory).

    python bench/bench_lanes.py [--device auto|cpu|cuda] [--requests 5] [--clip-seconds 10]

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench_convert import make_assets, make_input  # noqa: E402


def _submit_and_wait(runner, op: str, params: dict, timeout: float = 1800) -> tuple[float, object]:
    t0 = time.monotonic()
    rec = runner.wait(runner.submit(op, params), timeout)
    latency = time.monotonic() - t0
    if rec.state != "done":
        raise SystemExit(f"{op} {rec.state}: {rec.error}\n{runner.read_log(rec.id)[-3000:]}")
    return latency, rec


def _listen(runner, n: int, convert: dict) -> list[tuple[float, object]]:
    return [_submit_and_wait(runner, "rvc.convert", {**convert, "seed": i}) for i in range(n)]


def _steps(metrics: Path) -> list[dict]:
    if not metrics.is_file():
        return []
    rows = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
    return [r for r in rows if r.get("kind") == "step"]


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda (training and listening on it)")
    ap.add_argument("--requests", type=int, default=5, help="conversions per phase (the first of all is cold)")
    ap.add_argument("--clip-seconds", type=float, default=10.0)
    ap.add_argument("--train-size", choices=("tiny", "real"), default="tiny")
    ap.add_argument("--f0-method", default="pm")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()

    from tiny_hubert import make_tiny_hubert
    from tiny_rvc import tiny_config

    from engines.core.jobs import JobRunner
    from engines.core.settings import Workspace

    base = Path(args.workdir or tempfile.mkdtemp(prefix="bench_lanes_"))
    model, hubert = make_assets(base / "assets")
    clip = make_input(base / f"clip_{int(args.clip_seconds)}s.wav", args.clip_seconds)
    data = base / "dataset"
    data.mkdir(exist_ok=True)
    make_input(data / "speech.wav", 40.0)
    train_hubert = make_tiny_hubert(base / "assets" / "tiny_hubert") if args.train_size == "tiny" else hubert
    shutil.rmtree(base / "ws", ignore_errors=True)  # a studio of its own: no job of an earlier run
    ws = Workspace.open(base / "ws", overrides={"device": args.device})
    runner = JobRunner(ws)
    convert = {"model": str(model), "inputs": [str(clip)], "index": "none", "f0_method": args.f0_method,
               "hubert": str(hubert), "out_dir": str(base / "out")}
    try:
        idle = _listen(runner, args.requests, convert)  # the first starts the listening worker (cold)
        train = {"exp_name": "bench", "dataset": str(data), "sr": "40k", "version": "v2", "f0": True,
                 "f0_method": "pm", "total_epoch": 10000, "batch_size": 4, "save_every_epoch": 1000,
                 "hubert_path": str(train_hubert), "loader_workers": 0, "log_interval": 1, "previews": False,
                 "n_processes": 1}
        if args.train_size == "tiny":
            train.update(model_config=tiny_config("v2", "40k"), segment_size=4000)
        job = runner.submit("rvc.train", train)
        deadline = time.monotonic() + 1800
        metrics = ws.experiment_dir("bench") / "metrics.jsonl"
        while len(_steps(metrics)) < 3:  # the loop runs (past its first, slower steps)
            rec = runner.get(job)
            if rec.state not in ("queued", "running") or time.monotonic() > deadline:
                raise SystemExit(f"training {rec.state}: {rec.error}\n{runner.read_log(job)[-3000:]}")
            time.sleep(0.2)
        before = len(_steps(metrics))
        busy_from = time.time()
        during = _listen(runner, args.requests, convert)
        busy_to = time.time()
        time.sleep(max(5.0, 3 * (busy_to - busy_from) / max(1, len(_steps(metrics)) - before)))
        t0 = time.monotonic()
        runner.cancel(job)
        train_rec = runner.wait(job, 30)
        cancel_seconds = time.monotonic() - t0
    finally:
        runner.close()
    steps = _steps(metrics)[3:]
    alone = [r["seconds_per_step"] for r in steps if not busy_from <= r["time"] <= busy_to + 1]
    beside = [r["seconds_per_step"] for r in steps if busy_from <= r["time"] <= busy_to]
    warm_idle = [lat for lat, _ in idle[1:]]
    warm_busy = [lat for lat, _ in during]
    listen_rec = during[-1][1]
    result = {
        "bench": "lanes",
        "device": args.device,
        "voice": "v2 48k f0 (full size, random weights) + HuBERT-base-sized encoder",
        "training": f"{args.train_size} generator v2 40k, full-size discriminator, batch 4",
        "clip_seconds": args.clip_seconds,
        "f0_method": args.f0_method,
        "requests_per_phase": args.requests,
        "cold_latency_s": round(idle[0][0], 3),
        "warm_latency_s_median_idle": _median(warm_idle),
        "warm_latency_s_median_while_training": _median(warm_busy),
        "latency_ratio_training_vs_idle": (round(_median(warm_busy) / _median(warm_idle), 3)
                                           if warm_idle and warm_busy else None),
        "conversion_seconds_median_while_training": _median([r.result["report"]["seconds"] for _, r in during]),
        "train_seconds_per_step_median_alone": _median(alone),
        "train_seconds_per_step_median_beside_conversions": _median(beside),
        "train_steps_measured": [len(alone), len(beside)],
        "listening_worker": listen_rec.worker,
        "training_worker": train_rec.worker,
        "training_cancel_seconds": round(cancel_seconds, 3),
        "training_state": train_rec.state,
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
