"""What a CosyVoice model dir holds, read without upstream's code: its speakers."""

from __future__ import annotations

import os
from pathlib import Path

from engines.core.errors import InvalidModelError


def list_speakers(model_dir: str | os.PathLike) -> list[str]:
    """Speaker ids in the model dir's spk2info.pt (empty when there is none)."""
    import torch

    path = Path(model_dir) / "spk2info.pt"
    if not path.is_file():
        return []
    try:
        info = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise InvalidModelError(f"{path} cannot be read: {exc}") from exc
    if not isinstance(info, dict):
        raise InvalidModelError(f"{path} does not hold a speaker dict.")
    return [str(k) for k in info.keys()]
