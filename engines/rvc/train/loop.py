"""One RVC training process: epochs of GAN steps, metrics, checkpoints, small models at every save.

Checkpoints are upstream's: ``G_<step>.pth``/``D_<step>.pth`` holding ``model``, ``iteration``
(epoch), ``optimizer``, ``learning_rate`` (plus our ``global_step``), written atomically; training
resumes from the highest numbered pair. Each save can also write a small inference model
``weights/<exp>_e<E>_s<S>.pth`` and tells its channel (previews are rendered from it); the end writes
``weights/<exp>.pth``. The lr decays by ``lr_decay`` every epoch; batches group pieces of similar
length; the generator decodes a random segment of each item.

A process reports through a :class:`Channel`: straight to the job's hooks when it is the only one,
or as ``@voicelab {json}`` lines on stdout when torchrun started it (``engines.rvc.train.launch``
reads them). Under DDP (NCCL on CUDA, gloo on CPU) global rank 0 logs, saves and writes metrics, and
at every epoch end logs one line per rank (the merged log). Cancel is honoured at step boundaries,
agreed by every rank: nothing is saved half-written, the last complete checkpoint stays the resume
point.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from engines.core.atomic import torch_save
from engines.core.errors import Cancelled, InvalidInputError
from engines.core.hooks import Hooks
from engines.core.messages import Message, msg
from engines.rvc.train.experiment import ExperimentPaths, latest_checkpoint, list_checkpoints
from engines.rvc.train.gan import GANTrainer, StepStats, build_networks, load_file, load_matching, load_pretrained
from engines.rvc.train.params import TrainParams

PROTOCOL = "@voicelab "  # prefix of the lines a torchrun rank sends to its launcher


@dataclass
class TrainJob:
    """Everything a training process needs (JSON-able: torchrun ranks read it from a file)."""

    exp_dir: str
    weights_dir: str
    exp_name: str
    params: dict[str, Any]
    config: dict[str, Any]  # upstream config.json (train/data/model)
    model_config: list[Any]  # 18-value small-model config
    devices: list[str]  # this node's devices, one per local process
    nnodes: int = 1
    node_rank: int = 0

    @property
    def p(self) -> TrainParams:
        return TrainParams(**self.params)

    @property
    def world(self) -> int:
        return self.nnodes * len(self.devices)


# ---------------------------------------------------------------------------
# how a training process reports


class Channel:
    """Where a training process sends its log, progress and saves; where it learns of a cancel."""

    def log(self, line: str) -> None:
        raise NotImplementedError

    def progress(self, frac: float, msg: str) -> None:
        raise NotImplementedError

    def saved(self, record: dict[str, Any]) -> None:
        raise NotImplementedError

    def cancelled(self) -> bool:
        raise NotImplementedError


class HooksChannel(Channel):
    """The only training process of a job: report to its hooks; ``on_save`` runs at every save."""

    def __init__(self, hooks: Hooks, on_save: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.hooks, self.on_save = hooks, on_save

    def log(self, line: str) -> None:
        self.hooks.log(line)

    def progress(self, frac: float, msg: str) -> None:
        self.hooks.progress(frac, msg)

    def saved(self, record: dict[str, Any]) -> None:
        if self.on_save is not None:
            self.on_save(record)

    def cancelled(self) -> bool:
        return self.hooks.cancelled


class LineChannel(Channel):
    """A torchrun rank: messages as ``@voicelab {json}`` lines on stdout; SIGTERM (torchrun forwards the
    launcher's cancel) asks for a stop at the next step boundary."""

    def __init__(self) -> None:
        import signal

        self.stop = False
        signal.signal(signal.SIGTERM, self._on_term)

    def _on_term(self, *_args: Any) -> None:
        self.stop = True

    def send(self, **message: Any) -> None:
        sys.stdout.write(PROTOCOL + json.dumps(message) + "\n")
        sys.stdout.flush()

    def log(self, line: str) -> None:
        self.send(log=line)

    def progress(self, frac: float, msg: Any) -> None:
        self.send(progress=[frac, msg.to_dict() if isinstance(msg, Message) else msg])

    def saved(self, record: dict[str, Any]) -> None:
        self.send(saved=record)

    def cancelled(self) -> bool:
        return self.stop


class MetricsWriter:
    """metrics.jsonl (one whole line per record) and TensorBoard scalars, rank 0 only."""

    def __init__(self, paths: ExperimentPaths, enabled: bool) -> None:
        self.enabled = enabled
        self.file = None
        self.tb = None
        if not enabled:
            return
        self.file = open(paths.metrics, "a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(paths.tensorboard))
        except Exception:  # noqa: BLE001 - TensorBoard is optional; metrics.jsonl is the record
            self.tb = None

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled or self.file is None:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None and record.get("kind") == "step":
            step = int(record["step"])
            names = {"loss_gen_all": "loss/g/total", "loss_disc": "loss/d/total", "loss_mel": "loss/g/mel",
                     "loss_kl": "loss/g/kl", "loss_fm": "loss/g/fm", "loss_gen": "loss/g/adv", "lr": "learning_rate",
                     "grad_norm_g": "grad_norm_g", "grad_norm_d": "grad_norm_d", "seconds_per_step": "seconds_per_step"}
            for key, tag in names.items():
                if key in record and record[key] is not None and math.isfinite(float(record[key])):
                    self.tb.add_scalar(tag, float(record[key]), step)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()


# ---------------------------------------------------------------------------
# saves


def _save_pair(trainer: GANTrainer, paths: ExperimentPaths, epoch: int, step: int, lr: float, keep_latest: bool
               ) -> list[Path]:
    """G_<step>.pth and D_<step>.pth, atomically; older pairs removed when keep_latest."""
    saved = []
    for prefix, module, optim in (("G", trainer.generator, trainer.optim_g), ("D", trainer.discriminator, trainer.optim_d)):
        target = paths.root / f"{prefix}_{step}.pth"
        torch_save({"model": module.state_dict(), "iteration": epoch, "optimizer": optim.state_dict(),
                    "learning_rate": lr, "global_step": step}, target)
        saved.append(target)
    if keep_latest:
        for prefix in ("G", "D"):
            for number, old in list_checkpoints(paths.root, prefix):
                if number != step:
                    old.unlink(missing_ok=True)
    return saved


def _save_small(trainer: GANTrainer, job: TrainJob, target: Path, epoch: int, step: int) -> Path:
    from engines.rvc.checkpoints import save_small_model
    from engines.rvc.encoders import read_experiment_encoder

    p = job.p
    encoder = read_experiment_encoder(job.exp_dir) or {}  # written by feature extraction; none = HuBERT base
    save_small_model(trainer.generator.state_dict(), sr_tag=p.sr, f0=bool(p.f0), version=p.version,
                     info=f"{epoch}epoch", config=list(job.model_config), path=target,
                     extra={"epoch": epoch, "step": step, "exp_name": job.exp_name, **encoder})
    return target


def _cancel_requested(channel: Channel, world: int, device: torch.device) -> bool:
    """Any rank's cancel flag, agreed by every rank (so all stop at the same step)."""
    flag = torch.tensor([1.0 if channel.cancelled() else 0.0], device=device)
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item() > 0)


# ---------------------------------------------------------------------------
# one training process


def train_process(rank: int, local_rank: int, job: TrainJob, channel: Channel) -> dict[str, Any]:
    """Train on ``job.devices[local_rank]`` as global ``rank``; returns this process's summary."""
    world = job.world
    device = torch.device(job.devices[local_rank])
    if device.type == "cuda":
        torch.cuda.set_device(device)
    elif world > 1:  # CPU ranks of one machine share its cores: no oversubscription
        from engines.rvc.train.experiment import environ_cpu_count

        torch.set_num_threads(max(1, environ_cpu_count() // len(job.devices)))
    if world > 1:
        import datetime

        import torch.distributed as dist

        # torchrun's environment (MASTER_ADDR/PORT, RANK, WORLD_SIZE) tells every rank where to meet.
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://", rank=rank,
                                world_size=world, timeout=datetime.timedelta(minutes=30))
    try:
        return _run_epochs(_Run(rank, job, channel, device))
    finally:
        if world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


class _Run:
    """The state of one training process: data, networks, optimizers, where it resumed from."""

    def __init__(self, rank: int, job: TrainJob, channel: Channel, device: torch.device) -> None:
        from engines.rvc.train.data import BucketBatchSampler, RVCDataset, collate, read_filelist

        self.rank, self.job, self.channel, self.device = rank, job, channel, device
        self.world = job.world
        self.is_main = rank == 0
        self.log = channel.log if self.is_main else (lambda _line: None)
        p = self.p = job.p
        self.paths = ExperimentPaths(Path(job.exp_dir))
        torch.manual_seed(p.seed)
        cfg = job.config
        dataset = RVCDataset(read_filelist(self.paths.filelist, p.f0), cfg["data"], p.f0,
                             spec_cache=self.paths.spec_cache)
        if len(dataset) == 0:
            raise InvalidInputError("The filelist is empty.", "Run preprocessing and feature extraction first.")
        self.items = len(dataset)
        self.sampler = BucketBatchSampler(dataset.lengths, p.batch_size, num_replicas=self.world, rank=rank,
                                          shuffle=True, seed=p.seed)
        workers = p.loader_workers
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=self.sampler, collate_fn=collate, num_workers=workers,
            pin_memory=device.type == "cuda", persistent_workers=workers > 0,
            multiprocessing_context="spawn" if workers > 0 else None,
        )
        net_g, net_d = build_networks(job.model_config, cfg, p.version, p.f0)
        net_g.to(device)
        net_d.to(device)
        self.trainer = GANTrainer(net_g, net_d, cfg, f0=p.f0, device=device, precision=p.precision,
                                  grad_clip=p.grad_clip)
        self.steps_per_epoch = len(self.sampler)
        self.base_lr = float(cfg["train"]["learning_rate"])
        gamma = float(cfg["train"]["lr_decay"])
        self.start_epoch, self.global_step, self.resumed = self._resume_or_init(net_g, net_d)
        for optim in (self.trainer.optim_g, self.trainer.optim_d):
            for group in optim.param_groups:
                group["lr"] = self.base_lr * gamma ** (self.start_epoch - 1)
                group["initial_lr"] = self.base_lr
                if self.trainer.fused:  # an upstream optimizer state would switch fused steps off
                    group["fused"], group["foreach"] = True, None
        self.schedulers = [torch.optim.lr_scheduler.ExponentialLR(o, gamma=gamma)
                           for o in (self.trainer.optim_g, self.trainer.optim_d)]
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [device.index] if device.type == "cuda" else None
            self.trainer.net_g = DDP(net_g, device_ids=ids)
            self.trainer.net_d = DDP(net_d, device_ids=ids)

    def _resume_or_init(self, net_g: torch.nn.Module, net_d: Any) -> tuple[int, int, Path | None]:
        """Resume from the latest G/D pair, or start from the pretrained files (or from scratch)."""
        p, paths, log, trainer = self.p, self.paths, self.log, self.trainer
        g_path, d_path = latest_checkpoint(paths.root, "G"), latest_checkpoint(paths.root, "D")
        if g_path is None or d_path is None:
            if p.pretrained_g:
                load_pretrained(net_g, p.pretrained_g, "generator", log)
            if p.pretrained_d:
                load_pretrained(net_d.inner, p.pretrained_d, "discriminator", log)
            if not p.pretrained_g and not p.pretrained_d:
                log("No pretrained G/D: training from scratch (needs many more epochs).")
            return 1, 0, None
        g_ck, d_ck = load_file(g_path), load_file(d_path)
        for module, optim, ck, what in ((net_g, trainer.optim_g, g_ck, "G"), (net_d.inner, trainer.optim_d, d_ck, "D")):
            missing, mismatched = load_matching(module, ck["model"])
            if missing or mismatched:
                raise InvalidInputError(
                    f"Checkpoint {what} in {paths.root.name} does not match this model "
                    f"({len(missing)} missing, {len(mismatched)} other shapes).",
                    "Use a new experiment name, or the same version / sample rate / pitch setting as before.")
            try:
                optim.load_state_dict(ck["optimizer"])
            except (KeyError, ValueError) as exc:
                log(f"Optimizer state of {what} not restored ({exc}); starting it fresh.")
        start_epoch = int(g_ck.get("iteration", 0)) + 1
        global_step = int(g_ck.get("global_step", (start_epoch - 1) * self.steps_per_epoch))
        log(f"Resumed from {g_path.name} / {d_path.name}: epoch {start_epoch - 1} done, step {global_step}.")
        return start_epoch, global_step, g_path

    def stop_asked(self) -> bool:
        return _cancel_requested(self.channel, self.world, self.device)

    def save(self, epoch: int, finishing: bool) -> tuple[list[Path], Path | None]:
        """Rank 0: the G/D pair and (when asked) a small model; the channel hears of the save."""
        p, job = self.p, self.job
        pair = _save_pair(self.trainer, self.paths, epoch, self.global_step, self.base_lr, p.keep_latest_only)
        self.log(f"Saved G_{self.global_step}.pth / D_{self.global_step}.pth (epoch {epoch}).")
        small = None
        if p.save_every_weights:
            target = Path(job.weights_dir) / f"{job.exp_name}_e{epoch}_s{self.global_step}.pth"
            small = _save_small(self.trainer, job, target, epoch, self.global_step)
            self.log(f"Saved small model {target.name}.")
        self.channel.saved({"epoch": epoch, "step": self.global_step, "small_model": str(small) if small else None,
                            "checkpoints": [str(c) for c in pair], "final": finishing})
        return pair, small

    def merged_log(self, epoch: int, count: int, means: dict[str, float], seconds: float) -> None:
        """Every rank's epoch in rank 0's log (several processes, possibly on several machines)."""
        import socket

        import torch.distributed as dist

        mine = {"rank": self.rank, "node": self.job.node_rank, "host": socket.gethostname(), "device": str(self.device),
                "steps": count, "mel": means.get("loss_mel"), "seconds_per_step": seconds}
        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, mine)
        for r in gathered:
            if r is not None and r["rank"] != 0:
                mel = f"{r['mel']:.3f}" if isinstance(r["mel"], float) else "-"
                self.log(f"  epoch {epoch} rank {r['rank']} (node {r['node']} {r['host']}, {r['device']}): "
                         f"{r['steps']} steps, mel {mel}, {r['seconds_per_step']:.2f} s/step")


