"""RVC training: preprocess -> pitch -> content features -> GAN training.

The training loop is upstream RVC's: per step the discriminator learns on
(real slice, generated slice) with the LSGAN loss, then the generator
learns on adversarial + feature-matching + mel L1 x c_mel + KL x c_kl.
AdamW with the config's lr/betas/eps, the lr decays by ``lr_decay`` every
epoch, batches group pieces of similar length, the generator decodes a
random segment of each item. Mixed precision (bf16, or fp16 with a grad
scaler) is used only on CUDA.

Checkpoints are upstream's: ``G_<step>.pth``/``D_<step>.pth`` holding
``model``, ``iteration`` (epoch), ``optimizer``, ``learning_rate`` (plus our
``global_step``), written atomically; training resumes from the highest
numbered pair. Each save can also write a small inference model
``weights/<exp>_e<E>_s<S>.pth``; the end writes ``weights/<exp>.pth``.

Several GPUs train with DistributedDataParallel (NCCL; gloo on CPU), one
process per device started here (no torchrun). One device trains in the
calling process. Cancel is honoured at step boundaries: nothing is saved
half-written, the last complete checkpoint stays the resume point.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import queue as queue_mod
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch.nn import functional as F

from engines.core.messages import msg
from engines.core.atomic import torch_save
from engines.core.errors import Cancelled, InvalidInputError, VoiceLabError
from engines.core.hooks import Hooks, ensure_hooks
from engines.core.params import validate
from engines.rvc.train.experiment import (
    ExperimentPaths,
    experiment_paths,
    latest_checkpoint,
    list_checkpoints,
)
from engines.rvc.train.losses import (
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
    kl_loss,
)
from engines.rvc.train.mel_processing import mel_spectrogram_torch, spec_to_mel_torch
from engines.rvc.train.params import F0_METHOD_CHOICES, TrainParams, TrainResult

# ---------------------------------------------------------------------------
# configuration helpers


def parse_gpus(spec: str) -> list[int]:
    """"0-1" / "0,1" / "0 1" -> [0, 1]; "" -> []."""
    text = (spec or "").replace(",", "-").replace(" ", "-")
    try:
        return [int(p) for p in text.split("-") if p.strip() != ""]
    except ValueError as exc:
        raise InvalidInputError(f"GPU list '{spec}' is not valid.", "Write GPU ids separated by '-', e.g. 0-1.") from exc


def training_devices(params: TrainParams, device_pref: str = "auto") -> list[str]:
    """One device per training process: the chosen GPUs, all visible GPUs, or CPU slots."""
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


@dataclass
class TrainJob:
    """Everything a training process needs (picklable, for spawned ranks)."""

    exp_dir: str
    weights_dir: str
    exp_name: str
    params: dict[str, Any]
    config: dict[str, Any]  # upstream config.json (train/data/model)
    model_config: list[Any]  # 18-value small-model config
    devices: list[str]
    master_port: int = 0

    @property
    def p(self) -> TrainParams:
        return TrainParams(**self.params)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------
# the GAN step


@dataclass
class StepStats:
    loss_disc: float
    loss_gen: float
    loss_fm: float
    loss_mel: float
    loss_kl: float
    loss_gen_all: float
    grad_norm_d: float
    grad_norm_g: float

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


class GANTrainer:
    """One RVC generator/discriminator pair with their optimizers; ``step(batch)`` is one training step.

    ``net_g``/``net_d`` may be DDP-wrapped; ``generator``/``discriminator``
    give the bare modules (for saving).
    """

    def __init__(self, net_g: torch.nn.Module, net_d: torch.nn.Module, config: dict[str, Any], *, f0: bool,
                 device: torch.device, precision: str = "auto", grad_clip: float = 0.0) -> None:
        from engines.core.device import amp_dtype

        tr, data = config["train"], config["data"]
        self.net_g, self.net_d = net_g, net_d
        self.f0 = f0
        self.device = device
        self.data = data
        self.c_mel, self.c_kl = float(tr["c_mel"]), float(tr["c_kl"])
        self.segment_size = int(tr["segment_size"])
        self.hop = int(data["hop_length"])
        self.grad_clip = float(grad_clip)
        betas = tuple(tr["betas"])
        # fused AdamW: one kernel per step instead of a Python loop over ~300 tensors (CPU and CUDA)
        fused = self.fused = device.type in ("cpu", "cuda")
        self.optim_g = torch.optim.AdamW(net_g.parameters(), tr["learning_rate"], betas=betas, eps=tr["eps"], fused=fused)
        self.optim_d = torch.optim.AdamW(net_d.parameters(), tr["learning_rate"], betas=betas, eps=tr["eps"], fused=fused)
        self.amp_dtype = amp_dtype(device, precision)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

    @property
    def generator(self) -> torch.nn.Module:
        return getattr(self.net_g, "module", self.net_g)

    @property
    def discriminator(self) -> torch.nn.Module:
        d = getattr(self.net_d, "module", self.net_d)
        return getattr(d, "inner", d)

    def _autocast(self) -> Any:
        from engines.core.device import autocast

        return autocast(self.device, self.amp_dtype)

    def _clip(self, module: torch.nn.Module) -> float:
        limit = self.grad_clip if self.grad_clip > 0 else float("inf")
        params = [p for p in module.parameters() if p.grad is not None]
        if not params:
            return 0.0
        return float(torch.nn.utils.clip_grad_norm_(params, limit))

    def step(self, batch: Sequence[torch.Tensor]) -> StepStats:
        """One discriminator + one generator update on a collated batch."""
        from engines.rvc.models.commons import slice_segments

        batch = [t.to(self.device, non_blocking=True) for t in batch]
        if self.f0:
            phone, phone_lengths, pitch, pitchf, spec, spec_lengths, wave, _wave_lengths, sid = batch
            g_inputs = (phone, phone_lengths, pitch, pitchf, spec, spec_lengths, sid)
        else:
            phone, phone_lengths, spec, spec_lengths, wave, _wave_lengths, sid = batch
            g_inputs = (phone, phone_lengths, spec, spec_lengths, sid)
        d = self.data
        seg_frames = self.segment_size // self.hop
        with self._autocast():
            y_hat, ids_slice, _x_mask, z_mask, (_z, z_p, m_p, logs_p, _m_q, logs_q) = self.net_g(*g_inputs)
            mel = spec_to_mel_torch(spec.float(), d["filter_length"], d["n_mel_channels"], d["sampling_rate"],
                                    d["mel_fmin"], d["mel_fmax"])
            y_mel = slice_segments(mel, ids_slice, seg_frames)
            y_hat_mel = mel_spectrogram_torch(y_hat.float().squeeze(1), d["filter_length"], d["n_mel_channels"],
                                              d["sampling_rate"], d["hop_length"], d["win_length"], d["mel_fmin"],
                                              d["mel_fmax"])
            wave = slice_segments(wave, ids_slice * self.hop, self.segment_size)
            real_scores, fake_scores, _, _ = self.net_d(wave, y_hat.detach())
            loss_disc, _, _ = discriminator_loss(real_scores, fake_scores)
        self.optim_d.zero_grad(set_to_none=True)
        self.scaler.scale(loss_disc).backward()
        self.scaler.unscale_(self.optim_d)
        grad_norm_d = self._clip(self.net_d)
        self.scaler.step(self.optim_d)

        # The generator loss needs gradients w.r.t. y_hat only: the discriminator's weights are
        # frozen for this pass (upstream computes their gradients and throws them away at the
        # next zero_grad), and under DDP the pass skips the discriminator's gradient all-reduce.
        with self._autocast(), _frozen(self.discriminator), _no_sync(self.net_d):
            _, fake_scores, fmap_r, fmap_g = self.net_d(wave, y_hat)
            n = min(y_mel.shape[-1], y_hat_mel.shape[-1])
            loss_mel = F.l1_loss(y_mel[..., :n].float(), y_hat_mel[..., :n].float()) * self.c_mel
            loss_kl = kl_loss(z_p, logs_q, m_p, logs_p, z_mask) * self.c_kl
            loss_fm = feature_matching_loss(fmap_r, fmap_g)
            loss_gen, _ = generator_loss(fake_scores)
            loss_gen_all = loss_gen + loss_fm + loss_mel + loss_kl
        self.optim_g.zero_grad(set_to_none=True)
        self.scaler.scale(loss_gen_all).backward()
        self.scaler.unscale_(self.optim_g)
        grad_norm_g = self._clip(self.net_g)
        self.scaler.step(self.optim_g)
        self.scaler.update()
        return StepStats(loss_disc.item(), loss_gen.item(), loss_fm.item(), loss_mel.item(), loss_kl.item(),
                         loss_gen_all.item(), grad_norm_d, grad_norm_g)


class PairedDiscriminator(torch.nn.Module):
    """Runs each sub-discriminator once on [real; fake] stacked along the batch.

    Same outputs as ``MultiPeriodDiscriminator.forward(y, y_hat)`` (the
    discriminators have no batch-coupled layers), but every weight-normed
    weight is computed and laid out once per call instead of twice, which is
    most of a CPU step with the full-size discriminator. ``inner`` is the
    upstream-compatible module that is saved and loaded.
    """

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor) -> tuple[list, list, list, list]:
        n = y.shape[0]
        both = torch.cat([y, y_hat.to(y.dtype)], dim=0)
        real, fake, fmap_real, fmap_fake = [], [], [], []
        for disc in self.inner.discriminators:
            score, fmap = disc(both)
            real.append(score[:n])
            fake.append(score[n:])
            fmap_real.append([f[:n] for f in fmap])
            fmap_fake.append([f[n:] for f in fmap])
        return real, fake, fmap_real, fmap_fake


@contextlib.contextmanager
def _frozen(module: torch.nn.Module) -> Iterator[None]:
    """Parameters of ``module`` do not require grad inside the block (restored after)."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _no_sync(module: torch.nn.Module) -> contextlib.AbstractContextManager:
    """DDP's no_sync for a wrapped module; nothing otherwise."""
    return module.no_sync() if hasattr(module, "no_sync") else contextlib.nullcontext()


