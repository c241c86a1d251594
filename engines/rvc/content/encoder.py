"""A loaded HuBERT / ContentVec encoder: 16 kHz audio in, RVC content features out.

RVC feeds its synthesizer with HuBERT-base features at 50 frames/s from
16 kHz audio: v1 models use layer 9 passed through ``final_proj`` (256-d),
v2 models the output of layer 12 (768-d), both computed without a padding
mask, exactly as fairseq's ``extract_features(output_layer=N)``.

Memory stays bounded on long inputs: the conv front end runs in 5 s pieces
using whole-input statistics for its first GroupNorm (exact), and the
transformer runs over windows of at most 40 s whose 2.5 s context margins are
dropped (attention is the only thing that sees a cut; see
``ContentEncoder.extract``). Inference runs under ``torch.inference_mode``;
on CUDA with fp16 autocast. Loading is in :mod:`engines.rvc.content.hubert`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from engines.core.audio import as_mono
from engines.core.errors import InvalidInputError, InvalidModelError
from engines.core.hooks import Hooks, ensure_hooks

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
V1_LAYER = 9
V2_LAYER = 12


@dataclass
class EncoderInfo:
    """What was loaded: where from, its format and dimensions."""

    path: str
    source_format: str  # "fairseq" | "transformers"
    hidden_size: int
    num_layers: int
    v1_dim: int | None  # None when there is no final_proj
    normalize_input: bool


class ContentEncoder:
    """A loaded HuBERT-style encoder that turns 16 kHz audio into RVC content features."""

    #: conv front-end piece length in output frames (2.5 s): bounds its activations (~16 MB per tensor)
    conv_piece_frames = 125

    def __init__(
        self,
        model: "Any",
        final_proj: "Any | None",
        info: EncoderInfo,
        device: "Any",
        hooks: Hooks | None = None,
    ) -> None:
        import torch

        from engines.core.device import amp_dtype

        self.device = torch.device(device)
        if self.device.type == "cpu":
            from engines.rvc.models.commons import compute_in_float32

            compute_in_float32(model)  # half-precision stored weights used as float32: half the memory
        else:
            model = model.float()
        self.model = model.eval().to(device)
        self.final_proj = final_proj.eval().to(device) if final_proj is not None else None
        self.info = info
        # fp16 autocast on CUDA only; CPU stays fp32 so features match fairseq's.
        self.amp = amp_dtype(self.device, "fp16") if self.device.type == "cuda" else None
        self._hooks = ensure_hooks(hooks)
        self._warned_taps: set[int] = set()
        # Samples per output frame and samples consumed by the first frame.
        self.stride, self.receptive_field = _conv_framing(model.config)

    # -- properties ------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    def dim(self, version: str = "v2") -> int:
        """Feature width for ``version`` (v1: final_proj output, v2: hidden size)."""
        if _normalise_version(version) == "v1":
            if self.final_proj is None:
                raise InvalidModelError(
                    f"The content encoder {Path(self.info.path).name} has no final_proj, so it cannot make v1 features.",
                    "Use hubert_base.pt, or add final_proj.weight/bias to the model directory.",
                )
            return int(self.final_proj.out_features)
        return int(self.model.config.hidden_size)

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for ``num_samples`` of 16 kHz audio (fairseq's conv framing)."""
        if num_samples < self.receptive_field:
            return 0
        return (num_samples - self.receptive_field) // self.stride + 1

    # -- extraction ------------------------------------------------------
    def extract(
        self,
        audio_16k: "np.ndarray | torch.Tensor",
        version: str = "v2",
        *,
        window_seconds: float = 40.0,
        context_seconds: float = 2.5,
        hooks: Hooks | None = None,
    ) -> "torch.Tensor":
        """Content features ``[frames, dim]`` (float32, on the encoder's device).

        The conv front end always runs in pieces with whole-input GroupNorm
        statistics, which is exact. The transformer attends over the whole
        input up to ``window_seconds``; longer audio is cut into windows whose
        ``context_seconds`` margins on each side are computed and dropped, so
        only attention sees a cut (measured ~1% relative difference on random
        weights) and memory stays bounded. ``hooks`` (default: the ones given
        at load) receive the log line about a missing tap layer and can cancel
        between windows.
        """
        import torch
        import torch.nn.functional as F

        hooks = hooks if hooks is not None else self._hooks
        version = _normalise_version(version)
        tap = self._tap_layer(version, hooks)
        self.dim(version)  # validates v1 availability early
        wav = _as_tensor(audio_16k)
        total = self.num_frames(wav.numel())
        if total == 0:
            raise InvalidInputError(
                f"Audio too short for content features: {wav.numel()} samples at 16 kHz "
                f"(at least {self.receptive_field} needed).",
                "Use a clip of at least 25 ms.",
            )
        window = max(1, int(window_seconds * SAMPLE_RATE) // self.stride)
        context = max(0, int(context_seconds * SAMPLE_RATE) // self.stride)
        with torch.inference_mode():
            wav = wav.to(self.device)
            if self.info.normalize_input:  # fairseq task.normalize: whole-utterance layer norm
                wav = F.layer_norm(wav, wav.shape)
            stats = self._first_norm_stats(wav)
            if total <= window:
                return self._encode(wav, tap, version, stats)[:total]
            pieces: list[torch.Tensor] = []
            for lo, first, last, hi in iter_windows(total, window, context):
                start = lo * self.stride
                stop = (hi - 1) * self.stride + self.receptive_field
                feats = self._encode(wav[start:stop], tap, version, stats)
                pieces.append(feats[first - lo : last - lo])
                hooks.check_cancel()
            return torch.cat(pieces, dim=0)

    def _tap_layer(self, version: str, hooks: Hooks) -> int:
        wanted = V1_LAYER if version == "v1" else V2_LAYER
        if wanted <= self.num_layers:
            return wanted
        if wanted not in self._warned_taps:
            self._warned_taps.add(wanted)
            msg = (
                f"Content encoder has {self.num_layers} layers; using its last layer instead of layer "
                f"{wanted} for {version} features."
            )
            log.warning(msg)
            hooks.log(msg)
        return self.num_layers

    def _first_norm_stats(self, wav: "torch.Tensor") -> "tuple[torch.Tensor, torch.Tensor] | None":
        """Per-channel mean/variance of the first conv layer over the whole input, streamed.

        That GroupNorm normalises each channel over time; computing its
        statistics once lets the front end (and windows) run piecewise with
        exactly one-shot results. None when the extractor is per-frame
        layer-normed (no global statistics).
        """
        import torch

        if self.model.config.feat_extract_norm != "group":
            return None
        conv = self.model.feature_extractor.conv_layers[0].conv
        kernel, step = conv.kernel_size[0], conv.stride[0]
        frames = (wav.numel() - kernel) // step + 1
        per_piece = max(1, self.conv_piece_frames * self.stride // step)
        count = 0
        mean = torch.zeros(conv.out_channels, dtype=torch.float64, device=wav.device)
        m2 = torch.zeros_like(mean)  # sum of squared deviations
        with autocast_off(self.device):
            for f0 in range(0, frames, per_piece):
                f1 = min(frames, f0 + per_piece)
                out = conv(wav[f0 * step : (f1 - 1) * step + kernel].float()[None, None])[0]
                var_p, mean_p = torch.var_mean(out, dim=1, correction=0)
                n_p = f1 - f0
                # Chan et al.'s pairwise update merges this piece's statistics exactly.
                delta = mean_p.double() - mean
                total = count + n_p
                mean += delta * (n_p / total)
                m2 += var_p.double() * n_p + delta * delta * (count * n_p / total)
                count = total
        var = m2 / count
        return mean.float()[:, None], var.float()[:, None]

    def _encode(
        self, wav: "torch.Tensor", tap: int, version: str, stats: "tuple[torch.Tensor, torch.Tensor] | None"
    ) -> "torch.Tensor":
        """Run the network up to layer ``tap`` on one window; returns [frames, dim] float32."""
        from engines.core.device import autocast

        with autocast(self.device, self.amp):
            hidden = self._layer_output(self._conv_features(wav, stats), tap)
            if version == "v1":
                hidden = self.final_proj(hidden)
        return hidden[0].float()

    def _conv_features(self, wav: "torch.Tensor", stats: "tuple[torch.Tensor, torch.Tensor] | None") -> "torch.Tensor":
        """Conv front end ``[1, frames, channels]``, computed in pieces of ``conv_piece_frames``.

        Without GroupNorm statistics every output frame depends only on its
        own 400-sample span, so pieces aligned on the 320-sample stride give
        the same frames as one pass.
        """
        import torch

        frames = self.num_frames(wav.numel())
        outs = []
        for a in range(0, frames, self.conv_piece_frames):
            b = min(frames, a + self.conv_piece_frames)
            seg = wav[a * self.stride : (b - 1) * self.stride + self.receptive_field].float()[None]
            outs.append(self._conv_piece(seg, stats))
        return torch.cat(outs, dim=-1).transpose(1, 2)

    def _conv_piece(self, x: "torch.Tensor", stats: "tuple[torch.Tensor, torch.Tensor] | None") -> "torch.Tensor":
        import torch

        if stats is None:
            return self.model.feature_extractor(x)
        layers = self.model.feature_extractor.conv_layers
        first = layers[0]
        mean, var = stats
        norm = first.layer_norm
        scale = torch.rsqrt(var + norm.eps) * norm.weight[:, None]
        h = first.conv(x[:, None])
        h = first.activation(h.sub_(mean).mul_(scale).add_(norm.bias[:, None]))  # in place: no temporaries
        for layer in layers[1:]:
            h = layer(h)
        return h

    def _layer_output(self, feats: "torch.Tensor", tap: int) -> "torch.Tensor":
        """fairseq ``extract_features(output_layer=tap)`` from conv features: no padding mask, no final norm."""
        model = self.model
        hidden = model.feature_projection(feats)
        if isinstance(hidden, tuple):  # transformers < 5 also returns the normed features
            hidden = hidden[0]
        encoder = model.encoder
        hidden = hidden + encoder.pos_conv_embed(hidden)
        if not model.config.do_stable_layer_norm:
            hidden = encoder.layer_norm(hidden)
        for layer in encoder.layers[:tap]:
            out = layer(hidden)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden


def autocast_off(device: "Any") -> Any:
    """A context that disables autocast (statistics are accumulated in full precision)."""
    import contextlib

    import torch

    if getattr(device, "type", str(device)) != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", enabled=False)


def _normalise_version(version: str) -> str:
    v = str(version).strip().lower()
    if v not in ("v1", "v2"):
        raise InvalidInputError(f"Unknown RVC version '{version}'.", "Use 'v1' or 'v2'.")
    return v


def _conv_framing(config: Any) -> tuple[int, int]:
    """(stride, receptive field) in samples of the conv feature extractor."""
    stride, field = 1, 1
    for kernel, step in zip(config.conv_kernel, config.conv_stride):
        field += (kernel - 1) * stride
        stride *= step
    return stride, field


def iter_windows(total: int, window: int, context: int) -> Iterable[tuple[int, int, int, int]]:
    """(lo, first, last, hi) frame ranges: core [first, last) computed inside [lo, hi)."""
    core = max(1, window - 2 * context)
    for first in range(0, total, core):
        last = min(total, first + core)
        yield max(0, first - context), first, last, min(total, last + context)


def _as_tensor(audio: "np.ndarray | torch.Tensor") -> "torch.Tensor":
    """Mono float32 samples as a tensor (on the device they came on, when a tensor)."""
    import torch

    if isinstance(audio, torch.Tensor) and audio.dim() == 1 and audio.is_floating_point():
        if not bool(torch.isfinite(audio).all()):
            raise InvalidInputError("Content features: the audio contains NaN or infinite samples.",
                                    "Check the decoder or the previous step.")
        return audio.detach().float()
    return torch.from_numpy(as_mono(audio, "Content features"))


__all__ = ["ContentEncoder", "EncoderInfo", "SAMPLE_RATE", "iter_windows"]
