"""Worker processes as the studio sees them: start, hand a job, watch, stop, kill.

Each worker is ``python -m engines.core.worker`` in its own session (process group), so a kill
reaches everything it started. The studio talks to it over its stdin/stdout pipes (JSON lines):
``run`` a job / ``exit``; it answers ``finished``. Everything else (log, progress, state, result)
the worker writes into the job's own files and row, which is what lets a restarted studio follow a
worker it did not start. A worker whose pipe closes has exited: if its job had not ended, the job is
marked failed with the exit signal and the last log lines (or cancelled, when a cancel was asked).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

from engines.core.lanes import LanePolicy, Start
from engines.core.messages import known_text, msg, ref_json
from engines.core.settings import Workspace

SIGNAL_CAUSES = {
    "SIGKILL": "was killed (SIGKILL): the system may have run out of memory (the kernel's OOM killer ends the "
               "biggest process), or someone killed it",
    "SIGSEGV": "crashed (SIGSEGV, a fault in native code: a library or the GPU driver)",
    "SIGABRT": "aborted (SIGABRT, native code gave up: often a CUDA or driver error)",
    "SIGBUS": "crashed (SIGBUS: a memory-mapped file went away, or the disk is full)",
    "SIGTERM": "was stopped (SIGTERM)",
}


def log_line(path: str | Path, line: str) -> None:
    """Append one timestamped line to a job log."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(f"{time.strftime('%H:%M:%S')} {line}\n")


def tail(path: str | Path, lines: int = 12) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def death_cause(returncode: int | None) -> str:
    """How a worker ended, in words (from its exit status)."""
    if returncode is None:
        return "ended (exit status unknown)"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return SIGNAL_CAUSES.get(name, f"was killed by {name}")
    return f"exited with code {returncode} without recording a result"


def process_matches(pid: int | None, start_time: float | None) -> bool:
    """True when ``pid`` is alive and is the process started at ``start_time`` (not a reused pid)."""
    if not pid:
        return False
    try:
        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return start_time is None or abs(proc.create_time() - float(start_time)) < 0.05
    except psutil.Error:
        return False


def _is_temp_part(path: str) -> bool:
    """A temp file of ``engines.core.atomic`` (``.<stem>.<random>.part<ext>``)."""
    name = os.path.basename(path)
    return name.startswith(".") and ".part" in name


