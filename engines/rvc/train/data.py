"""Training data for RVC: filelist entries -> padded batches of similar length.

Each item is (spectrogram, waveform, content features, [coarse pitch, pitch
Hz,] speaker). Content features (50 frames/s) are repeated twice to the
spectrogram's 100 frames/s and everything is cut to the shortest of the
two, as upstream does; items are capped at 900 frames. Spectrograms are
computed once and cached under ``spec_cache/`` (written atomically, so
several loader workers or ranks can share the cache safely).

Batches group items of similar length (buckets by frame count) and are
split across ranks for DDP: every rank gets the same number of batches.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from engines.core.atomic import atomic_path
from engines.rvc.train.mel_processing import spectrogram_torch

MAX_FRAMES = 900
BUCKET_BOUNDARIES = (100, 200, 300, 400, 500, 600, 700, 800, 900)


@dataclass(frozen=True)
class Entry:
    wav: Path
    feature: Path
    f0_coarse: Path | None
    f0_hz: Path | None
    speaker: int


def read_filelist(path: str | Path, f0: bool) -> list[Entry]:
    """Parse upstream's filelist format (``gt|feature|f0|f0nsf|sid`` or ``gt|feature|sid``)."""
    entries = []
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        parts = raw.strip().split("|")
        if not raw.strip():
            continue
        if f0 and len(parts) >= 5:
            entries.append(Entry(Path(parts[0]), Path(parts[1]), Path(parts[2]), Path(parts[3]), int(parts[4])))
        elif not f0 and len(parts) >= 3:
            entries.append(Entry(Path(parts[0]), Path(parts[1]), None, None, int(parts[-1])))
        else:
            raise ValueError(f"filelist line does not match a {'pitch' if f0 else 'no-pitch'} model: {raw[:200]}")
    return entries


