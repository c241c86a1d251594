"""``voicelab cosyvoice doctor|train|average|assemble|synth`` and ``voicelab vendor sync``.

``register(subparsers)`` adds both groups to the top-level subparsers; the
data-preparation commands (``prepare``, ``transcribe``, ...) are added to the
``cosyvoice`` group by ``engines.cosyvoice.cli_prepare`` when present.
Handlers are ``func(args, ws) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from engines.core.errors import InvalidInputError
from engines.core.jsonable import jsonable
from engines.core.params import add_arguments, from_namespace


def _hooks(quiet: bool = False) -> Any:
    from engines.cli import terminal_hooks

    return terminal_hooks(quiet)


def register(sub: argparse._SubParsersAction) -> None:
    from engines.cosyvoice.synth import SynthParams
    from engines.cosyvoice.train import CosyTrainParams
    from engines.cosyvoice.upstream import PINNED_COMMIT, UPSTREAM_URL

    # -- vendor --------------------------------------------------------------------------
    vendor = sub.add_parser("vendor", help="Third-party source checkouts (upstream CosyVoice)")
    vsub = vendor.add_subparsers(dest="vendor_cmd", required=True)
    sync = vsub.add_parser("sync", help="Clone or update upstream CosyVoice (with Matcha-TTS) at the pinned commit")
    sync.add_argument("--url", default=UPSTREAM_URL, help=f"Repository URL or local path (default: {UPSTREAM_URL})")
    sync.add_argument("--commit", default=PINNED_COMMIT, help="Commit to check out (default: the pinned one)")
    sync.add_argument("--dest", default=None, help="Checkout folder (default: settings cosyvoice.repo)")
    sync.add_argument("--quiet", action="store_true")
    sync.set_defaults(func=vendor_sync_command)

    # -- cosyvoice -----------------------------------------------------------------------
    cosy = sub.add_parser("cosyvoice", help="CosyVoice: data prep, fine-tuning, averaging, model dirs, synthesis")
    csub = cosy.add_subparsers(dest="cosyvoice_cmd", required=True)

    doc = csub.add_parser("doctor", help="Check the upstream checkout, Python modules, a model dir, onnxruntime, disk")
    doc.add_argument("--model-dir", default=None, help="Also check this model dir")
    doc.add_argument("--json", action="store_true", help="Print the report as JSON")
    doc.set_defaults(func=doctor_command)

    tr = csub.add_parser("train", help="Fine-tune llm (and optionally flow) on prepared data (resumable)")
    tr.add_argument("--data", default=None, help="Prepared data name (runtime/cosyvoice/data/<name>) "
                                                 "instead of --train-data/--cv-data")
    add_arguments(tr, CosyTrainParams)
    tr.add_argument("--quiet", action="store_true")
    tr.add_argument("--json", action="store_true")
    tr.set_defaults(func=train_command)

    av = csub.add_parser("average", help="Average checkpoints: last N or best N by validation loss, or given files")
    av.add_argument("files", nargs="*", help="Checkpoint files (default: choose from --exp/--src)")
    av.add_argument("--exp", default=None, help="Experiment name (runtime/cosyvoice/train/<exp>)")
    av.add_argument("--model", default="llm", choices=("llm", "flow"), help="Which model of the experiment")
    av.add_argument("--src", default=None, help="Folder with epoch_*_whole.pt (instead of --exp)")
    av.add_argument("--mode", default="last", choices=("last", "best"), help="Selection when no files are given")
    av.add_argument("--num", type=int, default=5, help="How many checkpoints to average")
    av.add_argument("--out", default=None, help="Output .pt (default: <exp>/averaged/<model>.pt)")
    av.add_argument("--quiet", action="store_true")
    av.set_defaults(func=average_command)

    asm = csub.add_parser("assemble", help="Make a model dir for a fine-tuned speaker (base files + weights + spk2info.pt)")
    asm.add_argument("--name", required=True, help="New model name (runtime/cosyvoice/models/<name>)")
    asm.add_argument("--base", required=True, help="Base model dir that was fine-tuned")
    asm.add_argument("--speaker", required=True, help="Speaker id to register in spk2info.pt")
    asm.add_argument("--exp", default=None, help="Take llm/flow from <exp>/averaged/ (see `average`); "
                                                 "averaged now (--mode/--num) when not there yet")
    asm.add_argument("--mode", default="last", choices=("last", "best"), help="With --exp: which epochs to average")
    asm.add_argument("--num", type=int, default=5, help="With --exp: how many epochs to average")
    asm.add_argument("--llm", default=None, help="Fine-tuned llm checkpoint (averaged or epoch_N_whole.pt)")
    asm.add_argument("--flow", default=None, help="Fine-tuned flow checkpoint (default: the base flow.pt)")
    asm.add_argument("--embedding", default=None, help="spk2embedding.pt holding the speaker's embedding")
    asm.add_argument("--data", default=None, help="Prepared data name: use its train/spk2embedding.pt")
    asm.add_argument("--embedding-key", default=None, help="Entry in spk2embedding.pt (default: --speaker or the only one)")
    asm.add_argument("--copy", action="store_true", help="Copy the base files instead of symlinking them")
    asm.add_argument("--overwrite", action="store_true", help="Replace an existing model dir of that name")
    asm.add_argument("--quiet", action="store_true")
    asm.set_defaults(func=assemble_command)

    sy = csub.add_parser("synth", help="Synthesise speech with a model dir (sft speaker, zero-shot or instruct)")
    sy.add_argument("--model", default=None, help="Assembled model name (runtime/cosyvoice/models/<name>) "
                                                  "instead of --model-dir")
    add_arguments(sy, SynthParams)
    sy.add_argument("--out", default=None, help="Output wav (default: runtime/outputs/cosyvoice/...)")
    sy.add_argument("--speeds", nargs="+", type=float, default=None, help="Compare grid: several speeds")
    sy.add_argument("--presets", nargs="+", default=None, help="Compare grid: several presets")
    sy.add_argument("--checkpoints", nargs="+", default=None, help="Compare grid: several checkpoints")
    sy.add_argument("--list-speakers", action="store_true", help="Only list the speakers of the model")
    sy.add_argument("--quiet", action="store_true")
    sy.set_defaults(func=synth_command)

    try:
        prep = importlib.import_module("engines.cosyvoice.cli_prepare")
    except ModuleNotFoundError as exc:
        if exc.name != "engines.cosyvoice.cli_prepare":
            raise
    else:
        prep.register(csub)


# -- handlers -----------------------------------------------------------------------------

def vendor_sync_command(args: argparse.Namespace, ws: Any) -> int:
    from engines.cosyvoice.upstream import vendor_sync

    dest = Path(args.dest) if args.dest else Path(ws.settings.cosyvoice_repo)
    res = vendor_sync(args.url, dest, args.commit, _hooks(args.quiet))
    print(f"CosyVoice {res.commit} in {res.path}")
    return 0


def doctor_command(args: argparse.Namespace, ws: Any) -> int:
    from engines.cosyvoice.doctor import doctor

    rep = doctor(ws.settings, args.model_dir, disk_path=ws.root)
    print(json.dumps(rep.to_dict(), indent=2) if args.json else rep.to_text())
    return 0 if rep.ok else 1


def train_command(args: argparse.Namespace, ws: Any) -> int:
    from engines.cosyvoice.train import CosyTrainParams, train_cosyvoice

    if args.data:
        from engines.cosyvoice.dataprep import prepared_lists

        train_list, dev_list = prepared_lists(ws, args.data)
        args.train_data, args.cv_data = args.train_data or str(train_list), args.cv_data or str(dev_list)
    params = from_namespace(CosyTrainParams, args)
    res = train_cosyvoice(ws, params, _hooks(args.quiet))
    summary = {"exp_dir": res.exp_dir, "metrics": res.metrics_path, "latest": res.latest, "skipped": res.skipped}
    print(json.dumps(jsonable(summary), indent=2) if args.json else
          "\n".join(f"{m}: {p}" for m, p in res.latest.items()) + f"\nmetrics: {res.metrics_path}")
    return 0


def average_command(args: argparse.Namespace, ws: Any) -> int:
    from engines.cosyvoice.average import average_checkpoints
    from engines.cosyvoice.train import experiment_dir

    exp = experiment_dir(ws, args.exp) if args.exp else None
    if args.files:
        sources: Any = args.files
    elif args.src:
        sources = args.src
    elif exp is not None:
        sources = exp / args.model
    else:
        raise InvalidInputError("Nothing to average.", "Give checkpoint files, --src DIR or --exp NAME.")
    if args.out:
        out = Path(args.out)
    elif exp is not None:
        out = exp / "averaged" / f"{args.model}.pt"
    else:
        raise InvalidInputError("Where should the averaged model go?", "Pass --out PATH.")
    res = average_checkpoints(sources, out, args.mode, args.num, _hooks(args.quiet))
    for p in res.sources:
        loss = res.scores.get(p.name)
        print(f"  {p.name}" + (f"  cv loss {loss:.4f}" if loss is not None else ""))
    print(f"averaged {len(res.sources)} checkpoint(s) -> {res.out_path}")
    return 0


def assemble_command(args: argparse.Namespace, ws: Any) -> int:
    from engines.core.settings import safe_name
    from engines.cosyvoice.assemble import (
        assemble_model_dir,
        default_models_dir,
        load_speaker_embedding,
    )
    from engines.cosyvoice.train import experiment_dir

    embedding = args.embedding
    if embedding is None and args.data:
        embedding = str(Path(ws.cosyvoice) / "data" / safe_name(args.data) / "train" / "spk2embedding.pt")
    if embedding is None:
        raise InvalidInputError("No speaker embedding given.", "Pass --embedding spk2embedding.pt or --data NAME.")
    embedding = load_speaker_embedding(embedding, args.embedding_key or args.speaker)
    llm, flow = args.llm, args.flow
    averaged = experiment_dir(ws, args.exp) / "averaged" if args.exp else None
    if averaged is not None and not llm and not (averaged / "llm.pt").is_file():
        from engines.cosyvoice.assemble import assemble_from_experiment

        res = assemble_from_experiment(ws, args.exp, args.base, args.name, args.speaker, embedding, args.mode,
                                       args.num, link=not args.copy, overwrite=args.overwrite,
                                       hooks=_hooks(args.quiet))
        print(f"model dir: {res.model_dir}\nspeakers: {', '.join(res.speakers)}")
        return 0
    if args.exp:
        avg = experiment_dir(ws, args.exp) / "averaged"
        llm = llm or (str(avg / "llm.pt") if (avg / "llm.pt").is_file() else None)
        flow = flow or (str(avg / "flow.pt") if (avg / "flow.pt").is_file() else None)
    if not llm:
        raise InvalidInputError("No fine-tuned llm given.", "Pass --llm PATH, or --exp NAME after `average`.")
    out = default_models_dir(ws) / safe_name(args.name)
    res = assemble_model_dir(args.base, out, llm, flow, spk_name=args.speaker, spk_embedding=embedding,
                             link=not args.copy, overwrite=args.overwrite, hooks=_hooks(args.quiet))
    print(f"model dir: {res.model_dir}\nspeakers: {', '.join(res.speakers)}")
    return 0


def synth_command(args: argparse.Namespace, ws: Any) -> int:
    from engines.core.settings import safe_name
    from engines.cosyvoice.assemble import default_models_dir
    from engines.cosyvoice.synth import (
        SynthParams,
        compare_grid,
        list_speakers,
        load_presets,
        synthesize,
    )

    if args.model:
        args.model_dir = str(default_models_dir(ws) / safe_name(args.model))
    p = from_namespace(SynthParams, args)
    if not p.model_dir:
        raise InvalidInputError("No model given.", "Pass --model NAME or --model-dir PATH.")
    if args.list_speakers:
        print("\n".join(list_speakers(p.model_dir)))
        return 0
    hooks = _hooks(args.quiet)
    presets = load_presets(ws)
    checkout = ws.settings.cosyvoice_repo
    if args.speeds or args.presets or args.checkpoints:
        out_dir = Path(args.out) if args.out else Path(ws.outputs) / "cosyvoice" / "grid"
        items = compare_grid(p.model_dir, p.text, p.speaker or None, out_dir, presets=args.presets or [p.preset],
                             speeds=args.speeds or [p.speed], checkpoints=args.checkpoints or [p.checkpoint or None],
                             seed=p.seed, mode=p.mode, prompt_wav=p.prompt_wav or None,
                             prompt_text=p.prompt_text or None, preset_texts=presets, hooks=hooks, checkout=checkout)
        for it in items:
            print(json.dumps(jsonable(asdict(it))))
        return 0
    out = Path(args.out) if args.out else None
    if out is None:
        import time

        out = Path(ws.outputs) / "cosyvoice" / f"{Path(p.model_dir).name}_{p.speaker or p.mode}_{time.strftime('%Y%m%d-%H%M%S')}.wav"
    path = synthesize(p.model_dir, p.text, p.speaker or None, speed=p.speed, seed=p.seed, mode=p.mode,
                      prompt_wav=p.prompt_wav or None, prompt_text=p.prompt_text or None, instruct=p.instruct or None,
                      checkpoint=p.checkpoint or None, out_path=out, hooks=hooks, preset=p.preset, presets=presets,
                      checkout=checkout)
    print(path)
    return 0

