"""Import lazily-loaded libraries under one lock.

transformers resolves ``from transformers import HubertConfig`` through a
lazy module whose first import is not thread-safe: two threads doing it at
once in a fresh process can fail with "cannot import name 'HubertConfig'"
(five concurrent first conversions did). Every such import goes through
``import_names``, so the first one completes before any other starts and
the rest find the names already loaded.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

_LOCK = threading.RLock()


def import_names(module: str, *names: str) -> tuple[Any, ...]:
    """``from module import names`` as a tuple, serialised with every other such import."""
    with _LOCK:
        mod = importlib.import_module(module)
        return tuple(getattr(mod, n) for n in names)
