"""Background jobs: every long operation runs here, with a log, progress and cancel.

Operations come from the registry in ``engines.core.ops``. ``JobRunner.submit``
records a job in ``<workspace>/jobs.sqlite`` and runs it on a worker thread:
GPU-heavy jobs one at a time in submission order, light jobs alongside on a
small pool. The log goes to ``<workspace>/jobs/<id>.log`` line by line (so a
page can tail it), progress and state to sqlite (so a reload, another
browser tab or a restart still sees them). Cancel sets the job's event:
engine loops check it, and ``hooks.run`` kills subprocess groups within ~1 s.
"""

from __future__ import annotations

import dataclasses
import json
import queue
import sqlite3
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from engines.core.atomic import user_facing
from engines.core.errors import Cancelled, InvalidInputError, VoiceLabError
from engines.core.hooks import Hooks
from engines.core.messages import Message, msg, ref_json, render, render_ref
from engines.core.ops import OPERATIONS, get_operation, load_operations
from engines.core.params import build, to_dict
from engines.core.settings import Workspace

STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
FINAL_STATES = ("done", "failed", "cancelled", "interrupted")


@dataclass
class JobRecord:
    id: str
    op: str
    title: str
    kind: str
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
    # JSON of the catalogue message (id + params) behind ``message``/``error``, '' for plain text:
    # a page renders them in its viewer's language, the CLI in LANG's (see engines.core.messages).
    message_ref: str = ""
    error_ref: str = ""

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
    def duration(self) -> float | None:
        if self.started is None:
            return None
        return (self.finished or time.time()) - self.started


_COLUMNS = [f.name for f in dataclasses.fields(JobRecord)]


