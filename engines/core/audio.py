"""Audio I/O for the whole studio: probe, decode (whole or streaming), resample, write.

Decoding tries soundfile (libsndfile: wav/flac/ogg/mp3/aiff, fast and exact)
and falls back to PyAV, whose wheel carries its own ffmpeg libraries, for
everything else (m4a/aac/opus/wma and the audio track of videos). We never
shell out to a system ffmpeg and never import torchaudio.

Arrays are float32; mono audio is 1-D ``(n,)``, multichannel audio is
``(n, channels)`` like soundfile. Resampling uses soxr (HQ); the streaming
path uses ``soxr.ResampleStream`` so a two-hour file is never held whole.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from engines.core.atomic import atomic_path
from engines.core.audio_headers import (
    aiff_header_rate,
    flac_header_rate,
    looks_like_text,
    sniff,
    wav_declared_frames,
    wav_header_rate,
)
from engines.core.errors import AudioDecodeError, InvalidInputError
from engines.core.messages import known_text, msg

VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".webm", ".mov"})
AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".opus", ".wma", ".aiff", ".aif"} | VIDEO_EXTENSIONS
)
# Formats write_audio can produce, keyed by the name used for ``fmt``/the extension.
WRITE_FORMATS = ("wav", "flac", "ogg", "mp3", "m4a", "aac", "opus")

_RESAMPLE_QUALITY = "HQ"


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, as far as the container/header tells us."""

    path: str
    sample_rate: int
    channels: int
    frames: int  # exact for soundfile; estimated from the container duration for PyAV
    duration: float  # seconds
    format: str  # container, e.g. "WAV", "mp4"
    codec: str  # e.g. "PCM_16", "aac"
    backend: str  # "soundfile" or "av"
    declared_frames: int = 0  # what a WAV header claims when the file holds less (a truncated file)

    @property
    def truncated(self) -> bool:
        return self.declared_frames > self.frames

    def length_note(self) -> str:
        """" (the file is truncated: its header declares 12.0 s)" for truncated files, else ""."""
        if not self.truncated or not self.sample_rate:
            return ""
        return f" (the file is truncated: its header declares {self.declared_frames / self.sample_rate:.3f} s)"


def require_duration(info: AudioInfo, minimum: float, stage: str) -> None:
    """Raise a clear InvalidInputError when ``info``'s audio is shorter than ``stage`` needs."""
    if info.duration < minimum:
        raise InvalidInputError(msg("audio.too_short", name=Path(info.path).name, stage=known_text("for", stage),
                                    seconds=info.duration, note=info.length_note(), minimum=minimum))


# ---------------------------------------------------------------------------
# probing


def _fail(path: Path, reason: str, hint: str = "") -> AudioDecodeError:
    """The decode error; fixed reasons and hints come out translated (``audio.reason.*``/``audio.hint.*``)."""
    return AudioDecodeError(msg("audio.cannot_decode", name=path.name, reason=known_text("audio.reason", reason)),
                            known_text("audio.hint", hint))


_CONVERT_HINT = "Convert it to WAV or FLAC with an audio editor, or remove it from the input."


def probe_audio(path: str | os.PathLike) -> AudioInfo:
    """Describe ``path`` or raise AudioDecodeError saying precisely why it is unusable.

    The first samples are decoded too, so a file that passes here will
    normally decode: a readable header over garbage data is reported as
    corrupt now rather than halfway through an import.
    """
    p = Path(path)
    if not p.exists():
        raise _fail(p, "the file does not exist", msg("audio.hint.check_path", path=str(p)))
    if p.is_dir():
        raise _fail(p, "it is a folder, not a file")
    size = p.stat().st_size
    if size == 0:
        raise _fail(p, "the file is empty (0 bytes)", "Re-export or re-download it.")
    with open(p, "rb") as fh:
        head = fh.read(4096)
    for header_rate in (wav_header_rate(head), flac_header_rate(head), aiff_header_rate(head)):
        if header_rate == 0:
            raise _fail(p, "its header declares a sample rate of 0 Hz", _CONVERT_HINT)

    info = _probe_soundfile(p)
    if info is None:
        info = _probe_av(p, head)
    declared = wav_declared_frames(head)
    if info.backend == "soundfile" and declared > info.frames:
        info = dataclasses.replace(info, declared_frames=declared)
    if info.sample_rate <= 0:
        raise _fail(p, "its header declares a sample rate of 0 Hz", _CONVERT_HINT)
    if info.frames <= 0 and info.backend == "soundfile":
        raise _fail(p, "it contains no audio samples (zero-length)" + info.length_note(),
                    "Re-export it with some audio in it.")
    return info


