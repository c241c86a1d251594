"""Tiny RVC models of the real architectures, for tests (import from other test files).

    from tiny_rvc import make_tiny_voice, make_tiny_generator_checkpoint, tiny_config  # tests/ is on sys.path
    path = make_tiny_voice(tmp_path / "voice.pth", version="v2", sr="40k", f0=True)

Channel counts are small (as in the golden data: inter 8, hidden 8, filter
16, 2 heads, 2 layers, upsample_initial_channel 64, 4 speakers, gin 8);
rates, kernels and dilations are the real ones, so hop lengths, output
lengths and state-dict keys are those of full-size models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engines.rvc.models.configs import small_model_config, train_config

TINY = {
    "inter_channels": 8,
    "hidden_channels": 8,
    "filter_channels": 16,
    "n_heads": 2,
    "n_layers": 2,
    "upsample_initial_channel": 64,
    "spk_embed_dim": 4,
    "gin_channels": 8,
}


def tiny_config(version: str = "v2", sr: str | int = "40k") -> list[Any]:
    """The 18-value small-model config of a tiny model for (version, sr)."""
    cfg = small_model_config(version, sr)
    cfg[2] = TINY["inter_channels"]
    cfg[3] = TINY["hidden_channels"]
    cfg[4] = TINY["filter_channels"]
    cfg[5] = TINY["n_heads"]
    cfg[6] = TINY["n_layers"]
    cfg[13] = TINY["upsample_initial_channel"]
    cfg[15] = TINY["spk_embed_dim"]
    cfg[16] = TINY["gin_channels"]
    return cfg


def tiny_train_config(version: str = "v2", sr: str | int = "40k") -> dict[str, Any]:
    """An experiment config.json for a tiny model (the upstream one with tiny channels)."""
    cfg = train_config(version, sr)
    for key in ("inter_channels", "hidden_channels", "filter_channels", "n_heads", "n_layers",
                "upsample_initial_channel", "spk_embed_dim", "gin_channels"):
        cfg["model"][key] = TINY[key]
    return cfg


def make_tiny_synthesizer(version: str = "v2", sr: str | int = "40k", f0: bool = True, seed: int = 0) -> Any:
    """A tiny Synthesizer (with enc_q) whose weights are all random, including the flow's.

    (Default init leaves the coupling layers as identities; random values
    make every part of the network matter in tests.)
    """
    import torch

    from engines.rvc.models.synthesizer import build_synthesizer

    gen = torch.Generator().manual_seed(int(seed))
    net = build_synthesizer(tiny_config(version, sr), version, f0)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("weight_g"):
                p.copy_(1.0 + 0.5 * torch.rand(p.shape, generator=gen))
            elif name.endswith("gamma"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                fan_in = max(1, p[0].numel()) if p.dim() > 1 else 16
                p.copy_(torch.randn(p.shape, generator=gen) * (0.5 / fan_in**0.5))
    return net


def make_tiny_voice(
    path: str | Path, version: str = "v2", sr: str | int = "40k", f0: bool = True, seed: int = 0, info: str = "1epoch"
) -> Path:
    """Write a small-model file (upstream format, fp16) with random tiny weights; returns its path."""
    from engines.rvc.checkpoints import save_small_model

    net = make_tiny_synthesizer(version, sr, f0, seed)
    return save_small_model(
        net.state_dict(),
        sr_tag=sr,
        f0=f0,
        version=version,
        info=info,
        config=tiny_config(version, sr),
        path=path,
    )


def make_tiny_generator_checkpoint(
    path: str | Path,
    version: str = "v2",
    sr: str | int = "40k",
    f0: bool = True,
    seed: int = 0,
    epoch: int = 3,
    with_config_json: bool = False,
) -> Path:
    """Write a G_<step>.pth-style training checkpoint ({"model", "iteration", "optimizer",
    "learning_rate"}, fp32, enc_q included); optionally the experiment config.json beside it."""
    import torch

    from engines.core.atomic import torch_save

    net = make_tiny_synthesizer(version, sr, f0, seed)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, betas=(0.8, 0.99), eps=1e-9)
    ckpt = {
        "model": net.state_dict(),
        "iteration": int(epoch),
        "optimizer": opt.state_dict(),
        "learning_rate": 1e-4,
    }
    out = torch_save(ckpt, Path(path))
    if with_config_json:
        (out.parent / "config.json").write_text(json.dumps(tiny_train_config(version, sr), indent=2), encoding="utf-8")
    return out
