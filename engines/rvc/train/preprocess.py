"""Stage 1 of RVC training: dataset audio -> training pieces (upstream's recipe).

Each source file is loaded at the target rate, high-passed (5th-order
Butterworth at 48 Hz, causal, as upstream: zero-phase filtering adds
pre-ringing), cut on silence by the slicer, and every voiced region is cut
into 3.7 s pieces that overlap by 0.3 s (the last piece of a region takes
the remainder, up to 4.0 s). A piece whose peak exceeds 2.5 is dropped (a
broken decode); the others are normalised as ``x/peak*(0.9*0.75) + 0.25*x``
and written as float WAV to ``0_gt_wavs/<file index>_<piece>.wav`` and,
resampled, to ``1_16k_wavs/``.

Outputs are built in a staging folder and swapped in only when the whole
stage succeeded, so a cancel or a crash never leaves a half-new set of
pieces next to old features.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from engines.core.errors import Cancelled, InvalidInputError, VoiceLabError
from engines.core.hooks import Hooks, ensure_hooks
from engines.core.messages import known_text, msg
from engines.rvc.train.experiment import (
    StageCache,
    experiment_paths,
    files_fingerprint,
    resolve_dataset_files,
    stage_key,
)

HIGHPASS_HZ = 48.0
HIGHPASS_ORDER = 5
PIECE_SECONDS = 3.7
OVERLAP_SECONDS = 0.3
MAX_PEAK = 2.5
NORM_MAX = 0.9
NORM_ALPHA = 0.75
# Upstream's slicer settings for training data.
SLICER_SETTINGS = dict(threshold_db=-42.0, min_length_ms=1500, min_interval_ms=400, hop_ms=15, max_sil_kept_ms=500)


@dataclass
class PreprocessResult:
    """What stage 1 produced (or found cached)."""

    exp_dir: Path
    files: int
    pieces: int
    dropped: int = 0
    failed: list[str] = field(default_factory=list)
    cached: bool = False
    seconds: float = 0.0
    key: str = ""


# ---------------------------------------------------------------------------
# pure signal steps (unit-tested)


def highpass(audio: np.ndarray, sr: int) -> np.ndarray:
    """Causal 5th-order Butterworth high-pass at 48 Hz (removes rumble and DC)."""
    from scipy import signal

    b, a = signal.butter(N=HIGHPASS_ORDER, Wn=HIGHPASS_HZ, btype="high", fs=sr)
    return signal.lfilter(b, a, audio).astype(np.float32)


def split_pieces(audio: np.ndarray, sr: int, per: float = PIECE_SECONDS, overlap: float = OVERLAP_SECONDS) -> list[np.ndarray]:
    """Cut one voiced region into ``per``-second pieces starting every ``per - overlap`` s.

    While more than ``per + overlap`` seconds remain a full piece is taken;
    the remainder (at most ``per + overlap`` s) becomes the last piece.
    """
    pieces: list[np.ndarray] = []
    step = sr * (per - overlap)
    longest_tail = (per + overlap) * sr
    i = 0
    while True:
        start = int(step * i)
        i += 1
        if len(audio) - start > longest_tail:
            pieces.append(audio[start : start + int(per * sr)])
        else:
            pieces.append(audio[start:])
            return pieces


def normalize_piece(piece: np.ndarray) -> np.ndarray | None:
    """``x/peak*(0.9*0.75) + 0.25*x``, or None for a piece that is silent, broken or peaks above 2.5."""
    peak = float(np.abs(piece).max()) if piece.size else 0.0
    if not np.isfinite(peak) or peak <= 0.0 or peak > MAX_PEAK:
        return None
    return (piece / peak * (NORM_MAX * NORM_ALPHA) + (1 - NORM_ALPHA) * piece).astype(np.float32)


def voiced_regions(audio: np.ndarray, sr: int) -> list[np.ndarray]:
    """The slicer's regions of ``audio`` (upstream's training settings)."""
    from engines.dataset.slicer import SlicerParams, slice_ranges

    return [audio[start:end] for start, end in slice_ranges(audio, sr, SlicerParams(**SLICER_SETTINGS))]


# ---------------------------------------------------------------------------
# per-file work (runs in worker processes)


def process_file(path: str, index: int, sr: int, gt_dir: str, wav16k_dir: str) -> tuple[int, int]:
    """Preprocess one source file; returns (pieces written, pieces dropped)."""
    from engines.core.audio import load_audio, resample, write_audio

    audio, _ = load_audio(path, sr)
    audio = highpass(audio, sr)
    written = dropped = 0
    piece_no = 0
    for region in voiced_regions(audio, sr):
        for piece in split_pieces(region, sr):
            norm = normalize_piece(piece)
            if norm is None:
                dropped += 1
                continue
            name = f"{index}_{piece_no}.wav"
            piece_no += 1
            write_audio(Path(gt_dir) / name, norm, sr, subtype="FLOAT")
            write_audio(Path(wav16k_dir) / name, resample(norm, sr, 16000), 16000, subtype="FLOAT")
            written += 1
    return written, dropped


def run_tasks(
    fn: Callable[..., Any],
    tasks: Sequence[tuple],
    n_processes: int,
    hooks: Hooks,
    label: str,
    *,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
    on_error: Callable[[tuple, BaseException], None] | None = None,
) -> list[Any]:
    """Run ``fn(*task)`` for every task, in-process (n <= 1) or over ``n`` spawned processes.

    Progress is reported per finished task; cancel is checked between tasks
    (pending tasks are dropped, running ones finish). A task's exception is
    passed to ``on_error`` (default: re-raised).
    """
    results: list[Any] = [None] * len(tasks)
    total = max(1, len(tasks))

    def failed(task: tuple, exc: BaseException) -> None:
        if on_error is None:
            raise exc
        on_error(task, exc)

    if n_processes <= 1 or len(tasks) <= 1:
        if initializer is not None:
            initializer(*initargs)
        for i, task in enumerate(tasks):
            hooks.check_cancel()
            try:
                results[i] = fn(*task)
            except (Cancelled, KeyboardInterrupt):
                raise
            except Exception as exc:  # noqa: BLE001 - reported per file
                failed(task, exc)
            hooks.progress((i + 1) / total, msg("progress.stage_count", label=known_text("stage", label), done=i + 1, total=len(tasks)))
        return results

    ctx = multiprocessing.get_context("spawn")
    pool = cf.ProcessPoolExecutor(max_workers=min(n_processes, len(tasks)), mp_context=ctx,
                                  initializer=initializer, initargs=initargs)
    try:
        futures = {pool.submit(fn, *task): i for i, task in enumerate(tasks)}
        done = 0
        for fut in cf.as_completed(futures):
            i = futures[fut]
            try:
                results[i] = fut.result()
            except cf.process.BrokenProcessPool as exc:
                raise VoiceLabError(msg("job.worker_died", label=known_text("stage", label))) from exc
            except Exception as exc:  # noqa: BLE001
                failed(tasks[i], exc)
            done += 1
            hooks.progress(done / total, msg("progress.stage_count", label=known_text("stage", label), done=done, total=len(tasks)))
            if hooks.cancelled:
                raise Cancelled()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results


# ---------------------------------------------------------------------------
# the stage


def preprocess_key(dataset_root: Path, files: Sequence[Path], sr: int) -> str:
    return stage_key(
        stage="preprocess",
        files=files_fingerprint(files, dataset_root),
        sr=sr,
        highpass=[HIGHPASS_ORDER, HIGHPASS_HZ],
        pieces=[PIECE_SECONDS, OVERLAP_SECONDS, MAX_PEAK, NORM_MAX, NORM_ALPHA],
        slicer=SLICER_SETTINGS,
    )


def preprocess_dataset(
    ws: Any,
    exp_name: str,
    dataset: str,
    sr: int,
    *,
    n_processes: int = 2,
    force: bool = False,
    hooks: Hooks | None = None,
) -> PreprocessResult:
    """Slice and normalise ``dataset`` into ``experiments/<exp_name>/`` (cached).

    ``sr`` is the target rate in Hz (32000/40000/48000). Skips the work when
    the dataset files and settings are unchanged since the last complete run
    (``force`` redoes it). Redoing it invalidates the later stages.
    """
    hooks = ensure_hooks(hooks)
    t0 = time.monotonic()
    paths = experiment_paths(ws, exp_name, create=True)
    dataset_root, files = resolve_dataset_files(ws, dataset)
    key = preprocess_key(dataset_root, files, sr)
    cache = StageCache(paths)
    entry = cache.get("preprocess")
    if not force and cache.is_fresh("preprocess", key) and paths.gt_wavs.is_dir() and paths.wavs16k.is_dir():
        pieces = len(paths.piece_names())
        hooks.log(f"Preprocess: skipped, dataset and settings unchanged ({len(files)} files, {pieces} pieces cached).")
        hooks.progress(1.0, msg("progress.preprocess_cached"))
        return PreprocessResult(paths.root, len(files), pieces, cached=True, key=key,
                                dropped=int((entry or {}).get("dropped", 0)))

    hooks.log(f"Preprocess: {len(files)} files from {dataset_root} -> {paths.root} at {sr} Hz, "
              f"{n_processes} process(es){' (forced)' if force else ''}.")
    staging = paths.root / ".staging_preprocess"
    shutil.rmtree(staging, ignore_errors=True)
    gt_tmp, k16_tmp = staging / paths.gt_wavs.name, staging / paths.wavs16k.name
    gt_tmp.mkdir(parents=True)
    k16_tmp.mkdir(parents=True)
    failed: list[str] = []

    def on_error(task: tuple, exc: BaseException) -> None:
        failed.append(str(task[0]))
        hooks.log(f"Preprocess: skipped {task[0]}: {exc}")

    tasks = [(str(f), i, sr, str(gt_tmp), str(k16_tmp)) for i, f in enumerate(files)]
    try:
        results = run_tasks(process_file, tasks, n_processes, hooks, "preprocess", on_error=on_error)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    written = sum(r[0] for r in results if r)
    dropped = sum(r[1] for r in results if r)
    if written == 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise InvalidInputError(
            "Preprocessing produced no training pieces.",
            "The dataset's audio is too short (each voiced region needs >= 1.5 s) or silent; add longer recordings.",
        )
    # Swap the new pieces in; everything derived from the old pieces is now stale.
    for stale in ("f0", "feature"):
        cache.invalidate(stale)
    for folder in (paths.gt_wavs, paths.wavs16k, paths.f0_coarse, paths.f0_hz, paths.features("v1"),
                   paths.features("v2"), paths.spec_cache):
        shutil.rmtree(folder, ignore_errors=True)
    gt_tmp.rename(paths.gt_wavs)
    k16_tmp.rename(paths.wavs16k)
    shutil.rmtree(staging, ignore_errors=True)
    paths.filelist.unlink(missing_ok=True)
    cache.finish("preprocess", key, pieces=written, dropped=dropped, files=len(files))
    seconds = time.monotonic() - t0
    hooks.log(f"Preprocess: {written} pieces from {len(files) - len(failed)} files"
              f"{f', {dropped} dropped (peak > {MAX_PEAK})' if dropped else ''}"
              f"{f', {len(failed)} files failed' if failed else ''} in {seconds:.1f} s.")
    return PreprocessResult(paths.root, len(files), written, dropped, failed, False, seconds, key)

