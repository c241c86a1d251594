"""Waveform decoders: the HiFi-GAN generator and its NSF (neural source-filter) variant.

The NSF variant adds a harmonic excitation built from the frame-rate f0:
a sine at f0 (amplitude 0.1) in voiced samples, Gaussian noise (0.003 voiced,
0.1/3 unvoiced; drawn through engines.rvc.models.noise), merged by a 1x1 linear +
tanh, and injected after every upsampling stage through strided convs.

The sine phase is the running sum of f0/sr over output samples (f0 held
constant over each frame), as upstream. We compute it per frame in float64
(frame start phase + in-frame ramp) and wrap it to [0, 1) before the sine,
so long inputs keep full precision without a sample-long float32 cumsum.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from engines.rvc.models import noise
from engines.rvc.models.commons import (
    LRELU_SLOPE,
    WNConvTranspose1d,
    as_int,
    conv1d_as_2d,
    make_resblocks,
)

SINE_AMP = 0.1
VOICED_NOISE_STD = 0.003


def sine_excitation(f0: torch.Tensor, upp: int, sample_rate: int) -> torch.Tensor:
    """Frame-rate f0 [B, T] (Hz, 0 = unvoiced) -> excitation [B, T*upp] before the merge layer."""
    f0 = f0.float()
    b, t = f0.shape
    rad = torch.remainder(f0 / sample_rate, 1.0)  # cycles per sample, per frame
    rad64 = rad.double()
    frame_start = (torch.cumsum(rad64, dim=1) - rad64) * upp  # phase before each frame's first sample
    frame_start = frame_start - torch.floor(frame_start)
    ramp = torch.arange(1, upp + 1, device=f0.device, dtype=torch.float64)
    phase = frame_start.unsqueeze(-1) + rad64.unsqueeze(-1) * ramp  # [B, T, upp]
    phase = phase - torch.floor(phase)
    sine = torch.sin(phase.mul_(2 * math.pi)).float().mul_(SINE_AMP).reshape(b, t * upp)
    voiced = (f0 > 0).to(sine.dtype)
    sine = sine.view(b, t, upp).mul_(voiced.unsqueeze(-1)).view(b, t * upp)
    if not noise.noise_is_zero():
        amp = voiced * VOICED_NOISE_STD + (1.0 - voiced) * (SINE_AMP / 3)
        amp = amp.unsqueeze(-1).expand(b, t, upp).reshape(b, t * upp)
        sine = sine + amp * noise.randn_like(sine)
    return sine


class HarmonicSource(nn.Module):
    """m_source: sine excitation merged by a 1->1 linear layer and tanh (key l_linear)."""

    def __init__(self, sample_rate: int) -> None:
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.l_linear = nn.Linear(1, 1)

    def forward(self, f0: torch.Tensor, upp: int) -> torch.Tensor:
        """f0 [B, T] -> source [B, 1, T*upp] in the layer's dtype."""
        exc = sine_excitation(f0, upp, self.sample_rate).to(self.l_linear.weight.dtype)
        w = self.l_linear.weight.reshape(())
        bias = self.l_linear.bias.reshape(())
        return torch.tanh(torch.addcmul(bias, exc, w)).unsqueeze(1)


