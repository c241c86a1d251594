"""Per-clip signal processing for datasets: high-pass, loudness, measurements.

Loudness normalisation is deliberately simple and predictable:
- ``rms`` mode scales the clip so its (unweighted) RMS level equals
  ``target_db`` dBFS — a plain stand-in for LUFS that treats speech well
  enough for training data (typical speech: -20..-23 dBFS RMS);
- ``peak`` mode scales the clip so its sample peak equals ``target_db``;
- in both modes the gain is then limited so the peak never exceeds
  ``peak_ceiling_db`` (no clipping is ever introduced), and clips quieter
  than ``SILENCE_DB`` are left alone (amplifying them only raises noise).
"""

from __future__ import annotations

import numpy as np

SILENCE_DB = -50.0  # RMS below this (dBFS) marks a clip as silent
CLIP_LEVEL = 0.999  # |sample| at or above this counts as a clipped sample
CLIP_MIN_SAMPLES = 3  # this many clipped samples flag a clip as clipped
_FLOOR = 1e-10


def to_mono(x: np.ndarray) -> np.ndarray:
    """Average channels: (n, ch) -> (n,); 1-D input is returned as float32."""
    x = np.asarray(x, dtype=np.float32)
    return x.mean(axis=1, dtype=np.float32) if x.ndim == 2 else x


def peak_linear(x: np.ndarray) -> float:
    return float(np.max(np.abs(x))) if len(x) else 0.0


def db(value: float) -> float:
    """Linear amplitude -> dBFS (floored at -200 dB for digital silence)."""
    return float(20.0 * np.log10(max(float(value), _FLOOR)))


def rms_linear(x: np.ndarray) -> float:
    if not len(x):
        return 0.0
    x64 = np.asarray(x, dtype=np.float64)
    return float(np.sqrt(np.mean(x64 * x64)))


def is_clipped(x: np.ndarray) -> bool:
    """True when the audio hits full scale on several samples (a distorted source)."""
    return int(np.count_nonzero(np.abs(x) >= CLIP_LEVEL)) >= CLIP_MIN_SAMPLES


def is_silent(x: np.ndarray) -> bool:
    return db(rms_linear(x)) < SILENCE_DB


def _butter_highpass(sr: int, cutoff_hz: float, order: int) -> np.ndarray:
    from scipy.signal import butter

    return butter(order, cutoff_hz, btype="highpass", fs=sr, output="sos")


def highpass(x: np.ndarray, sr: int, cutoff_hz: float = 48.0, order: int = 5, zero_phase: bool = True) -> np.ndarray:
    """Butterworth high-pass (RVC uses 5th order at 48 Hz) to remove rumble and DC.

    ``zero_phase`` filters forwards and backwards (no phase shift, no start
    transient on short clips); ``False`` is the causal filter RVC's
    preprocess applies to whole files.
    """
    from scipy.signal import sosfilt, sosfiltfilt

    x = np.asarray(x, dtype=np.float64)
    if cutoff_hz <= 0 or cutoff_hz >= sr / 2 or len(x) == 0:
        return x.astype(np.float32)
    sos = _butter_highpass(sr, cutoff_hz, order)
    if zero_phase:
        padlen = min(len(x) - 1, 3 * (2 * len(sos) + 1))
        y = sosfiltfilt(sos, x, axis=0, padlen=max(0, padlen))
    else:
        y = sosfilt(sos, x, axis=0)
    return y.astype(np.float32)


class StreamingHighpass:
    """The causal high-pass applied block by block (filter state carried over).

    Output over any blocking equals ``highpass(x, sr, zero_phase=False)`` of
    the whole signal, for long inputs that are never held in memory.
    """

    def __init__(self, sr: int, cutoff_hz: float = 48.0, order: int = 5) -> None:
        self.sos = _butter_highpass(sr, cutoff_hz, order)
        self._zi: np.ndarray | None = None

    def process(self, block: np.ndarray) -> np.ndarray:
        from scipy.signal import sosfilt

        x = np.asarray(block, dtype=np.float64)
        if self._zi is None:
            extra = x.shape[1:]  # channels
            self._zi = np.zeros((self.sos.shape[0], 2, *extra))
        y, self._zi = sosfilt(self.sos, x, axis=0, zi=self._zi)
        return y.astype(np.float32)


def normalize_loudness(
    x: np.ndarray,
    mode: str = "rms",
    target_db: float = -20.0,
    peak_ceiling_db: float = -1.0,
) -> np.ndarray:
    """Scale ``x`` to ``target_db`` (RMS or peak, see module doc), never above the ceiling."""
    if mode not in ("rms", "peak"):
        from engines.core.errors import InvalidInputError

        raise InvalidInputError(f"Unknown normalisation mode '{mode}'.", "Use 'rms' or 'peak'.")
    x = np.asarray(x, dtype=np.float32)
    peak = peak_linear(x)
    rms = rms_linear(x)
    if peak <= 0 or db(rms) < SILENCE_DB:
        return x.copy()
    level = rms if mode == "rms" else peak
    gain = 10.0 ** (target_db / 20.0) / level
    ceiling = 10.0 ** (peak_ceiling_db / 20.0)
    gain = min(gain, ceiling / peak)
    return (x * np.float32(gain)).astype(np.float32)
