"""Shared by the bench scripts (run as ``python bench/bench_x.py``, so this folder is on sys.path).

Random weights of the real sizes (what the benches measure with, since no
real weights may be fetched): the v2 48k f0 synthesizer as an upstream small
model (fp16), HuBERT base in the released ``hubert_base.pt`` layout (fairseq
checkpoint, fp16), and the full RMVPE; plus speech-like test audio.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))


def peak_rss() -> int:
    """This process's own peak RSS (VmHWM; ru_maxrss would include the parent's, carried across fork+exec)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (steadier than wall time on a shared machine)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def full_size_assets(folder: Path) -> dict[str, Path]:
    """Random-weight model files of the real sizes in ``folder`` (made once, reused)."""
    import torch
    from tiny_hubert import make_tiny_fairseq_hubert, make_tiny_rmvpe

    from engines.rvc.models.configs import small_model_config
    from engines.rvc.models.synthesizer import build_synthesizer

    folder.mkdir(parents=True, exist_ok=True)
    out = {"model": folder / "bench_v2_48k.pth", "hubert": folder / "hubert_base.pt", "rmvpe": folder / "rmvpe.pt"}
    if not out["model"].is_file():
        torch.manual_seed(0)
        cfg = small_model_config("v2", "48k")
        net = build_synthesizer(cfg, "v2", True, with_posterior=False)
        weight = {k: v.detach().half() for k, v in net.state_dict().items() if not k.startswith("enc_q.")}
        torch.save({"weight": weight, "config": cfg, "info": "bench", "sr": "48k", "f0": 1, "version": "v2"},
                   out["model"])
    if not out["hubert"].is_file():  # 12 layers, 768 wide, 512-channel conv front end, fp16 like the release
        make_tiny_fairseq_hubert(out["hubert"], hidden=768, layers=12, conv_dim=512, heads=12, ffn=3072,
                                 final_dim=256, half=True)
    if not out["rmvpe"].is_file():  # E2E(4, 1, (2, 2)): the released rmvpe.pt's shapes
        make_tiny_rmvpe(out["rmvpe"], width=16, stages=5, n_blocks=4, bottleneck=4)
    return out


def speechlike_input(path: Path, seconds: float, sr: int = 16000) -> Path:
    """A gliding harmonic voice with syllable-rate gaps and breath noise, written once (PCM16)."""
    import numpy as np
    import soundfile as sf

    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
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
            fh.write((0.2 * env * voice + 0.01 * rng.standard_normal(n)).astype(np.float32))
    return path


def random_index(path: Path, vectors: int, dim: int = 768) -> Path:
    """An upstream-sized IVF-Flat index of ``vectors`` random vectors (as ``rvc index`` would build it)."""
    import faiss
    import numpy as np

    from engines.rvc.index import ivf_size

    if path.is_file():
        return path
    x = np.random.default_rng(0).standard_normal((vectors, dim)).astype(np.float32)
    index = faiss.index_factory(dim, f"IVF{ivf_size(vectors)},Flat")
    faiss.extract_index_ivf(index).nprobe = 1
    index.train(x[: min(vectors, 200_000)])
    index.add(x)
    faiss.write_index(index, str(path))
    return path
