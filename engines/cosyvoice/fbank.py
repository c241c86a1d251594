"""Acoustic features CosyVoice's ONNX front-ends expect, in plain numpy.

Two feature types, each matching what upstream feeds its models:

* ``kaldi_fbank`` — Kaldi-compatible 80-bin log mel filter bank (25 ms Povey
  windows every 10 ms, pre-emphasis 0.97, DC removal, 512-point power
  spectrum, Kaldi mel scale 1127·ln(1+f/700) from 20 Hz to Nyquist, no
  dither, edges snipped). ``campplus_features`` subtracts the per-bin mean
  over time, which is the input of ``campplus.onnx``. Audio is float in
  [-1, 1] (not int16 scale), as upstream loads it.
* ``whisper_log_mel`` — Whisper's log-mel (400-point periodic Hann STFT, hop
  160, centred with reflect padding, last frame dropped, Slaney mel filters
  as librosa makes them,
  log10 floored at 1e-10, 8 decades of dynamic range, then (x+4)/4), the
  input of ``speech_tokenizer_v*.onnx``.

Numpy only, so the data-prep worker processes stay light (no torch).
"""

from __future__ import annotations

import functools

import numpy as np

SAMPLE_RATE = 16000

# Kaldi frame geometry at 16 kHz
_KALDI_WIN = 400  # 25 ms
_KALDI_HOP = 160  # 10 ms
_KALDI_FFT = 512  # next power of two above the window
_KALDI_PREEMPH = 0.97
_KALDI_LOW_HZ = 20.0
_FLOAT32_EPS = float(np.finfo(np.float32).eps)

# Whisper STFT geometry
_WHISPER_FFT = 400
_WHISPER_HOP = 160


