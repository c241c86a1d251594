"""RVC training / model configurations as plain data (no torch).

Users bring models trained by upstream RVC, so the numbers here must be the
upstream ones: the experiment ``config.json`` that upstream writes for each
version (v1/v2) and sample rate (32k/40k/48k), and the 18-value ``config``
list stored in small inference models. Everything is derived from a few
tables so the differences between variants are visible at a glance.
"""

from __future__ import annotations

import copy
from typing import Any

SR_TAGS: dict[str, int] = {"32k": 32000, "40k": 40000, "48k": 48000}
VERSIONS: tuple[str, ...] = ("v1", "v2")

# Signal framing per sample rate: (n_fft = window, hop, mel bins).
_FRAMING: dict[str, tuple[int, int, int]] = {
    "32k": (1024, 320, 80),
    "40k": (2048, 400, 125),
    "48k": (2048, 480, 128),
}

# Decoder upsampling (rates, kernel sizes) per (version, sr). The product of
# the rates always equals the hop length: one content frame -> one hop.
_UPSAMPLING: dict[tuple[str, str], tuple[list[int], list[int]]] = {
    ("v1", "32k"): ([10, 4, 2, 2, 2], [16, 16, 4, 4, 4]),
    ("v1", "40k"): ([10, 10, 2, 2], [16, 16, 4, 4]),
    ("v1", "48k"): ([10, 6, 2, 2, 2], [16, 16, 4, 4, 4]),
    ("v2", "32k"): ([10, 8, 2, 2], [20, 16, 4, 4]),
    ("v2", "40k"): ([10, 10, 2, 2], [16, 16, 4, 4]),
    ("v2", "48k"): ([12, 10, 2, 2], [24, 20, 4, 4]),
}

# Training slice length in samples; only 48k differs between versions.
_SEGMENT: dict[tuple[str, str], int] = {
    ("v1", "48k"): 11520,
    ("v2", "48k"): 17280,
}
_DEFAULT_SEGMENT = 12800

CONTENT_DIM: dict[str, int] = {"v1": 256, "v2": 768}

# The 18 fields of a small model's ``config`` list, in order.
SMALL_CONFIG_FIELDS: tuple[str, ...] = (
    "spec_channels",
    "segment_size",
    "inter_channels",
    "hidden_channels",
    "filter_channels",
    "n_heads",
    "n_layers",
    "kernel_size",
    "p_dropout",
    "resblock",
    "resblock_kernel_sizes",
    "resblock_dilation_sizes",
    "upsample_rates",
    "upsample_initial_channel",
    "upsample_kernel_sizes",
    "spk_embed_dim",
    "gin_channels",
    "sr",
)


def parse_sr(sr: str | int) -> tuple[str, int]:
    """Normalise a sample rate given as "40k", "40000", 40000 or 40 to ("40k", 40000)."""
    text = str(sr).strip().lower()
    if text in SR_TAGS:
        return text, SR_TAGS[text]
    try:
        value = int(float(text.rstrip("k")) * (1000 if text.endswith("k") else 1))
    except ValueError:
        value = -1
    if 0 < value < 1000:
        value *= 1000
    for tag, hz in SR_TAGS.items():
        if hz == value:
            return tag, hz
    raise ValueError(f"unsupported RVC sample rate {sr!r}; expected one of {', '.join(SR_TAGS)}")


def parse_version(version: str | None) -> str:
    """Normalise "v1"/"v2" (None means v1, as upstream treats files without a version)."""
    v = (version or "v1").strip().lower()
    if v not in VERSIONS:
        raise ValueError(f"unsupported RVC version {version!r}; expected v1 or v2")
    return v


