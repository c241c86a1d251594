"""A dataset's ``manifest.json``: the list of clips, their sources and skipped files.

The manifest is the truth about a dataset: a clip file on disk that the
manifest does not list is an orphan from an interrupted import and is
removed by the next import (``remove_orphans``). It is always rewritten
atomically, and imports hold ``dataset_lock`` so two imports into the same
dataset never interleave.

Layout of ``runtime/datasets/<name>/``::

    manifest.json
    clips/000001.wav ...
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from engines.core.atomic import write_json
from engines.core.errors import InvalidInputError
from engines.core.settings import Workspace

MANIFEST_NAME = "manifest.json"
CLIPS_DIR = "clips"
MANIFEST_VERSION = 1


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class ClipRecord:
    """One clip: where it came from and what it measures."""

    id: str
    file: str  # relative to the dataset folder, e.g. "clips/000001.wav"
    source: str  # the source file as given (zip members: "archive.zip!inner/path.wav")
    source_sha256: str
    start: float  # seconds in the source
    end: float
    duration: float
    sample_rate: int
    peak: float  # linear peak of the written clip
    peak_db: float
    rms_db: float
    clipped: bool  # the source audio of this clip hit full scale (distorted)
    silent: bool  # RMS below engines.dataset.processing.SILENCE_DB


@dataclass
class SourceRecord:
    source: str
    sha256: str
    imported: str
    sample_rate: int
    channels: int
    duration: float
    clips: int


@dataclass
class Manifest:
    name: str
    created: str = field(default_factory=now_iso)
    updated: str = field(default_factory=now_iso)
    version: int = MANIFEST_VERSION
    next_id: int = 1
    clips: list[dict[str, Any]] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def known_hashes(self) -> dict[str, str]:
        return {s["sha256"]: s["source"] for s in self.sources}

    def new_clip_id(self) -> str:
        cid = f"{self.next_id:06d}"
        self.next_id += 1
        return cid

    def add_clip(self, rec: ClipRecord) -> None:
        self.clips.append(asdict(rec))

    def add_source(self, rec: SourceRecord) -> None:
        self.sources.append(asdict(rec))

    def add_skipped(self, source: str, reason: str) -> None:
        self.skipped.append({"source": source, "reason": reason, "time": now_iso()})


def dataset_path(ws: Workspace, name: str) -> Path:
    return ws.dataset_dir(name)


def manifest_path(ws: Workspace, name: str) -> Path:
    return dataset_path(ws, name) / MANIFEST_NAME


def load_manifest(ws: Workspace, name: str, create: bool = False) -> Manifest:
    """The dataset's manifest; a fresh one when ``create`` and none exists yet."""
    path = manifest_path(ws, name)
    if not path.is_file():
        if create:
            return Manifest(name=name)
        raise InvalidInputError(
            f"There is no dataset named '{name}'.",
            "Create it first (Dataset tab or `voicelab dataset create`).",
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"The manifest of dataset '{name}' is unreadable: {exc}.",
                                f"Check or restore {path}.") from exc
    known = {f for f in Manifest.__dataclass_fields__}
    man = Manifest(**{k: v for k, v in data.items() if k in known})
    if man.clips:  # never reuse an id even if next_id was edited by hand
        man.next_id = max(man.next_id, 1 + max(int(c["id"]) for c in man.clips if str(c["id"]).isdigit()))
    return man


def save_manifest(ws: Workspace, man: Manifest) -> Path:
    man.updated = now_iso()
    return write_json(manifest_path(ws, man.name), asdict(man))


@contextlib.contextmanager
def dataset_lock(ws: Workspace, name: str) -> Iterator[None]:
    """Exclusive lock on a dataset while it is being modified (blocks other writers)."""
    folder = dataset_path(ws, name)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def remove_orphans(ws: Workspace, man: Manifest) -> list[Path]:
    """Delete clip audio (and leftover temp files) the manifest does not list.

    Only audio and ``.part`` temp files are touched, so sidecar files other
    tools keep next to the clips survive.
    """
    clips_dir = dataset_path(ws, man.name) / CLIPS_DIR
    if not clips_dir.is_dir():
        return []
    listed = {Path(c["file"]).name for c in man.clips}
    removed = []
    for p in clips_dir.iterdir():
        temp = ".part" in p.name
        if p.is_file() and p.name not in listed and (temp or p.suffix.lower() in {".wav", ".flac"}):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
