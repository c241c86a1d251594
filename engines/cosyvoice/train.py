"""CosyVoice speaker fine-tuning: run upstream's trainer and watch it.

For each model (``llm``, optionally ``flow``) we start
``torchrun --nnodes 1 --nproc_per_node N ... -m engines.cosyvoice.train_launcher
<checkout>/cosyvoice/bin/train.py`` (for N = 1 the launcher directly, with the
environment torchrun would give it) with the arguments upstream's recipe uses, parse its log into
``<workspace>/cosyvoice/train/<exp>/metrics.jsonl`` and progress, and on
cancel or failure remove any checkpoint upstream did not finish writing.
A later run resumes from the newest complete checkpoint of each model.

Layout of an experiment::

    cosyvoice/train/<exp>/sft.yaml            config derived from the base model's yaml
    cosyvoice/train/<exp>/params.json         the parameters of the last run
    cosyvoice/train/<exp>/{train,cv}.data.list  data lists with absolute paths
    cosyvoice/train/<exp>/<model>/            upstream's --model_dir (epoch_*_whole.pt + .yaml)
    cosyvoice/train/<exp>/tensorboard/<model>/
    cosyvoice/train/<exp>/metrics.jsonl
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.core.atomic import write_json
from engines.core.errors import Cancelled, InvalidInputError, VoiceLabError
from engines.core.hooks import Hooks, ensure_hooks
from engines.core.messages import msg
from engines.core.params import validate
from engines.cosyvoice import upstream
from engines.cosyvoice.config import load_yaml_file, write_sft_config
from engines.cosyvoice.logparse import LogParser, metric_record
from engines.cosyvoice.params import CosyTrainParams
from engines.cosyvoice.train_data import OFFLINE_FEATURES_ENV, absolute_data_list, check_data, feature_mode

_CKPT_RE = re.compile(r"^epoch_(?P<epoch>\d+)_(?:whole|step_(?P<step>\d+))\.pt$")


@dataclass
class TrainResult:
    exp_dir: Path
    config_path: Path
    metrics_path: Path
    checkpoints: dict[str, list[Path]] = field(default_factory=dict)
    latest: dict[str, Path | None] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def model_list(models: str) -> list[str]:
    return [m for m in models.split("+") if m]


def checkpoint_order(path: Path) -> tuple[int, int, int] | None:
    """Sort key (epoch, whole-epoch last, step) of an upstream checkpoint name, else None."""
    m = _CKPT_RE.match(path.name)
    if not m:
        return None
    if m.group("step") is None:
        return (int(m.group("epoch")), 1, 0)
    return (int(m.group("epoch")), 0, int(m.group("step")))


def is_complete_checkpoint(path: Path) -> bool:
    """Upstream writes the .pt, then its .yaml: a .pt with a readable .yaml is complete."""
    info = path.with_suffix(".yaml")
    if not (path.is_file() and info.is_file()) or path.stat().st_size == 0:
        return False
    try:
        data = load_yaml_file(info)
    except Exception:  # noqa: BLE001 - a torn yaml means an unfinished save
        return False
    return isinstance(data, dict) and "epoch" in data


def list_checkpoints(model_out_dir: str | os.PathLike, complete_only: bool = True) -> list[Path]:
    """Upstream checkpoints in ``model_out_dir``, oldest first."""
    d = Path(model_out_dir)
    if not d.is_dir():
        return []
    found = [(checkpoint_order(p), p) for p in d.glob("epoch_*.pt")]
    found = [(k, p) for k, p in found if k is not None and (not complete_only or is_complete_checkpoint(p))]
    return [p for _, p in sorted(found)]


def select_start_checkpoint(model_out_dir: str | os.PathLike, base_model_dir: str | os.PathLike, model: str,
                            resume: bool = True) -> tuple[Path | None, str]:
    """(checkpoint to pass as --checkpoint, 'resume' | 'base' | 'scratch')."""
    if resume:
        done = list_checkpoints(model_out_dir)
        if done:
            return done[-1], "resume"
    base = Path(base_model_dir) / f"{model}.pt"
    if base.is_file():
        return base, "base"
    return None, "scratch"


def checkpoint_epoch(path: Path) -> int | None:
    key = checkpoint_order(path)
    if key is None:
        return None
    info = path.with_suffix(".yaml")
    try:
        data = load_yaml_file(info)
        return int(data.get("epoch", key[0]))
    except Exception:  # noqa: BLE001
        return key[0]


def remove_incomplete_checkpoints(model_out_dir: str | os.PathLike, since: float) -> list[Path]:
    """Delete checkpoints written since ``since`` whose save did not finish."""
    removed = []
    d = Path(model_out_dir)
    if not d.is_dir():
        return removed
    for p in list(d.glob("*.pt")):
        try:
            recent = p.stat().st_mtime >= since - 1
        except FileNotFoundError:
            continue
        if recent and not is_complete_checkpoint(p):
            p.unlink(missing_ok=True)
            y = p.with_suffix(".yaml")
            if y.exists():
                y.unlink()
            removed.append(p)
    for y in d.glob("*.yaml"):
        if y.stat().st_mtime >= since - 1 and not y.with_suffix(".pt").exists():
            y.unlink(missing_ok=True)
            removed.append(y)
    return removed


def convert_deepspeed_checkpoints(model_out_dir: str | os.PathLike) -> list[Path]:
    """Turn deepspeed checkpoint folders into upstream-style ``.pt`` files.

    With ``--train_engine deepspeed`` upstream saves ``epoch_N_whole/`` folders
    (``mp_rank_00_model_states.pt`` holding the weights under ``module``) next
    to ``epoch_N_whole.yaml``; resume, averaging and assembly expect
    ``{**state_dict, 'epoch', 'step'}`` files, which this writes (atomically).
    """
    import torch

    from engines.core.atomic import torch_save

    written = []
    d = Path(model_out_dir)
    for folder in sorted(d.glob("epoch_*")):
        states = folder / "mp_rank_00_model_states.pt"
        target = folder.with_suffix(".pt") if folder.suffix == "" else None
        if not folder.is_dir() or not states.is_file() or target is None or target.exists():
            continue
        info_path = folder.with_suffix(".yaml")
        if not info_path.is_file():
            continue
        info = load_yaml_file(info_path) or {}
        raw = torch.load(states, map_location="cpu", weights_only=False)
        module = raw.get("module", raw) if isinstance(raw, dict) else None
        if not isinstance(module, dict):
            continue
        torch_save({**module, "epoch": int(info.get("epoch", 0)), "step": int(info.get("step", 0))}, target)
        written.append(target)
    return written


def _use_cuda(params: CosyTrainParams) -> bool:
    if params.device == "cpu":
        return False
    from engines.core.device import cuda_device_count

    return cuda_device_count() > 0


def build_train_command(params: CosyTrainParams, *, model: str, script: Path, config: Path, train_list: Path,
                        cv_list: Path, out_dir: Path, tensorboard_dir: Path, checkpoint: Path | None,
                        nproc: int, cuda: bool, deepspeed_config: Path | None = None) -> list[str]:
    """The torchrun command line for one model (upstream train.py arguments)."""
    base = Path(params.model_dir).resolve()
    if nproc > 1:
        launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(nproc),
                  "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m"]
    else:
        # One process: torchrun would only set RANK/WORLD_SIZE/MASTER_* (see single_process_env)
        # and costs a second interpreter + torch import; run the launcher directly.
        launch = [sys.executable, "-m"]
    cmd = [*launch, "engines.cosyvoice.train_launcher", str(script),
           "--train_engine", params.train_engine,
           "--model", model,
           "--config", str(config),
           "--train_data", str(train_list),
           "--cv_data", str(cv_list),
           "--onnx_path", str(base),
           "--model_dir", str(out_dir),
           "--tensorboard_dir", str(tensorboard_dir),
           "--ddp.dist_backend", "nccl" if cuda else "gloo",
           "--num_workers", str(params.num_workers),
           "--prefetch", str(params.prefetch),
           "--timeout", str(params.timeout)]
    if upstream.detect_version(base) in ("v2", "v3"):
        cmd += ["--qwen_pretrain_path", str(base / upstream.QWEN_DIR)]
    if checkpoint is not None:
        cmd += ["--checkpoint", str(checkpoint)]
    if cuda:
        cmd += ["--pin_memory"]
        if params.use_amp:
            cmd += ["--use_amp"]
    if params.train_engine == "deepspeed" and deepspeed_config is not None:
        cmd += ["--deepspeed_config", str(deepspeed_config), "--deepspeed.save_states", "model+optimizer"]
    return cmd


def free_port() -> int:
    """A TCP port free on localhost right now (for the process group's rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def single_process_env(env: dict[str, str]) -> dict[str, str]:
    """The variables torchrun sets for a one-process job."""
    env = dict(env)
    env.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1", GROUP_RANK="0",
               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    return env


def write_deepspeed_config(path: Path, params: CosyTrainParams, cuda_amp: bool) -> Path:
    """ZeRO-2 config matching our SFT settings (upstream requires micro batch 1)."""
    conf = {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": params.accum_grad,
        "steps_per_print": params.log_interval,
        "gradient_clipping": params.grad_clip,
        "fp16": {"enabled": False},
        "bf16": {"enabled": bool(cuda_amp)},
        "zero_optimization": {"stage": 2, "allgather_partitions": True, "allgather_bucket_size": 5e8,
                              "overlap_comm": False, "reduce_scatter": True, "reduce_bucket_size": 5e8,
                              "contiguous_gradients": True},
        "optimizer": {"type": "AdamW", "params": {"lr": params.lr, "weight_decay": 0.0001,
                                                   "torch_adam": True, "adam_w_mode": True}},
    }
    return write_json(path, conf)


def _validate(params: CosyTrainParams) -> None:
    validate(params)
    if not params.model_dir:
        raise InvalidInputError("No base model dir given.", "Choose the CosyVoice model to fine-tune.")
    if upstream.detect_version(params.model_dir) is None:
        upstream.model_yaml(params.model_dir)  # raises with the explanation
    if not params.train_data:
        raise InvalidInputError("No training data list given.", "Run `voicelab cosyvoice prepare` first.")
    if params.train_engine == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        raise InvalidInputError("train_engine 'deepspeed' needs the deepspeed package.",
                                "pip install deepspeed, or use torch_ddp.")


def train_cosyvoice(ws: Any, params: CosyTrainParams, hooks: Hooks | None = None) -> TrainResult:
    """Fine-tune the chosen models with upstream's trainer; resumable and cancellable."""
    hooks = ensure_hooks(hooks)
    _validate(params)
    checkout = upstream.require_checkout(upstream.checkout_path(ws.settings))
    script = upstream.train_script(checkout)
    exp = ws.cosyvoice_experiment_dir(params.exp_name)
    exp.mkdir(parents=True, exist_ok=True)
    config = write_sft_config(params.model_dir, exp / "sft.yaml", params)
    write_json(exp / "params.json", dataclasses.asdict(params))
    train_list = absolute_data_list(params.train_data, exp / "train.data.list")
    if params.cv_data:
        cv_list = absolute_data_list(params.cv_data, exp / "cv.data.list")
    else:
        hooks.log("No validation list given: validating on the training list.")
        cv_list = train_list
    cuda = _use_cuda(params)
    from engines.core.device import cuda_device_count

    nproc = params.gpus or (cuda_device_count() if cuda else 1) or 1
    ds_conf = write_deepspeed_config(exp / "ds_stage2.json", params, cuda and params.use_amp) \
        if params.train_engine == "deepspeed" else None
    env = upstream.upstream_env(checkout)
    if not cuda:
        env["CUDA_VISIBLE_DEVICES"] = ""
    offline = feature_mode(params, train_list, cv_list, hooks)
    if offline:
        env[OFFLINE_FEATURES_ENV] = "1"
    qwen = Path(params.model_dir).resolve() / upstream.QWEN_DIR
    lists = {"training": train_list} if cv_list == train_list else {"training": train_list, "validation": cv_list}
    check_data(env, config, lists, qwen if qwen.is_dir() else None, not offline, exp, hooks)
    metrics_path = exp / "metrics.jsonl"
    result = TrainResult(exp, config, metrics_path)
    models = model_list(params.models)

    for i, model in enumerate(models):
        out_dir = exp / model
        out_dir.mkdir(parents=True, exist_ok=True)
        stage = hooks.scaled(i / len(models), (i + 1) / len(models))
        if params.train_engine == "deepspeed":
            convert_deepspeed_checkpoints(out_dir)
        checkpoint, origin = select_start_checkpoint(out_dir, params.model_dir, model, params.resume)
        if origin == "resume" and checkpoint is not None:
            done_epoch = checkpoint_epoch(checkpoint)
            if checkpoint.name.endswith("_whole.pt") and done_epoch is not None and done_epoch >= params.max_epoch - 1:
                hooks.log(f"{model}: already trained for {params.max_epoch} epochs ({checkpoint.name}); skipping.")
                result.skipped.append(model)
                result.checkpoints[model] = list_checkpoints(out_dir)
                result.latest[model] = checkpoint
                continue
            hooks.log(f"{model}: resuming from {checkpoint}")
        elif origin == "base":
            hooks.log(f"{model}: starting from the base model {checkpoint}")
        else:
            hooks.log(f"{model}: WARNING no {model}.pt in the base model dir; training from random weights")
        cmd = build_train_command(params, model=model, script=script, config=config, train_list=train_list,
                                  cv_list=cv_list, out_dir=out_dir, tensorboard_dir=exp / "tensorboard" / model,
                                  checkpoint=checkpoint, nproc=nproc, cuda=cuda, deepspeed_config=ds_conf)
        parser = LogParser(model=model, accum_grad=params.accum_grad, max_epoch=params.max_epoch)
        stage.progress(0.0, msg("progress.cv_training", model=model))
        with open(metrics_path, "a", encoding="utf-8") as metrics:

            def on_line(line: str) -> None:
                for event in parser.feed(line):
                    rec = metric_record(event)
                    if rec is not None:
                        metrics.write(json.dumps(rec) + "\n")
                        metrics.flush()
                    if event["kind"] == "batch":
                        stage.progress(min(0.99, parser.progress()), msg("progress.cv_epoch_batch", model=model, epoch=event["epoch"],
                                                              batch=event["batch"], loss=event["loss"]))
                    elif event["kind"] == "cv":
                        stage.progress(min(0.99, parser.progress()), msg("progress.cv_epoch_cv", model=model, epoch=event["epoch"], loss=event["loss"]))
                    elif event["kind"] == "epoch":
                        stage.progress(min(0.99, parser.progress()), msg("progress.cv_epoch", model=model, epoch=event["epoch"]))

            started = time.time()
            try:
                hooks.log("$ " + " ".join(cmd))
                with system_samples(ws, metrics_path, model):  # the machine view beside the losses
                    hooks.run(cmd, cwd=str(exp), env=single_process_env(env) if nproc == 1 else env, on_line=on_line)
            except (Cancelled, VoiceLabError, KeyboardInterrupt):
                for p in remove_incomplete_checkpoints(out_dir, started):
                    hooks.log(f"removed unfinished checkpoint file {p.name}")
                if params.train_engine == "deepspeed":
                    convert_deepspeed_checkpoints(out_dir)
                raise
        removed = remove_incomplete_checkpoints(out_dir, started)
        for p in removed:
            hooks.log(f"removed unfinished checkpoint file {p.name}")
        if params.train_engine == "deepspeed":
            for p in convert_deepspeed_checkpoints(out_dir):
                hooks.log(f"converted deepspeed checkpoint to {p.name}")
        result.checkpoints[model] = list_checkpoints(out_dir)
        result.latest[model] = result.checkpoints[model][-1] if result.checkpoints[model] else None
        stage.progress(1.0, msg("progress.cv_done", model=model))
    return result


def system_samples(ws: Any, metrics_path: Path, model: str) -> Any:
    """CPU/RAM/GPU samples of this machine (upstream's processes included) into metrics.jsonl as kind "system"."""
    import contextlib

    from engines.core.sysmon import SystemSampler, jsonl_sink

    interval = float(ws.settings.system_sample_seconds or 0)
    if interval <= 0:
        return contextlib.nullcontext()
    return SystemSampler([jsonl_sink(metrics_path)], interval, extra={"model": model})


def read_metrics(metrics_path: str | os.PathLike, system: bool = False) -> list[dict[str, Any]]:
    """The loss rows of a metrics.jsonl (for plots), or with ``system`` only the machine samples."""
    rows = []
    p = Path(metrics_path)
    if not p.is_file():
        return rows
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if (rec.get("kind") == "system") == system:
            rows.append(rec)
    return rows
