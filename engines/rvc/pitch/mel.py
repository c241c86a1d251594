"""Log-mel spectrogram on ``torch.stft`` with librosa mel filters (no torchaudio).

Used by RMVPE (128 HTK mels, 16 kHz, n_fft/win 1024, hop 160, 30-8000 Hz,
log of the magnitude mel clamped at 1e-5, centred frames with reflect
padding); the parameters are explicit so other front ends can share it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class MelConfig:
    sample_rate: int = 16000
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 160
    n_mels: int = 128
    fmin: float = 30.0
    fmax: float | None = 8000.0
    clamp: float = 1e-5
    htk: bool = True


def mel_filterbank(cfg: MelConfig) -> np.ndarray:
    """[n_mels, n_fft//2 + 1] filters from librosa (slaney-normalised, HTK scale if asked)."""
    import librosa

    return librosa.filters.mel(
        sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax, htk=cfg.htk
    ).astype(np.float32)


class LogMelSpectrogram(torch.nn.Module):
    """``log(max(mel @ |STFT(x)|, clamp))`` for audio ``[batch, samples]`` -> ``[batch, n_mels, frames]``."""

    def __init__(self, cfg: MelConfig = MelConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("mel_basis", torch.from_numpy(mel_filterbank(cfg)), persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.win_length), persistent=False)

    def num_frames(self, num_samples: int) -> int:
        """Frames of the centred transform for ``num_samples`` samples."""
        return num_samples // self.cfg.hop_length + 1

    def forward(self, audio: torch.Tensor, center: bool = True) -> torch.Tensor:
        cfg = self.cfg
        spec = torch.stft(
            audio.float(),
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            win_length=cfg.win_length,
            window=self.window,
            center=center,
            pad_mode="reflect",
            return_complex=True,
        )
        magnitude = spec.abs()
        mel = torch.matmul(self.mel_basis, magnitude)
        return torch.log(torch.clamp(mel, min=cfg.clamp))

    def frames(self, padded_audio: torch.Tensor, first: int, last: int) -> torch.Tensor:
        """Frames ``[first, last)`` of the centred transform, from audio already reflect-padded
        by ``n_fft // 2`` on both sides (see :func:`reflect_pad_for_centre`).

        Equal to ``forward(audio)[..., first:last]`` but only touches the samples it needs,
        so long audio can be processed window by window.
        """
        hop = self.cfg.hop_length
        segment = padded_audio[..., first * hop : (last - 1) * hop + self.cfg.n_fft]
        return self.forward(segment, center=False)


def reflect_pad_for_centre(audio: np.ndarray, n_fft: int) -> np.ndarray:
    """Reflect-pad by ``n_fft // 2`` each side, as ``torch.stft(center=True)`` does.

    Inputs shorter than the pad are extended by repeated reflection (torch
    would refuse them).
    """
    pad = n_fft // 2
    audio = np.asarray(audio, dtype=np.float32)
    if audio.size == 0:
        return np.zeros(2 * pad, dtype=np.float32)
    if audio.size > pad:
        return np.pad(audio, (pad, pad), mode="reflect")
    return np.pad(audio, (pad, pad), mode="symmetric" if audio.size == 1 else "reflect")
