"""RVC training runs: preprocess -> pitch -> content features -> GAN training, on one or many processes.

One device trains in the calling process (a job's worker). Several devices, or several machines,
train with DistributedDataParallel started by torch's own launcher, torchrun
(``python -m torch.distributed.run``), one process per device, NCCL on CUDA and gloo on CPU. Across
machines every node runs the same training with its ``node_rank`` and node 0's address/port
(torchrun's static rendezvous); global rank 0 (on node 0) saves checkpoints and metrics, and its log
holds one line per rank at every epoch. The ranks talk to this launcher through ``@voicelab`` lines
on stdout (``engines.rvc.train.loop.LineChannel``). Cancel stops them at a step boundary, or kills
them after a second.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from engines.core.errors import Cancelled, InvalidInputError, VoiceLabError
from engines.core.hooks import Hooks, ensure_hooks
from engines.core.messages import Message, msg
from engines.core.params import validate
from engines.rvc.train.experiment import experiment_paths
from engines.rvc.train.params import TrainParams, TrainResult

OnSave = Callable[[dict[str, Any]], None]


def parse_gpus(spec: str) -> list[int]:
    """"0-1" / "0,1" / "0 1" -> [0, 1]; "" -> []."""
    text = (spec or "").replace(",", "-").replace(" ", "-")
    try:
        return [int(p) for p in text.split("-") if p.strip() != ""]
    except ValueError as exc:
        raise InvalidInputError(f"GPU list '{spec}' is not valid.", "Write GPU ids separated by '-', e.g. 0-1.") from exc


def training_devices(params: TrainParams, device_pref: str = "auto") -> list[str]:
    """One device per training process of this machine: the chosen GPUs, all visible GPUs, or CPU slots."""
    from engines.core.device import cuda_device_count

    n_cuda = cuda_device_count()
    wanted = parse_gpus(params.gpus)
    if n_cuda == 0 or str(device_pref).lower() == "cpu":
        return ["cpu"] * params.cpu_processes
    bad = [g for g in wanted if g >= n_cuda]
    if bad:
        raise InvalidInputError(f"GPU {bad[0]} does not exist (this machine has {n_cuda}).", "Pick ids from 0 to "
                                f"{n_cuda - 1}.")
    if str(device_pref).startswith("cuda:") and not wanted:
        wanted = [int(str(device_pref).split(":")[1])]
    return [f"cuda:{g}" for g in (wanted or range(n_cuda))]


def model_config_for(params: TrainParams) -> list[Any]:
    from engines.rvc.models.configs import small_model_config

    return list(params.model_config) if params.model_config else small_model_config(params.version, params.sr)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_nodes(params: TrainParams) -> None:
    if params.node_rank >= params.nnodes:
        raise InvalidInputError(f"node_rank {params.node_rank} is not below nnodes {params.nnodes}.",
                                f"Number the machines 0..{params.nnodes - 1}; node 0 is the one others connect to.")
    if params.nnodes > 1 and not params.master_addr.strip():
        raise InvalidInputError("Training on several machines needs node 0's address (master_addr).",
                                "Give the IP address of node 0 that every node can reach.")


def remove_stale_parts(folder: Path, prefix: str = "", older_than: float = 60.0) -> int:
    """Delete atomic-write temp files a killed run left behind (``.<name>.<random>.part*``)."""
    if not folder.is_dir():
        return 0
    now, removed = time.time(), 0
    for p in folder.glob(f".{prefix}*.part*"):
        try:
            if p.is_file() and now - p.stat().st_mtime > older_than:
                p.unlink()
                removed += 1
        except OSError:
            pass
    return removed


# ---------------------------------------------------------------------------
# launching


def run_torchrun(job: Any, params: TrainParams, hooks: Hooks, on_save: OnSave | None) -> dict[str, Any]:
    """Start this node's ranks with torchrun; relay their log, progress and saves; return the summary."""
    from engines.rvc.train.loop import PROTOCOL

    root = Path(job.exp_dir)
    job_file = root / f"launch-node{job.node_rank}.json"
    job_file.write_text(json.dumps(dataclasses.asdict(job)), encoding="utf-8")
    port = params.master_port if job.nnodes > 1 else free_port()
    addr = params.master_addr.strip() if job.nnodes > 1 else "127.0.0.1"
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nnodes={job.nnodes}",
           f"--nproc-per-node={len(job.devices)}", f"--node-rank={job.node_rank}", f"--master-addr={addr}",
           f"--master-port={port}", "-m", "engines.rvc.train.rank", str(job_file)]
    if job.nnodes > 1:
        hooks.log(f"Node {job.node_rank} of {job.nnodes}: rendezvous at {addr}:{port} (every node must reach it).")
    found: dict[str, Any] = {}

    def on_line(line: str) -> bool:
        if not line.startswith(PROTOCOL):
            return False
        msg = json.loads(line[len(PROTOCOL):])
        if "log" in msg:
            hooks.log(msg["log"])
        elif "progress" in msg:
            text = msg["progress"][1]  # a catalogue message travels as its dict
            hooks.progress(float(msg["progress"][0]), Message.from_dict(text) if isinstance(text, dict) else str(text))
        elif "saved" in msg and on_save is not None:
            on_save(msg["saved"])
        elif "result" in msg:
            found["result"] = msg["result"]
        elif "error" in msg:
            found.setdefault("error", msg["error"])
        elif "cancelled" in msg:
            found["cancelled"] = True
        return True

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        hooks.run(cmd, env=env, on_line=on_line)
    except VoiceLabError as exc:
        error = found.get("error")
        if error:
            hooks.log(error["traceback"])
            raise VoiceLabError(f"Training process {error['rank']} failed: {error['message']}", error["hint"]) from exc
        raise
    finally:
        job_file.unlink(missing_ok=True)
    if found.get("cancelled") and "result" not in found:
        hooks.log("Training stopped: a cancel reached the ranks (on this node or another one).")
        raise Cancelled()
    if "result" not in found:
        raise VoiceLabError("The training processes ended without a result.",
                            "See the job log; a process may have run out of memory.")
    return found["result"]