def _probe_soundfile(p: Path) -> AudioInfo | None:
    """AudioInfo via libsndfile, or None when libsndfile cannot read the file."""
    import soundfile as sf

    try:
        with sf.SoundFile(str(p)) as f:
            rate, channels, frames, fmt, subtype = int(f.samplerate), int(f.channels), int(f.frames), f.format, f.subtype
            first = f.read(min(frames, 4096), dtype="float32") if rate > 0 and frames > 0 else None
    except Exception:  # libsndfile refuses: let PyAV try (and explain)
        return None
    if first is None:
        return AudioInfo(str(p), rate, channels, frames, 0.0, fmt, subtype, "soundfile")
    _check_finite(p, first, 0, rate)
    return AudioInfo(str(p), rate, channels, frames, frames / rate, fmt, subtype, "soundfile")


def _check_finite(p: Path, block: np.ndarray, offset: int, rate: int) -> None:
    """Refuse NaN/infinite samples (a float file gone bad): they would poison every step after."""
    bad = ~np.isfinite(block)
    if bad.any():
        first = offset + int(np.argmax(bad.reshape(block.shape[0], -1).any(axis=1)))
        raise _fail(p, f"it holds non-finite samples (NaN or infinity), the first at {first / max(1, rate):.3f} s",
                    "The file is corrupt (a float WAV with invalid values): re-export it from the source.")


def _probe_av(p: Path, head: bytes) -> AudioInfo:
    import av

    kind = sniff(head)
    try:
        container = av.open(str(p), "r")
    except (av.error.InvalidDataError, av.error.EOFError) as exc:
        if kind:
            raise _fail(p, f"the data is corrupt or truncated (looks like {kind} but cannot be parsed)",
                        _CONVERT_HINT) from exc
        if looks_like_text(head):
            raise _fail(p, "it is not audio (it is a text file)", "Select an audio file.") from exc
        raise _fail(p, "it is not audio (unrecognised file format)", "Select an audio file.") from exc
    except av.error.FFmpegError as exc:
        raise _fail(p, f"the decoder refused it ({exc})", _CONVERT_HINT) from exc
    with container:
        if not container.streams.audio:
            if container.streams.video:
                raise _fail(p, "the video has no audio track", "Use a video that has sound, or extract its audio.")
            raise _fail(p, "it contains no audio stream", "Select an audio file.")
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        rate = int(ctx.sample_rate or stream.rate or 0)
        if rate <= 0:
            raise _fail(p, "its header declares a sample rate of 0 Hz", _CONVERT_HINT)
        channels = int(ctx.channels or 0)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        else:
            duration = 0.0
        got = 0
        try:
            for frame in container.decode(stream):
                got += frame.samples
                channels = channels or len(frame.layout.channels)
                if got >= 4096:
                    break
        except av.error.FFmpegError as exc:
            raise _fail(p, f"the audio data is corrupt ({exc.strerror or exc})", _CONVERT_HINT) from exc
        if got == 0:
            if kind is None and looks_like_text(head):
                raise _fail(p, "it is not audio (it is a text file)", "Select an audio file.")
            raise _fail(p, "it contains no audio samples (zero-length or corrupt data)", _CONVERT_HINT)
        fmt = container.format.name.split(",")[0]
        return AudioInfo(str(p), rate, channels, int(round(duration * rate)), duration, fmt, ctx.name, "av")


# ---------------------------------------------------------------------------
# decoding


def _to_float_blocks_soundfile(p: Path, block_frames: int) -> Iterator[np.ndarray]:
    import soundfile as sf

    with sf.SoundFile(str(p)) as f:
        while True:
            try:
                block = f.read(block_frames, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise _fail(p, f"the audio data is corrupt after {f.tell() / f.samplerate:.1f} s ({exc})",
                            _CONVERT_HINT) from exc
            if block.shape[0] == 0:
                return
            yield block


def _to_float_blocks_av(p: Path, block_frames: int) -> Iterator[np.ndarray]:
    """Decoded audio as (n, channels) float32 blocks of about ``block_frames``."""
    import av

    pending: list[np.ndarray] = []
    pending_n = 0
    with av.open(str(p), "r") as container:
        stream = container.streams.audio[0]
        channels = None
        resampler = None
        try:
            for frame in container.decode(stream):
                if resampler is None:
                    # Format conversion only (to planar float); rate and layout stay.
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=frame.sample_rate)
                    channels = len(frame.layout.channels)
                for out in resampler.resample(frame):
                    arr = out.to_ndarray().reshape(channels, -1).T
                    pending.append(np.ascontiguousarray(arr, dtype=np.float32))
                    pending_n += arr.shape[0]
                if pending_n >= block_frames:
                    yield np.concatenate(pending)
                    pending, pending_n = [], 0
            if resampler is not None:
                for out in resampler.resample(None):
                    pending.append(np.ascontiguousarray(out.to_ndarray().reshape(channels, -1).T, dtype=np.float32))
        except av.error.FFmpegError as exc:
            raise _fail(p, f"the audio data is corrupt ({exc.strerror or exc})", _CONVERT_HINT) from exc
    if pending:
        yield np.concatenate(pending)


