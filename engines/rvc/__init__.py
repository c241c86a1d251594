"""RVC: networks, content encoder, pitch, preprocessing, training, index, conversion.

The public entry points are imported lazily so ``import engines.rvc`` stays
free of torch:

    from engines.rvc import load_voice, load_content_encoder, extract_f0
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "load_voice": "engines.rvc.infer.voice",
    "load_content_encoder": "engines.rvc.content.hubert",
    "extract_f0": "engines.rvc.pitch.f0",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'engines.rvc' has no attribute {name!r}")
