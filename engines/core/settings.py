"""Settings and workspace paths.

Precedence: explicit values (CLI flags) > environment (``VOICELAB_*``) >
``<workspace>/settings.toml`` > defaults. The workspace itself comes from
``--workspace`` > ``VOICELAB_HOME`` > ``./runtime`` of the checkout.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WORKSPACE = PROJECT_ROOT / "runtime"
DEFAULT_ASSETS = PROJECT_ROOT / "assets"


@dataclass
class Settings:
    """Everything configurable about the studio, with its defaults."""

    host: str = "127.0.0.1"
    port: int = 7860
    lan: bool = False
    auth: str = ""  # "user:pass"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    assets_dir: str = str(DEFAULT_ASSETS)
    hubert_path: str = ""  # default: <assets>/hubert/hubert_base.pt
    rmvpe_path: str = ""  # default: <assets>/rmvpe/rmvpe.pt
    cosyvoice_repo: str = str(PROJECT_ROOT / "vendor" / "CosyVoice")
    # Where `vendor sync` fetches upstream from ("" = GitHub): a URL, a local clone/mirror or a .bundle file.
    cosyvoice_source: str = ""
    matcha_source: str = ""
    language: str = "auto"  # auto | en | zh-CN
    light_workers: int = 2  # worker processes of the CPU lane
    # The warm listening worker (conversions, A/B, previews) stops after this long without a request.
    listen_idle_seconds: int = 600
    # GPU memory a listening job needs; with less free (a training uses the GPU) it runs on the CPU.
    listen_gpu_mb: int = 3000
    # After a restart, follow jobs whose worker processes still run (False: stop them, mark interrupted).
    reattach_jobs: bool = True
    # Server folders (besides the workspace) the page may import from, separated by os.pathsep.
    import_roots: str = ""
    # HTTPS: a self-signed certificate made once into <workspace>/tls, or the user's own pair.
    https: bool = False
    ssl_cert: str = ""
    ssl_key: str = ""
    # Caches the studio cleans by age and size (0 = no limit): uploads and A/B renders.
    upload_cache_hours: int = 24
    upload_cache_mb: int = 4096
    ab_cache_days: int = 30
    ab_cache_mb: int = 4096

    # name -> environment variable
    ENV = {
        "host": "VOICELAB_HOST",
        "port": "VOICELAB_PORT",
        "lan": "VOICELAB_LAN",
        "auth": "VOICELAB_AUTH",
        "device": "VOICELAB_DEVICE",
        "assets_dir": "VOICELAB_ASSETS",
        "hubert_path": "VOICELAB_HUBERT",
        "rmvpe_path": "VOICELAB_RMVPE",
        "cosyvoice_repo": "VOICELAB_COSYVOICE_REPO",
        "cosyvoice_source": "VOICELAB_COSYVOICE_SOURCE",
        "matcha_source": "VOICELAB_MATCHA_SOURCE",
        "language": "VOICELAB_LANGUAGE",
        "light_workers": "VOICELAB_LIGHT_WORKERS",
        "listen_idle_seconds": "VOICELAB_LISTEN_IDLE_SECONDS",
        "listen_gpu_mb": "VOICELAB_LISTEN_GPU_MB",
        "reattach_jobs": "VOICELAB_REATTACH_JOBS",
        "import_roots": "VOICELAB_IMPORT_ROOTS",
        "https": "VOICELAB_HTTPS",
        "ssl_cert": "VOICELAB_SSL_CERT",
        "ssl_key": "VOICELAB_SSL_KEY",
        "upload_cache_hours": "VOICELAB_UPLOAD_CACHE_HOURS",
        "upload_cache_mb": "VOICELAB_UPLOAD_CACHE_MB",
        "ab_cache_days": "VOICELAB_AB_CACHE_DAYS",
        "ab_cache_mb": "VOICELAB_AB_CACHE_MB",
    }

    def resolved_hubert(self) -> Path:
        return Path(self.hubert_path) if self.hubert_path else Path(self.assets_dir) / "hubert" / "hubert_base.pt"

    def import_root_list(self) -> list[Path]:
        return [Path(p).expanduser() for p in self.import_roots.split(os.pathsep) if p.strip()]

    def resolved_rmvpe(self) -> Path:
        return Path(self.rmvpe_path) if self.rmvpe_path else Path(self.assets_dir) / "rmvpe" / "rmvpe.pt"


def _coerce(name: str, raw: Any) -> Any:
    kind = type(getattr(Settings(), name))
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        return str(raw).strip().lower() in {"1", "true", "yes", "on"}
    if kind is int:
        return int(raw)
    return str(raw)


# settings.toml may group keys in tables: [server] host/port/lan/auth, [cosyvoice] repo, ...
_TOML_ALIASES = {("cosyvoice", "repo"): "cosyvoice_repo", ("cosyvoice", "source"): "cosyvoice_source",
                 ("cosyvoice", "matcha_source"): "matcha_source", ("assets", "dir"): "assets_dir"}


def _flatten_toml(data: Mapping[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            for sub, v in value.items():
                flat[_TOML_ALIASES.get((key, sub), sub)] = v
        else:
            flat[key] = value
    return flat


def resolve_workspace(workspace: str | os.PathLike | None = None, env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    chosen = workspace or env.get("VOICELAB_HOME") or DEFAULT_WORKSPACE
    return Path(chosen).expanduser().resolve()


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    workspace: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Merge defaults < settings.toml < environment < overrides (None = not given)."""
    env = os.environ if env is None else env
    root = resolve_workspace(workspace, env)
    values: dict[str, Any] = {}
    toml_path = root / "settings.toml"
    if toml_path.is_file():
        with open(toml_path, "rb") as fh:
            values.update(_flatten_toml(tomllib.load(fh)))
    names = {f.name for f in dataclasses.fields(Settings)}
    for name, var in Settings.ENV.items():
        if var in env and env[var] != "":
            values[name] = env[var]
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = value
    clean = {k: _coerce(k, v) for k, v in values.items() if k in names}
    return Settings(**clean)


