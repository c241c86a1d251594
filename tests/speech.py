"""Real speech for tests, synthesised by Debian's espeak-ng and cached.

``espeak_wav("hello world")`` returns ``(audio float32 mono, sample_rate)``.
Synthesis takes ~0.1 s, but results are cached under
``$VOICELAB_TEST_CACHE`` or ``~/.cache/voicelab-tests`` keyed by the text,
voice, options, rate and espeak-ng version, so repeated test runs reuse
them. When espeak-ng is not installed the calling test is skipped with a
reason saying how to install it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

SKIP_REASON = "espeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng)"


def espeak_binary() -> str | None:
    return shutil.which("espeak-ng")


def _cache_dir() -> Path:
    root = os.environ.get("VOICELAB_TEST_CACHE") or Path.home() / ".cache" / "voicelab-tests"
    path = Path(root) / "espeak"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _espeak_version(binary: str) -> str:
    try:
        return subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _skip(reason: str) -> None:
    import pytest

    pytest.skip(reason)


def espeak_wav(
    text: str,
    voice: str = "en",
    path: str | os.PathLike | None = None,
    sr: int = 16000,
    *,
    speed: int | None = None,
    pitch: int | None = None,
) -> tuple[np.ndarray, int]:
    """Speak ``text`` with espeak-ng ``voice`` (e.g. "en", "en-us+f3", "de") at ``sr`` Hz.

    ``speed`` is words per minute and ``pitch`` 0..99 (espeak-ng's -s / -p).
    If ``path`` is given the audio is also written there as a 16-bit WAV.
    """
    import soundfile as sf

    binary = espeak_binary()
    if binary is None:
        _skip(SKIP_REASON)
    options = []
    if speed is not None:
        options += ["-s", str(int(speed))]
    if pitch is not None:
        options += ["-p", str(int(pitch))]
    key = hashlib.sha256(
        repr((text, voice, options, int(sr), _espeak_version(binary))).encode("utf-8")
    ).hexdigest()[:20]
    cached = _cache_dir() / f"{key}.wav"
    if not cached.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "raw.wav"
            proc = subprocess.run(
                [binary, "-v", voice, *options, "-w", str(raw), text], capture_output=True, text=True, timeout=60
            )
            if proc.returncode != 0 or not raw.is_file():
                _skip(f"espeak-ng failed for voice {voice!r}: {proc.stderr.strip()[:200]}")
            audio, native_sr = sf.read(str(raw), dtype="float32", always_2d=True)
            audio = audio.mean(axis=1)
            if native_sr != sr:
                import soxr

                audio = soxr.resample(audio, native_sr, sr).astype(np.float32)
            part = cached.with_suffix(f".{os.getpid()}.tmp.wav")
            sf.write(str(part), audio, sr, subtype="PCM_16")
            os.replace(part, cached)
    audio, file_sr = sf.read(str(cached), dtype="float32")
    if path is not None:
        shutil.copyfile(cached, path)
    return audio.astype(np.float32), int(file_sr)
