"""Building blocks of the RVC networks (VITS family), written for lean inference.

Key names and parameter shapes follow upstream RVC exactly so its state
dicts load unchanged; in particular weight-normalised convolutions keep the
legacy ``weight_g`` / ``weight_v`` parameters (magnitude per output-dim-0
slice, direction). :func:`fold_weight_norm` turns them into a plain
``weight`` once for inference, which keeps outputs identical and saves the
per-call renormalisation.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from engines.rvc.models import noise


def as_int(v: int | torch.Tensor) -> int:
    """A length given as an int or a 0-d tensor (upstream passes both), as an int."""
    return int(v.item()) if isinstance(v, torch.Tensor) else int(v)


LRELU_SLOPE = 0.1


# ---------------------------------------------------------------- weight norm


def _norm_except_dim0(w: torch.Tensor) -> torch.Tensor:
    flat = w.reshape(w.shape[0], -1)
    return torch.linalg.vector_norm(flat, dim=1).reshape(w.shape[0], *([1] * (w.dim() - 1)))


class _WeightNormed:
    """Mixin: replace ``weight`` by (``weight_g``, ``weight_v``) as legacy torch weight_norm(dim=0)."""

    def _split_weight(self) -> None:
        w = self.weight.detach()
        del self.weight
        self.weight_g = nn.Parameter(_norm_except_dim0(w).clone())
        self.weight_v = nn.Parameter(w.clone())

    def effective_weight(self) -> torch.Tensor:
        params = self._parameters  # type: ignore[attr-defined]
        if "weight" in params:
            return params["weight"]
        return torch._weight_norm(params["weight_v"], params["weight_g"], 0)

    def fold(self) -> None:
        """Store g * v / |v| as a plain ``weight`` (inference only; same outputs)."""
        params = self._parameters  # type: ignore[attr-defined]
        if "weight" in params:
            return
        with torch.no_grad():
            w = self.effective_weight().detach().clone()
        del self.weight_g
        del self.weight_v
        self.weight = nn.Parameter(w, requires_grad=False)

    @property
    def is_folded(self) -> bool:
        return "weight" in self._parameters  # type: ignore[attr-defined]


def weight_4d(module: nn.Module) -> torch.Tensor:
    """A 1-D conv's weight as a channels-last [*, *, 1, K] tensor, cached while unchanged.

    The CPU inference path runs 1-D convs as 2-D convs over [B, C, 1, T]
    channels-last ("time-major") tensors: oneDNN then needs no layout
    reorders and is markedly faster for the decoder's small channel counts.
    """
    w = module.effective_weight() if isinstance(module, _WeightNormed) else module.weight
    key = (w.data_ptr(), w._version, w.dtype, w.device)
    cached = module.__dict__.get("_w4_cache")
    if cached is not None and cached[0] == key:
        return cached[1]
    w4 = w.detach().unsqueeze(2).contiguous(memory_format=torch.channels_last)
    if not isinstance(module, _WeightNormed) or module.is_folded:
        module.__dict__["_w4_cache"] = (key, w4)
    return w4


def share_channels_last_weights(net: nn.Module) -> nn.Module:
    """Store every folded 1-D conv weight in the channels-last [*, *, 1, K] layout ``weight_4d`` wants.

    The parameter becomes a 3-D view of that storage, so the CPU path's 4-D
    weight is the parameter itself instead of a cached second copy (about
    the decoder's size). Same values; for inference networks.
    """
    with torch.no_grad():
        for m in net.modules():
            if not isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)) or "weight" not in m._parameters:
                continue
            w4 = m.weight.detach().unsqueeze(2).contiguous(memory_format=torch.channels_last)
            m.weight = nn.Parameter(w4.squeeze(2), requires_grad=False)
            m.__dict__.pop("_w4_cache", None)
    return net


class AsFloat32(nn.Module):
    """A parametrization: the stored tensor, read as float32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float()


def compute_in_float32(model: nn.Module) -> nn.Module:
    """Make every float16/bfloat16 parameter read as float32 where the network uses it.

    The stored tensor stays half precision and each use casts it (a per-layer
    temporary), so results are bit-for-bit those of a float32 copy of the
    same weights while the resident weights take half the memory.
    """
    from torch.nn.utils import parametrize

    for module in list(model.modules()):
        for name, value in list(module.named_parameters(recurse=False)):
            if value.dtype in (torch.float16, torch.bfloat16):
                parametrize.register_parametrization(module, name, AsFloat32(), unsafe=True)
    return model


def conv1d_as_2d(module: nn.Conv1d, x4: torch.Tensor) -> torch.Tensor:
    """Apply a Conv1d to a [B, C, 1, T] (channels-last) tensor; no grad."""
    return F.conv2d(
        x4,
        weight_4d(module),
        module.bias,
        (1, module.stride[0]),
        (0, module.padding[0]),  # type: ignore[index]
        (1, module.dilation[0]),
        module.groups,
    )


class WNConv1d(_WeightNormed, nn.Conv1d):
    """Conv1d with legacy weight-norm parameters (also accepts [B, C, 1, T] inputs, no grad)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._split_weight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            return conv1d_as_2d(self, x)
        return self._conv_forward(x, self.effective_weight(), self.bias)


class WNConv2d(_WeightNormed, nn.Conv2d):
    """Conv2d with legacy weight-norm parameters."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._split_weight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.effective_weight(), self.bias)


class WNConvTranspose1d(_WeightNormed, nn.ConvTranspose1d):
    """ConvTranspose1d with legacy weight-norm parameters (g over input channels)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._split_weight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if x.dim() == 4:
            return F.conv_transpose2d(
                x,
                weight_4d(self),
                self.bias,
                (1, self.stride[0]),
                (0, self.padding[0]),  # type: ignore[index]
                (0, self.output_padding[0]),
                self.groups,
                (1, self.dilation[0]),
            )
        return F.conv_transpose1d(
            x,
            self.effective_weight(),
            self.bias,
            self.stride,
            self.padding,
            self.output_padding,
            self.groups,
            self.dilation,
        )


def fold_weight_norm(module: nn.Module) -> nn.Module:
    """Fold every weight-normalised layer inside ``module`` (in place); returns it."""
    for m in module.modules():
        if isinstance(m, _WeightNormed):
            m.fold()
    return module


def has_weight_norm(module: nn.Module) -> bool:
    return any(isinstance(m, _WeightNormed) and not m.is_folded for m in module.modules())


# ------------------------------------------------------------------- helpers


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    """'Same' padding for an odd kernel with dilation."""
    return (kernel_size * dilation - dilation) // 2


def sequence_mask(lengths: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
    """Boolean [B, T] mask, True inside each sequence."""
    if max_length is None:
        max_length = int(lengths.max())
    steps = torch.arange(max_length, dtype=lengths.dtype, device=lengths.device)
    return steps.unsqueeze(0) < lengths.unsqueeze(1)


def slice_segments(x: torch.Tensor, starts: torch.Tensor, size: int) -> torch.Tensor:
    """Cut ``size`` steps from the last axis of each batch item, starting at ``starts[i]``.

    Works for [B, C, T] and [B, T] tensors.
    """
    out = x.new_zeros(*x.shape[:-1], size) if x.dim() == 2 else x.new_zeros(x.shape[0], x.shape[1], size)
    for i, s in enumerate(starts.tolist()):
        piece = x[i, ..., s : s + size]
        out[i, ..., : piece.shape[-1]] = piece
    return out


def rand_slice_segments(
    x: torch.Tensor, lengths: torch.Tensor | None, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random training windows of ``size`` frames (draws through engines.rvc.models.noise)."""
    b, _, t = x.shape
    if lengths is None:
        lengths = torch.full((b,), t, device=x.device)
    max_start = lengths - size + 1
    starts = (noise.rand([b], device=x.device) * max_start).to(torch.long)
    return slice_segments(x, starts, size), starts


class LayerNorm(nn.Module):
    """Layer norm over the channel axis of a [B, C, T] tensor (params gamma / beta)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.transpose(1, 2), (self.channels,), self.gamma, self.beta, self.eps)
        return y.transpose(1, 2)


# ---------------------------------------------------------- WaveNet stack (WN)


class WaveNet(nn.Module):
    """Non-causal WaveNet stack with gated tanh/sigmoid units and global conditioning.

    Used by the posterior encoder and by the flow's coupling layers.
    """

    def __init__(
        self,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        gin_channels: int = 0,
        p_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError("WaveNet kernel size must be odd")
        self.hidden_channels = hidden_channels
        self.n_layers = n_layers
        self.gin_channels = gin_channels
        self.drop = nn.Dropout(float(p_dropout)) if p_dropout else None
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        if gin_channels:
            self.cond_layer = WNConv1d(gin_channels, 2 * hidden_channels * n_layers, 1)
        for i in range(n_layers):
            dilation = dilation_rate**i
            self.in_layers.append(
                WNConv1d(
                    hidden_channels,
                    2 * hidden_channels,
                    kernel_size,
                    dilation=dilation,
                    padding=get_padding(kernel_size, dilation),
                )
            )
            out_ch = 2 * hidden_channels if i < n_layers - 1 else hidden_channels
            self.res_skip_layers.append(WNConv1d(hidden_channels, out_ch, 1))

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        h = self.hidden_channels
        cond = self.cond_layer(g) if (g is not None and self.gin_channels) else None
        output: torch.Tensor | None = None
        last = self.n_layers - 1
        for i, (in_layer, res_skip) in enumerate(zip(self.in_layers, self.res_skip_layers)):
            x_in = in_layer(x)
            if cond is not None:
                x_in = x_in + cond[:, 2 * h * i : 2 * h * (i + 1)]
            acts = torch.tanh(x_in[:, :h]) * torch.sigmoid(x_in[:, h:])
            if self.drop is not None:
                acts = self.drop(acts)
            rs = res_skip(acts)
            if i < last:
                x = (x + rs[:, :h]) * x_mask
                skip = rs[:, h:]
            else:
                skip = rs
            output = skip if output is None else output + skip
        assert output is not None
        return output * x_mask


# ------------------------------------------------------------ HiFi-GAN blocks


class ResBlock1(nn.Module):
    """HiFi-GAN residual block type 1: (dilated conv, conv) pairs with leaky ReLU."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: Sequence[int] = (1, 3, 5)) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            WNConv1d(channels, channels, kernel_size, 1, dilation=d, padding=get_padding(kernel_size, d))
            for d in dilation
        )
        self.convs2 = nn.ModuleList(
            WNConv1d(channels, channels, kernel_size, 1, dilation=1, padding=get_padding(kernel_size, 1))
            for _ in dilation
        )

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor | None = None) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            xt = F.leaky_relu(x, LRELU_SLOPE)
            if x_mask is not None:
                xt = xt * x_mask
            # In place on the conv's fresh output (autograd-safe for a positive slope).
            xt = F.leaky_relu_(c1(xt), LRELU_SLOPE)
            if x_mask is not None:
                xt = xt * x_mask
            x = c2(xt).add_(x)
        if x_mask is not None:
            x = x * x_mask
        return x


