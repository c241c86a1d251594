"""How this process allocates large CPU buffers (the networks' activations), set before torch allocates.

Two settings, applied by ``configure()`` in the entry points (``voicelab``,
the studio) before torch is imported, and again (idempotent) where models
load, for processes started otherwise:

* ``THP_MEM_ALLOC_ENABLE=1`` (read by torch at its first allocation): torch
  puts buffers of 2 MB and more on transparent huge pages, so a fresh
  activation costs one page fault per 2 MB instead of per 4 KB, and fewer
  TLB misses. The waveform decoder allocates hundreds of MB per second of
  audio; this keeps its CPU time near that of reusing buffers.
* glibc's mmap threshold fixed at 4 MB (trim at 8 MB): every large buffer is
  a mapping of its own, returned to the system when freed, so the resident
  size follows the live tensors. With glibc's adaptive threshold, buffers
  below 32 MB came from a heap that grew with fragmentation: up to twice
  the live activations, varying from run to run (measured in
  bench/bench_convert.py).

Both are process-wide; child processes inherit the environment variable
and call ``configure()`` when they load a model. ``VOICELAB_CPU_MEMORY=off``
leaves the system's defaults.
"""

from __future__ import annotations

import ctypes
import os
import sys

MMAP_THRESHOLD = 4 << 20
TRIM_THRESHOLD = 8 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_DONE: list[bool] = []


def configure() -> bool:
    """Apply the settings (idempotent); returns whether glibc took them."""
    if _DONE:
        return _DONE[0]
    ok = False
    if os.environ.get("VOICELAB_CPU_MEMORY", "").lower() != "off":
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL("libc.so.6")
                ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                    libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
            except (OSError, AttributeError):  # not glibc (e.g. musl): its own defaults stay
                ok = False
    _DONE.append(ok)
    return ok
