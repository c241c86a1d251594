"""Conversion benchmark: real-time factor and peak RSS for 10 s / 60 s / 600 s inputs.

Full-size networks with random weights: the v2 48k f0 synthesizer built from
``engines.rvc.models.configs.small_model_config("v2", "48k")`` (saved as an
upstream-style small model, fp16 weights) and a HuBERT-base-sized content
encoder (12 layers, 768 hidden, 512-channel conv front end). Each
conversion runs in a fresh subprocess so its peak RSS (VmHWM) is its
own; stage times come from the conversion report (decode, filter, split,
f0, hubert, retrieval, synth, post, write). Medians over ``--runs``.

    python bench/bench_convert.py [--seconds 10 60 600] [--runs 3] [--f0-method pm]

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchutil import peak_rss

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def make_assets(folder: Path) -> tuple[Path, Path]:
    import torch
    from tiny_hubert import make_tiny_hubert

    from engines.rvc.models.configs import small_model_config
    from engines.rvc.models.synthesizer import build_synthesizer

    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "bench_v2_48k.pth"
    if not model.is_file():
        torch.manual_seed(0)
        cfg = small_model_config("v2", "48k")
        net = build_synthesizer(cfg, "v2", True, with_posterior=False)
        weight = {k: v.detach().half() for k, v in net.state_dict().items() if not k.startswith("enc_q.")}
        torch.save({"weight": weight, "config": cfg, "info": "bench", "sr": "48k", "f0": 1, "version": "v2"}, model)
    hubert = folder / "hubert_base_random"
    if not (hubert / "model.safetensors").is_file():
        make_tiny_hubert(hubert, hidden=768, layers=12, conv_dim=512, heads=12, ffn=3072, final_dim=256)
    return model, hubert


def make_input(path: Path, seconds: float) -> Path:
    """Speech-like test signal: a gliding harmonic voice with syllable-rate gaps and breath noise."""
    import numpy as np
    import soundfile as sf

    if path.is_file():
        return path
    sr = 16000
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=1, subtype="PCM_16") as fh:
        rng = np.random.default_rng(0)
        phase = 0.0
        for start in range(0, int(seconds * sr), sr * 10):
            n = min(sr * 10, int(seconds * sr) - start)
            t = (start + np.arange(n)) / sr
            f0 = 140 + 40 * np.sin(2 * np.pi * 0.3 * t)
            ph = phase + 2 * np.pi * np.cumsum(f0) / sr
            phase = float(ph[-1])
            voice = sum(np.sin(k * ph) / k for k in range(1, 12))
            env = (np.sin(2 * np.pi * 2.5 * t) > -0.2).astype(np.float64)
            x = 0.2 * env * voice + 0.01 * rng.standard_normal(n)
            fh.write(x.astype(np.float32))
    return path


def child(ws_dir: str, model: str, hubert: str, audio: str, f0_method: str) -> None:
    from engines.core.settings import Workspace
    from engines.rvc.infer.convert import ConvertParams, convert_files

    ws = Workspace.open(ws_dir)
    params = ConvertParams(f0_method=f0_method, index_rate=0.0, seed=0)
    report = convert_files(ws, model, [audio], params, encoder_path=hubert)
    f = report.files[0]
    if not f.ok:
        raise SystemExit(f"conversion failed: {f.error}")
    print(json.dumps({
        "load_seconds": report.load_seconds,
        "seconds": f.seconds,
        "input_seconds": f.input_seconds,
        "times": f.times,
        "streamed": f.streamed,
        "peak_rss_bytes": peak_rss(),
        "cpu_seconds": resource.getrusage(resource.RUSAGE_SELF).ru_utime + resource.getrusage(resource.RUSAGE_SELF).ru_stime,
    }))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, nargs="+", default=[10, 60, 600])
    ap.add_argument("--runs", type=int, default=3, help="runs per length (600 s and longer: 1)")
    ap.add_argument("--f0-method", default="pm")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    import torch

    base = Path(args.workdir or tempfile.mkdtemp(prefix="bench_convert_"))
    model, hubert = make_assets(base / "assets")
    results = []
    for seconds in args.seconds:
        audio = make_input(base / f"in_{int(seconds)}s.wav", seconds)
        runs = []
        for _ in range(1 if seconds >= 600 else args.runs):
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, __file__, "--child", str(base / "ws"), str(model), str(hubert),
                                  str(audio), args.f0_method], capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(out.stderr[-3000:])
            r = json.loads(out.stdout.strip().splitlines()[-1])
            r["wall"] = time.perf_counter() - t0
            runs.append(r)
        med = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
        stages = sorted({k for r in runs for k in r["times"]})
        stage_med = {k: round(statistics.median(r["times"].get(k, 0.0) for r in runs), 3) for k in stages}
        results.append({
            "input_seconds": seconds,
            "runs": len(runs),
            "seconds_per_audio_second": round(med("seconds") / seconds, 3),
            "cpu_seconds_per_audio_second_incl_load": round(med("cpu_seconds") / seconds, 3),
            "hubert_per_audio_second": round(stage_med.get("hubert", 0.0) / seconds, 3),
            "synth_per_audio_second": round(stage_med.get("synth", 0.0) / seconds, 3),
            "f0_per_audio_second": round(stage_med.get("f0", 0.0) / seconds, 3),
            "stage_seconds_median": stage_med,
            "model_load_seconds_median": round(med("load_seconds"), 2),
            "peak_rss_mb_median": round(med("peak_rss_bytes") / 2**20, 1),
            "streamed": runs[0]["streamed"],
        })
    print(json.dumps({
        "bench": "convert", "model": "v2 48k f0 (full size, random weights)", "content_encoder": "HuBERT base size",
        "f0_method": args.f0_method, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
