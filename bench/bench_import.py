"""Model import benchmark: a zip with one full-size v2 40k voice and its index, imported into a fresh workspace.

The voice has the real v2 40k architecture (random weights, fp16, ~55 MB); the
index is upstream's IVF Flat over N random 768-d vectors. Each import runs in a
fresh subprocess with torch already imported, as in a running studio (peak RSS
= its VmHWM), and is compared with the floor of
copying the same bytes once (unpacking + hashing + copying into place cannot be
faster than that).

    python bench/bench_import.py [--vectors 50000] [--runs 3] [--workdir DIR]

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
import zipfile
from pathlib import Path

from benchutil import peak_rss

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_zip(base: Path, vectors: int) -> Path:
    import faiss
    import numpy as np
    import torch

    from engines.rvc.checkpoints import save_small_model
    from engines.rvc.index import ivf_size
    from engines.rvc.models.configs import small_model_config
    from engines.rvc.models.synthesizer import build_synthesizer

    cfg = small_model_config("v2", "40k")
    torch.manual_seed(0)
    net = build_synthesizer(cfg, "v2", True)
    voice = save_small_model(net.state_dict(), sr_tag="40k", f0=True, version="v2", info="bench", config=cfg,
                             path=base / "src" / "bench.pth")
    x = np.random.default_rng(0).standard_normal((vectors, 768)).astype(np.float32)
    n_ivf = ivf_size(vectors)
    index = faiss.index_factory(768, f"IVF{n_ivf},Flat")
    index.train(x[: min(vectors, 20000)])
    index.add(x)
    idx_path = base / "src" / f"added_IVF{n_ivf}_Flat_nprobe_1_bench_v2.index"
    faiss.write_index(index, str(idx_path))
    zpath = base / "bench.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_STORED) as zf:  # weights barely compress; people zip them stored
        zf.write(voice, "bench/bench.pth")
        zf.write(idx_path, f"bench/{idx_path.name}")
    return zpath


def child(zip_path: str, workspace: str) -> None:
    import torch  # noqa: F401 - loaded before timing, as in a running studio (its import alone takes seconds)

    from engines.core.settings import Workspace
    from engines.rvc.model_import import import_models

    ws = Workspace.open(workspace)
    t0 = time.perf_counter()
    res = import_models(ws, zip_path)
    wall = time.perf_counter() - t0
    print(json.dumps({"seconds": wall, "peak_rss_bytes": peak_rss(), "voices": len(res["voices"]),
                      "indexes": len(res["indexes"])}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vectors", type=int, default=50_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    base = Path(args.workdir or tempfile.mkdtemp(prefix="bench_import_"))
    zpath = make_zip(base, args.vectors)
    imports, copies = [], []
    for i in range(args.runs):
        ws_dir = base / f"ws{i}"
        out = subprocess.run([sys.executable, __file__, "--child", str(zpath), str(ws_dir)],
                             capture_output=True, text=True, check=True)
        imports.append(json.loads(out.stdout.strip().splitlines()[-1]))
        t0 = time.perf_counter()
        shutil.copyfile(zpath, base / f"copy{i}.zip")
        copies.append(time.perf_counter() - t0)
        shutil.rmtree(ws_dir, ignore_errors=True)
        (base / f"copy{i}.zip").unlink()
    seconds = statistics.median(r["seconds"] for r in imports)
    copy = statistics.median(copies)
    print(json.dumps({
        "bench": "model_import", "cpu_count": os.cpu_count(), "vectors": args.vectors,
        "zip_mb": round(zpath.stat().st_size / 2**20, 1), "runs": args.runs,
        "import_seconds_median": round(seconds, 2), "copy_seconds_median": round(copy, 3),
        "import_over_copy": round(seconds / copy, 1) if copy else None,
        "peak_rss_mb_median": round(statistics.median(r["peak_rss_bytes"] for r in imports) / 2**20, 1),
        "installed": {"voices": imports[0]["voices"], "indexes": imports[0]["indexes"]},
    }, indent=2))
    if not args.workdir:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