def train_config(version: str, sr: str | int, *, fp16_run: bool | None = None) -> dict[str, Any]:
    """The experiment config.json upstream writes for (version, sr).

    Returns a fresh dict (callers may edit it). ``fp16_run`` is not part of
    current upstream configs (mixed precision is chosen from the device); pass
    it to add the legacy key for tools that still read it.
    """
    v = parse_version(version)
    tag, hz = parse_sr(sr)
    n_fft, hop, n_mels = _FRAMING[tag]
    rates, kernels = _UPSAMPLING[(v, tag)]
    train: dict[str, Any] = {
        "log_interval": 200,
        "seed": 1234,
        "epochs": 20000,
        "learning_rate": 1e-4,
        "betas": [0.8, 0.99],
        "eps": 1e-9,
        "batch_size": 4,
        "lr_decay": 0.999875,
        "segment_size": _SEGMENT.get((v, tag), _DEFAULT_SEGMENT),
        "init_lr_ratio": 1,
        "warmup_epochs": 0,
        "c_mel": 45,
        "c_kl": 1.0,
    }
    if fp16_run is not None:
        train["fp16_run"] = bool(fp16_run)
    data = {
        "max_wav_value": 32768.0,
        "sampling_rate": hz,
        "filter_length": n_fft,
        "hop_length": hop,
        "win_length": n_fft,
        "n_mel_channels": n_mels,
        "mel_fmin": 0.0,
        "mel_fmax": None,
    }
    model = {
        "inter_channels": 192,
        "hidden_channels": 192,
        "filter_channels": 768,
        "n_heads": 2,
        "n_layers": 6,
        "kernel_size": 3,
        "p_dropout": 0,
        "resblock": "1",
        "resblock_kernel_sizes": [3, 7, 11],
        "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
        "upsample_rates": list(rates),
        "upsample_initial_channel": 512,
        "upsample_kernel_sizes": list(kernels),
        "use_spectral_norm": False,
        "gin_channels": 256,
        "spk_embed_dim": 109,
    }
    return {"train": train, "data": data, "model": model}


SMALL_MODEL_SEGMENT = 32


def segment_frames(cfg: dict[str, Any]) -> int:
    """Training slice length in content frames (segment samples / hop)."""
    return int(cfg["train"]["segment_size"]) // int(cfg["data"]["hop_length"])


def small_model_config_from_train(cfg: dict[str, Any]) -> list[Any]:
    """The 18-value small-model list from a train config dict (e.g. a config.json).

    spec_channels = n_fft/2 + 1. The second value is always 32 in upstream
    files (it is unused at inference); the training generator instead uses
    ``segment_frames(cfg)`` = segment_size / hop.
    """
    data, train, model = cfg["data"], cfg["train"], cfg["model"]
    return [
        data["filter_length"] // 2 + 1,
        SMALL_MODEL_SEGMENT,
        model["inter_channels"],
        model["hidden_channels"],
        model["filter_channels"],
        model["n_heads"],
        model["n_layers"],
        model["kernel_size"],
        model["p_dropout"],
        model["resblock"],
        copy.deepcopy(model["resblock_kernel_sizes"]),
        copy.deepcopy(model["resblock_dilation_sizes"]),
        copy.deepcopy(model["upsample_rates"]),
        model["upsample_initial_channel"],
        copy.deepcopy(model["upsample_kernel_sizes"]),
        model["spk_embed_dim"],
        model["gin_channels"],
        data["sampling_rate"],
    ]


def small_model_config(version: str, sr: str | int) -> list[Any]:
    """The 18-value ``config`` list upstream stores in a small model for (version, sr)."""
    return small_model_config_from_train(train_config(version, sr))


def config_as_dict(config: list[Any]) -> dict[str, Any]:
    """Name the 18 values of a small-model config list."""
    if len(config) != len(SMALL_CONFIG_FIELDS):
        raise ValueError(f"an RVC model config has {len(SMALL_CONFIG_FIELDS)} values, got {len(config)}")
    return dict(zip(SMALL_CONFIG_FIELDS, config))


def hop_length(config: list[Any]) -> int:
    """Output samples per content frame (product of the decoder upsample rates)."""
    hop = 1
    for r in config_as_dict(config)["upsample_rates"]:
        hop *= int(r)
    return hop


def sr_from_upsample_rates(rates: list[int]) -> tuple[str, int] | None:
    """Recover the sample-rate tag from a decoder's upsample rates (None if unknown)."""
    rates = [int(r) for r in rates]
    for (_, tag), (known, _) in _UPSAMPLING.items():
        if known == rates:
            return tag, SR_TAGS[tag]
    hop = 1
    for r in rates:
        hop *= r
    for tag, (_, known_hop, _) in _FRAMING.items():
        if known_hop == hop:
            return tag, SR_TAGS[tag]
    return None
