"""Linear and mel spectrograms exactly as RVC training computes them.

The mel L1 loss compares the generator output with the target through these
functions, and pretrained G/D were trained with them, so the framing must be
upstream's: reflect-pad ``(n_fft - hop) / 2`` on both sides, a Hann window,
``center=False``, magnitude ``sqrt(re^2 + im^2 + 1e-6)``, librosa (Slaney)
mel filters, and ``log(clamp(mel, 1e-5))``. torch.stft + librosa only (no
torchaudio).
"""

from __future__ import annotations

from typing import Any

import torch

# Magnitude floor inside the square root, and the log floor of the mel.
MAGNITUDE_EPS = 1e-6
LOG_CLAMP = 1e-5

_windows: dict[tuple[int, str, str], torch.Tensor] = {}
_mel_filters: dict[tuple[int, int, int, float, Any, str, str], torch.Tensor] = {}


def _hann(win_size: int, like: torch.Tensor) -> torch.Tensor:
    key = (win_size, str(like.dtype), str(like.device))
    if key not in _windows:
        _windows[key] = torch.hann_window(win_size, dtype=like.dtype, device=like.device)
    return _windows[key]


def mel_filterbank(n_fft: int, num_mels: int, sampling_rate: int, fmin: float, fmax: float | None,
                   like: torch.Tensor) -> torch.Tensor:
    """The librosa mel matrix [num_mels, n_fft//2+1] on ``like``'s device/dtype (cached)."""
    key = (n_fft, num_mels, sampling_rate, float(fmin), fmax, str(like.dtype), str(like.device))
    if key not in _mel_filters:
        from librosa.filters import mel as librosa_mel

        basis = librosa_mel(sr=sampling_rate, n_fft=n_fft, n_mels=num_mels, fmin=fmin, fmax=fmax)
        _mel_filters[key] = torch.from_numpy(basis).to(dtype=like.dtype, device=like.device)
    return _mel_filters[key]


def spectrogram_torch(y: torch.Tensor, n_fft: int, sampling_rate: int, hop_size: int, win_size: int,
                      center: bool = False) -> torch.Tensor:
    """Linear magnitude spectrogram: [B, T] waveform -> [B, n_fft//2+1, frames].

    ``sampling_rate`` is unused (kept so call sites read like upstream's).
    Frames = T // hop for the padded framing, which is what aligns one
    spectrogram frame with one content frame.
    """
    del sampling_rate
    pad = int((n_fft - hop_size) / 2)
    padded = torch.nn.functional.pad(y.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    stft = torch.stft(
        padded,
        n_fft,
        hop_length=hop_size,
        win_length=win_size,
        window=_hann(win_size, padded),
        center=center,
        pad_mode="reflect",
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    return torch.sqrt(stft.real.pow(2) + stft.imag.pow(2) + MAGNITUDE_EPS)


def spec_to_mel_torch(spec: torch.Tensor, n_fft: int, num_mels: int, sampling_rate: int, fmin: float,
                      fmax: float | None) -> torch.Tensor:
    """Log-mel from a linear magnitude spectrogram: [B, F, frames] -> [B, num_mels, frames]."""
    mel = torch.matmul(mel_filterbank(n_fft, num_mels, sampling_rate, fmin, fmax, spec), spec)
    return torch.log(torch.clamp(mel, min=LOG_CLAMP))


def mel_spectrogram_torch(y: torch.Tensor, n_fft: int, num_mels: int, sampling_rate: int, hop_size: int,
                          win_size: int, fmin: float, fmax: float | None, center: bool = False) -> torch.Tensor:
    """Log-mel spectrogram of a [B, T] waveform: [B, num_mels, frames]."""
    spec = spectrogram_torch(y, n_fft, sampling_rate, hop_size, win_size, center)
    return spec_to_mel_torch(spec, n_fft, num_mels, sampling_rate, fmin, fmax)
