"""``voicelab rvc preprocess | extract | train``: upstream RVC's training workflow from the shell.

The options come from :class:`engines.rvc.train_params.TrainParams`, so they
match the RVC Train tab (same names, defaults and ranges). Imports nothing
heavy until a command runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from engines.core.params import add_arguments, from_namespace
from engines.rvc.train_params import TrainParams

# Options each step does not use (hidden from its --help).
_TRAINING_ONLY = (
    "total_epoch", "batch_size", "save_every_epoch", "save_every_weights", "keep_latest_only", "pretrained_g",
    "pretrained_d", "precision", "log_interval", "grad_clip", "loader_workers", "cpu_processes", "max_steps", "seed",
)
_EXTRACT_ONLY = ("version", "f0", "f0_method", "hubert_path", "rmvpe_path", "skip_f0", "skip_feature", "speaker_id",
                 "add_mute", "gpus")
PREPROCESS_SKIP = _TRAINING_ONLY + _EXTRACT_ONLY + ("skip_preprocess",)
EXTRACT_SKIP = _TRAINING_ONLY + ("dataset", "skip_preprocess")


def _hooks() -> Any:
    from engines.cli import terminal_hooks

    return terminal_hooks()


def cmd_preprocess(args: argparse.Namespace, ws: Any) -> int:
    """Slice, filter and normalise the dataset into experiments/<exp>/0_gt_wavs and 1_16k_wavs."""
    from engines.rvc.configs import parse_sr
    from engines.rvc.preprocess import preprocess_dataset

    params = from_namespace(TrainParams, args)
    res = preprocess_dataset(ws, params.exp_name, params.dataset, parse_sr(params.sr)[1],
                             n_processes=params.n_processes, force=params.force, hooks=_hooks())
    print(f"{res.pieces} pieces in {res.exp_dir}" + (" (cached)" if res.cached else ""))
    return 0


def cmd_extract(args: argparse.Namespace, ws: Any) -> int:
    """Pitch (2a_f0, 2b-f0nsf) and content features (3_feature*), then filelist.txt."""
    from engines.rvc.ops_train import preflight
    from engines.rvc.train import prepare_experiment

    params = from_namespace(TrainParams, args)
    preflight(ws, params, ("f0", "feature"), train=False)  # a missing weight file fails before any work
    n = prepare_experiment(ws, params, _hooks(), stages=("f0", "feature"))
    print(f"filelist.txt: {n} entries in {ws.experiment_dir(params.exp_name)}")
    return 0


def cmd_train(args: argparse.Namespace, ws: Any) -> int:
    """The whole pipeline: preprocess -> extract -> train (cached stages are skipped)."""
    from engines.rvc.ops_train import DATA_STAGES, preflight
    from engines.rvc.train import run_rvc_training

    params = from_namespace(TrainParams, args)
    preflight(ws, params, DATA_STAGES, train=True)  # a missing weight file fails before any work
    res = run_rvc_training(ws, params, _hooks())
    print(f"trained {res.epochs} epochs / {res.steps} steps; model: {res.weights}")
    for path in res.small_models:
        print(f"checkpoint model: {path}")
    return 0


def register(rvc_subparsers: argparse._SubParsersAction) -> None:
    """Add ``preprocess``, ``extract`` and ``train`` to the ``voicelab rvc`` group."""
    pre = rvc_subparsers.add_parser("preprocess", help="Slice and normalise a dataset into an experiment (step 1)")
    add_arguments(pre, TrainParams, skip=PREPROCESS_SKIP)
    pre.set_defaults(func=cmd_preprocess)

    ext = rvc_subparsers.add_parser("extract", help="Extract pitch and HuBERT features, write the filelist (step 2)")
    add_arguments(ext, TrainParams, skip=EXTRACT_SKIP)
    ext.set_defaults(func=cmd_extract)

    train = rvc_subparsers.add_parser("train", help="Preprocess, extract and train an RVC model (all steps)")
    add_arguments(train, TrainParams)
    train.set_defaults(func=cmd_train)
