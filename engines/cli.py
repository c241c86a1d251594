"""The ``voicelab`` command: every studio operation, scriptable.

The commands are generated from the operation registry (``engines.core.ops``):
each operation's ``Command`` spellings become subcommands whose options come
from its params dataclass, and running one calls the same function the
studio's job runner calls, in the foreground with progress on stderr.
``--json`` prints the result on stdout. Commands that live above the engines
(``voicelab serve``, from ``voicelab_ui``) are added through the
``voicelab.commands`` entry-point group.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import entry_points
from typing import Any, Callable

from engines.core.atomic import user_facing
from engines.core.errors import VoiceLabError
from engines.core.hooks import terminal_hooks
from engines.core.jsonable import jsonable
from engines.core.messages import cli_language, msg, render, text_of
from engines.core.ops import Command, Operation, load_operations
from engines.core.params import add_arguments, build
from engines.core.settings import Workspace

COMMANDS_GROUP = "voicelab.commands"

# In the order --help lists them.
GROUP_HELP = {
    "dataset": "Create datasets from audio, show stats, list clips, transcribe",
    "rvc": "RVC: preprocess, extract, train, index, convert, import, pretrained, checkpoints",
    "rvc ckpt": "Model files: info, extract a small model, merge two models",
    "cosyvoice": "CosyVoice: data prep, fine-tuning, averaging, model dirs, synthesis",
    "vendor": "Third-party source checkouts (upstream CosyVoice)",
    "assets": "Model files: check, import from another install, download",
}


class _Groups:
    """Nested subcommand groups created on first use (``rvc``, ``rvc ckpt``, ...)."""

    def __init__(self, top: argparse._SubParsersAction) -> None:
        self.actions: dict[str, argparse._SubParsersAction] = {"": top}

    def get(self, path: str) -> argparse._SubParsersAction:
        if path not in self.actions:
            parent, _, word = path.rpartition(" ")
            group = self.get(parent).add_parser(word, help=GROUP_HELP.get(path, ""))
            self.actions[path] = group.add_subparsers(dest=f"{path.replace(' ', '_')}_cmd", required=True)
        return self.actions[path]


def _print_result(op: Operation, cmd: Command, result: dict, as_json: bool) -> None:
    if as_json:
        shown = result.get(cmd.json_key, result) if cmd.json_key else result
        print(json.dumps(jsonable(shown), indent=2, ensure_ascii=False))
    elif op.render is not None:
        text = op.render(result)
        if text:
            print(text)
    elif result.get("summary_message") is not None:
        print(text_of(result["summary_message"], cli_language()))
    elif result.get("summary"):
        print(result["summary"])


def _handler(op: Operation, cmd: Command) -> Callable[[argparse.Namespace, Workspace], int]:
    def run(args: argparse.Namespace, ws: Workspace) -> int:
        import dataclasses

        values: dict[str, Any] = {f.name: getattr(args, f.name) for f in dataclasses.fields(op.params)
                                  if hasattr(args, f.name)}
        values.update(cmd.preset)
        params = build(op.params, values)
        result = op.fn(params, terminal_hooks(quiet=args.quiet or args.json), ws) or {}
        _print_result(op, cmd, result, args.json)
        return int(result.get("exit_code", 0))

    return run


def _add_operation(groups: _Groups, op: Operation, cmd: Command) -> None:
    parent, _, word = cmd.path.rpartition(" ")
    text = cmd.help or op.title
    p = groups.get(parent).add_parser(word, help=text, description=text)
    add_arguments(p, op.params, skip=(*cmd.skip, *cmd.preset), positional=cmd.positional)
    p.add_argument("--json", action="store_true", help="Print the result as JSON on stdout")
    p.add_argument("--quiet", action="store_true", help="No progress output")
    p.set_defaults(func=_handler(op, cmd), read_only=cmd.read_only)


def _jobs_commands(sub: argparse._SubParsersAction) -> None:
    jobs = sub.add_parser("jobs", help="List and inspect the studio's background jobs")
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
            lang = cli_language()
            for r in rows:
                print(f"{r.id}  {r.state_in(lang):<11} {r.progress * 100:5.1f}%  {r.lane:<9} {r.op:<22} {r.message_in(lang)}")
        return 0

    def show_log(args: argparse.Namespace, ws: Workspace) -> int:
        from engines.core.jobs import JobStore

        rec = JobStore(ws.jobs_db).get(args.job_id)
        if rec is None:
            raise VoiceLabError(msg("job.no_such_job", job_id=args.job_id))
        with open(rec.log_path, encoding="utf-8", errors="replace") as fh:
            sys.stdout.write(fh.read())
        return 0

    ls.set_defaults(func=list_jobs)
    show.set_defaults(func=show_log)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicelab", description="VoiceLab: RVC and CosyVoice studio, from the command line.")
    parser.add_argument("--workspace", default=None, help="Workspace folder (default: $VOICELAB_HOME or ./runtime)")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    sub = parser.add_subparsers(dest="command", required=True)
    groups = _Groups(sub)
    for path in GROUP_HELP:
        groups.get(path)
    for op in sorted(load_operations().values(), key=lambda o: o.name):
        for cmd in op.commands:
            _add_operation(groups, op, cmd)
    _jobs_commands(sub)
    for ep in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        ep.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from engines.core import cpu_memory

    cpu_memory.configure()  # before anything imports torch
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace, Workspace], int] | None = getattr(args, "func", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        ws = Workspace.open(args.workspace, overrides={"device": args.device},
                            create=not getattr(args, "read_only", False))
        try:
            return int(handler(args, ws) or 0)
        except Exception as exc:  # a full disk (or the GPU out of memory) anywhere gets the one clear message
            from engines.core.worker import gpu_trouble

            trouble = gpu_trouble(exc, vars(args))
            friendly = VoiceLabError(*trouble) if trouble else user_facing(exc, ws.root)
            if friendly is exc:
                raise
            raise friendly from exc
    except VoiceLabError as exc:  # in the language LANG names (English unless it is zh*)
        lang = cli_language()
        message, hint = exc.render(lang)
        print(f"{render('cli.error', {}, lang)}: {message}", file=sys.stderr)
        if hint:
            print(f"{render('cli.hint', {}, lang)}: {hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
