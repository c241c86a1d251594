"""Long-lived CosyVoice synthesis workers: one process of ours per loaded model dir.

Upstream CosyVoice is never imported into the studio. ``ensure_worker``
starts ``engines.cosyvoice.worker_main`` for a model dir (upstream's
environment, see ``upstream.upstream_env``), which loads ``AutoModel`` once
and then serves requests; ``run_request`` sends one request and streams its
progress and upstream's log into the caller's hooks; cancel asks the
worker to stop between chunks (and stops the process when it does not
answer). ``stop_worker`` ends a worker and frees its memory (GPU memory
too); ``worker_status`` lists them. A worker that dies is reported with the
last lines of its log, and the next request starts a fresh one.

The API is process-local and thread-safe: each worker serves one request
at a time; requests for different model dirs run in their own workers.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.core.errors import Cancelled, VoiceLabError
from engines.core.hooks import Hooks, ensure_hooks, kill_process_group
from engines.core.messages import msg
from engines.cosyvoice import upstream

LOAD_TIMEOUT_S = 900.0  # a real CosyVoice model loads in 10-60 s; the first CUDA init can take longer
CANCEL_GRACE_S = 20.0  # how long a cancelled request may take to stop before the worker is stopped
MAX_WORKERS = 2  # idle workers beyond this many are stopped, least recently used first
LOG_TAIL = 30
MODEL_FILES = ("cosyvoice.yaml", "cosyvoice2.yaml", "cosyvoice3.yaml", "llm.pt", "flow.pt", "hift.pt", "spk2info.pt")


def model_key(model_dir: Path) -> tuple:
    """What a loaded model depends on: its files' modification times (a changed file means reload)."""
    stamps = []
    for name in MODEL_FILES:
        p = model_dir / name
        stamps.append(p.stat().st_mtime_ns if p.exists() else None)
    return tuple(stamps)


