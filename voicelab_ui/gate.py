"""The studio's front door: what anonymous clients see, which files are served, login back-off, uploads.

One ASGI middleware in front of Gradio:

- With a login, an anonymous client gets the login page and nothing else:
  the page's scripts and styles, ``POST /login``, and ``/`` itself with
  Gradio's ``gradio_api_info`` (every endpoint, the dropdown choices at
  start, server paths) taken out. Everything else answers 401.
- Files are served by allow-list (``engines.core.paths.servable``):
  outputs, dataset clips, A/B renders and uploads; an upload only to the
  login session that made it. Everything else, the jobs database with its
  ``-wal``/``-shm`` files included, answers 403.
- Failed logins back off per client address: a few free tries, then a
  doubling wait (429 with ``Retry-After``) until a login succeeds.
- Uploads check the free space first (507 with the disk-full message
  when the body cannot fit), and a failed upload leaves no partial file.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Callable

from engines.core.atomic import SPARE_BYTES, free_bytes, is_disk_full
from engines.core.errors import DiskFullError
from engines.core.paths import servable, upload_root
from engines.core.settings import Workspace
from voicelab_ui.html_inject import ASGIApp, Receive, Scope, Send, rewrite_html

# What the login page itself needs.
ANONYMOUS_PATHS = frozenset({"/", "/login", "/login/", "/logout", "/theme.css", "/gradio_api/theme.css",
                             "/favicon.ico", "/manifest.json", "/robots.txt", "/gradio_api/startup-events"})
ANONYMOUS_PREFIXES = ("/assets/", "/static/")
FILE_ROUTES = ("/gradio_api/file=", "/gradio_api/file/", "/file=", "/file/")
UPLOAD_ROUTES = ("/gradio_api/upload", "/gradio_api/upload/")
API_INFO = b"gradio_api_info = "


def strip_api_info(body: bytes) -> bytes:
    """The page without Gradio's endpoint list (``window.gradio_api_info = {...}`` becomes ``null``)."""
    at = body.find(API_INFO)
    if at < 0:
        return body
    start = at + len(API_INFO)
    text = body[start:].decode("utf-8", errors="replace")
    try:
        _, length = json.JSONDecoder().raw_decode(text)
    except ValueError:
        return body[:start] + b"null;" + body[body.find(b"</script>", start):]
    return body[:start] + b"null" + text[length:].encode("utf-8")


@dataclass
class _Tries:
    failures: int = 0
    locked_until: float = 0.0
    last: float = 0.0