class RVCDataset(torch.utils.data.Dataset):
    """Items of one experiment's filelist; ``lengths`` (frames) drive the bucketing."""

    def __init__(self, entries: Sequence[Entry], data_cfg: dict[str, Any], f0: bool, spec_cache: Path | None = None) -> None:
        import soundfile as sf

        self.entries = list(entries)
        self.f0 = f0
        self.sr = int(data_cfg["sampling_rate"])
        self.n_fft = int(data_cfg["filter_length"])
        self.hop = int(data_cfg["hop_length"])
        self.win = int(data_cfg["win_length"])
        self.spec_cache = Path(spec_cache) if spec_cache is not None else None
        self.lengths = [min(sf.info(str(e.wav)).frames // self.hop, MAX_FRAMES) for e in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def _spec_path(self, wav: Path) -> Path | None:
        if self.spec_cache is None:
            return None
        st = wav.stat()
        tag = hashlib.sha1(f"{wav}|{st.st_size}|{st.st_mtime_ns}|{self.n_fft}|{self.hop}|{self.win}".encode()).hexdigest()[:12]
        return self.spec_cache / f"{wav.stem}.{tag}.spec.pt"

    def _audio_and_spec(self, wav: Path) -> tuple[torch.Tensor, torch.Tensor]:
        import soundfile as sf

        audio, sr = sf.read(str(wav), dtype="float32", always_2d=False)
        if sr != self.sr:
            raise ValueError(f"{wav} is {sr} Hz but the model trains at {self.sr} Hz; re-run preprocessing.")
        wave = torch.from_numpy(np.ascontiguousarray(audio)).unsqueeze(0)
        cached = self._spec_path(wav)
        if cached is not None and cached.exists():
            try:
                return torch.load(cached, map_location="cpu", weights_only=True), wave
            except Exception:  # noqa: BLE001 - a broken cache file is recomputed
                pass
        spec = spectrogram_torch(wave, self.n_fft, self.sr, self.hop, self.win, center=False).squeeze(0)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(cached) as tmp:
                torch.save(spec, tmp)
        return spec, wave

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        e = self.entries[index]
        phone = np.repeat(np.load(e.feature), 2, axis=0)[:MAX_FRAMES]
        spec, wave = self._audio_and_spec(e.wav)
        n = min(phone.shape[0], spec.shape[-1])
        spec, wave = spec[:, :n], wave[:, : n * self.hop]
        phone_t = torch.from_numpy(np.ascontiguousarray(phone[:n], dtype=np.float32))
        sid = torch.tensor(e.speaker, dtype=torch.long)
        if not self.f0:
            return spec, wave, phone_t, sid
        assert e.f0_coarse is not None and e.f0_hz is not None
        pitch = np.load(e.f0_coarse)[:MAX_FRAMES]
        pitchf = np.load(e.f0_hz)[:MAX_FRAMES]
        pitch_t = torch.zeros(n, dtype=torch.long)
        pitchf_t = torch.zeros(n, dtype=torch.float32)
        m = min(n, pitch.shape[0], pitchf.shape[0])
        pitch_t[:m] = torch.from_numpy(pitch[:m].astype(np.int64))
        pitchf_t[:m] = torch.from_numpy(pitchf[:m].astype(np.float32))
        pitch_t[m:] = 1  # unvoiced coarse value if the pitch track is shorter
        return spec, wave, phone_t, pitch_t, pitchf_t, sid


def collate(batch: Sequence[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    """Zero-pad a batch, longest first, into the synthesizer's training inputs.

    Returns (phone, phone_lengths, [pitch, pitchf,] spec, spec_lengths, wave, wave_lengths, sid).
    """
    with_f0 = len(batch[0]) == 6
    order = sorted(range(len(batch)), key=lambda i: batch[i][0].shape[1], reverse=True)
    b = len(batch)
    max_spec = max(x[0].shape[1] for x in batch)
    max_wave = max(x[1].shape[1] for x in batch)
    max_phone = max(x[2].shape[0] for x in batch)
    spec = torch.zeros(b, batch[0][0].shape[0], max_spec)
    wave = torch.zeros(b, 1, max_wave)
    phone = torch.zeros(b, max_phone, batch[0][2].shape[1])
    pitch = torch.zeros(b, max_phone, dtype=torch.long)
    pitchf = torch.zeros(b, max_phone)
    spec_lengths = torch.zeros(b, dtype=torch.long)
    wave_lengths = torch.zeros(b, dtype=torch.long)
    phone_lengths = torch.zeros(b, dtype=torch.long)
    sid = torch.zeros(b, dtype=torch.long)
    for row, i in enumerate(order):
        item = batch[i]
        s, w, p = item[0], item[1], item[2]
        spec[row, :, : s.shape[1]] = s
        wave[row, :, : w.shape[1]] = w
        phone[row, : p.shape[0]] = p
        spec_lengths[row], wave_lengths[row], phone_lengths[row] = s.shape[1], w.shape[1], p.shape[0]
        if with_f0:
            pitch[row, : item[3].shape[0]] = item[3]
            pitchf[row, : item[4].shape[0]] = item[4]
        sid[row] = item[-1]
    if with_f0:
        return phone, phone_lengths, pitch, pitchf, spec, spec_lengths, wave, wave_lengths, sid
    return phone, phone_lengths, spec, spec_lengths, wave, wave_lengths, sid


class BucketBatchSampler(torch.utils.data.Sampler):
    """Batches of items from the same length bucket, split evenly across DDP ranks.

    Items longer than the last boundary go into the last bucket (we cap
    items at 900 frames, so nothing is discarded); buckets are padded by
    repeating their own items so each divides into whole batches for every
    rank. Shuffling is deterministic per (seed, epoch): call ``set_epoch``.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, boundaries: Sequence[int] = BUCKET_BOUNDARIES,
                 num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.batch_size = batch_size
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        edges = list(boundaries)
        buckets: list[list[int]] = [[] for _ in edges]
        for i, n in enumerate(lengths):
            b = next((k for k, edge in enumerate(edges) if n <= edge), len(edges) - 1)
            buckets[b].append(i)
        self.buckets = [b for b in buckets if b]
        per_round = batch_size * num_replicas
        self.padded_sizes = [math.ceil(len(b) / per_round) * per_round for b in self.buckets]
        self.batches_per_rank = sum(self.padded_sizes) // per_round

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches_per_rank

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator()
        g.manual_seed(self.seed * 100003 + self.epoch)
        batches: list[list[int]] = []
        for bucket, padded in zip(self.buckets, self.padded_sizes):
            order = torch.randperm(len(bucket), generator=g).tolist() if self.shuffle else list(range(len(bucket)))
            order = (order * math.ceil(padded / len(order)))[:padded]
            mine = order[self.rank :: self.num_replicas]
            for j in range(0, len(mine), self.batch_size):
                batches.append([bucket[k] for k in mine[j : j + self.batch_size]])
        if self.shuffle:
            batches = [batches[k] for k in torch.randperm(len(batches), generator=g).tolist()]
        return iter(batches)
