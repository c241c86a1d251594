"""Reuse weight files from an existing RVC WebUI, Applio or CosyVoice install.

Each manifest entry lists where those projects keep it (``import_from``):
RVC WebUI ``assets/hubert/hubert_base.pt``, ``assets/rmvpe/rmvpe.pt``,
``assets/pretrained(_v2)/*.pth`` (older releases: at the root and
``pretrained/``); Applio ``rvc/models/embedders/contentvec/``,
``rvc/models/predictors/rmvpe.pt``, ``rvc/models/pretraineds/...``;
CosyVoice ``pretrained_models/<model>/``. A found file is verified against
the manifest's size/sha256 and then symlinked (default) or copied into the
assets folder atomically. An existing different file is never overwritten:
it is reported as a conflict.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engines.assets.check import PRESENT, HashCache, hash_cache_for, verify_file
from engines.assets.manifest import (
    AssetSpec,
    Manifest,
    asset_path,
    iter_assets,
    load_manifest,
    missing_parts,
)
from engines.core.atomic import atomic_path
from engines.core.errors import InvalidInputError
from engines.core.hooks import Hooks, ensure_hooks
from engines.core.settings import Settings

# Outcomes of one asset.
LINKED, COPIED, ALREADY, CONFLICT, MISMATCH, NOT_FOUND = "linked", "copied", "already", "conflict", "mismatch", "not-found"


@dataclass
class ImportItem:
    name: str
    action: str
    source: str = ""
    dest: str = ""
    detail: str = ""


@dataclass
class ImportReport:
    source_dir: str
    mode: str  # "symlink" | "copy"
    items: list[ImportItem] = field(default_factory=list)

    def by_action(self, action: str) -> list[ImportItem]:
        return [i for i in self.items if i.action == action]

    @property
    def found(self) -> list[ImportItem]:
        return [i for i in self.items if i.action != NOT_FOUND]

    def summary(self) -> str:
        counts = {a: len(self.by_action(a)) for a in (LINKED, COPIED, ALREADY, CONFLICT, MISMATCH)}
        parts = [f"{n} {a}" for a, n in counts.items() if n]
        return f"Imported from {self.source_dir}: " + (", ".join(parts) if parts else "nothing usable found")

    def to_dict(self) -> dict[str, Any]:
        return {"source_dir": self.source_dir, "mode": self.mode, "summary": self.summary(),
                "items": [asdict(i) for i in self.items]}


def _candidates(spec: AssetSpec, root: Path) -> list[Path]:
    rels = list(spec.import_from)
    # A file with a known hash may also sit directly in the given folder: the hash tells which it is.
    if spec.kind == "file" and spec.sha256:
        rels.append(Path(spec.path).name)
    out: list[Path] = []
    for rel in rels:
        p = (root / rel) if rel not in ("", ".") else root
        if p not in out:
            out.append(p)
    return out


def _verify_source(spec: AssetSpec, src: Path, cache: HashCache, hooks: Hooks) -> str:
    """'' when ``src`` is a complete, intact copy of ``spec``, else why not."""
    if spec.kind == "file":
        if not src.is_file():
            return "not found"
        result = verify_file(src, spec.file_specs()[0], cache, hooks=hooks)
        return "" if result.status == PRESENT else f"{result.status}: {result.detail}"
    if not src.is_dir():
        return "not found"
    if spec.files and not (src / spec.files[0].path.rstrip("/")).exists():
        return "not found"  # the first listed file identifies the kind of folder
    missing = missing_parts(spec, src)
    if missing:
        return "incomplete folder, missing " + ", ".join(missing)
    for f in spec.files:
        result = verify_file(src / f.path.rstrip("/"), f, cache, hooks=hooks)
        if result.status != PRESENT:
            return f"{f.path}: {result.status} {result.detail}".strip()
    return ""


def _same_target(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _dest_state(spec: AssetSpec, dest: Path, src: Path, cache: HashCache, hooks: Hooks) -> str:
    """'free' (nothing there, or a dangling link), 'same' (already this content) or 'conflict'."""
    if dest.is_symlink() and not dest.exists():
        return "free"
    if not dest.exists():
        return "free"
    if _same_target(dest, src):
        return "same"
    if spec.kind == "file" and dest.is_file():
        # Identical content counts as already imported; anything else stays untouched.
        if dest.stat().st_size == src.stat().st_size and cache.sha256(dest, hooks=hooks) == cache.sha256(src, hooks=hooks):
            return "same"
        return "conflict"
    if spec.kind == "dir" and dest.is_dir() and not missing_parts(spec, dest):
        return "same"  # a complete folder is already there: keep it
    return "conflict"


def _place_symlink(src: Path, dest: Path) -> None:
    """Point ``dest`` at ``src``; the link appears atomically (temp link + rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.link-{uuid.uuid4().hex[:8]}"
    os.symlink(src.resolve(), tmp, target_is_directory=src.is_dir())
    try:
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _place_copy(spec: AssetSpec, src: Path, dest: Path, hooks: Hooks) -> None:
    """Copy through a temp name in the destination folder, renamed into place when complete."""
    if dest.is_symlink():  # dangling link: the copy replaces it
        dest.unlink()
    if spec.kind == "file":
        with atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)
            hooks.check_cancel()
            if tmp.stat().st_size != src.stat().st_size:
                raise OSError(f"copy of {src} is incomplete")
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    try:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        hooks.check_cancel()
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def import_assets(settings: Settings, source_dir: str | os.PathLike, *, copy: bool = False,
                  names: list[str] | None = None, manifest: Manifest | None = None,
                  hooks: Hooks | None = None) -> ImportReport:
    """Find manifest assets under ``source_dir`` and link (or copy) them into the assets folder."""
    hooks = ensure_hooks(hooks)
    manifest = manifest or load_manifest()
    root = Path(source_dir).expanduser()
    if not root.is_dir():
        raise InvalidInputError(f"{root} is not a folder.",
                                "Give the folder of an RVC WebUI, Applio or CosyVoice install (or one of its model folders).")
    root = root.resolve()
    report = ImportReport(str(root), "copy" if copy else "symlink")
    cache = hash_cache_for(settings)
    specs = [s for s in iter_assets(manifest, names) if s.kind != "package"]
    try:
        for i, spec in enumerate(specs):
            hooks.check_cancel()
            sub = hooks.scaled(i / max(1, len(specs)), (i + 1) / max(1, len(specs)))
            hooks.progress(i / max(1, len(specs)), f"looking for {spec.name}")
            report.items.append(_import_one(settings, spec, manifest, root, copy, cache, sub))
            item = report.items[-1]
            if item.action != NOT_FOUND:
                hooks.log(f"{item.action:<9} {item.name}  {item.source}" + (f"  ({item.detail})" if item.detail else ""))
    finally:
        cache.save()
    hooks.progress(1.0, report.summary())
    return report


