"""Download assets from Hugging Face (or a mirror) or ModelScope, verified before use.

Files land in a staging folder ``<assets>/.downloads/<name>/`` first, are
checked against the manifest's size and sha256 and only then renamed into
place, so a truncated or tampered download is never installed (a wrong one
is deleted and reported). Downloads go through ``huggingface_hub``
(``hf_hub_download``/``snapshot_download``), which resumes a dropped
connection with an HTTP Range request; ``HF_ENDPOINT`` is read at call time,
so ``HF_ENDPOINT=https://hf-mirror.com voicelab assets download ...`` uses a
mirror. Nothing here runs unless the user asks for a download.
"""

from __future__ import annotations

import inspect
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from engines.assets.check import (
    PRESENT,
    check_asset,
    hash_cache_for,
    human_size,
    verify_file,
)
from engines.assets.manifest import (
    AssetSpec,
    FileSpec,
    Manifest,
    asset_path,
    assets_root,
    iter_assets,
    load_manifest,
    missing_parts,
)
from engines.core.errors import Cancelled, InvalidInputError, VoiceLabError
from engines.core.hooks import Hooks, ensure_hooks
from engines.core.settings import Settings

SOURCES = ("hf", "modelscope")
STAGING_DIR = ".downloads"
_TRUE = {"1", "true", "yes", "on"}


@dataclass
class DownloadResult:
    name: str
    action: str  # "downloaded" | "already"
    path: str
    size: int = 0
    source: str = ""
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def staging_dir(settings: Settings, spec: AssetSpec) -> Path:
    return assets_root(settings) / STAGING_DIR / spec.name.replace("/", "__")


def hf_endpoint() -> str | None:
    """The mirror in ``HF_ENDPOINT`` right now (None = huggingface.co)."""
    value = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/")
    return value or None


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "VOICELAB_OFFLINE"))


def _progress_bar_class(hooks: Hooks, label: str) -> type:
    """A tqdm class that reports bytes through ``hooks`` (and checks for cancel) instead of drawing."""
    from huggingface_hub.utils import tqdm as hf_tqdm

    class HookBar(hf_tqdm):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            self._vl_total = kwargs.get("total")
            self._vl_done = int(kwargs.get("initial") or 0)
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            self._vl_done += int(n or 0)
            hooks.check_cancel()
            total = self._vl_total
            if total:
                hooks.progress(self._vl_done / total, f"{label}: {human_size(self._vl_done)} / {human_size(int(total))}")
            return super().update(n)

    return HookBar


_COPY_HINT = "copy the files from another install with `voicelab assets import --from DIR`"


def call_hub(fn: Callable, hooks: Hooks, label: str, *, other_way: str = _COPY_HINT, **kwargs: Any) -> str:
    """Call a huggingface_hub download function with our progress bar and the current endpoint.

    ``other_way`` completes the failure hint with what else the user can do.
    """
    params = inspect.signature(fn).parameters
    kwargs["endpoint"] = hf_endpoint()
    if "tqdm_class" in params:
        kwargs["tqdm_class"] = _progress_bar_class(hooks, label)
    where = kwargs["endpoint"] or "huggingface.co"
    try:
        return fn(**{k: v for k, v in kwargs.items() if k in params})
    except VoiceLabError:
        raise  # Cancelled from the progress bar
    except Exception as exc:  # network, 404, disk: all user-actionable
        raise VoiceLabError(
            f"Download of {label} from {where} failed: {type(exc).__name__}: {exc}",
            f"Check the connection (or the HF_ENDPOINT mirror) and run the same command again; or {other_way}.",
        ) from exc


def require_online(other_way: str = _COPY_HINT) -> None:
    """Refuse to download when HF_HUB_OFFLINE / VOICELAB_OFFLINE is set."""
    if _offline():
        raise VoiceLabError("Downloads are switched off (HF_HUB_OFFLINE / VOICELAB_OFFLINE is set).",
                            f"Unset it to download, or {other_way}.")


