"""Index build benchmark: time and peak RSS for 100k and 1M feature frames (768-d, v2).

Features are generated on disk in chunks (one .npy per ~3.7 s clip, 185
frames each, like real extraction output) so generating them never holds
the whole set. Each build runs in a fresh subprocess whose peak RSS
(VmHWM) is reported next to the size of the vectors the build keeps.

    python bench/bench_index.py [--frames 100000 1000000] [--runs 1] [--workdir DIR]

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchutil import peak_rss

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FRAMES_PER_FILE = 185


def make_features(folder: Path, frames: int, dim: int = 768, seed: int = 0) -> None:
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((64, dim)).astype(np.float32)  # speech-like: clustered, not uniform
    written, i = 0, 0
    while written < frames:
        n = min(FRAMES_PER_FILE, frames - written)
        x = centres[rng.integers(0, 64)] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
        np.save(folder / f"{i:07d}.npy", x.astype(np.float32))
        written += n
        i += 1


def child(workspace: str, exp: str, max_train: int) -> None:
    from engines.core.settings import Workspace
    from engines.rvc.index import IndexParams, build_index

    ws = Workspace.open(workspace)
    t0 = time.perf_counter()
    res = build_index(ws, exp, IndexParams(version="v2", max_train_frames=max_train))
    wall = time.perf_counter() - t0
    rss = peak_rss()
    print(json.dumps({"seconds": wall, "peak_rss_bytes": rss, "frames": res.frames, "kept": res.kept_vectors,
                      "n_ivf": res.n_ivf, "file_size": res.file_size, "reduced": res.reduced}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--max-train-frames", type=int, default=200_000)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    base = Path(args.workdir or tempfile.mkdtemp(prefix="bench_index_"))
    results = []
    for frames in args.frames:
        ws_dir = base / f"ws_{frames}"
        exp = f"bench{frames}"
        fdir = ws_dir / "experiments" / exp / "3_feature768"
        t0 = time.perf_counter()
        if not fdir.is_dir():
            make_features(fdir, frames)
        gen_s = time.perf_counter() - t0
        runs = []
        for _ in range(args.runs):
            out = subprocess.run([sys.executable, __file__, "--child", str(ws_dir), exp, str(args.max_train_frames)],
                                 capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        kept = runs[0]["kept"]
        kept_bytes = kept * 768 * 4
        sample_bytes = min(frames, args.max_train_frames) * 768 * 4 if runs[0]["reduced"] else kept_bytes
        results.append({
            "frames": frames,
            "feature_bytes_on_disk": frames * 768 * 4,
            "generate_seconds": round(gen_s, 1),
            "build_seconds_median": round(statistics.median(r["seconds"] for r in runs), 2),
            "peak_rss_mb_median": round(statistics.median(r["peak_rss_bytes"] for r in runs) / 2**20, 1),
            "kept_vectors": kept,
            "vectors_held_mb": round(sample_bytes / 2**20, 1),
            "rss_over_vectors_held": round(statistics.median(r["peak_rss_bytes"] for r in runs) / sample_bytes, 2),
            "n_ivf": runs[0]["n_ivf"],
            "reduced": runs[0]["reduced"],
            "index_file_mb": round(runs[0]["file_size"] / 2**20, 1),
            "runs": len(runs),
        })
    print(json.dumps({"bench": "index_build", "dim": 768, "cpu_count": os.cpu_count(), "results": results}, indent=2))
    if not args.workdir:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
