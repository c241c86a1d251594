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


def fits_on_gpu(device: str, free: float, total: float, own: float, need_mb: float) -> tuple[str, str]:
    """(device, why) for a job needing ``need_mb`` on ``device`` with ``free``/``total`` bytes there, of
    which ``own`` bytes are already reserved by this process (its warm models count as available)."""
    if (free + own) / 2**20 >= need_mb:
        return device, f"{device}: {free / 2**20:.0f} MB free of {total / 2**20:.0f} MB"
    return "cpu", (f"{device} has {free / 2**20:.0f} MB free of {total / 2**20:.0f} MB (a training may be "
                   f"using it); this job needs about {need_mb:.0f} MB, so it runs on the CPU")


def listening_device(preference: str, need_mb: float) -> tuple[str, str]:
    """The device a listening job runs on, and why: the preferred GPU when its free memory allows
    (``torch.cuda.mem_get_info``), else the CPU."""
    pref = (preference or "auto").strip().lower()
    if pref == "cpu":
        return "cpu", "the CPU was chosen in the settings"
    import torch

    if not torch.cuda.is_available():
        return "cpu", "no CUDA device"
    device = "cuda:0" if pref in ("auto", "cuda") else pref
    try:
        free, total = torch.cuda.mem_get_info(device)
    except Exception as exc:  # noqa: BLE001 - a broken driver must not stop a conversion
        return "cpu", f"{device} did not report its memory ({type(exc).__name__}: {exc})"
    return fits_on_gpu(device, free, total, torch.cuda.memory_reserved(device), need_mb)
