"""Write files so that a crash, a full disk or a cancel never leaves half a file.

Everything the studio produces goes to a temp file in the same directory and
is renamed into place only when complete. A full disk, wherever it strikes,
becomes one clear ``DiskFullError`` ("disk full at <path>: N MB free, need
about M MB"); writes whose size is known check the free space first.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from engines.core.errors import DiskFullError

# Below this much free space a failed write is taken for a full disk, whatever the library said
# (libsndfile reports ENOSPC as "System error.").
NEARLY_FULL_BYTES = 1024 * 1024
# Kept free beyond a write's own size: the job records and logs need a little room too.
SPARE_BYTES = 8 * 1024 * 1024
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def free_bytes(path: str | os.PathLike) -> int:
    """Free space (for this user) on the file system holding ``path`` or its nearest existing parent."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return int(shutil.disk_usage(p).free)
    except OSError:
        return 0


def require_space(path: str | os.PathLike, need_bytes: int, spare: int = SPARE_BYTES) -> None:
    """Raise DiskFullError now when ``need_bytes`` (plus a little room) do not fit at ``path``."""
    free = free_bytes(path)
    if need_bytes > 0 and free < need_bytes + spare:
        raise DiskFullError(str(_folder(path)), free, need_bytes + spare)


def _folder(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p if p.is_dir() else p.parent


def is_disk_full(exc: BaseException, path: str | os.PathLike) -> bool:
    """True when ``exc`` means the disk at ``path`` is full (an ENOSPC anywhere in its chain, or no room left)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DiskFullError):
            return True
        if isinstance(seen, OSError) and seen.errno in _FULL_ERRNOS:
            return True
        if "database or disk is full" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return free_bytes(path) < NEARLY_FULL_BYTES


def disk_full_error(exc: BaseException, path: str | os.PathLike, need_bytes: int | None = None) -> DiskFullError:
    if isinstance(exc, DiskFullError):
        return exc
    return DiskFullError(str(_folder(path)), free_bytes(path), need_bytes)


def user_facing(exc: BaseException, path: str | os.PathLike) -> BaseException:
    """``exc`` itself, or the DiskFullError it stands for when the disk at ``path`` is full."""
    from engines.core.errors import VoiceLabError

    if isinstance(exc, Exception) and not isinstance(exc, VoiceLabError) and is_disk_full(exc, path):
        return disk_full_error(exc, path)
    return exc


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None, need_bytes: int = 0) -> Iterator[Path]:
    """Yield a temp path next to ``target``; rename it onto ``target`` on success.

    The temp name keeps ``target``'s extension (or ``suffix``) so writers that
    pick a format from the name still work. On error the temp file is removed
    and ``target`` is untouched; a full disk is reported as DiskFullError.
    ``need_bytes`` (the size about to be written, when known) is checked first.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        require_space(target.parent, need_bytes)
        ext = suffix if suffix is not None else "".join(target.suffixes[-1:])
        fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".part{ext}", dir=target.parent)
        os.close(fd)
    except DiskFullError:
        raise
    except OSError as exc:
        if is_disk_full(exc, target.parent):
            raise disk_full_error(exc, target.parent, need_bytes or None) from exc
        raise
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException as exc:
        written = tmp_path.stat().st_size if tmp_path.exists() else 0
        full = isinstance(exc, Exception) and not isinstance(exc, DiskFullError) and is_disk_full(exc, target.parent)
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if full:
            raise disk_full_error(exc, target.parent, max(need_bytes, written) or None) from exc
        raise


def write_text(target: str | os.PathLike, text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(target, need_bytes=len(data)) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_json(target: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    import json

    return write_text(target, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def torch_save(obj: Any, target: str | os.PathLike) -> Path:
    """``torch.save`` through a temp file (checkpoints are never half-written)."""
    import torch

    with atomic_path(target) as tmp:
        torch.save(obj, tmp)
    return Path(target)
