"""The RVC conversion pipeline: 16 kHz audio in, the voice's audio out.

It follows upstream RVC's ``Pipeline.pipeline`` / ``Pipeline.vc``
(infer/vc/pipeline.py, 2026 main, fp32 settings x_pad=1, x_query=6,
x_center=38, x_max=41) step by step, so that for the same weights, input
and noise draws the samples are upstream's:

1. input peak above 0.95 scaled down to 0.95 (upstream ``vc_single``);
2. zero-phase (filtfilt) 5th-order Butterworth high-pass at 48 Hz;
3. above ``x_max`` seconds, cut points every ``x_center`` s, each at the first
   minimum of ``|moving 160-sample sum|`` within +-``x_query`` s (the sum
   accumulated in upstream's order, so ties resolve identically);
4. reflect padding of ``x_pad`` s on both sides; f0 of the whole padded
   signal (float64), unvoiced frames kept or filled (``unvoiced``),
   transposed, coarse pitch on the 1127 ln(1+f/700) mel scale;
5. per segment (``segment.vc_segment``): HuBERT features of the whole
   segment in one pass, retrieval blend, features repeated x2 to 100 fps,
   ``protect`` mixing (< 0.5 only), synthesis, the ``x_pad`` s margins cut off;
6. ``rms_mix_rate`` envelope mix over half-second frames (when != 1);
7. resampling to ``resample_sr`` (soxr HQ, as librosa's default).

Two behaviours are named choices (``VCOptions.unvoiced`` / ``.length``);
``upstream-compatible`` (``ConvertParams.preset``) picks upstream's side of
both and reproduces upstream's output end to end (tests/golden/pipeline):

* ``unvoiced``: ``keep-zero`` (default; RVC up to 2024) leaves 0 Hz where the
  f0 method found no pitch: coarse pitch 1, a noise-only NSF source there,
  and ``protect`` mixes the unblended features back in on those frames.
  ``interpolate`` (RVC 2026 main) fills them by linear interpolation between
  the neighbouring voiced frames before transposing, so every frame is
  voiced and ``protect`` has no effect.
* ``length``: ``exact`` (default) keeps ``out[t_pad_tgt : t_pad_tgt +
  planned]`` of every segment: every sample upstream emits is emitted
  unchanged and in place, the frames upstream drops (the last one of every
  segment with an odd number of 10 ms frames, computed by the network from
  real audio) are kept, and the output is exactly ``round(len(audio) * sr /
  16000)`` samples; the rms mix reads both loudness envelopes at their frame
  centres on that output. ``upstream`` slices ``[x_pad : -x_pad]`` as
  upstream does (10-20 ms short, 10 ms drift after each odd segment) and
  stretches the envelopes over that length as upstream does.

Fixed on purpose (in every mode):

* Retrieval: no NaN on an exact index hit (see ``index.retrieve``).
* Output level: peak normalised to 0.99 by default; with ``normalize=False``
  only upstream's anti-clipping (peak above 0.99 scaled down) is applied.
  Upstream converts to int16 itself (truncating); we hand float to the encoder.
* Memory: HuBERT's conv front end, RMVPE's U-Net and the waveform decoder
  run over bounded windows with enough real context that the kept values
  equal the one-pass ones to float rounding (RMVPE's U-Net: 1.28 s of
  context by default, its whole receptive field with ``exact_f0``).
* Long inputs (above ``stream_above_seconds``) are processed in blocks of
  whole upstream segments (``files.convert_file``) with their f0 computed
  over the block plus 1 s of context, the filter run per 30 s block with 1 s
  of context, and every intermediate kept in temp files: memory is bounded
  whatever the length. Away from block edges the result equals the
  in-memory path; at a block edge f0 methods with long-range context (pm's
  path search, rmvpe's GRU, crepe/fcpe) and the unvoiced fill can differ.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from engines.core.errors import InvalidInputError
from engines.core.hooks import Hooks, ensure_hooks
from engines.core.messages import msg
from engines.rvc.infer.buffers import ArrayReader, ListWriter, Reader, read_reflect
from engines.rvc.infer.segment import Models, vc_segment
from engines.rvc.infer.steps import (
    SR16,
    WINDOW,
    Windowing,
    fix_length,
    highpass,
    input_divisor,
    level_gain,
    rms_envelope,
    rms_gain,
    split_points,
)

F0_MIN, F0_MAX = 50.0, 1100.0
UNVOICED_MODES = ("keep-zero", "interpolate")
LENGTH_MODES = ("exact", "upstream")

__all__ = ["Models", "StageTimes", "VCOptions", "Windowing", "convert_array", "pitch_track", "run_segments"]


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
    unvoiced: str = "keep-zero"  # UNVOICED_MODES
    length: str = "exact"  # LENGTH_MODES
    exact_f0: bool = False  # f0 networks with their whole receptive field as window context
    precision: str = "auto"  # the synthesizer's autocast on CUDA: auto (bf16 where supported) | fp16 | bf16 | fp32
    rmvpe_path: str | None = None
    windowing: Windowing = field(default_factory=Windowing)
    stream_above_seconds: float = 150.0  # longer inputs take the bounded-memory path
    decode_chunk_frames: int = 300  # waveform decoder chunk (10 ms frames); 0 = whole segment at once
    decode_context_frames: int = 16  # real neighbours each side of a decoder chunk (its receptive field)
    block_seconds: float = 120.0  # audio per f0 block on that path

    @property
    def exact_length(self) -> bool:
        return self.length == "exact"

    def rms_out_hop(self, sr: int) -> float | None:
        """Where the rms mix reads its envelopes: at frame centres (exact length) or upstream's stretch (None)."""
        return sr // 2 if self.exact_length else None


