"""Read-side of datasets: list them, summarise them, page through and delete clips."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engines.core.errors import InvalidInputError
from engines.core.settings import Workspace, safe_name
from engines.dataset.manifest import (
    MANIFEST_NAME,
    dataset_lock,
    dataset_path,
    load_manifest,
    save_manifest,
)


@dataclass
class DatasetStats:
    """Summary numbers of one dataset (what the Dataset tab shows)."""

    name: str
    path: str
    clips: int = 0
    total_seconds: float = 0.0
    min_seconds: float = 0.0
    max_seconds: float = 0.0
    mean_seconds: float = 0.0
    rate_histogram: dict[int, int] = field(default_factory=dict)  # sample rate -> clip count
    clipped_clips: int = 0
    silent_clips: int = 0
    sources: int = 0
    skipped_files: int = 0
    skipped: list[dict] = field(default_factory=list)  # {source, reason, time}


def list_datasets(ws: Workspace) -> list[str]:
    """Names of the datasets in the workspace (folders holding a manifest), sorted."""
    root = ws.datasets
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / MANIFEST_NAME).is_file())


def dataset_stats(ws: Workspace, name: str) -> DatasetStats:
    man = load_manifest(ws, safe_name(name))
    durations = [float(c["duration"]) for c in man.clips]
    hist: dict[int, int] = {}
    for c in man.clips:
        hist[int(c["sample_rate"])] = hist.get(int(c["sample_rate"]), 0) + 1
    total = sum(durations)
    return DatasetStats(
        name=man.name,
        path=str(dataset_path(ws, man.name)),
        clips=len(durations),
        total_seconds=round(total, 3),
        min_seconds=round(min(durations), 3) if durations else 0.0,
        max_seconds=round(max(durations), 3) if durations else 0.0,
        mean_seconds=round(total / len(durations), 3) if durations else 0.0,
        rate_histogram=dict(sorted(hist.items())),
        clipped_clips=sum(bool(c.get("clipped")) for c in man.clips),
        silent_clips=sum(bool(c.get("silent")) for c in man.clips),
        sources=len(man.sources),
        skipped_files=len(man.skipped),
        skipped=list(man.skipped),
    )


def list_clips(ws: Workspace, name: str, page: int = 1, page_size: int = 20) -> tuple[list[dict], int]:
    """One page (1-based) of clip records, each with an absolute ``path``; plus the total count."""
    if page < 1 or page_size < 1:
        raise InvalidInputError(f"Page {page} of size {page_size} does not exist.", "Pages start at 1.")
    man = load_manifest(ws, safe_name(name))
    folder = dataset_path(ws, man.name)
    start = (page - 1) * page_size
    rows = [dict(c, path=str(folder / c["file"])) for c in man.clips[start : start + page_size]]
    return rows, len(man.clips)


def clip_path(ws: Workspace, name: str, clip_id: str) -> Path:
    man = load_manifest(ws, safe_name(name))
    for c in man.clips:
        if c["id"] == str(clip_id):
            return dataset_path(ws, man.name) / c["file"]
    raise InvalidInputError(f"Dataset '{name}' has no clip '{clip_id}'.")


def delete_clip(ws: Workspace, name: str, clip_id: str) -> None:
    """Remove one clip from the manifest, then its file (the id is never reused)."""
    name = safe_name(name)
    with dataset_lock(ws, name):
        man = load_manifest(ws, name)
        keep = [c for c in man.clips if c["id"] != str(clip_id)]
        if len(keep) == len(man.clips):
            raise InvalidInputError(f"Dataset '{name}' has no clip '{clip_id}'.", "Refresh the clip list.")
        gone = [c for c in man.clips if c["id"] == str(clip_id)]
        man.clips = keep
        save_manifest(ws, man)
        for c in gone:
            (dataset_path(ws, name) / c["file"]).unlink(missing_ok=True)
