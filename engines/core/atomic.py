"""Write files so that a crash, a full disk or a cancel never leaves half a file.

Everything the studio produces goes to a temp file in the same directory and
is renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path next to ``target``; rename it onto ``target`` on success.

    The temp name keeps ``target``'s extension (or ``suffix``) so writers that
    pick a format from the name still work. On error the temp file is removed
    and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    ext = suffix if suffix is not None else "".join(target.suffixes[-1:])
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".part{ext}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_text(target: str | os.PathLike, text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(target) as tmp:
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