def train_model(ws: Any, params: TrainParams, hooks: Hooks | None = None, on_save: OnSave | None = None
                ) -> TrainResult:
    """Stage 4: GAN training on the experiment's filelist (one process, or DDP under torchrun).

    ``on_save(record)`` runs at every save of global rank 0 (epoch, step, small_model, checkpoints).
    """
    from engines.core.atomic import write_json
    from engines.rvc.models.configs import train_config
    from engines.rvc.train.loop import HooksChannel, TrainJob, train_process
    from engines.rvc.train.tracking import TrainingTracker

    hooks = ensure_hooks(hooks)
    check_nodes(params)
    t0 = time.monotonic()
    paths = experiment_paths(ws, params.exp_name, create=True)
    if not paths.filelist.is_file():
        raise InvalidInputError(f"Experiment '{params.exp_name}' has no filelist.txt.",
                                "Run preprocessing and feature extraction first.")
    config = train_config(params.version, params.sr)
    config["train"]["batch_size"] = params.batch_size
    config["train"]["seed"] = params.seed
    if params.segment_size:
        config["train"]["segment_size"] = params.segment_size
    write_json(paths.config, config)
    for folder, prefix in ((paths.root, ""), (Path(ws.weights), params.exp_name)):
        remove_stale_parts(folder, prefix)
    job = TrainJob(str(paths.root), str(ws.weights), params.exp_name, dataclasses.asdict(params), config,
                   model_config_for(params), training_devices(params, ws.settings.device), params.nnodes,
                   params.node_rank)
    with TrainingTracker(ws, paths, params.exp_name, dataclasses.asdict(params), params.node_rank,
                         hooks.log) as tracker:
        if job.world == 1:
            summary = train_process(0, 0, job, HooksChannel(hooks, on_save))
        else:
            summary = run_torchrun(job, params, hooks, on_save)
        tracker.artifacts = [Path(s) for s in summary["small_models"]] + (
            [Path(summary["weights"])] if summary.get("weights") else [])
    return TrainResult(
        exp_dir=paths.root,
        weights=Path(summary["weights"]) if summary.get("weights") else None,
        epochs=int(summary["epochs"]),
        steps=int(summary["steps"]),
        checkpoints=[Path(c) for c in summary["checkpoints"]],
        small_models=[Path(s) for s in summary["small_models"]],
        metrics=paths.metrics if summary.get("rank", 0) == 0 else None,
        last_losses=summary["last_losses"],
        seconds_per_step=float(summary["seconds_per_step"]),
        resumed_from=Path(summary["resumed_from"]) if summary.get("resumed_from") else None,
        seconds=time.monotonic() - t0,
    )