def build_networks(model_config: Sequence[Any], config: dict[str, Any], version: str, f0: bool
                   ) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Generator (training slice from ``config``) and discriminator for (version, f0).

    The discriminator comes wrapped in :class:`PairedDiscriminator`; load and
    save its ``inner`` module (upstream's keys).
    """
    from engines.rvc.models.discriminator import MultiPeriodDiscriminator
    from engines.rvc.models.synthesizer import build_synthesizer

    cfg = list(model_config)
    cfg[1] = int(config["train"]["segment_size"]) // int(config["data"]["hop_length"])
    return build_synthesizer(cfg, version, f0), PairedDiscriminator(MultiPeriodDiscriminator(version))


def load_matching(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    """Load every key whose shape matches; returns (missing keys, keys with another shape).

    Keys the module does not have are ignored (e.g. ``enc_q`` absent in small models).
    """
    own = module.state_dict()
    usable, mismatched, missing = {}, [], []
    for k, v in own.items():
        if k not in state:
            missing.append(k)
        elif tuple(state[k].shape) != tuple(v.shape):
            mismatched.append(k)
        else:
            usable[k] = state[k].to(v.dtype)
    module.load_state_dict(usable, strict=False)
    return missing, mismatched


def _load_file(path: str | Path) -> dict[str, Any]:
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InvalidInputError(f"Cannot read checkpoint {path}: {exc}", "Is it a PyTorch .pth file?") from exc
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path} is not an RVC checkpoint (no dict inside).")
    return data


def load_pretrained(module: torch.nn.Module, path: str | Path, what: str, log: Any) -> None:
    """Initialise from a pretrained ``{"model": state_dict}`` file (or a small model's ``weight``)."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"Pretrained {what} not found: {p}", "Check the path, or leave it empty to train from scratch.")
    data = _load_file(p)
    state = data.get("model", data.get("weight"))
    if not isinstance(state, dict):
        raise InvalidInputError(f"{p.name} has no 'model' state dict; it is not a pretrained RVC {what}.")
    missing, mismatched = load_matching(module, state)
    log(f"Loaded pretrained {what} {p.name}: {len(state) - len(mismatched)} tensors"
        + (f"; kept random: {len(missing)} missing ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})"
           if missing else "")
        + (f", {len(mismatched)} with other shapes ({', '.join(mismatched[:3])}{', ...' if len(mismatched) > 3 else ''})"
           if mismatched else ""))
    if len(mismatched) + len(missing) > 0.5 * len(module.state_dict()):
        raise InvalidInputError(
            f"Pretrained {what} {p.name} does not fit this model ({len(mismatched)} tensors with other shapes, "
            f"{len(missing)} missing).", "Use the pretrained file for the same version, sample rate and pitch setting.")


# ---------------------------------------------------------------------------
# messages from training processes


class Channel:
    """How a training process reports: directly to hooks, or through a queue to the parent."""

    def __init__(self, hooks: Hooks | None = None, queue: Any = None, cancel_event: Any = None) -> None:
        self.hooks, self.queue, self.cancel_event = hooks, queue, cancel_event

    def log(self, line: str) -> None:
        if self.hooks is not None:
            self.hooks.log(line)
        elif self.queue is not None:
            self.queue.put(("log", line))

    def progress(self, frac: float, msg: str) -> None:
        if self.hooks is not None:
            self.hooks.progress(frac, msg)
        elif self.queue is not None:
            self.queue.put(("progress", frac, msg))

    def cancelled(self) -> bool:
        if self.hooks is not None:
            return self.hooks.cancelled
        return bool(self.cancel_event is not None and self.cancel_event.is_set())


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
# one training process


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

    p = job.p
    save_small_model(trainer.generator.state_dict(), sr_tag=p.sr, f0=bool(p.f0), version=p.version,
                     info=f"{epoch}epoch", config=list(job.model_config), path=target,
                     extra={"epoch": epoch, "step": step, "exp_name": job.exp_name})
    return target


def _cancel_requested(channel: Channel, world: int, device: torch.device) -> bool:
    """Rank 0's cancel flag, agreed by every rank (so all stop at the same step)."""
    flag = torch.tensor([1.0 if channel.cancelled() else 0.0], device=device)
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item() > 0)


def train_process(rank: int, world: int, job: TrainJob, channel: Channel) -> dict[str, Any]:
    """Train on ``job.devices[rank]``; rank 0 logs, saves and reports. Returns a summary (rank 0)."""
    from engines.rvc.train.data import (
        BucketBatchSampler,
        RVCDataset,
        collate,
        read_filelist,
    )

    p = job.p
    paths = ExperimentPaths(Path(job.exp_dir))
    device = torch.device(job.devices[rank])
    is_main = rank == 0
    log = channel.log if is_main else (lambda _line: None)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    elif world > 1:  # CPU ranks share the cores: no oversubscription
        from engines.rvc.train.experiment import environ_cpu_count

        torch.set_num_threads(max(1, environ_cpu_count() // world))
    if world > 1:
        import datetime

        import torch.distributed as dist

        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                init_method=f"tcp://127.0.0.1:{job.master_port}", rank=rank, world_size=world,
                                timeout=datetime.timedelta(minutes=30))
    try:
        return _train_loop(rank, world, job, channel, p, paths, device, is_main, log,
                           (BucketBatchSampler, RVCDataset, collate, read_filelist))
    finally:
        if world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def _train_loop(rank: int, world: int, job: TrainJob, channel: Channel, p: TrainParams, paths: ExperimentPaths,
                device: torch.device, is_main: bool, log: Any, data_api: tuple) -> dict[str, Any]:
    BucketBatchSampler, RVCDataset, collate, read_filelist = data_api
    torch.manual_seed(p.seed)
    cfg = job.config
    dataset = RVCDataset(read_filelist(paths.filelist, p.f0), cfg["data"], p.f0, spec_cache=paths.spec_cache)
    if len(dataset) == 0:
        raise InvalidInputError("The filelist is empty.", "Run preprocessing and feature extraction first.")
    sampler = BucketBatchSampler(dataset.lengths, p.batch_size, num_replicas=world, rank=rank, shuffle=True, seed=p.seed)
    workers = p.loader_workers
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
        pin_memory=device.type == "cuda", persistent_workers=workers > 0,
        multiprocessing_context="spawn" if workers > 0 else None,
    )
    net_g, net_d = build_networks(job.model_config, cfg, p.version, p.f0)
    net_g.to(device)
    net_d.to(device)
    trainer = GANTrainer(net_g, net_d, cfg, f0=p.f0, device=device, precision=p.precision, grad_clip=p.grad_clip)
    steps_per_epoch = len(sampler)
    base_lr = float(cfg["train"]["learning_rate"])
    gamma = float(cfg["train"]["lr_decay"])

    # resume, or start from pretrained / scratch
    start_epoch, global_step, resumed = 1, 0, None
    g_path, d_path = latest_checkpoint(paths.root, "G"), latest_checkpoint(paths.root, "D")
    if g_path is not None and d_path is not None:
        g_ck, d_ck = _load_file(g_path), _load_file(d_path)
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
        global_step = int(g_ck.get("global_step", (start_epoch - 1) * steps_per_epoch))
        resumed = g_path
        log(f"Resumed from {g_path.name} / {d_path.name}: epoch {start_epoch - 1} done, step {global_step}.")
    else:
        if p.pretrained_g:
            load_pretrained(net_g, p.pretrained_g, "generator", log)
        if p.pretrained_d:
            load_pretrained(net_d.inner, p.pretrained_d, "discriminator", log)
        if not p.pretrained_g and not p.pretrained_d:
            log("No pretrained G/D: training from scratch (needs many more epochs).")
    for optim in (trainer.optim_g, trainer.optim_d):
        for group in optim.param_groups:
            group["lr"] = base_lr * gamma ** (start_epoch - 1)
            group["initial_lr"] = base_lr
            if trainer.fused:  # an upstream optimizer state would switch fused steps off
                group["fused"], group["foreach"] = True, None
    sched_g = torch.optim.lr_scheduler.ExponentialLR(trainer.optim_g, gamma=gamma)
    sched_d = torch.optim.lr_scheduler.ExponentialLR(trainer.optim_d, gamma=gamma)

    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        trainer.net_g = DDP(net_g, device_ids=ids)
        trainer.net_d = DDP(net_d, device_ids=ids)

    metrics = MetricsWriter(paths, is_main)
    total_epochs = p.total_epoch
    run_steps_planned = max(0, total_epochs - start_epoch + 1) * steps_per_epoch
    if p.max_steps:
        run_steps_planned = min(run_steps_planned, p.max_steps) if run_steps_planned else 0
    log(f"Training {paths.root.name}: {len(dataset)} items, {steps_per_epoch} steps/epoch x {world} process(es) "
        f"[{', '.join(job.devices)}], batch {p.batch_size}/process, epochs {start_epoch}..{total_epochs}, "
        f"precision {trainer.amp_dtype or 'fp32'}.")
    checkpoints: list[Path] = []
    small_models: list[Path] = []
    run_steps = 0
    step_times: list[float] = []
    last: StepStats | None = None
    epoch = start_epoch - 1
    stopped_early = False
    final_weights: Path | None = None
    trainer.net_g.train()
    trainer.net_d.train()
    try:
        for epoch in range(start_epoch, total_epochs + 1):
            sampler.set_epoch(epoch)
            sums: dict[str, float] = {}
            count = 0
            for batch in loader:
                if _cancel_requested(channel, world, device):
                    raise Cancelled()
                t0 = time.perf_counter()
                last = trainer.step(batch)
                dt = time.perf_counter() - t0
                step_times.append(dt)
                global_step += 1
                run_steps += 1
                count += 1
                for k, v in last.as_dict().items():
                    sums[k] = sums.get(k, 0.0) + v
                if is_main:
                    mean_dt = sum(step_times[-50:]) / len(step_times[-50:])
                    remaining = max(0, run_steps_planned - run_steps)
                    channel.progress(run_steps / max(1, run_steps_planned),
                                     msg("progress.train_epoch", epoch=epoch, epochs=total_epochs, step=global_step,
                                         loss_mel=float(last.loss_mel), eta=_fmt_eta(remaining * mean_dt)))
                    if global_step % p.log_interval == 0 or run_steps == 1:
                        metrics.write({"kind": "step", "epoch": epoch, "step": global_step,
                                       "lr": trainer.optim_g.param_groups[0]["lr"], **last.as_dict(),
                                       "seconds_per_step": dt, "time": time.time()})
                if p.max_steps and run_steps >= p.max_steps:
                    stopped_early = True
                    break
            sched_g.step()
            sched_d.step()
            if is_main and count:
                means = {k: v / count for k, v in sums.items()}
                metrics.write({"kind": "epoch", "epoch": epoch, "step": global_step,
                               "lr": trainer.optim_g.param_groups[0]["lr"], **means,
                               "seconds_per_step": sum(step_times[-count:]) / count, "time": time.time()})
                log(f"Epoch {epoch}/{total_epochs}: step {global_step}, mel {means['loss_mel']:.3f}, "
                    f"kl {means['loss_kl']:.3f}, fm {means['loss_fm']:.3f}, gen {means['loss_gen']:.3f}, "
                    f"disc {means['loss_disc']:.3f}, {sum(step_times[-count:]) / count:.2f} s/step.")
            if _cancel_requested(channel, world, device):
                raise Cancelled()  # asked during the last step: do not start a save
            finishing = epoch >= total_epochs or stopped_early
            if is_main and (epoch % p.save_every_epoch == 0 or finishing):
                checkpoints += _save_pair(trainer, paths, epoch, global_step, base_lr, p.keep_latest_only)
                log(f"Saved G_{global_step}.pth / D_{global_step}.pth (epoch {epoch}).")
                if p.save_every_weights:
                    target = Path(job.weights_dir) / f"{job.exp_name}_e{epoch}_s{global_step}.pth"
                    small_models.append(_save_small(trainer, job, target, epoch, global_step))
                    log(f"Saved small model {target.name}.")
            if stopped_early:
                break
        if is_main:
            final_weights = Path(job.weights_dir) / f"{job.exp_name}.pth"
            _save_small(trainer, job, final_weights, epoch, global_step)
            log(f"Training done: {final_weights}")
    finally:
        metrics.close()
    return {
        "weights": str(final_weights) if final_weights else None,
        "epochs": epoch,
        "steps": global_step,
        "checkpoints": [str(c) for c in checkpoints],
        "small_models": [str(s) for s in small_models],
        "last_losses": last.as_dict() if last else {},
        "seconds_per_step": (sorted(step_times)[len(step_times) // 2] if step_times else 0.0),
        "resumed_from": str(resumed) if resumed else None,
    }


def _fmt_eta(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _rank_entry(rank: int, world: int, job: TrainJob, queue: Any, cancel_event: Any) -> None:
    """Spawned process body: train, send the summary (rank 0) or the error to the parent."""
    channel = Channel(queue=queue, cancel_event=cancel_event)
    try:
        summary = train_process(rank, world, job, channel)
        if rank == 0:
            queue.put(("result", summary))
    except Cancelled:
        queue.put(("cancelled", rank))
    except BaseException as exc:  # noqa: BLE001 - forwarded to the parent with its message
        import traceback

        hint = exc.hint if isinstance(exc, VoiceLabError) else ""
        queue.put(("error", rank, str(exc if not isinstance(exc, VoiceLabError) else exc.message), hint,
                   traceback.format_exc()))
        raise SystemExit(1)


def _launch_ddp(job: TrainJob, hooks: Hooks) -> dict[str, Any]:
    """Start one process per device, relay their log/progress, stop them all on cancel or failure."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    cancel_event = ctx.Event()
    world = len(job.devices)
    job.master_port = job.master_port or _free_port()
    procs = [ctx.Process(target=_rank_entry, args=(r, world, job, queue, cancel_event), daemon=False)
             for r in range(world)]
    for proc in procs:
        proc.start()
    result: dict[str, Any] | None = None
    error: tuple | None = None
    cancelled = False
    try:
        while True:
            if hooks.cancelled and not cancel_event.is_set():
                cancel_event.set()
                hooks.log("Cancel requested: stopping at the next step.")
            try:
                msg = queue.get(timeout=0.2)
            except queue_mod.Empty:
                msg = None
            if msg is not None:
                kind = msg[0]
                if kind == "log":
                    hooks.log(msg[1])
                elif kind == "progress":
                    hooks.progress(msg[1], msg[2])
                elif kind == "result":
                    result = msg[1]
                elif kind == "cancelled":
                    cancelled = True
                elif kind == "error" and error is None:
                    error = msg
                continue
            if all(not p.is_alive() for p in procs):
                break
            if error is not None or any(p.exitcode not in (None, 0) for p in procs):
                # One rank failed: the others would wait forever in a collective.
                time.sleep(1.0)
                for p in procs:
                    if p.is_alive():
                        p.terminate()
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
    if error is not None:
        hooks.log(error[4])
        raise VoiceLabError(f"Training process {error[1]} failed: {error[2]}", error[3])
    if cancelled or hooks.cancelled:
        raise Cancelled()
    if result is None:
        codes = [p.exitcode for p in procs]
        raise VoiceLabError(f"Training processes exited without a result (exit codes {codes}).",
                            "See the job log; a process may have run out of memory.")
    return result


def train_model(ws: Any, params: TrainParams, hooks: Hooks | None = None) -> TrainResult:
    """Stage 4: GAN training on the experiment's filelist (one process or DDP)."""
    from engines.core.atomic import write_json
    from engines.rvc.models.configs import train_config

    hooks = ensure_hooks(hooks)
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
    devices = training_devices(params, ws.settings.device)
    job = TrainJob(str(paths.root), str(ws.weights), params.exp_name, dataclasses.asdict(params), config,
                   model_config_for(params), devices)
    if len(devices) == 1:
        summary = train_process(0, 1, job, Channel(hooks=hooks))
    else:
        summary = _launch_ddp(job, hooks)
    return TrainResult(
        exp_dir=paths.root,
        weights=Path(summary["weights"]) if summary.get("weights") else None,
        epochs=int(summary["epochs"]),
        steps=int(summary["steps"]),
        checkpoints=[Path(c) for c in summary["checkpoints"]],
        small_models=[Path(s) for s in summary["small_models"]],
        metrics=paths.metrics,
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
    n = write_filelist(paths, params.version, params.f0, sr_hz, speaker_id=params.speaker_id, mute=params.add_mute)
    hooks.log(f"filelist.txt: {n} entries.")
    return n


def run_rvc_training(ws: Any, params: TrainParams, hooks: Hooks | None = None) -> TrainResult:
    """Preprocess -> pitch -> features -> filelist -> train, each stage cached/skippable."""
    hooks = ensure_hooks(hooks)
    validate(params)
    prepare_experiment(ws, params, hooks.scaled(0.0, 0.15))
    hooks.check_cancel()
    return train_model(ws, params, hooks.scaled(0.15, 1.0))


__all__ = ["F0_METHOD_CHOICES", "TrainParams", "TrainResult", "GANTrainer", "run_rvc_training", "prepare_experiment", "train_model",
           "build_networks", "load_pretrained"]
