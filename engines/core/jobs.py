"""Background jobs: every long operation runs in a worker process, in its lane, with a log, progress and cancel.

Operations come from the registry in ``engines.core.ops``. ``JobRunner.submit`` records a job in
``<workspace>/jobs.sqlite`` (the queue is that table, so a worker can queue follow-up jobs too, e.g.
previews at a training save). The runner's scheduler starts queued jobs by the rules of
``engines.core.lanes`` on worker processes (``engines.core.worker``): the studio process holds the
queue, the state and the UI and never loads a network itself.

A worker writes its job's log (``<workspace>/jobs/<id>.log``), progress, state and result itself, so a
page, another browser tab or a restarted studio sees them; its pid and start time are recorded, so
after a restart a still running worker is re-attached (or stopped and marked ``interrupted``) and
nothing runs twice. Cancel records the request (the worker stops cooperatively: engine loops check
it, ``hooks.run`` kills subprocess groups); a job still running after ``CANCEL_GRACE`` seconds has its
whole process tree killed, so every job reaches ``cancelled`` within about a second. A worker that dies
(a signal, the out-of-memory killer, a crash in native code) marks its job ``failed`` with the cause
and the last log lines; the studio keeps serving.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import sqlite3
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from engines.core.errors import InvalidInputError
from engines.core.lanes import lane_policies, plan_starts
from engines.core.messages import Message, msg, ref_json, render, render_ref
from engines.core.ops import get_operation, load_operations
from engines.core.params import build, to_dict
from engines.core.settings import Workspace
from engines.core.workers import WorkerPool, log_line, tail

STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
FINAL_STATES = ("done", "failed", "cancelled", "interrupted")
CANCEL_GRACE = 0.8  # seconds a running job has to stop by itself before its processes are killed
TICK = 0.1  # scheduler period (seconds); a submit or a cancel wakes it at once


@dataclass
class JobRecord:
    id: str
    op: str
    title: str
    kind: str  # the lane: training | listening | cpu
    state: str
    params: dict
    created: float
    started: float | None
    finished: float | None
    progress: float
    message: str
    result: dict | None
    error: str
    log_path: str
    module: str = ""  # where the operation is defined (the worker imports it)
    parent: str = ""  # the job that queued this one (previews of a training save)
    device: str = ""  # the lane slot it runs under (cuda:0, cpu, *)
    pid: int | None = None  # its worker process
    pid_start: float | None = None  # the worker's start time (tells a live worker from a reused pid)
    worker: dict | None = None  # what the worker reports: device used and why, peak memory, warm or not
    cancel_requested: float | None = None
    # JSON of the catalogue message (id + params) behind ``message``/``error``, '' for plain text:
    # a page renders them in its viewer's language, the CLI in LANG's (see engines.core.messages).
    message_ref: str = ""
    error_ref: str = ""
    title_ref: str = ""  # the same for a title given as a catalogue Message

    def title_in(self, lang: str = "en") -> str:
        return render_ref(self.title_ref, lang, self.title)[0]

    def message_in(self, lang: str = "en") -> str:
        """The progress/state message in ``lang`` (the stored text when it has no catalogue id)."""
        return render_ref(self.message_ref, lang, self.message)[0]

    def error_in(self, lang: str = "en") -> tuple[str, str]:
        """(error, hint) in ``lang``; for a plain-text error, (the stored text, '')."""
        return render_ref(self.error_ref, lang, self.error)

    def state_in(self, lang: str = "en") -> str:
        return render(f"state.{self.state}", {}, lang)

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")

    @property
    def lane(self) -> str:
        return self.kind

    @property
    def duration(self) -> float | None:
        if self.started is None:
            return None
        return (self.finished or time.time()) - self.started


_COLUMNS = [f.name for f in dataclasses.fields(JobRecord)]
_JSON_COLUMNS = ("params", "result", "worker")
_SQL_TYPES = {"float | None": "REAL", "float": "REAL", "int | None": "INTEGER"}


class JobStore:
    """The jobs table in sqlite; safe from several threads and processes (WAL)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(
            """CREATE TABLE IF NOT EXISTS jobs (
                id TEXT PRIMARY KEY, op TEXT, title TEXT, kind TEXT, state TEXT, params TEXT,
                created REAL, started REAL, finished REAL, progress REAL, message TEXT,
                result TEXT, error TEXT, log_path TEXT)"""
        )
        have = {row[1] for row in self._conn.execute("PRAGMA table_info(jobs)")}
        for f in dataclasses.fields(JobRecord):  # a workspace from an older version gets the new columns
            if f.name not in have:
                self._conn.execute(f"ALTER TABLE jobs ADD COLUMN {f.name} {_SQL_TYPES.get(str(f.type), 'TEXT')}")
        self._conn.execute("CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state)")
        self._conn.commit()

    @staticmethod
    def _encode(fields: dict[str, Any]) -> dict[str, Any]:
        if "message" in fields:  # a catalogue Message: its English text plus its ref; plain text clears the ref
            fields = {**fields, **message_columns(fields["message"])}
        return {k: (json.dumps(v) if k in _JSON_COLUMNS and v is not None else v) for k, v in fields.items()}

    def insert(self, rec: JobRecord) -> None:
        row = self._encode(dataclasses.asdict(rec))
        with self._lock:
            self._conn.execute(
                f"INSERT INTO jobs ({','.join(_COLUMNS)}) VALUES ({','.join('?' * len(_COLUMNS))})",
                [row[c] for c in _COLUMNS],
            )
            self._conn.commit()

    def update(self, job_id: str, *, only_if: Iterable[str] | None = None, **fields: Any) -> bool:
        """Set ``fields``; with ``only_if``, only while the job is in one of those states. True if it changed."""
        fields = self._encode(fields)
        sql = f"UPDATE jobs SET {','.join(f'{k}=?' for k in fields)} WHERE id=?"
        args = [*fields.values(), job_id]
        if only_if is not None:
            states = list(only_if)
            sql += f" AND state IN ({','.join('?' * len(states))})"
            args += states
        with self._lock:
            cur = self._conn.execute(sql, args)
            self._conn.commit()
            return cur.rowcount > 0

    def finish(self, job_id: str, state: str, **fields: Any) -> bool:
        """Move an active job to a final state (a job that already ended keeps its state)."""
        return self.update(job_id, only_if=("queued", "running"), state=state,
                           finished=fields.pop("finished", time.time()), **fields)

    def _record(self, row: tuple) -> JobRecord:
        d = dict(zip(_COLUMNS, row))
        for k in _JSON_COLUMNS:
            d[k] = json.loads(d[k]) if d[k] else ({} if k == "params" else None)
        for k in ("module", "parent", "device", "error", "message", "message_ref", "error_ref", "title_ref"):
            d[k] = d[k] or ""
        return JobRecord(**d)

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {','.join(_COLUMNS)} FROM jobs WHERE id=?", (job_id,)).fetchone()
        return self._record(row) if row else None

    def list(self, states: Iterable[str] | None = None, op_prefix: str = "", limit: int = 200,
             oldest_first: bool = False) -> list[JobRecord]:
        sql = f"SELECT {','.join(_COLUMNS)} FROM jobs WHERE 1=1"
        args: list[Any] = []
        states = list(states or [])
        if states:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            args += states
        if op_prefix:
            sql += " AND op LIKE ?"
            args.append(op_prefix + "%")
        sql += f" ORDER BY created {'ASC' if oldest_first else 'DESC'}, rowid {'ASC' if oldest_first else 'DESC'} LIMIT ?"
        args.append(int(limit))
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [self._record(r) for r in rows]