@dataclass
class SynthWorker:
    """One worker process for one model dir (see the module docstring)."""

    model_dir: Path
    checkout: Path
    device: str = "auto"
    state: str = "stopped"  # starting | ready | busy | stopped | crashed
    error: str = ""
    pid: int | None = None
    info: dict = field(default_factory=dict)
    key: tuple = ()
    started: float = 0.0
    last_used: float = 0.0
    _proc: subprocess.Popen | None = None
    _events: "queue.Queue[dict | None]" = field(default_factory=queue.Queue)
    _tail: collections.deque = field(default_factory=lambda: collections.deque(maxlen=LOG_TAIL))
    _log: Any = None
    _busy: threading.Lock = field(default_factory=threading.Lock)

    # -- process ---------------------------------------------------------------------------
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, hooks: Hooks) -> None:
        """Start the process and wait until the model is loaded (raises with upstream's reason)."""
        env = upstream.upstream_env(self.checkout)
        if self.device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""
        elif self.device.startswith("cuda:"):
            env["CUDA_VISIBLE_DEVICES"] = self.device.split(":", 1)[1]
        self._events = queue.Queue()
        self._tail.clear()
        self.key, self.state, self.error, self.info = model_key(self.model_dir), "starting", "", {}
        self._log = hooks.log
        self._proc = subprocess.Popen([sys.executable, "-m", "engines.cosyvoice.worker_main", str(self.model_dir)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, bufsize=1, env=env, cwd=str(self.model_dir),
                                      start_new_session=True, errors="replace")
        self.pid, self.started = self._proc.pid, time.time()
        threading.Thread(target=self._read_events, daemon=True, name="voicelab-cosy-events").start()
        threading.Thread(target=self._read_log, daemon=True, name="voicelab-cosy-log").start()
        hooks.progress(0.0, msg("progress.cv_loading_worker", name=self.model_dir.name, pid=self.pid))
        event = self._next_event(hooks, LOAD_TIMEOUT_S, loading=True)
        if event.get("event") != "ready":
            self.stop()
            raise self._failure(event, "loading")
        self.info, self.state = event, "ready"
        hooks.log(f"CosyVoice worker {self.pid} loaded {self.model_dir} in {event.get('seconds', 0):.1f} s")

    def _read_events(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                self._events.put(json.loads(line))
            except ValueError:
                self._line(line.rstrip("\n"))
        self._events.put(None)

    def _read_log(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self._line(line.rstrip("\n"))

    def _line(self, line: str) -> None:
        self._tail.append(line)
        if self._log is not None:
            try:
                self._log(line)
            except Exception:  # noqa: BLE001 - a closed job log must not kill the reader
                self._log = None

    def stop(self) -> None:
        """End the process (frees its memory); a stopped worker restarts on the next request."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            try:
                assert proc.stdin is not None
                proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                proc.stdin.flush()
                proc.wait(timeout=5)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                kill_process_group(proc, 2.0)
        if self.state != "crashed":
            self.state = "stopped"
        self.pid = None

    # -- requests --------------------------------------------------------------------------
    def _send(self, msg: dict) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(msg) + "\n")
            self._proc.stdin.flush()
        except (OSError, ValueError):
            pass  # the reader sees the exit

    def _next_event(self, hooks: Hooks, timeout: float, loading: bool = False,
                    on_cancel: Any = None) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self._events.get(timeout=0.2)
            except queue.Empty:
                if hooks.cancelled:
                    if on_cancel is None:
                        self.stop()
                        raise Cancelled()
                    on_cancel()
                if time.monotonic() > deadline:
                    self.stop()
                    raise VoiceLabError(f"The CosyVoice worker for {self.model_dir.name} did not answer in "
                                        f"{timeout:.0f} s and was stopped.", self._tail_hint())
                continue
            if event is None:  # the process ended
                return self._crashed(loading)
            if event.get("event") == "progress":
                hooks.progress(float(event.get("fraction", 0.0)), str(event.get("message", "")))
                continue
            return event

    def _crashed(self, loading: bool) -> dict:
        code = self._proc.wait() if self._proc is not None else None
        self.state = "crashed"
        self.error = (f"The CosyVoice worker for {self.model_dir.name} stopped unexpectedly while "
                      f"{'loading the model' if loading else 'synthesising'} (exit code {code}).")
        self._proc, self.pid = None, None
        return {"event": "crashed"}

    def _tail_hint(self) -> str:
        last = "\n".join(list(self._tail)[-8:])
        return f"Last lines of its log:\n{last}" if last else ""

    def _failure(self, event: dict, doing: str) -> VoiceLabError:
        if event.get("event") == "crashed":
            return VoiceLabError(self.error, "It starts again on the next request. " + self._tail_hint())
        stage = event.get("stage") or doing
        self.error = f"CosyVoice failed while {stage}: {event.get('message', '')}"
        return VoiceLabError(self.error, str(event.get("hint") or ""))

    def run(self, request: dict, hooks: Hooks) -> dict:
        """Send one request and wait for its answer ({"path", "seconds", ...})."""
        with self._busy:
            if not self.alive():
                raise VoiceLabError(f"The CosyVoice worker for {self.model_dir.name} is not running.",
                                    "Start it again (the next synthesis does).")
            rid = uuid.uuid4().hex[:12]
            self.state, self.last_used, self._log = "busy", time.time(), hooks.log
            asked: list[float] = []

            def cancel() -> None:
                if not asked:
                    asked.append(time.monotonic())
                    hooks.log("Cancelling the synthesis (stops after the current sentence)")
                if time.monotonic() - asked[0] > CANCEL_GRACE_S:
                    self.stop()
                    raise Cancelled()
                self._send({"cmd": "cancel", "id": rid})

            try:
                self._send({**request, "cmd": "synth", "id": rid})
                while True:
                    event = self._next_event(hooks, float(request.get("timeout", 3600)), on_cancel=cancel)
                    if event.get("event") == "crashed" or event.get("id") in (rid, None):
                        break
                if event.get("event") == "cancelled":
                    raise Cancelled()
                if event.get("event") != "done":
                    raise self._failure(event, "synthesising")
                self.error = ""
                return event
            finally:
                self._log = None
                if self.state == "busy":
                    self.state = "ready"
                self.last_used = time.time()

    def status(self) -> dict:
        return {"model_dir": str(self.model_dir), "state": self.state if self.alive() or self.state == "crashed"
                else "stopped", "pid": self.pid, "error": self.error, "speakers": self.info.get("speakers", []),
                "sample_rate": self.info.get("sample_rate"), "started": self.started, "last_used": self.last_used}


_WORKERS: dict[str, SynthWorker] = {}
_LOCK = threading.RLock()


def ensure_worker(model_dir: str | os.PathLike, checkout: str | os.PathLike, device: str = "auto",
                  hooks: Hooks | None = None) -> SynthWorker:
    """The running worker of ``model_dir``, started (or restarted after a change or a crash) when needed."""
    hooks = ensure_hooks(hooks)
    key_dir = Path(model_dir).resolve()
    with _LOCK:
        worker = _WORKERS.get(str(key_dir))
        if worker is not None and worker.alive() and worker.key == model_key(key_dir) \
                and worker.checkout == Path(checkout).resolve() and worker.device == device:
            return worker
        if worker is not None:
            if worker.state == "crashed":
                hooks.log(f"{worker.error} Starting a new worker.")
            elif worker.alive():
                hooks.log(f"{key_dir.name} changed on disk: reloading it in a new worker.")
            worker.stop()
        _evict_idle(keep=MAX_WORKERS - 1)
        worker = SynthWorker(key_dir, Path(checkout).resolve(), device)
        _WORKERS[str(key_dir)] = worker
    worker.start(hooks)
    return worker


def _evict_idle(keep: int) -> None:
    idle = sorted((w for w in _WORKERS.values() if w.alive() and w.state == "ready"), key=lambda w: w.last_used)
    for worker in idle[:max(0, len(idle) - keep)]:
        worker.stop()


def run_request(model_dir: str | os.PathLike, checkout: str | os.PathLike, request: dict,
                hooks: Hooks | None = None, device: str = "auto") -> dict:
    """Synthesise one request in the model dir's worker (started when needed)."""
    hooks = ensure_hooks(hooks)
    worker = ensure_worker(model_dir, checkout, device, hooks)
    return worker.run(request, hooks)


def worker_status() -> list[dict]:
    """Every worker this process started, with its state (ready / busy / stopped / crashed)."""
    with _LOCK:
        return [w.status() for w in _WORKERS.values()]


def stop_worker(model_dir: str | os.PathLike | None = None) -> list[str]:
    """Stop one model dir's worker, or all of them (they leave the list); returns the model dirs stopped."""
    with _LOCK:
        chosen = [k for k in _WORKERS if model_dir is None or k == str(Path(model_dir).resolve())]
        stopped = []
        for key in chosen:
            worker = _WORKERS.pop(key)
            if worker.alive():
                stopped.append(str(worker.model_dir))
            worker.state = "stopped"
            worker.stop()
        return stopped
