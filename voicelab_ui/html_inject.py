"""ASGI helpers that rewrite the studio's HTML pages on their way out.

Gradio picks its UI language from ``navigator.language`` while its own
scripts load, before any ``head=`` content it injects itself; the language
switch must therefore be in the served HTML, ahead of Gradio's scripts
(``HeadScriptMiddleware``). The anonymous login page is also rewritten
(``voicelab_ui.gate``), through the same ``rewrite_html``.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def rewrite_html(app: ASGIApp, scope: Scope, receive: Receive, send: Send,
                       transform: Callable[[bytes], bytes]) -> None:
    """Run ``app`` and pass every uncompressed text/html body through ``transform``."""
    start: dict | None = None
    chunks: list[bytes] = []

    async def capture(message: dict) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            headers = dict((k.lower(), v) for k, v in message.get("headers", []))
            is_html = headers.get(b"content-type", b"").startswith(b"text/html")
            if not is_html or b"content-encoding" in headers:
                start = None
                await send(message)
                return
            start = message
            return
        if start is None:
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = transform(b"".join(chunks))
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    await app(scope, receive, capture)


class HeadScriptMiddleware:
    """Insert ``snippet`` right after ``<head>`` in HTML pages answered to GET."""

    def __init__(self, app: ASGIApp, snippet: str = "") -> None:
        self.app = app
        self.snippet = snippet.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "GET" or not self.snippet:
            await self.app(scope, receive, send)
            return
        await rewrite_html(self.app, scope, receive, send,
                           lambda body: body.replace(b"<head>", b"<head>" + self.snippet, 1))
