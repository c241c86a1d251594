"""Training speed benchmark: seconds per RVC training step on this machine.

Each case builds the generator and the (always full-size) discriminator,
makes a batch of ``--batch`` items of ``--item-seconds`` of synthetic audio
with matching random content features and pitch, runs one warm-up step and
then ``--steps`` timed steps of the real training step
(``engines.rvc.train.gan.GANTrainer.step``: discriminator update, generator
update, mel/KL/feature-matching/adversarial losses). Reported: median wall
seconds per step and median CPU seconds per step (the machine may be
shared, so CPU time is the steadier figure), plus the parameter counts.

Cases:
  tiny       the tests' tiny generator (tests/tiny_rvc.py), 32k v2, upstream's segment (12800 samples)
  v2-40k     full-size v2 40k generator, segment 12800 samples
  v2-48k     full-size v2 48k generator, segment 17280 samples

``--upstream-loop`` also times each case the way upstream's loop runs the
same step (discriminator called on real and fake separately, per-tensor
AdamW, discriminator weight gradients computed in the generator pass), so
the speed-up of our loop is a ratio measured in one run.

    python bench/bench_train.py [--cases tiny v2-40k v2-48k] [--steps 3] [--batch 1] [--threads 2] [--upstream-loop]

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

CASES = {
    "tiny": ("v2", "32k", True),
    "v2-40k": ("v2", "40k", False),
    "v2-48k": ("v2", "48k", False),
}


def make_batch(cfg: dict, version: str, batch: int, item_seconds: float, seed: int = 0):
    import torch

    from engines.rvc.train.data import collate
    from engines.rvc.train.mel_processing import spectrogram_torch

    g = torch.Generator().manual_seed(seed)
    d = cfg["data"]
    hop, sr = d["hop_length"], d["sampling_rate"]
    frames = int(item_seconds * sr) // hop
    dim = 256 if version == "v1" else 768
    items = []
    for i in range(batch):
        n = frames - 7 * i  # slightly different lengths, like a real bucket
        t = torch.arange(n * hop) / sr
        f0 = 140.0 + 40.0 * torch.sin(2 * torch.pi * 0.5 * t)
        wave = 0.3 * torch.sin(2 * torch.pi * torch.cumsum(f0, 0) / sr) + 0.01 * torch.randn(n * hop, generator=g)
        spec = spectrogram_torch(wave[None], d["filter_length"], sr, hop, d["win_length"])[0][:, :n]
        phone = torch.randn(n, dim, generator=g)
        pitchf = f0[::hop][:n].clone()
        pitch = torch.clamp((pitchf / 4).long(), 1, 255)
        items.append((spec, wave[None], phone, pitch, pitchf, torch.tensor(0)))
    return collate(items)


def _as_upstream(trainer, cfg: dict) -> None:
    """Make ``trainer`` run a step like upstream's loop (see the module docstring)."""
    import contextlib

    import torch

    from engines.rvc.train import loop as train_mod

    trainer.net_d = trainer.net_d.inner  # separate real / fake passes
    tr = cfg["train"]
    for name, net in (("optim_g", trainer.net_g), ("optim_d", trainer.net_d)):
        setattr(trainer, name, torch.optim.AdamW(net.parameters(), tr["learning_rate"], betas=tuple(tr["betas"]),
                                                 eps=tr["eps"]))
    train_mod._frozen = lambda module: contextlib.nullcontext()  # D weight grads in the G pass


def run_case(name: str, steps: int, batch: int, item_seconds: float, upstream: bool = False) -> dict:
    import torch

    from engines.rvc.models.configs import small_model_config, train_config
    from engines.rvc.train import loop as train_mod
    from engines.rvc.train.gan import GANTrainer, build_networks

    version, sr, tiny = CASES[name]
    cfg = train_config(version, sr)
    if tiny:
        from tiny_rvc import tiny_config

        model_cfg = tiny_config(version, sr)
    else:
        model_cfg = small_model_config(version, sr)
    torch.manual_seed(0)
    net_g, net_d = build_networks(model_cfg, cfg, version, True)
    trainer = GANTrainer(net_g, net_d, cfg, f0=True, device=torch.device("cpu"))
    frozen = train_mod._frozen
    if upstream:
        _as_upstream(trainer, cfg)
    data = make_batch(cfg, version, batch, item_seconds)
    trainer.step(data)  # warm-up: allocator, oneDNN primitives
    wall, cpu = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        stats = trainer.step(data)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    train_mod._frozen = frozen
    return {
        "case": name,
        "loop": "upstream-style" if upstream else "voicelab",
        "version": version,
        "sr": sr,
        "segment_samples": cfg["train"]["segment_size"],
        "batch": batch,
        "item_seconds": item_seconds,
        "generator_params": sum(p.numel() for p in net_g.parameters()),
        "discriminator_params": sum(p.numel() for p in net_d.parameters()),
        "steps_timed": steps,
        "seconds_per_step": round(statistics.median(wall), 3),
        "cpu_seconds_per_step": round(statistics.median(cpu), 3),
        "wall_all": [round(w, 3) for w in wall],
        "last_loss_mel": round(stats.loss_mel, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--item-seconds", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--upstream-loop", action="store_true", help="also time upstream's way of running the step")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for name in args.cases:
        ours = run_case(name, args.steps, args.batch, args.item_seconds)
        results.append(ours)
        if args.upstream_loop:
            theirs = run_case(name, args.steps, args.batch, args.item_seconds, upstream=True)
            ours["upstream_loop_cpu_ratio"] = round(theirs["cpu_seconds_per_step"] / ours["cpu_seconds_per_step"], 2)
            results.append(theirs)
    print(json.dumps({
        "bench": "rvc_train_step",
        "device": "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
