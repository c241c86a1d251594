"""Converting files: in memory when short, streamed through temp files when long.

``convert_file`` decodes, converts and writes one file atomically. Inputs
longer than ``VCOptions.stream_above_seconds`` take the bounded-memory path:
decoded, filtered and converted audio live in raw temp files beside the
output, the rms mix and resampling run block by block, and the encoder is
fed block by block, so memory does not grow with the input's length.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from engines.core.errors import InvalidInputError
from engines.core.hooks import Hooks, ensure_hooks
from engines.core.messages import msg
from engines.rvc.infer.buffers import RawFile
from engines.rvc.infer.pipeline import Models, StageTimes, VCOptions, convert_array, run_segments
from engines.rvc.infer.steps import SR16, fix_length, highpass, input_divisor, level_gain, rms_envelope, rms_gain

FILTER_BLOCK = 30 * SR16
FILTER_CONTEXT = SR16


@dataclass
class FileResult:
    output: Path
    sample_rate: int
    input_seconds: float
    output_samples: int
    streamed: bool
    times: dict[str, float]


def convert_file(models: Models, in_path: str | Path, out_path: str | Path, fmt: str, opts: VCOptions,
                 hooks: Hooks | None = None) -> FileResult:
    """Convert one audio file into ``out_path`` (written atomically)."""
    from engines.core.audio import load_audio, probe_audio, write_audio

    hooks = ensure_hooks(hooks)
    times = StageTimes()
    t0 = time.perf_counter()
    info = probe_audio(in_path)
    duration = float(info.duration or 0.0)
    if duration and duration > opts.stream_above_seconds:
        result = _convert_file_streamed(models, Path(in_path), Path(out_path), fmt, opts, hooks, times,
                                        exact_source_frames(info), info.sample_rate)
    else:
        with times("decode"):
            audio, _ = load_audio(in_path, SR16)
        out, sr = convert_array(models, audio, opts, hooks, times)
        if opts.exact_length and (n_src := exact_source_frames(info)):
            out = fix_length(out, round(n_src * sr / info.sample_rate))  # the source's duration, not 16 kHz's
        with times("write"):
            write_audio(out_path, out, sr, fmt)
        result = FileResult(Path(out_path), sr, audio.shape[0] / SR16, int(out.shape[0]), False, times)
    times["total"] = time.perf_counter() - t0
    result.times = dict(times)
    return result


def exact_source_frames(info: Any) -> int:
    """The source's exact frame count when the container states it (soundfile formats), else 0."""
    return int(info.frames) if getattr(info, "backend", "") == "soundfile" and info.frames and info.sample_rate else 0


def _codec_rate(fmt: str, sr: int) -> int:
    """The rate the output codec will carry (mp3/m4a accept a fixed list)."""
    from engines.core import audio as core_audio

    writers = getattr(core_audio, "_AV_WRITERS", {})
    if fmt in writers and writers[fmt][2] is not None and sr not in writers[fmt][2]:
        return core_audio._closest_supported(sr, writers[fmt][2])
    return sr


@contextlib.contextmanager
def open_writer(path: Path, sr: int, fmt: str) -> Iterator[Callable[[np.ndarray], None]]:
    """A block-by-block encoder for wav/flac/ogg (soundfile) and mp3/m4a/aac/opus (PyAV), atomic."""
    from engines.core import audio as core_audio
    from engines.core.atomic import atomic_path

    sf_writers = getattr(core_audio, "_SF_WRITERS", {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"),
                                                     "ogg": ("OGG", "VORBIS")})
    with atomic_path(path) as tmp:
        if fmt in sf_writers:
            import soundfile as sf

            container, subtype = sf_writers[fmt]
            with sf.SoundFile(str(tmp), "w", samplerate=sr, channels=1, format=container, subtype=subtype) as fh:
                yield lambda block: fh.write(np.asarray(block, dtype=np.float32))
        else:
            import av

            container_fmt, codec, _ = core_audio._AV_WRITERS[fmt]
            with av.open(str(tmp), "w", format=container_fmt) as container:
                stream = container.add_stream(codec, rate=sr, layout="mono")
                pts = [0]

                def write(block: np.ndarray) -> None:
                    data = np.ascontiguousarray(np.clip(block, -1, 1)[None, :], dtype=np.float32)
                    frame = av.AudioFrame.from_ndarray(data, format="fltp", layout="mono")
                    frame.sample_rate = sr
                    frame.pts = pts[0]
                    pts[0] += data.shape[1]
                    for packet in stream.encode(frame):
                        container.mux(packet)

                yield write
                for packet in stream.encode(None):
                    container.mux(packet)


