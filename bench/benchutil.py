"""Shared by the bench scripts (run as ``python bench/bench_x.py``, so this folder is on sys.path)."""

from __future__ import annotations

import resource


def peak_rss() -> int:
    """This process's own peak RSS (VmHWM; ru_maxrss would include the parent's, carried across fork+exec)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
