"""RMVPE pitch estimation: our implementation of RVC's E2E network and decoder.

The network (a residual U-Net over the log-mel image, a 3-channel conv, a
bidirectional GRU and a linear layer to 360 pitch bins with a sigmoid) uses
the same parameter names as upstream's ``E2E``, so the real ``rmvpe.pt``
(``E2E(4, 1, (2, 2))``) loads unchanged. Its sizes are read from the state
dict, so smaller variants (tests) load the same way.

Bins are 20 cents apart starting at 1997.38 cents (about 31.7 Hz); a frame's
pitch is the salience-weighted average of the 9 bins around the strongest,
and frames whose strongest bin is at most ``threshold`` are unvoiced (0 Hz).
One frame per 10 ms (hop 160 at 16 kHz).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch import nn

from engines.core.audio import as_mono
from engines.core.errors import InvalidInputError, InvalidModelError
from engines.core.hooks import Hooks, ensure_hooks
from engines.rvc.pitch.mel import LogMelSpectrogram, MelConfig, reflect_pad_for_centre
from engines.rvc.weights import RMVPE as RMVPE_WEIGHTS

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
HOP = 160
N_BINS = 360
N_MELS = 128
CENTS_BASE = 1997.3794084376191  # cents of bin 0 (relative to 10 Hz)
CENTS_STEP = 20.0
FRAME_MULTIPLE = 32  # the U-Net halves time 5 times
BN_MOMENTUM = 0.01


# -- network --------------------------------------------------------------------
class ResidualConvBlock(nn.Module):
    """Two 3x3 conv + BN + ReLU with an identity (or 1x1 conv) skip."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout, momentum=BN_MOMENTUM),
            nn.ReLU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout, momentum=BN_MOMENTUM),
            nn.ReLU(),
        )
        self.shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.shortcut is None else self.shortcut(x)
        return self.conv(x) + skip


class ResidualStack(nn.Module):
    """``n_blocks`` residual blocks (the first changes the width); optional 2-D average pool."""

    def __init__(self, cin: int, cout: int, n_blocks: int, pool: tuple[int, int] | None) -> None:
        super().__init__()
        self.conv = nn.ModuleList(
            [ResidualConvBlock(cin if i == 0 else cout, cout) for i in range(n_blocks)]
        )
        self.pool = nn.AvgPool2d(pool) if pool is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.conv:
            x = block(x)
        return x


class UNetEncoder(nn.Module):
    def __init__(self, cin: int, stages: int, width: int, n_blocks: int, pool: tuple[int, int]) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(cin, momentum=BN_MOMENTUM)
        self.layers = nn.ModuleList()
        for _ in range(stages):
            self.layers.append(ResidualStack(cin, width, n_blocks, pool))
            cin, width = width, width * 2
        self.out_channels = cin  # width of the deepest stage

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips: list[torch.Tensor] = []
        x = self.bn(x)
        for stage in self.layers:
            x = stage(x)
            skips.append(x)
            x = stage.pool(x)
        return x, skips


