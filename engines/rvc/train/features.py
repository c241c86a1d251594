"""Stages 2 and 3 of RVC training: pitch and content features, then the filelist.

Pitch (``2a_f0``, ``2b-f0nsf``): for every 16 kHz piece, f0 in Hz per 10 ms
(0 = unvoiced) and its 1..255 coarse version, saved as ``<name>.wav.npy``
(upstream's names). Content (``3_feature256|768/<name>.npy``): HuBERT
features, 50 frames/s. Both run over CPU processes, or one process per GPU
when several GPUs are used, and are cached like preprocessing: a stage is
skipped when the pieces (via the preprocess key) and its own settings are
unchanged; an interrupted stage resumes where it stopped.

The filelist (``gt_wav|feature|f0|f0nsf|speaker``) lists the pieces that
have every file, plus two silent "mute" entries as upstream adds: they teach
the model that silence in gives silence out. Upstream ships its mute files;
we synthesise them per experiment (zeros, unvoiced pitch, and the content
encoder's features of silence), which is what upstream's files contain.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from engines.core.atomic import atomic_path, write_text
from engines.core.errors import InvalidInputError, MissingAssetError
from engines.core.hooks import Hooks, ensure_hooks
from engines.core.messages import msg
from engines.rvc.train.experiment import (
    CONTENT_DIMS,
    ExperimentPaths,
    StageCache,
    clear_dir,
    environ_cpu_count,
    stage_key,
)
from engines.rvc.train.preprocess import run_tasks

MUTE_SECONDS = 3.0
MUTE_COPIES = 2
# Methods that run a neural network (worth a GPU); the others are pure CPU DSP.
NETWORK_F0_METHODS = {"rmvpe", "crepe", "crepe-tiny", "fcpe"}


@dataclass
class StageResult:
    """Outcome of one feature stage."""

    stage: str
    done: int
    skipped: int
    failed: list[str]
    cached: bool
    seconds: float


def _preprocess_key(paths: ExperimentPaths, cache: StageCache) -> str:
    entry = cache.get("preprocess")
    if not entry or not entry.get("complete") or not paths.piece_names():
        raise InvalidInputError(
            f"Experiment '{paths.name}' has no preprocessed pieces.",
            "Run the preprocess step first (voicelab rvc preprocess, or untick 'skip preprocess').",
        )
    return str(entry["key"])


def _file_stamp(path: Path | None) -> list[Any]:
    if path is None or not path.exists():
        return [str(path), None]
    st = path.stat()
    return [str(path), st.st_size, st.st_mtime_ns]


def _save_npy(target: Path, array: np.ndarray) -> None:
    with atomic_path(target) as tmp:
        np.save(tmp, array, allow_pickle=False)


def _read_16k(path: Path) -> np.ndarray:
    import soundfile as sf

    audio, sr = sf.read(str(path), dtype="float32", always_2d=False)
    if sr != 16000:
        raise InvalidInputError(f"{path.name} is {sr} Hz, expected 16000.", "Re-run preprocessing (--force).")
    return audio if audio.ndim == 1 else audio.mean(axis=1)


# ---------------------------------------------------------------------------
# worker process state: one device and one lazily loaded model per process

_WORKER: dict[str, Any] = {}


def init_worker(device_queue: Any | None, threads: int) -> None:
    """Give this worker its device (popped from a queue) and a fair share of CPU threads."""
    _WORKER.clear()
    _WORKER["device"] = device_queue.get() if device_queue is not None else "cpu"
    if threads > 0:
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        try:
            import torch

            torch.set_num_threads(threads)
        except ImportError:  # pragma: no cover - torch is a hard dependency
            pass


def pitch_file(wav16k: str, coarse_out: str, hz_out: str, method: str, rmvpe_path: str | None) -> int:
    """f0 of one piece -> ``2b-f0nsf`` (Hz) and ``2a_f0`` (coarse). Returns the frame count."""
    from engines.rvc.pitch.f0 import extract_f0, f0_to_coarse

    audio = _read_16k(Path(wav16k))
    f0 = np.asarray(extract_f0(audio, method, device=_WORKER.get("device", "cpu"), rmvpe_path=rmvpe_path),
                    dtype=np.float32)
    f0 = np.nan_to_num(f0, nan=0.0, posinf=0.0, neginf=0.0)
    _save_npy(Path(hz_out), f0)
    _save_npy(Path(coarse_out), np.asarray(f0_to_coarse(f0)).astype(np.int64))
    return int(f0.shape[0])


def _encoder(hubert_path: str) -> Any:
    if _WORKER.get("encoder_path") != hubert_path:
        from engines.rvc.content.hubert import load_content_encoder

        _WORKER["encoder"] = load_content_encoder(hubert_path, _WORKER.get("device", "cpu"))
        _WORKER["encoder_path"] = hubert_path
    return _WORKER["encoder"]


def content_files(items: Sequence[tuple[str, str]], version: str, hubert_path: str) -> list[str]:
    """Content features for a batch of (16 kHz wav, output .npy); returns the names that failed (NaN)."""
    import torch

    encoder = _encoder(hubert_path)
    bad: list[str] = []
    for wav, out in items:
        audio = _read_16k(Path(wav))
        with torch.inference_mode():
            feats = encoder.extract(audio, version)
        feats = feats.float().cpu().numpy() if hasattr(feats, "cpu") else np.asarray(feats, dtype=np.float32)
        if not np.isfinite(feats).all():
            bad.append(Path(wav).name)
            continue
        _save_npy(Path(out), feats.astype(np.float32))
    return bad


# ---------------------------------------------------------------------------
# device planning


def plan_devices(kind: str, n_processes: int, gpus: Sequence[int] | None) -> list[str]:
    """One entry per worker process: GPUs when given and the work benefits, else CPU slots."""
    if kind == "gpu" and gpus:
        return [f"cuda:{g}" for g in gpus]
    return ["cpu"] * max(1, n_processes)


def _run_on_devices(fn: Any, tasks: list[tuple], devices: list[str], hooks: Hooks, label: str,
                    on_error: Any) -> list[Any]:
    if len(devices) <= 1 or len(tasks) <= 1:
        init_worker(None, 0)
        _WORKER["device"] = devices[0]
        return run_tasks(fn, tasks, 1, hooks, label, on_error=on_error)
    import multiprocessing

    queue = multiprocessing.get_context("spawn").Manager().Queue()
    for d in devices:
        queue.put(d)
    threads = max(1, environ_cpu_count() // len(devices)) if devices[0] == "cpu" else 0
    return run_tasks(fn, tasks, len(devices), hooks, label, initializer=init_worker,
                     initargs=(queue, threads), on_error=on_error)


# ---------------------------------------------------------------------------
# stages


def extract_pitch(
    paths: ExperimentPaths,
    method: str,
    *,
    n_processes: int = 2,
    gpus: Sequence[int] | None = None,
    rmvpe_path: str | os.PathLike | None = None,
    force: bool = False,
    hooks: Hooks | None = None,
) -> StageResult:
    """Stage 2: f0 + coarse pitch for every piece (cached, resumable)."""
    hooks = ensure_hooks(hooks)
    t0 = time.monotonic()
    cache = StageCache(paths)
    names = paths.piece_names()
    rmvpe = str(rmvpe_path) if rmvpe_path else None
    if method == "rmvpe" and rmvpe and not Path(rmvpe).is_file():
        raise MissingAssetError("rmvpe.pt", rmvpe, "voicelab assets download rmvpe", "rmvpe pitch extraction")
    key = stage_key(stage="f0", pre=_preprocess_key(paths, cache), method=method,
                    model=_file_stamp(Path(rmvpe)) if method == "rmvpe" and rmvpe else None)
    outputs_ok = all((paths.f0_hz / f"{n}.wav.npy").exists() and (paths.f0_coarse / f"{n}.wav.npy").exists()
                     for n in names)
    if not force and cache.is_fresh("f0", key) and outputs_ok:
        hooks.log(f"Pitch ({method}): skipped, pieces and settings unchanged ({len(names)} cached).")
        hooks.progress(1.0, msg("progress.pitch_cached"))
        return StageResult("f0", 0, len(names), [], True, 0.0)
    resume = not force and cache.can_resume("f0", key)
    if not resume:
        clear_dir(paths.f0_hz)
        clear_dir(paths.f0_coarse)
    paths.f0_hz.mkdir(parents=True, exist_ok=True)
    paths.f0_coarse.mkdir(parents=True, exist_ok=True)
    cache.begin("f0", key)
    tasks = []
    skipped = 0
    for n in names:
        coarse, hz = paths.f0_coarse / f"{n}.wav.npy", paths.f0_hz / f"{n}.wav.npy"
        if resume and coarse.exists() and hz.exists():
            skipped += 1
            continue
        tasks.append((str(paths.wavs16k / f"{n}.wav"), str(coarse), str(hz), method, rmvpe))
    devices = plan_devices("gpu" if method in NETWORK_F0_METHODS else "cpu", n_processes, gpus)
    hooks.log(f"Pitch ({method}): {len(tasks)} pieces on {len(devices)} worker(s) [{', '.join(sorted(set(devices)))}]"
              + (f", {skipped} already done" if skipped else "") + ".")
    failed: list[str] = []

    def on_error(task: tuple, exc: BaseException) -> None:
        failed.append(Path(task[0]).name)
        hooks.log(f"Pitch: failed on {Path(task[0]).name}: {exc}")

    _run_on_devices(pitch_file, tasks, devices, hooks, f"pitch ({method})", on_error)
    if tasks and len(failed) == len(tasks):
        raise InvalidInputError(f"Pitch extraction with '{method}' failed on every piece.", "See the log for the first error.")
    cache.finish("f0", key, method=method)
    seconds = time.monotonic() - t0
    hooks.log(f"Pitch ({method}): {len(tasks) - len(failed)} done in {seconds:.1f} s" + (f", {len(failed)} failed." if failed else "."))
    return StageResult("f0", len(tasks) - len(failed), skipped, failed, False, seconds)


def _resolve_hubert(hubert_path: str | os.PathLike | None) -> str:
    if not hubert_path:
        raise InvalidInputError("No content encoder (HuBERT) path given.")
    p = Path(hubert_path)
    if not p.exists():
        raise MissingAssetError("hubert_base.pt", str(p), "voicelab assets download hubert", "content features")
    return str(p)


def extract_content(
    paths: ExperimentPaths,
    version: str,
    hubert_path: str | os.PathLike | None,
    *,
    sr: int,
    gpus: Sequence[int] | None = None,
    force: bool = False,
    hooks: Hooks | None = None,
    batch: int = 8,
) -> StageResult:
    """Stage 3: content features for every piece (cached, resumable) and the mute entries."""
    hooks = ensure_hooks(hooks)
    t0 = time.monotonic()
    cache = StageCache(paths)
    names = paths.piece_names()
    hubert = _resolve_hubert(hubert_path)
    hubert_stamp = _file_stamp(Path(hubert)) if Path(hubert).is_file() else [hubert, sorted(
        _file_stamp(p) for p in Path(hubert).iterdir())]
    key = stage_key(stage="feature", pre=_preprocess_key(paths, cache), version=version, model=hubert_stamp)
    out_dir = paths.features(version)
    outputs_ok = all((out_dir / f"{n}.npy").exists() for n in names)
    if not force and cache.is_fresh("feature", key) and outputs_ok and mute_ready(paths, version, sr):
        hooks.log(f"Content features ({version}): skipped, pieces and encoder unchanged ({len(names)} cached).")
        hooks.progress(1.0, msg("progress.features_cached"))
        return StageResult("feature", 0, len(names), [], True, 0.0)
    resume = not force and cache.can_resume("feature", key)
    if not resume:
        clear_dir(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache.begin("feature", key)
    todo = [(str(paths.wavs16k / f"{n}.wav"), str(out_dir / f"{n}.npy")) for n in names
            if not (resume and (out_dir / f"{n}.npy").exists())]
    skipped = len(names) - len(todo)
    devices = plan_devices("gpu", 1, gpus)
    if len(devices) == 1 and not gpus:
        from engines.core.device import pick_device

        devices = [str(pick_device("auto"))]
    hooks.log(f"Content features ({version}, {CONTENT_DIMS[version]}-d): {len(todo)} pieces on "
              f"{', '.join(devices)}" + (f", {skipped} already done" if skipped else "") + ".")
    chunks = [(todo[i : i + batch], version, hubert) for i in range(0, len(todo), batch)]
    failed: list[str] = []

    def on_error(task: tuple, exc: BaseException) -> None:
        failed.extend(Path(w).name for w, _ in task[0])
        hooks.log(f"Content features: failed on {len(task[0])} pieces: {exc}")

    for bad in _run_on_devices(content_files, chunks, devices, hooks, "features", on_error):
        for name in bad or []:
            failed.append(name)
            hooks.log(f"Content features: {name} gave NaN features; left out of training.")
    write_mute(paths, version, sr, hubert)
    cache.finish("feature", key, version=version)
    seconds = time.monotonic() - t0
    hooks.log(f"Content features: {len(todo) - len(failed)} done in {seconds:.1f} s" + (f", {len(failed)} failed." if failed else "."))
    return StageResult("feature", len(todo) - len(failed), skipped, failed, False, seconds)


# ---------------------------------------------------------------------------
# mute entries and filelist


def mute_files(paths: ExperimentPaths, version: str, sr: int) -> tuple[Path, Path, Path, Path]:
    """(gt wav, features, coarse f0, f0 Hz) of the experiment's silent piece."""
    m = paths.mute
    return (m / "0_gt_wavs" / f"mute{sr // 1000}k.wav", m / f"3_feature{CONTENT_DIMS[version]}" / "mute.npy",
            m / "2a_f0" / "mute.wav.npy", m / "2b-f0nsf" / "mute.wav.npy")


