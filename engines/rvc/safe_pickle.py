"""Load third-party ``.pt`` checkpoints without running code from them.

Legacy fairseq checkpoints (``hubert_base.pt``) pickle more than tensors:
fairseq ``Dictionary`` objects in ``task_state``, sometimes an
``argparse.Namespace`` in ``args`` or an omegaconf ``DictConfig`` in ``cfg``.
A plain ``torch.load(weights_only=False)`` would import fairseq (not
installed) and would execute whatever the file asks for.

We use torch's own hardened loader (``weights_only=True``, which reads both
the zip and the legacy tar format) and allow-list, under their original
names, a fixed set of harmless classes. Classes from fairseq / omegaconf are
replaced by :class:`InertObject` stand-ins that only *record* the arguments
and state they were given; nothing from the file is ever called. Anything
else (``os.system``, ``builtins.eval``, unknown classes...) is refused and
reported as an ``InvalidModelError``.
"""

from __future__ import annotations

import argparse
import collections
import pickle
import re
from pathlib import Path
from typing import Any

from engines.core.errors import InvalidModelError, UnsafeFileError

# Classes whose pickled instances we rebuild as inert records, by full name.
_INERT_NAMES: tuple[str, ...] = (
    "fairseq.data.dictionary.Dictionary",
    "fairseq.data.dictionary.TruncatedDictionary",
    "fairseq.data.encoders.utils.Dictionary",
    "omegaconf.dictconfig.DictConfig",
    "omegaconf.listconfig.ListConfig",
    "omegaconf.base.Metadata",
    "omegaconf.base.ContainerMetadata",
    "omegaconf.nodes.AnyNode",
    "omegaconf.nodes.ValueNode",
    "omegaconf.nodes.StringNode",
    "omegaconf.nodes.IntegerNode",
    "omegaconf.nodes.FloatNode",
    "omegaconf.nodes.BooleanNode",
    "omegaconf.nodes.EnumNode",
    "omegaconf.nodes.BytesNode",
    "omegaconf.nodes.PathNode",
    "typing.Any",
)


class InertObject:
    """A stand-in for a pickled object of a class we do not import.

    It keeps the class name, the constructor arguments and the state so a
    caller can read plain values out of it (see :func:`to_plain`), and it has
    no behaviour of its own.
    """

    qualified_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "InertObject":
        # Pickle's NEWOBJ calls __new__ without __init__, so record here.
        obj = super().__new__(cls)
        obj.args = args
        obj.kwargs = kwargs
        obj.state = None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<inert {self.qualified_name}>"


def _inert_class(full_name: str) -> type:
    """A distinct InertObject subclass per original name, so records say what they were."""
    short = full_name.rsplit(".", 1)[-1]
    return type(f"Inert{short}", (InertObject,), {"qualified_name": full_name})


_INERT_CLASSES: dict[str, type] = {name: _inert_class(name) for name in _INERT_NAMES}


def _numpy_safe_globals() -> list[Any]:
    """numpy scalar/dtype rebuilders (checkpoints sometimes store np.float64 values)."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a hard dependency
        return []
    found: list[Any] = [np.dtype]
    for mod_name in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            mod = __import__(mod_name, fromlist=["scalar"])
            found.append((mod.scalar, f"{mod_name}.scalar"))
        except (ImportError, AttributeError):
            continue
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        for name in dir(dtypes):
            if name.endswith("DType"):
                found.append(getattr(dtypes, name))
    return found


def _allowed_globals() -> list[Any]:
    allowed: list[Any] = [(cls, name) for name, cls in _INERT_CLASSES.items()]
    allowed += [argparse.Namespace, collections.OrderedDict]
    # Plain types appear as values (omegaconf records object_type=dict); calling them is harmless.
    allowed += [dict, list, tuple, str, int, float, bool, bytes]
    allowed += _numpy_safe_globals()
    return allowed


def safe_torch_load(path: str | Path) -> Any:
    """``torch.load`` on CPU that only rebuilds tensors and the allow-listed classes.

    Raises InvalidModelError when the file is not a torch checkpoint or asks
    for anything outside the allow-list (the message names what it asked for).
    """
    import torch

    path = Path(path)
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = refused_global(str(exc))
        if refused:
            raise UnsafeFileError(
                f"Refused to load {path.name}: it contains objects a model file should not contain. "
                f"It asks to load '{refused}', which is not allowed.",
                "Only tensors and plain checkpoint bookkeeping are accepted. "
                "Use a trusted copy of the file (e.g. the official hubert_base.pt).",
            ) from None
        raise InvalidModelError(f"Could not read {path.name} as a PyTorch checkpoint (it is damaged or not one).",
                                "The file may be truncated or not a model; download it again.") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as exc:
        raise InvalidModelError(
            f"Could not read {path.name} as a PyTorch checkpoint ({type(exc).__name__}: {str(exc)[:200]}).",
            "The file may be truncated or not a model; download it again.",
        ) from None


SAFE_TORCH = (2, 6)  # torch.load(weights_only=True) could be made to run code before 2.6 (CVE-2025-32434)


def require_safe_torch() -> None:
    """Refuse to open files from strangers with a torch whose weights_only loader is not safe."""
    import torch

    from engines.core.errors import VoiceLabError

    found = tuple(int(x) for x in re.findall(r"\d+", torch.__version__)[:2])
    if found < SAFE_TORCH:
        raise VoiceLabError(
            f"This torch ({torch.__version__}) cannot open model files from other people safely: before 2.6 its "
            "safe loader could be tricked into running code (CVE-2025-32434).",
            "Install torch 2.6 or newer (e.g. VOICELAB_TORCH='torch>=2.6' bash scripts/setup.sh studio), then import again.")


def refused_global(message: str) -> str:
    """The global (class or function) a refused unpickle asked for, from torch's message; '' when the
    refusal was for something else (a damaged file: "Unsupported operand")."""
    match = re.search(r"GLOBAL ([\w.]+)", message)
    return match.group(1) if match else ""


def to_plain(value: Any) -> Any:
    """Turn Namespaces, OrderedDicts and omegaconf stand-ins into plain dicts/lists.

    Tensors and scalars are returned unchanged; fairseq Dictionaries stay
    inert records (nothing we need lives in them).
    """
    if isinstance(value, argparse.Namespace):
        return {k: to_plain(v) for k, v in vars(value).items()}
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_plain(v) for v in value) if isinstance(value, list) else tuple(to_plain(v) for v in value)
    if isinstance(value, InertObject):
        return _omegaconf_to_plain(value)
    return value


def _omegaconf_to_plain(obj: InertObject) -> Any:
    """Read the value out of a recorded omegaconf node/container; other records pass through."""
    name = obj.qualified_name
    state = obj.state if isinstance(obj.state, dict) else {}
    if name.startswith("omegaconf.nodes."):
        return to_plain(state.get("_val"))
    if name == "omegaconf.dictconfig.DictConfig":
        content = state.get("_content")
        return to_plain(content) if isinstance(content, (dict, list)) else None
    if name == "omegaconf.listconfig.ListConfig":
        content = state.get("_content")
        return to_plain(list(content)) if isinstance(content, (list, tuple)) else None
    return obj
