"""engines.core.audio: decoding every supported format, bad-file reasons, streaming, writing."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from engines.core.audio import (
    AUDIO_EXTENSIONS,
    WRITE_FORMATS,
    iter_audio,
    load_audio,
    probe_audio,
    resample,
    write_audio,
)
from engines.core.errors import AudioDecodeError, InvalidInputError


def _signal(sr: int, seconds: float, channels: int) -> np.ndarray:
    """A chirp-plus-tone test signal; channel 2 differs from channel 1."""
    t = np.arange(int(sr * seconds)) / sr
    a = 0.4 * np.sin(2 * np.pi * (220 + 200 * t) * t) + 0.1 * np.sin(2 * np.pi * 660 * t)
    if channels == 1:
        return a.astype(np.float32)
    b = 0.3 * np.sin(2 * np.pi * 330 * t)
    return np.stack([a, b], axis=1).astype(np.float32)


def _best_correlation(y: np.ndarray, ref: np.ndarray, max_lag: int = 4000) -> float:
    """Peak normalised cross-correlation of a middle window (codecs add delay)."""
    n = min(len(y), len(ref))
    seg = ref[n // 4 : n // 4 + 4000]
    best = 0.0
    win = y[max(0, n // 4 - max_lag) : n // 4 + 4000 + max_lag]
    c = np.correlate(win, seg, "valid")
    energy = np.sqrt(np.convolve(win**2, np.ones(len(seg)), "valid") * np.sum(seg**2)) + 1e-12
    best = float(np.max(c / energy))
    return best


def _write_av_container(path: Path, x: np.ndarray, sr: int, fmt: str, codec: str, with_video: bool) -> None:
    import av

    planar = np.ascontiguousarray((x[None, :] if x.ndim == 1 else x.T), dtype=np.float32)
    layout = "mono" if planar.shape[0] == 1 else "stereo"
    with av.open(str(path), "w", format=fmt) as c:
        vs = None
        if with_video:
            vs = c.add_stream("mpeg4", rate=5)
            vs.width, vs.height, vs.pix_fmt = 32, 32, "yuv420p"
        a = c.add_stream(codec, rate=sr, layout=layout)
        a.bit_rate = 128000  # wmav2 will not open without one
        for start in range(0, planar.shape[1], sr):
            fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar[:, start : start + sr]), format="fltp", layout=layout)
            fr.sample_rate, fr.pts = sr, start
            for pkt in a.encode(fr):
                c.mux(pkt)
        for pkt in a.encode(None):
            c.mux(pkt)
        if vs is not None:
            for i in range(5):
                vf = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 40, np.uint8), format="rgb24")
                for pkt in vs.encode(vf):
                    c.mux(pkt)
            for pkt in vs.encode(None):
                c.mux(pkt)


# (file name, writer, sample rate, channels)
CASES = [
    ("a.wav", "sf", 16000, 1),
    ("b.flac", "sf", 44100, 2),
    ("c.ogg", "sf", 22050, 1),
    ("d.mp3", "api", 24000, 2),
    ("e.m4a", "api", 48000, 1),
    ("f.aac", "api", 32000, 2),
    ("g.opus", "api", 48000, 2),
    ("h.mp4", ("mp4", "aac", True), 44100, 2),
    ("i.mkv", ("matroska", "libopus", True), 48000, 1),
    ("j.webm", ("webm", "libopus", False), 48000, 1),
    ("k.aiff", "sf", 22050, 1),
    ("l.wma", ("asf", "wmav2", False), 44100, 2),
    ("m.mov", ("mov", "aac", True), 22050, 1),
]


@pytest.mark.parametrize("name,writer,sr,channels", CASES, ids=[c[0] for c in CASES])
def test_decode_every_format(tmp_path: Path, name: str, writer, sr: int, channels: int) -> None:
    import soundfile as sf

    seconds = 1.5
    x = _signal(sr, seconds, channels)
    path = tmp_path / name
    assert path.suffix in AUDIO_EXTENSIONS
    if writer == "sf":
        sf.write(str(path), x, sr)
    elif writer == "api":
        write_audio(path, x, sr)
    else:
        _write_av_container(path, x, sr, *writer)

    info = probe_audio(path)
    assert info.sample_rate == sr
    assert info.channels == channels
    assert info.duration == pytest.approx(seconds, abs=0.15)

    y, rate = load_audio(path)  # mono mix at the native rate
    assert rate == sr and y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) / sr - seconds) < 0.1
    ref = x if channels == 1 else x.mean(axis=1)
    assert _best_correlation(y, ref) > 0.95

    y16, rate16 = load_audio(path, sr=16000)
    assert rate16 == 16000 and abs(len(y16) / 16000 - len(y) / sr) < 0.01

    if channels == 2:
        both, _ = load_audio(path, mono=False)
        assert both.shape[1] == 2
        assert _best_correlation(both[:, 1], x[:, 1]) > 0.95


def _zero_hz_wav(path: Path) -> None:
    import soundfile as sf

    sf.write(str(path), np.zeros(800, np.float32), 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[24:28] = struct.pack("<I", 0)  # sample rate
    data[28:32] = struct.pack("<I", 0)  # byte rate
    path.write_bytes(bytes(data))


def _video_without_audio(path: Path) -> None:
    import av

    with av.open(str(path), "w") as c:
        vs = c.add_stream("mpeg4", rate=5)
        vs.width, vs.height, vs.pix_fmt = 32, 32, "yuv420p"
        for _ in range(3):
            for pkt in vs.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")):
                c.mux(pkt)
        for pkt in vs.encode(None):
            c.mux(pkt)


def _make_bad(kind: str, tmp: Path) -> Path:
    import soundfile as sf

    if kind == "missing":
        return tmp / "nothing_here.wav"
    if kind == "empty":
        p = tmp / "empty.mp3"
        p.write_bytes(b"")
        return p
    if kind == "zero_length":
        p = tmp / "zero.wav"
        sf.write(str(p), np.zeros(0, np.float32), 16000)
        return p
    if kind == "text":
        p = tmp / "notes.wav"
        p.write_text("these are my notes, not audio\n" * 20)
        return p
    if kind == "corrupt":
        p = tmp / "broken.m4a"
        write_audio(p, _signal(16000, 2.0, 1), 16000)
        p.write_bytes(p.read_bytes()[:600])
        return p
    if kind == "zero_hz":
        p = tmp / "zerohz.wav"
        _zero_hz_wav(p)
        return p
    if kind == "zero_hz_flac":
        p = tmp / "zerohz.flac"
        sf.write(str(p), _signal(16000, 0.5, 1), 16000)
        data = bytearray(p.read_bytes())
        assert data[:4] == b"fLaC"
        data[18], data[19], data[20] = 0, 0, data[20] & 0x0F  # STREAMINFO sample rate := 0
        p.write_bytes(bytes(data))
        return p
    if kind == "aiff_zero_length":
        p = tmp / "nothing.aiff"
        sf.write(str(p), np.zeros(0, np.float32), 22050, format="AIFF")
        return p
    if kind == "no_audio_video":
        p = tmp / "silent_film.mp4"
        _video_without_audio(p)
        return p
    raise AssertionError(kind)


BAD = {
    "missing": "does not exist",
    "empty": "empty (0 bytes)",
    "zero_length": "zero-length",
    "text": "not audio",
    "corrupt": "corrupt",
    "zero_hz": "0 Hz",
    "zero_hz_flac": "0 Hz",
    "aiff_zero_length": "zero-length",
    "no_audio_video": "no audio track",
}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_files_give_precise_reasons(tmp_path: Path, kind: str) -> None:
    path = _make_bad(kind, tmp_path)
    with pytest.raises(AudioDecodeError) as err:
        probe_audio(path)
    assert BAD[kind] in err.value.message
    assert path.name in err.value.message
    with pytest.raises(AudioDecodeError):
        load_audio(path)


def test_streaming_equals_whole_file(tmp_path: Path) -> None:
    import soundfile as sf

    sr = 44100
    x = _signal(sr, 7.3, 2)
    path = tmp_path / "long.flac"
    sf.write(str(path), x, sr, subtype="PCM_24")
    whole = sf.read(str(path), dtype="float32")[0].mean(axis=1)

    blocks = list(iter_audio(path, block_seconds=1.0))
    assert len(blocks) >= 7 and max(len(b) for b in blocks) <= sr * 1.01
    np.testing.assert_allclose(np.concatenate(blocks), whole, atol=1e-6)

    # streaming resample == whole-array resample (apart from float rounding)
    streamed = np.concatenate(list(iter_audio(path, sr=16000, block_seconds=0.7)))
    direct = resample(whole, sr, 16000)
    assert len(streamed) == len(direct) == round(len(whole) * 16000 / sr)
    np.testing.assert_allclose(streamed, direct, atol=2e-4)

    # PyAV path streams too (m4a is not readable by libsndfile)
    m4a = write_audio(tmp_path / "long.m4a", x, sr)
    av_blocks = list(iter_audio(m4a, block_seconds=1.0))
    assert len(av_blocks) >= 7
    assert np.concatenate(av_blocks).shape == load_audio(m4a)[0].shape


def test_resample_length_and_identity() -> None:
    x = _signal(48000, 1.0, 1)
    y = resample(x, 48000, 16000)
    assert len(y) == 16000 and y.dtype == np.float32
    assert resample(x, 16000, 16000) is not None and len(resample(x, 16000, 16000)) == len(x)


@pytest.mark.parametrize("fmt", WRITE_FORMATS)
def test_write_audio_round_trip(tmp_path: Path, fmt: str) -> None:
    sr = 24000
    x = _signal(sr, 1.0, 2)
    out = write_audio(tmp_path / f"out.{fmt}", x, sr)
    assert out.exists() and out.stat().st_size > 100
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]  # no temp left behind
    y, rate = load_audio(out, sr=sr, mono=False)
    assert rate == sr and y.shape[1] == 2
    assert abs(len(y) - len(x)) < 0.1 * sr
    for ch in range(2):
        assert _best_correlation(y[:, ch], x[:, ch]) > 0.95

    # explicit fmt overrides the extension
    other = write_audio(tmp_path / f"named_{fmt}.bin", x[:, 0], sr, fmt=fmt)
    assert probe_audio(other).channels == 1


def test_write_audio_rejects_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="unknown output format"):
        write_audio(tmp_path / "x.xyz", np.zeros(100, np.float32), 16000)
    with pytest.raises(InvalidInputError):
        write_audio(tmp_path / "x.wav", np.zeros(100, np.float32), 16000, fmt="wma")
    assert not list(tmp_path.iterdir())