@dataclass
class Workspace:
    """The on-disk layout of DESIGN.md section 2, rooted at ``root``."""

    root: Path
    settings: Settings = field(default_factory=Settings)

    @classmethod
    def open(cls, workspace: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None,
             create: bool = True) -> "Workspace":
        """The workspace at ``workspace`` (default: $VOICELAB_HOME or ./runtime); ``create`` makes its folders."""
        root = resolve_workspace(workspace)
        ws = cls(root=root, settings=load_settings(overrides, workspace=root))
        if create:
            ws.ensure()
        return ws

    def ensure(self) -> None:
        for p in (self.datasets, self.experiments, self.weights, self.indices, self.outputs, self.jobs_dir, self.cosyvoice, self.uploads):
            p.mkdir(parents=True, exist_ok=True)

    datasets = property(lambda self: self.root / "datasets")
    experiments = property(lambda self: self.root / "experiments")
    weights = property(lambda self: self.root / "weights")
    indices = property(lambda self: self.root / "indices")
    outputs = property(lambda self: self.root / "outputs")
    jobs_dir = property(lambda self: self.root / "jobs")
    jobs_db = property(lambda self: self.root / "jobs.sqlite")
    cosyvoice = property(lambda self: self.root / "cosyvoice")
    uploads = property(lambda self: self.root / "uploads")
    assets = property(lambda self: Path(self.settings.assets_dir))

    def dataset_dir(self, name: str) -> Path:
        return self.datasets / safe_name(name)

    def experiment_dir(self, name: str) -> Path:
        """An RVC experiment's folder (not created here)."""
        return self.experiments / safe_name(name)

    def cosyvoice_experiment_dir(self, name: str) -> Path:
        """A CosyVoice fine-tuning experiment's folder (not created here)."""
        return self.cosyvoice / "train" / safe_name(name)

    def contains(self, path: str | os.PathLike) -> bool:
        """True when ``path`` resolves inside the workspace (no traversal)."""
        try:
            Path(path).resolve().relative_to(self.root)
            return True
        except ValueError:
            return False


def safe_name(name: str) -> str:
    """A user-chosen name usable as one path component, or an InvalidInputError."""
    from engines.core.errors import InvalidInputError

    cleaned = str(name).strip()
    if not cleaned or cleaned in {".", ".."} or any(c in cleaned for c in '/\\\0') or len(cleaned) > 120:
        raise InvalidInputError(
            f"'{name}' is not a valid name.",
            "Use letters, digits, '-', '_' or '.'; no slashes; at most 120 characters.",
        )
    return cleaned
