"""Load an RVC voice (small model or G_*.pth) ready for inference.

    vm = load_voice("weights/x.pth", device="cpu")
    audio = vm.net.infer(phone, phone_lengths, pitch, pitchf, sid)[0]   # [1, 1, n]

The network comes back in eval mode with weight norm folded, gradients off,
enc_q dropped, fp32 (fp16 only when asked for on CUDA).
"""

from __future__ import annotations

import ctypes
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.core.errors import InvalidModelError
from engines.rvc.checkpoints import GeneratorFile, file_sha256, read_generator


@dataclass
class VoiceModel:
    """A loaded voice: the network plus what the conversion pipeline needs to know."""

    net: Any  # engines.rvc.models.synthesizer.Synthesizer
    sample_rate: int
    version: str
    f0: bool
    info: str
    config: list[Any]
    n_speakers: int
    path: Path
    sha256: str
    kind: str = "small"  # "small" | "checkpoint"
    epoch: int | None = None
    step: int | None = None
    device: str = "cpu"
    dtype: str = "float32"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def short_hash(self) -> str:
        return self.sha256[:10]

    @property
    def hop_length(self) -> int:
        """Output samples per content frame (10 ms)."""
        return int(self.net.hop_length)


_ALLOCATOR_TUNED = False


def tune_cpu_allocator() -> bool:
    """Keep freed large buffers in the heap instead of returning them to the OS (glibc).

    The decoder allocates many large activation tensors per call; by default
    glibc maps and unmaps each one, so every call pays page faults in the
    kernel. Raising the mmap/trim thresholds lets the buffers be reused.
    Process-wide and idempotent; returns whether it applied.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        # Buffers up to 256 MB come from the heap; up to 512 MB of free heap is kept for reuse.
        ok = bool(libc.mallopt(m_mmap_threshold, 256 << 20)) and bool(libc.mallopt(m_trim_threshold, 512 << 20))
    except (OSError, AttributeError):
        return False
    _ALLOCATOR_TUNED = ok
    return ok


def build_voice_net(gen: GeneratorFile, device: Any = "cpu", half: bool = False) -> Any:
    """The inference network for a read generator file (strict load, enc_q ignored)."""
    import torch

    from engines.rvc.models.synthesizer import build_synthesizer

    try:
        net = build_synthesizer(gen.config, gen.version, gen.f0, with_posterior=False)
    except (TypeError, ValueError, IndexError) as exc:
        raise InvalidModelError(
            f"{gen.path.name}: its config cannot build an RVC {gen.version} network ({exc}).",
            "The file may be damaged or from an unsupported RVC fork.",
        ) from exc
    weights = {k: v.float() for k, v in gen.inference_weights().items()}
    try:
        net.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise InvalidModelError(
            f"{gen.path.name}: the weights do not fit an RVC {gen.version} {'f0' if gen.f0 else 'no-f0'} "
            f"{gen.sample_rate // 1000}k network ({detail[:300]}).",
            "The file may be damaged or from an unsupported RVC fork.",
        ) from exc
    net.eval()
    net.remove_weight_norm()
    net.requires_grad_(False)
    dev = torch.device(device)
    net = net.to(dev)
    if half and dev.type == "cuda":
        net = net.half()
    return net


def load_voice(path: str | Path, device: Any = "cpu", *, half: bool = False) -> VoiceModel:
    """Load a small model or G_*.pth for inference on ``device`` (fp16 only with half=True on CUDA).

    Raises InvalidModelError for anything that is not an RVC generator.
    """
    import torch

    gen = read_generator(path)
    dev = torch.device(device)
    if dev.type == "cpu":
        tune_cpu_allocator()
    net = build_voice_net(gen, dev, half)
    dtype = str(next(net.parameters()).dtype).replace("torch.", "")
    return VoiceModel(
        net=net,
        sample_rate=int(gen.sample_rate),
        version=gen.version,
        f0=gen.f0,
        info=gen.info,
        config=list(gen.config),
        n_speakers=gen.n_speakers,
        path=gen.path,
        sha256=file_sha256(gen.path),
        kind=gen.kind,
        epoch=gen.epoch,
        step=gen.step,
        device=str(dev),
        dtype=dtype,
        extra={k: v for k, v in gen.extra.items() if isinstance(v, (str, int, float, bool))},
    )