def _import_one(settings: Settings, spec: AssetSpec, manifest: Manifest, root: Path, copy: bool,
                cache: HashCache, hooks: Hooks) -> ImportItem:
    dest = asset_path(settings, spec.name, manifest)
    rejected: list[tuple[Path, str]] = []
    for src in _candidates(spec, root):
        if not src.exists():
            continue
        problem = _verify_source(spec, src, cache, hooks)
        if problem:
            if problem != "not found":
                rejected.append((src, problem))
            continue
        state = _dest_state(spec, dest, src, cache, hooks)
        if state == "same":
            return ImportItem(spec.name, ALREADY, str(src), str(dest), "already in place")
        if state == "conflict":
            return ImportItem(spec.name, CONFLICT, str(src), str(dest),
                              f"a different {'folder' if spec.kind == 'dir' else 'file'} is already at {dest}; left untouched")
        if copy:
            _place_copy(spec, src, dest, hooks)
            return ImportItem(spec.name, COPIED, str(src), str(dest))
        _place_symlink(src, dest)
        return ImportItem(spec.name, LINKED, str(src), str(dest))
    if rejected:
        return ImportItem(spec.name, MISMATCH, str(rejected[0][0]), str(dest),
                          "; ".join(f"{p}: {why}" for p, why in rejected) + " (not imported)")
    return ImportItem(spec.name, NOT_FOUND, "", str(dest))
