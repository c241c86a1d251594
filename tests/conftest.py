"""Shared fixtures: a fresh workspace per test, small thread counts."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # test helpers (tiny models, speech)
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture
def ws(tmp_path, monkeypatch):
    """A Workspace in a temp dir, with settings untouched by the developer's env."""
    from engines.core.settings import Workspace

    for var in ("VOICELAB_HOME", "VOICELAB_AUTH", "VOICELAB_PORT", "VOICELAB_HOST", "VOICELAB_DEVICE"):
        monkeypatch.delenv(var, raising=False)
    return Workspace.open(tmp_path / "ws")


@pytest.fixture
def one_torch_thread():
    """One intra-op thread: with several test processes on 2 cores, OpenMP spinning makes 2 threads
    ~10x slower, and upstream's golden data were made with one thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _close_job_runners():
    """Each test's job runners stop their worker processes when the test ends."""
    yield
    from engines.core.jobs import close_all_runners

    close_all_runners()


# The longest test files, longest first: they start first when files are spread over processes
# (scripts/setup.sh), so none of them is left to run alone at the end.
LONG_FILES = ("test_cosyvoice_upstream.py", "test_lanes_rvc.py", "test_ab_scores.py", "hostile/test_hostile_security.py",
              "hostile/test_hostile_corpus.py", "test_rvc_train.py", "test_ab_tournament.py", "test_tracking.py",
              "test_rvc_train_ui.py", "test_f0.py", "test_rvc_import_installs.py", "test_rvc_import_ui.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_FILES)}

    def key(item) -> int:
        rel = item.nodeid.split("::", 1)[0].removeprefix("tests/")
        return rank.get(rel, len(rank))

    items.sort(key=key)  # stable: the order inside a file is kept
