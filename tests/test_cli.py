"""The `voicelab` console script as a user runs it (a real subprocess)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

VOICELAB = shutil.which("voicelab", path=str(Path(sys.executable).parent))


def run(*args: str, home: Path) -> subprocess.CompletedProcess:
    cmd = [VOICELAB] if VOICELAB else [sys.executable, "-m", "engines.cli"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "VOICELAB_ASSETS": str(home / "assets")}
    return subprocess.run([*cmd, "--workspace", str(home / "ws"), *args], capture_output=True, text=True,
                          timeout=120, env=env)


def test_help_lists_every_group(tmp_path):
    out = run("--help", home=tmp_path)
    assert out.returncode == 0
    for group in ("dataset", "rvc", "cosyvoice", "vendor", "assets", "jobs", "serve"):
        assert group in out.stdout


def test_train_without_hubert_fails_before_any_work(tmp_path):
    out = run("rvc", "train", "--exp-name", "v", "--dataset", str(tmp_path), "--f0-method", "pm", home=tmp_path)
    assert out.returncode == 1
    assert "hubert" in out.stderr.lower() and "voicelab assets download hubert_base" in out.stderr
    assert not (tmp_path / "ws" / "experiments" / "v" / "0_gt_wavs").exists()


def test_assets_check_json_and_empty_job_list(tmp_path):
    out = run("assets", "check", "--json", home=tmp_path)
    assert out.returncode in (0, 1), out.stderr
    rows = json.loads(out.stdout)["assets"]
    hubert = next(r for r in rows if r["name"] == "hubert_base")
    assert hubert["status"] == "missing" and "voicelab assets download hubert_base" in hubert["command"]
    jobs = run("jobs", "list", "--json", home=tmp_path)
    assert jobs.returncode == 0 and json.loads(jobs.stdout) == []


@pytest.mark.parametrize("args", [("dataset", "stats", "nope"), ("rvc", "ckpt", "info", "/nonexistent.pth")])
def test_user_errors_are_one_clear_line_and_exit_1(tmp_path, args):
    out = run(*args, home=tmp_path)
    assert out.returncode == 1 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr
