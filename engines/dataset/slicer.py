"""Silence slicer with RVC's semantics, usable on a stream of blocks.

The decision rules follow the RVC WebUI slicer (its defaults are in
DESIGN.md section 4): frame RMS over a window of up to four hops; a
silence of at least ``min_interval`` that ends after the current piece is
at least ``min_length`` long becomes a cut; at most ``max_sil_kept`` of
silence stays attached to each side; a leading silence longer than
``max_sil_kept`` is trimmed; without any cut the input is one piece. Like
RVC, short inputs go through the same rules (so a short file still loses
long leading/trailing silence); only tiny inputs (no more samples than
``min_length`` has frames — RVC's unit mix-up, kept for identical results)
are returned whole untouched.

This implementation is our own: ``StreamingSlicer`` consumes audio block by
block and reports each (start, end) sample range as soon as no later audio
can change it. It only remembers one float per hop (the RMS curve, ~1 MB for
two hours at 15 ms hops), never the audio, so the caller decides what audio
to keep (see ``retained_spans``). Feeding the whole array at once or in any
blocking gives identical ranges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engines.core.params import param

Range = tuple[int, int]


@dataclass
class SlicerParams:
    """The silence slicer's knobs (RVC defaults)."""

    threshold_db: float = param(-42.0, help="Frames quieter than this (dBFS RMS) count as silence", min=-90.0, max=0.0, step=1.0)
    min_length_ms: int = param(1500, help="Minimum length of a sliced piece before a cut is allowed (ms)", min=100, max=60000, step=50)
    min_interval_ms: int = param(400, help="Minimum silence length that makes a cut (ms)", min=10, max=10000, step=10)
    hop_ms: int = param(15, help="RMS frame hop (ms)", min=1, max=200)
    max_sil_kept_ms: int = param(500, help="Longest silence kept around a piece (ms)", min=0, max=10000, step=10)


def _check(params: SlicerParams) -> None:
    from engines.core.errors import InvalidInputError

    if not params.min_length_ms >= params.min_interval_ms >= params.hop_ms:
        raise InvalidInputError(
            "Slicer settings must satisfy min_length >= min_interval >= hop "
            f"(got {params.min_length_ms} / {params.min_interval_ms} / {params.hop_ms} ms).",
            "Lower the hop or raise min_interval / min_length.",
        )
    if params.max_sil_kept_ms < params.hop_ms:
        raise InvalidInputError(
            f"max_sil_kept ({params.max_sil_kept_ms} ms) must be at least the hop ({params.hop_ms} ms).")