class StageTimes(dict):
    """Seconds spent per stage (decode, filter, split, f0, hubert, retrieval, synth, post, write).

    ``StageTimes(keep=True)`` also keeps a copy of every intermediate the
    run computes (``kept[name]``: one entry per f0 block or segment), for
    comparisons with upstream's recorded values.
    """

    def __init__(self, keep: bool = False) -> None:
        super().__init__()
        self.kept: dict[str, list[Any]] | None = {} if keep else None

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self[stage] = self.get(stage, 0.0) + time.perf_counter() - t0

    def keep(self, name: str, value: Any) -> None:
        if self.kept is not None:
            if hasattr(value, "detach"):
                value = value.detach().float().cpu().numpy()
            self.kept.setdefault(name, []).append(np.array(value, copy=True))


def pitch_track(models: Models, padded: np.ndarray, opts: VCOptions, times: StageTimes, hooks: Hooks) -> np.ndarray:
    """f0 (Hz, float64) of a padded 16 kHz span, frame k centred at sample 160k: upstream ``get_f0``'s
    second result (unvoiced frames kept or filled, then transposed)."""
    from engines.rvc.pitch.f0 import extract_f0, interpolate_unvoiced, shift_f0

    with times("f0"):
        f0 = extract_f0(padded, opts.f0_method, f0_min=F0_MIN, f0_max=F0_MAX, device=models.device,
                        rmvpe_path=opts.rmvpe_path, filter_radius=opts.filter_radius, hooks=hooks,
                        dtype=np.float64, exact=opts.exact_f0)
        times.keep("f0_raw", f0)
        if opts.unvoiced == "interpolate":
            f0 = interpolate_unvoiced(f0)
        f0 = shift_f0(f0, opts.transpose)
    times.keep("f0", f0)
    return f0


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


def _f0_blocks(segs: list[tuple[int, int | None, int]], whole: bool, limit: float) -> list[list[int]]:
    """Segments grouped into f0 blocks: all at once (``whole``), or whole segments up to ``limit`` samples."""
    if whole:
        return [list(range(len(segs)))]
    blocks: list[list[int]] = []
    cur: list[int] = []
    for i, (s, _, planned) in enumerate(segs):
        if cur and (s - segs[cur[0]][0]) + planned > limit:
            blocks.append(cur)
            cur = []
        cur.append(i)
    blocks.append(cur)
    return blocks


def run_segments(models: Models, src: Reader, sink: Any, opts: VCOptions, times: StageTimes,
                 hooks: Hooks, whole_f0: bool) -> None:
    """Convert the filtered 16 kHz ``src`` into ``sink`` at the voice's rate, segment by segment.

    ``whole_f0``: f0 of the whole padded signal at once (upstream; in-memory
    path) or per block of segments with 1 s of context (bounded memory).
    """
    from engines.rvc.pitch.f0 import f0_to_coarse

    import torch

    win = opts.windowing
    n = src.n
    t_pad = win.t_pad
    tgt = int(models.voice.sample_rate)
    t_pad_tgt = tgt * win.x_pad
    with times("split"):
        cuts = split_points(src, win)
    times.keep("cuts", np.asarray(cuts, dtype=np.int64))
    segs = _plan(n, cuts, win)
    n_pad = n + 2 * t_pad
    p_len_total = n_pad // WINDOW
    device = models.device
    emitted = 0
    n_out_total = round(n * tgt / SR16)
    done_in = 0
    for block in _f0_blocks(segs, whole_f0, opts.block_seconds * SR16):
        f0_base = 0
        f0 = None
        if models.voice.f0:
            b_start = segs[block[0]][0]
            last_stop = segs[block[-1]][1]
            b_stop = n_pad if last_stop is None else last_stop
            ctx = 0 if whole_f0 else SR16
            lo = max(0, b_start - ctx)
            hi = min(n_pad, b_stop + ctx)
            f0 = pitch_track(models, read_reflect(src, lo - t_pad, hi - t_pad), opts, times, hooks)
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
                pitch = torch.tensor(f0_to_coarse(part), device=device).unsqueeze(0).long()
                pitchf = torch.tensor(part, device=device).unsqueeze(0).float()
            wave = vc_segment(models, audio, pitch, pitchf, opts, times)
            times.keep("synth", wave)
            if opts.exact_length:
                want = n_out_total - emitted if stop is None else planned * tgt // SR16
                # the network gives fewer frames than needed only for inputs shorter than one HuBERT frame
                piece = fix_length(wave[t_pad_tgt:], want)
            else:
                piece = wave[t_pad_tgt:-t_pad_tgt]
            with times("write"):
                sink.write(piece)
            emitted += piece.shape[0]
            done_in += planned
            hooks.progress(done_in / max(n, 1), msg("progress.converted_seconds", done=done_in / SR16, total=n / SR16))


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
            times.keep("pre_rms", out)
            env_in = rms_envelope(ArrayReader(filtered), SR16)
            env_out = rms_envelope(ArrayReader(out), tgt)
            times.keep("rms_in", env_in)
            times.keep("rms_out", env_out)
            out *= rms_gain(env_in, env_out, out.shape[0], opts.rms_mix_rate, 0, out.shape[0], opts.rms_out_hop(tgt))
        sr = tgt
        if opts.resample_sr and opts.resample_sr >= SR16 and opts.resample_sr != tgt:
            from engines.core.audio import resample

            out = resample(out, tgt, opts.resample_sr)
            sr = opts.resample_sr
            if opts.exact_length:
                out = fix_length(out, round(x.shape[0] * sr / SR16))
        times.keep("output", out)
        out = out * np.float32(level_gain(float(np.abs(out).max()) if out.size else 0.0, opts.normalize))
    return out.astype(np.float32), sr
