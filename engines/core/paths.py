"""The one path policy: which server paths a request from the page or the HTTP API may touch.

Every path a request carries goes through here (the command line is the
local user's own shell and is not confined). A path must lie inside one of
the roots of its kind, as written (``~`` and ``..`` removed) or with its
symlinks resolved; no kind but ``read`` may end in the upload folder:

``read``
    inputs: the workspace (uploads included), the assets folder and the
    configured ``import_roots``.
``write``
    outputs: the workspace, but never the upload folder.
``model_dir``
    a CosyVoice model dir. Its yaml is code (upstream reads it with
    hyperpyyaml, which can call any Python), so only the assets'
    ``cosyvoice/`` folder and the workspace's assembled models qualify;
    never the upload folder, never a typed folder elsewhere.
``import_source``
    the folder ``assets import`` links model files from: anywhere on a
    local studio (that is the feature), like ``read`` minus the upload
    folder in LAN mode.
``list``
    a text file whose lines are paths (a CosyVoice ``data.list``): the
    file and every path in it must be ``read`` paths.
``repo``
    a git source: an ``https://``/``ssh://``/``git://``/``git@`` URL, or a local
    bundle or checkout that is a ``read`` path (no ``ext::`` helpers, no
    option-looking values).

Secrets are never reachable through any kind: ``settings.toml``, the jobs
database (with its ``-wal``/``-shm`` files), job logs and the TLS key.
The same module decides which files the studio's file route serves
(``servable``): outputs, dataset clips, A/B renders and uploads, by allow-list.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Iterable

from engines.core.errors import InvalidInputError
from engines.core.messages import known_text, msg
from engines.core.settings import Workspace

READ, WRITE, MODEL_DIR, IMPORT_SOURCE, LIST, REPO = "read", "write", "model_dir", "import_source", "list", "repo"
PATH_KINDS = (READ, WRITE, MODEL_DIR, IMPORT_SOURCE, LIST, REPO)
# Remote git URLs a request may clone from; anything else is a local path (kind "read").
REMOTE_GIT = ("https://", "http://", "ssh://", "git://", "git@")
LIST_MAX_LINES = 1_000_000


def upload_root() -> Path:
    """Gradio's upload (and cache) folder; the studio points it at ``<workspace>/uploads/gradio``."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


def tls_dir(ws: Workspace) -> Path:
    """Where ``--https`` keeps its self-signed certificate and key."""
    return ws.root / "tls"


def protected_paths(ws: Workspace) -> list[Path]:
    """Files and folders no request may read, write or download."""
    db = ws.jobs_db
    return [ws.root / "settings.toml", db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"),
            db.with_name(db.name + "-journal"), ws.jobs_dir, tls_dir(ws)]


def model_dir_roots(ws: Workspace) -> list[Path]:
    """The CosyVoice model roots the user configured: ``<assets>/cosyvoice`` and the assembled models."""
    return [ws.assets / "cosyvoice", ws.cosyvoice / "models"]


def roots(ws: Workspace, kind: str = READ) -> list[Path]:
    """The folders a path of ``kind`` must lie in."""
    if kind in (READ, LIST):
        return [ws.root, upload_root(), ws.assets, *ws.settings.import_root_list()]
    if kind == WRITE:
        return [ws.root]
    if kind == MODEL_DIR:
        return model_dir_roots(ws)
    if kind == IMPORT_SOURCE:
        return [ws.root, ws.assets, *ws.settings.import_root_list()]
    if kind == REPO:
        return roots(ws, READ)
    raise ValueError(f"unknown path kind {kind!r}")


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def _lexical(path: str | os.PathLike) -> Path:
    """``path`` made absolute with ``~`` and ``..`` removed by text, symlinks kept."""
    text = os.fspath(path)
    if not isinstance(text, str) or "\0" in text:
        raise InvalidInputError(f"{text!r} is not a valid path.")
    return Path(os.path.normpath(os.path.abspath(os.path.expanduser(text))))


def _real(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError) as exc:
        raise InvalidInputError(f"{path} is not a valid path ({exc}).") from exc


def _roots_both(folders: Iterable[Path]) -> list[Path]:
    """Each root as written (lexically) and resolved, so both spellings of a path can match."""
    out: list[Path] = []
    for root in folders:
        lex = _lexical(root)
        out += [lex, _real(lex)]
    return out


def _refusal(ws: Workspace, path: Any, what: str, kind: str) -> InvalidInputError:
    if kind == MODEL_DIR:
        hint = msg("path.outside.hint_model_dir", roots=" | ".join(str(r) for r in model_dir_roots(ws)))
    elif kind == WRITE:
        hint = msg("path.outside.hint_write", workspace=str(ws.root))
    else:
        hint = msg("path.outside.hint_read", workspace=str(ws.root), assets=str(ws.assets))
    return InvalidInputError(msg("path.outside", what=known_text("what", what), path=str(path)), hint)


def within(path: str | os.PathLike, folders: Iterable[str | os.PathLike]) -> bool:
    """True when ``path`` lies inside one of ``folders``, as written or with symlinks resolved."""
    try:
        lexical = _lexical(path)
        real = _real(lexical)
    except InvalidInputError:
        return False
    allowed = _roots_both(Path(f) for f in folders)
    return any(_inside(lexical, r) or _inside(real, r) for r in allowed)


