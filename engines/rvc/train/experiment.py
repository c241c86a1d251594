"""An RVC experiment directory: where each stage writes, and the stage cache.

Layout (upstream's names, so existing tools and habits carry over)::

    experiments/<exp>/0_gt_wavs/<idx>_<piece>.wav     pieces at the target rate
    experiments/<exp>/1_16k_wavs/<idx>_<piece>.wav    the same pieces at 16 kHz
    experiments/<exp>/2a_f0/<name>.wav.npy            coarse pitch 1..255
    experiments/<exp>/2b-f0nsf/<name>.wav.npy         pitch in Hz (0 = unvoiced)
    experiments/<exp>/3_feature256|768/<name>.npy     content features
    experiments/<exp>/mute/...                         silent pieces for the filelist
    experiments/<exp>/filelist.txt, config.json, G_*.pth, D_*.pth,
    experiments/<exp>/metrics.jsonl, tensorboard/, .cache.json

The cache records, per stage, a key made from the stage's inputs (dataset
file names, sizes, mtimes, upstream stage keys) and its parameters. A stage
whose key is unchanged and whose outputs are complete is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from engines.core.atomic import write_json
from engines.core.errors import InvalidInputError

AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".wma", ".aiff", ".aif", ".webm", ".mp4"}
CONTENT_DIMS = {"v1": 256, "v2": 768}


@dataclass(frozen=True)
class ExperimentPaths:
    """Every path an RVC experiment uses, derived from its root."""

    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    gt_wavs = property(lambda self: self.root / "0_gt_wavs")
    wavs16k = property(lambda self: self.root / "1_16k_wavs")
    f0_coarse = property(lambda self: self.root / "2a_f0")
    f0_hz = property(lambda self: self.root / "2b-f0nsf")
    filelist = property(lambda self: self.root / "filelist.txt")
    config = property(lambda self: self.root / "config.json")
    metrics = property(lambda self: self.root / "metrics.jsonl")
    tensorboard = property(lambda self: self.root / "tensorboard")
    cache_file = property(lambda self: self.root / ".cache.json")
    spec_cache = property(lambda self: self.root / "spec_cache")
    mute = property(lambda self: self.root / "mute")
    log_file = property(lambda self: self.root / "train.log")

    def features(self, version: str) -> Path:
        return self.root / f"3_feature{CONTENT_DIMS[version]}"

    def piece_names(self) -> list[str]:
        """Names (without .wav) of the preprocessed pieces, in a stable order."""
        if not self.gt_wavs.is_dir():
            return []
        return sorted((p.stem for p in self.gt_wavs.glob("*.wav")), key=piece_sort_key)


def piece_sort_key(name: str) -> tuple:
    """Sort "<idx>_<piece>" names numerically (2_10 after 2_9)."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[_.]", name))


def experiment_paths(ws: Any, exp_name: str, create: bool = False) -> ExperimentPaths:
    """The paths of experiment ``exp_name`` in workspace ``ws``; the folder is made only with ``create``."""
    root = ws.experiment_dir(exp_name)
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return ExperimentPaths(root)


def resolve_dataset_files(ws: Any, dataset: str) -> tuple[Path, list[Path]]:
    """The audio files of a dataset: a studio dataset name, its folder, or any folder of audio.

    A studio dataset (``datasets/<name>/manifest.json``) contributes its
    manifest's clips in order; a plain folder contributes every audio file
    in it (recursively), sorted by path.
    """
    if not str(dataset).strip():
        raise InvalidInputError("No dataset given.", "Choose a dataset from the Dataset tab or give a folder of audio files.")
    candidates = []
    try:
        candidates.append(ws.dataset_dir(dataset))
    except InvalidInputError:
        pass
    candidates.append(Path(dataset).expanduser())
    for folder in candidates:
        manifest = folder / "manifest.json"
        if manifest.is_file():
            data = json.loads(manifest.read_text(encoding="utf-8"))
            files = [folder / c["file"] for c in data.get("clips", []) if c.get("file")]
            files = [f for f in files if f.is_file()]
            if not files:
                raise InvalidInputError(f"Dataset '{dataset}' has no clips on disk.", "Import audio into it first.")
            return folder.resolve(), files
        if folder.is_dir():
            files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
            if not files:
                raise InvalidInputError(f"No audio files in {folder}.", "Supported: " + ", ".join(sorted(AUDIO_EXTENSIONS)))
            return folder.resolve(), files
    raise InvalidInputError(
        f"Dataset '{dataset}' not found.",
        f"Give the name of a dataset in {ws.datasets} or the path of a folder of audio files.",
    )


def files_fingerprint(files: Iterable[Path], base: Path | None = None) -> list[list[Any]]:
    """[relative name, size, mtime_ns] per file: what the cache compares."""
    out = []
    for f in files:
        st = f.stat()
        name = str(f.relative_to(base)) if base is not None and f.is_relative_to(base) else str(f)
        out.append([name, st.st_size, st.st_mtime_ns])
    return out


def stage_key(**parts: Any) -> str:
    """A stable hash of a stage's inputs and parameters."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


class StageCache:
    """Per-stage keys in ``<exp>/.cache.json``.

    ``begin`` records a stage as started (incomplete) with its key; ``finish``
    marks it complete. A stage is fresh only when complete with the same key.
    An interrupted stage with the same key can resume file by file.
    """

    def __init__(self, paths: ExperimentPaths) -> None:
        self.path = paths.cache_file

    def _load(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def get(self, stage: str) -> dict[str, Any] | None:
        return self._load().get(stage)

    def is_fresh(self, stage: str, key: str) -> bool:
        entry = self.get(stage)
        return bool(entry and entry.get("key") == key and entry.get("complete"))

    def can_resume(self, stage: str, key: str) -> bool:
        entry = self.get(stage)
        return bool(entry and entry.get("key") == key and not entry.get("complete"))

    def _set(self, stage: str, entry: dict[str, Any] | None) -> None:
        data = self._load()
        if entry is None:
            data.pop(stage, None)
        else:
            data[stage] = entry
        write_json(self.path, data)

    def begin(self, stage: str, key: str) -> None:
        self._set(stage, {"key": key, "complete": False})

    def finish(self, stage: str, key: str, **info: Any) -> None:
        self._set(stage, {"key": key, "complete": True, **info})

    def invalidate(self, stage: str) -> None:
        self._set(stage, None)


_CKPT_RE = re.compile(r"^([GD])_(\d+)\.pth$")


def list_checkpoints(root: Path, prefix: str) -> list[tuple[int, Path]]:
    """(number, path) of ``<prefix>_<number>.pth`` files in ``root``, ascending."""
    found = []
    if root.is_dir():
        for p in root.iterdir():
            m = _CKPT_RE.match(p.name)
            if m and m.group(1) == prefix:
                found.append((int(m.group(2)), p))
    return sorted(found)


def latest_checkpoint(root: Path, prefix: str) -> Path | None:
    """The ``G_*``/``D_*`` file with the highest number (upstream's resume rule)."""
    found = list_checkpoints(root, prefix)
    return found[-1][1] if found else None


def clear_dir(folder: Path) -> None:
    """Remove the files directly inside ``folder`` (not the folder itself)."""
    if folder.is_dir():
        for p in folder.iterdir():
            if p.is_file():
                p.unlink()


def count_files(folder: Path, pattern: str = "*") -> int:
    return sum(1 for _ in folder.glob(pattern)) if folder.is_dir() else 0


def environ_cpu_count() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
