"""Conversion benchmark: peak RSS, CPU and wall time per audio second for 10 s / 60 s / 600 s inputs.

Real sizes with random weights (bench/benchutil.py): the v2 48k f0
synthesizer as an upstream small model (fp16), HuBERT base in the released
hubert_base.pt layout (fairseq, fp16), optionally an IVF-Flat index. Every
conversion runs in a fresh process through ``convert_files`` (the studio's
path: load, convert, write), so its peak RSS (VmHWM) covers load and
warm-up; stage times come from the conversion report. Reported per length:
median, min, max and spread of ``--runs`` runs.

``--before DIR`` also runs every conversion with the engines of another
checkout (e.g. ``git worktree add /tmp/before main``), interleaved with
this one's in the same run, and reports the ratios: before/after on the
same machine under the same load.

    python bench/bench_convert.py [--seconds 10 60 600] [--runs 3] [--f0-method pm]
                                  [--index-vectors 0] [--before DIR] [--before-runs N]

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchutil import ROOT, cpu_seconds, full_size_assets, peak_rss, random_index, speechlike_input


def child(code: str, ws_dir: str, model: str, hubert: str, rmvpe: str, index: str, audio: str, f0_method: str) -> None:
    """One conversion with the engines found in ``code`` (this checkout or --before's)."""
    sys.path.insert(0, code)
    try:
        from engines.core import cpu_memory
    except ImportError:  # an older checkout: its own allocator settings
        pass
    else:
        cpu_memory.configure()
    from engines.core.settings import Workspace
    from engines.rvc.infer.convert import ConvertParams, convert_files

    ws = Workspace.open(ws_dir, overrides={"rmvpe_path": rmvpe, "device": "cpu"})
    params = ConvertParams(f0_method=f0_method, index_rate=0.75 if index else 0.0, seed=0)
    report = convert_files(ws, model, [audio], params, index_path=index or None, encoder_path=hubert,
                           out_dir=str(Path(ws_dir) / "outputs"))
    f = report.files[0]
    if not f.ok:
        raise SystemExit(f"conversion failed: {f.error}")
    print(json.dumps({"load_seconds": report.load_seconds, "seconds": f.seconds, "input_seconds": f.input_seconds,
                      "times": f.times, "streamed": f.streamed, "peak_rss_bytes": peak_rss(),
                      "cpu_seconds": cpu_seconds()}))


def run_one(code: Path, base: Path, assets: dict[str, Path], index: str, audio: Path, f0_method: str) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--child", str(code), str(base / "ws"), str(assets["model"]),
                          str(assets["hubert"]), str(assets["rmvpe"]), index, str(audio), f0_method],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["wall"] = time.perf_counter() - t0
    return r


def summarise(runs: list[dict], seconds: float) -> dict:
    def stats(values: list[float], scale: float = 1.0, digits: int = 3) -> dict:
        v = [x / scale for x in values]
        return {"median": round(statistics.median(v), digits), "min": round(min(v), digits),
                "max": round(max(v), digits), "spread": round(max(v) - min(v), digits)}

    stages = sorted({k for r in runs for k in r["times"]})
    return {
        "input_seconds": seconds,
        "runs": len(runs),
        "peak_rss_mb": stats([r["peak_rss_bytes"] for r in runs], 2**20, 1),
        "cpu_seconds_per_audio_second": stats([r["cpu_seconds"] for r in runs], seconds),
        "wall_seconds_per_audio_second": stats([r["seconds"] for r in runs], seconds),
        "model_load_seconds_median": round(statistics.median(r["load_seconds"] for r in runs), 2),
        "stage_seconds_median": {k: round(statistics.median(r["times"].get(k, 0.0) for r in runs), 3) for k in stages},
        "streamed": runs[0]["streamed"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, nargs="+", default=[10, 60, 600])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--f0-method", default="pm")
    ap.add_argument("--index-vectors", type=int, default=0, help="also retrieve from a random index this large")
    ap.add_argument("--before", default=None, help="a checkout whose engines run the same conversions (interleaved)")
    ap.add_argument("--before-runs", type=int, default=None, help="runs per length for --before (default --runs)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--child", nargs=8, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    import torch

    base = Path(args.workdir or tempfile.mkdtemp(prefix="bench_convert_"))
    assets = full_size_assets(base / "assets")
    index = str(random_index(base / "assets" / f"random_{args.index_vectors}.index", args.index_vectors)) \
        if args.index_vectors else ""
    codes = {"after": ROOT}
    if args.before:
        codes["before"] = Path(args.before).resolve()
    wanted = {"after": args.runs, "before": args.before_runs or args.runs}
    runs: dict[str, dict[float, list[dict]]] = {name: {s: [] for s in args.seconds} for name in codes}
    for i in range(max(wanted[name] for name in codes)):
        for seconds in args.seconds:
            audio = speechlike_input(base / f"in_{int(seconds)}s.wav", seconds)
            for name, code in codes.items():
                if i < wanted[name]:
                    runs[name][seconds].append(run_one(code, base, assets, index, audio, args.f0_method))
    results = {name: [summarise(runs[name][s], s) for s in args.seconds] for name in codes}
    doc = {
        "bench": "convert", "model": "v2 48k f0 (full size, random weights, fp16 file)",
        "content_encoder": "HuBERT base (fairseq hubert_base.pt layout, fp16, random weights)",
        "index_vectors": args.index_vectors, "f0_method": args.f0_method, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(), "results": results["after"],
    }
    if "before" in results:
        doc["before"] = {"code": str(codes["before"]), "results": results["before"]}
        doc["before_over_after"] = [
            {"input_seconds": a["input_seconds"],
             "peak_rss": round(b["peak_rss_mb"]["median"] / a["peak_rss_mb"]["median"], 2),
             "cpu_time": round(b["cpu_seconds_per_audio_second"]["median"] / a["cpu_seconds_per_audio_second"]["median"], 2),
             "wall_time": round(b["wall_seconds_per_audio_second"]["median"] / a["wall_seconds_per_audio_second"]["median"], 2)}
            for a, b in zip(results["after"], results["before"])]
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