class HiFiGANGenerator(nn.Module):
    """dec for models without f0: latent z [B, C, T] -> waveform [B, 1, T*hop]."""

    def __init__(
        self,
        initial_channel: int,
        resblock: str,
        resblock_kernel_sizes: Sequence[int],
        resblock_dilation_sizes: Sequence[Sequence[int]],
        upsample_rates: Sequence[int],
        upsample_initial_channel: int,
        upsample_kernel_sizes: Sequence[int],
        gin_channels: int = 0,
        source_sr: int | None = None,
    ) -> None:
        super().__init__()
        self.num_kernels = len(resblock_kernel_sizes)
        self.num_upsamples = len(upsample_rates)
        rates = [int(r) for r in upsample_rates]
        self.upp = math.prod(rates)
        # Registration order = upstream's state-dict order (source modules first).
        if source_sr is not None:
            self.m_source = HarmonicSource(source_sr)
            self.noise_convs = nn.ModuleList()
        self.conv_pre = nn.Conv1d(initial_channel, upsample_initial_channel, 7, 1, padding=3)
        self.ups = nn.ModuleList()
        blocks: list[nn.Module] = []
        ch = upsample_initial_channel
        for i, (u, k) in enumerate(zip(rates, upsample_kernel_sizes)):
            ch_in, ch = upsample_initial_channel // (2**i), upsample_initial_channel // (2 ** (i + 1))
            self.ups.append(WNConvTranspose1d(ch_in, ch, k, u, padding=(k - u) // 2))
            if source_sr is not None:
                # Bring the sample-rate source down to this stage's rate.
                stride = math.prod(rates[i + 1 :])
                if stride > 1:
                    self.noise_convs.append(nn.Conv1d(1, ch, stride * 2, stride=stride, padding=stride // 2))
                else:
                    self.noise_convs.append(nn.Conv1d(1, ch, 1))
            blocks += make_resblocks(resblock, ch, resblock_kernel_sizes, resblock_dilation_sizes)
        self.resblocks = nn.ModuleList(blocks)
        self.conv_post = nn.Conv1d(ch, 1, 7, 1, padding=3, bias=False)
        if gin_channels:
            self.cond = nn.Conv1d(gin_channels, upsample_initial_channel, 1)

    def _source(self, i: int, source: torch.Tensor | None) -> torch.Tensor | None:
        return None

    def _add_source_time_major(self, i: int, x3: torch.Tensor, source: torch.Tensor | None) -> bool:
        """Add stage i's source term into x3 [B, T, C] in place.

        Returns False when the caller must add ``_source(i, source)`` itself.
        Without a source there is nothing to add.
        """
        return source is None

    def _body(self, x: torch.Tensor, g: torch.Tensor | None, source: torch.Tensor | None) -> torch.Tensor:
        x = self.conv_pre(x)
        if g is not None:
            x = x + self.cond(g)
        if not torch.is_grad_enabled() and x.device.type == "cpu":
            return self._body_time_major(x, source)
        k = self.num_kernels
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            src = self._source(i, source)
            if src is not None:
                x = x.add_(src)
            xs = self.resblocks[i * k](x)
            for j in range(1, k):
                xs = xs.add_(self.resblocks[i * k + j](x))
            x = xs.div_(k)
        x = self.conv_post(F.leaky_relu_(x, 0.01))
        return torch.tanh_(x)

    def _body_time_major(self, x: torch.Tensor, source: torch.Tensor | None) -> torch.Tensor:
        """Inference on CPU: the same computation on [B, C, 1, T] channels-last tensors.

        Memory is time-major ([B, T, C]) throughout, which suits oneDNN's
        convolutions; activations and sums are done in place on fresh buffers.
        """
        x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        k = self.num_kernels
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu_(x, LRELU_SLOPE))
            b, c, _, t = x.shape
            x3 = x.permute(0, 2, 3, 1).view(b, t, c)  # the same memory, [B, T, C]
            if not self._add_source_time_major(i, x3, source):
                src = self._source(i, source)
                assert src is not None
                x3.add_(src.transpose(1, 2))
            xs = self.resblocks[i * k](x)
            for j in range(1, k):
                xs.add_(self.resblocks[i * k + j](x))
            x = xs.div_(k)
        x = conv1d_as_2d(self.conv_post, F.leaky_relu_(x, 0.01))
        return torch.tanh_(x).squeeze(2)

    def forward(
        self, x: torch.Tensor, g: torch.Tensor | None = None, n_res: int | torch.Tensor | None = None
    ) -> torch.Tensor:
        if n_res is not None:
            n = as_int(n_res)
            if n != x.shape[-1]:
                x = F.interpolate(x, size=n, mode="linear")
        return self._body(x, g, None)


class NSFGenerator(HiFiGANGenerator):
    """dec for f0 models: latent z [B, C, T] + frame f0 [B, T] -> waveform [B, 1, T*hop]."""

    def __init__(
        self,
        initial_channel: int,
        resblock: str,
        resblock_kernel_sizes: Sequence[int],
        resblock_dilation_sizes: Sequence[Sequence[int]],
        upsample_rates: Sequence[int],
        upsample_initial_channel: int,
        upsample_kernel_sizes: Sequence[int],
        gin_channels: int,
        sr: int,
    ) -> None:
        super().__init__(
            initial_channel,
            resblock,
            resblock_kernel_sizes,
            resblock_dilation_sizes,
            upsample_rates,
            upsample_initial_channel,
            upsample_kernel_sizes,
            gin_channels,
            source_sr=int(sr),
        )

    def _source(self, i: int, source: torch.Tensor | None) -> torch.Tensor | None:
        assert source is not None
        return self.noise_convs[i](source)

    def _add_source_time_major(self, i: int, x3: torch.Tensor, source: torch.Tensor | None) -> bool:
        # The source has one channel, so its strided conv is a matmul of the
        # source's sliding windows with the kernel, accumulated straight into x.
        assert source is not None
        conv = self.noise_convs[i]
        size, stride, pad = conv.kernel_size[0], conv.stride[0], conv.padding[0]  # type: ignore[index]
        src = source[:, 0]
        if pad:
            src = F.pad(src, (pad, pad))
        windows = src.unfold(-1, size, stride)  # [B, T, size]
        if windows.shape[1] != x3.shape[1]:
            return False
        kernel = conv.weight[:, 0, :].t().unsqueeze(0).expand(x3.shape[0], size, x3.shape[2])
        x3.baddbmm_(windows, kernel)
        if conv.bias is not None:
            x3.add_(conv.bias)
        return True

    def forward(  # type: ignore[override]
        self,
        x: torch.Tensor,
        f0: torch.Tensor,
        g: torch.Tensor | None = None,
        n_res: int | torch.Tensor | None = None,
    ) -> torch.Tensor:
        source = self.m_source(f0, self.upp)
        if n_res is not None:
            n = as_int(n_res)
            if n * self.upp != source.shape[-1]:
                source = F.interpolate(source, size=n * self.upp, mode="linear")
            if n != x.shape[-1]:
                x = F.interpolate(x, size=n, mode="linear")
        return self._body(x, g, source)
