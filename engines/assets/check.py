"""Which assets are on disk and intact, and which features can run now.

SHA-256 of a multi-hundred-MB file takes a while, so hashes are computed
only for files whose expected hash is known, and remembered in
``<assets>/.hash-cache.json`` keyed by (real path, size, mtime): a repeated
check only stats files. ``verify=True`` ignores the cache and hashes again.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engines.assets.manifest import (
    AssetSpec,
    FileSpec,
    Manifest,
    asset_path,
    assets_root,
    fix_command,
    load_manifest,
    package_file,
)
from engines.core.atomic import write_json
from engines.core.hooks import Hooks, ensure_hooks
from engines.core.settings import Settings

HASH_CACHE_NAME = ".hash-cache.json"
CHUNK = 4 * 1024 * 1024

PRESENT = "present"
MISSING = "missing"
INCOMPLETE = "incomplete"  # a folder asset with some listed files absent
WRONG_SIZE = "wrong-size"
WRONG_HASH = "wrong-hash"
STATUSES = (PRESENT, MISSING, INCOMPLETE, WRONG_SIZE, WRONG_HASH)


def sha256_file(path: str | os.PathLike, hooks: Hooks | None = None) -> str:
    """Hex SHA-256 of a file, read in 4 MiB blocks (checks for cancel between blocks)."""
    hooks = ensure_hooks(hooks)
    digest = hashlib.sha256()
    total = max(1, os.path.getsize(path))
    done = 0
    with open(path, "rb") as fh:
        while True:
            block = fh.read(CHUNK)
            if not block:
                break
            digest.update(block)
            done += len(block)
            hooks.check_cancel()
            hooks.progress(done / total, f"sha256 {Path(path).name}")
    return digest.hexdigest()


class HashCache:
    """sha256 by (real path, size, mtime), persisted as JSON beside the assets."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, Any]] = {}
        self._dirty = False
        try:
            loaded = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                self._data = loaded
        except (OSError, ValueError):
            pass

    @staticmethod
    def _key(path: Path) -> tuple[str, int, int]:
        real = Path(path).resolve()
        st = real.stat()
        return str(real), st.st_size, st.st_mtime_ns

    def cached(self, path: Path) -> str | None:
        """The remembered hash when the file has not changed since, else None."""
        try:
            key, size, mtime = self._key(path)
        except OSError:
            return None
        entry = self._data.get(key)
        if entry and entry.get("size") == size and entry.get("mtime_ns") == mtime:
            return str(entry.get("sha256"))
        return None

    def sha256(self, path: Path, force: bool = False, hooks: Hooks | None = None) -> str:
        if not force:
            hit = self.cached(path)
            if hit:
                return hit
        key, size, mtime = self._key(path)
        value = sha256_file(path, hooks)
        with self._lock:
            self._data[key] = {"size": size, "mtime_ns": mtime, "sha256": value}
            self._dirty = True
        return value

    def save(self) -> None:
        """Write the cache beside the assets; never creates the assets folder for it."""
        with self._lock:
            if not self._dirty or not self.path.parent.is_dir():
                return
            try:
                write_json(self.path, self._data)
                self._dirty = False
            except OSError:
                pass  # a read-only assets folder just means no cache


def hash_cache_for(settings: Settings) -> HashCache:
    return HashCache(assets_root(settings) / HASH_CACHE_NAME)


@dataclass
class FileCheck:
    """How one file compares with what the manifest expects."""

    status: str
    detail: str = ""
    size: int | None = None
    sha256: str = ""


def verify_file(path: Path, expect: FileSpec, cache: HashCache | None, *, verify: bool = False,
                hash_files: bool = True, hooks: Hooks | None = None) -> FileCheck:
    """Compare ``path`` with ``expect``: size first (cheap), then sha256 when known."""
    if expect.is_folder:
        return FileCheck(PRESENT if path.is_dir() else MISSING)
    if not path.is_file():
        return FileCheck(MISSING)
    size = path.stat().st_size
    if expect.size and size != expect.size:
        return FileCheck(WRONG_SIZE, f"{size} bytes, expected {expect.size}", size)
    if not expect.sha256:
        return FileCheck(PRESENT, "", size)
    if cache is None:
        cache = HashCache(path.parent / HASH_CACHE_NAME)
    if hash_files or verify:
        digest = cache.sha256(path, force=verify, hooks=hooks)
    else:
        digest = cache.cached(path) or ""
    if digest and digest != expect.sha256:
        return FileCheck(WRONG_HASH, f"sha256 {digest[:12]}…, expected {expect.sha256[:12]}…", size, digest)
    return FileCheck(PRESENT, "" if digest else "not hashed yet", size, digest)


@dataclass
class AssetStatus:
    name: str
    kind: str
    status: str
    path: str
    size: int | None  # bytes on disk (folders: sum of the listed files)
    expected_size: int
    features: list[str]
    title: str = ""
    detail: str = ""
    linked_to: str = ""  # symlink target, when the asset is a link
    command: str = ""  # what fixes it when not present
    files: dict[str, str] = field(default_factory=dict)  # folder assets: file -> status
    warning: str = ""  # usable, but not the official file

    @property
    def ok(self) -> bool:
        return self.status == PRESENT

    @property
    def usable(self) -> bool:
        """What the features count: present, or a replaceable asset's unofficial file (with a warning)."""
        return self.ok or bool(self.warning)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok, "usable": self.usable}