def _convert_file_streamed(models: Models, in_path: Path, out_path: Path, fmt: str, opts: VCOptions,
                           hooks: Hooks, times: StageTimes, src_frames: int = 0, src_rate: int = 0) -> FileResult:
    from engines.core.audio import iter_audio

    tgt = int(models.voice.sample_rate)
    tmpdir = Path(tempfile.mkdtemp(prefix=".convert_", dir=out_path.parent if out_path.parent.exists() else None))
    files: list[RawFile] = []

    def raw(name: str, dtype: Any) -> RawFile:
        f = RawFile(tmpdir / name, dtype)
        files.append(f)
        return f

    try:
        decoded = raw("decoded.f32", np.float32)
        peak = 0.0
        with times("decode"):
            for block in iter_audio(in_path, sr=SR16, block_seconds=30.0):
                hooks.check_cancel()
                peak = max(peak, float(np.abs(block).max()) if block.size else 0.0)
                decoded.write(block)
        n = decoded.n
        if n == 0:
            raise InvalidInputError(f"{in_path.name} contains no audio.")
        div = input_divisor(peak)
        filtered = raw("filtered.f64", np.float64)
        with times("filter"):
            for start in range(0, n, FILTER_BLOCK):
                hooks.check_cancel()
                lo, hi = max(0, start - FILTER_CONTEXT), min(n, start + FILTER_BLOCK + FILTER_CONTEXT)
                x = decoded.read(lo, hi)
                if div is not None:
                    x = x / div
                y = highpass(x)
                filtered.write(y[start - lo : start - lo + min(FILTER_BLOCK, n - start)])
        decoded.close()
        os.unlink(decoded.path)
        converted = raw("converted.f32", np.float32)
        run_segments(models, filtered, converted, opts, times, hooks.scaled(0.0, 0.9), whole_f0=False)
        with times("post"):
            env_in = rms_envelope(filtered, SR16) if opts.rms_mix_rate != 1 else None
            env_out = rms_envelope(converted, tgt) if opts.rms_mix_rate != 1 else None
            out_sr = opts.resample_sr if opts.resample_sr and opts.resample_sr >= SR16 else tgt
            out_sr = _codec_rate(fmt, out_sr)
            if not opts.exact_length:
                want = None
            elif src_frames:
                want = round(src_frames * out_sr / src_rate)
            else:
                want = round(n * out_sr / SR16)
            staged = raw("staged.f32", np.float32)
            stream = None
            if out_sr != tgt:
                import soxr

                stream = soxr.ResampleStream(tgt, out_sr, 1, dtype="float32", quality="HQ")
            peak_out = 0.0
            step = tgt * 30
            m = converted.n
            for start in range(0, m, step):
                hooks.check_cancel()
                y = converted.read(start, start + step)
                if env_in is not None:
                    gain = rms_gain(env_in, env_out, m, opts.rms_mix_rate, start, start + y.shape[0],
                                    opts.rms_out_hop(tgt))
                    y = (y * gain).astype(np.float32)
                if stream is not None:
                    y = stream.resample_chunk(y, last=start + step >= m)
                if want is not None:
                    y = y[: max(0, want - staged.n)]
                if y.size:
                    peak_out = max(peak_out, float(np.abs(y).max()))
                    staged.write(y)
            if want is not None and staged.n < want:
                staged.write(np.zeros(want - staged.n, np.float32))
            hooks.progress(0.95, msg("progress.writing_output"))
        with times("write"):
            level = np.float32(level_gain(peak_out, opts.normalize))
            with open_writer(out_path, out_sr, fmt) as write:
                for start in range(0, staged.n, out_sr * 30):
                    hooks.check_cancel()
                    write(staged.read(start, start + out_sr * 30) * level)
        return FileResult(out_path, out_sr, n / SR16, staged.n, True, dict(times))
    finally:
        for f in files:
            with contextlib.suppress(Exception):
                f.close()
        shutil.rmtree(tmpdir, ignore_errors=True)
