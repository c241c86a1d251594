"""The network part of a conversion: one padded segment through HuBERT, the index and the synthesizer.

Upstream ``Pipeline.vc``: content features of the whole segment in one
pass, the retrieval blend, features repeated x2 to 100 frames/s,
``protect`` mixing (< 0.5 only) and synthesis. The waveform decoder runs in
fixed-size chunks (``synthesize_chunked``) so its activations stay bounded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engines.rvc.infer.steps import SR16, WINDOW

PRIOR_NOISE = 0.66666


@dataclass
class Models:
    """What a conversion needs loaded: a voice, the content encoder, optionally an index."""

    voice: Any  # engines.rvc.infer.voice.VoiceModel
    encoder: Any  # engines.rvc.content.encoder.ContentEncoder
    index: Any = None  # engines.rvc.index.LoadedIndex
    device: Any = None
    warnings: list[str] = field(default_factory=list)  # e.g. a weight file that is not the official one


def vc_segment(models: Models, audio: np.ndarray, pitch: Any, pitchf: Any, opts: Any, times: Any) -> np.ndarray:
    """Upstream ``Pipeline.vc`` on one padded segment; returns the synthesizer's waveform (float32).

    ``opts`` is a pipeline ``VCOptions``; ``times`` a ``StageTimes`` (it also
    keeps the intermediates when asked to).
    """
    import torch

    with torch.inference_mode():
        return _vc_segment(models, audio, pitch, pitchf, opts, times)


def _vc_segment(models: Models, audio: np.ndarray, pitch: Any, pitchf: Any, opts: Any, times: Any) -> np.ndarray:
    import torch

    from engines.core.device import amp_dtype, autocast

    vm = models.voice
    device = models.device
    with times("hubert"):
        seconds = audio.shape[0] / SR16 + 1.0
        feats = models.encoder.extract(audio.astype(np.float32), vm.version, window_seconds=max(30.0, seconds))[None]
    times.keep("hubert", feats[0])
    use_protect = opts.protect < 0.5 and pitch is not None and pitchf is not None
    feats0 = feats.clone() if use_protect else None
    if models.index is not None and opts.index_rate != 0:
        from engines.rvc.index import retrieve

        with times("retrieval"):
            retrieved, score, ix = retrieve(feats[0].float().cpu().numpy(), models.index.index, models.index.vectors)
            feats = torch.from_numpy(retrieved).unsqueeze(0).to(device) * opts.index_rate + (1 - opts.index_rate) * feats
        times.keep("index_score", score)
        times.keep("index_ix", ix)
        times.keep("blended", feats[0])
    feats = feats.repeat_interleave(2, dim=1)  # == F.interpolate(scale_factor=2), nearest
    if use_protect:
        feats0 = feats0.repeat_interleave(2, dim=1)
    p_len = audio.shape[0] // WINDOW
    if feats.shape[1] < p_len:
        p_len = feats.shape[1]
        if pitch is not None:
            pitch = pitch[:, :p_len]
            pitchf = pitchf[:, :p_len]
    if use_protect:
        mask = pitchf.clone()
        mask[pitchf > 0] = 1
        mask[pitchf < 1] = opts.protect
        mask = mask.unsqueeze(-1)
        feats = feats * mask + feats0 * (1 - mask)
        feats = feats.to(feats0.dtype)
    times.keep("phone", feats[0])
    lengths = torch.tensor([p_len], device=device).long()
    sid = torch.tensor([opts.speaker_id], device=device).long()
    with times("synth"), autocast(device, amp_dtype(device, opts.precision)):
        if opts.decode_chunk_frames and _can_chunk(vm.net):
            return synthesize_chunked(vm.net, feats, lengths, pitch if vm.f0 else None, pitchf if vm.f0 else None,
                                      sid, opts.decode_chunk_frames, opts.decode_context_frames)
        if vm.f0:
            out = vm.net.infer(feats, lengths, pitch, pitchf, sid)[0]
        else:
            out = vm.net.infer(feats, lengths, sid)[0]
    return out[0, 0].float().cpu().numpy()


def _can_chunk(net: Any) -> bool:
    dec = getattr(net, "dec", None)
    return all(hasattr(net, a) for a in ("enc_p", "flow", "emb_g")) and hasattr(dec, "_body") and hasattr(dec, "upp")


def synthesize_chunked(net: Any, phone: Any, lengths: Any, pitch: Any, pitchf: Any, sid: Any,
                       chunk_frames: int, context_frames: int) -> np.ndarray:
    """``net.infer(...)[0][0, 0]`` with the waveform decoder run over overlapping chunks of frames.

    The prior, the flow and the NSF excitation (the only parts with long-range
    context: attention, coupling layers and the running sine phase) are
    computed over the whole segment exactly as ``infer`` does, drawing the
    noise in the same order. Only the HiFi-GAN body, a pure convolution stack
    whose receptive field is ~16 frames, runs chunk by chunk with
    ``context_frames`` of real neighbours on both sides, so the waveform equals
    the one-pass result (to float rounding; within ~16 frames of the segment's
    two ends, which the pipeline discards, it may differ) while the decoder's
    activations (~80 MB per second of 48 kHz audio) are bounded by the chunk size.
    """
    import torch

    from engines.rvc.models import noise

    g = net.emb_g(sid).unsqueeze(-1)
    m_p, logs_p, x_mask = net.enc_p(phone, pitch, lengths)
    if noise.noise_is_zero():
        z_p = m_p * x_mask
    else:
        z_p = (m_p + torch.exp(logs_p) * noise.randn_like(m_p) * PRIOR_NOISE) * x_mask
    z = net.flow(z_p, x_mask, g=g, reverse=True)
    zm = z * x_mask
    del m_p, logs_p, z_p, z
    dec = net.dec
    upp = int(dec.upp)
    source = dec.m_source(pitchf, upp) if pitchf is not None else None
    total = zm.shape[-1]
    # Every chunk has the same shape (zeros beyond the segment's ends): oneDNN caches one set of
    # primitives per input shape, and segment-dependent shapes made that cache grow without bound.
    # The zero extension only changes the first/last ~16 frames of the segment, which lie inside
    # the x_pad margins the pipeline discards (>= 100 frames).
    width = chunk_frames + 2 * context_frames
    zpad = torch.nn.functional.pad(zm, (context_frames, width))
    spad = torch.nn.functional.pad(source, (context_frames * upp, width * upp)) if source is not None else None
    out = np.empty(total * upp, dtype=np.float32)
    for a in range(0, total, chunk_frames):
        b = min(total, a + chunk_frames)
        lo = a  # in padded frames: a - context_frames + context_frames
        src = spad[:, :, lo * upp : (lo + width) * upp] if spad is not None else None
        wave = dec._body(zpad[:, :, lo : lo + width], g, src)
        out[a * upp : b * upp] = wave[0, 0, context_frames * upp : (context_frames + b - a) * upp].float().cpu().numpy()
        del wave
    return out
