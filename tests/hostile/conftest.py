"""One LAN studio (with a login) for the hostile tests, watched by an audit hook, plus the built corpus."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import LOGIN, Hostile, make_outside  # noqa: E402


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
