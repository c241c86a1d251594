"""The prior ("text") encoder: content features (+ coarse pitch) -> prior mean / log-std.

A Transformer encoder with relative-position self-attention (window 10,
one relative table shared by all heads), post-layer-norm and a
convolutional feed-forward block, as in VITS / upstream RVC. Relative
positions outside the window contribute nothing.

Instead of materialising [T, 2T-1] relative tables (upstream), the
relative terms are computed on the 2w+1 band only and skewed into place
with pad/reshape, which is exact and uses O(T * (T + 2w)) memory.
Without autograd (inference) long inputs are processed in blocks of query
rows, so the score matrices take O(block * T) memory instead of O(T * T);
the result is the same up to float reassociation.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from engines.rvc.models.commons import LayerNorm, sequence_mask

WINDOW = 10
# Query rows per block when attending without autograd (scores: heads x block x T floats).
QUERY_BLOCK = 512


def _band_to_full(band: torch.Tensor, window: int) -> torch.Tensor:
    """[..., T, 2w+1] band (column c = offset c-w) -> [..., T, T] with zeros off the band."""
    *lead, t, width = band.shape
    padded = F.pad(band, (0, t))  # [..., T, 2w+1+T]
    flat = padded.reshape(*lead, t * (width + t))[..., : t * (width + t - 1)]
    skewed = flat.reshape(*lead, t, width + t - 1)  # row i shifted right by i
    return skewed[..., window : window + t]


def _full_to_band(full: torch.Tensor, window: int) -> torch.Tensor:
    """[..., T, T] -> [..., T, 2w+1] taking offsets -w..w around the diagonal (0 outside)."""
    *lead, t, _ = full.shape
    padded = F.pad(full, (window, window))  # [..., T, T + 2w]; (i, j + w) = full[i, j]
    flat = padded.reshape(*lead, t * (t + 2 * window))
    flat = F.pad(flat, (0, t))
    skewed = flat.reshape(*lead, t, t + 2 * window + 1)  # row i shifted left by i
    return skewed[..., : 2 * window + 1]


def _band_indices(start: int, rows: int, t: int, window: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Key columns (clamped) of offsets -w..w for query rows start..start+rows, and which are inside [0, T)."""
    query = torch.arange(start, start + rows, device=device).unsqueeze(1)
    cols = query + torch.arange(-window, window + 1, device=device).unsqueeze(0)  # [rows, 2w+1]
    inside = (cols >= 0) & (cols < t)
    return cols.clamp(0, t - 1), inside


