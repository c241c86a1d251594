"""HiFi-GAN discriminators used to train RVC generators.

``MultiPeriodDiscriminator("v1")`` = one scale discriminator + periods
2, 3, 5, 7, 11, 17 (upstream MultiPeriodDiscriminator);
``MultiPeriodDiscriminator("v2")`` adds periods 23 and 37
(upstream MultiPeriodDiscriminatorV2). Keys and shapes match upstream's D_*.pth.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from engines.rvc.models.commons import LRELU_SLOPE, WNConv1d, WNConv2d, get_padding
from engines.rvc.models.configs import parse_version

PERIODS: dict[str, tuple[int, ...]] = {
    "v1": (2, 3, 5, 7, 11, 17),
    "v2": (2, 3, 5, 7, 11, 17, 23, 37),
}


class ScaleDiscriminator(nn.Module):
    """Grouped strided 1-D convs over the raw waveform."""

    def __init__(self, use_spectral_norm: bool = False) -> None:
        super().__init__()
        conv = _conv1d_factory(use_spectral_norm)
        self.convs = nn.ModuleList(
            [
                conv(1, 16, 15, 1, padding=7),
                conv(16, 64, 41, 4, groups=4, padding=20),
                conv(64, 256, 41, 4, groups=16, padding=20),
                conv(256, 1024, 41, 4, groups=64, padding=20),
                conv(1024, 1024, 41, 4, groups=256, padding=20),
                conv(1024, 1024, 5, 1, padding=2),
            ]
        )
        self.conv_post = conv(1024, 1, 3, 1, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        fmap = []
        for layer in self.convs:
            x = F.leaky_relu(layer(x), LRELU_SLOPE)
            fmap.append(x)
        x = self.conv_post(x)
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


class PeriodDiscriminator(nn.Module):
    """2-D convs over the waveform folded into rows of ``period`` samples."""

    def __init__(self, period: int, kernel_size: int = 5, stride: int = 3, use_spectral_norm: bool = False) -> None:
        super().__init__()
        self.period = period
        conv = _conv2d_factory(use_spectral_norm)
        pad = (get_padding(kernel_size, 1), 0)
        chans = [1, 32, 128, 512, 1024, 1024]
        strides = [stride, stride, stride, stride, 1]
        self.convs = nn.ModuleList(
            conv(chans[i], chans[i + 1], (kernel_size, 1), (strides[i], 1), padding=pad) for i in range(5)
        )
        self.conv_post = conv(1024, 1, (3, 1), 1, padding=(1, 0))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        fmap = []
        b, c, t = x.shape
        if t % self.period:
            pad = self.period - t % self.period
            x = F.pad(x, (0, pad), "reflect")
            t += pad
        x = x.view(b, c, t // self.period, self.period)
        for layer in self.convs:
            x = F.leaky_relu(layer(x), LRELU_SLOPE)
            fmap.append(x)
        x = self.conv_post(x)
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


def _conv1d_factory(use_spectral_norm: bool):
    if not use_spectral_norm:
        return WNConv1d
    return lambda *a, **k: nn.utils.spectral_norm(nn.Conv1d(*a, **k))


def _conv2d_factory(use_spectral_norm: bool):
    if not use_spectral_norm:
        return WNConv2d
    return lambda *a, **k: nn.utils.spectral_norm(nn.Conv2d(*a, **k))


class MultiPeriodDiscriminator(nn.Module):
    """The scale discriminator plus one period discriminator per period of ``version``."""

    def __init__(self, version: str = "v2", use_spectral_norm: bool = False) -> None:
        super().__init__()
        self.version = parse_version(version)
        self.discriminators = nn.ModuleList(
            [ScaleDiscriminator(use_spectral_norm)]
            + [PeriodDiscriminator(p, use_spectral_norm=use_spectral_norm) for p in PERIODS[self.version]]
        )

    def forward(
        self, y: torch.Tensor, y_hat: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[list[torch.Tensor]], list[list[torch.Tensor]]]:
        """Real y and generated y_hat [B, 1, T] -> (y_d_rs, y_d_gs, fmap_rs, fmap_gs)."""
        y_d_rs, y_d_gs, fmap_rs, fmap_gs = [], [], [], []
        for d in self.discriminators:
            r, fr = d(y)
            g, fg = d(y_hat)
            y_d_rs.append(r)
            y_d_gs.append(g)
            fmap_rs.append(fr)
            fmap_gs.append(fg)
        return y_d_rs, y_d_gs, fmap_rs, fmap_gs
