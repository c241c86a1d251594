"""The ``voicelab`` command: every studio operation, scriptable.

Each area adds its commands through a ``register(subparsers)`` function;
a command stores ``func(args, ws) -> int`` as its handler. Commands run in
the foreground with progress on the terminal; ``voicelab serve`` starts the
studio (same as ``python app.py``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from typing import Callable

from engines.core.errors import VoiceLabError
from engines.core.hooks import Hooks
from engines.core.jobs import is_absent_module as _is_absent
from engines.core.settings import Workspace

# (module, which subparsers it registers into): "top" = top level, "rvc" = the `voicelab rvc` group.
COMMAND_MODULES = (
    ("engines.dataset.cli", "top"),
    ("engines.rvc.cli_train", "rvc"),
    ("engines.rvc.cli_convert", "rvc"),
    ("engines.cosyvoice.cli", "top"),
    ("engines.assets.cli", "top"),
)


def terminal_hooks(quiet: bool = False) -> Hooks:
    """Hooks that print log lines and a one-line progress indicator to stderr."""
    state = {"last": 0.0}

    def progress(fraction: float, message: str) -> None:
        now = time.monotonic()
        if quiet or (now - state["last"] < 0.5 and fraction < 1.0):
            return
        state["last"] = now
        print(f"[{fraction * 100:5.1f}%] {message}", file=sys.stderr, flush=True)

    def log(line: str) -> None:
        if not quiet:
            print(line, file=sys.stderr, flush=True)

    return Hooks(progress, log)


def _jobs_commands(sub: argparse._SubParsersAction) -> None:
    jobs = sub.add_parser("jobs", help="List, inspect and cancel the studio's background jobs")
    jsub = jobs.add_subparsers(dest="jobs_cmd", required=True)
    ls = jsub.add_parser("list", help="Job history")
    ls.add_argument("--state", action="append", default=None, help="Filter by state (repeatable)")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true")
    show = jsub.add_parser("log", help="Print a job's log")
    show.add_argument("job_id")

    def list_jobs(args: argparse.Namespace, ws: Workspace) -> int:
        from engines.core.jobs import JobStore

        rows = JobStore(ws.jobs_db).list(args.state, limit=args.limit)
        if args.json:
            print(json.dumps([r.__dict__ for r in rows], indent=2, default=str))
        else:
            for r in rows:
                print(f"{r.id}  {r.state:<11} {r.progress * 100:5.1f}%  {r.op:<22} {r.message}")
        return 0

    def show_log(args: argparse.Namespace, ws: Workspace) -> int:
        from engines.core.jobs import JobStore

        rec = JobStore(ws.jobs_db).get(args.job_id)
        if rec is None:
            raise VoiceLabError(f"No job with id {args.job_id}.", "See `voicelab jobs list`.")
        sys.stdout.write(open(rec.log_path, encoding="utf-8", errors="replace").read())
        return 0

    ls.set_defaults(func=list_jobs)
    show.set_defaults(func=show_log)


def _serve_command(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="Start the studio (same options as `python app.py`)")
    serve.add_argument("rest", nargs=argparse.REMAINDER)

    def run(args: argparse.Namespace, ws: Workspace) -> int:
        from voicelab_ui.server import main as serve_main

        return serve_main(["--workspace", str(ws.root), *args.rest])

    serve.set_defaults(func=run, needs_workspace_only=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicelab", description="VoiceLab: RVC and CosyVoice studio, from the command line.")
    parser.add_argument("--workspace", default=None, help="Workspace folder (default: $VOICELAB_HOME or ./runtime)")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    sub = parser.add_subparsers(dest="command", required=True)
    rvc = sub.add_parser("rvc", help="RVC: preprocess, extract, train, index, convert, checkpoints")
    rvc_sub = rvc.add_subparsers(dest="rvc_cmd", required=True)
    targets = {"top": sub, "rvc": rvc_sub}
    for module, where in COMMAND_MODULES:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if _is_absent(module, exc):
                continue
            raise
        mod.register(targets[where])
    _jobs_commands(sub)
    _serve_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace, Workspace], int] | None = getattr(args, "func", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        ws = Workspace.open(args.workspace, overrides={"device": args.device})
        return int(handler(args, ws) or 0)
    except VoiceLabError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
