"""FCPE pitch estimator (the conv-only "CFNaiveMelPE" of CNChTu/FCPE) as our own torch module.

The weights are the ``fcpe_c_v001.pt`` file shipped inside the ``torchfcpe``
package; we read that file (a dict with ``model`` state dict and
``config_dict``) and never import torchfcpe, which imports torchaudio.

What the shipped model computes, and what we reproduce:

* front end: log-mel spectrogram at 16 kHz, 128 mels (librosa Slaney
  filters, 0..8000 Hz), 1024-point Hann STFT without centring; the audio
  is reflect-padded by (win - hop) // 2 on the left and (win - hop + 1) // 2
  on the right, magnitude is ``sqrt(re² + im² + 1e-9)``, log is
  ``ln(max(mel, 1e-5))``; the last frame is repeated so there are
  ``len // hop + 1`` frames;
* network: conv(k3) -> GroupNorm(4) -> LeakyReLU -> conv(k3), then six
  residual conv blocks (LayerNorm -> 1x1 conv to 4x width -> GLU ->
  depthwise conv k31 -> SiLU -> 1x1 conv back), a final LayerNorm, a
  weight-normalised linear layer to 360 bins and a sigmoid;
* decoder ("local argmax"): the probability-weighted mean of the bins'
  cents within ±4 bins of the peak (indices clamped to the table), and a
  frame is unvoiced when its peak probability is <= ``threshold`` (0.006).

Only the conv-only configuration (``conv_only: True``, which the shipped
file uses) is supported; a checkpoint with attention layers is refused.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from engines.core.errors import InvalidModelError
from engines.core.hooks import Hooks, ensure_hooks

DEFAULT_THRESHOLD = 0.006
# Frames processed in one pass; longer inputs are cut into overlapping pieces.
CHUNK_FRAMES = 6000
CHUNK_CONTEXT = 200


def fcpe_weights_path() -> Path | None:
    """Where the installed torchfcpe keeps ``fcpe_c_v001.pt`` (None if not installed)."""
    spec = importlib.util.find_spec("torchfcpe")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "assets" / "fcpe_c_v001.pt"


@dataclass(frozen=True)
class FcpeConfig:
    sample_rate: int = 16000
    n_mels: int = 128
    n_fft: int = 1024
    win_size: int = 1024
    hop: int = 160
    fmin: float = 0.0
    fmax: float = 8000.0
    out_dims: int = 360
    hidden: int = 512
    n_layers: int = 6
    f0_min: float = 32.70
    f0_max: float = 1975.5

    @classmethod
    def from_checkpoint(cls, config: Mapping[str, Any]) -> "FcpeConfig":
        mel, model = config.get("mel", {}), config.get("model", {})
        if model.get("type", "CFNaiveMelPE") != "CFNaiveMelPE":
            raise InvalidModelError(f"FCPE model type {model.get('type')!r} is not supported.", "Use fcpe_c_v001.pt.")
        if not model.get("conv_only", False):
            raise InvalidModelError(
                "This FCPE checkpoint uses attention layers; only the conv-only model is supported.",
                "Use the fcpe_c_v001.pt file shipped with torchfcpe.",
            )
        if model.get("use_harmonic_emb", False):
            raise InvalidModelError("FCPE checkpoints with harmonic embeddings are not supported.", "Use fcpe_c_v001.pt.")
        return cls(
            sample_rate=int(mel.get("sr", 16000)),
            n_mels=int(mel["num_mels"]),
            n_fft=int(mel.get("n_fft", 1024)),
            win_size=int(mel.get("win_size", 1024)),
            hop=int(mel.get("hop_size", 160)),
            fmin=float(mel.get("fmin", 0) or 0),
            fmax=float(mel.get("fmax") or mel.get("sr", 16000) / 2),
            out_dims=int(model["out_dims"]),
            hidden=int(model["hidden_dims"]),
            n_layers=int(model["n_layers"]),
            f0_min=float(model["f0_min"]),
            f0_max=float(model["f0_max"]),
        )


class LogMel(nn.Module):
    """The FCPE front end: non-centred STFT magnitude -> Slaney mel -> natural log."""

    def __init__(self, cfg: FcpeConfig) -> None:
        super().__init__()
        import librosa

        self.cfg = cfg
        basis = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax)
        self.register_buffer("basis", torch.from_numpy(basis).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.win_size), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [T] -> log-mel [len // hop + 1, n_mels]."""
        cfg = self.cfg
        n = audio.shape[-1]
        left = (cfg.win_size - cfg.hop) // 2
        right = max((cfg.win_size - cfg.hop + 1) // 2, cfg.win_size - n - left)
        mode = "reflect" if right < n else "constant"
        x = F.pad(audio[None, None, :], (left, right), mode=mode)[0]
        spec = torch.stft(
            x, cfg.n_fft, hop_length=cfg.hop, win_length=cfg.win_size, window=self.window,
            center=False, normalized=False, onesided=True, return_complex=True,
        )[0]
        mag = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-9)
        mel = torch.log(torch.clamp(self.basis @ mag, min=1e-5)).T
        want = n // cfg.hop + 1
        if mel.shape[0] < want:
            mel = torch.cat([mel, mel[-1:].expand(want - mel.shape[0], -1)])
        return mel[:want]


