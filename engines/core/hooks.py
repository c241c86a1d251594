"""Progress, log and cancel hooks passed into engine functions.

Engine functions take ``hooks: Hooks | None = None`` and call
``hooks.progress(fraction, message)``, ``hooks.log(line)`` and
``hooks.check_cancel()`` (raises ``Cancelled``) in their loops. The job
runner supplies hooks wired to the job's log file and state; scripts and
tests get the silent default from ``ensure_hooks(None)``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Mapping, Sequence

from engines.core.errors import Cancelled, VoiceLabError
from engines.core.messages import Message, cli_language, msg, text_of

# The message is a plain string or a catalogue ``Message`` (shown in the viewer's language).
ProgressFn = Callable[[float, "str | Message"], None]
LogFn = Callable[[str], None]
# submit(op_name, params, title) -> job id: queue a follow-up job (e.g. previews at a training save).
SubmitFn = Callable[[str, dict, str], str]


class Hooks:
    """Callbacks an engine function reports through; all optional."""

    def __init__(
        self,
        progress: ProgressFn | None = None,
        log: LogFn | None = None,
        cancel_event: threading.Event | None = None,
        submit: SubmitFn | None = None,
    ) -> None:
        self._progress = progress
        self._log = log
        self.cancel_event = cancel_event or threading.Event()
        # Set inside the studio's workers: follow-up jobs go to the job queue. None elsewhere (the
        # command line), where a caller does the follow-up work itself.
        self.submit = submit

    def progress(self, fraction: float, message: "str | Message" = "") -> None:
        if self._progress is not None:
            self._progress(max(0.0, min(1.0, float(fraction))), message)

    def log(self, line: str) -> None:
        if self._log is not None:
            for part in str(line).splitlines() or [""]:
                self._log(part)

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def check_cancel(self) -> None:
        """Raise ``Cancelled`` if the user asked to stop."""
        if self.cancel_event.is_set():
            raise Cancelled()

    def scaled(self, start: float, end: float) -> "Hooks":
        """Hooks whose progress maps 0..1 onto start..end of this one (for stages)."""
        parent = self

        def prog(f: float, message: "str | Message") -> None:
            parent.progress(start + (end - start) * f, message)

        return Hooks(prog, self._log, self.cancel_event, self.submit)

    def run(
        self,
        cmd: Sequence[str],
        *,
        cwd: str | os.PathLike | None = None,
        env: Mapping[str, str] | None = None,
        on_line: Callable[[str], bool | None] | None = None,
        kill_grace: float = 1.0,
    ) -> int:
        """Run a subprocess, stream its output to the log, stop it on cancel.

        The child gets its own process group so cancel kills it and all its
        children (torchrun workers, data loaders) within ``kill_grace`` + 0.5 s.
        ``on_line`` sees every line first; when it returns True the line was a
        message for the caller and is not logged.
        Raises ``Cancelled`` when cancelled, ``VoiceLabError`` on a non-zero exit.
        """
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            bufsize=1,
            start_new_session=True,
        )
        tail: list[str] = []

        def pump() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.rstrip("\n")
                consumed = False
                if on_line is not None:
                    try:
                        consumed = bool(on_line(line))
                    except Exception:  # a parser bug must not kill the pump
                        pass
                if not consumed:
                    tail.append(line)
                    del tail[:-20]
                    self.log(line)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        while proc.poll() is None:
            if self.cancel_event.wait(0.1):
                kill_process_group(proc, kill_grace)
                reader.join(timeout=1.0)
                raise Cancelled()
        reader.join(timeout=5.0)
        if proc.returncode != 0:
            last = "\n".join(tail[-8:])
            failed = msg("job.command_failed", code=proc.returncode, command=" ".join(map(str, cmd))[:200])
            raise VoiceLabError(failed, msg("job.command_failed.hint", tail=last) if last else "")
        return proc.returncode


def kill_process_group(proc: subprocess.Popen, grace: float = 1.0) -> None:
    """SIGTERM the child's process group, then SIGKILL after ``grace`` seconds."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 1.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return
            time.sleep(0.02)


NULL_HOOKS = Hooks()


def ensure_hooks(hooks: Hooks | None) -> Hooks:
    """The given hooks, or fresh silent ones (each call gets its own cancel flag)."""
    return hooks if hooks is not None else Hooks()


def terminal_hooks(quiet: bool = False) -> Hooks:
    """Hooks for the command line: log lines and a one-line progress indicator on stderr."""
    last = [0.0]
    lang = cli_language()

    def progress(fraction: float, message: "str | Message") -> None:
        now = time.monotonic()
        if quiet or (now - last[0] < 0.5 and fraction < 1.0):
            return
        last[0] = now
        print(f"[{fraction * 100:5.1f}%] {text_of(message, lang)}", file=sys.stderr, flush=True)

    def log(line: str) -> None:
        if not quiet:
            print(line, file=sys.stderr, flush=True)

    return Hooks(progress, log)
