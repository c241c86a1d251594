"""The numeric steps of a conversion, each mirroring one step of upstream RVC's ``Pipeline``.

Plain numpy on whole arrays or ``Reader``s, no networks: input level,
high-pass, cut-point search, loudness envelopes and the ``rms_mix_rate``
gain, output level. ``pipeline`` strings them together; the upstream facts
behind each are in ``tests/golden/pipeline/README.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from engines.rvc.infer.buffers import Reader, read_reflect

SR16 = 16000
WINDOW = 160  # samples per 10 ms frame at 16 kHz
OUTPUT_PEAK = 0.99
INPUT_PEAK = 0.95
RMS_FLOOR = 1e-6


@dataclass(frozen=True)
class Windowing:
    """Upstream's segmenting constants in seconds (configs/config.py)."""

    x_pad: int = 1
    x_query: int = 6
    x_center: int = 38
    x_max: int = 41

    @classmethod
    def upstream(cls, half_precision: bool = False) -> "Windowing":
        """fp32 (CPU, our default everywhere) or upstream's >= 6 GB fp16 GPU setting."""
        return cls(3, 10, 60, 65) if half_precision else cls()

    @property
    def t_pad(self) -> int:
        return SR16 * self.x_pad


_HP_CACHE: dict[str, Any] = {}


def highpass_coefficients() -> tuple[np.ndarray, np.ndarray]:
    if "ba" not in _HP_CACHE:
        from scipy import signal

        _HP_CACHE["ba"] = signal.butter(N=5, Wn=48, btype="high", fs=SR16)
    return _HP_CACHE["ba"]


def highpass(x: np.ndarray) -> np.ndarray:
    """Zero-phase 48 Hz high-pass (float64 out, as upstream's filtfilt).

    filtfilt pads by 3 x the filter order; shorter input is refused with its length and the minimum.
    """
    from scipy import signal

    b, a = highpass_coefficients()
    minimum = 3 * max(len(a), len(b)) + 1
    if x.shape[0] < minimum:
        from engines.core.errors import InvalidInputError

        raise InvalidInputError(
            f"The input is {x.shape[0]} samples at 16 kHz ({x.shape[0] / SR16 * 1000:.2f} ms); the conversion "
            f"needs at least {minimum} ({minimum / SR16 * 1000:.2f} ms).", "Give a longer recording.")
    return signal.filtfilt(b, a, x)


def input_divisor(peak: float) -> np.float32 | None:
    """Upstream divides the (float32) input by peak/0.95 when its peak exceeds 0.95 (never scales up)."""
    audio_max = np.float32(peak) / np.float32(INPUT_PEAK)
    return audio_max if audio_max > 1 else None


def split_points(src: Reader, win: Windowing) -> list[int]:
    """Upstream's cut points (in samples of the unpadded filtered audio; not yet frame-aligned).

    Above ``x_max`` s, one cut near every multiple of ``x_center`` s: the first
    quietest 10 ms (least sum of |x| over 160 samples) within +-``x_query`` s.
    """
    n = src.n
    t_query, t_center, t_max = SR16 * win.x_query, SR16 * win.x_center, SR16 * win.x_max
    if n + WINDOW <= t_max:
        return []
    half = WINDOW // 2
    cuts = []
    for t in range(t_center, n, t_center):
        a, b = max(0, t - t_query), min(n, t + t_query)
        if t - t_query < 0:  # upstream's negative slice start would wrap; cannot happen with its constants
            raise ValueError("x_query must not exceed x_center")
        # audio_sum[j] = sum_{i<160} |audio_pad80[j + i]|, accumulated i = 0..159 as upstream does
        # (RVC <= 2024 summed the signed samples and took |sum|, which also finds loud spots with no DC)
        padded = np.abs(read_reflect(src, a - half, b + half))
        acc = np.zeros(b - a, dtype=np.float64)
        for i in range(WINDOW):
            acc += padded[i : i + (b - a)]
        cuts.append(t - t_query + int(np.argmin(acc)))
    return cuts


def rms_envelope(src: Reader, sr: int) -> np.ndarray:
    """librosa.feature.rms(frame_length=sr//2*2, hop_length=sr//2, center=True, constant pad) of a reader.

    Frame ``k`` is centred on sample ``k * sr // 2``; there are ``1 + n // hop`` frames.
    """
    frame = sr // 2 * 2
    hop = sr // 2
    n_frames = 1 + src.n // hop
    out = np.empty(n_frames, dtype=np.float64)
    for f in range(n_frames):
        start = f * hop - frame // 2
        x = src.read(start, start + frame).astype(np.float64, copy=False)
        out[f] = math.sqrt(float(np.sum(np.abs(x) ** 2)) / frame)
    return out


def linear_resize(env: np.ndarray, size: int, start: int, stop: int) -> np.ndarray:
    """Positions [start, stop) of ``F.interpolate(env, size, mode="linear", align_corners=False)``.

    Upstream's envelope placement: the frames are spread evenly over the
    output, so frame ``k`` lands near sample ``(k + 0.5) * size / frames``
    instead of its centre ``k * hop`` (up to half a hop late at the start).
    """
    n_in = env.shape[0]
    if n_in == 1:
        return np.full(stop - start, env[0])
    scale = n_in / size
    src = (np.arange(start, stop, dtype=np.float64) + 0.5) * scale - 0.5
    src = np.maximum(src, 0.0)
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = src - i0
    return env[i0] * (1.0 - lam) + env[i1] * lam


def centred_resize(env: np.ndarray, hop: float, start: int, stop: int) -> np.ndarray:
    """Envelope values at output samples [start, stop) with frame ``k`` at its centre, sample ``k * hop``.

    Linear between frame centres, held beyond the first and last centre.
    """
    pos = np.arange(start, stop, dtype=np.float64) / hop
    return np.interp(pos, np.arange(env.shape[0], dtype=np.float64), env)


def rms_gain(env_in: np.ndarray, env_out: np.ndarray, n_out: int, rate: float, start: int, stop: int,
             out_hop: float | None = None) -> np.ndarray:
    """The ``rms_mix_rate`` gain for output samples [start, stop): rms_in^(1-rate) * max(rms_out, 1e-6)^(rate-1).

    ``out_hop`` None: both envelopes stretched over ``n_out`` samples as
    upstream does (``linear_resize``). Otherwise both are read at their frame
    centres on the output's time axis, ``out_hop`` output samples apart
    (``centred_resize``): with the exact output length, input frame ``k``
    and output frame ``k`` cover the same stretch of audio.
    """
    if out_hop is None:
        r1 = linear_resize(env_in, n_out, start, stop)
        r2 = linear_resize(env_out, n_out, start, stop)
    else:
        r1 = centred_resize(env_in, out_hop, start, stop)
        r2 = centred_resize(env_out, out_hop, start, stop)
    return np.power(r1, 1 - rate) * np.power(np.maximum(r2, RMS_FLOOR), rate - 1)


def level_gain(peak: float, normalize: bool) -> float:
    """Peak to 0.99 (normalize) or upstream's guard: only scale down a peak above 0.99."""
    if peak <= 0:
        return 1.0
    if normalize:
        return OUTPUT_PEAK / peak
    return OUTPUT_PEAK / peak if peak > OUTPUT_PEAK else 1.0


def fix_length(x: np.ndarray, n: int) -> np.ndarray:
    """Cut or zero-pad ``x`` to exactly ``n`` samples."""
    return x[:n] if x.shape[0] >= n else np.pad(x, (0, n - x.shape[0]))
