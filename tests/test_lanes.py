"""Lanes and worker processes: scheduling rules, cancel within 2 s, dead workers, warm workers, restarts.

The operations here are small stand-ins registered by this module (a worker imports it by name);
the real operations go through the same runner in test_lanes_rvc.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from engines.core.jobs import JobRunner
from engines.core.lanes import ALL_DEVICES, conflicts, plan_starts, training_claim
from engines.core.ops import operation
from engines.core.params import param
from engines.core.settings import Settings, Workspace


@dataclass
class _Sleep:
    seconds: float = param(1.0)
    tag: str = param("")
    batch_size: int = param(0)
    mode: str = param("")


def _mark(ws, tag: str, what: str) -> None:
    with open(ws.root / "marks.txt", "a") as fh:
        fh.write(f"{tag} {what} {time.time():.6f} {os.getpid()}\n")


def _marks(ws) -> list[list[str]]:
    path = ws.root / "marks.txt"
    return [line.split() for line in path.read_text().splitlines()] if path.is_file() else []


def _sleep_op(p: _Sleep, hooks, ws) -> dict:
    """Sleeps in small steps (checking cancel), logging each; modes: stuck (one long sleep, no checks),
    backwards (reports progress 0.6 then 0.3), oom (raises CUDA's out-of-memory error), temp (holds an
    atomic-write temp file open while stuck)."""
    _mark(ws, p.tag, "start")
    if p.mode == "segfault":
        import ctypes

        hooks.log("about to crash")
        ctypes.string_at(0)  # a fault in native code
    if p.mode == "oom":
        import torch

        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 23.6 GiB total)")
    if p.mode == "backwards":
        hooks.progress(0.6, "ahead")
        hooks.progress(0.3, "behind")
    if p.mode in ("stuck", "temp"):
        hooks.log("stuck in one long call")
        if p.mode == "temp":
            from engines.core.atomic import atomic_path

            with atomic_path(ws.outputs / "never.wav") as tmp, open(tmp, "wb") as fh:
                fh.write(b"half")
                fh.flush()
                time.sleep(p.seconds)
        time.sleep(p.seconds)
    steps = max(1, int(p.seconds / 0.05))
    for i in range(steps):
        hooks.check_cancel()
        if p.mode != "backwards":
            hooks.progress((i + 1) / steps, f"{p.tag} {i + 1}/{steps}")
        hooks.log(f"{p.tag} tick {i}")
        time.sleep(0.05)
    _mark(ws, p.tag, "end")
    return {"summary": f"{p.tag} slept", "pid": os.getpid()}


for _lane in ("training", "listening", "cpu"):
    operation(f"test.sleep_{_lane}", params=_Sleep, kind=_lane)(_sleep_op)


def _settings(**kw) -> Settings:
    return Settings(**kw)


def _rec(id_: str, kind: str, params: dict | None = None, device: str = "") -> SimpleNamespace:
    return SimpleNamespace(id=id_, kind=kind, params=params or {}, device=device, parent="")


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# -- the rules -----------------------------------------------------------------------------------

def test_training_claims_and_conflicts():
    s = _settings()
    assert training_claim({"gpus": "0-1"}, s) == {"cuda:0", "cuda:1"}
    assert training_claim({}, s) == {ALL_DEVICES}
    assert training_claim({}, _settings(device="cpu")) == {"cpu"}
    assert training_claim({"device": "cuda:1"}, s) == {"cuda:1"}
    assert conflicts({"cuda:0", "cuda:1"}, {"cuda:1"}) and not conflicts({"cuda:0"}, {"cuda:2"})
    assert conflicts({ALL_DEVICES}, {"cuda:3"})


def test_plan_starts_lanes_devices_and_order():
    s = _settings()
    queued = [_rec("t1", "training", {"gpus": "0"}), _rec("t2", "training", {"gpus": "0-1"}),
              _rec("t3", "training", {"gpus": "1"}), _rec("t4", "training", {"gpus": "2"}),
              _rec("l1", "listening"), _rec("l2", "listening"), _rec("c1", "cpu"), _rec("c2", "cpu"),
              _rec("c3", "cpu")]
    starts = plan_starts(queued, [], s, cpu_slots=2)
    # t2 waits for t1 (GPU 0); t3 would overlap t2 (queued before it) so it waits too; t4 is free.
    assert [x.job_id for x in starts] == ["t1", "t4", "l1", "c1", "c2"]
    # A running listening job holds its slot; a training elsewhere does not block listening.
    running = [_rec("t0", "training", {}), _rec("lx", "listening", device="auto")]
    starts = plan_starts([_rec("l3", "listening"), _rec("t5", "training", {"gpus": "0"})], running, s, 2)
    assert starts == []
    starts = plan_starts([_rec("l3", "listening")], [_rec("t0", "training", {})], s, 2)
    assert [(x.job_id, x.lane, x.slot) for x in starts] == [("l3", "listening", "auto")]
    # A conversion someone waits for goes before previews a training queued earlier.
    preview = _rec("p1", "listening")
    preview.parent = "t0"
    assert [x.job_id for x in plan_starts([preview, _rec("l4", "listening")], [], s, 2)] == ["l4"]


def test_fits_on_gpu_falls_back_to_the_cpu_and_says_why():
    from engines.core.device import fits_on_gpu

    gib = 2**30
    assert fits_on_gpu("cuda:0", 10 * gib, 24 * gib, 0, 3000)[0] == "cuda:0"
    device, why = fits_on_gpu("cuda:0", 1 * gib, 24 * gib, 0, 3000)
    assert device == "cpu" and "1024 MB free of 24576 MB" in why and "3000 MB" in why
    assert fits_on_gpu("cuda:0", 1 * gib, 24 * gib, 2.5 * gib, 3000)[0] == "cuda:0"  # its own warm models count


# -- jobs in worker processes ------------------------------------------------------------------------

def test_listening_jobs_run_while_the_training_lane_is_busy(ws):
    runner = JobRunner(ws)
    train = runner.submit("test.sleep_training", {"seconds": 120, "tag": "train"})
    _wait_for(lambda: "train tick 1" in runner.read_log(train), 30, "training to run")
    listens = [runner.submit("test.sleep_listening", {"seconds": 0.2, "tag": f"listen{i}"}) for i in range(3)]
    recs = [runner.wait(j, 60) for j in listens]
    assert runner.get(train).state == "running" and all(r.state == "done" for r in recs)
    runner.cancel(train)
    train_rec = runner.wait(train, 10)
    for r in recs:
        assert train_rec.started < r.started and r.finished < train_rec.finished  # inside the training's run
    for a, b in zip(recs, recs[1:]):
        assert a.finished <= b.started  # one at a time on the device
    assert train_rec.pid not in {r.result["pid"] for r in recs}  # other processes than training's
    assert len({r.result["pid"] for r in recs}) == 1  # one warm worker served all three
    assert [r.worker["warm"] for r in recs] == [False, True, True]
    assert recs[0].lane == "listening" and train_rec.lane == "training"
    assert recs[0].worker["device"] in ("cpu", "cuda:0")
    assert os.getpid() not in {r.result["pid"] for r in recs}


def test_free_workers_stops_the_warm_listening_worker(ws):
    runner = JobRunner(ws)
    rec = runner.wait(runner.submit("test.sleep_listening", {"seconds": 0.1}), 20)
    assert rec.state == "done"
    # (the job's row says done a moment before its worker tells the studio it is free)
    [w] = _wait_for(lambda: [w for w in runner.workers() if w["lane"] == "listening" and w["state"] == "idle"], 5,
                    "the worker to be idle")
    assert w["jobs_done"] == 1 and w["pid"] == rec.pid
    proc = psutil.Process(w["pid"])
    assert runner.free_workers("listening") == 1
    proc.wait(5)
    _wait_for(lambda: not runner.workers(), 5, "the worker to leave the list")
    again = runner.wait(runner.submit("test.sleep_listening", {"seconds": 0.1}), 20)
    assert again.state == "done" and again.worker["warm"] is False and again.pid != w["pid"]


def test_sigkill_of_a_worker_fails_its_job_with_the_signal_and_the_studio_goes_on(ws):
    runner = JobRunner(ws)
    job = runner.submit("test.sleep_training", {"seconds": 30, "tag": "victim"})
    _wait_for(lambda: "victim tick 3" in runner.read_log(job), 20, "the job to run")
    rec = runner.get(job)
    os.kill(rec.pid, signal.SIGKILL)
    failed = runner.wait(job, 10)
    assert failed.state == "failed"
    assert "SIGKILL" in failed.error and "out of memory" in failed.error
    assert "Last log lines" in failed.error and "victim tick" in failed.error
    nxt = runner.wait(runner.submit("test.sleep_training", {"seconds": 0.1, "tag": "next"}), 20)
    assert nxt.state == "done"


@pytest.mark.parametrize("lane", ["training", "listening"])
def test_cancel_of_a_job_stuck_in_one_call_reaches_cancelled_within_two_seconds(ws, lane):
    runner = JobRunner(ws)
    job = runner.submit(f"test.sleep_{lane}", {"seconds": 60, "mode": "temp"})
    _wait_for(lambda: "stuck in one long call" in runner.read_log(job), 20, "the job to get stuck")
    time.sleep(0.2)
    assert list(ws.outputs.glob(".never.*.part*"))  # the half-written temp file exists
    t0 = time.monotonic()
    assert runner.cancel(job)
    rec = runner.wait(job, 5)
    elapsed = time.monotonic() - t0
    assert rec.state == "cancelled" and elapsed < 2.0, elapsed
    from engines.core.workers import process_matches

    _wait_for(lambda: not process_matches(rec.pid, rec.pid_start), 2, "the killed worker to be gone")
    assert not list(ws.outputs.glob(".never.*")) and not (ws.outputs / "never.wav").exists()
    log = runner.read_log(job)
    assert "did not stop within 0.8 s" in log and "1 unfinished temp file(s) removed" in log


def test_a_crash_in_native_code_fails_the_job_with_the_signal_and_its_stack(ws):
    runner = JobRunner(ws)
    rec = runner.wait(runner.submit("test.sleep_cpu", {"mode": "segfault"}), 30)
    assert rec.state == "failed" and "SIGSEGV" in rec.error and "Last log lines" in rec.error
    log = runner.read_log(rec.id)
    assert "about to crash" in log and "Fatal Python error: Segmentation fault" in log  # faulthandler's stack
    assert "_sleep_op" in log and "_sleep_op" in rec.error
    assert runner.wait(runner.submit("test.sleep_cpu", {"seconds": 0.1}), 30).state == "done"


def test_cancel_cooperative_keeps_the_warm_worker(ws):
    runner = JobRunner(ws)
    first = runner.wait(runner.submit("test.sleep_listening", {"seconds": 0.1}), 20)
    job = runner.submit("test.sleep_listening", {"seconds": 30, "tag": "long"})
    _wait_for(lambda: "long tick 2" in runner.read_log(job), 20, "the job to run")
    t0 = time.monotonic()
    runner.cancel(job)
    rec = runner.wait(job, 5)
    assert rec.state == "cancelled" and time.monotonic() - t0 < 1.0
    assert rec.pid == first.pid and psutil.pid_exists(rec.pid)  # stopped by itself: the worker stays warm
    assert "Cancelled by the user" in runner.read_log(job)


def test_cuda_out_of_memory_says_to_lower_the_batch_size(ws):
    runner = JobRunner(ws)
    rec = runner.wait(runner.submit("test.sleep_training", {"mode": "oom", "batch_size": 8}), 60)
    assert rec.state == "failed" and rec.message == "The GPU ran out of memory."
    assert "Lower the batch size to 4 (it was 8)" in rec.error
    assert "OutOfMemoryError" in runner.read_log(rec.id)


def test_progress_never_goes_backwards(ws, tmp_path, monkeypatch):
    trace = tmp_path / "trace.jsonl"
    monkeypatch.setenv("VOICELAB_PROGRESS_TRACE", str(trace))
    runner = JobRunner(ws)
    job = runner.submit("test.sleep_cpu", {"seconds": 1.0, "mode": "backwards"})
    seen = []
    while runner.get(job).state in ("queued", "running"):
        seen.append(runner.get(job).progress)
        time.sleep(0.02)
    assert runner.get(job).state == "done"
    assert seen == sorted(seen) and max(seen) >= 0.6
    raw = [json.loads(line)["fraction"] for line in trace.read_text().splitlines()]
    assert raw == [0.6, 0.3]  # what the operation reported; the record kept 0.6


def test_restart_reattaches_a_live_worker_and_nothing_runs_twice(ws, tmp_path):
    """The studio process dies (SIGKILL) while a job runs; the next studio follows the same worker."""
    script = tmp_path / "studio.py"
    script.write_text(
        "import sys, time\n"
        f"sys.path[:0] = {[str(Path(__file__).parent)]!r}\n"
        "import test_lanes\n"
        "from engines.core.jobs import JobRunner\n"
        "from engines.core.settings import Workspace\n"
        f"runner = JobRunner(Workspace.open({str(ws.root)!r}))\n"
        "print(runner.submit('test.sleep_training', {'seconds': 4, 'tag': 'survivor'}), flush=True)\n"
        "time.sleep(600)\n")
    studio = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    job = studio.stdout.readline().strip()
    again = None
    try:
        from engines.core.jobs import JobStore

        store = JobStore(ws.jobs_db)
        _wait_for(lambda: "survivor tick 2" in Path(store.get(job).log_path).read_text(), 30, "the job to run")
        studio.kill()  # the studio crashes; its worker goes on
        studio.wait(5)
        worker_pid = store.get(job).pid
        assert psutil.pid_exists(worker_pid)
        again = JobRunner(Workspace.open(ws.root))
        assert again.reattached_at_start == 1 and again.interrupted_at_start == 0
        size = len(again.read_log(job))
        rec = again.wait(job, 30)
        assert rec.state == "done" and rec.pid == worker_pid
        log = again.read_log(job)
        assert len(log) > size and "following this job's worker" in log  # the log kept streaming
        assert [m[:2] for m in _marks(ws)] == [["survivor", "start"], ["survivor", "end"]]  # it ran once
    finally:
        studio.kill()


def test_restart_marks_a_job_whose_worker_is_gone_interrupted(ws):
    from engines.core.jobs import JobRecord, JobStore

    store = JobStore(ws.jobs_db)
    log = ws.jobs_dir / "x.log"
    log.touch()
    store.insert(JobRecord(id="x", op="test.sleep_training", title="x", kind="training", state="running", params={},
                           created=time.time(), started=time.time(), finished=None, progress=0.3, message="",
                           result=None, error="", log_path=str(log), pid=2**22 - 7, pid_start=1.0))
    runner = JobRunner(Workspace.open(ws.root))
    assert runner.interrupted_at_start == 1 and runner.get("x").state == "interrupted"


def test_the_job_panel_says_where_a_job_runs():
    from engines.core.device import fits_on_gpu
    from engines.core.jobs import JobRecord
    from voicelab_ui.widgets import job_status_md, where_it_runs

    _, why = fits_on_gpu("cuda:0", 512 * 2**20, 24 * 2**30, 0, 3000)
    rec = JobRecord(id="j", op="rvc.convert", title="Convert", kind="listening", state="running", params={},
                    created=0.0, started=1.0, finished=None, progress=0.5, message="", result=None, error="",
                    log_path="", device="cuda:0", worker={"device": "cpu", "device_note": why, "warm": True})
    assert where_it_runs(rec) == f"listening lane · cpu · warm worker ({why})"
    assert "listening lane · cpu" in job_status_md(rec)
    rec.worker = None
    rec.kind, rec.device = "training", "*"
    assert where_it_runs(rec) == "training lane"