class ConvBlock(nn.Module):
    """Residual conformer-style convolution block (no attention)."""

    def __init__(self, dim: int, kernel: int = 31, expansion: int = 2) -> None:
        super().__init__()
        inner = dim * expansion
        self.norm = nn.LayerNorm(dim)
        self.expand = nn.Conv1d(dim, inner * 2, 1)
        self.depthwise = nn.Conv1d(inner, inner, kernel, padding=kernel // 2, groups=inner)
        self.project = nn.Conv1d(inner, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, C]
        y = self.norm(x).transpose(1, 2)
        y = F.glu(self.expand(y), dim=1)
        y = self.project(F.silu(self.depthwise(y)))
        return x + y.transpose(1, 2)


class FcpeNet(nn.Module):
    """Mel frames [B, T, n_mels] -> per-bin probabilities [B, T, out_dims]."""

    def __init__(self, cfg: FcpeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden
        self.input_stack = nn.Sequential(
            nn.Conv1d(cfg.n_mels, h, 3, 1, 1), nn.GroupNorm(4, h), nn.LeakyReLU(), nn.Conv1d(h, h, 3, 1, 1)
        )
        self.blocks = nn.ModuleList(ConvBlock(h) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(h)
        self.head = nn.Linear(h, cfg.out_dims)
        cents = torch.linspace(
            1200 * np.log2(cfg.f0_min / 10.0), 1200 * np.log2(cfg.f0_max / 10.0), cfg.out_dims
        )
        self.register_buffer("cent_table", cents)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.input_stack(mel.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        return torch.sigmoid(self.head(self.norm(x)))


def convert_checkpoint_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename torchfcpe's keys to ours and fold the head's weight norm (g * v / |v|)."""
    out: dict[str, torch.Tensor] = {}
    parts = {"net.0": "norm", "net.2": "expand", "net.4.conv": "depthwise", "net.6": "project"}
    for key, value in state.items():
        if key.startswith("input_stack.") or key.startswith("norm.") or key == "cent_table":
            out[key] = value
        elif key.startswith("net.encoder_layers."):
            rest = key[len("net.encoder_layers.") :]
            idx, _, tail = rest.partition(".")
            if tail.startswith("conformer."):
                sub = tail[len("conformer.") :]
                for theirs, ours in parts.items():
                    if sub.startswith(theirs + "."):
                        out[f"blocks.{idx}.{ours}.{sub[len(theirs) + 1:]}"] = value
                        break
            # the per-layer "norm" only feeds attention, which the conv-only model lacks
    g, v = state.get("output_proj.weight_g"), state.get("output_proj.weight_v")
    if g is not None and v is not None:
        out["head.weight"] = g * v / v.norm(dim=1, keepdim=True)
    elif "output_proj.weight" in state:
        out["head.weight"] = state["output_proj.weight"]
    if "output_proj.bias" in state:
        out["head.bias"] = state["output_proj.bias"]
    return out


class FcpePitch:
    """A loaded FCPE model: ``predict`` maps 16 kHz audio to Hz per hop."""

    def __init__(self, net: FcpeNet, device: Any) -> None:
        self.net = net
        self.mel = LogMel(net.cfg).to(device)
        self.device = device

    @torch.no_grad()
    def probabilities(self, audio_16k: np.ndarray, hooks: Hooks | None = None) -> np.ndarray:
        hooks = ensure_hooks(hooks)
        audio = torch.as_tensor(np.ascontiguousarray(audio_16k, dtype=np.float32), device=self.device)
        mel = self.mel(audio)
        n = mel.shape[0]
        if n <= CHUNK_FRAMES + 2 * CHUNK_CONTEXT:
            return self.net(mel[None]).float()[0].cpu().numpy()
        # Long inputs: overlapping pieces keep memory flat (the network sees ±CHUNK_CONTEXT frames
        # beyond each piece, more than its receptive field; only GroupNorm statistics differ).
        out = []
        for start in range(0, n, CHUNK_FRAMES):
            hooks.check_cancel()
            lo, hi = max(0, start - CHUNK_CONTEXT), min(n, start + CHUNK_FRAMES + CHUNK_CONTEXT)
            probs = self.net(mel[None, lo:hi]).float()[0]
            out.append(probs[start - lo : start - lo + min(CHUNK_FRAMES, n - start)].cpu())
            hooks.progress(min(1.0, (start + CHUNK_FRAMES) / n), "FCPE")
        return torch.cat(out).numpy()

    def predict(self, audio_16k: np.ndarray, threshold: float = DEFAULT_THRESHOLD, hooks: Hooks | None = None) -> np.ndarray:
        """f0 in Hz per hop (``len // hop + 1`` frames); 0 where the peak is <= threshold."""
        probs = self.probabilities(audio_16k, hooks).astype(np.float64)
        cents = self.net.cent_table.detach().cpu().numpy().astype(np.float64)
        n_bins = probs.shape[1]
        peak = probs.argmax(axis=1)
        idx = np.clip(peak[:, None] + np.arange(-4, 5)[None, :], 0, n_bins - 1)
        w = np.take_along_axis(probs, idx, axis=1)
        local_cents = (w * cents[idx]).sum(axis=1) / np.maximum(w.sum(axis=1), 1e-12)
        f0 = 10.0 * 2.0 ** (local_cents / 1200.0)
        f0[probs.max(axis=1) <= threshold] = 0.0
        return f0.astype(np.float32)


def load_fcpe(path: str | Path | None = None, device: Any = "cpu") -> FcpePitch:
    """Load an FCPE checkpoint (default: the one shipped with torchfcpe)."""
    weights = Path(path) if path else fcpe_weights_path()
    if weights is None or not weights.is_file():
        raise FileNotFoundError(f"FCPE weights not found: {weights}")
    ckpt = torch.load(weights, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config_dict" not in ckpt:
        raise InvalidModelError(f"{weights} is not an FCPE checkpoint.", "Use fcpe_c_v001.pt from torchfcpe.")
    cfg = FcpeConfig.from_checkpoint(ckpt["config_dict"])
    net = FcpeNet(cfg)
    net.load_state_dict(convert_checkpoint_state(ckpt["model"]), strict=True)
    device = torch.device(device)
    net.eval().to(device)
    return FcpePitch(net, device)