def require_hub(other_way: str = _COPY_HINT) -> Any:
    """The huggingface_hub module, once downloads are allowed."""
    require_online(other_way)
    try:
        import huggingface_hub
    except ImportError as exc:
        raise VoiceLabError("Downloading needs the huggingface_hub package.", "pip install huggingface_hub") from exc
    return huggingface_hub


def _fetch_hf(spec: AssetSpec, stage: Path, hooks: Hooks) -> Path:
    """Download ``spec`` from Hugging Face into ``stage``; returns the file or the folder to install."""
    hub = require_hub()
    if not spec.hf_repo:
        raise VoiceLabError(f"No Hugging Face source is known for {spec.name}.",
                            "Try --source modelscope, or import it with `voicelab assets import --from DIR`.")
    if spec.kind == "file":
        filename = spec.hf_file or Path(spec.path).name
        return Path(call_hub(hub.hf_hub_download, hooks, f"{spec.hf_repo}/{filename}", repo_id=spec.hf_repo,
                              filename=filename, revision=spec.hf_revision, local_dir=str(stage)))
    if spec.hf_files:
        for i, filename in enumerate(spec.hf_files):
            sub = hooks.scaled(i / len(spec.hf_files), (i + 1) / len(spec.hf_files))
            call_hub(hub.hf_hub_download, sub, f"{spec.hf_repo}/{filename}", repo_id=spec.hf_repo,
                      filename=filename, revision=spec.hf_revision, local_dir=str(stage))
        parents = {str(Path(f).parent) for f in spec.hf_files}
        common = os.path.commonpath(sorted(parents)) if parents else "."
        return stage / common if common not in ("", ".") else stage
    target = stage / "snapshot"
    call_hub(hub.snapshot_download, hooks, spec.hf_repo, repo_id=spec.hf_repo, revision=spec.hf_revision,
              local_dir=str(target))
    return target


def _fetch_modelscope(spec: AssetSpec, stage: Path, hooks: Hooks) -> Path:
    if not spec.ms_repo:
        raise VoiceLabError(f"No ModelScope source is known for {spec.name}.",
                            "Use --source hf (a mirror works through HF_ENDPOINT), or `voicelab assets import --from DIR`.")
    require_online()
    try:
        from modelscope.hub.file_download import model_file_download
        from modelscope.hub.snapshot_download import snapshot_download
    except ImportError as exc:
        raise VoiceLabError("Downloading from ModelScope needs the modelscope package.", "pip install modelscope") from exc
    hooks.progress(0.0, f"modelscope {spec.ms_repo}")
    try:
        if spec.kind == "file":
            return Path(model_file_download(model_id=spec.ms_repo, file_path=spec.ms_file or Path(spec.path).name,
                                            local_dir=str(stage)))
        target = stage / "snapshot"
        snapshot_download(spec.ms_repo, local_dir=str(target))
        return target
    except Exception as exc:
        raise VoiceLabError(f"Download of {spec.ms_repo} from ModelScope failed: {type(exc).__name__}: {exc}",
                            "Check the connection and run the same command again.") from exc


def _reject(paths: list[Path], stage: Path, message: str) -> VoiceLabError:
    for p in paths:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    shutil.rmtree(stage, ignore_errors=True)
    return VoiceLabError(message + " It was deleted and not installed.",
                         "Run the command again; if it keeps happening, the server or mirror (HF_ENDPOINT) "
                         "serves a different file than the manifest expects.")


def _verify_download(spec: AssetSpec, got: Path, stage: Path, settings: Settings) -> None:
    cache = hash_cache_for(settings)
    checks: list[tuple[Path, FileSpec]]
    if spec.kind == "file":
        checks = [(got, spec.file_specs()[0])]
    else:
        missing = missing_parts(spec, got)
        if missing:
            raise _reject([got], stage, f"The download of {spec.name} lacks {', '.join(missing)}.")
        checks = [(got / f.path.rstrip("/"), f) for f in spec.files]
    for path, expect in checks:
        result = verify_file(path, expect, cache, verify=True)
        if result.status != PRESENT:
            raise _reject([got], stage, f"Downloaded {spec.name} ({path.name}) is {result.status}: {result.detail}.")


