"""RVC's GAN losses (least-squares GAN, feature matching, KL), as upstream defines them.

All losses are computed in fp32 even under autocast, as upstream does, so
fp16/bf16 training does not lose the small differences they measure.
"""

from __future__ import annotations

from typing import Sequence

import torch


def feature_matching_loss(fmap_real: Sequence[Sequence[torch.Tensor]],
                          fmap_fake: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """2 x the sum over discriminators and layers of mean |real - fake| (real detached)."""
    total = torch.zeros((), device=fmap_fake[0][0].device)
    for layers_real, layers_fake in zip(fmap_real, fmap_fake):
        for real, fake in zip(layers_real, layers_fake):
            total = total + torch.mean(torch.abs(real.detach().float() - fake.float()))
    return total * 2


def discriminator_loss(real_scores: Sequence[torch.Tensor], fake_scores: Sequence[torch.Tensor]
                       ) -> tuple[torch.Tensor, list[float], list[float]]:
    """LSGAN discriminator loss: sum of mean (1 - D(real))^2 + mean D(fake)^2.

    Returns the total and the per-discriminator real/fake parts (floats, for logging).
    """
    total = torch.zeros((), device=real_scores[0].device)
    real_parts: list[float] = []
    fake_parts: list[float] = []
    for real, fake in zip(real_scores, fake_scores):
        real_loss = torch.mean((1 - real.float()) ** 2)
        fake_loss = torch.mean(fake.float() ** 2)
        total = total + real_loss + fake_loss
        real_parts.append(float(real_loss.detach()))
        fake_parts.append(float(fake_loss.detach()))
    return total, real_parts, fake_parts


def generator_loss(fake_scores: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """LSGAN generator loss: sum of mean (1 - D(fake))^2, and the per-discriminator parts."""
    total = torch.zeros((), device=fake_scores[0].device)
    parts: list[torch.Tensor] = []
    for fake in fake_scores:
        part = torch.mean((1 - fake.float()) ** 2)
        parts.append(part)
        total = total + part
    return total, parts


def kl_loss(z_p: torch.Tensor, logs_q: torch.Tensor, m_p: torch.Tensor, logs_p: torch.Tensor,
            z_mask: torch.Tensor) -> torch.Tensor:
    """KL between the posterior sample (flowed to the prior space) and the prior, per masked frame.

    All inputs [B, C, T]; ``z_mask`` [B, 1, T].
    """
    z_p, logs_q, m_p, logs_p, z_mask = (t.float() for t in (z_p, logs_q, m_p, logs_p, z_mask))
    kl = logs_p - logs_q - 0.5 + 0.5 * (z_p - m_p) ** 2 * torch.exp(-2.0 * logs_p)
    return torch.sum(kl * z_mask) / torch.sum(z_mask)
