"""Objective measures of one conversion against its source (the pieces a checkpoint score is made of).

Each function takes plain audio (16 kHz mono float) or text and returns numbers, so they are tested
on synthetic signals: a pure tone against itself has ~0 cents pitch error, against its octave ~1200;
identical transcripts have CER 0.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np

SR = 16000


@dataclass
class PitchFidelity:
    cents: float | None  # median |error| in cents over frames voiced in both (None: no such frame)
    voicing_agreement: float  # share of frames (voiced in either) whose voicing the two agree on
    frames: int  # frames voiced in both


def pitch_fidelity(source_16k: np.ndarray, output_16k: np.ndarray, transpose: float = 0.0,
                   method: str = "pm") -> PitchFidelity:
    """f0 of the output against the source's f0 shifted by ``transpose`` semitones."""
    from engines.rvc.pitch.f0 import extract_f0

    f_src = extract_f0(np.asarray(source_16k, dtype=np.float32), method=method)
    f_out = extract_f0(np.asarray(output_16k, dtype=np.float32), method=method)
    return compare_f0(f_src * 2.0 ** (transpose / 12.0), f_out)


def compare_f0(target_hz: np.ndarray, output_hz: np.ndarray) -> PitchFidelity:
    """Median absolute cents error where both are voiced, and voicing agreement where either is."""
    n = min(len(target_hz), len(output_hz))
    a, b = np.asarray(target_hz[:n], dtype=np.float64), np.asarray(output_hz[:n], dtype=np.float64)
    va, vb = a > 0, b > 0
    either = va | vb
    agreement = float(np.mean(va[either] == vb[either])) if either.any() else 1.0
    both = va & vb
    if not both.any():
        return PitchFidelity(None, round(agreement, 4), 0)
    cents = np.abs(1200.0 * np.log2(b[both] / a[both]))
    return PitchFidelity(round(float(np.median(cents)), 2), round(agreement, 4), int(both.sum()))


def normalise_text(text: str) -> str:
    """Lower case, no punctuation, single spaces: what a character error rate should not count."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    text = "".join(ch if (ch.isalnum() or ch.isspace()) else " " for ch in text)
    return re.sub(r"\s+", " ", text).strip()


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def character_error_rate(reference: str, hypothesis: str) -> float | None:
    """Edits to turn the hypothesis into the reference, per reference character (None: empty reference)."""
    ref, hyp = normalise_text(reference), normalise_text(hypothesis)
    if not ref:
        return None
    return round(edit_distance(ref, hyp) / len(ref), 4)


def log_mel(audio_16k: np.ndarray, n_mels: int = 80) -> np.ndarray:
    """Log mel magnitudes [frames, n_mels] (1024-point FFT, 10 ms hop), as the training's mel loss."""
    import librosa

    spec = np.abs(librosa.stft(np.asarray(audio_16k, dtype=np.float32), n_fft=1024, hop_length=160,
                               win_length=1024, center=True))
    mel = librosa.filters.mel(sr=SR, n_fft=1024, n_mels=n_mels, fmin=0, fmax=SR / 2) @ spec
    return np.log(np.clip(mel, 1e-5, None)).T


def mel_l1(reference_16k: np.ndarray, output_16k: np.ndarray) -> float:
    """Mean absolute difference of log mels over the frames both have."""
    a, b = log_mel(reference_16k), log_mel(output_16k)
    n = min(len(a), len(b))
    if n == 0:
        return float("nan")
    return round(float(np.mean(np.abs(a[:n] - b[:n]))), 5)