class LoginThrottle:
    """Per-client back-off: ``free`` failed logins, then waits of base, 2*base, 4*base ... up to ``cap`` seconds."""

    def __init__(self, free: int = 5, base: float = 1.0, cap: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.free, self.base, self.cap, self.clock = free, base, cap, clock
        self._by_client: dict[str, _Tries] = {}

    def retry_after(self, client: str) -> float:
        tries = self._by_client.get(client)
        return max(0.0, tries.locked_until - self.clock()) if tries else 0.0

    def failed(self, client: str) -> None:
        now = self.clock()
        if len(self._by_client) > 10_000:  # forget idle clients (an hour without a try)
            self._by_client = {k: v for k, v in self._by_client.items() if now - v.last < 3600}
        tries = self._by_client.setdefault(client, _Tries())
        tries.failures += 1
        tries.last = now
        if tries.failures >= self.free:
            tries.locked_until = now + min(self.cap, self.base * 2 ** (tries.failures - self.free))

    def succeeded(self, client: str) -> None:
        self._by_client.pop(client, None)


async def _answer(send: Send, status: int, text: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": text}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class StudioGate:
    """The middleware (``app_kwargs={"middleware": [Middleware(StudioGate, ws=..., login=...)]}``)."""

    def __init__(self, app: ASGIApp, ws: Workspace, login: bool, throttle: LoginThrottle | None = None) -> None:
        self.app = app
        self.ws = ws
        self.login = login
        self.throttle = throttle or LoginThrottle()
        self.upload_owner: dict[str, str] = {}

    # -- who is asking ------------------------------------------------------------------------
    def _session(self, scope: Scope) -> str | None:
        """The login token of a logged-in client, "local" without a login, None for anonymous clients."""
        if not self.login:
            return "local"
        app = scope.get("app")
        tokens = getattr(app, "tokens", None) or {}
        cookie_id = getattr(app, "cookie_id", "")
        cookies = SimpleCookie()
        for key, value in scope.get("headers", []):
            if key == b"cookie":
                try:
                    cookies.load(value.decode("latin-1"))
                except Exception:  # a malformed cookie header is an anonymous client
                    return None
        for name in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"):
            if name in cookies and cookies[name].value in tokens:
                return cookies[name].value
        return None

    @staticmethod
    def _client(scope: Scope) -> str:
        client = scope.get("client")
        return str(client[0]) if client else "?"

    # -- the door -----------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        method = scope.get("method", "GET")
        session = self._session(scope)
        if scope["type"] == "websocket":
            if session is None:
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        if method == "POST" and path in ("/login", "/login/"):
            await self._login(scope, receive, send)
        elif session is None:
            if path not in ANONYMOUS_PATHS and not path.startswith(ANONYMOUS_PREFIXES):
                await _answer(send, 401, "Not logged in.")
            elif path == "/" and method == "GET":
                await rewrite_html(self.app, scope, receive, send, strip_api_info)
            else:
                await self.app(scope, receive, send)
        elif path.startswith(FILE_ROUTES):
            await self._file(scope, receive, send, path, session)
        elif method == "POST" and path in UPLOAD_ROUTES:
            await self._upload(scope, receive, send, session)
        else:
            await self.app(scope, receive, send)

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = self._client(scope)
        wait = self.throttle.retry_after(client)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            await _answer(send, 429, f"Too many failed logins from {client}: try again in {seconds} s.",
                          {"retry-after": str(seconds)})
            return
        # Counted as failed until it succeeds, so parallel guesses cannot all slip in before the first fails.
        self.throttle.failed(client)
        status = [0]

        async def watch(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        await self.app(scope, receive, watch)
        if status[0] == 200:
            self.throttle.succeeded(client)

    async def _file(self, scope: Scope, receive: Receive, send: Send, path: str, session: str) -> None:
        prefix = next(p for p in FILE_ROUTES if path.startswith(p))
        target = path[len(prefix):]
        ok = target.startswith("/") and servable(self.ws, target)  # relative paths would follow the cwd
        if ok and self.upload_owner.get(str(Path(target).resolve()), session) != session:
            ok = False  # another login's upload
        if not ok:
            await _answer(send, 403, "This file is not served.")
            return
        await self.app(scope, receive, send)

    async def _upload(self, scope: Scope, receive: Receive, send: Send, session: str) -> None:
        folder = upload_root()
        length = next((int(v) for k, v in scope.get("headers", []) if k == b"content-length" and v.isdigit()), 0)
        free = free_bytes(folder)
        if length and length + SPARE_BYTES > free:
            await _answer(send, 507, DiskFullError(str(folder), free, length + SPARE_BYTES).message)
            return
        started = time.time()
        held: list[dict] = []
        received = [0]

        async def hold(message: dict) -> None:
            held.append(message)

        async def counted() -> dict:
            message = await receive()
            received[0] += len(message.get("body", b""))
            return message

        try:
            await self.app(scope, counted, hold)
            error: BaseException | None = None
        except Exception as exc:  # noqa: BLE001 - a failed upload must not leave its partial file
            error = exc
        if error is not None or (held and held[0].get("status", 200) >= 500):
            _remove_partial_uploads(folder, started)
            if is_disk_full(error or OSError("upload failed"), folder):
                need = length or received[0]  # without a declared size: at least what arrived
                await _answer(send, 507, DiskFullError(str(folder), free_bytes(folder), need or None).message)
                return
            if error is not None:
                raise error
        self._remember(held, session)
        for message in held:
            await send(message)

    def _remember(self, held: list[dict], session: str) -> None:
        body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
        try:
            paths = json.loads(body)
        except ValueError:
            return
        if len(self.upload_owner) > 100_000:
            self.upload_owner.clear()
        for p in paths if isinstance(paths, list) else []:
            if isinstance(p, str):
                self.upload_owner[str(Path(p).resolve())] = session


def _remove_partial_uploads(folder: Path, since: float) -> int:
    """Delete Gradio's temp files (``tmp*`` directly in the upload folder) made since ``since``.

    Each is emptied first: Gradio's parser may still hold it open, and an unlinked open file
    keeps its space until the handle is collected.
    """
    n = 0
    for f in folder.glob("tmp*"):
        try:
            if f.is_file() and f.stat().st_mtime >= since - 1:
                os.truncate(f, 0)
                f.unlink()
                n += 1
        except OSError:
            continue
    return n
