"""Average CosyVoice training checkpoints (our own, without upstream's traps).

Upstream's ``average_model.py`` only builds its file list with
``--val_best``. Here the sources are either explicit files or chosen from a
training folder: the last N epochs, or the best N by validation loss read
from each checkpoint's ``.yaml`` (parsed as data: its ``grad_norm`` is a
pickled tensor tag that is never executed). ``epoch``/``step`` entries are
dropped, floating tensors are averaged in float64 and cast back, other
tensors must agree and are kept, and the result is written atomically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from engines.core.atomic import torch_save
from engines.core.errors import InvalidInputError, InvalidModelError
from engines.core.hooks import Hooks, ensure_hooks
from engines.core.messages import msg
from engines.cosyvoice.config import as_float, load_yaml_file

TRAINING_KEYS = ("epoch", "step")


@dataclass
class AverageResult:
    out_path: Path
    sources: list[Path]
    scores: dict[str, float | None] = field(default_factory=dict)


def strip_training_keys(state: dict) -> dict:
    """A checkpoint dict without upstream's ``epoch``/``step`` bookkeeping (AutoModel rejects them)."""
    return {k: v for k, v in state.items() if k not in TRAINING_KEYS}


def epoch_checkpoints(model_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(epoch, path) of every ``epoch_N_whole.pt`` in ``model_dir``, by epoch."""
    out = []
    for p in Path(model_dir).glob("epoch_*_whole.pt"):
        try:
            out.append((int(p.name.split("_")[1]), p))
        except ValueError:
            continue
    return sorted(out)


def cv_loss(checkpoint: str | os.PathLike) -> float | None:
    """Validation loss stored in the checkpoint's .yaml (``loss_dict.loss``), if any."""
    info = Path(checkpoint).with_suffix(".yaml")
    if not info.is_file():
        return None
    try:
        data = load_yaml_file(info)
    except Exception:  # noqa: BLE001 - unreadable info = unknown loss
        return None
    if not isinstance(data, dict):
        return None
    loss_dict = data.get("loss_dict") or {}
    return as_float(loss_dict.get("loss")) if isinstance(loss_dict, dict) else None


def select_checkpoints(model_dir: str | os.PathLike, mode: str = "last", num: int = 5) -> list[Path]:
    """The ``num`` last epochs, or the ``num`` with the lowest validation loss."""
    if num < 1:
        raise InvalidInputError("The number of checkpoints to average must be at least 1.")
    found = epoch_checkpoints(model_dir)
    if not found:
        raise InvalidInputError(f"No epoch_*_whole.pt checkpoints in {model_dir}.",
                                "Train for at least one epoch first, or pass checkpoint files explicitly.")
    if mode == "last":
        return [p for _, p in found[-num:]]
    if mode == "best":
        scored = [(cv_loss(p), e, p) for e, p in found]
        scored = [(loss, e, p) for loss, e, p in scored if loss is not None]
        if not scored:
            raise InvalidInputError(f"No validation losses found in the .yaml files of {model_dir}.",
                                    "Use mode 'last' instead.")
        scored.sort(key=lambda t: (t[0], -t[1]))
        return sorted((p for _, _, p in scored[:num]), key=lambda p: int(p.name.split("_")[1]))
    raise InvalidInputError(f"Unknown selection mode '{mode}'.", "Use 'last' or 'best'.")


def average_state_dicts(states: Sequence[dict]) -> dict:
    """Element-wise mean of float tensors; non-float tensors must agree and are kept."""
    import torch

    if not states:
        raise InvalidInputError("Nothing to average.")
    first = states[0]
    keys = list(first.keys())
    for i, st in enumerate(states[1:], start=2):
        if set(st.keys()) != set(keys):
            diff = sorted(set(st.keys()) ^ set(keys))[:3]
            raise InvalidModelError(f"Checkpoint {i} has different parameters than the first ({', '.join(diff)} ...).",
                                    "Average checkpoints of the same model (all llm or all flow).")
    out = {}
    for k in keys:
        v0 = first[k]
        if not isinstance(v0, torch.Tensor):
            out[k] = v0
            continue
        if v0.is_floating_point():
            acc = torch.zeros_like(v0, dtype=torch.float64)
            for st in states:
                if st[k].shape != v0.shape:
                    raise InvalidModelError(f"Parameter {k} has different shapes across checkpoints.")
                acc += st[k].to(torch.float64)
            out[k] = (acc / len(states)).to(v0.dtype)
        else:
            out[k] = states[-1][k].clone()
    return out


def load_checkpoint_state(path: str | os.PathLike) -> dict:
    """A training checkpoint's weights, without ``epoch``/``step`` (AutoModel-loadable)."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"Checkpoint {p} does not exist.")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise InvalidModelError(f"{p} is not a readable torch checkpoint: {exc}") from exc
    if not isinstance(state, dict):
        raise InvalidModelError(f"{p} does not hold a state dict.")
    return strip_training_keys(state)


def average_checkpoints(sources: Sequence[str | os.PathLike] | str | os.PathLike, out_path: str | os.PathLike,
                        mode: str = "last", num: int = 5, hooks: Hooks | None = None) -> AverageResult:
    """Average checkpoint files, or the ``mode``/``num`` selection of a training folder."""
    hooks = ensure_hooks(hooks)
    if isinstance(sources, (str, os.PathLike)) and Path(sources).is_dir():
        paths = select_checkpoints(sources, mode, num)
    elif isinstance(sources, (str, os.PathLike)):
        paths = [Path(sources)]
    else:
        paths = [Path(p) for p in sources]
    if not paths:
        raise InvalidInputError("No checkpoints to average.")
    for p in paths:
        if not p.is_file():
            raise InvalidInputError(f"Checkpoint {p} does not exist.")
    states = []
    for i, p in enumerate(paths):
        hooks.check_cancel()
        hooks.progress(i / (len(paths) + 1), f"Loading {p.name}")
        states.append(load_checkpoint_state(p))
    hooks.log("Averaging " + ", ".join(p.name for p in paths))
    averaged = average_state_dicts(states)
    del states
    out = torch_save(averaged, out_path)
    hooks.progress(1.0, msg("progress.cv_averaged", n=len(paths), name=Path(out_path).name))
    return AverageResult(out, paths, {p.name: cv_loss(p) for p in paths})