class UNetBottleneck(nn.Module):
    def __init__(self, cin: int, cout: int, stages: int, n_blocks: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [ResidualStack(cin if i == 0 else cout, cout, n_blocks, None) for i in range(stages)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.layers:
            x = stage(x)
        return x


class UpStage(nn.Module):
    """Transposed-conv upsampling by ``stride``, concat with the encoder skip, residual blocks."""

    def __init__(self, cin: int, cout: int, stride: tuple[int, int], n_blocks: int) -> None:
        super().__init__()
        extra = (0, 1) if tuple(stride) == (1, 2) else (1, 1)
        self.conv1 = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, 3, stride=stride, padding=1, output_padding=extra, bias=False),
            nn.BatchNorm2d(cout, momentum=BN_MOMENTUM),
            nn.ReLU(),
        )
        self.conv2 = nn.ModuleList(
            [ResidualConvBlock(cout * 2 if i == 0 else cout, cout) for i in range(n_blocks)]
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = torch.cat((self.conv1(x), skip), dim=1)
        for block in self.conv2:
            x = block(x)
        return x


class UNetDecoder(nn.Module):
    def __init__(self, cin: int, stages: int, stride: tuple[int, int], n_blocks: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        for _ in range(stages):
            self.layers.append(UpStage(cin, cin // 2, stride, n_blocks))
            cin //= 2

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for stage, skip in zip(self.layers, reversed(skips)):
            x = stage(x, skip)
        return x


class DeepUNet(nn.Module):
    def __init__(
        self, pool: tuple[int, int], n_blocks: int, stages: int, bottleneck: int, in_channels: int, width: int
    ) -> None:
        super().__init__()
        self.encoder = UNetEncoder(in_channels, stages, width, n_blocks, pool)
        deepest = self.encoder.out_channels
        self.intermediate = UNetBottleneck(deepest, deepest * 2, bottleneck, n_blocks)
        self.decoder = UNetDecoder(deepest * 2, stages, pool, n_blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, skips = self.encoder(x)
        return self.decoder(self.intermediate(x), skips)


class BiGRUHead(nn.Module):
    def __init__(self, features: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.gru = nn.GRU(features, hidden, num_layers=layers, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(x)[0]


@dataclass(frozen=True)
class RMVPEConfig:
    """Sizes of the E2E network; defaults are the released rmvpe.pt."""

    n_blocks: int = 4
    n_gru: int = 1
    pool: tuple[int, int] = (2, 2)
    stages: int = 5
    bottleneck: int = 4
    in_channels: int = 1
    width: int = 16


class PitchNet(nn.Module):
    """mel ``[batch, 128, frames]`` -> pitch-bin salience ``[batch, frames, 360]`` in 0..1."""

    def __init__(self, cfg: RMVPEConfig = RMVPEConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.unet = DeepUNet(cfg.pool, cfg.n_blocks, cfg.stages, cfg.bottleneck, cfg.in_channels, cfg.width)
        self.cnn = nn.Conv2d(cfg.width, 3, 3, padding=1)
        if cfg.n_gru:
            self.fc = nn.Sequential(
                BiGRUHead(3 * N_MELS, 256, cfg.n_gru), nn.Linear(512, N_BINS), nn.Dropout(0.25), nn.Sigmoid()
            )
        else:
            self.fc = nn.Sequential(nn.Linear(3 * N_MELS, N_BINS), nn.Dropout(0.25), nn.Sigmoid())

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.fc(self.local_features(mel))

    def local_features(self, mel: torch.Tensor) -> torch.Tensor:
        """The convolutional part (U-Net + 3-channel conv): ``[B, frames, 3 * mels]``, local in time."""
        x = mel.transpose(-1, -2).unsqueeze(1)  # [B, 1, frames, mels]
        x = self.cnn(self.unet(x))  # [B, 3, frames, mels]
        return x.transpose(1, 2).flatten(-2)

    def receptive_radius(self) -> int:
        """Frames on each side that can reach one output frame of :meth:`local_features`.

        Every 3x3 conv at time scale ``s`` (1, 2, 4, ... after each pooling)
        widens the reach by ``s``; a 2x pooling and a stride-2 transposed conv
        by one coarse frame each. The U-Net's windows with this much context
        give the one-pass values; the GRU after it sees the whole sequence.
        """
        cfg = self.cfg
        convs_per_stack = 2 * cfg.n_blocks
        radius, scale = 1, 1  # the final 3x3 cnn
        for _ in range(cfg.stages):  # encoder convs, then pooling
            radius += convs_per_stack * scale + scale
            scale *= 2
        radius += cfg.bottleneck * convs_per_stack * scale
        for _ in range(cfg.stages):  # decoder: transposed conv at the coarse scale, convs at the fine one
            radius += scale
            scale //= 2
            radius += convs_per_stack * scale
        return radius


def config_from_state_dict(state: Mapping[str, torch.Tensor]) -> RMVPEConfig:
    """Read the network sizes off an E2E state dict (upstream key names)."""

    def count(prefix: str) -> int:
        seen = {k[len(prefix) :].split(".", 1)[0] for k in state if k.startswith(prefix)}
        return len({s for s in seen if s.isdigit()})

    first = state.get("unet.encoder.layers.0.conv.0.conv.0.weight")
    if first is None or "cnn.weight" not in state:
        raise KeyError("unet.encoder.layers.0.conv.0.conv.0.weight")
    return RMVPEConfig(
        n_blocks=count("unet.encoder.layers.0.conv."),
        n_gru=count("fc.0.gru.weight_ih_l") if any(k.startswith("fc.0.gru.") for k in state) else 0,
        pool=(2, 2),
        stages=count("unet.encoder.layers."),
        bottleneck=count("unet.intermediate.layers."),
        in_channels=int(first.shape[1]),
        width=int(first.shape[0]),
    )


def fuse_for_inference(net: PitchNet) -> PitchNet:
    """Fold every eval-mode BatchNorm into the conv before it and make ReLUs in-place.

    Same function up to float rounding, fewer passes over memory and fewer
    temporaries (the U-Net's full-resolution activations dominate RMVPE's
    memory). The conv weights are scaled in place, so no second copy of the
    network is made. Changes the module tree: only use it on a network that
    will not be saved again.
    """
    net.eval()
    with torch.no_grad():
        for module in net.modules():
            if not isinstance(module, nn.Sequential):
                continue
            for i in range(len(module) - 1):
                conv, bn = module[i], module[i + 1]
                if isinstance(bn, nn.BatchNorm2d) and isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)):
                    _fold_batch_norm(conv, bn)
                    module[i + 1] = nn.Identity()
            for item in module:
                if isinstance(item, nn.ReLU):
                    item.inplace = True
    return net


def _fold_batch_norm(conv: nn.Conv2d | nn.ConvTranspose2d, bn: nn.BatchNorm2d) -> None:
    """conv -> bn(eval) becomes one conv: w' = w * g/sqrt(var+eps), b' = (b - mean) * g/sqrt(var+eps) + beta."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    out_axis = 1 if isinstance(conv, nn.ConvTranspose2d) else 0  # transposed convs store [in, out, kh, kw]
    shape = [1] * conv.weight.dim()
    shape[out_axis] = -1
    conv.weight.mul_(scale.view(shape))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias, requires_grad=False)


# -- decoding -------------------------------------------------------------------
def _cents_table() -> np.ndarray:
    """Cents of each bin, zero-padded by 4 on both sides (for the 9-bin window)."""
    return np.pad(CENTS_BASE + CENTS_STEP * np.arange(N_BINS), (4, 4))


def salience_to_cents(salience: np.ndarray, threshold: float = 0.03) -> np.ndarray:
    """Local weighted-average cents per frame (0 where the peak is at or below ``threshold``).

    In upstream's precision: the 9-bin weights are summed in the salience's
    own dtype (float32 from the network), the cents products in float64.
    """
    sal = np.asarray(salience)
    if not np.issubdtype(sal.dtype, np.floating):
        sal = sal.astype(np.float64)
    if sal.ndim != 2 or sal.shape[1] != N_BINS:
        raise InvalidInputError(f"Salience must be [frames, {N_BINS}], got {sal.shape}.", "")
    if sal.shape[0] == 0:
        return np.zeros(0, dtype=np.float64)
    padded = np.pad(sal, ((0, 0), (4, 4)))
    centre = np.argmax(sal, axis=1) + 4  # index into the padded bins
    cols = centre[:, None] + np.arange(-4, 5)[None, :]
    window = np.take_along_axis(padded, cols, axis=1)
    cents = _cents_table()[cols]
    weight = np.sum(window, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        avg = np.sum(window * cents, axis=1) / weight
    voiced = sal.max(axis=1) > threshold
    return np.where(voiced, avg, 0.0)


def salience_to_hz(salience: np.ndarray, threshold: float = 0.03) -> np.ndarray:
    """Hz per frame (float64) from salience ``[frames, 360]``; 0 = unvoiced."""
    cents = salience_to_cents(salience, threshold)
    hz = 10.0 * np.power(2.0, cents / 1200.0)
    return np.where(cents > 0, hz, 0.0)


# -- inference wrapper -------------------------------------------------------------
class RMVPE:
    """The loaded pitch network plus its mel front end; ``infer`` gives Hz per 10 ms frame."""

    def __init__(
        self, net: PitchNet, device: torch.device | str = "cpu", hooks: Hooks | None = None, fuse: bool = True
    ) -> None:
        from engines.core.device import amp_dtype

        self.device = torch.device(device)
        net = net.eval()
        self.net = (fuse_for_inference(net) if fuse else net).to(self.device)
        self.net.requires_grad_(False)
        self.mel = LogMelSpectrogram(MelConfig()).to(self.device)
        self.amp = amp_dtype(self.device, "fp16") if self.device.type == "cuda" else None
        self._hooks = ensure_hooks(hooks)

    def num_frames(self, num_samples: int) -> int:
        return num_samples // HOP + 1

    def mel_spectrogram(self, audio_16k: np.ndarray) -> torch.Tensor:
        """Log-mel ``[1, 128, frames]`` of the whole input (for tests and tools)."""
        wav = as_mono(audio_16k, "RMVPE")
        with torch.inference_mode():
            return self.mel(torch.from_numpy(wav).to(self.device)[None])

    def hidden_from_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """Network output for one mel ``[1, 128, T]``: zero-padded to a multiple of 32 frames, cut back."""
        from engines.core.device import autocast

        frames = mel.shape[-1]
        padded = _pad_time(mel, _padded_length(frames) - frames)
        with torch.inference_mode(), autocast(self.device, self.amp):
            out = self.net(padded)
        return out[:, :frames].float()

    def salience(
        self,
        audio_16k: np.ndarray,
        *,
        window_frames: int = 2048,
        context_frames: int | None = 128,
        hooks: Hooks | None = None,
    ) -> np.ndarray:
        """Salience ``[frames, 360]``, as one pass of upstream's network over the whole input.

        Bounded memory for long audio: the convolutional part runs in windows
        of ``window_frames`` with ``context_frames`` of real neighbours on each
        side (dropped afterwards; ``None`` = the network's whole receptive
        field, which gives the one-pass values to float rounding), and the
        BiGRU head then runs over the whole sequence, zero-padded to a
        multiple of 32 frames as upstream pads it. ``hooks`` (default: the
        ones given at load) get progress per window and can cancel.
        """
        from engines.core.device import autocast

        hooks = hooks if hooks is not None else self._hooks
        wav = as_mono(audio_16k, "RMVPE")
        total = self.num_frames(wav.size)
        padded_total = _padded_length(total)
        padded = torch.from_numpy(reflect_pad_for_centre(wav, self.mel.cfg.n_fft)).to(self.device)[None]
        core = max(FRAME_MULTIPLE, window_frames - window_frames % FRAME_MULTIPLE)
        wanted = self.net.receptive_radius() if context_frames is None else context_frames
        # Context is a multiple of 32 so every window starts on the pooling grid of a one-shot run.
        context = _padded_length(wanted) if context_frames is None else wanted - wanted % FRAME_MULTIPLE
        starts = range(0, padded_total, core)
        feats: torch.Tensor | None = None
        with torch.inference_mode(), autocast(self.device, self.amp):
            for n, first in enumerate(starts):
                last = min(padded_total, first + core)
                lo, hi = max(0, first - context), min(padded_total, last + context)
                mel = self.mel.frames(padded, lo, min(hi, total))
                local = self.net.local_features(_pad_time(mel, hi - lo - mel.shape[-1]))[0]
                if feats is None:
                    feats = torch.empty((padded_total, local.shape[-1]), dtype=local.dtype, device=self.device)
                feats[first:last] = local[first - lo : last - lo]
                del local, mel
                hooks.check_cancel()
                hooks.progress((n + 1) / len(starts), "RMVPE pitch")
            assert feats is not None
            out = self.net.fc(feats[None])[0, :total]
        return out.float().cpu().numpy()

    def infer(
        self,
        audio_16k: np.ndarray,
        threshold: float = 0.03,
        *,
        window_frames: int = 2048,
        context_frames: int | None = 128,
        hooks: Hooks | None = None,
    ) -> np.ndarray:
        """Pitch in Hz (float64) per 10 ms frame (``len(audio)//160 + 1`` frames); 0 = unvoiced.

        ``window_frames`` bounds memory (about +300 MB at the default 2048 frames for the
        released network on CPU; halve it to save ~120 MB at ~10% more time);
        ``context_frames=None`` makes long inputs exact (see :meth:`salience`).
        """
        sal = self.salience(audio_16k, window_frames=window_frames, context_frames=context_frames, hooks=hooks)
        return salience_to_hz(sal, threshold)


def _padded_length(frames: int) -> int:
    """``frames`` rounded up to the U-Net's multiple of 32."""
    return FRAME_MULTIPLE * ((frames - 1) // FRAME_MULTIPLE + 1)


def _pad_time(mel: torch.Tensor, amount: int) -> torch.Tensor:
    """Zero-pad the time axis at the end (what upstream RVC does before the U-Net)."""
    import torch.nn.functional as F

    return F.pad(mel, (0, amount)) if amount > 0 else mel


def load_rmvpe(path: str | Path | None = None, device: str = "cpu", hooks: Hooks | None = None) -> RMVPE:
    """Load ``rmvpe.pt`` (a plain E2E state dict); ``path=None`` uses the configured one
    (``VOICELAB_RMVPE`` / settings, else assets/rmvpe/rmvpe.pt)."""
    from engines.core.device import pick_device
    from engines.rvc.safe_pickle import safe_torch_load

    path = RMVPE_WEIGHTS.require(path, why="RMVPE pitch extraction")
    state = safe_torch_load(path)
    if isinstance(state, Mapping) and isinstance(state.get("model"), Mapping) and "cnn.weight" not in state:
        state = state["model"]
    if not isinstance(state, Mapping):
        raise InvalidModelError(f"{path.name} is not an RMVPE state dict.", "Use the released rmvpe.pt.")
    try:
        cfg = config_from_state_dict(state)
        with torch.device("meta"):  # the loaded tensors become the parameters: no second copy
            net = PitchNet(cfg)
        weights = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        net.load_state_dict(weights, strict=True, assign=True)
    except (KeyError, RuntimeError) as exc:
        raise InvalidModelError(
            f"{path.name} does not hold RMVPE weights ({str(exc).splitlines()[0][:200]}).",
            "Use the released rmvpe.pt (assets/rmvpe/rmvpe.pt).",
        ) from None
    return RMVPE(net, pick_device(device), hooks=hooks)


__all__ = [
    "PitchNet",
    "RMVPE",
    "RMVPEConfig",
    "config_from_state_dict",
    "load_rmvpe",
    "salience_to_cents",
    "salience_to_hz",
]