def _install(spec: AssetSpec, got: Path, dest: Path, hooks: Hooks) -> str:
    """Rename the verified download onto ``dest`` (same filesystem, so atomic for a file)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if spec.kind == "file":
        os.replace(got, dest)  # replaces a wrong file or a stale link, never half-writes
        return ""
    shutil.rmtree(got / ".cache", ignore_errors=True)  # huggingface_hub's local_dir bookkeeping
    detail = ""
    if dest.is_symlink():
        dest.unlink()
    elif dest.exists():
        aside = dest.with_name(f"{dest.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        os.rename(dest, aside)
        detail = f"the previous incomplete folder was kept as {aside}"
        hooks.log(detail)
    os.rename(got, dest)
    return detail


def download_asset(settings: Settings, spec: AssetSpec, manifest: Manifest, *, source: str = "hf",
                   force: bool = False, hooks: Hooks | None = None) -> DownloadResult:
    """Download one asset unless it is already present and intact."""
    hooks = ensure_hooks(hooks)
    if spec.kind == "package":
        raise VoiceLabError(f"{spec.name} ships inside a Python package, it is not downloaded separately.",
                            spec.install or "Reinstall the package that provides it.")
    dest = asset_path(settings, spec.name, manifest)
    cache = hash_cache_for(settings)
    if not force and check_asset(settings, spec, manifest, cache).status == PRESENT:
        cache.save()
        return DownloadResult(spec.name, "already", str(dest), detail="already present and intact")
    stage = staging_dir(settings, spec)
    stage.mkdir(parents=True, exist_ok=True)
    hooks.log(f"downloading {spec.name} -> {dest}")
    got = _fetch_modelscope(spec, stage, hooks) if source == "modelscope" else _fetch_hf(spec, stage, hooks)
    hooks.progress(1.0, f"verifying {spec.name}")
    _verify_download(spec, got, stage, settings)
    detail = _install(spec, got, dest, hooks)
    shutil.rmtree(stage, ignore_errors=True)
    size = dest.stat().st_size if spec.kind == "file" else 0
    origin = (hf_endpoint() or "https://huggingface.co") + f"/{spec.hf_repo}" if source == "hf" else f"modelscope:{spec.ms_repo}"
    hooks.log(f"installed {spec.name} ({human_size(size)})" if size else f"installed {spec.name}")
    return DownloadResult(spec.name, "downloaded", str(dest), size, origin, detail)


def download_assets(settings: Settings, names: list[str] | None = None, *, all_assets: bool = False,
                    source: str = "hf", force: bool = False, manifest: Manifest | None = None,
                    hooks: Hooks | None = None) -> list[DownloadResult]:
    """Download the named assets (or every downloadable one with ``all_assets``).

    Each asset is complete and verified before the next starts; when some fail the
    others are still installed and a VoiceLabError lists the failures at the end.
    """
    hooks = ensure_hooks(hooks)
    if source not in SOURCES:
        raise InvalidInputError(f"Unknown download source '{source}'.", f"Use one of: {', '.join(SOURCES)}.")
    manifest = manifest or load_manifest()
    if all_assets:
        specs = [s for s in manifest.assets.values() if s.kind != "package"]
    elif names:
        specs = iter_assets(manifest, names)
    else:
        raise InvalidInputError("Name the assets to download, or use --all.", "See `voicelab assets list` for the names.")
    results: list[DownloadResult] = []
    failures: list[tuple[str, VoiceLabError]] = []
    for i, spec in enumerate(specs):
        hooks.check_cancel()
        sub = hooks.scaled(i / len(specs), (i + 1) / len(specs))
        try:
            results.append(download_asset(settings, spec, manifest, source=source, force=force, hooks=sub))
        except VoiceLabError as exc:
            if isinstance(exc, Cancelled) or len(specs) == 1:
                raise
            hooks.log(f"failed: {spec.name}: {exc.message}")
            failures.append((spec.name, exc))
    if failures:
        first = failures[0][1]
        raise VoiceLabError(f"{len(failures)} of {len(specs)} downloads failed: {', '.join(n for n, _ in failures)}. "
                            f"First error: {first.message}", first.hint)
    hooks.progress(1.0, "done")
    return results