class JobStore:
    """The jobs table in sqlite; safe to use from several threads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(
            """CREATE TABLE IF NOT EXISTS jobs (
                id TEXT PRIMARY KEY, op TEXT, title TEXT, kind TEXT, state TEXT, params TEXT,
                created REAL, started REAL, finished REAL, progress REAL, message TEXT,
                result TEXT, error TEXT, log_path TEXT, message_ref TEXT, error_ref TEXT)"""
        )
        have = {r[1] for r in self._conn.execute("PRAGMA table_info(jobs)")}
        for col in ("message_ref", "error_ref"):  # a jobs.sqlite from before the message catalogue
            if col not in have:
                self._conn.execute(f"ALTER TABLE jobs ADD COLUMN {col} TEXT DEFAULT ''")
        self._conn.commit()

    def insert(self, rec: JobRecord) -> None:
        row = dataclasses.asdict(rec)
        row["params"] = json.dumps(rec.params)
        row["result"] = json.dumps(rec.result) if rec.result is not None else None
        with self._lock:
            self._conn.execute(
                f"INSERT INTO jobs ({','.join(_COLUMNS)}) VALUES ({','.join('?' * len(_COLUMNS))})",
                [row[c] for c in _COLUMNS],
            )
            self._conn.commit()

    def update(self, job_id: str, **fields: Any) -> None:
        if "result" in fields and fields["result"] is not None:
            fields["result"] = json.dumps(fields["result"])
        sets = ",".join(f"{k}=?" for k in fields)
        with self._lock:
            self._conn.execute(f"UPDATE jobs SET {sets} WHERE id=?", [*fields.values(), job_id])
            self._conn.commit()

    def _record(self, row: tuple) -> JobRecord:
        d = dict(zip(_COLUMNS, row))
        d["params"] = json.loads(d["params"] or "{}")
        d["result"] = json.loads(d["result"]) if d["result"] else None
        d["message_ref"] = d["message_ref"] or ""
        d["error_ref"] = d["error_ref"] or ""
        return JobRecord(**d)

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {','.join(_COLUMNS)} FROM jobs WHERE id=?", (job_id,)).fetchone()
        return self._record(row) if row else None

    def list(self, states: Iterable[str] | None = None, op_prefix: str = "", limit: int = 200) -> list[JobRecord]:
        sql = f"SELECT {','.join(_COLUMNS)} FROM jobs WHERE 1=1"
        args: list[Any] = []
        states = list(states or [])
        if states:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            args += states
        if op_prefix:
            sql += " AND op LIKE ?"
            args.append(op_prefix + "%")
        sql += " ORDER BY created DESC LIMIT ?"
        args.append(int(limit))
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [self._record(r) for r in rows]

    def mark_interrupted(self) -> int:
        """After a restart: jobs that were queued or running did not finish."""
        m = msg("job.interrupted")
        with self._lock:
            cur = self._conn.execute(
                "UPDATE jobs SET state='interrupted', finished=?, message=?, message_ref=? "
                "WHERE state IN ('queued','running')",
                (time.time(), str(m), ref_json(m)),
            )
            self._conn.commit()
            return cur.rowcount


class JobRunner:
    """Runs operations as background jobs for one workspace."""

    def __init__(self, ws: Workspace, light_workers: int | None = None) -> None:
        self.ws = ws
        ws.ensure()
        self.store = JobStore(ws.jobs_db)
        self.interrupted_at_start = self.store.mark_interrupted()
        self._events: dict[str, threading.Event] = {}
        self._gpu_queue: "queue.Queue[str]" = queue.Queue()
        self._light_queue: "queue.Queue[str]" = queue.Queue()
        self._threads: list[threading.Thread] = []
        n_light = light_workers if light_workers is not None else max(1, ws.settings.light_workers)
        for name, q, n in (("gpu", self._gpu_queue, 1), ("light", self._light_queue, n_light)):
            for i in range(n):
                t = threading.Thread(target=self._worker, args=(q,), name=f"voicelab-{name}-{i}", daemon=True)
                t.start()
                self._threads.append(t)
        load_operations()

    # -- public API ---------------------------------------------------------
    def submit(self, op_name: str, params: dict | Any | None = None, title: str = "") -> str:
        """Validate ``params`` for ``op_name``, queue the job and return its id."""
        op = get_operation(op_name)
        if op.kind == "inline":
            raise InvalidInputError(msg("job.not_a_job", op=op_name))
        if params is None:
            params = {}
        obj = params if dataclasses.is_dataclass(params) else build(op.params, dict(params))
        job_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        log_path = self.ws.jobs_dir / f"{job_id}.log"
        log_path.touch()
        rec = JobRecord(
            id=job_id, op=op_name, title=title or op.title, kind=op.kind, state="queued",
            params=to_dict(obj), created=time.time(), started=None, finished=None, progress=0.0,
            message="Queued", result=None, error="", log_path=str(log_path),
            message_ref=ref_json(msg("job.queued")),
        )
        self.store.insert(rec)
        self._events[job_id] = threading.Event()
        (self._gpu_queue if op.kind == "gpu" else self._light_queue).put(job_id)
        return job_id

    def cancel(self, job_id: str) -> bool:
        """Ask a job to stop. Queued jobs are cancelled at once; running ones within ~1-2 s."""
        rec = self.store.get(job_id)
        if rec is None or not rec.active:
            return False
        event = self._events.get(job_id)
        if event is not None:
            event.set()
        if rec.state == "queued":
            self.store.update(job_id, state="cancelled", finished=time.time(), **_message(msg("job.cancelled_before_start")))
        return True

    def get(self, job_id: str) -> JobRecord | None:
        return self.store.get(job_id)

    def list(self, states: Iterable[str] | None = None, op_prefix: str = "", limit: int = 200) -> list[JobRecord]:
        return self.store.list(states, op_prefix, limit)

    def active_job(self) -> JobRecord | None:
        running = self.store.list(["running"], limit=1)
        return running[0] if running else None

    def read_log(self, job_id: str, tail_lines: int | None = None) -> str:
        rec = self.store.get(job_id)
        if rec is None:
            return ""
        try:
            text = Path(rec.log_path).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        if tail_lines:
            text = "\n".join(text.splitlines()[-tail_lines:])
        return text

    def wait(self, job_id: str, timeout: float = 60.0) -> JobRecord:
        """Block until the job reaches a final state (for scripts and tests)."""
        deadline = time.monotonic() + timeout
        while True:
            rec = self.store.get(job_id)
            if rec is None or rec.state in FINAL_STATES:
                return rec  # type: ignore[return-value]
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {rec.state} after {timeout}s")
            time.sleep(0.05)

    # -- worker -------------------------------------------------------------
    def _worker(self, q: "queue.Queue[str]") -> None:
        while True:
            job_id = q.get()
            try:
                self._run(job_id)
            except Exception:  # the worker must survive anything
                traceback.print_exc()

    def _run(self, job_id: str) -> None:
        rec = self.store.get(job_id)
        if rec is None or rec.state != "queued":
            return
        op = OPERATIONS[rec.op]
        event = self._events.setdefault(job_id, threading.Event())
        log_file = open(rec.log_path, "a", encoding="utf-8", buffering=1)
        log_lock = threading.Lock()
        last_progress = [0.0]

        def log(line: str) -> None:
            with log_lock:
                log_file.write(f"{time.strftime('%H:%M:%S')} {line}\n")

        def progress(fraction: float, message: "str | Message") -> None:
            now = time.monotonic()
            if now - last_progress[0] >= 0.2 or fraction >= 1.0:
                last_progress[0] = now
                self.store.update(job_id, progress=fraction, **_message(message))

        hooks = Hooks(progress, log, event)
        self.store.update(job_id, state="running", started=time.time(), **_message(msg("job.running")))
        log(f"Job {job_id}: {op.title} ({op.name})")
        log("Parameters: " + json.dumps(rec.params, ensure_ascii=False))
        try:
            params = build(op.params, rec.params)
            hooks.check_cancel()
            try:
                result = op.fn(params, hooks, self.ws) or {}
            except Exception as exc:  # a full disk or a GPU out of memory, wherever it struck, is the user's to fix
                friendly = known_failure(exc) or user_facing(exc, self.ws.root)
                if friendly is exc:
                    raise
                raise friendly from exc
            log("Done." + (f" {result.get('summary')}" if result.get("summary") else ""))
            # an op may add "summary_message" (a Message): the same summary, shown in the viewer's language
            summary = result.pop("summary_message", None) or result.get("summary") or msg("job.done")
            self.store.update(job_id, state="done", finished=time.time(), progress=1.0, result=result,
                              **_message(summary))
        except Cancelled:
            log(str(msg("job.cancelled_log")))
            self.store.update(job_id, state="cancelled", finished=time.time(), **_message(msg("job.cancelled")))
        except VoiceLabError as exc:
            log(f"ERROR: {exc}")
            self.store.update(job_id, state="failed", finished=time.time(), error=str(exc), error_ref=exc.ref(),
                              **_message(exc.message_ref or exc.message))
        except Exception as exc:  # a bug or an environment problem: keep serving
            log("ERROR (unexpected): " + "".join(traceback.format_exception(exc)))
            err = VoiceLabError(msg("job.unexpected", kind=type(exc).__name__, detail=str(exc)[:1000]))
            self.store.update(job_id, state="failed", finished=time.time(), error=err.message, error_ref=err.ref(),
                              **_message(msg("job.unexpected_short", kind=type(exc).__name__)))
        finally:
            log_file.close()
            self._events.pop(job_id, None)


def _message(message: "str | Message") -> dict:
    """The ``message``/``message_ref`` columns for a progress or state message."""
    if isinstance(message, Message):
        return {"message": str(message)[:500], "message_ref": ref_json(message)}
    return {"message": str(message)[:500], "message_ref": ""}


def known_failure(exc: BaseException) -> VoiceLabError | None:
    """A VoiceLabError for failures with one well-known fix (GPU out of memory, a worker killed), else None."""
    name = type(exc).__name__
    text = str(exc)
    if name == "OutOfMemoryError" or "CUDA out of memory" in text or "CUDA error: out of memory" in text:
        return VoiceLabError(msg("cuda.oom"))
    if name == "BrokenProcessPool":
        return VoiceLabError(msg("job.pool_died"))
    return None
