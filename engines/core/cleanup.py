"""Keep the upload and A/B caches from filling the disk: by age and by size, from settings.

Gradio keeps every uploaded file (and its copies of files shown on the page)
under ``<workspace>/uploads/gradio``; A/B renders are cached under
``<workspace>/ab/cache``. Nothing else ever removes them. ``clean_caches``
deletes files older than the configured age, then the oldest ones until the
folder is under its size limit, never touching a file a queued or running
job names; partial uploads (Gradio's ``tmp*`` files) older than a few
minutes always go. The studio runs it at start and then periodically.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from engines.core.settings import Workspace

PARTIAL_UPLOAD_SECONDS = 15 * 60
CLEAN_EVERY_SECONDS = 15 * 60


@dataclass
class CleanReport:
    folder: str
    removed: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    kept_bytes: int = 0


def _files(folder: Path) -> list[tuple[Path, os.stat_result]]:
    out = []
    for root, _, names in os.walk(folder):
        for name in names:
            p = Path(root) / name
            try:
                st = p.lstat()
            except OSError:
                continue
            out.append((p, st))
    return out


def _remove_empty_dirs(folder: Path) -> None:
    for root, dirs, files in os.walk(folder, topdown=False):
        if Path(root) != folder and not dirs and not files:
            try:
                os.rmdir(root)
            except OSError:
                pass


def clean_folder(folder: Path, max_age_seconds: float, max_bytes: int, keep: Iterable[str | os.PathLike] = (),
                 now: float | None = None, partial_glob: str = "") -> CleanReport:
    """Remove files of ``folder`` older than ``max_age_seconds``, then the oldest until under ``max_bytes``."""
    report = CleanReport(str(folder))
    if not folder.is_dir():
        return report
    now = time.time() if now is None else now
    kept = {os.path.realpath(k) for k in keep}
    partial = {p for p in folder.glob(partial_glob)} if partial_glob else set()
    victims: list[tuple[Path, os.stat_result]] = []
    survivors: list[tuple[Path, os.stat_result]] = []
    for p, st in _files(folder):
        if os.path.realpath(p) in kept:
            survivors.append((p, st))
            continue
        age = now - st.st_mtime
        if (p in partial and age > PARTIAL_UPLOAD_SECONDS) or (max_age_seconds > 0 and age > max_age_seconds):
            victims.append((p, st))
        else:
            survivors.append((p, st))
    total = sum(st.st_size for _, st in survivors)
    if max_bytes > 0 and total > max_bytes:
        for p, st in sorted(survivors, key=lambda x: x[1].st_mtime):
            if total <= max_bytes:
                break
            if os.path.realpath(p) in kept or (p in partial and now - st.st_mtime < PARTIAL_UPLOAD_SECONDS):
                continue
            victims.append((p, st))
            total -= st.st_size
    for p, st in victims:
        try:
            p.unlink()
        except OSError:
            continue
        report.removed.append(str(p))
        report.freed_bytes += st.st_size
    gone = set(report.removed)
    report.kept_bytes = sum(st.st_size for p, st in survivors if str(p) not in gone)
    _remove_empty_dirs(folder)
    return report


def clean_caches(ws: Workspace, in_use: Iterable[str] = (), now: float | None = None) -> list[CleanReport]:
    """Clean the upload folder and the A/B render cache by the workspace's settings."""
    from engines.core.paths import upload_root

    s = ws.settings
    keep = list(in_use)
    return [
        clean_folder(upload_root(), s.upload_cache_hours * 3600, s.upload_cache_mb * 1024 * 1024, keep, now,
                     partial_glob="tmp*"),
        clean_folder(ws.root / "ab" / "cache", s.ab_cache_days * 86400, s.ab_cache_mb * 1024 * 1024, keep, now),
    ]


def start_cleaner(ws: Workspace, in_use: Callable[[], Iterable[str]],
                  every: float = CLEAN_EVERY_SECONDS, log: Callable[[str], None] = print) -> threading.Thread:
    """Clean now and then every ``every`` seconds on a daemon thread."""
    def loop() -> None:
        while True:
            try:
                for rep in clean_caches(ws, in_use()):
                    if rep.removed:
                        log(f"cache cleanup: removed {len(rep.removed)} file(s), "
                            f"{rep.freed_bytes / 1e6:.1f} MB, from {rep.folder}")
            except Exception as exc:  # noqa: BLE001 - cleaning must never stop the studio
                log(f"cache cleanup failed: {type(exc).__name__}: {exc}")
            time.sleep(every)

    thread = threading.Thread(target=loop, name="voicelab-cache-cleaner", daemon=True)
    thread.start()
    return thread


def paths_in(values: Iterable[object]) -> list[str]:
    """Every string (also inside lists) among a job's parameter values: what it may still read."""
    out: list[str] = []
    for v in values:
        if isinstance(v, str) and v:
            out.append(v)
        elif isinstance(v, (list, tuple)):
            out += paths_in(v)
    return out
