"""``voicelab vendor sync``: the upstream CosyVoice checkout (with Matcha-TTS) at the pinned commits.

Sources are GitHub by default, or anything ``git`` can clone from: a local
mirror or clone, a ``.bundle`` file, another URL (``--source`` for CosyVoice,
``--matcha-source`` for its Matcha-TTS submodule, or the settings
``cosyvoice_source`` / ``matcha_source``). Offline machines point both at
bundles (``../shared/vendor/`` holds them for the tests).

Nothing good is ever deleted: a fresh clone is built in a hidden sibling
folder and moved into place as soon as the main repository is checked out;
an existing checkout is only fetched into and moved to the commit after the
fetch succeeded. A failing submodule step leaves the main checkout in place
and says which source to give. The result names the commits it ended at.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from engines.core.errors import Cancelled, InvalidInputError, VoiceLabError
from engines.core.hooks import Hooks, ensure_hooks
from engines.cosyvoice.upstream import MATCHA_COMMIT, MATCHA_SUBDIR, PINNED_COMMIT, checkout_path

UPSTREAM_URL = "https://github.com/FunAudioLLM/CosyVoice.git"
MATCHA_URL = "https://github.com/shivammehta25/Matcha-TTS.git"
MATCHA_NAME = str(MATCHA_SUBDIR)  # the submodule's name in upstream's .gitmodules
REMOTE_SCHEMES = ("https://", "http://", "ssh://", "git://", "git@")


@dataclass
class SyncResult:
    path: Path
    commit: str
    submodules: list[str]
    matcha_commit: str | None = None

    def summary(self) -> str:
        pin = "the pinned commit" if self.commit == PINNED_COMMIT else f"not the pinned {PINNED_COMMIT[:12]}"
        matcha = (f"Matcha-TTS at {self.matcha_commit[:12]}" + (" (pinned)" if self.matcha_commit == MATCHA_COMMIT else "")
                  if self.matcha_commit else "Matcha-TTS missing")
        return f"CosyVoice at {self.commit[:12]} ({pin}), {matcha}, in {self.path}"


def is_remote(source: str) -> bool:
    return source.startswith(REMOTE_SCHEMES)


def check_source(source: str, what: str) -> str:
    """A URL as given, or a local path that exists (made absolute): a clone source git accepts."""
    if is_remote(source):
        return source
    path = Path(source[7:] if source.startswith("file://") else source).expanduser()
    if not path.exists():
        raise InvalidInputError(f"The {what} source {source} does not exist.",
                                "Give a git URL, a local clone or mirror, or a .bundle file.")
    if path.is_dir() and not ((path / ".git").exists() or (path / "HEAD").is_file()):
        raise InvalidInputError(f"The {what} source {path} is a folder but not a git repository.",
                                "Give a git clone or mirror (or a .bundle file) so the pinned commit can be checked out.")
    return str(path.resolve())


class _Git:
    def __init__(self, hooks: Hooks, local: bool) -> None:
        self.hooks = hooks
        self.env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
        # git >= 2.38 refuses local submodule sources unless allowed; only for sources on this disk
        self.cfg = ["-c", "protocol.file.allow=always"] if local else []

    def __call__(self, *args: str) -> None:
        self.hooks.check_cancel()
        self.hooks.run(["git", *self.cfg, *args], env=self.env)

    @staticmethod
    def out(repo: Path, *args: str) -> str | None:
        res = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
        return res.stdout.strip() if res.returncode == 0 else None


def _fetch_commit(git: _Git, repo: Path, source: str, commit: str) -> str:
    """Make sure ``commit`` is in ``repo`` (fetching from ``source``); its full hash."""
    if _Git.out(repo, "cat-file", "-e", f"{commit}^{{commit}}") is None:
        try:
            git("-C", str(repo), "fetch", "--tags", source, "+refs/heads/*:refs/remotes/origin/*")
            if _Git.out(repo, "cat-file", "-e", f"{commit}^{{commit}}") is None:
                git("-C", str(repo), "fetch", source, commit)
        except Cancelled:
            raise
        except VoiceLabError as exc:
            if _Git.out(repo, "cat-file", "-e", f"{commit}^{{commit}}") is None:
                raise VoiceLabError(f"Commit {commit} is not in the CosyVoice repository {source}.",
                                    "Check --commit (a full or short hash), or omit it to use the pinned commit."
                                    ) from exc
    full = _Git.out(repo, "rev-parse", "--verify", f"{commit}^{{commit}}")
    if not full:
        raise VoiceLabError(f"Commit {commit} is not in the CosyVoice repository {source}.",
                            "Check --commit, or omit it to use the pinned commit.")
    return full


def _update_matcha(git: _Git, repo: Path, matcha_source: str) -> None:
    if _Git.out(repo, "config", "-f", ".gitmodules", "--get", f"submodule.{MATCHA_NAME}.path") is None:
        git.hooks.log(f"This commit has no {MATCHA_NAME} submodule.")
        return
    git("-C", str(repo), "submodule", "init", MATCHA_NAME)
    if matcha_source:
        # after `init`, so .gitmodules (GitHub) does not overwrite it; no `submodule sync` after this
        git("-C", str(repo), "config", f"submodule.{MATCHA_NAME}.url", matcha_source)
    git("-C", str(repo), "submodule", "update", "--init", "--force", "--", MATCHA_NAME)


def vendor_sync(source: str = "", dest: str | os.PathLike | None = None, commit: str = PINNED_COMMIT,
                hooks: Hooks | None = None, matcha_source: str = "") -> SyncResult:
    """Clone or update the upstream checkout at ``commit`` with its Matcha-TTS submodule."""
    hooks = ensure_hooks(hooks)
    if shutil.which("git") is None:
        raise VoiceLabError("git is not installed.", "Install git (e.g. apt-get install git) and retry.")
    source = check_source(source or UPSTREAM_URL, "CosyVoice")
    matcha_source = check_source(matcha_source, "Matcha-TTS") if matcha_source else ""
    dest = Path(dest) if dest is not None else checkout_path()
    git = _Git(hooks, not is_remote(source) or (bool(matcha_source) and not is_remote(matcha_source)))
    commit = commit or PINNED_COMMIT

    if (dest / ".git").exists():
        hooks.progress(0.05, f"Fetching {source} into {dest}")
        full = _fetch_commit(git, dest, source, commit)
        git("-C", str(dest), "remote", "set-url", "origin", source)
    else:
        if dest.exists() and any(dest.iterdir()):
            raise InvalidInputError(f"{dest} exists and is not a git checkout.",
                                    "Remove it or choose another folder for the CosyVoice checkout.")
        dest.parent.mkdir(parents=True, exist_ok=True)
        work = dest.parent / f".{dest.name}.partial"
        if work.exists():
            shutil.rmtree(work)  # our own leftover from an interrupted clone, never a checkout in use
        hooks.progress(0.05, f"Cloning {source}")
        try:
            git("clone", "--no-checkout", source, str(work))
            full = _fetch_commit(git, work, source, commit)
            git("-C", str(work), "checkout", "--force", "--detach", full)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        if dest.exists():
            dest.rmdir()  # empty (checked above)
        os.replace(work, dest)
    hooks.progress(0.5, f"Checking out {full[:12]}")
    git("-C", str(dest), "checkout", "--force", "--detach", full)
    hooks.progress(0.6, "Updating the Matcha-TTS submodule")
    try:
        _update_matcha(git, dest, matcha_source)
    except Cancelled:
        raise
    except VoiceLabError as exc:
        raise VoiceLabError(
            f"CosyVoice {full[:12]} is checked out in {dest}, but its Matcha-TTS submodule could not be fetched "
            f"from {matcha_source or 'the URL in .gitmodules (' + MATCHA_URL + ')'}.",
            "Run the sync again with a Matcha-TTS source this machine can reach (--matcha-source: a mirror, clone "
            "or .bundle file); the CosyVoice checkout is kept.") from exc
    matcha = _Git.out(dest / MATCHA_SUBDIR, "rev-parse", "HEAD")
    result = SyncResult(dest, full, [MATCHA_NAME] if matcha else [], matcha)
    hooks.progress(1.0, result.summary())
    hooks.log(result.summary())
    return result
