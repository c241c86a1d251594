"""Which server paths the page may read: the workspace, Gradio's upload dir, configured roots."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from engines.core.errors import InvalidInputError
from engines.core.settings import Workspace


def upload_root() -> Path:
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


def allowed_roots(ws: Workspace) -> list[Path]:
    return [ws.root, upload_root(), *ws.settings.import_root_list()]


def confine(ws: Workspace, path: str | os.PathLike, what: str = "path") -> Path:
    """Resolve ``path`` (symlinks too) and refuse it unless it lies inside an allowed root."""
    real = Path(path).expanduser().resolve()
    for root in allowed_roots(ws):
        try:
            real.relative_to(Path(root).expanduser().resolve())
            return real
        except ValueError:
            continue
    raise InvalidInputError(
        f"The {what} {path} is outside the folders the studio may read.",
        f"Use a folder inside the workspace ({ws.root}) or add it to import_roots "
        "(VOICELAB_IMPORT_ROOTS or settings.toml), then restart.",
    )