def iter_audio(
    path: str | os.PathLike,
    sr: int | None = None,
    block_seconds: float = 30.0,
    mono: bool = True,
) -> Iterator[np.ndarray]:
    """Decode ``path`` block by block (about ``block_seconds`` each), optionally resampled.

    Memory stays bounded by the block size whatever the file length. The
    concatenation of the blocks equals ``load_audio(path, sr, mono)``.
    Raises AudioDecodeError (before the first block) for unusable files.
    """
    p = Path(path)
    return _iter_decoded(p, probe_audio(p), sr, block_seconds, mono)


def _iter_decoded(p: Path, info: AudioInfo, sr: int | None, block_seconds: float, mono: bool) -> Iterator[np.ndarray]:
    src_rate = info.sample_rate
    block_frames = max(1024, int(block_seconds * src_rate))
    blocks = (_to_float_blocks_soundfile if info.backend == "soundfile" else _to_float_blocks_av)(p, block_frames)
    stream = None
    decoded = 0
    for block in blocks:
        _check_finite(p, block, decoded, src_rate)
        decoded += block.shape[0]
        if mono:
            block = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
        if sr and sr != src_rate:
            if stream is None:
                import soxr

                nch = 1 if block.ndim == 1 else block.shape[1]
                stream = soxr.ResampleStream(src_rate, sr, nch, dtype="float32", quality=_RESAMPLE_QUALITY)
            block = stream.resample_chunk(np.ascontiguousarray(block), last=False)
        if block.shape[0]:
            yield np.ascontiguousarray(block, dtype=np.float32)
    if stream is not None:
        shape = (0,) if mono else (0, info.channels or 1)
        tail = stream.resample_chunk(np.zeros(shape, dtype=np.float32), last=True)
        if tail.shape[0]:
            yield np.ascontiguousarray(tail, dtype=np.float32)


def load_audio(path: str | os.PathLike, sr: int | None = None, mono: bool = True) -> tuple[np.ndarray, int]:
    """Decode the whole file to float32 (mono mixed by averaging channels); resample when ``sr``."""
    info = probe_audio(path)
    parts = list(_iter_decoded(Path(path), info, sr, 60.0, mono))
    rate = int(sr) if sr else info.sample_rate
    if not parts:
        raise _fail(Path(path), "it contains no audio samples (zero-length)")
    return (parts[0] if len(parts) == 1 else np.concatenate(parts)), rate


def check_audio_file(path: str | os.PathLike, minimum: float, stage: str) -> AudioInfo:
    """Decode all of ``path`` once (bounded memory) and refuse it when unusable or too short for ``stage``."""
    info = probe_audio(path)
    require_duration(info, minimum, stage)
    for _ in _iter_decoded(Path(path), info, None, 30.0, True):
        pass
    return info


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """High-quality (soxr HQ) resampling of a whole array; a copy-free no-op when rates match."""
    if int(sr_in) == int(sr_out):
        return np.asarray(x, dtype=np.float32)
    import soxr

    return soxr.resample(np.asarray(x, dtype=np.float32), int(sr_in), int(sr_out), quality=_RESAMPLE_QUALITY)


def as_mono(audio: object, what: str, *, keep_float64: bool = False) -> np.ndarray:
    """1-D float samples for an analysis step (``what`` names the step in errors).

    Takes ``(n,)``, ``(1, n)`` or ``(n, 1)`` numpy arrays or torch tensors of
    float samples; other shapes, integer samples, empty and non-finite audio
    are refused with what to do. float32 out, or float64 kept when the input
    is float64 and ``keep_float64`` (Praat and WORLD work in float64, as
    upstream RVC feeds them).
    """
    if hasattr(audio, "detach"):  # a torch tensor (without importing torch here)
        audio = audio.detach().cpu().numpy()  # type: ignore[attr-defined]
    x = np.asarray(audio)
    if x.ndim == 2 and 1 in x.shape:
        x = x.reshape(-1)
    if x.ndim != 1:
        raise InvalidInputError(f"{what} needs mono audio; got an array of shape {x.shape}.",
                                "Mix down to one channel and resample to 16 kHz first.")
    if not np.issubdtype(x.dtype, np.floating):
        raise InvalidInputError(f"{what} needs float audio in -1..1, got {x.dtype} samples.",
                                "Decode with engines.core.audio (load_audio / iter_audio).")
    if x.size == 0:
        raise InvalidInputError(f"{what}: the audio is empty.", "Give at least a few milliseconds of audio.")
    if not np.isfinite(x).all():
        raise InvalidInputError(f"{what}: the audio contains NaN or infinite samples.",
                                "Check the decoder or the previous step.")
    return np.ascontiguousarray(x, dtype=np.float64 if keep_float64 and x.dtype == np.float64 else np.float32)


