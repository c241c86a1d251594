"""One LAN studio (with a login) for the hostile tests, watched by an audit hook, plus the built corpus."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
LOGIN = ("alice", "correct-horse-battery")


@dataclass
class Hostile:
    root: Path  # everything of this session: corpus, workspace, the outside folder
    ws: Path
    outside: Path  # a folder no request may touch (and /etc)
    audit_log: Path
    url: str
    http: "object"
    good_wav: Path

    def audit_lines(self) -> list[str]:
        return self.audit_log.read_text(encoding="utf-8").splitlines() if self.audit_log.exists() else []


def make_outside(folder: Path, marker: Path) -> Path:
    """The forbidden folder: a model dir with a code-running yaml, audio, a model, an index, a data.list."""
    import numpy as np
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cosyvoice2.yaml").write_text(f'x: !apply:os.system ["touch {marker}"]\n', encoding="utf-8")
    sf.write(folder / "canary.wav", (0.1 * np.sin(np.arange(32000) / 9)).astype(np.float32), 16000)
    (folder / "model.pth").write_bytes(b"canary")
    (folder / "added_IVF1_Flat_nprobe_1_canary_v2.index").write_bytes(b"canary")
    (folder / "canary-shards.list").write_text(str(folder / "canary.parquet") + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """``(root, {case id: built path})`` for every case of ``corpus.CASES``."""
    from corpus import CASES

    root = tmp_path_factory.mktemp("hostile_corpus")
    built = {}
    for case in CASES:
        folder = root / case.id
        folder.mkdir()
        built[case.id] = case.make(folder, case)
    return root, built


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """A tiny v1 40k f0 voice and a tiny HuBERT dir (the real architectures, small)."""
    from test_rvc_convert import make_fast_hubert, make_fast_voice

    root = tmp_path_factory.mktemp("hostile_models")
    return make_fast_voice(root / "tiny.pth", "v1", "40k", f0=True), make_fast_hubert(root / "hubert")


@pytest.fixture(scope="session")
def hostile(tmp_path_factory, tiny_models):
    """The studio under attack: --lan with a login, the audit hook on, nothing reachable outside."""
    import soundfile as sf
    from browser import studio
    from corpus import tone
    from studio_http import StudioHTTP

    root = tmp_path_factory.mktemp("hostile_studio")
    ws = root / "ws"
    (ws / "weights").mkdir(parents=True)
    shutil.copy(tiny_models[0], ws / "weights" / "tiny.pth")
    outside = make_outside(root / "outside", root / "PWNED-outside")
    good = root / "good.wav"
    sf.write(good, tone(1.2), 16000)
    audit = root / "audit.log"
    env = {
        "PYTHONPATH": os.pathsep.join([str(HERE / "audit"), os.environ.get("PYTHONPATH", "")]),
        "VOICELAB_AUDIT_LOG": str(audit),
        "VOICELAB_AUDIT_ROOTS": os.pathsep.join([str(outside), "/etc"]),
        "VOICELAB_HUBERT": str(tiny_models[1]),
        "VOICELAB_COSYVOICE_REPO": str(root / "no_checkout"),
        "HF_ENDPOINT": "http://127.0.0.1:9", "MODELSCOPE_DOMAIN": "127.0.0.1:9", "GIT_ALLOW_PROTOCOL": "file",
    }
    with studio(ws, "--lan", "--auth", ":".join(LOGIN), env=env, timeout=180) as (url, _):
        http = StudioHTTP(url, LOGIN)
        try:
            yield Hostile(root, ws, outside, audit, url, http, good)
        finally:
            http.close()


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