def kill_tree(pid: int, wait: float = 0.0) -> list[str]:
    """SIGKILL a worker and everything below it (its own process groups too); remove the atomic-write
    temp files they had open (the finished files are never touched); wait up to ``wait`` s for them to
    be gone. Returns the removed temp files."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return []
    parts: set[str] = set()
    groups: set[int] = set()
    for proc in procs:
        try:
            parts.update(f.path for f in proc.open_files() if _is_temp_part(f.path))
            groups.add(os.getpgid(proc.pid))
        except (psutil.Error, OSError):
            pass
    groups.discard(os.getpgrp())  # never the studio's own group
    for proc in procs:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.Error:
            pass
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except OSError:
            pass
    removed = []
    for path in parts:
        try:
            os.unlink(path)
            removed.append(path)
        except OSError:
            pass
    if wait:
        psutil.wait_procs(procs, timeout=wait)
    return removed


class WorkerHandle:
    """One worker process of a lane."""

    def __init__(self, ws: Workspace, lane: str, slot: str, once: bool, on_exit: Any) -> None:
        self.id = f"{lane}-{uuid.uuid4().hex[:6]}"
        self.lane, self.slot = lane, slot
        self.log_path = ws.jobs_dir / "workers" / f"{self.id}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        # The operation modules the studio imported (tests define some) must be importable in the worker.
        env["VOICELAB_WORKER_SYS_PATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
        cmd = [sys.executable, "-m", "engines.core.worker", "--workspace", str(ws.root), "--lane", lane,
               "--worker-id", self.id, "--log", str(self.log_path), *(["--once"] if once else [])]
        with open(self.log_path, "ab") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                                         bufsize=1, start_new_session=True, env=env)
        self.pid = self.proc.pid
        try:
            self.create_time = psutil.Process(self.pid).create_time()
        except psutil.Error:
            self.create_time = time.time()
        self.job: str | None = None
        self.jobs_done = 0
        self.idle_since = time.monotonic()
        self.stopping = False
        self._on_exit = on_exit
        self._send_lock = threading.Lock()
        threading.Thread(target=self._read, name=f"voicelab-{self.id}", daemon=True).start()

    @property
    def busy(self) -> bool:
        return self.job is not None

    def send(self, message: dict[str, Any]) -> bool:
        with self._send_lock:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps(message) + "\n")
                self.proc.stdin.flush()
                return True
            except (OSError, ValueError):
                return False

    def run(self, job_id: str, settings: Any) -> bool:
        self.job = job_id
        return self.send({"cmd": "run", "job": job_id, "settings": dataclasses.asdict(settings)})

    def stop(self) -> None:
        """Ask an idle worker to exit (it frees everything it holds)."""
        self.stopping = True
        if not self.send({"cmd": "exit"}):
            kill_tree(self.pid)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event.get("event") == "finished":
                self.job = None
                self.jobs_done += 1
                self.idle_since = time.monotonic()
        returncode = self.proc.wait()
        self._on_exit(self, returncode)


class WorkerPool:
    """The studio's workers and the jobs it follows; every method is called by the runner."""

    def __init__(self, ws: Workspace, store: Any, policies: dict[str, LanePolicy]) -> None:
        self.ws, self.store, self.policies = ws, store, policies
        self.workers: list[WorkerHandle] = []
        self.attached: dict[str, tuple[int, float | None]] = {}  # job id -> (pid, start time), after a restart
        self._killing: set[str] = set()  # jobs whose processes enforce_cancels is killing (it records the end)
        self._lock = threading.RLock()

    # -- starting jobs ------------------------------------------------------
    def start(self, start: Start) -> None:
        """Claim the queued job (nothing runs twice) and hand it to a worker of its lane."""
        claimed = self.store.update(start.job_id, only_if=("queued",), state="running", started=time.time(),
                                    device=start.slot, message=msg("job.starting"))
        if not claimed:
            return
        policy = self.policies[start.lane]
        with self._lock:
            worker = next((w for w in self.workers if policy.reuse and not w.busy and not w.stopping
                           and w.lane == start.lane and w.slot == start.slot), None)
            if worker is None:
                worker = WorkerHandle(self.ws, start.lane, start.slot, once=not policy.reuse, on_exit=self._exited)
                self.workers.append(worker)
            worker.job = start.job_id
        self.store.update(start.job_id, pid=worker.pid, pid_start=worker.create_time)
        if not worker.run(start.job_id, self.ws.settings):
            self._fail(start.job_id, msg("job.worker_unreachable", pid=worker.pid))

    def finishing_slots(self, running_ids: set[str]) -> set[str]:
        """Slots of reusable workers still busy with a job the store already shows as ended.

        The worker writes its job's end before it says it is idle; a job planned in between would
        start a second worker beside the warm one (a second copy of its models), so the slot waits.
        """
        with self._lock:
            return {w.slot for w in self.workers if w.busy and not w.stopping and self.policies[w.lane].reuse
                    and w.job not in running_ids}

    def _fail(self, job_id: str, message: Any) -> None:
        """``message``: a catalogue Message (see engines.core.messages) or text."""
        rec = self.store.get(job_id)
        if rec is None or not rec.active:
            return
        last = tail(rec.log_path, 12)
        error = f"{message}" + (f"\nLast log lines:\n{last}" if last else "")
        error_ref = ref_json(message, msg("job.worker_exited.hint", tail=last) if last else None) \
            if not isinstance(message, str) else ""
        if self.store.finish(job_id, "failed", message=message, error=error, error_ref=error_ref):
            log_line(rec.log_path, f"ERROR: {message}")

    def _exited(self, worker: WorkerHandle, returncode: int) -> None:
        with self._lock:
            if worker in self.workers:
                self.workers.remove(worker)
        job_id = worker.job
        if job_id is None or job_id in self._killing:
            return
        rec = self.store.get(job_id)
        if rec is None or not rec.active:
            return
        if rec.cancel_requested:
            if self.store.finish(job_id, "cancelled", message=msg("job.cancelled")):
                log_line(rec.log_path, "Cancelled: its worker process was stopped.")
        elif worker.stopping:
            self.store.finish(job_id, "interrupted", message=msg("job.interrupted_while_running"))
        else:
            self._fail(job_id, msg("job.worker_exited", pid=worker.pid, cause=known_text("death", death_cause(returncode))))

    # -- cancel, restart, idle ----------------------------------------------
    def enforce_cancels(self, running: list[Any], grace: float) -> None:
        """Kill the processes of running jobs that did not stop within ``grace`` s of a cancel."""
        now = time.time()
        for rec in running:
            if not rec.cancel_requested or now - rec.cancel_requested < grace:
                continue
            self._killing.add(rec.id)
            try:
                removed = kill_tree(rec.pid) if process_matches(rec.pid, rec.pid_start) else []
                finished = self.store.finish(rec.id, "cancelled", message=msg("job.cancelled"))
            finally:
                self._killing.discard(rec.id)
            if finished:
                log_line(rec.log_path, f"Cancelled: the job did not stop within {grace:g} s, so its processes were "
                                       "stopped. Files already completed are kept"
                                       + (f"; {len(removed)} unfinished temp file(s) removed." if removed else "."))
            self.attached.pop(rec.id, None)

    def recover(self, reattach: bool) -> tuple[int, int]:
        """After a (re)start: follow still-running workers again or stop them; returns (re-attached, interrupted)."""
        reattached = interrupted = 0
        for rec in self.store.list(["running"], limit=100000):
            alive = process_matches(rec.pid, rec.pid_start)
            if alive and reattach:
                self.attached[rec.id] = (int(rec.pid), rec.pid_start)
                log_line(rec.log_path, f"The studio restarted; following this job's worker (pid {rec.pid}) again.")
                reattached += 1
                continue
            if alive:
                kill_tree(int(rec.pid))
            self.store.finish(rec.id, "interrupted", message=msg("job.interrupted"))
            interrupted += 1
        if not reattach:  # with re-attaching, queued jobs simply run after the restart
            for rec in self.store.list(["queued"], limit=100000):
                self.store.finish(rec.id, "interrupted", message=msg("job.interrupted_before_start"))
                interrupted += 1
        return reattached, interrupted

    def watch_attached(self) -> None:
        for job_id, (pid, start) in list(self.attached.items()):
            if process_matches(pid, start):
                continue
            self.attached.pop(job_id, None)
            self._fail(job_id, f"Its worker process (pid {pid}) ended without recording a result.")

    def stop_expired(self) -> None:
        now = time.monotonic()
        with self._lock:
            for w in self.workers:
                policy = self.policies[w.lane]
                if not w.busy and not w.stopping and policy.reuse and now - w.idle_since > policy.idle_seconds:
                    w.stop()

    def stop_idle(self, lane: str | None) -> int:
        with self._lock:
            idle = [w for w in self.workers if not w.busy and not w.stopping and lane in (None, w.lane)]
        for w in idle:
            w.stop()
        return len(idle)

    def status(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            return [{"id": w.id, "lane": w.lane, "slot": w.slot, "pid": w.pid, "job": w.job or "",
                     "state": "stopping" if w.stopping else "busy" if w.busy else "idle", "jobs_done": w.jobs_done,
                     "idle_seconds": 0.0 if w.busy else round(now - w.idle_since, 1)} for w in self.workers]

    def shutdown(self) -> None:
        """Studio exit: idle workers leave, busy ones are stopped (their jobs become interrupted)."""
        with self._lock:
            workers = list(self.workers)
        for w in workers:
            w.stopping = True
            if w.busy:
                kill_tree(w.pid)
            else:
                w.stop()
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and any(w.proc.poll() is None for w in workers):
            time.sleep(0.02)
        for w in workers:
            if w.proc.poll() is None:
                kill_tree(w.pid, wait=1.0)