def unofficial_warning(spec: AssetSpec, path: Path, check: FileCheck) -> str:
    """The warning for a replaceable asset whose file is not the official one ('' otherwise).

    One text for ``assets check`` and for the engines that use the file, so both say the same.
    """
    if not spec.replaceable or check.status not in (WRONG_SIZE, WRONG_HASH):
        return ""
    return (f"{path.name} is not the official {spec.name} file ({check.detail}); it is used as it is, "
            "so results can differ from the reference weights'.")


def weight_warning(settings: Settings, name: str, path: str | os.PathLike) -> str:
    """``unofficial_warning`` for the file at ``path`` used as asset ``name`` (hash remembered in the cache)."""
    spec = load_manifest().resolve(name)
    p = Path(path)
    if spec.kind != "file" or not p.is_file():
        return ""
    cache = hash_cache_for(settings)
    try:
        return unofficial_warning(spec, p, verify_file(p, spec.file_specs()[0], cache))
    finally:
        cache.save()


def check_asset(settings: Settings, spec: AssetSpec, manifest: Manifest, cache: HashCache, *,
                verify: bool = False, hash_files: bool = True, hooks: Hooks | None = None) -> AssetStatus:
    path = asset_path(settings, spec.name, manifest)
    status = AssetStatus(spec.name, spec.kind, MISSING, str(path), None, spec.size,
                         manifest.features_of(spec.name), spec.title)
    if spec.kind == "package":
        found = package_file(spec)
        if found is not None:
            status.status, status.size = PRESENT, found.stat().st_size
            status.detail = "ships with a Python package"
        else:
            status.command = fix_command(spec)
        return status
    if path.is_symlink():
        status.linked_to = os.readlink(path)
    if spec.kind == "file" and path.is_dir() and (path / "config.json").is_file():
        # hubert_path may point at a transformers-format folder, which the loader accepts too.
        status.status, status.detail = PRESENT, "transformers-format folder"
    elif spec.kind == "file":
        result = verify_file(path, spec.file_specs()[0], cache, verify=verify, hash_files=hash_files, hooks=hooks)
        status.status, status.detail, status.size = result.status, result.detail, result.size
        status.warning = unofficial_warning(spec, path, result)
    else:
        results = {f.path: verify_file(path / f.path.rstrip("/"), f, cache, verify=verify,
                                       hash_files=hash_files, hooks=hooks) for f in spec.files}
        status.files = {k: r.status for k, r in results.items()}
        bad = [(k, r) for k, r in results.items() if r.status != PRESENT]
        status.size = sum(r.size or 0 for r in results.values()) if path.is_dir() else None
        if not path.is_dir():
            status.status = MISSING
        elif not bad:
            status.status = PRESENT
        elif all(r.status == MISSING for _, r in bad):
            status.status = INCOMPLETE
            status.detail = "missing: " + ", ".join(k for k, _ in bad)
        else:
            k, r = next((k, r) for k, r in bad if r.status != MISSING)
            status.status, status.detail = r.status, f"{k}: {r.detail}"
    if status.status != PRESENT:  # for an unofficial file too: the command fetches the official one
        status.command = fix_command(spec)
    return status


def check_assets(settings: Settings, manifest: Manifest | None = None, *, names: list[str] | None = None,
                 verify: bool = False, hash_files: bool = True, hooks: Hooks | None = None) -> list[AssetStatus]:
    """One AssetStatus per manifest entry (or per ``names``).

    ``hash_files=False`` never reads whole files (uses remembered hashes only) — for
    quick page loads; ``verify=True`` re-hashes everything regardless of the cache.
    """
    from engines.assets.manifest import iter_assets

    manifest = manifest or load_manifest()
    hooks = ensure_hooks(hooks)
    cache = hash_cache_for(settings)
    specs = iter_assets(manifest, names)
    out = []
    try:
        for i, spec in enumerate(specs):
            hooks.check_cancel()
            sub = hooks.scaled(i / len(specs), (i + 1) / len(specs))
            out.append(check_asset(settings, spec, manifest, cache, verify=verify, hash_files=hash_files, hooks=sub))
    finally:
        cache.save()
    return out


def feature_readiness(statuses: list[AssetStatus], manifest: Manifest | None = None) -> dict[str, tuple[bool, list[str]]]:
    """feature -> (ready, names to get). For an unmet requirement the names listed are
    those of its first (preferred) alternative that are not usable."""
    manifest = manifest or load_manifest()
    ok = {s.name for s in statuses if s.usable}
    known = {s.name for s in statuses}
    out: dict[str, tuple[bool, list[str]]] = {}
    for feat in manifest.features.values():
        if not feat.asset_names() <= known:
            continue  # statuses of a subset: only features fully covered by it
        missing: list[str] = []
        for alternatives in feat.needs:
            if any(all(n in ok for n in alt) for alt in alternatives):
                continue
            missing.extend(n for n in alternatives[0] if n not in ok and n not in missing)
        out[feat.name] = (not missing, missing)
    return out


def format_table(statuses: list[AssetStatus]) -> str:
    """A plain-text table for the terminal."""
    rows = [("NAME", "STATUS", "SIZE", "PATH")]
    for s in statuses:
        size = "" if s.size is None else human_size(s.size)
        where = s.path + (f" -> {s.linked_to}" if s.linked_to else "")
        shown = s.status + (f" ({s.detail})" if s.detail and not s.ok else "") + (" - usable" if s.warning else "")
        rows.append((s.name, shown, size, where))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}" for r in rows)


def human_size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