# ---------------------------------------------------------------------------
# writing

# fmt -> (container format for PyAV, codec, supported rates or None = any)
_AV_WRITERS: dict[str, tuple[str, str, tuple[int, ...] | None]] = {
    "mp3": ("mp3", "libmp3lame", (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)),
    "m4a": ("ipod", "aac", (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)),
    "aac": ("adts", "aac", (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)),
    "opus": ("opus", "libopus", (8000, 12000, 16000, 24000, 48000)),
}
_SF_WRITERS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS")}


def _closest_supported(sr: int, rates: tuple[int, ...]) -> int:
    """The lowest supported rate >= sr (no quality loss), else the highest."""
    higher = [r for r in rates if r >= sr]
    return min(higher) if higher else max(rates)


def write_audio(
    path: str | os.PathLike,
    x: np.ndarray,
    sr: int,
    fmt: str | None = None,
    subtype: str | None = None,
) -> Path:
    """Write ``x`` (float, (n,) or (n, ch)) atomically; the format comes from ``fmt`` or the extension.

    wav/flac/ogg(vorbis) go through soundfile (``subtype`` e.g. "FLOAT" for wav);
    mp3/m4a(aac)/aac(adts)/opus through PyAV. Codecs that cannot carry ``sr``
    (opus, mp3 above 48 kHz) get the audio resampled to the nearest rate they accept.
    """
    target = Path(path)
    name = (fmt or target.suffix.lstrip(".")).lower()
    if name not in WRITE_FORMATS:
        raise InvalidInputError(
            f"Cannot write audio as '{name or target.name}': unknown output format.",
            f"Use one of: {', '.join(WRITE_FORMATS)}.",
        )
    sr = int(sr)
    if sr <= 0:
        raise InvalidInputError(f"Cannot write audio at {sr} Hz.", "Give a positive sample rate.")
    data = np.asarray(x, dtype=np.float32)
    if data.ndim not in (1, 2):
        raise InvalidInputError(f"Audio must be 1-D or (samples, channels); got shape {data.shape}.")
    with atomic_path(target, need_bytes=_size_estimate(data, name, subtype)) as tmp:
        if name in _SF_WRITERS:
            import soundfile as sf

            container, default_subtype = _SF_WRITERS[name]
            sf.write(str(tmp), data, sr, format=container, subtype=subtype or default_subtype)
        else:
            _write_av(tmp, data, sr, *_AV_WRITERS[name])
    return target


def _size_estimate(data: np.ndarray, fmt: str, subtype: str | None) -> int:
    """About how many bytes ``data`` takes as ``fmt`` (for the free-space check before writing)."""
    per_sample = {"wav": 4 if subtype in ("FLOAT", "PCM_32") else 2, "flac": 2}.get(fmt, 0.25)
    return int(data.size * per_sample) + 4096


def _write_av(tmp: Path, data: np.ndarray, sr: int, container_fmt: str, codec: str,
              rates: tuple[int, ...] | None) -> None:
    import av

    out_rate = sr if rates is None or sr in rates else _closest_supported(sr, rates)
    if out_rate != sr:
        data = resample(data, sr, out_rate)
    planar = data[None, :] if data.ndim == 1 else data.T
    planar = np.ascontiguousarray(np.clip(planar, -1.0, 1.0), dtype=np.float32)
    layout = "mono" if planar.shape[0] == 1 else "stereo" if planar.shape[0] == 2 else None
    if layout is None:
        raise InvalidInputError(f"{codec} output supports mono or stereo, not {planar.shape[0]} channels.")
    with av.open(str(tmp), "w", format=container_fmt) as container:
        stream = container.add_stream(codec, rate=out_rate, layout=layout)
        step = out_rate  # feed one second at a time; the encoder re-chunks to its frame size
        pts = 0
        for start in range(0, planar.shape[1], step):
            chunk = planar[:, start : start + step]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout=layout)
            frame.sample_rate = out_rate
            frame.pts = pts
            pts += chunk.shape[1]
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