def _kaldi_mel(freq: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log(1.0 + np.asarray(freq, dtype=np.float64) / 700.0)


@functools.lru_cache(maxsize=8)
def kaldi_mel_banks(num_bins: int = 80, sample_rate: int = SAMPLE_RATE, n_fft: int = _KALDI_FFT,
                    low_hz: float = _KALDI_LOW_HZ, high_hz: float = 0.0) -> np.ndarray:
    """Triangular filters [num_bins, n_fft//2 + 1] on the Kaldi mel scale.

    The triangles are linear in mel (not in Hz) and the Nyquist bin gets no
    weight, exactly as Kaldi's ``MelBanks`` does.
    """
    nyquist = sample_rate / 2.0
    high = nyquist + high_hz if high_hz <= 0 else high_hz
    mel_lo, mel_hi = _kaldi_mel(low_hz), _kaldi_mel(high)
    step = (mel_hi - mel_lo) / (num_bins + 1)
    edges = mel_lo + step * np.arange(num_bins + 2)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    bin_mel = _kaldi_mel(np.arange(n_fft // 2) * (sample_rate / n_fft))[None, :]
    rising = (bin_mel - left) / (centre - left)
    falling = (right - bin_mel) / (right - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return np.concatenate([weights, np.zeros((num_bins, 1))], axis=1)


@functools.lru_cache(maxsize=2)
def _povey_window(length: int = _KALDI_WIN) -> np.ndarray:
    n = np.arange(length, dtype=np.float64)
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / (length - 1))
    return hann ** 0.85


def _frames(signal: np.ndarray, width: int, hop: int) -> np.ndarray:
    count = 1 + (len(signal) - width) // hop
    return np.lib.stride_tricks.as_strided(
        signal, shape=(count, width), strides=(signal.strides[0] * hop, signal.strides[0])
    )


def kaldi_fbank(audio_16k: np.ndarray, num_mel_bins: int = 80) -> np.ndarray:
    """Kaldi log mel filter bank [frames, num_mel_bins] float32 of mono 16 kHz audio.

    ``frames = 1 + (n - 400) // 160`` (0 when shorter than one window).
    """
    x = np.ascontiguousarray(np.asarray(audio_16k, dtype=np.float64).reshape(-1))
    if len(x) < _KALDI_WIN:
        return np.zeros((0, num_mel_bins), dtype=np.float32)
    frames = _frames(x, _KALDI_WIN, _KALDI_HOP)
    frames = frames - frames.mean(axis=1, keepdims=True)
    previous = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    frames = (frames - _KALDI_PREEMPH * previous) * _povey_window()
    power = np.abs(np.fft.rfft(frames, n=_KALDI_FFT, axis=1)) ** 2
    energies = power @ kaldi_mel_banks(num_mel_bins).T
    return np.log(np.maximum(energies, _FLOAT32_EPS)).astype(np.float32)


def campplus_features(audio_16k: np.ndarray) -> np.ndarray:
    """The campplus.onnx input for one clip: fbank minus its mean over time, [frames, 80]."""
    feats = kaldi_fbank(audio_16k, 80)
    if len(feats):
        feats = feats - feats.mean(axis=0, keepdims=True)
    return feats.astype(np.float32)


def _slaney_hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear (3 mels per 200 Hz) below 1 kHz, logarithmic above."""
    freq = np.asarray(freq, dtype=np.float64)
    linear = freq / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(freq, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(freq >= 1000.0, log_part, linear)


def _slaney_mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * (200.0 / 3)
    log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log_part, linear)


@functools.lru_cache(maxsize=4)
def whisper_mel_filters(n_mels: int = 128, n_fft: int = _WHISPER_FFT, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Slaney mel filters [n_mels, n_fft//2 + 1], area-normalised, 0 Hz to Nyquist.

    These are librosa.filters.mel's defaults (htk=False, norm="slaney"), the
    filters Whisper ships; computed here so worker processes need not import
    librosa/scipy (seconds per process). A test checks them against librosa.
    """
    fft_hz = np.linspace(0.0, sample_rate / 2.0, 1 + n_fft // 2)
    mel_edges = np.linspace(_slaney_hz_to_mel(0.0), _slaney_hz_to_mel(sample_rate / 2.0), n_mels + 2)
    hz_edges = _slaney_mel_to_hz(mel_edges)
    widths = np.diff(hz_edges)
    offsets = hz_edges[:, None] - fft_hz[None, :]
    rising = -offsets[:-2] / widths[:-1, None]
    falling = offsets[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (hz_edges[2:] - hz_edges[:-2]))[:, None]
    return weights.astype(np.float32).astype(np.float64)


@functools.lru_cache(maxsize=1)
def _periodic_hann(length: int = _WHISPER_FFT) -> np.ndarray:
    n = np.arange(length, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / length)


def whisper_log_mel(audio_16k: np.ndarray, n_mels: int = 128) -> np.ndarray:
    """Whisper log-mel [n_mels, n // 160] float32 of mono 16 kHz audio."""
    x = np.asarray(audio_16k, dtype=np.float64).reshape(-1)
    half = _WHISPER_FFT // 2
    if len(x) < _WHISPER_HOP:
        return np.zeros((n_mels, 0), dtype=np.float32)
    if len(x) <= half:
        # reflect padding needs more samples than the pad; pad with zeros first
        x = np.concatenate([x, np.zeros(half + 1 - len(x))])[: max(len(x), half + 1)]
    padded = np.pad(x, (half, half), mode="reflect")
    frames = _frames(np.ascontiguousarray(padded), _WHISPER_FFT, _WHISPER_HOP)[:-1]
    power = np.abs(np.fft.rfft(frames * _periodic_hann(), axis=1)) ** 2
    mel = whisper_mel_filters(n_mels) @ power.T
    log_mel = np.log10(np.maximum(mel, 1e-10))
    if log_mel.size:
        log_mel = np.maximum(log_mel, log_mel.max() - 8.0)
    return ((log_mel + 4.0) / 4.0).astype(np.float32)
