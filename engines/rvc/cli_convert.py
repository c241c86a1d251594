"""``voicelab rvc index | convert | ckpt info|extract|merge | ab-rank`` commands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from engines.core.jsonable import jsonable
from engines.core.params import add_arguments, from_namespace
from engines.rvc.ops_convert import resolve_model


def _hooks(args: argparse.Namespace) -> Any:
    from engines.cli import terminal_hooks

    return terminal_hooks(quiet=bool(getattr(args, "quiet", False) or getattr(args, "json", False)))


def _print(args: argparse.Namespace, obj: Any, text: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(jsonable(obj), indent=2, ensure_ascii=False))
    else:
        print(text)


# ---------------------------------------------------------------------------
# index


def _index(args: argparse.Namespace, ws: Any) -> int:
    from engines.rvc.index import IndexParams, build_index

    params = from_namespace(IndexParams, args)
    res = build_index(ws, args.exp_name, params, _hooks(args))
    _print(args, res, res.summary())
    return 0


# ---------------------------------------------------------------------------
# convert


def _convert(args: argparse.Namespace, ws: Any) -> int:
    from engines.rvc.convert import ConvertParams, convert_files, guess_index

    params = from_namespace(ConvertParams, args)
    model = resolve_model(ws, args.model)
    index = args.index
    if index == "auto":
        found = guess_index(ws, model)
        index = str(found) if found else None
    report = convert_files(ws, model, args.inputs, params, index_path=index, out_dir=args.out_dir,
                           hooks=_hooks(args), encoder_path=args.hubert)
    _print(args, report.to_dict(), report.summary())
    if not report.converted:
        return 1
    return 3 if report.failed else 0


# ---------------------------------------------------------------------------
# checkpoint tools (engines.rvc.checkpoints)


def _ckpt_info(args: argparse.Namespace, ws: Any) -> int:
    from engines.rvc import checkpoints

    info = checkpoints.model_info(resolve_model(ws, args.model))
    if getattr(args, "json", False):
        _print(args, info, "")
    else:
        data = jsonable(info)
        print("\n".join(f"{k}: {v}" for k, v in data.items()) if isinstance(data, dict) else str(data))
    return 0


def _weights_target(ws: Any, out: str | None, name: str | None, default: str) -> Path:
    from engines.core.settings import safe_name

    if out:
        return Path(out)
    stem = safe_name(name or default)
    return ws.weights / (stem if stem.endswith(".pth") else f"{stem}.pth")


def _ckpt_extract(args: argparse.Namespace, ws: Any) -> int:
    from engines.rvc import checkpoints

    src = Path(args.checkpoint)
    target = _weights_target(ws, args.out, args.name, f"{src.parent.name}_{src.stem}")
    result = checkpoints.extract_small_model(src, target, sr=args.sr, f0=None if args.f0 is None else bool(args.f0),
                                             version=args.version, info=args.info or "", hooks=_hooks(args))
    _print(args, {"output": result}, f"small model written: {result}")
    return 0


def _ckpt_merge(args: argparse.Namespace, ws: Any) -> int:
    from engines.rvc import checkpoints

    a, b = resolve_model(ws, args.model_a), resolve_model(ws, args.model_b)
    target = _weights_target(ws, args.out, args.name, f"{a.stem}+{b.stem}_a{args.alpha:g}")
    result = checkpoints.merge_models(a, b, args.alpha, target, info=args.info or "", hooks=_hooks(args))
    _print(args, {"output": result}, f"merged model written: {result}")
    return 0


# ---------------------------------------------------------------------------
# A/B ranking (votes are cast in the studio)


def _ab_rank(args: argparse.Namespace, ws: Any) -> int:
    from engines.rvc.ab import ranking

    rows = ranking(ws, args.experiment, name=args.name)
    text = "\n".join(f"{i + 1:>2}. {r.label:<40} BT {r.strength:6.2f}  win {r.win_rate:5.1%}  "
                     f"({r.wins}W {r.losses}L {r.ties}T)" for i, r in enumerate(rows)) or "no votes yet"
    _print(args, rows, text)
    return 0


def register(rvc_subparsers: argparse._SubParsersAction) -> None:
    """Add index, convert, ckpt and ab-rank to the ``voicelab rvc`` group."""
    from engines.rvc.convert import ConvertParams
    from engines.rvc.index import IndexParams

    p = rvc_subparsers.add_parser("index", help="Build the faiss retrieval index of an experiment",
                                  description="Build the faiss retrieval index from an experiment's features.")
    p.add_argument("--exp-name", required=True, help="Experiment name (folder under <workspace>/experiments)")
    add_arguments(p, IndexParams)
    p.add_argument("--json", action="store_true", help="Print the result as JSON")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_index)

    c = rvc_subparsers.add_parser("convert", help="Convert audio files or folders with an RVC model",
                                  description="Convert audio files or folders with an RVC model.")
    c.add_argument("inputs", nargs="+", help="Audio files and/or folders")
    c.add_argument("--model", required=True, help="Model .pth (a path, or a name in <workspace>/weights)")
    c.add_argument("--index", default=None, help="faiss .index file ('auto' = the model's workspace index)")
    c.add_argument("--out-dir", default=None, help="Output folder (default: <workspace>/outputs)")
    c.add_argument("--hubert", default=None, help="Content encoder (default: the configured hubert_base.pt)")
    add_arguments(c, ConvertParams)
    c.add_argument("--json", action="store_true", help="Print the report (per-file results, stage timings) as JSON")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=_convert)

    k = rvc_subparsers.add_parser("ckpt", help="Model files: info, extract a small model, merge two models")
    ks = k.add_subparsers(dest="ckpt_cmd", required=True)
    i = ks.add_parser("info", help="Version, sample rate, f0, epoch, steps, parameters and hash of a model")
    i.add_argument("model")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_ckpt_info)
    e = ks.add_parser("extract", help="Write a small inference model from a G_*.pth training checkpoint")
    e.add_argument("checkpoint")
    e.add_argument("--name", default=None, help="Output name in weights/ (default: from the checkpoint)")
    e.add_argument("--out", default=None, help="Output path (instead of weights/<name>.pth)")
    e.add_argument("--sr", default=None, choices=("32k", "40k", "48k"))
    e.add_argument("--version", default=None, choices=("v1", "v2"))
    e.add_argument("--f0", default=None, type=int, choices=(0, 1))
    e.add_argument("--info", default=None)
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=_ckpt_extract)
    m = ks.add_parser("merge", help="Blend two models of the same architecture: alpha*A + (1-alpha)*B")
    m.add_argument("model_a")
    m.add_argument("model_b")
    m.add_argument("--alpha", type=float, default=0.5)
    m.add_argument("--name", default=None)
    m.add_argument("--out", default=None)
    m.add_argument("--info", default=None)
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=_ckpt_merge)

    r = rvc_subparsers.add_parser("ab-rank", help="Ranking of checkpoints from A/B votes")
    r.add_argument("--experiment", default=None)
    r.add_argument("--name", default=None, help="A free-form comparison's name (instead of an experiment)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=_ab_rank)
