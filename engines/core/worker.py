"""A worker process: runs the jobs the studio hands it, one at a time (``python -m engines.core.worker``).

The studio writes ``{"cmd": "run", "job": id, "settings": {...}}`` or ``{"cmd": "exit"}`` lines on
its stdin and reads ``{"event": "finished", ...}`` lines from its stdout; the worker keeps those two
pipes on private descriptors and points its own stdout/stderr at the running job's log, so anything a
library or a native crash prints (``faulthandler`` tracebacks included) lands in that log.

The worker writes the job's log lines, progress (never backwards), state and result itself, and
polls the job's row for a cancel request. A warm worker (listening and CPU lanes) stays for the next
job with its caches (the last voice, HuBERT, index) loaded; a training-lane worker serves one job.
When the studio goes away the worker finishes its job (a restarted studio re-attaches to it) and
exits instead of waiting for more.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import importlib
import json
import os
import queue
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Iterator

from engines.core.atomic import user_facing
from engines.core.errors import Cancelled, VoiceLabError
from engines.core.messages import Message, msg, ref_json

PROGRESS_EVERY = 0.2  # seconds between progress writes (the final one is always written)
CANCEL_POLL = 0.05  # seconds between looks at the job's cancel request


class Reporter:
    """The running job's log, progress and cancel flag, backed by its log file and its row."""

    def __init__(self, store: Any, rec: Any) -> None:
        self.store, self.job_id = store, rec.id
        self.file = open(rec.log_path, "a", encoding="utf-8", buffering=1)
        self.lock = threading.Lock()
        self.cancel_event = threading.Event()
        self.best = 0.0
        self.last_write = 0.0
        trace = os.environ.get("VOICELAB_PROGRESS_TRACE")
        self.trace = open(trace, "a", encoding="utf-8", buffering=1) if trace else None
        self.op = rec.op
        self._done = threading.Event()
        threading.Thread(target=self._watch_cancel, daemon=True).start()

    def _watch_cancel(self) -> None:
        while not self._done.wait(CANCEL_POLL):
            try:
                rec = self.store.get(self.job_id)
            except Exception:  # noqa: BLE001 - a locked database: look again
                continue
            if rec is None or rec.cancel_requested or rec.state != "running":
                self.cancel_event.set()
                return

    def log(self, line: str) -> None:
        with self.lock:
            self.file.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    def progress(self, fraction: float, message: "str | Message") -> None:
        if self.trace is not None:
            self.trace.write(json.dumps({"job": self.job_id, "op": self.op, "fraction": fraction}) + "\n")
        with self.lock:
            fraction = max(fraction, self.best)  # stages map to sub-ranges; a stray report never goes back
            self.best = fraction
            now = time.monotonic()
            if now - self.last_write < PROGRESS_EVERY and fraction < 1.0:
                return
            self.last_write = now
        self.store.update(self.job_id, only_if=("running",), progress=fraction, message=message)

    def close(self) -> None:
        self._done.set()
        self.file.close()
        if self.trace is not None:
            self.trace.close()


