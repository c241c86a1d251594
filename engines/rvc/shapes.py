"""What a generator's tensor shapes say: RVC version, pitch guidance, and the 18-value config.

Used to read training checkpoints and pretrained files, which carry no
config of their own (and to check that a config found beside one fits it).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from engines.rvc.models.configs import (
    _UPSAMPLING,
    CONTENT_DIM,
    SMALL_MODEL_SEGMENT,
    SR_TAGS,
    parse_sr,
    parse_version,
    small_model_config,
)


def _weight_of(sd: Mapping[str, Any], prefix: str) -> Any:
    for suffix in ("weight_v", "weight"):
        if f"{prefix}.{suffix}" in sd:
            return sd[f"{prefix}.{suffix}"]
    raise KeyError(prefix)


def _count(sd: Mapping[str, Any], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := rx.match(k))})


def detect_version(sd: Mapping[str, Any]) -> str:
    dim = int(sd["enc_p.emb_phone.weight"].shape[1])
    for v, d in CONTENT_DIM.items():
        if d == dim:
            return v
    raise ValueError(f"content dimension {dim} is neither 256 (v1) nor 768 (v2)")


def detect_f0(sd: Mapping[str, Any]) -> bool:
    return "enc_p.emb_pitch.weight" in sd


def _rates_from_table(
    version: str, kernels: list[int], spec: int | None, noise_kernels: list[int] | None, sr_hint: str | None
) -> list[tuple[str, list[int]]]:
    found = []
    for (v, tag), (rates, ks) in _UPSAMPLING.items():
        if v != version or list(ks) != kernels:
            continue
        if sr_hint and tag != sr_hint:
            continue
        if spec is not None and small_model_config(v, tag)[0] != spec:
            continue
        if noise_kernels is not None:
            expect = []
            for i in range(len(rates) - 1):
                prod = 1
                for r in rates[i + 1 :]:
                    prod *= r
                expect.append(2 * prod)
            if expect != noise_kernels[: len(expect)]:
                continue
        found.append((tag, list(rates)))
    return found


def config_from_state_dict(
    sd: Mapping[str, Any], version: str | None = None, sr: str | int | None = None
) -> tuple[list[Any], str]:
    """Reconstruct the 18-value config (and the sr tag) of a generator from its tensor shapes.

    Channel counts come from the shapes; upsample rates and the sample rate
    from upstream's table (matched on version, upsample kernels, spectrogram
    size and NSF source kernels). Dilations cannot be seen in shapes: the
    standard ones are assumed.
    """
    v = parse_version(version) if version else detect_version(sd)
    sr_hint = parse_sr(sr)[0] if sr is not None else None
    n_ups = _count(sd, r"dec\.ups\.(\d+)\.")
    kernels = [int(_weight_of(sd, f"dec.ups.{i}").shape[2]) for i in range(n_ups)]
    spec = int(sd["enc_q.pre.weight"].shape[1]) if "enc_q.pre.weight" in sd else None
    noise_kernels = (
        [int(sd[f"dec.noise_convs.{i}.weight"].shape[2]) for i in range(n_ups)]
        if "dec.noise_convs.0.weight" in sd
        else None
    )
    matches = _rates_from_table(v, kernels, spec, noise_kernels, sr_hint)
    if not matches and sr_hint:
        raise ValueError(f"the decoder does not fit {v} at {sr_hint}")
    if not matches:
        raise ValueError(f"unknown decoder layout for {v} (upsample kernels {kernels})")
    if len({tag for tag, _ in matches}) > 1:
        raise ValueError("the sample rate cannot be told from the weights; give it (or keep config.json beside the file)")
    tag, rates = matches[0]
    hidden = int(sd["enc_p.emb_phone.weight"].shape[0])
    head_dim = int(sd["enc_p.encoder.attn_layers.0.emb_rel_k"].shape[2])
    n_res = _count(sd, r"dec\.resblocks\.(\d+)\.")
    n_kernels = n_res // n_ups
    kind = "1" if any(k.startswith("dec.resblocks.0.convs1.") for k in sd) else "2"
    first = "convs1" if kind == "1" else "convs"
    res_kernels = [int(_weight_of(sd, f"dec.resblocks.{j}.{first}.0").shape[2]) for j in range(n_kernels)]
    n_dil = _count(sd, rf"dec\.resblocks\.0\.{first}\.(\d+)\.")
    dilations = [[1, 3, 5][:n_dil] if kind == "1" else [1, 3][:n_dil] for _ in range(n_kernels)]
    config = [
        spec if spec is not None else small_model_config(v, tag)[0],
        SMALL_MODEL_SEGMENT,
        int(sd["enc_p.proj.weight"].shape[0]) // 2,
        hidden,
        int(sd["enc_p.encoder.ffn_layers.0.conv_1.weight"].shape[0]),
        hidden // head_dim,
        _count(sd, r"enc_p\.encoder\.attn_layers\.(\d+)\."),
        int(sd["enc_p.encoder.ffn_layers.0.conv_1.weight"].shape[2]),
        0,
        kind,
        res_kernels,
        dilations,
        rates,
        int(sd["dec.conv_pre.weight"].shape[0]),
        kernels,
        int(sd["emb_g.weight"].shape[0]),
        int(sd["emb_g.weight"].shape[1]),
        SR_TAGS[tag],
    ]
    return config, tag


def config_fits(config: list[Any], sd: Mapping[str, Any]) -> bool:
    """True when an 18-value config (e.g. from a config.json beside a checkpoint) builds these tensors."""
    try:
        n_ups = _count(sd, r"dec\.ups\.(\d+)\.")
        kernels = [int(_weight_of(sd, f"dec.ups.{i}").shape[2]) for i in range(n_ups)]
        return (
            list(config[14]) == kernels
            and int(config[3]) == int(sd["enc_p.emb_phone.weight"].shape[0])
            and int(config[13]) == int(sd["dec.conv_pre.weight"].shape[0])
        )
    except (KeyError, IndexError, TypeError, ValueError):
        return False


def discriminator_version(sd: Mapping[str, Any]) -> str | None:
    """The RVC version of a discriminator state dict: the scale discriminator plus one per period."""
    from engines.rvc.models.discriminator import PERIODS

    count = _count(sd, r"discriminators\.(\d+)\.")
    for version, periods in PERIODS.items():
        if count == len(periods) + 1:
            return version
    return None