def queue_job(store: JobStore, ws: Workspace, op_name: str, params: dict | Any | None = None, title: str = "",
              parent: str = "") -> str:
    """Validate ``params`` for ``op_name`` and add a queued job; returns its id (any process may call this)."""
    op = get_operation(op_name)
    if op.kind == "inline":
        raise InvalidInputError(msg("job.not_a_job", op=op_name))
    obj = params if dataclasses.is_dataclass(params) else build(op.params, dict(params or {}))
    job_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    log_path = ws.jobs_dir / f"{job_id}.log"
    log_path.touch()
    store.insert(JobRecord(
        id=job_id, op=op_name, title=str(title or op.title), kind=op.kind, state="queued", params=to_dict(obj),
        title_ref=ref_json(title) if isinstance(title, Message) else "",
        created=time.time(), started=None, finished=None, progress=0.0, message="Queued", result=None, error="",
        log_path=str(log_path), module=op.module, parent=parent, message_ref=ref_json(msg("job.queued")),
    ))
    return job_id


_RUNNERS: "weakref.WeakSet[JobRunner]" = weakref.WeakSet()


class JobRunner:
    """Runs operations as background jobs for one workspace, in lanes, on worker processes."""

    def __init__(self, ws: Workspace, light_workers: int | None = None, reattach: bool | None = None) -> None:
        self.ws = ws
        ws.ensure()
        load_operations()
        self.store = JobStore(ws.jobs_db)
        self.cpu_slots = light_workers if light_workers is not None else max(1, ws.settings.light_workers)
        self.pool = WorkerPool(ws, self.store, lane_policies(ws.settings))
        self._wake = threading.Event()
        self._closed = False
        reattach = ws.settings.reattach_jobs if reattach is None else reattach
        self.reattached_at_start, self.interrupted_at_start = self.pool.recover(reattach)
        self._thread = threading.Thread(target=self._schedule, name="voicelab-scheduler", daemon=True)
        self._thread.start()
        _RUNNERS.add(self)

    # -- public API ---------------------------------------------------------
    def submit(self, op_name: str, params: dict | Any | None = None, title: str = "", parent: str = "") -> str:
        """Validate ``params`` for ``op_name``, queue the job in its lane and return its id."""
        job_id = queue_job(self.store, self.ws, op_name, params, title, parent)
        self._wake.set()
        return job_id

    def cancel(self, job_id: str) -> bool:
        """Ask a job to stop. Queued jobs are cancelled at once; running ones within about a second."""
        rec = self.store.get(job_id)
        if rec is None or not rec.active:
            return False
        if rec.state == "queued" and self.store.update(job_id, only_if=("queued",), state="cancelled",
                                                       finished=time.time(),
                                                       message=msg("job.cancelled_before_start")):
            return True
        if self.store.update(job_id, only_if=("running",), cancel_requested=time.time()):
            log_line(rec.log_path, "Cancel requested.")
            self._wake.set()
        return True

    def get(self, job_id: str) -> JobRecord | None:
        return self.store.get(job_id)

    def list(self, states: Iterable[str] | None = None, op_prefix: str = "", limit: int = 200) -> list[JobRecord]:
        return self.store.list(states, op_prefix, limit)

    def active_job(self) -> JobRecord | None:
        """The running job a page follows when it follows none (the newest training, else the newest)."""
        running = self.store.list(["running"], limit=20)
        return next((r for r in running if r.kind == "training"), running[0] if running else None)

    def read_log(self, job_id: str, tail_lines: int | None = None) -> str:
        rec = self.store.get(job_id)
        if rec is None:
            return ""
        if tail_lines:
            return tail(rec.log_path, tail_lines)
        try:
            return Path(rec.log_path).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def wait(self, job_id: str, timeout: float = 60.0) -> JobRecord:
        """Block until the job reaches a final state (for scripts, tests and the synchronous API)."""
        deadline = time.monotonic() + timeout
        while True:
            rec = self.store.get(job_id)
            if rec is None or rec.state in FINAL_STATES:
                return rec  # type: ignore[return-value]
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {rec.state} after {timeout}s")
            time.sleep(0.02)

    def workers(self) -> list[dict[str, Any]]:
        """The worker processes: lane, device, pid, busy with which job, idle for how long."""
        return self.pool.status()

    def free_workers(self, lane: str | None = "listening") -> int:
        """Stop idle workers (of one lane, or all): frees the memory their warm models hold."""
        return self.pool.stop_idle(lane)

    def close(self) -> None:
        """Stop the scheduler and every worker: jobs still running or queued are marked interrupted.

        (This is the studio's clean stop. After a crash nothing closes the runner: the workers go on and
        the next start follows them and runs what was queued.)
        """
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=2)
        self.pool.shutdown()
        for rec in self.store.list(["queued"], limit=100000):
            self.store.finish(rec.id, "interrupted", message=msg("job.interrupted_before_start"))

    # -- the scheduler ------------------------------------------------------
    def _schedule(self) -> None:
        while not self._closed:
            try:
                self._tick()
            except Exception:  # the scheduler must survive anything (a locked db, a bug)
                import traceback

                traceback.print_exc()
            self._wake.wait(TICK)
            self._wake.clear()

    def _tick(self) -> None:
        running = self.store.list(["running"], limit=1000)
        self.pool.enforce_cancels(running, CANCEL_GRACE)
        self.pool.watch_attached()
        self.pool.stop_expired()
        queued = self.store.list(["queued"], limit=1000, oldest_first=True)
        if not queued:
            return
        finishing = self.pool.finishing_slots({r.id for r in running})
        for start in plan_starts(queued, running, self.ws.settings, self.cpu_slots, finishing):
            self.pool.start(start)


def message_columns(message: "str | Message") -> dict[str, str]:
    """The ``message``/``message_ref`` columns for a progress or state message (text or catalogue Message)."""
    if isinstance(message, Message):
        return {"message": str(message)[:500], "message_ref": ref_json(message)}
    return {"message": str(message)[:500], "message_ref": ""}


def error_columns(exc: Exception) -> dict[str, str]:
    """The ``error``/``error_ref`` columns for a failed job's error."""
    from engines.core.errors import VoiceLabError

    if isinstance(exc, VoiceLabError):
        return {"error": str(exc), "error_ref": exc.ref()}
    return {"error": str(exc), "error_ref": ""}


def close_all_runners() -> None:
    """Close every runner of this process (at exit, and after each test)."""
    for runner in list(_RUNNERS):
        runner.close()


atexit.register(close_all_runners)