@contextlib.contextmanager
def output_to(path: str) -> Iterator[None]:
    """Point this process's stdout/stderr (file descriptors 1 and 2) at ``path`` for the block."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def gpu_trouble(exc: BaseException, params: dict[str, Any]) -> tuple[Message, Message] | None:
    """(message, hint) when ``exc`` is a CUDA out-of-memory or CUDA error; None otherwise."""
    text = f"{type(exc).__name__}: {exc}"
    low = text.lower()
    if "out of memory" in low and ("cuda" in low or "outofmemoryerror" in low):
        batch = params.get("batch_size")
        if isinstance(batch, int) and batch > 1:
            hint = msg("gpu.oom.hint_batch", smaller=max(1, batch // 2), batch=batch)
        elif isinstance(batch, int):
            hint = msg("gpu.oom.hint_batch_one")
        else:
            hint = msg("gpu.oom.hint_free")
        return msg("gpu.oom"), hint
    if "cuda error" in low or "cudnn_status" in low or "nccl error" in low:
        return msg("gpu.error", detail=str(exc).strip().splitlines()[0][:300]), msg("gpu.error.hint")
    return None


def _peak_memory(device: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    out["peak_rss_mb"] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    torch = sys.modules.get("torch")
    if torch is not None and device.startswith("cuda") and torch.cuda.is_initialized():
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        out["peak_gpu_reserved_mb"] = round(torch.cuda.max_memory_reserved(device) / 2**20, 1)
    return out


def _release_cached_gpu_memory() -> None:
    """Between jobs a warm worker keeps its models but hands cached activation memory back to the GPU
    (a training on the same GPU may need it)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def run_job(store: Any, root: Path, job_id: str, settings: dict[str, Any], lane: str, worker_id: str,
            jobs_done: int) -> tuple[str, bool]:
    """Run one job to its end; returns (final state, whether this worker should exit afterwards)."""
    import dataclasses

    from engines.core.hooks import Hooks
    from engines.core.jobs import queue_job
    from engines.core.ops import OPERATIONS, get_operation
    from engines.core.params import build
    from engines.core.settings import Settings, Workspace

    rec = store.get(job_id)
    if rec is None or rec.state != "running":
        return "skipped", False
    names = {f.name for f in dataclasses.fields(Settings)}
    ws = Workspace(root=root, settings=Settings(**{k: v for k, v in settings.items() if k in names}))
    rep = Reporter(store, rec)
    exit_after = False
    state = "failed"
    with output_to(rec.log_path):
        try:
            device, why = ws.settings.device, ""
            if lane == "listening":
                from engines.core.device import listening_device

                device, why = listening_device(ws.settings.device, ws.settings.listen_gpu_mb)
                ws.settings.device = device
            torch = sys.modules.get("torch")
            if torch is not None and str(device).startswith("cuda") and torch.cuda.is_initialized():
                torch.cuda.reset_peak_memory_stats(device)
            warm = jobs_done > 0
            store.update(job_id, worker={"id": worker_id, "device": device, "device_note": why, "warm": warm})
            if rec.op not in OPERATIONS and rec.module:
                importlib.import_module(rec.module)  # an operation outside the entry points (tests)
            op = get_operation(rec.op)
            rep.log(f"Job {job_id}: {op.title} ({op.name}) in the {lane} lane, worker {worker_id} (pid {os.getpid()}, "
                    f"{'warm' if warm else 'new'}), device {device}" + (f" ({why})" if why else ""))
            rep.log("Parameters: " + json.dumps(rec.params, ensure_ascii=False))
            store.update(job_id, only_if=("running",), message=msg("job.running"))

            def submit(op_name: str, params: dict, title: str = "") -> str:
                return queue_job(store, ws, op_name, params, title, parent=job_id)

            hooks = Hooks(rep.progress, rep.log, rep.cancel_event, submit)
            params = build(op.params, rec.params)
            hooks.check_cancel()
            result = op.fn(params, hooks, ws) or {}
            rep.log("Done." + (f" {result.get('summary')}" if result.get("summary") else ""))
            state = "done"
            # an op may add "summary_message" (a Message): the same summary, shown in the viewer's language
            summary = result.pop("summary_message", None) or result.get("summary") or msg("job.done")
            store.finish(job_id, "done", progress=1.0, message=summary, result=result)
        except Cancelled:
            rep.log(str(msg("job.cancelled_log")))
            state = "cancelled"
            store.finish(job_id, "cancelled", message=msg("job.cancelled"))
        except BaseException as exc:  # noqa: BLE001 - a user error, a bug, the environment: report it, keep serving
            if isinstance(exc, Exception):
                exc = user_facing(exc, ws.root)  # a full disk, wherever it struck, is the user's to fix: say so
            known = isinstance(exc, VoiceLabError)
            rep.log(f"ERROR: {exc}" if known else "ERROR (unexpected): " + "".join(traceback.format_exception(exc)))
            trouble = gpu_trouble(exc, rec.params)
            if trouble is not None:  # (also when a training rank's error came back as a VoiceLabError)
                message, hint = trouble
                error, error_ref = f"{message} {hint}" + (f"\n{exc}" if known else ""), ref_json(message, hint)
                exit_after = True  # a CUDA context after an error is not to be trusted: start afresh
            elif known:
                message, error, error_ref = exc.message_ref or exc.message, str(exc), exc.ref()
            else:
                kind = type(exc).__name__
                message = msg("job.unexpected_short", kind=kind)
                failure = msg("job.unexpected", kind=kind, detail=str(exc)[:1000])
                error, error_ref = str(failure), ref_json(failure, msg("job.unexpected.hint"))
            store.finish(job_id, "failed", error=error, error_ref=error_ref, message=message)
            if not isinstance(exc, Exception):
                exit_after = True
        finally:
            try:
                info = store.get(job_id)
                stats = dict(info.worker or {}) if info else {}
                stats.update(_peak_memory(str(ws.settings.device)))
                store.update(job_id, worker=stats)
            except Exception:  # noqa: BLE001 - statistics are optional
                pass
            _release_cached_gpu_memory()
            rep.close()
    return state, exit_after


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engines.core.worker")
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--lane", required=True)
    ap.add_argument("--worker-id", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--once", action="store_true", help="Exit after one job")
    args = ap.parse_args(argv)

    control_in = os.fdopen(os.dup(0), "r", encoding="utf-8")
    control_out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    log_fd = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    for entry in reversed(os.environ.pop("VOICELAB_WORKER_SYS_PATH", "").split(os.pathsep)):
        if entry and entry not in sys.path:
            sys.path.insert(1, entry)
    faulthandler.enable()  # a native crash prints its Python stack to fd 2: the running job's log

    from engines.core.jobs import JobStore
    from engines.core.ops import load_operations
    from engines.core.settings import Workspace

    commands: "queue.Queue[dict | None]" = queue.Queue()

    def read_commands() -> None:
        for line in control_in:
            try:
                commands.put(json.loads(line))
            except json.JSONDecodeError:
                continue
        commands.put(None)  # the studio went away

    threading.Thread(target=read_commands, daemon=True).start()
    root = Workspace(root=Path(args.workspace)).root
    store = JobStore(root / "jobs.sqlite")
    load_operations()

    def tell(event: dict[str, Any]) -> None:
        try:
            control_out.write(json.dumps(event) + "\n")
        except (OSError, ValueError):
            pass  # the studio went away; the job's row already says everything

    tell({"event": "ready", "pid": os.getpid()})
    jobs_done = 0
    while True:
        cmd = commands.get()
        if cmd is None or cmd.get("cmd") != "run":
            break
        state, exit_after = run_job(store, root, str(cmd["job"]), cmd.get("settings") or {}, args.lane,
                                    args.worker_id, jobs_done)
        jobs_done += 1
        tell({"event": "finished", "job": cmd["job"], "state": state})
        if args.once or exit_after:
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