class ResBlock2(nn.Module):
    """HiFi-GAN residual block type 2: single dilated convs with leaky ReLU."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: Sequence[int] = (1, 3)) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            WNConv1d(channels, channels, kernel_size, 1, dilation=d, padding=get_padding(kernel_size, d))
            for d in dilation
        )

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor | None = None) -> torch.Tensor:
        for c in self.convs:
            xt = F.leaky_relu(x, LRELU_SLOPE)
            if x_mask is not None:
                xt = xt * x_mask
            x = c(xt).add_(x)
        if x_mask is not None:
            x = x * x_mask
        return x


def make_resblocks(
    kind: str, channels: int, kernel_sizes: Iterable[int], dilations: Iterable[Sequence[int]]
) -> list[nn.Module]:
    cls = ResBlock1 if str(kind) == "1" else ResBlock2
    return [cls(channels, k, tuple(d)) for k, d in zip(kernel_sizes, dilations)]


# ------------------------------------------------------------------- the flow


class ChannelFlip(nn.Module):
    """Reverse the channel order (between coupling layers); no parameters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flip(x, [1])


class MeanOnlyCoupling(nn.Module):
    """Affine coupling with a shift only: x1 += f(x0) (log-determinant 0)."""

    def __init__(
        self, channels: int, hidden_channels: int, kernel_size: int, dilation_rate: int, n_layers: int, gin_channels: int
    ) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError("coupling channels must be even")
        self.half = channels // 2
        self.pre = nn.Conv1d(self.half, hidden_channels, 1)
        self.enc = WaveNet(hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels=gin_channels)
        self.post = nn.Conv1d(hidden_channels, self.half, 1)
        # Start as the identity, as in VITS.
        nn.init.zeros_(self.post.weight)
        nn.init.zeros_(self.post.bias)

    def shift(self, x0: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        h = self.pre(x0) * x_mask
        h = self.enc(h, x_mask, g=g)
        return self.post(h) * x_mask

    def forward(
        self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None, reverse: bool = False
    ) -> torch.Tensor:
        x0, x1 = x[:, : self.half], x[:, self.half :]
        m = self.shift(x0, x_mask, g)
        x1 = (x1 - m) * x_mask if reverse else m + x1 * x_mask
        return torch.cat([x0, x1], 1)


class ResidualCouplingFlow(nn.Module):
    """Four mean-only couplings, each followed by a channel flip (keys flows.0, flows.2, ...)."""

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        kernel_size: int = 5,
        dilation_rate: int = 1,
        n_layers: int = 3,
        n_flows: int = 4,
        gin_channels: int = 0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(n_flows):
            layers.append(
                MeanOnlyCoupling(channels, hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels)
            )
            layers.append(ChannelFlip())
        self.flows = nn.ModuleList(layers)

    def forward(
        self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None, reverse: bool = False
    ) -> torch.Tensor:
        order = reversed(self.flows) if reverse else iter(self.flows)
        for layer in order:
            x = layer(x) if isinstance(layer, ChannelFlip) else layer(x, x_mask, g=g, reverse=reverse)
        return x


class PosteriorEncoder(nn.Module):
    """enc_q: linear spectrogram -> (z, m, logs) for training; not needed at inference."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int,
        kernel_size: int = 5,
        dilation_rate: int = 1,
        n_layers: int = 16,
        gin_channels: int = 0,
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.pre = nn.Conv1d(in_channels, hidden_channels, 1)
        self.enc = WaveNet(hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels=gin_channels)
        self.proj = nn.Conv1d(hidden_channels, out_channels * 2, 1)

    def forward(
        self, x: torch.Tensor, x_lengths: torch.Tensor, g: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x_mask = sequence_mask(x_lengths, x.shape[2]).unsqueeze(1).to(x.dtype)
        h = self.pre(x) * x_mask
        h = self.enc(h, x_mask, g=g)
        stats = self.proj(h) * x_mask
        m, logs = stats[:, : self.out_channels], stats[:, self.out_channels :]
        z = (m + noise.randn_like(m) * torch.exp(logs)) * x_mask
        return z, m, logs, x_mask
