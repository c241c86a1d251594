"""The RVC synthesizer (VITS-style generator) for v1/v2, with or without f0.

One class covers upstream's four generator classes
(SynthesizerTrnMs{256,768}NSFsid[_nono]): ``content_dim`` (256 for v1,
768 for v2) and ``use_f0`` select the variant. Submodule names (enc_p,
dec, flow, enc_q, emb_g) and parameters match upstream so its state dicts
load unchanged, and ``forward`` / ``infer`` keep upstream's call
signatures (f0 models take pitch/pitchf, no-f0 models do not).

All random draws go through :mod:`engines.rvc.models.noise`.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from engines.rvc.models import noise
from engines.rvc.models.attention import TextEncoder
from engines.rvc.models.commons import (
    PosteriorEncoder,
    ResidualCouplingFlow,
    as_int,
    fold_weight_norm,
    rand_slice_segments,
    slice_segments,
)
from engines.rvc.models.configs import (
    CONTENT_DIM,
    SMALL_CONFIG_FIELDS,
    parse_sr,
    parse_version,
)
from engines.rvc.models.nsf import HiFiGANGenerator, NSFGenerator

PRIOR_NOISE_SCALE = 0.66666  # upstream's temperature for the prior sample at inference
FLOW_CONTEXT = 24  # frames of left context the flow keeps when skip_head is used


class Synthesizer(nn.Module):
    """Content features (+ pitch) and a speaker id -> waveform."""

    def __init__(
        self,
        spec_channels: int,
        segment_size: int,
        inter_channels: int,
        hidden_channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int,
        p_dropout: float,
        resblock: str,
        resblock_kernel_sizes: Sequence[int],
        resblock_dilation_sizes: Sequence[Sequence[int]],
        upsample_rates: Sequence[int],
        upsample_initial_channel: int,
        upsample_kernel_sizes: Sequence[int],
        spk_embed_dim: int,
        gin_channels: int,
        sr: int | str,
        *,
        content_dim: int = 768,
        use_f0: bool = True,
        with_posterior: bool = True,
        **_ignored: Any,
    ) -> None:
        super().__init__()
        if isinstance(sr, str) or int(sr) < 1000:
            sr = parse_sr(sr)[1]
        self.sample_rate = int(sr)
        self.content_dim = int(content_dim)
        self.use_f0 = bool(use_f0)
        self.segment_size = int(segment_size)
        self.spk_embed_dim = int(spk_embed_dim)
        self.gin_channels = int(gin_channels)
        self.inter_channels = int(inter_channels)
        self.enc_p = TextEncoder(
            self.content_dim,
            inter_channels,
            hidden_channels,
            filter_channels,
            n_heads,
            n_layers,
            kernel_size,
            float(p_dropout),
            use_f0=self.use_f0,
        )
        dec_args = (
            inter_channels,
            resblock,
            resblock_kernel_sizes,
            resblock_dilation_sizes,
            upsample_rates,
            upsample_initial_channel,
            upsample_kernel_sizes,
        )
        self.dec: HiFiGANGenerator = (
            NSFGenerator(*dec_args, gin_channels=gin_channels, sr=self.sample_rate)
            if self.use_f0
            else HiFiGANGenerator(*dec_args, gin_channels=gin_channels)
        )
        if with_posterior:
            self.enc_q = PosteriorEncoder(spec_channels, inter_channels, hidden_channels, 5, 1, 16, gin_channels)
        self.flow = ResidualCouplingFlow(inter_channels, hidden_channels, 5, 1, 3, gin_channels=gin_channels)
        self.emb_g = nn.Embedding(self.spk_embed_dim, gin_channels)
        if self.content_dim != CONTENT_DIM["v1"]:
            # Upstream's v2 classes re-create enc_p last, so their files list it last.
            enc_p = self.enc_p
            del self.enc_p
            self.enc_p = enc_p

    # ------------------------------------------------------------ utilities

    @classmethod
    def from_config(
        cls, config: Sequence[Any], *, content_dim: int = 768, use_f0: bool = True, with_posterior: bool = True
    ) -> "Synthesizer":
        """Build from an 18-value small-model config list."""
        return cls(**synthesizer_kwargs(config), content_dim=content_dim, use_f0=use_f0, with_posterior=with_posterior)

    @property
    def hop_length(self) -> int:
        return self.dec.upp

    def remove_weight_norm(self) -> "Synthesizer":
        """Fold weight norm everywhere (inference; identical outputs). Returns self."""
        fold_weight_norm(self)
        return self

    def drop_posterior(self) -> "Synthesizer":
        """Delete enc_q (not used at inference; small model files do not contain it)."""
        if hasattr(self, "enc_q"):
            del self.enc_q
        return self

    # ------------------------------------------------------------- training

    def forward(self, phone: torch.Tensor, phone_lengths: torch.Tensor, *args: torch.Tensor) -> tuple:
        """Training pass, upstream's signature and outputs.

        f0 models: ``forward(phone, phone_lengths, pitch, pitchf, y, y_lengths, sid)``;
        no-f0 models: ``forward(phone, phone_lengths, y, y_lengths, sid)``.
        Returns (o, ids_slice, x_mask, y_mask, (z, z_p, m_p, logs_p, m_q, logs_q)).
        """
        if self.use_f0:
            pitch, pitchf, y, y_lengths, sid = args
        else:
            (y, y_lengths, sid), pitch, pitchf = args, None, None
        g = self.emb_g(sid).unsqueeze(-1)
        m_p, logs_p, x_mask = self.enc_p(phone, pitch, phone_lengths)
        z, m_q, logs_q, y_mask = self.enc_q(y, y_lengths, g=g)
        z_p = self.flow(z, y_mask, g=g)
        z_slice, ids_slice = rand_slice_segments(z, y_lengths, self.segment_size)
        if self.use_f0:
            assert pitchf is not None
            o = self.dec(z_slice, slice_segments(pitchf, ids_slice, self.segment_size), g=g)
        else:
            o = self.dec(z_slice, g=g)
        return o, ids_slice, x_mask, y_mask, (z, z_p, m_p, logs_p, m_q, logs_q)

    # ------------------------------------------------------------ inference

    def infer(self, phone: torch.Tensor, phone_lengths: torch.Tensor, *args: Any, **kwargs: Any) -> tuple:
        """Inference, upstream's signature.

        f0 models: ``infer(phone, phone_lengths, pitch, pitchf, sid, skip_head=None,
        return_length=None, return_length2=None)``; no-f0 models:
        ``infer(phone, phone_lengths, sid, ...)``. ``skip_head``/``return_length``
        (frames) decode only ``return_length`` frames after ``skip_head`` (the flow
        still sees 24 frames of left context). Returns (audio [B, 1, n], x_mask,
        (z, z_p, m_p, logs_p)).
        """
        names = ("pitch", "pitchf", "sid") if self.use_f0 else ("sid",)
        names += ("skip_head", "return_length", "return_length2")
        if len(args) > len(names):
            raise TypeError(f"infer() takes at most {len(names) + 2} positional arguments")
        values: dict[str, Any] = dict(zip(names, args))
        for key, val in kwargs.items():
            key = {"nsff0": "pitchf", "ds": "sid"}.get(key, key)
            if key not in names or key in values:
                raise TypeError(f"infer() got an unexpected or repeated argument {key!r}")
            values[key] = val
        return self._infer(
            phone,
            phone_lengths,
            values.get("pitch"),
            values.get("pitchf"),
            values["sid"],
            values.get("skip_head"),
            values.get("return_length"),
            values.get("return_length2"),
        )

    def _infer(
        self,
        phone: torch.Tensor,
        phone_lengths: torch.Tensor,
        pitch: torch.Tensor | None,
        pitchf: torch.Tensor | None,
        sid: torch.Tensor,
        skip_head: int | torch.Tensor | None,
        return_length: int | torch.Tensor | None,
        return_length2: int | torch.Tensor | None,
    ) -> tuple:
        if self.use_f0 and (pitch is None or pitchf is None):
            raise TypeError("this model uses f0: infer(phone, phone_lengths, pitch, pitchf, sid)")
        g = self.emb_g(sid).unsqueeze(-1)
        trim = skip_head is not None and return_length is not None
        head = as_int(skip_head) if trim else 0
        flow_head = max(head - FLOW_CONTEXT, 0)
        m_p, logs_p, x_mask = self.enc_p(phone, pitch if self.use_f0 else None, phone_lengths, flow_head or None)
        if noise.noise_is_zero():
            z_p = m_p * x_mask
        else:
            z_p = (m_p + torch.exp(logs_p) * noise.randn_like(m_p) * PRIOR_NOISE_SCALE) * x_mask
        z = self.flow(z_p, x_mask, g=g, reverse=True)
        if trim:
            length = as_int(return_length)  # type: ignore[arg-type]
            dec_head = head - flow_head
            z = z[:, :, dec_head : dec_head + length]
            x_mask = x_mask[:, :, dec_head : dec_head + length]
            if self.use_f0:
                pitchf = pitchf[:, head : head + length]  # type: ignore[index]
        zm = z * x_mask
        if self.use_f0:
            o = self.dec(zm, pitchf, g=g, n_res=return_length2)
        else:
            o = self.dec(zm, g=g, n_res=return_length2)
        return o, x_mask, (z, z_p, m_p, logs_p)


def synthesizer_kwargs(config: Sequence[Any]) -> dict[str, Any]:
    """Name the 18 values of a small-model config list (sr may be "40k" or Hz)."""
    if len(config) != len(SMALL_CONFIG_FIELDS):
        raise ValueError(f"an RVC model config has {len(SMALL_CONFIG_FIELDS)} values, got {len(config)}")
    return dict(zip(SMALL_CONFIG_FIELDS, config))


def build_synthesizer(
    config: Sequence[Any], version: str, f0: bool, *, with_posterior: bool = True
) -> Synthesizer:
    """The synthesizer for an 18-value config list, version "v1"/"v2" and f0 flag."""
    v = parse_version(version)
    return Synthesizer.from_config(config, content_dim=CONTENT_DIM[v], use_f0=bool(f0), with_posterior=with_posterior)