def _fmt_eta(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _run_epochs(run: _Run) -> dict[str, Any]:
    p, job, trainer, channel, log = run.p, run.job, run.trainer, run.channel, run.log
    metrics = MetricsWriter(run.paths, run.is_main)
    total_epochs = p.total_epoch
    run_steps_planned = max(0, total_epochs - run.start_epoch + 1) * run.steps_per_epoch
    if p.max_steps:
        run_steps_planned = min(run_steps_planned, p.max_steps) if run_steps_planned else 0
    where = f"{job.nnodes} nodes, this one node {job.node_rank}: " if job.nnodes > 1 else ""
    log(f"Training {run.paths.root.name}: {run.items} items, {run.steps_per_epoch} steps/epoch x {run.world} "
        f"process(es) [{where}{', '.join(job.devices)}], batch {p.batch_size}/process, epochs "
        f"{run.start_epoch}..{total_epochs}, precision {trainer.amp_dtype or 'fp32'}.")
    checkpoints: list[Path] = []
    small_models: list[Path] = []
    run_steps = 0
    step_times: list[float] = []
    last: StepStats | None = None
    epoch = run.start_epoch - 1
    stopped_early = False
    final_weights: Path | None = None
    trainer.net_g.train()
    trainer.net_d.train()
    try:
        for epoch in range(run.start_epoch, total_epochs + 1):
            run.sampler.set_epoch(epoch)
            sums: dict[str, float] = {}
            count = 0
            for batch in run.loader:
                if run.stop_asked():
                    raise Cancelled()
                t0 = time.perf_counter()
                last = trainer.step(batch)
                dt = time.perf_counter() - t0
                step_times.append(dt)
                run.global_step += 1
                run_steps += 1
                count += 1
                for k, v in last.as_dict().items():
                    sums[k] = sums.get(k, 0.0) + v
                if run.is_main:
                    mean_dt = sum(step_times[-50:]) / len(step_times[-50:])
                    remaining = max(0, run_steps_planned - run_steps)
                    channel.progress(run_steps / max(1, run_steps_planned),
                                     msg("progress.train_epoch", epoch=epoch, epochs=total_epochs, step=run.global_step,
                                         loss_mel=float(last.loss_mel), eta=_fmt_eta(remaining * mean_dt)))
                    if run.global_step % p.log_interval == 0 or run_steps == 1:
                        metrics.write({"kind": "step", "epoch": epoch, "step": run.global_step,
                                       "lr": trainer.optim_g.param_groups[0]["lr"], **last.as_dict(),
                                       "seconds_per_step": dt, "time": time.time()})
                if p.max_steps and run_steps >= p.max_steps:
                    stopped_early = True
                    break
            for sched in run.schedulers:
                sched.step()
            means = {k: v / count for k, v in sums.items()} if count else {}
            seconds = sum(step_times[-count:]) / count if count else 0.0
            if run.is_main and count:
                metrics.write({"kind": "epoch", "epoch": epoch, "step": run.global_step,
                               "lr": trainer.optim_g.param_groups[0]["lr"], **means, "seconds_per_step": seconds,
                               "time": time.time()})
                log(f"Epoch {epoch}/{total_epochs}: step {run.global_step}, mel {means['loss_mel']:.3f}, "
                    f"kl {means['loss_kl']:.3f}, fm {means['loss_fm']:.3f}, gen {means['loss_gen']:.3f}, "
                    f"disc {means['loss_disc']:.3f}, {seconds:.2f} s/step.")
            if run.world > 1:
                run.merged_log(epoch, count, means, seconds)
            if run.stop_asked():
                raise Cancelled()  # asked during the last step: do not start a save
            finishing = epoch >= total_epochs or stopped_early
            if run.is_main and (epoch % p.save_every_epoch == 0 or finishing):
                pair, small = run.save(epoch, finishing)
                checkpoints += pair
                small_models += [small] if small else []
            if stopped_early:
                break
        if run.is_main:
            final_weights = Path(job.weights_dir) / f"{job.exp_name}.pth"
            _save_small(trainer, job, final_weights, epoch, run.global_step)
            log(f"Training done: {final_weights}")
    finally:
        metrics.close()
    return {
        "weights": str(final_weights) if final_weights else None,
        "epochs": epoch,
        "steps": run.global_step,
        "checkpoints": [str(c) for c in checkpoints],
        "small_models": [str(s) for s in small_models],
        "last_losses": last.as_dict() if last else {},
        "seconds_per_step": (sorted(step_times)[len(step_times) // 2] if step_times else 0.0),
        "resumed_from": str(run.resumed) if run.resumed else None,
        "rank": run.rank,
        "pid": os.getpid(),
    }
