"""Device selection and mixed precision: CUDA when present, CPU otherwise.

AMP is used only on CUDA (bf16 when supported, else fp16 with a grad scaler);
on CPU everything runs in fp32.
"""

from __future__ import annotations

import contextlib
from typing import Any


def pick_device(preference: str = "auto") -> "Any":
    """Return a ``torch.device``: 'auto' picks cuda:0 when available, else cpu."""
    import torch

    pref = (preference or "auto").strip().lower()
    if pref == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if pref.startswith("cuda") and not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device(pref)


def cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def amp_dtype(device: "Any", mode: str = "auto") -> "Any":
    """The autocast dtype for ``device`` (None = no autocast). mode: auto|fp32|fp16|bf16."""
    import torch

    if getattr(device, "type", str(device)) != "cuda" or mode == "fp32":
        return None
    if mode == "fp16":
        return torch.float16
    if mode == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def autocast(device: "Any", dtype: "Any") -> contextlib.AbstractContextManager:
    """Autocast on CUDA with ``dtype``; a no-op context elsewhere or when dtype is None."""
    import torch

    if dtype is None or getattr(device, "type", str(device)) != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype)


def follow_workspace(value: str, ws: Any) -> str:
    """A device left at 'auto' follows the studio's device setting (``--device`` / settings)."""
    configured = ws.settings.device
    return configured if value == "auto" and configured not in ("", "auto") else value
