"""Start the studio: settings, LAN/auth policy, port checks, launch.

Without ``--lan`` the studio binds 127.0.0.1 only. With ``--lan`` it binds
0.0.0.0 and always requires a login: ``--auth user:pass`` or
``VOICELAB_AUTH``; when neither is given a random password is generated
and printed once.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys

from engines.core.errors import VoiceLabError
from engines.core.settings import Workspace


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="app.py", description="Start the VoiceLab studio in your browser.")
    ap.add_argument("--host", default=None, help="Bind address (default 127.0.0.1; 0.0.0.0 with --lan)")
    ap.add_argument("--port", type=int, default=None, help="Port (default 7860; 0 picks a free port)")
    ap.add_argument("--lan", action="store_true", default=None, help="Serve other devices on the LAN (needs a login)")
    ap.add_argument("--auth", default=None, help="Login as user:pass (or set VOICELAB_AUTH)")
    ap.add_argument("--workspace", default=None, help="Workspace folder (default $VOICELAB_HOME or ./runtime)")
    ap.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    ap.add_argument("--language", default=None, help="auto, en or zh-CN")
    return ap.parse_args(argv)


def resolve_auth(lan: bool, auth: str) -> tuple[str, str] | None:
    """The login to require: None on localhost without --auth; always one on the LAN."""
    if auth:
        if ":" not in auth:
            raise VoiceLabError("--auth must look like user:password.", "Example: --auth alice:correct-horse")
        user, pw = auth.split(":", 1)
        if not user or not pw:
            raise VoiceLabError("--auth needs both a user name and a password.", "Example: --auth alice:correct-horse")
        return user, pw
    if not lan:
        return None
    pw = secrets.token_urlsafe(12)
    print(f"LAN mode without --auth: generated login  user: voicelab  password: {pw}", flush=True)
    print("(shown only once; pass --auth user:pass or set VOICELAB_AUTH to choose your own)", flush=True)
    return "voicelab", pw


def check_port(host: str, port: int) -> int:
    """Return a usable port: ``port`` if free, a free one for 0; raise a clear error if taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise VoiceLabError(
                f"Port {port} on {host} is already in use ({exc.strerror}).",
                "Stop the other program, choose another port with --port N, or use --port 0 to pick a free one.",
            ) from exc
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    from engines.core import cpu_memory

    cpu_memory.configure()  # before anything imports torch (jobs inherit the setting)
    args = parse_args(argv)
    try:
        ws = Workspace.open(args.workspace, overrides={
            "host": args.host, "port": args.port, "lan": args.lan, "auth": args.auth,
            "device": args.device, "language": args.language,
        })
        s = ws.settings
        host = args.host or ("0.0.0.0" if s.lan else s.host)
        if not s.lan and host not in ("127.0.0.1", "localhost", "::1"):
            raise VoiceLabError(f"Refusing to bind {host} without --lan.", "Use --lan (which requires a login) to serve other devices.")
        auth = resolve_auth(s.lan, s.auth)
        port = check_port(host, s.port)
    except VoiceLabError as exc:
        print(f"error: {exc.message}\nhint: {exc.hint}" if exc.hint else f"error: {exc.message}", file=sys.stderr)
        return 2

    # Uploads land in the workspace, so everything the studio reads or serves stays inside it.
    os.environ.setdefault("GRADIO_TEMP_DIR", str(ws.uploads / "gradio"))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from starlette.middleware import Middleware

    from engines.core.jobs import JobRunner
    from voicelab_ui.app import CSS, build_app
    from voicelab_ui.context import UIContext
    from voicelab_ui.html_inject import HeadScriptMiddleware
    from voicelab_ui.i18n import gradio_i18n, language_head

    runner = JobRunner(ws)
    demo = build_app(UIContext(ws=ws, runner=runner))
    print(f"VoiceLab workspace: {ws.root}", flush=True)
    print(f"VoiceLab studio: http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}", flush=True)
    demo.queue(default_concurrency_limit=4).launch(
        server_name=host,
        server_port=port,
        auth=auth,
        allowed_paths=[str(ws.root)],
        blocked_paths=[str(ws.root / "settings.toml"), str(ws.jobs_db)],
        i18n=gradio_i18n(),
        css=CSS,
        app_kwargs={"middleware": [Middleware(HeadScriptMiddleware, snippet=language_head(ws.settings.language))]},
        show_error=True,
        ssr_mode=False,
        footer_links=["api", "settings"],
        quiet=False,
    )
    return 0


def register_command(sub: argparse._SubParsersAction) -> None:
    """``voicelab serve ...``: the same as ``python app.py ...`` (the ``voicelab.commands`` entry point)."""
    serve = sub.add_parser("serve", help="Start the studio (same options as `python app.py`)")
    serve.add_argument("rest", nargs=argparse.REMAINDER)

    def run(args: argparse.Namespace, ws: Workspace) -> int:
        return main(["--workspace", str(ws.root), *args.rest])

    serve.set_defaults(func=run)
