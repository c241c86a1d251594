"""TensorBoard as a studio-managed subprocess: started on demand per experiment, stopped with the studio.

The Train tab's link asks :func:`ensure_tensorboard` for an experiment's
``tensorboard/`` folder; the first request starts ``python -m tensorboard.main``
bound to the studio's host on a free port, later ones reuse it. The studio
stops every server at exit (:func:`stop_all`, also registered with atexit).
TensorBoard has no login of its own: with ``--lan`` it is reachable on the LAN
like the studio, without the studio's password (it only shows curves).
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.core.errors import InvalidInputError

START_TIMEOUT = 60.0


@dataclass
class TensorBoardServer:
    logdir: Path
    host: str
    port: int
    proc: subprocess.Popen
    output: Any  # a temporary file with TensorBoard's own messages

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}/"

    def alive(self) -> bool:
        return self.proc.poll() is None


_SERVERS: dict[str, TensorBoardServer] = {}
_LOCK = threading.Lock()


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host if host not in ("::",) else "0.0.0.0", 0))
        return int(s.getsockname()[1])


def _wait_ready(server: TensorBoardServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            server.output.seek(0)
            out = server.output.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"TensorBoard exited with code {server.proc.returncode}: {out}")
        try:
            with urllib.request.urlopen(server.url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"TensorBoard did not answer on {server.url} within {timeout:.0f} s")


def ensure_tensorboard(logdir: str | os.PathLike, host: str = "127.0.0.1",
                       timeout: float = START_TIMEOUT) -> TensorBoardServer:
    """The running server for ``logdir`` (started now if there is none); raises when TensorBoard is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError as exc:
        raise InvalidInputError("TensorBoard is not installed.", "pip install tensorboard (it is in the studio's dependencies)") from exc
    folder = Path(logdir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    with _LOCK:
        known = _SERVERS.get(str(folder))
        if known is not None and known.alive():
            return known
        port = _free_port(host)
        cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(folder), "--host", host,
               "--port", str(port), "--reload_interval", "5"]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        output = tempfile.TemporaryFile()
        proc = subprocess.Popen(cmd, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
        server = TensorBoardServer(folder, host, port, proc, output)
        _SERVERS[str(folder)] = server
    try:
        _wait_ready(server, timeout)
    except Exception:
        stop(server)
        raise
    return server


def stop(server: TensorBoardServer) -> None:
    with _LOCK:
        _SERVERS.pop(str(server.logdir), None)
    if server.alive():
        server.proc.terminate()
        try:
            server.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(timeout=5)
    server.output.close()


def running() -> list[TensorBoardServer]:
    with _LOCK:
        return [s for s in _SERVERS.values() if s.alive()]


def stop_all() -> None:
    """Stop every TensorBoard this process started (the studio's exit)."""
    for server in list(_SERVERS.values()):
        stop(server)


atexit.register(stop_all)
