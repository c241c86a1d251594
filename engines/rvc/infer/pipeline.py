"""The RVC conversion pipeline: 16 kHz audio in, the voice's audio out.

It reproduces upstream RVC's ``Pipeline.pipeline`` / ``Pipeline.vc``
(infer/modules/vc/pipeline.py, fp32 settings x_pad=1, x_query=6, x_center=38,
x_max=41) step by step, so that for the same weights, input and noise draws
the samples are upstream's:

1. input peak above 0.95 scaled down to 0.95 (upstream ``vc_single``);
2. zero-phase (filtfilt) 5th-order Butterworth high-pass at 48 Hz;
3. above ``x_max`` seconds, cut points every ``x_center`` s, each at the first
   minimum of ``|moving 160-sample sum|`` within +-``x_query`` s (the sum
   accumulated in upstream's order, so ties resolve identically);
4. reflect padding of ``x_pad`` s on both sides; f0 of the whole padded
   signal, transposed (``f0 * 2**(key/12)`` in float32), coarse pitch on the
   1127 ln(1+f/700) mel scale;
5. per segment: HuBERT features of the whole segment in one pass, retrieval
   blend, features repeated x2 to 100 fps, ``protect`` mixing (< 0.5 only),
   synthesis, the ``x_pad`` s margins cut off;
6. ``rms_mix_rate`` envelope mix over half-second frames (when != 1);
7. resampling to ``resample_sr`` (soxr HQ, as librosa's default).

Fixed on purpose (documented differences):

* **Exact length.** Upstream drops the last frame of every segment whose
  length is an odd number of 10 ms frames (HuBERT's 320-sample framing gives
  one frame less than the f0 track) and cuts ``[x_pad : -x_pad]`` off a
  shorter-than-planned output, so its result is 10-20 ms short and segments
  after an odd one drift by 10 ms each. We keep ``out[t_pad_tgt : t_pad_tgt +
  planned]`` instead: every sample upstream emits is emitted unchanged and
  in place, the frames upstream dropped (already computed by the network,
  from real audio) are kept, and the output is exactly
  ``round(len(audio) * sr / 16000)`` samples. ``exact_length=False`` gives
  upstream's slicing (used by the tests to prove the first point).
* Retrieval: no NaN on an exact index hit (see ``index.blend_retrieval``).
* Output level: peak normalised to 0.99 by default; with ``normalize=False``
  only upstream's anti-clipping (peak above 0.99 scaled down) is applied.
  Upstream converts to int16 itself; we hand float to the encoder.
* Memory: the waveform decoder (HiFi-GAN/NSF body, ~80 MB of activations
  per second of 48 kHz audio) runs over fixed-size overlapping chunks of
  frames (``synthesize_chunked``); prior, flow and NSF excitation still see
  the whole segment and draw noise in upstream's order, so kept samples equal
  the one-pass ones to float rounding (< 1e-5). Fixed chunk shapes also keep
  oneDNN's per-shape primitive cache from growing segment after segment.
* Long inputs (above ``stream_above_seconds``) are processed in blocks of
  whole upstream segments with their f0 computed over the block plus 1 s of
  context, the filter run per 30 s block with 1 s of context, and every
  intermediate kept in temp files: memory is bounded whatever the length.
  Away from block edges the result equals the in-memory path; at a block
  edge only f0 estimators with long-range context (rmvpe/crepe/fcpe) can
  differ slightly.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import numpy as np

from engines.core.messages import msg
from engines.core.errors import InvalidInputError
from engines.core.hooks import Hooks, ensure_hooks

SR16 = 16000
WINDOW = 160  # samples per 10 ms frame at 16 kHz
F0_MIN, F0_MAX = 50.0, 1100.0
PRIOR_NOISE = 0.66666
OUTPUT_PEAK = 0.99
INPUT_PEAK = 0.95
FILTER_BLOCK = 30 * SR16
FILTER_CONTEXT = SR16


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


@dataclass
class VCOptions:
    """What shapes one conversion (the algorithm part of ConvertParams)."""

    transpose: int = 0
    f0_method: str = "rmvpe"
    index_rate: float = 0.75
    filter_radius: int = 3
    rms_mix_rate: float = 0.25
    protect: float = 0.33
    speaker_id: int = 0
    resample_sr: int = 0
    normalize: bool = True
    exact_length: bool = True
    rmvpe_path: str | None = None
    windowing: Windowing = field(default_factory=Windowing)
    stream_above_seconds: float = 150.0  # longer inputs take the bounded-memory path
    decode_chunk_frames: int = 500  # waveform decoder chunk (10 ms frames); 0 = whole segment at once
    decode_context_frames: int = 24  # real neighbours each side of a decoder chunk (receptive field ~16)
    block_seconds: float = 120.0  # audio per f0 block on that path


class StageTimes(dict):
    """Seconds spent per stage (decode, filter, split, f0, hubert, retrieval, synth, post, write)."""

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self[stage] = self.get(stage, 0.0) + time.perf_counter() - t0


# ---------------------------------------------------------------------------
# random-access audio: in memory or in a raw temp file


class Reader(Protocol):
    n: int

    def read(self, start: int, stop: int) -> np.ndarray: ...


class ArrayReader:
    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self.n = int(x.shape[0])

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.x[max(0, start) : max(0, min(stop, self.n))]


class RawFile:
    """A growing file of raw samples; read back with plain reads (no memory map: RSS stays low)."""

    def __init__(self, path: Path, dtype: Any) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.n = 0
        self._fh = open(self.path, "w+b")

    def write(self, x: np.ndarray) -> None:
        data = np.ascontiguousarray(x, dtype=self.dtype)
        self._fh.seek(0, os.SEEK_END)
        self._fh.write(data.tobytes())
        self.n += int(data.shape[0])

    def read(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(0, start), max(0, min(stop, self.n))
        if stop <= start:
            return np.zeros(0, self.dtype)
        self._fh.flush()
        self._fh.seek(start * self.dtype.itemsize)
        return np.frombuffer(self._fh.read((stop - start) * self.dtype.itemsize), dtype=self.dtype).copy()

    def close(self) -> None:
        self._fh.close()


class ListWriter:
    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []
        self.n = 0

    def write(self, x: np.ndarray) -> None:
        self.parts.append(np.asarray(x, dtype=np.float32))
        self.n += int(x.shape[0])

    def array(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.zeros(0, np.float32)


def reflect_indices(idx: np.ndarray, n: int) -> np.ndarray:
    """Source positions of ``np.pad(x, ..., mode="reflect")`` for (possibly out-of-range) positions."""
    idx = np.asarray(idx, dtype=np.int64)
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    j = np.abs(idx) % period
    return np.where(j >= n, period - j, j)


def read_reflect(src: Reader, start: int, stop: int) -> np.ndarray:
    """``np.pad(x, big, "reflect")[big + start : big + stop]`` of the source, read lazily."""
    n = src.n
    if start >= 0 and stop <= n:
        return src.read(start, stop)
    lo, hi = max(0, start), min(n, stop)
    idx = reflect_indices(np.arange(start, stop), n)
    base_lo, base_hi = int(idx.min()), int(idx.max()) + 1
    if hi > lo:
        base_lo, base_hi = min(base_lo, lo), max(base_hi, hi)
    block = src.read(base_lo, base_hi)
    return block[idx - base_lo]


# ---------------------------------------------------------------------------
# numeric building blocks (each mirrors one upstream step)


_HP_CACHE: dict[str, Any] = {}


def highpass_coefficients() -> tuple[np.ndarray, np.ndarray]:
    if "ba" not in _HP_CACHE:
        from scipy import signal

        _HP_CACHE["ba"] = signal.butter(N=5, Wn=48, btype="high", fs=SR16)
    return _HP_CACHE["ba"]


def highpass(x: np.ndarray) -> np.ndarray:
    """Zero-phase 48 Hz high-pass (float64 out, as upstream's filtfilt)."""
    from scipy import signal

    b, a = highpass_coefficients()
    return signal.filtfilt(b, a, x)


def input_divisor(peak: float) -> np.float32 | None:
    """Upstream divides the (float32) input by peak/0.95 when its peak exceeds 0.95 (never scales up)."""
    audio_max = np.float32(peak) / np.float32(INPUT_PEAK)
    return audio_max if audio_max > 1 else None


def split_points(src: Reader, win: Windowing) -> list[int]:
    """Upstream's cut points (in samples of the unpadded filtered audio; not yet frame-aligned)."""
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
        # audio_sum[j] = sum_{i<160} audio_pad80[j + i], accumulated i = 0..159 as upstream does
        padded = read_reflect(src, a - half, b + half)
        acc = np.zeros(b - a, dtype=np.float64)
        for i in range(WINDOW):
            acc += padded[i : i + (b - a)]
        mag = np.abs(acc)
        cuts.append(t - t_query + int(np.argmin(mag)))
    return cuts


def coarse_pitch(f0: np.ndarray) -> np.ndarray:
    """Upstream pipeline's Hz -> 1..255 mapping, computed in the f0 array's own dtype."""
    f0_mel_min = 1127 * np.log(1 + F0_MIN / 700)
    f0_mel_max = 1127 * np.log(1 + F0_MAX / 700)
    f0_mel = 1127 * np.log(1 + f0 / 700)
    voiced = f0_mel > 0
    f0_mel[voiced] = (f0_mel[voiced] - f0_mel_min) * 254 / (f0_mel_max - f0_mel_min) + 1
    f0_mel[f0_mel <= 1] = 1
    f0_mel[f0_mel > 255] = 255
    return np.rint(f0_mel).astype(np.int64)


def transpose_f0(f0: np.ndarray, semitones: float) -> np.ndarray:
    return f0 * pow(2, semitones / 12)


def rms_envelope(src: Reader, sr: int) -> np.ndarray:
    """librosa.feature.rms(frame_length=sr//2*2, hop_length=sr//2, center=True, constant pad) of a reader."""
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
    """Positions [start, stop) of ``F.interpolate(env, size, mode="linear", align_corners=False)``."""
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


def rms_gain(env_in: np.ndarray, env_out: np.ndarray, n_out: int, rate: float, start: int, stop: int) -> np.ndarray:
    """The ``rms_mix_rate`` gain for output samples [start, stop): rms_in^(1-rate) * max(rms_out, 1e-6)^(rate-1)."""
    r1 = linear_resize(env_in, n_out, start, stop)
    r2 = np.maximum(linear_resize(env_out, n_out, start, stop), 1e-6)
    return np.power(r1, 1 - rate) * np.power(r2, rate - 1)


# ---------------------------------------------------------------------------
# the network part


@dataclass
class Models:
    """What a conversion needs loaded: a voice, the content encoder, optionally an index."""

    voice: Any  # engines.rvc.infer.voice.VoiceModel
    encoder: Any  # engines.rvc.content.hubert.ContentEncoder
    index: Any = None  # engines.rvc.index.LoadedIndex
    device: Any = None


def _content_features(models: Models, audio: np.ndarray, version: str, times: StageTimes) -> Any:
    with times("hubert"):
        seconds = audio.shape[0] / SR16 + 1.0
        feats = models.encoder.extract(audio.astype(np.float32), version, window_seconds=max(30.0, seconds))
    return feats


def vc_segment(models: Models, audio: np.ndarray, pitch: Any, pitchf: Any, opts: VCOptions, times: StageTimes) -> np.ndarray:
    """Upstream ``Pipeline.vc`` on one padded segment; returns the synthesizer's waveform (float32)."""
    import torch

    with torch.inference_mode():
        return _vc_segment(models, audio, pitch, pitchf, opts, times)


def _vc_segment(models: Models, audio: np.ndarray, pitch: Any, pitchf: Any, opts: VCOptions, times: StageTimes) -> np.ndarray:
    import torch

    from engines.core.device import amp_dtype, autocast

    vm = models.voice
    device = models.device
    version = vm.version
    feats = _content_features(models, audio, version, times)[None]  # [1, T, D]
    use_protect = opts.protect < 0.5 and pitch is not None and pitchf is not None
    feats0 = feats.clone() if use_protect else None
    if models.index is not None and opts.index_rate != 0:
        from engines.rvc.index import blend_retrieval

        with times("retrieval"):
            npy = feats[0].cpu().numpy()
            blended = blend_retrieval(npy, models.index.index, models.index.vectors, 1.0)
            feats = torch.from_numpy(blended).unsqueeze(0).to(device) * opts.index_rate + (1 - opts.index_rate) * feats
    feats = feats.repeat_interleave(2, dim=1)  # == F.interpolate(scale_factor=2), nearest
    if use_protect:
        feats0 = feats0.repeat_interleave(2, dim=1)
    p_len = audio.shape[0] // WINDOW
    if feats.shape[1] < p_len:
        p_len = feats.shape[1]
        if pitch is not None:
            pitch = pitch[:, :p_len]
            pitchf = pitchf[:, :p_len]
    if use_protect:
        mask = pitchf.clone()
        mask[pitchf > 0] = 1
        mask[pitchf < 1] = opts.protect
        mask = mask.unsqueeze(-1)
        feats = feats * mask + feats0 * (1 - mask)
        feats = feats.to(feats0.dtype)
    lengths = torch.tensor([p_len], device=device).long()
    sid = torch.tensor([opts.speaker_id], device=device).long()
    with times("synth"), autocast(device, amp_dtype(device)):
        if opts.decode_chunk_frames and _can_chunk(vm.net):
            return synthesize_chunked(vm.net, feats, lengths, pitch if vm.f0 else None, pitchf if vm.f0 else None,
                                      sid, opts.decode_chunk_frames, opts.decode_context_frames)
        if vm.f0:
            out = vm.net.infer(feats, lengths, pitch, pitchf, sid)[0]
        else:
            out = vm.net.infer(feats, lengths, sid)[0]
    return out[0, 0].float().cpu().numpy()


def _can_chunk(net: Any) -> bool:
    dec = getattr(net, "dec", None)
    return all(hasattr(net, a) for a in ("enc_p", "flow", "emb_g")) and hasattr(dec, "_body") and hasattr(dec, "upp")


def synthesize_chunked(net: Any, phone: Any, lengths: Any, pitch: Any, pitchf: Any, sid: Any,
                       chunk_frames: int, context_frames: int) -> np.ndarray:
    """``net.infer(...)[0][0, 0]`` with the waveform decoder run over overlapping chunks of frames.

    The prior, the flow and the NSF excitation (the only parts with long-range
    context: attention, coupling layers and the running sine phase) are
    computed over the whole segment exactly as ``infer`` does, drawing the
    noise in the same order. Only the HiFi-GAN body, a pure convolution stack
    whose receptive field is ~16 frames, runs chunk by chunk with
    ``context_frames`` of real neighbours on both sides, so the waveform equals
    the one-pass result (to float rounding; within ~16 frames of the segment's
    two ends, which the pipeline discards, it may differ) while the decoder's
    activations (~80 MB per second of 48 kHz audio) are bounded by the chunk size.
    """
    import torch

    from engines.rvc.models import noise

    g = net.emb_g(sid).unsqueeze(-1)
    m_p, logs_p, x_mask = net.enc_p(phone, pitch, lengths)
    if noise.noise_is_zero():
        z_p = m_p * x_mask
    else:
        z_p = (m_p + torch.exp(logs_p) * noise.randn_like(m_p) * PRIOR_NOISE) * x_mask
    z = net.flow(z_p, x_mask, g=g, reverse=True)
    zm = z * x_mask
    del m_p, logs_p, z_p, z
    dec = net.dec
    upp = int(dec.upp)
    source = dec.m_source(pitchf, upp) if pitchf is not None else None
    total = zm.shape[-1]
    # Every chunk has the same shape (zeros beyond the segment's ends): oneDNN caches one set of
    # primitives per input shape, and segment-dependent shapes made that cache grow without bound.
    # The zero extension only changes the first/last ~16 frames of the segment, which lie inside
    # the x_pad margins the pipeline discards (>= 100 frames).
    width = chunk_frames + 2 * context_frames
    zpad = torch.nn.functional.pad(zm, (context_frames, width))
    spad = torch.nn.functional.pad(source, (context_frames * upp, width * upp)) if source is not None else None
    out = np.empty(total * upp, dtype=np.float32)
    for a in range(0, total, chunk_frames):
        b = min(total, a + chunk_frames)
        lo = a  # in padded frames: a - context_frames + context_frames
        src = spad[:, :, lo * upp : (lo + width) * upp] if spad is not None else None
        wave = dec._body(zpad[:, :, lo : lo + width], g, src)
        out[a * upp : b * upp] = wave[0, 0, context_frames * upp : (context_frames + b - a) * upp].float().cpu().numpy()
        del wave
    return out


def _pitch_for(models: Models, padded: np.ndarray, opts: VCOptions, times: StageTimes, hooks: Hooks) -> np.ndarray:
    """Shifted f0 (Hz, float32) of a padded 16 kHz span, frame k centred at sample 160k."""
    from engines.rvc.pitch.f0 import extract_f0

    with times("f0"):
        f0 = extract_f0(padded, opts.f0_method, f0_min=F0_MIN, f0_max=F0_MAX, device=models.device,
                        rmvpe_path=opts.rmvpe_path, filter_radius=opts.filter_radius, hooks=hooks)
    return transpose_f0(f0, opts.transpose)


def _plan(n: int, cuts: list[int], win: Windowing) -> list[tuple[int, int | None, int]]:
    """Segments in padded coordinates: (start, stop or None = to the end, planned output samples at 16 kHz)."""
    segs: list[tuple[int, int | None, int]] = []
    s = 0
    t_pad2 = 2 * win.t_pad
    for t in cuts:
        t = t // WINDOW * WINDOW
        segs.append((s, t + t_pad2 + WINDOW, t - s))
        s = t
    segs.append((s, None, n - s))
    return segs


def run_segments(models: Models, src: Reader, sink: Any, opts: VCOptions, times: StageTimes,
                 hooks: Hooks, whole_f0: bool) -> None:
    """Convert the filtered 16 kHz ``src`` into ``sink`` at the voice's rate, segment by segment.

    ``whole_f0``: f0 of the whole padded signal at once (upstream; in-memory
    path) or per block of segments with 1 s of context (bounded memory).
    """
    import torch

    win = opts.windowing
    n = src.n
    t_pad = win.t_pad
    tgt = int(models.voice.sample_rate)
    t_pad_tgt = tgt * win.x_pad
    with times("split"):
        cuts = split_points(src, win)
    segs = _plan(n, cuts, win)
    n_pad = n + 2 * t_pad
    p_len_total = n_pad // WINDOW
    device = models.device
    # group segments into f0 blocks
    blocks: list[list[int]] = []
    if whole_f0:
        blocks = [list(range(len(segs)))]
    else:
        limit = opts.block_seconds * SR16
        cur: list[int] = []
        for i, (s, _, planned) in enumerate(segs):
            if cur and (s - segs[cur[0]][0]) + planned > limit:
                blocks.append(cur)
                cur = []
            cur.append(i)
        blocks.append(cur)
    emitted = 0
    n_out_total = round(n * tgt / SR16)
    done_in = 0
    for block in blocks:
        f0_base = 0
        f0 = None
        if models.voice.f0:
            b_start = segs[block[0]][0]
            last_stop = segs[block[-1]][1]
            b_stop = n_pad if last_stop is None else last_stop
            ctx = 0 if whole_f0 else SR16
            lo = max(0, b_start - ctx)
            hi = min(n_pad, b_stop + ctx)
            padded = read_reflect(src, lo - t_pad, hi - t_pad)
            f0 = _pitch_for(models, padded, opts, times, hooks)
            f0_base = lo // WINDOW
            if whole_f0:
                f0 = f0[:p_len_total]
        for i in block:
            hooks.check_cancel()
            s, stop, planned = segs[i]
            seg_stop = n_pad if stop is None else stop
            audio = read_reflect(src, s - t_pad, seg_stop - t_pad)
            pitch = pitchf = None
            if f0 is not None:
                # upstream: pitch[:, s // window : (t + t_pad2) // window], the last one pitch[:, t // window :]
                f_lo = s // WINDOW
                f_hi = p_len_total if stop is None else (stop - WINDOW) // WINDOW
                part = f0[f_lo - f0_base : f_hi - f0_base]
                pitch = torch.tensor(coarse_pitch(part.copy()), device=device).unsqueeze(0).long()
                pitchf = torch.tensor(part, device=device).unsqueeze(0).float()
            wave = vc_segment(models, audio, pitch, pitchf, opts, times)
            if opts.exact_length:
                want = n_out_total - emitted if stop is None else planned * tgt // SR16
                piece = wave[t_pad_tgt : t_pad_tgt + want]
                if piece.shape[0] < want:  # the network gave fewer frames than needed (never with real HuBERT framing)
                    piece = np.pad(piece, (0, want - piece.shape[0]))
            else:
                piece = wave[t_pad_tgt:-t_pad_tgt]
            with times("write"):
                sink.write(piece)
            emitted += piece.shape[0]
            done_in += planned
            hooks.progress(done_in / max(n, 1), msg("progress.converted_seconds", done=done_in / SR16, total=n / SR16))


# ---------------------------------------------------------------------------
# whole-signal helpers (in memory)


def convert_array(models: Models, audio16k: np.ndarray, opts: VCOptions, hooks: Hooks | None = None,
                  times: StageTimes | None = None) -> tuple[np.ndarray, int]:
    """Convert an in-memory 16 kHz mono signal; returns (audio, sample_rate) after rms mix, resample, level."""
    hooks = ensure_hooks(hooks)
    times = times if times is not None else StageTimes()
    x = np.asarray(audio16k, dtype=np.float32).reshape(-1)
    if x.shape[0] == 0:
        raise InvalidInputError("The input audio is empty.")
    with times("filter"):
        div = input_divisor(np.abs(x).max())
        if div is not None:
            x = x / div
        filtered = highpass(x)
    sink = ListWriter()
    run_segments(models, ArrayReader(filtered), sink, opts, times, hooks, whole_f0=True)
    out = sink.array()
    tgt = int(models.voice.sample_rate)
    with times("post"):
        if opts.rms_mix_rate != 1:
            env_in = rms_envelope(ArrayReader(filtered), SR16)
            env_out = rms_envelope(ArrayReader(out), tgt)
            out *= rms_gain(env_in, env_out, out.shape[0], opts.rms_mix_rate, 0, out.shape[0])
        sr = tgt
        if opts.resample_sr and opts.resample_sr >= SR16 and opts.resample_sr != tgt:
            from engines.core.audio import resample

            want = round(x.shape[0] * opts.resample_sr / SR16) if opts.exact_length else None
            out = resample(out, tgt, opts.resample_sr)
            sr = opts.resample_sr
            if want is not None:
                out = _fix_length(out, want)
        out = out * np.float32(level_gain(float(np.abs(out).max()) if out.size else 0.0, opts.normalize))
    return out.astype(np.float32), sr


def _fix_length(x: np.ndarray, n: int) -> np.ndarray:
    return x[:n] if x.shape[0] >= n else np.pad(x, (0, n - x.shape[0]))


def level_gain(peak: float, normalize: bool) -> float:
    """Peak to 0.99 (normalize) or upstream's guard: only scale down a peak above 0.99."""
    if peak <= 0:
        return 1.0
    if normalize:
        return OUTPUT_PEAK / peak
    return OUTPUT_PEAK / peak if peak > OUTPUT_PEAK else 1.0


# ---------------------------------------------------------------------------
# files: in memory when short, streamed through temp files when long


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
                                        _exact_source_frames(info), info.sample_rate)
    else:
        with times("decode"):
            audio, _ = load_audio(in_path, SR16)
        out, sr = convert_array(models, audio, opts, hooks, times)
        if opts.exact_length and (n_src := _exact_source_frames(info)):
            out = _fix_length(out, round(n_src * sr / info.sample_rate))  # the source's duration, not 16 kHz's
        with times("write"):
            write_audio(out_path, out, sr, fmt)
        result = FileResult(Path(out_path), sr, audio.shape[0] / SR16, int(out.shape[0]), False, times)
    times["total"] = time.perf_counter() - t0
    result.times = dict(times)
    return result


def _exact_source_frames(info: Any) -> int:
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
            want = round(src_frames * out_sr / src_rate) if src_frames and opts.exact_length else round(n * out_sr / SR16)
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
                    y = (y * rms_gain(env_in, env_out, m, opts.rms_mix_rate, start, start + y.shape[0])).astype(np.float32)
                if stream is not None:
                    y = stream.resample_chunk(y, last=start + step >= m)
                y = y[: max(0, want - staged.n)]
                if y.size:
                    peak_out = max(peak_out, float(np.abs(y).max()))
                    staged.write(y)
            if staged.n < want:
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
