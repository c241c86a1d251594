"""Load an RVC voice (small model or G_*.pth) ready for inference.

    vm = load_voice("weights/x.pth", device="cpu")
    audio = vm.net.infer(phone, phone_lengths, pitch, pitchf, sid)[0]   # [1, 1, n]

The network comes back in eval mode with weight norm folded, gradients off,
enc_q dropped, fp32 (fp16 only when asked for on CUDA).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.core.errors import InvalidModelError
from engines.rvc.checkpoints import POSTERIOR_PREFIX, GeneratorFile, file_sha256, read_generator


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
    encoder: dict[str, str] = field(default_factory=dict)  # the content encoder it was trained with (empty = HuBERT base)

    @property
    def short_hash(self) -> str:
        return self.sha256[:10]

    @property
    def hop_length(self) -> int:
        """Output samples per content frame (10 ms)."""
        return int(self.net.hop_length)


def build_voice_net(gen: GeneratorFile, device: Any = "cpu", half: bool = False) -> Any:
    """The inference network for a read generator file (strict load, enc_q ignored).

    Lean on memory: the network is built on the meta device and takes the
    file's tensors as its parameters, each converted to float32 as it is
    taken out of ``gen.weights`` (which is emptied), so no random init and
    no second copy of the weights exist at any time.
    """
    import torch

    from engines.rvc.models.commons import share_channels_last_weights
    from engines.rvc.models.synthesizer import build_synthesizer

    try:
        with torch.device("meta"):
            net = build_synthesizer(gen.config, gen.version, gen.f0, with_posterior=False)
    except (TypeError, ValueError, IndexError) as exc:
        raise InvalidModelError(
            f"{gen.path.name}: its config cannot build an RVC {gen.version} network ({exc}).",
            "The file may be damaged or from an unsupported RVC fork.",
        ) from exc
    weights = {}
    for key in list(gen.weights):
        value = gen.weights.pop(key)
        if not key.startswith(POSTERIOR_PREFIX):
            weights[key] = value.float() if value.is_floating_point() else value
        del value
    try:
        net.load_state_dict(weights, strict=True, assign=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise InvalidModelError(
            f"{gen.path.name}: the weights do not fit an RVC {gen.version} {'f0' if gen.f0 else 'no-f0'} "
            f"{gen.sample_rate // 1000}k network ({detail[:300]}).",
            "The file may be damaged or from an unsupported RVC fork.",
        ) from exc
    del weights
    net.eval()
    net.remove_weight_norm()
    net.requires_grad_(False)
    dev = torch.device(device)
    net = net.to(dev)
    if half and dev.type == "cuda":
        net = net.half()
    if dev.type == "cpu":
        share_channels_last_weights(net)
    return net


def load_voice(path: str | Path, device: Any = "cpu", *, half: bool = False) -> VoiceModel:
    """Load a small model or G_*.pth for inference on ``device`` (fp16 only with half=True on CUDA).

    Raises InvalidModelError for anything that is not an RVC generator.
    """
    from engines.core import cpu_memory

    cpu_memory.configure()  # a process that did not start through the CLI or the studio
    import torch

    gen = read_generator(path)
    dev = torch.device(device)
    n_speakers = gen.n_speakers
    net = build_voice_net(gen, dev, half)  # empties gen.weights
    dtype = str(next(net.parameters()).dtype).replace("torch.", "")
    return VoiceModel(
        net=net,
        sample_rate=int(gen.sample_rate),
        version=gen.version,
        f0=gen.f0,
        info=gen.info,
        config=list(gen.config),
        n_speakers=n_speakers,
        path=gen.path,
        sha256=file_sha256(gen.path),
        kind=gen.kind,
        epoch=gen.epoch,
        step=gen.step,
        device=str(dev),
        dtype=dtype,
        extra={k: v for k, v in gen.extra.items() if isinstance(v, (str, int, float, bool))},
        encoder=gen.encoder_fields(),
    )