class RelativeSelfAttention(nn.Module):
    """Multi-head self-attention with windowed relative key/value embeddings."""

    def __init__(self, channels: int, n_heads: int, p_dropout: float = 0.0, window: int = WINDOW) -> None:
        super().__init__()
        if channels % n_heads:
            raise ValueError("channels must be divisible by n_heads")
        self.n_heads = n_heads
        self.k_channels = channels // n_heads
        self.window = window
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, channels, 1)
        self.drop = nn.Dropout(p_dropout) if p_dropout else None
        std = self.k_channels**-0.5
        self.emb_rel_k = nn.Parameter(torch.randn(1, 2 * window + 1, self.k_channels) * std)
        self.emb_rel_v = nn.Parameter(torch.randn(1, 2 * window + 1, self.k_channels) * std)
        for conv in (self.conv_q, self.conv_k, self.conv_v):
            nn.init.xavier_uniform_(conv.weight)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        b, c, t = x.shape
        h, d = self.n_heads, self.k_channels
        # [B, C, T] -> [B, H, T, D]
        q = self.conv_q(x).view(b, h, d, t).transpose(2, 3)
        k = self.conv_k(x).view(b, h, d, t).transpose(2, 3)
        v = self.conv_v(x).view(b, h, d, t).transpose(2, 3)
        q = q / math.sqrt(d)
        if not torch.is_grad_enabled() and t > QUERY_BLOCK:
            out = self._attend_blocked(q, k, v, attn_mask)
            return self.conv_o(out.transpose(2, 3).reshape(b, c, t))
        scores = torch.matmul(q, k.transpose(-2, -1))
        rel_k = torch.matmul(q, self.emb_rel_k.transpose(-2, -1).unsqueeze(0))  # [B, H, T, 2w+1]
        scores = scores + _band_to_full(rel_k, self.window)
        if attn_mask is not None:
            scores = scores.masked_fill(attn_mask == 0, -1e4)
        p = F.softmax(scores, dim=-1)
        if self.drop is not None:
            p = self.drop(p)
        out = torch.matmul(p, v)
        out = out + torch.matmul(_full_to_band(p, self.window), self.emb_rel_v.unsqueeze(0))
        out = out.transpose(2, 3).reshape(b, c, t)
        return self.conv_o(out)

    def _attend_blocked(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """The same attention as forward, QUERY_BLOCK query rows at a time ([B, H, T, D] in and out)."""
        b, h, t, d = q.shape
        width = 2 * self.window + 1
        out = torch.empty_like(q)
        k_t = k.transpose(-2, -1)
        rel_k = self.emb_rel_k.transpose(-2, -1).unsqueeze(0)
        rel_v = self.emb_rel_v.unsqueeze(0)
        for start in range(0, t, QUERY_BLOCK):
            stop = min(start + QUERY_BLOCK, t)
            rows = stop - start
            q_blk = q[:, :, start:stop]
            cols, inside = _band_indices(start, rows, t, self.window, q.device)
            index = cols.expand(b, h, rows, width)
            inside_f = inside.to(q.dtype)
            scores = torch.matmul(q_blk, k_t)  # [B, H, rows, T]
            band = torch.matmul(q_blk, rel_k) * inside_f  # [B, H, rows, 2w+1], zero off the sequence
            scores.scatter_add_(-1, index, band)
            if attn_mask is not None:
                scores = scores.masked_fill(attn_mask[..., start:stop, :] == 0, -1e4)
            p = F.softmax(scores, dim=-1)
            del scores
            if self.drop is not None:
                p = self.drop(p)
            p_band = torch.gather(p, -1, index) * inside_f
            out[:, :, start:stop] = torch.matmul(p, v) + torch.matmul(p_band, rel_v)
        return out


class ConvFeedForward(nn.Module):
    """Two 'same'-padded convolutions with ReLU, applied under the sequence mask."""

    def __init__(self, channels: int, filter_channels: int, kernel_size: int, p_dropout: float = 0.0) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.conv_1 = nn.Conv1d(channels, filter_channels, kernel_size)
        self.conv_2 = nn.Conv1d(filter_channels, channels, kernel_size)
        self.drop = nn.Dropout(p_dropout) if p_dropout else None

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        return x if k == 1 else F.pad(x, ((k - 1) // 2, k // 2))

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
        y = torch.relu_(self.conv_1(self._pad(x * x_mask)))
        if self.drop is not None:
            y = self.drop(y)
        y = self.conv_2(self._pad(y * x_mask))
        return y * x_mask


class AttentionEncoder(nn.Module):
    """Stack of (relative self-attention, LayerNorm, conv FFN, LayerNorm) layers."""

    def __init__(
        self, hidden_channels: int, filter_channels: int, n_heads: int, n_layers: int, kernel_size: int, p_dropout: float
    ) -> None:
        super().__init__()
        self.drop = nn.Dropout(p_dropout) if p_dropout else None
        self.attn_layers = nn.ModuleList(
            RelativeSelfAttention(hidden_channels, n_heads, p_dropout) for _ in range(int(n_layers))
        )
        self.norm_layers_1 = nn.ModuleList(LayerNorm(hidden_channels) for _ in range(int(n_layers)))
        self.ffn_layers = nn.ModuleList(
            ConvFeedForward(hidden_channels, filter_channels, kernel_size, p_dropout) for _ in range(int(n_layers))
        )
        self.norm_layers_2 = nn.ModuleList(LayerNorm(hidden_channels) for _ in range(int(n_layers)))

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
        # A batch of one full-length item (inference) needs no attention mask.
        full = bool(x_mask.shape[0] == 1 and x_mask.min() > 0)
        attn_mask = None if full else x_mask.unsqueeze(2) * x_mask.unsqueeze(-1)
        x = x * x_mask
        for attn, norm1, ffn, norm2 in zip(self.attn_layers, self.norm_layers_1, self.ffn_layers, self.norm_layers_2):
            y = attn(x, attn_mask)
            if self.drop is not None:
                y = self.drop(y)
            x = norm1(x + y)
            y = ffn(x, x_mask)
            if self.drop is not None:
                y = self.drop(y)
            x = norm2(x + y)
        return x * x_mask


class TextEncoder(nn.Module):
    """enc_p: content features [B, T, 256|768] (+ coarse pitch [B, T]) -> (m_p, logs_p, x_mask)."""

    def __init__(
        self,
        content_dim: int,
        out_channels: int,
        hidden_channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int,
        p_dropout: float,
        use_f0: bool = True,
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.hidden_channels = hidden_channels
        self.emb_phone = nn.Linear(content_dim, hidden_channels)
        if use_f0:
            self.emb_pitch = nn.Embedding(256, hidden_channels)
        self.encoder = AttentionEncoder(
            hidden_channels, filter_channels, n_heads, n_layers, kernel_size, float(p_dropout)
        )
        self.proj = nn.Conv1d(hidden_channels, out_channels * 2, 1)

    def forward(
        self,
        phone: torch.Tensor,
        pitch: torch.Tensor | None,
        lengths: torch.Tensor,
        skip_head: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.emb_phone(phone)
        if pitch is not None:
            x = x + self.emb_pitch(pitch)
        x = F.leaky_relu(x * math.sqrt(self.hidden_channels), 0.1).transpose(1, 2)  # [B, H, T]
        x_mask = sequence_mask(lengths, x.shape[2]).unsqueeze(1).to(x.dtype)
        x = self.encoder(x * x_mask, x_mask)
        if skip_head:
            x = x[:, :, skip_head:]
            x_mask = x_mask[:, :, skip_head:]
        stats = self.proj(x) * x_mask
        return stats[:, : self.out_channels], stats[:, self.out_channels :], x_mask
