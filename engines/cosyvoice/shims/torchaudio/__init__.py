"""VoiceLab's stand-in for the torchaudio calls upstream CosyVoice makes.

Upstream imports torchaudio for: ``load`` (a path or file object, any
``backend``), ``save``, ``info``, ``transforms.Resample``,
``transforms.MelSpectrogram`` / ``Spectrogram`` and
``compliance.kaldi.fbank``. This package gives exactly those, on
soundfile (and PyAV through the studio's decoder for other formats) and
plain torch, with torchaudio's shapes, dtypes and lengths: ``load`` returns
float32 ``[channels, frames]`` in [-1, 1]; ``Resample`` is torchaudio's
windowed-sinc resampler (Hann window, 6 zero crossings, roll-off 0.99), so
its output has ``ceil(n * new / orig)`` samples like torchaudio's.

It is only put on an upstream process's path when the real torchaudio
cannot be imported (see ``engines.cosyvoice.runtime``).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any

from . import compliance, transforms  # noqa: F401  (upstream reaches them as attributes)

__version__ = "0.0.0+voicelab"
VOICELAB_SHIM = True


@dataclass
class AudioMetaData:
    sample_rate: int
    num_frames: int
    num_channels: int
    bits_per_sample: int
    encoding: str


def _source(uri: Any) -> Any:
    if isinstance(uri, (str, os.PathLike)):
        return os.fspath(uri)
    if isinstance(uri, (bytes, bytearray)):
        return io.BytesIO(uri)
    return uri  # a file object


def _decode_other(uri: Any) -> tuple[Any, int]:
    """Formats libsndfile cannot read (m4a, opus, ...) through the studio's PyAV decoder."""
    import tempfile

    from engines.core.audio import load_audio

    if isinstance(uri, str):
        data, sr = load_audio(uri, mono=False)
        return data, sr
    with tempfile.NamedTemporaryFile(suffix=".bin") as tmp:
        tmp.write(uri.read())
        tmp.flush()
        return load_audio(tmp.name, mono=False)


def load(uri: Any, frame_offset: int = 0, num_frames: int = -1, normalize: bool = True,
         channels_first: bool = True, format: str | None = None, buffer_size: int = 4096,
         backend: str | None = None) -> tuple[Any, int]:
    """(waveform float32 [channels, frames], sample_rate), like ``torchaudio.load``."""
    import numpy as np
    import soundfile as sf
    import torch

    src = _source(uri)
    try:
        data, sr = sf.read(src, start=frame_offset, frames=num_frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        if hasattr(src, "seek"):
            src.seek(0)
        data, sr = _decode_other(src)
        data = np.asarray(data, dtype=np.float32)
        data = data[:, None] if data.ndim == 1 else data
        end = None if num_frames < 0 else frame_offset + num_frames
        data = data[frame_offset:end]
    wav = torch.from_numpy(np.ascontiguousarray(data.T if channels_first else data))
    return wav, int(sr)


def save(uri: Any, src: Any, sample_rate: int, channels_first: bool = True, format: str | None = None,
         encoding: str | None = None, bits_per_sample: int | None = None, buffer_size: int = 4096,
         backend: str | None = None, compression: Any = None) -> None:
    """Write a [channels, frames] (or [frames, channels]) float tensor, like ``torchaudio.save``."""
    import soundfile as sf

    data = src.detach().cpu().float().numpy()
    if data.ndim == 1:
        data = data[None, :] if channels_first else data[:, None]
    if channels_first:
        data = data.T
    subtype = {8: "PCM_U8", 16: "PCM_16", 24: "PCM_24", 32: "PCM_32"}.get(bits_per_sample or 0)
    if encoding in ("PCM_F", "float"):
        subtype = "FLOAT"
    fmt = format
    if fmt is None and isinstance(uri, (str, os.PathLike)):
        fmt = os.path.splitext(os.fspath(uri))[1].lstrip(".") or "wav"
    sf.write(_source(uri), data, int(sample_rate), subtype=subtype, format=(fmt or "wav").upper())


def info(uri: Any, format: str | None = None, buffer_size: int = 4096, backend: str | None = None) -> AudioMetaData:
    """Header facts of an audio file, like ``torchaudio.info``."""
    import soundfile as sf

    meta = sf.info(_source(uri))
    bits = {"PCM_U8": 8, "PCM_S8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32, "FLOAT": 32, "DOUBLE": 64}
    encoding = "PCM_F" if meta.subtype in ("FLOAT", "DOUBLE") else ("PCM_S" if meta.subtype.startswith("PCM") else meta.subtype)
    return AudioMetaData(int(meta.samplerate), int(meta.frames), int(meta.channels), bits.get(meta.subtype, 0), encoding)


def list_audio_backends() -> list[str]:
    return ["soundfile"]
