"""`voicelab dataset create|import|stats|list|delete-clip`: the Dataset tab from the shell.

Options of create/import come from ``DatasetParams`` (one definition for UI,
CLI and API). ``--json`` prints machine-readable output on stdout; progress
and log lines go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

from engines.core.hooks import Hooks
from engines.core.params import add_arguments, from_namespace
from engines.core.settings import Workspace


def _hooks(quiet: bool) -> Hooks:
    try:
        from engines.cli import terminal_hooks
    except ImportError:  # the top-level CLI is optional for this module
        return Hooks()
    return terminal_hooks(quiet=quiet)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def _fmt_seconds(s: float) -> str:
    m, sec = divmod(float(s), 60.0)
    h, m = divmod(m, 60.0)
    return f"{int(h)}:{int(m):02d}:{sec:04.1f}" if h else f"{int(m)}:{sec:04.1f}"


def _run_import(args: argparse.Namespace, ws: Workspace, new: bool) -> int:
    from engines.dataset.importer import DatasetParams, create_or_import_dataset

    params = from_namespace(DatasetParams, args)
    report = create_or_import_dataset(
        ws, args.name, list(args.sources), params, hooks=_hooks(args.json or args.quiet),
        must_be_new=new, must_exist=not new,
    )
    if args.json:
        _print_json(asdict(report))
    else:
        print(f"Dataset '{report.name}': added {report.added_clips} clip(s), "
              f"{_fmt_seconds(report.added_seconds)} of audio; {report.total_clips} clip(s) in total.")
        if report.dropped_short:
            print(f"  {report.dropped_short} piece(s) shorter than {params.min_clip_seconds} s were dropped.")
        for s in report.skipped:
            print(f"  skipped {s['source']}: {s['reason']}")
        print(f"  {report.path}")
    return 0


def _stats(args: argparse.Namespace, ws: Workspace) -> int:
    from engines.dataset.stats import dataset_stats

    st = dataset_stats(ws, args.name)
    if args.json:
        _print_json(asdict(st))
        return 0
    print(f"Dataset '{st.name}' ({st.path})")
    print(f"  clips: {st.clips}   total: {_fmt_seconds(st.total_seconds)}   "
          f"min/mean/max: {st.min_seconds:.2f}/{st.mean_seconds:.2f}/{st.max_seconds:.2f} s")
    print("  sample rates: " + (", ".join(f"{r} Hz x{n}" for r, n in st.rate_histogram.items()) or "-"))
    print(f"  clipped clips: {st.clipped_clips}   silent clips: {st.silent_clips}   "
          f"sources: {st.sources}   skipped files: {st.skipped_files}")
    for s in st.skipped:
        print(f"  skipped {s['source']}: {s['reason']}")
    return 0


def _list(args: argparse.Namespace, ws: Workspace) -> int:
    from engines.dataset.stats import list_clips, list_datasets

    if not args.name:
        names = list_datasets(ws)
        if args.json:
            _print_json(names)
        else:
            print("\n".join(names) if names else f"No datasets in {ws.datasets}.")
        return 0
    rows, total = list_clips(ws, args.name, args.page, args.page_size)
    if args.json:
        _print_json({"total": total, "page": args.page, "page_size": args.page_size, "clips": rows})
        return 0
    for c in rows:
        flags = ("C" if c["clipped"] else "-") + ("S" if c["silent"] else "-")
        print(f"{c['id']}  {c['duration']:6.2f}s  {c['sample_rate']:>5}Hz  {c['rms_db']:6.1f}dB  {flags}  "
              f"{c['source']} @{c['start']:.2f}s")
    print(f"page {args.page}: {len(rows)} of {total} clip(s)")
    return 0


def _delete_clip(args: argparse.Namespace, ws: Workspace) -> int:
    from engines.dataset.stats import delete_clip

    for cid in args.clip_ids:
        delete_clip(ws, args.name, cid)
    if not args.json:
        print(f"Deleted {len(args.clip_ids)} clip(s) from '{args.name}'.")
    else:
        _print_json({"deleted": args.clip_ids})
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``dataset`` command group to the top-level ``voicelab`` parser."""
    from engines.dataset.importer import DatasetParams

    ds = subparsers.add_parser("dataset", help="Create datasets from audio, show stats, list clips")
    sub = ds.add_subparsers(dest="dataset_cmd", required=True)

    for cmd, new, text in (
        ("create", True, "Create a new dataset from files, zips or folders"),
        ("import", False, "Add files, zips or folders to an existing dataset"),
    ):
        p = sub.add_parser(cmd, help=text, description=text)
        p.add_argument("name", help="Dataset name (a folder under <workspace>/datasets)")
        p.add_argument("sources", nargs="+", help="Audio/video files, zip archives or folders")
        add_arguments(p, DatasetParams)
        p.add_argument("--json", action="store_true", help="Print the import report as JSON")
        p.add_argument("--quiet", action="store_true", help="No progress output")
        p.set_defaults(func=lambda a, w, _new=new: _run_import(a, w, _new))

    st = sub.add_parser("stats", help="Clip count, durations, sample rates, clipped/silent clips")
    st.add_argument("name")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=_stats)

    ls = sub.add_parser("list", help="List datasets, or the clips of one dataset")
    ls.add_argument("name", nargs="?", default=None)
    ls.add_argument("--page", type=int, default=1)
    ls.add_argument("--page-size", type=int, default=50)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_list)

    rm = sub.add_parser("delete-clip", help="Remove clips from a dataset by id")
    rm.add_argument("name")
    rm.add_argument("clip_ids", nargs="+")
    rm.add_argument("--json", action="store_true")
    rm.set_defaults(func=_delete_clip)


def main(argv: list[str] | None = None) -> int:
    """Run the dataset commands standalone: ``python -m engines.dataset.cli [--workspace W] create ...``."""
    from engines.core.errors import VoiceLabError

    parser = argparse.ArgumentParser(prog="voicelab")
    parser.add_argument("--workspace", default=None)
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args, Workspace.open(args.workspace)) or 0)
    except VoiceLabError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