# ---------------------------------------------------------------------------
# the whole pipeline


def prepare_experiment(ws: Any, params: TrainParams, hooks: Hooks | None = None, *, stages: Sequence[str] = (
        "preprocess", "f0", "feature")) -> int:
    """Run the data stages (minus skipped ones) and write filelist.txt; returns the filelist size."""
    from engines.rvc.models.configs import parse_sr
    from engines.rvc.train.features import (
        extract_content,
        extract_pitch,
        write_filelist,
    )
    from engines.rvc.train.preprocess import preprocess_dataset
    from engines.rvc.train.previews import heldout_pieces

    hooks = ensure_hooks(hooks)
    _, sr_hz = parse_sr(params.sr)
    paths = experiment_paths(ws, params.exp_name, create=True)
    gpus = [int(d.split(":")[1]) for d in training_devices(params, ws.settings.device) if d.startswith("cuda")]
    if "preprocess" in stages and not params.skip_preprocess:
        if not params.dataset:
            raise InvalidInputError("No dataset given for preprocessing.", "Choose a dataset, or tick 'skip preprocess'.")
        preprocess_dataset(ws, params.exp_name, params.dataset, sr_hz, n_processes=params.n_processes,
                           force=params.force, hooks=hooks.scaled(0.0, 0.4))
    if "f0" in stages and params.f0 and not params.skip_f0:
        rmvpe = params.rmvpe_path or (str(ws.settings.resolved_rmvpe()) if params.f0_method == "rmvpe" else None)
        extract_pitch(paths, params.f0_method, n_processes=params.n_processes, gpus=gpus, rmvpe_path=rmvpe,
                      force=params.force, hooks=hooks.scaled(0.4, 0.7))
    if "feature" in stages and not params.skip_feature:
        hubert = params.hubert_path or str(ws.settings.resolved_hubert())
        extract_content(paths, params.version, hubert, sr=sr_hz, gpus=gpus, force=params.force,
                        hooks=hooks.scaled(0.7, 1.0))
        from engines.rvc.encoders import encoder_record, write_experiment_encoder

        write_experiment_encoder(paths.root, encoder_record(hubert, ws.settings))  # every save carries it
    held = heldout_pieces(paths, params.holdout_pieces)
    n = write_filelist(paths, params.version, params.f0, sr_hz, speaker_id=params.speaker_id, mute=params.add_mute,
                       exclude=set(held))
    hooks.log(f"filelist.txt: {n} entries" + (f" ({len(held)} piece(s) held out for previews: "
                                              f"{', '.join(held)})" if held else "") + ".")
    hooks.progress(1.0, msg("progress.data_ready"))
    return n


def run_rvc_training(ws: Any, params: TrainParams, hooks: Hooks | None = None) -> TrainResult:
    """Preprocess -> pitch -> features -> filelist -> train, each stage cached/skippable; previews at saves."""
    from engines.rvc.train.previews import previews_at_saves

    hooks = ensure_hooks(hooks)
    validate(params)
    check_nodes(params)
    prepare_experiment(ws, params, hooks.scaled(0.0, 0.15))
    hooks.check_cancel()
    return train_model(ws, params, hooks.scaled(0.15, 1.0), on_save=previews_at_saves(ws, params, hooks))


__all__ = ["TrainParams", "TrainResult", "run_rvc_training", "prepare_experiment", "train_model",
           "training_devices", "parse_gpus"]
