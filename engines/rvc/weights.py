"""Where RVC's two shared weight files come from: HuBERT (content features) and RMVPE (pitch).

Each is found the same way: a path given for the run (``--hubert`` /
``--rmvpe`` on the CLI, a job field), else the setting or environment
variable (``VOICELAB_HUBERT`` / ``VOICELAB_RMVPE``, settings.toml), else its
place under the assets folder. A missing file gives one error that names
every way to supply it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.core.errors import MissingAssetError, VoiceLabError


@dataclass(frozen=True)
class WeightKind:
    asset: str  # manifest name
    file: str  # the file's usual name
    flag: str  # the CLI option of the commands that use it
    env: str  # the environment variable behind the setting
    setting: str  # Settings field
    download: str  # the command that fetches it

    def resolve(self, path: str | Path | None = None, settings: Any = None) -> Path:
        """The path to use: ``path`` when given, else the configured one."""
        if path:
            return Path(path)
        if settings is None:
            from engines.core.settings import load_settings

            settings = load_settings()
        return Path(settings.resolved_hubert() if self.asset == "hubert_base" else settings.resolved_rmvpe())

    def missing(self, path: str | Path, why: str) -> MissingAssetError:
        """The error for an absent file at ``path``: where it goes, how to fetch it, how to point at one."""
        return MissingAssetError(self.file, str(path), f"{self.download} (or give your own file with "
                                 f"{self.flag} PATH or {self.env}=PATH)", why)

    def require(self, path: str | Path | None = None, why: str = "", settings: Any = None) -> Path:
        """The resolved path when something is there (HuBERT may be a transformers folder), else ``missing``."""
        found = self.resolve(path, settings)
        if not (found.exists() if self.asset == "hubert_base" else found.is_file()):
            raise self.missing(found, why)
        return found


HUBERT = WeightKind("hubert_base", "hubert_base.pt", "--hubert", "VOICELAB_HUBERT", "hubert_path",
                    "voicelab assets download hubert_base")
RMVPE = WeightKind("rmvpe", "rmvpe.pt", "--rmvpe", "VOICELAB_RMVPE", "rmvpe_path", "voicelab assets download rmvpe")


class MissingWeights(MissingAssetError):
    """Several weight files are missing: one error naming each (what, where it goes, how to get it)."""

    def __init__(self, problems: list[MissingAssetError]) -> None:
        VoiceLabError.__init__(self, " ".join(p.message for p in problems), " ".join(p.hint for p in problems))
        self.problems = problems
        self.name = ", ".join(p.name for p in problems)
        self.path = "; ".join(p.path for p in problems)
        self.command = "; ".join(p.command for p in problems if p.command)


def raise_first_problems(problems: list[VoiceLabError]) -> None:
    """Raise nothing, the one problem, or (several missing files) one error naming them all."""
    if not problems:
        return
    missing = [p for p in problems if isinstance(p, MissingAssetError)]
    if len(missing) > 1:
        raise MissingWeights(missing)
    raise (missing or problems)[0]
