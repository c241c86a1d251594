"""Helpers of the hostile tests: the login, the forbidden folder, the studio handle, the in-process CLI."""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOGIN = ("alice", "correct-horse-battery")


@dataclass
class Hostile:
    root: Path  # everything of this session: corpus, workspace, the outside folder
    ws: Path
    outside: Path  # a folder no request may touch (and /etc)
    audit_log: Path
    url: str
    http: Any  # studio_http.StudioHTTP, logged in
    good_wav: Path

    def audit_lines(self) -> list[str]:
        return self.audit_log.read_text(encoding="utf-8").splitlines() if self.audit_log.exists() else []


def make_outside(folder: Path, marker: Path) -> Path:
    """The forbidden folder: a model dir with a code-running yaml, audio, a model, an index, a list file."""
    import numpy as np
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cosyvoice2.yaml").write_text(f'x: !apply:os.system ["touch {marker}"]\n', encoding="utf-8")
    sf.write(folder / "canary.wav", (0.1 * np.sin(np.arange(32000) / 9)).astype(np.float32), 16000)
    (folder / "model.pth").write_bytes(b"canary")
    (folder / "added_IVF1_Flat_nprobe_1_canary_v2.index").write_bytes(b"canary")
    (folder / "canary-shards.list").write_text(str(folder / "canary.parquet") + "\n", encoding="utf-8")
    return folder


def run_cli(ws: Path, *argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``voicelab --workspace ws argv...`` in this process (the same parser, handlers and error printing)."""
    from engines.cli import main

    out, err = io.StringIO(), io.StringIO()
    old = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(["--workspace", str(ws), *argv])
            except SystemExit as exc:  # argparse refusals
                code = int(exc.code or 0)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return code, out.getvalue(), err.getvalue()
