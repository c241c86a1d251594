"""Put imported files in place, each beside a sidecar that says where it came from.

A file is copied to a temporary name in its destination folder and renamed
when complete, so ``weights/``, ``indices/`` and ``assets/pretrained_custom/``
never hold half a file. An existing file is never replaced silently: the
same content counts as already imported; different content gets the next
free name (``x_2.pth``) unless the user asked to overwrite. The sidecar
(``<name>.source.json`` beside ``<name>.pth`` / ``<name>.index``) records the
source, the file's place in it, its sha256, when, and for a voice the
index it was paired with, which "auto" index selection then uses.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.core.atomic import atomic_path, write_json

SIDECAR_SUFFIX = ".source.json"
_APPLIO_CHECKPOINT = re.compile(r"^(.*)_(\d+)e_(\d+)s$")


def sidecar_path(installed: str | Path) -> Path:
    p = Path(installed)
    return p.with_name(p.stem + SIDECAR_SUFFIX)


def read_sidecar(installed: str | Path) -> dict[str, Any] | None:
    try:
        data = json.loads(sidecar_path(installed).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def paired_index(model_path: str | Path) -> Path | None:
    """The index an imported voice was paired with, when it is still there."""
    record = read_sidecar(model_path) or {}
    index = record.get("index")
    return Path(index) if isinstance(index, str) and index and Path(index).is_file() else None


def clean_stem(stem: str, fallback: str = "voice") -> str:
    """A file-name stem from a community file: no path separators or control characters, at most 100 characters."""
    s = re.sub(r"[\\/\x00-\x1f\x7f]+", "_", str(stem)).strip(" .")
    s = re.sub(r"\s+", " ", s)[:100].strip(" .")
    return s or fallback


def studio_checkpoint_name(stem: str) -> str:
    """Applio's ``<exp>_<E>e_<S>s`` as the studio's ``<exp>_e<E>_s<S>`` (so the experiment lists it)."""
    m = _APPLIO_CHECKPOINT.match(stem)
    return f"{m.group(1)}_e{m.group(2)}_s{m.group(3)}" if m else stem


@dataclass
class Placed:
    path: Path
    action: str  # "installed" | "already" | "replaced" | "renamed"
    sha256: str
    note: str = ""


def place_file(src: Path, folder: Path, stem: str, suffix: str, *, overwrite: bool = False) -> Placed:
    """Copy ``src`` to ``folder/<stem><suffix>`` atomically, never replacing different content unless asked."""
    from engines.rvc.checkpoints import file_sha256

    folder.mkdir(parents=True, exist_ok=True)
    sha = file_sha256(src)
    target = folder / f"{stem}{suffix}"
    action, note = "installed", ""
    if target.exists():
        if file_sha256(target) == sha:
            return Placed(target, "already", sha, "the same file is already there")
        if overwrite:
            action, note = "replaced", f"replaced the previous {target.name}"
        else:
            n = 2
            while (folder / f"{stem}_{n}{suffix}").exists():
                if file_sha256(folder / f"{stem}_{n}{suffix}") == sha:
                    return Placed(folder / f"{stem}_{n}{suffix}", "already", sha, "the same file is already there")
                n += 1
            action, note = "renamed", f"a different {target.name} is already there"
            target = folder / f"{stem}_{n}{suffix}"
    with atomic_path(target) as tmp:
        shutil.copyfile(src, tmp)
    return Placed(target, action, sha, note)


def write_sidecar(installed: Path, *, source: str, member: str, sha256: str, **extra: Any) -> Path:
    record = {"source": source, "member": member, "sha256": sha256,
              "imported": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}
    return write_json(sidecar_path(installed), record)
