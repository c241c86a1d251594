"""One RVC GAN training step, and building/initialising the networks it trains.

The step is upstream RVC's: the discriminator learns on (real slice, generated slice) with the LSGAN
loss, then the generator learns on adversarial + feature-matching + mel L1 x c_mel + KL x c_kl, with
AdamW (the config's lr/betas/eps). Mixed precision (bf16, or fp16 with a grad scaler) is used only on
CUDA. ``load_pretrained`` starts a run from upstream's pretrained G/D files.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch.nn import functional as F

from engines.core.errors import InvalidInputError
from engines.rvc.train.losses import (
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
    kl_loss,
)
from engines.rvc.train.mel_processing import mel_spectrogram_torch, spec_to_mel_torch

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


def load_file(path: str | Path) -> dict[str, Any]:
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
    data = load_file(p)
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
