"""Settings precedence, parameter models and the job runner."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import psutil
import pytest

from engines.core.errors import InvalidInputError, VoiceLabError
from engines.core.jobs import JobRunner
from engines.core.ops import operation
from engines.core.params import build, param
from engines.core.settings import Workspace, load_settings, safe_name


def test_settings_precedence(tmp_path):
    root = tmp_path / "w"
    root.mkdir()
    (root / "settings.toml").write_text('port = 7000\nhost = "10.0.0.1"\n[cosyvoice]\nrepo = "/opt/cv"\n')
    s = load_settings(workspace=root, env={})
    assert (s.port, s.host, s.cosyvoice_repo) == (7000, "10.0.0.1", "/opt/cv")
    s = load_settings(workspace=root, env={"VOICELAB_PORT": "7100"})
    assert s.port == 7100 and s.host == "10.0.0.1"
    s = load_settings({"port": 7200, "host": None}, workspace=root, env={"VOICELAB_PORT": "7100"})
    assert s.port == 7200 and s.host == "10.0.0.1"
    assert load_settings(workspace=tmp_path / "empty", env={}).port == 7860


def test_workspace_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("VOICELAB_HOME", str(tmp_path / "elsewhere"))
    ws = Workspace.open()
    assert ws.root == (tmp_path / "elsewhere").resolve()
    assert ws.datasets.is_dir() and ws.jobs_dir.is_dir()
    assert ws.contains(ws.datasets / "x") and not ws.contains(tmp_path / "other")


@pytest.mark.parametrize("bad", ["", "..", "a/b", "a\\b", "x" * 200])
def test_safe_name_rejects(bad):
    with pytest.raises(InvalidInputError):
        safe_name(bad)


@dataclass
class _P:
    n: int = param(3, min=1, max=10)
    mode: str = param("a", choices=["a", "b"])
    rate: float = param(0.5, min=0, max=1)


def test_params_validate():
    assert build(_P, {"n": "4", "rate": "0.25", "unknown": 1}) == _P(4, "a", 0.25)
    with pytest.raises(InvalidInputError, match="between"):
        build(_P, {"n": 11})
    with pytest.raises(InvalidInputError, match="one of"):
        build(_P, {"mode": "c"})


# --- job runner ---------------------------------------------------------------

@dataclass
class _JobP:
    steps: int = param(3)
    fail: str = param("")
    tag: str = param("")


def _order(ws) -> list[str]:
    """Tags of the test.steps jobs in the order they ran (they run in worker processes)."""
    path = ws.root / "order.txt"
    return path.read_text().split() if path.is_file() else []


@operation("test.steps", params=_JobP, kind="training")
def _steps(p: _JobP, hooks, ws) -> dict:
    with open(ws.root / "order.txt", "a") as fh:
        fh.write(p.tag + "\n")
    for i in range(p.steps):
        hooks.check_cancel()
        hooks.log(f"step {i}")
        hooks.progress((i + 1) / p.steps, f"step {i + 1}/{p.steps}")
        time.sleep(0.05)
    if p.fail == "user":
        raise InvalidInputError("bad thing", "do the other thing")
    if p.fail == "bug":
        raise ZeroDivisionError("oops")
    return {"summary": f"did {p.steps}", "paths": []}


@operation("test.subprocess", params=_JobP, kind="training")
def _subprocess(p: _JobP, hooks, ws) -> dict:
    code = "import time,sys\nfor i in range(600):\n    print('tick', i, flush=True); time.sleep(0.1)"
    hooks.run([sys.executable, "-c", code])
    return {}


def test_job_progress_log_and_result(ws):
    runner = JobRunner(ws)
    job = runner.submit("test.steps", {"steps": 4})
    rec = runner.wait(job, 20)
    assert rec.state == "done" and rec.progress == 1.0
    assert rec.result["summary"] == "did 4" and rec.message == "did 4"
    log = runner.read_log(job)
    assert "step 0" in log and "step 3" in log and "Done." in log
    assert rec.started and rec.finished and rec.finished >= rec.started


def test_gpu_jobs_run_one_at_a_time_in_order(ws):
    runner = JobRunner(ws)
    ids = [runner.submit("test.steps", {"steps": 2, "tag": t}) for t in "abc"]
    time.sleep(0.02)
    states = {runner.get(i).state for i in ids}
    assert "queued" in states
    recs = [runner.wait(i, 20) for i in ids]
    assert _order(ws) == ["a", "b", "c"]
    assert recs[0].finished <= recs[1].started and recs[1].finished <= recs[2].started


def test_failures_are_captured_and_runner_keeps_going(ws):
    runner = JobRunner(ws)
    user = runner.wait(runner.submit("test.steps", {"steps": 1, "fail": "user"}), 20)
    bug = runner.wait(runner.submit("test.steps", {"steps": 1, "fail": "bug"}), 20)
    ok = runner.wait(runner.submit("test.steps", {"steps": 1}), 20)
    assert user.state == "failed" and "bad thing" in user.error and "do the other thing" in user.error
    assert bug.state == "failed" and "ZeroDivisionError" in bug.error
    assert "Traceback" in runner.read_log(bug.id)
    assert ok.state == "done"


def test_cancel_kills_subprocess_within_two_seconds(ws):
    runner = JobRunner(ws)
    job = runner.submit("test.subprocess")
    deadline = time.time() + 20
    while "tick 3" not in runner.read_log(job):
        assert time.time() < deadline
        time.sleep(0.05)
    children = [p for p in psutil.Process().children(recursive=True) if "tick" in " ".join(p.cmdline())]
    assert children
    t0 = time.monotonic()
    assert runner.cancel(job)
    rec = runner.wait(job, 5)
    elapsed = time.monotonic() - t0
    assert rec.state == "cancelled" and elapsed < 2.0
    gone, alive = psutil.wait_procs(children, timeout=0.5)
    assert not alive


def test_cancel_queued_job(ws):
    runner = JobRunner(ws)
    first = runner.submit("test.steps", {"steps": 10})
    second = runner.submit("test.steps", {"steps": 1})
    assert runner.cancel(second)
    assert runner.get(second).state == "cancelled"
    runner.wait(first, 20)
    assert runner.get(second).state == "cancelled"


def test_restart_marks_running_jobs_interrupted(ws):
    runner = JobRunner(ws)
    job = runner.submit("test.subprocess")
    deadline = time.time() + 20
    while runner.get(job).state != "running":
        assert time.time() < deadline
        time.sleep(0.05)
    # A new runner on the same workspace = the studio restarted (told not to re-attach: it stops the worker).
    again = JobRunner(Workspace.open(ws.root), reattach=False)
    rec = again.get(job)
    assert rec.state == "interrupted" and again.interrupted_at_start == 1
    assert again.list(op_prefix="test.")[0].id == job
    runner.cancel(job)


def test_unknown_operation_and_bad_params(ws):
    runner = JobRunner(ws)
    with pytest.raises(VoiceLabError, match="Unknown operation"):
        runner.submit("nope")
    with pytest.raises(InvalidInputError):
        runner.submit("system.benchmark", {"seconds": -1})


def test_operations_do_not_import_torch():
    code = "import sys, engines.core.jobs as j; j.load_operations(); import engines.cli; print('torch' in sys.modules)"
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
