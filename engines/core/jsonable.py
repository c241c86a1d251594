"""Turn engine results (paths, dataclasses, tuples) into plain JSON values."""

from __future__ import annotations

import dataclasses
from typing import Any


def jsonable(obj: Any) -> Any:
    """``obj`` as JSON data: dataclasses as dicts, paths and unknown objects as strings, string keys."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)