def mute_ready(paths: ExperimentPaths, version: str, sr: int) -> bool:
    return all(p.exists() for p in mute_files(paths, version, sr))


def write_mute(paths: ExperimentPaths, version: str, sr: int, hubert_path: str) -> None:
    """Write the silent piece at ``sr``, its content features and an all-unvoiced pitch track."""
    from engines.core.audio import write_audio

    gt, feat, coarse, hz = mute_files(paths, version, sr)
    if not gt.exists():
        write_audio(gt, np.zeros(int(MUTE_SECONDS * sr), dtype=np.float32), sr, subtype="FLOAT")
    if not feat.exists():
        import torch

        encoder = _encoder(hubert_path)
        with torch.inference_mode():
            feats = encoder.extract(np.zeros(int(MUTE_SECONDS * 16000), dtype=np.float32), version)
        _save_npy(feat, feats.float().cpu().numpy().astype(np.float32))
    frames = int(MUTE_SECONDS * 100)
    if not hz.exists():
        _save_npy(hz, np.zeros(frames, dtype=np.float32))
    if not coarse.exists():
        _save_npy(coarse, np.ones(frames, dtype=np.int64))


def write_filelist(paths: ExperimentPaths, version: str, f0: bool, sr: int, *, speaker_id: int = 0,
                   mute: bool = True, exclude: set[str] | None = None) -> int:
    """Write ``filelist.txt`` for the pieces that have every file, minus ``exclude`` (pieces held out of
    training); returns the entry count (mute included)."""
    feat_dir = paths.features(version)
    lines = []
    for name in paths.piece_names():
        if exclude and name in exclude:
            continue
        gt, feat = paths.gt_wavs / f"{name}.wav", feat_dir / f"{name}.npy"
        coarse, hz = paths.f0_coarse / f"{name}.wav.npy", paths.f0_hz / f"{name}.wav.npy"
        needed = (gt, feat, coarse, hz) if f0 else (gt, feat)
        if all(p.exists() for p in needed):
            lines.append("|".join([*map(str, needed), str(speaker_id)]))
    if not lines:
        raise InvalidInputError(
            f"No piece of experiment '{paths.name}' has all its features.",
            "Run the pitch and feature extraction steps (do not skip them on a fresh experiment).",
        )
    if mute:
        m_gt, m_feat, m_coarse, m_hz = mute_files(paths, version, sr)
        if mute_ready(paths, version, sr):
            entry = (m_gt, m_feat, m_coarse, m_hz) if f0 else (m_gt, m_feat)
            lines.extend("|".join([*map(str, entry), str(speaker_id)]) for _ in range(MUTE_COPIES))
    write_text(paths.filelist, "\n".join(lines) + "\n")
    return len(lines)
