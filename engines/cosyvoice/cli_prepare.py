"""``voicelab cosyvoice transcribe|transcripts|prepare``: dataset text and CosyVoice training data.

``register(subparsers)`` is called by the ``cosyvoice`` command group with
its subparsers; each command stores ``func(args, ws) -> int``.
"""

from __future__ import annotations

import argparse
import json
import sys

from engines.core.params import add_arguments, from_namespace
from engines.core.settings import Workspace


def _hooks(quiet: bool):
    from engines.cli import terminal_hooks

    return terminal_hooks(quiet)


def _prefer_workspace_device(value: str, ws: Workspace) -> str:
    """A device left at 'auto' follows the studio's device setting (``voicelab --device``)."""
    return ws.settings.device if value == "auto" and ws.settings.device not in ("", "auto") else value


def register(sub: argparse._SubParsersAction) -> None:
    from engines.cosyvoice.dataprep import PrepareParams
    from engines.dataset.asr import AsrParams

    tr = sub.add_parser("transcribe", help="Transcribe a dataset's clips with faster-whisper (offline by default)",
                        description="Writes runtime/datasets/<dataset>/transcripts.json; text you edited is kept.")
    tr.add_argument("dataset", help="Dataset name (runtime/datasets/<name>)")
    add_arguments(tr, AsrParams)
    tr.add_argument("--quiet", action="store_true", help="No progress output")
    tr.add_argument("--json", action="store_true", help="Print the report as JSON")
    tr.set_defaults(func=transcribe_command)

    ed = sub.add_parser("transcripts", help="Show, import, edit or drop a dataset's transcripts")
    ed.add_argument("dataset", help="Dataset name")
    ed.add_argument("--import", dest="import_from", metavar="PATH",
                    help="Import a list file (path|text, path|spk|lang|text, 'utt text') or a folder of .lab/.txt")
    ed.add_argument("--import-beside", action="store_true", help="Import .lab/.txt files lying beside the clips")
    ed.add_argument("--set", nargs=2, action="append", metavar=("CLIP", "TEXT"), default=[],
                    help="Set a clip's text (repeatable)")
    ed.add_argument("--drop", action="append", metavar="CLIP", default=[], help="Leave a clip out (repeatable)")
    ed.add_argument("--undrop", action="append", metavar="CLIP", default=[], help="Take a dropped clip back")
    ed.add_argument("--json", action="store_true", help="Print the transcripts as JSON")
    ed.set_defaults(func=transcripts_command)

    pr = sub.add_parser("prepare", help="Build CosyVoice training data (kaldi dirs, embeddings, tokens, parquet)",
                        description="Output: runtime/cosyvoice/data/<out>/{train,dev}/parquet/data.list. "
                                    "Resumable: re-running skips finished utterances.")
    pr.add_argument("dataset", help="Dataset name (clips + transcripts)")
    pr.add_argument("--out", default=None, help="Output name under runtime/cosyvoice/data (default: the dataset name)")
    add_arguments(pr, PrepareParams)
    pr.add_argument("--quiet", action="store_true", help="No progress output")
    pr.add_argument("--json", action="store_true", help="Print the report as JSON")
    pr.set_defaults(func=prepare_command)


def transcribe_command(args: argparse.Namespace, ws: Workspace) -> int:
    from engines.dataset.asr import AsrParams, transcribe_dataset

    params = from_namespace(AsrParams, args)
    params.asr_device = _prefer_workspace_device(params.asr_device, ws)
    report = transcribe_dataset(ws, args.dataset, params, _hooks(args.quiet))
    if args.json:
        print(json.dumps(report.__dict__, indent=2, ensure_ascii=False))
    else:
        print(f"transcribed {report.transcribed}, already done {report.skipped_existing}, "
              f"kept edited {report.kept_edited}, failed {len(report.failed)} -> {report.transcripts}")
    return 1 if report.failed and not report.transcribed else 0


def transcripts_command(args: argparse.Namespace, ws: Workspace) -> int:
    from engines.cosyvoice.transcripts import dataset_clips, drop_clip, import_transcripts, load_transcripts, set_text

    dataset_dir = ws.dataset_dir(args.dataset)
    if args.import_from or args.import_beside:
        rep = import_transcripts(dataset_dir, args.import_from if args.import_from else None)
        print(f"imported {rep.matched}; unmatched {len(rep.unmatched)}; clips without text {len(rep.missing)}",
              file=sys.stderr)
        for key in rep.unmatched[:20]:
            print(f"  unmatched: {key}", file=sys.stderr)
    for clip_id, text in args.set:
        set_text(dataset_dir, clip_id, text)
    for clip_id in args.drop:
        drop_clip(dataset_dir, clip_id, True)
    for clip_id in args.undrop:
        drop_clip(dataset_dir, clip_id, False)
    entries = load_transcripts(dataset_dir)
    if args.json:
        print(json.dumps(entries, indent=2, ensure_ascii=False))
        return 0
    for clip in dataset_clips(dataset_dir):
        entry = entries.get(clip.id)
        flag = "-" if entry is None else "D" if entry["dropped"] else "E" if entry["edited"] else " "
        print(f"{flag} {clip.id}\t{entry['text'] if entry else ''}")
    return 0


def prepare_command(args: argparse.Namespace, ws: Workspace) -> int:
    from engines.cosyvoice.dataprep import PrepareParams, prepare_cosyvoice_data

    params = from_namespace(PrepareParams, args)
    params.onnx_device = _prefer_workspace_device(params.onnx_device, ws)
    report = prepare_cosyvoice_data(ws, args.dataset, args.out or args.dataset, params, _hooks(args.quiet))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(f"train: {report.train_utts} utts -> {report.train_list}")
        print(f"dev:   {report.dev_utts} utts -> {report.dev_list}")
        print(f"computed {report.computed}, reused {report.reused}; shards written {report.shards_written}, "
              f"unchanged {report.shards_reused}; skipped {len(report.skipped)} ({report.seconds:.1f} s)")
        for name, why in list(report.skipped.items())[:20]:
            print(f"  skipped {name}: {why}")
    return 0