def is_protected(ws: Workspace, path: Path) -> bool:
    """True for the studio's secrets (settings, jobs database and logs, TLS key), however spelled."""
    spellings = {_lexical(path), _real(_lexical(path))}
    return any(s == p or _inside(s, p) for s in spellings for p in _roots_both(protected_paths(ws)))


def confine(ws: Workspace, path: str | os.PathLike, what: str = "path", kind: str = READ) -> Path:
    """The path to use for ``path``, or an InvalidInputError when it leaves the roots of ``kind``.

    A path counts as inside when it is, as written (``..`` removed) or with symlinks resolved:
    symlinks inside the roots are the user's own (``assets import`` links files in; uploads and
    zip imports cannot create any). The path returned is the written one, made absolute, so an
    operation opens exactly what was checked.
    """
    lexical = _lexical(path)
    real = _real(lexical)
    ok = (kind == IMPORT_SOURCE and not ws.settings.lan) or within(lexical, roots(ws, kind))
    if ok and kind in (WRITE, MODEL_DIR, IMPORT_SOURCE):
        ok = not within(lexical, [upload_root()])
    if is_protected(ws, lexical):
        raise InvalidInputError(f"The {what} {path} is one of the studio's own records (settings, jobs, TLS key).",
                                "Requests cannot read or write it; choose another file.")
    if not ok:
        raise _refusal(ws, path, what, kind)
    if kind == LIST and real.is_file():
        confine_list(ws, real, what)
    return lexical


def confine_list(ws: Workspace, list_file: Path, what: str = "list") -> None:
    """Every path listed in ``list_file`` (one per line) must be a ``read`` path."""
    try:
        with open(list_file, encoding="utf-8", errors="replace") as fh:
            for n, line in enumerate(fh, 1):
                if n > LIST_MAX_LINES:
                    raise InvalidInputError(f"The {what} {list_file} has more than {LIST_MAX_LINES} lines.")
                entry = line.strip()
                if entry:
                    confine(ws, entry, f"file listed in {list_file.name} (line {n})")
    except OSError as exc:
        raise InvalidInputError(f"The {what} {list_file} cannot be read ({exc.strerror}).") from exc


def looks_like_path(value: str) -> bool:
    """True for values that name a place (absolute, ``~``, ``.``/``..``, or with a separator), not a bare name."""
    v = value.strip()
    return (os.path.isabs(v) or v.startswith("~") or v in (".", "..") or "/" in v or "\\" in v
            or (len(v) > 1 and v[1] == ":"))


def confine_value(ws: Workspace, value: str | None, what: str, kind: str = READ) -> str:
    """``value`` (stripped; "" for None) when it is safe to hand to an operation, else an InvalidInputError.

    Path-like values come back absolute, as checked (see ``confine``). Empty values and bare
    names (``myvoice``, ``auto``) pass: operations resolve names inside the workspace. A bare
    name that happens to exist relative to the studio's working folder is a path like any other.
    """
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be text (a path or a name), not {type(value).__name__}.")
    v = value.strip()
    if not v:
        return v
    if kind == REPO:
        return _repo_source(ws, v, what)
    if looks_like_path(v):
        return str(confine(ws, v, what, kind))
    if os.path.lexists(v):
        confine(ws, v, what, kind)
    return v


def _repo_source(ws: Workspace, value: str, what: str) -> str:
    if value.startswith("-") or "::" in value:
        raise InvalidInputError(f"The {what} {value} is not a repository URL.",
                                "Give an https:// URL or a bundle/checkout inside the workspace.")
    if value.lower().startswith(REMOTE_GIT):
        return value
    local = value[len("file://"):] if value.lower().startswith("file://") else value
    return str(confine(ws, local, what, READ))


def confine_params(ws: Workspace, obj: Any) -> Any:
    """A copy of the params dataclass ``obj`` whose declared path fields were all checked.

    Fields declare their kind with ``param(..., path="read" | "write" | ...)``; lists are checked
    element by element.
    """
    from engines.core.params import info_of

    changes: dict[str, Any] = {}
    for f in fields(obj):
        kind = info_of(f).path
        if not kind:
            continue
        value = getattr(obj, f.name)
        what = f.name.replace("_", " ")
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            changes[f.name] = type(value)(confine_value(ws, v, what, kind) for v in value)
        else:
            changes[f.name] = confine_value(ws, value, what, kind)
    return replace(obj, **changes) if changes else obj


def path_fields(cls: type) -> dict[str, str]:
    """``{field: kind}`` of a params dataclass's declared path fields."""
    from engines.core.params import info_of

    return {f.name: info_of(f).path for f in fields(cls) if info_of(f).path}


def servable_roots(ws: Workspace) -> list[Path]:
    """What the file route may serve: outputs, dataset clips, A/B renders and uploads (not A/B sessions: blind).

    Tournament takes (``ab/tournaments``) are served: their file names are random tokens, not saves.
    """
    return [ws.outputs, ws.datasets, ws.root / "ab" / "cache", ws.root / "ab" / "cosyvoice",
            ws.root / "ab" / "tournaments", upload_root()]


def servable(ws: Workspace, path: str | os.PathLike, extra: Iterable[Path] = ()) -> bool:
    """True when the studio may serve ``path`` to a logged-in client (an allow-list, not a block-list)."""
    try:
        real = _real(_lexical(path))
    except InvalidInputError:
        return False
    return not is_protected(ws, real) and within(real, [*servable_roots(ws), *extra])
