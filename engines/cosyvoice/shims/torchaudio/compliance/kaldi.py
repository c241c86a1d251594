"""``torchaudio.compliance.kaldi.fbank`` for upstream CosyVoice's campplus input.

Upstream calls ``fbank(wave [1, n], num_mel_bins=80, dither=0,
sample_frequency=16000)`` and leaves every other option at Kaldi's default.
That is the filter bank ``engines.cosyvoice.fbank.kaldi_fbank`` computes (a
test checks it against kaldi-native-fbank), so this wraps it; any other
option raises instead of silently computing something else.
"""

from __future__ import annotations

from typing import Any

_KALDI_DEFAULTS = {"frame_length": 25.0, "frame_shift": 10.0, "preemphasis_coefficient": 0.97,
                   "window_type": "povey", "snip_edges": True, "use_energy": False, "use_log_fbank": True,
                   "use_power": True, "remove_dc_offset": True, "round_to_power_of_two": True,
                   "low_freq": 20.0, "high_freq": 0.0, "energy_floor": 1.0, "channel": -1}


def fbank(waveform: Any, num_mel_bins: int = 23, dither: float = 0.0, sample_frequency: float = 16000.0,
          **options: Any) -> Any:
    """Log mel filter bank [frames, num_mel_bins] of the first channel, as torchaudio/Kaldi compute it."""
    import torch

    from engines.cosyvoice.fbank import kaldi_fbank

    unsupported = {k: v for k, v in options.items() if k not in _KALDI_DEFAULTS or _KALDI_DEFAULTS[k] != v}
    if float(sample_frequency) != 16000.0 or dither != 0 or unsupported:
        raise NotImplementedError(
            "VoiceLab's torchaudio stand-in implements kaldi.fbank for 16 kHz, dither 0 and Kaldi's default "
            f"options only (got sample_frequency={sample_frequency}, dither={dither}, {unsupported}); "
            "install a torchaudio that matches your torch for other settings.")
    wave = waveform[0] if waveform.dim() == 2 else waveform
    feats = kaldi_fbank(wave.detach().cpu().double().numpy(), int(num_mel_bins))
    return torch.from_numpy(feats).to(device=waveform.device, dtype=waveform.dtype if waveform.is_floating_point()
                                      else torch.float32)
