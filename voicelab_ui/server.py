"""Start the studio: settings, LAN/auth policy, port checks, launch.

Without ``--lan`` the studio binds 127.0.0.1 only. With ``--lan`` it binds
0.0.0.0 and always requires a login: ``--auth user:pass`` or
``VOICELAB_AUTH``; when neither is given a random password is generated
and printed once. ``--https`` serves TLS (a self-signed certificate made
once into the workspace, its fingerprint printed at start) or the user's
``--ssl-cert``/``--ssl-key``. In front of Gradio, ``voicelab_ui.gate``
decides what anonymous clients see, which files are served, login back-off
and upload space.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
from typing import TYPE_CHECKING

from engines.core.errors import VoiceLabError
from engines.core.settings import Workspace

if TYPE_CHECKING:
    from engines.core.jobs import JobRunner


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="app.py", description="Start the VoiceLab studio in your browser.")
    ap.add_argument("--host", default=None, help="Bind address (default 127.0.0.1; 0.0.0.0 with --lan)")
    ap.add_argument("--port", type=int, default=None, help="Port (default 7860; 0 picks a free port)")
    ap.add_argument("--lan", action="store_true", default=None, help="Serve other devices on the LAN (needs a login)")
    ap.add_argument("--auth", default=None, help="Login as user:pass (or set VOICELAB_AUTH)")
    ap.add_argument("--workspace", default=None, help="Workspace folder (default $VOICELAB_HOME or ./runtime)")
    ap.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    ap.add_argument("--language", default=None, help="auto, en or zh-CN")
    ap.add_argument("--https", action="store_true", default=None,
                    help="Serve HTTPS with a self-signed certificate made once into <workspace>/tls")
    ap.add_argument("--ssl-cert", default=None, help="Your own TLS certificate (PEM); implies --https")
    ap.add_argument("--ssl-key", default=None, help="The private key of --ssl-cert (PEM)")
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


def tls_options(ws: Workspace) -> dict:
    """Gradio's launch() arguments for HTTPS ({} for plain http); prints the certificate's fingerprint."""
    from engines.core.paths import tls_dir
    from voicelab_ui.tls import file_fingerprint, tls_files

    s = ws.settings
    if not (s.https or s.ssl_cert or s.ssl_key):
        return {}
    files = tls_files(tls_dir(ws), s.ssl_cert, s.ssl_key)
    kind = "self-signed, made once in " + str(files.cert.parent) if files.self_signed else str(files.cert)
    print(f"TLS certificate ({kind}) SHA-256 fingerprint: {file_fingerprint(files.cert)}", flush=True)
    if files.self_signed:
        print("Browsers warn about a self-signed certificate: accept it after checking that the fingerprint "
              "they show is the one above.", flush=True)
    return {"ssl_certfile": str(files.cert), "ssl_keyfile": str(files.key), "ssl_verify": False}


def front_door(ws: Workspace, login: bool, language: str) -> list:
    """The middleware in front of Gradio: the gate (anonymous clients, files, logins, uploads), then the language."""
    from starlette.middleware import Middleware

    from voicelab_ui.gate import StudioGate
    from voicelab_ui.html_inject import HeadScriptMiddleware
    from voicelab_ui.i18n import language_head

    return [Middleware(StudioGate, ws=ws, login=login),
            Middleware(HeadScriptMiddleware, snippet=language_head(language))]


def served_paths(ws: Workspace) -> dict:
    """Gradio's own allow-list and block-list, matching the gate's (defence in depth)."""
    from engines.core.paths import protected_paths, servable_roots

    return {"allowed_paths": [str(p) for p in servable_roots(ws)],
            "blocked_paths": [str(p) for p in protected_paths(ws)]}


def start_housekeeping(ws: Workspace, runner: "JobRunner") -> None:
    """Clean the upload and A/B caches now and periodically, keeping what active jobs still read."""
    from engines.core.cleanup import paths_in, start_cleaner

    def in_use() -> list[str]:
        return paths_in(v for rec in runner.list(["queued", "running"]) for v in rec.params.values())

    start_cleaner(ws, in_use)


def main(argv: list[str] | None = None) -> int:
    from engines.core import cpu_memory

    cpu_memory.configure()  # before anything imports torch (jobs inherit the setting)
    args = parse_args(argv)
    try:
        ws = Workspace.open(args.workspace, overrides={
            "host": args.host, "port": args.port, "lan": args.lan, "auth": args.auth,
            "device": args.device, "language": args.language,
            "https": args.https, "ssl_cert": args.ssl_cert, "ssl_key": args.ssl_key,
        })
        s = ws.settings
        host = args.host or ("0.0.0.0" if s.lan else s.host)
        if not s.lan and host not in ("127.0.0.1", "localhost", "::1"):
            raise VoiceLabError(f"Refusing to bind {host} without --lan.", "Use --lan (which requires a login) to serve other devices.")
        auth = resolve_auth(s.lan, s.auth)
        port = check_port(host, s.port)
        tls = tls_options(ws)
    except VoiceLabError as exc:
        print(f"error: {exc.message}\nhint: {exc.hint}" if exc.hint else f"error: {exc.message}", file=sys.stderr)
        return 2

    # Uploads land in the workspace, so everything the studio reads or serves stays inside it.
    os.environ.setdefault("GRADIO_TEMP_DIR", str(ws.uploads / "gradio"))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from voicelab_ui.app import CSS, build_app
    from voicelab_ui.context import UIContext
    from voicelab_ui.i18n import gradio_i18n

    runner = start_runner(ws)
    demo = build_app(UIContext(ws=ws, runner=runner))
    start_housekeeping(ws, runner)
    print(f"VoiceLab workspace: {ws.root}", flush=True)
    scheme = "https" if tls else "http"
    print(f"VoiceLab studio: {scheme}://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}", flush=True)
    demo.queue(default_concurrency_limit=4).launch(
        server_name=host,
        server_port=port,
        auth=auth,
        **served_paths(ws),
        **tls,
        i18n=gradio_i18n(),
        css=CSS,
        app_kwargs={"middleware": front_door(ws, auth is not None, ws.settings.language)},
        show_error=True,
        ssr_mode=False,
        footer_links=["api", "settings"],
        quiet=False,
    )
    return 0


def start_runner(ws: Workspace) -> "JobRunner":
    """The job runner: queue, lanes, worker processes.

    A stop by Ctrl-C or SIGTERM ends ``launch()``; at exit the runner stops its workers and marks their
    jobs interrupted. After a crash the workers keep running and the next start re-attaches to them.
    """
    import signal

    from engines.core.jobs import JobRunner

    runner = JobRunner(ws)
    if runner.reattached_at_start:
        print(f"VoiceLab: following {runner.reattached_at_start} job(s) still running from before.", flush=True)

    def on_term(*_args: object) -> None:
        raise KeyboardInterrupt  # Gradio's launch() ends on it, then the exit handlers close the runner

    signal.signal(signal.SIGTERM, on_term)
    return runner


def register_command(sub: argparse._SubParsersAction) -> None:
    """``voicelab serve ...``: the same as ``python app.py ...`` (the ``voicelab.commands`` entry point)."""
    serve = sub.add_parser("serve", help="Start the studio (same options as `python app.py`)")
    serve.add_argument("rest", nargs=argparse.REMAINDER)

    def run(args: argparse.Namespace, ws: Workspace) -> int:
        return main(["--workspace", str(ws.root), *args.rest])

    serve.set_defaults(func=run)
