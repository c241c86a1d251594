"""``torchaudio.transforms``: Resample, Spectrogram and MelSpectrogram in plain torch.

Same constructor arguments, defaults, shapes and output lengths as
torchaudio's modules of those names (for the options upstream CosyVoice
uses; the rest raise).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch


def sinc_resample_kernel(orig: int, new: int, lowpass_filter_width: int = 6, rolloff: float = 0.99,
                         dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, int]:
    """Windowed-sinc kernels [new, 1, taps] (Hann window) and the padding width, for reduced rates.

    Each of the ``new`` output phases gets a sinc low-pass at ``rolloff`` x the
    lower Nyquist, sampled at the input positions around it and tapered by a
    Hann window spanning ``lowpass_filter_width`` zero crossings.
    """
    base_freq = min(orig, new) * rolloff
    width = math.ceil(lowpass_filter_width * orig / base_freq)
    idx = torch.arange(-width, width + orig, dtype=torch.float64)[None, None] / orig
    t = torch.arange(0, -new, -1, dtype=torch.float64)[:, None, None] / new + idx
    t = (t * base_freq).clamp(-lowpass_filter_width, lowpass_filter_width)
    window = torch.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    t = t * math.pi
    kernels = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t)
    kernels = kernels * window * (base_freq / orig)
    return kernels.to(dtype), width


class Resample(torch.nn.Module):
    """Band-limited resampling of ``[..., time]`` from ``orig_freq`` to ``new_freq``."""

    def __init__(self, orig_freq: int = 16000, new_freq: int = 16000, resampling_method: str = "sinc_interp_hann",
                 lowpass_filter_width: int = 6, rolloff: float = 0.99, beta: float | None = None,
                 *, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if resampling_method not in ("sinc_interp_hann", "sinc_interpolation"):
            raise NotImplementedError(f"VoiceLab's torchaudio stand-in has no resampling method {resampling_method!r}.")
        self.orig_freq, self.new_freq = int(orig_freq), int(new_freq)
        gcd = math.gcd(self.orig_freq, self.new_freq)
        self._orig, self._new = self.orig_freq // gcd, self.new_freq // gcd
        if self._orig != self._new:
            kernel, self.width = sinc_resample_kernel(self._orig, self._new, lowpass_filter_width, rolloff)
            self.register_buffer("kernel", kernel, persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if self._orig == self._new:
            return waveform
        shape = waveform.shape
        x = waveform.reshape(-1, shape[-1])
        n = shape[-1]
        x = torch.nn.functional.pad(x, (self.width, self.width + self._orig))
        kernel = self.kernel.to(device=x.device, dtype=x.dtype)
        out = torch.nn.functional.conv1d(x[:, None], kernel, stride=self._orig)
        out = out.transpose(1, 2).reshape(x.shape[0], -1)
        target = math.ceil(self._new * n / self._orig)
        return out[..., :target].reshape(*shape[:-1], -1)


class Spectrogram(torch.nn.Module):
    """STFT magnitude (``power``) or complex (``power=None``) spectrogram ``[..., freq, frames]``."""

    def __init__(self, n_fft: int = 400, win_length: int | None = None, hop_length: int | None = None, pad: int = 0,
                 window_fn: Callable[..., torch.Tensor] = torch.hann_window, power: float | None = 2.0,
                 normalized: bool | str = False, wkwargs: dict | None = None, center: bool = True,
                 pad_mode: str = "reflect", onesided: bool = True, return_complex: bool | None = None) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.win_length = win_length if win_length is not None else n_fft
        self.hop_length = hop_length if hop_length is not None else self.win_length // 2
        self.register_buffer("window", window_fn(self.win_length, **(wkwargs or {})), persistent=False)
        self.pad, self.power, self.center, self.pad_mode, self.onesided = pad, power, center, pad_mode, onesided
        self.normalized = normalized

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        shape = waveform.shape
        x = waveform.reshape(-1, shape[-1])
        if self.pad > 0:
            x = torch.nn.functional.pad(x, (self.pad, self.pad))
        window = self.window.to(device=x.device, dtype=x.dtype)
        spec = torch.stft(x, self.n_fft, self.hop_length, self.win_length, window, center=self.center,
                          pad_mode=self.pad_mode, normalized=self.normalized == "frame_length", onesided=self.onesided,
                          return_complex=True)
        if self.normalized is True or self.normalized == "window":
            spec = spec / window.pow(2.0).sum().sqrt()
        spec = spec.reshape(*shape[:-1], *spec.shape[-2:])
        if self.power is None:
            return spec
        return spec.abs() if self.power == 1.0 else spec.abs().pow(self.power)


def _hz_to_mel(freq: torch.Tensor, mel_scale: str) -> torch.Tensor:
    if mel_scale == "htk":
        return 2595.0 * torch.log10(1.0 + freq / 700.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return torch.where(freq >= min_log_hz, min_log_mel + torch.log(freq.clamp(min=1e-10) / min_log_hz) / logstep,
                       freq / f_sp)


def _mel_to_hz(mels: torch.Tensor, mel_scale: str) -> torch.Tensor:
    if mel_scale == "htk":
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return torch.where(mels >= min_log_mel, min_log_hz * torch.exp(logstep * (mels - min_log_mel)), f_sp * mels)


def melscale_fbanks(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int,
                    norm: str | None = None, mel_scale: str = "htk") -> torch.Tensor:
    """Triangular mel filters [n_freqs, n_mels] (torchaudio.functional.melscale_fbanks)."""
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs)
    m_pts = torch.linspace(float(_hz_to_mel(torch.tensor(float(f_min)), mel_scale)),
                           float(_hz_to_mel(torch.tensor(float(f_max)), mel_scale)), n_mels + 2)
    f_pts = _mel_to_hz(m_pts, mel_scale)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    fb = torch.clamp(torch.min(down, up), min=0.0)
    if norm == "slaney":
        fb = fb * (2.0 / (f_pts[2:n_mels + 2] - f_pts[:n_mels])).unsqueeze(0)
    return fb


class MelSpectrogram(torch.nn.Module):
    """Mel spectrogram ``[..., n_mels, frames]`` (Spectrogram, then mel filters)."""

    def __init__(self, sample_rate: int = 16000, n_fft: int = 400, win_length: int | None = None,
                 hop_length: int | None = None, f_min: float = 0.0, f_max: float | None = None, pad: int = 0,
                 n_mels: int = 128, window_fn: Callable[..., torch.Tensor] = torch.hann_window, power: float = 2.0,
                 normalized: bool = False, wkwargs: dict | None = None, center: bool = True,
                 pad_mode: str = "reflect", onesided: bool | None = None, norm: str | None = None,
                 mel_scale: str = "htk", **unused: Any) -> None:
        super().__init__()
        self.spectrogram = Spectrogram(n_fft, win_length, hop_length, pad, window_fn, power, normalized, wkwargs,
                                       center, pad_mode, True)
        fb = melscale_fbanks(n_fft // 2 + 1, f_min, f_max if f_max is not None else float(sample_rate // 2), n_mels,
                             sample_rate, norm, mel_scale)
        self.register_buffer("fb", fb, persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        spec = self.spectrogram(waveform)
        return torch.matmul(spec.transpose(-1, -2), self.fb.to(spec.dtype)).transpose(-1, -2)