class StreamingSlicer:
    """Feed audio blocks, collect final (start, end) sample ranges of the pieces.

    ``feed(block)`` and ``finish()`` return the ranges that became final;
    together they equal ``slice_ranges`` on the concatenated audio.
    """

    def __init__(self, sr: int, params: SlicerParams | None = None) -> None:
        params = params or SlicerParams()
        _check(params)
        self.sr = int(sr)
        self.threshold = 10.0 ** (params.threshold_db / 20.0)
        self.hop = max(1, round(sr * params.hop_ms / 1000))
        self.win = min(round(sr * params.min_interval_ms / 1000), 4 * self.hop)
        self.min_length = round(sr * params.min_length_ms / 1000 / self.hop)  # in frames
        self.min_interval = round(sr * params.min_interval_ms / 1000 / self.hop)
        self.max_sil_kept = round(sr * params.max_sil_kept_ms / 1000 / self.hop)
        self._pad = self.win // 2  # frames are centred: frame k covers [k*hop - pad, k*hop - pad + win)

        # sample buffer for the RMS windows still to compute (starts with the centring zeros)
        self._buf = np.zeros(self._pad, dtype=np.float32)
        self._buf_start = -self._pad  # absolute sample index of self._buf[0]
        self._samples = 0  # samples fed so far
        self._rms = np.zeros(4096, dtype=np.float64)
        self._frames = 0  # frames computed (and run through the state machine)
        self._seg_sums = np.zeros(4096, dtype=np.float64)  # squared sums per hop (fast path)
        self._nseg = 0

        # state machine
        self._silence_start: int | None = None
        self._clip_start = 0
        self._tags: list[Range] = []  # silent regions (frame units) to cut out
        self._emitted_tags = 0
        self._finished = False

    # -- RMS -------------------------------------------------------------

    def _append_rms(self, values: np.ndarray) -> None:
        need = self._frames + len(values)
        if need > len(self._rms):
            grown = np.zeros(max(need, 2 * len(self._rms)), dtype=np.float64)
            grown[: self._frames] = self._rms[: self._frames]
            self._rms = grown
        first = self._frames
        self._rms[first:need] = values
        for i in range(first, need):
            self._frames = i + 1
            self._step(i)

    def _compute_frames(self, last_frame_exclusive: int) -> None:
        """RMS for frames up to ``last_frame_exclusive`` whose windows lie in the buffer.

        Each frame's value depends only on its own samples (fixed summation
        order), so any blocking of the input gives bit-identical RMS values.
        """
        if last_frame_exclusive <= self._frames:
            return
        if self.win % self.hop == 0:
            self._frames_from_hop_sums(last_frame_exclusive)
        else:
            self._frames_from_windows(last_frame_exclusive)

    def _frames_from_hop_sums(self, last_frame_exclusive: int) -> None:
        """Fast path (the usual case, win = 4 hops): sum squares per hop, add m neighbours."""
        hop, m = self.hop, self.win // self.hop
        # segment j covers samples [j*hop - pad, (j+1)*hop - pad); frame k = segments k..k+m-1
        n_full = len(self._buf) // hop
        if n_full:
            seg = self._buf[: n_full * hop].reshape(n_full, hop).astype(np.float64)
            sums = np.sum(seg * seg, axis=1)
            need = self._nseg + n_full
            if need > len(self._seg_sums):
                grown = np.zeros(max(need, 2 * len(self._seg_sums)), dtype=np.float64)
                grown[: self._nseg] = self._seg_sums[: self._nseg]
                self._seg_sums = grown
            self._seg_sums[self._nseg : need] = sums
            self._nseg = need
            self._buf = self._buf[n_full * hop :].copy()
            self._buf_start += n_full * hop
        k0 = self._frames
        k1 = min(last_frame_exclusive, self._nseg - m + 1)
        if k1 <= k0:
            return
        acc = self._seg_sums[k0:k1].copy()
        for t in range(1, m):
            acc += self._seg_sums[k0 + t : k1 + t]
        self._append_rms(np.sqrt(acc / self.win))

    def _frames_from_windows(self, last_frame_exclusive: int) -> None:
        """General path: gather each frame's window explicitly (bounded batches)."""
        chunk = 256  # frames per vectorised batch (bounded temporary memory)
        for a in range(self._frames, last_frame_exclusive, chunk):
            b = min(last_frame_exclusive, a + chunk)
            # frame k's window starts at k*hop - pad, i.e. buffer offset k*hop - pad - buf_start
            offs = np.arange(a, b) * self.hop - self._pad - self._buf_start
            windows = self._buf[offs[:, None] + np.arange(self.win)[None, :]].astype(np.float64)
            self._append_rms(np.sqrt(np.mean(windows * windows, axis=1)))
        next_start = self._frames * self.hop - self._pad
        cut = next_start - self._buf_start
        if cut > 0:  # drop samples no future frame needs
            self._buf = self._buf[cut:].copy()
            self._buf_start = next_start

    # -- state machine (one frame at a time) -----------------------------

    def _argmin(self, a: int, b: int) -> int:
        """Index of the quietest frame in [a, b] (inclusive, clipped to the computed frames)."""
        return a + int(np.argmin(self._rms[a : min(b + 1, self._frames)]))

    def _step(self, i: int) -> None:
        if self._rms[i] < self.threshold:
            if self._silence_start is None:
                self._silence_start = i
            return
        ss = self._silence_start
        if ss is None:
            return
        leading = ss == 0 and i > self.max_sil_kept
        long_enough = i - ss >= self.min_interval and i - self._clip_start >= self.min_length
        if not leading and not long_enough:
            self._silence_start = None
            return
        msk = self.max_sil_kept
        if i - ss <= msk:
            pos = self._argmin(ss, i)
            tag = (0, pos) if ss == 0 else (pos, pos)
            self._clip_start = pos
        elif i - ss <= 2 * msk:
            mid = self._argmin(i - msk, ss + msk)
            left = self._argmin(ss, ss + msk)
            right = self._argmin(i - msk, i)
            if leading:
                tag = (0, right)
                self._clip_start = right
            else:
                tag = (min(left, mid), max(right, mid))
                self._clip_start = max(right, mid)
        else:
            left = self._argmin(ss, ss + msk)
            right = self._argmin(i - msk, i)
            tag = (0, right) if leading else (left, right)
            self._clip_start = right
        self._tags.append(tag)
        self._silence_start = None

    # -- output ------------------------------------------------------------

    def _ranges_from_tags(self, upto: int, total_samples: int | None) -> list[Range]:
        """Pieces between tags[emitted-1] and tags[upto-1] (sample units)."""
        out: list[Range] = []
        hop = self.hop
        limit = total_samples if total_samples is not None else None
        for j in range(self._emitted_tags, upto):
            tag_start = self._tags[j][0]
            if j == 0:
                if tag_start > 0:
                    out.append((0, tag_start * hop))
            else:
                out.append((self._tags[j - 1][1] * hop, tag_start * hop))
        self._emitted_tags = upto
        if limit is not None:
            out = [(a, min(b, limit)) for a, b in out]
        return [(a, b) for a, b in out if b > a]

    def _may_emit(self) -> bool:
        # Inputs of at most ``min_length`` samples are kept whole, so nothing is final before that.
        return self._samples > self.min_length

    def feed(self, block: np.ndarray) -> list[Range]:
        """Add the next samples (mono); return ranges that are now final."""
        if self._finished:
            raise RuntimeError("feed() after finish()")
        x = np.asarray(block, dtype=np.float32).reshape(-1)
        self._buf = np.concatenate([self._buf, x]) if len(self._buf) else x.copy()
        self._samples += len(x)
        buf_end = self._buf_start + len(self._buf)
        # frame k is computable when k*hop - pad + win <= buf_end
        ready = (buf_end + self._pad - self.win) // self.hop + 1
        self._compute_frames(max(0, ready))
        if not self._may_emit():
            return []
        return self._ranges_from_tags(len(self._tags), None)

    def finish(self) -> list[Range]:
        """Flush: the trailing ranges (all ranges if the input was short)."""
        if self._finished:
            return []
        self._finished = True
        n = self._samples
        total_frames = 1 + (n + 2 * self._pad - self.win) // self.hop if n + 2 * self._pad >= self.win else 0
        tail = np.zeros(self.win + 2 * self.hop, dtype=np.float32)
        self._buf = np.concatenate([self._buf, tail])
        self._compute_frames(total_frames)
        if n == 0:
            return []
        if n <= self.min_length:  # RVC compares the sample count with min_length (in frames) here; kept
            self._tags = []
            return [(0, n)]
        ss = self._silence_start
        if ss is not None and total_frames - ss >= self.min_interval:
            end = min(total_frames, ss + self.max_sil_kept)
            self._tags.append((self._argmin(ss, end), total_frames + 1))
        out = self._ranges_from_tags(len(self._tags), n)
        if not self._tags:
            out.append((0, n))
        elif self._tags[-1][1] < total_frames:
            out.append((self._tags[-1][1] * self.hop, n))
        return [(a, min(b, n)) for a, b in out if min(b, n) > a]

    # -- what audio the caller must keep ------------------------------------

    def open_start(self) -> int:
        """Sample where the piece still being built starts (every earlier range is final)."""
        return self._tags[self._emitted_tags - 1][1] * self.hop if self._emitted_tags else 0

    def final_before(self) -> int:
        """No future range will end before this sample unless it is already returned.

        Equivalently: the open piece runs at least up to here. Useful to cut
        over-long pieces early.
        """
        if self._silence_start is not None:
            return self._silence_start * self.hop
        return self._frames * self.hop

    def retained_spans(self) -> list[tuple[int, int | None]]:
        """Sample spans a caller must keep to cut all future ranges (None = open end).

        Normally one span from ``open_start()``. Inside a long silence the
        open piece can end no later than ``max_sil_kept`` after the silence
        began and the next piece starts no earlier than ``max_sil_kept``
        before the current frame, so the middle of the silence is dropped.
        """
        start = self.open_start()
        ss = self._silence_start
        if ss is None or not self._may_emit():
            return [(start, None)]
        first_end = (ss + self.max_sil_kept + 1) * self.hop
        second_start = max(first_end, (self._frames - 1 - self.max_sil_kept) * self.hop)
        # the trailing-silence tag can also choose its start within [ss, ss+max_sil_kept]
        if second_start <= first_end:
            return [(start, None)]
        return [(start, first_end), (second_start, None)]


def slice_ranges(audio: np.ndarray, sr: int, params: SlicerParams | None = None) -> list[Range]:
    """(start, end) sample ranges of the non-silent pieces of ``audio`` (mono or (n, ch))."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    slicer = StreamingSlicer(sr, params)
    return slicer.feed(x) + slicer.finish()
