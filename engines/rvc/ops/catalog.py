"""What a workspace holds for RVC: experiments, their saved files and metrics, models and indexes.

Read-only queries over the file system (nothing here creates a folder or
imports torch), shared by the operations, the CLI and the tabs.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.core.errors import InvalidInputError
from engines.core.messages import msg
from engines.core.settings import Workspace
from engines.rvc.train.experiment import experiment_paths, list_checkpoints

# -- experiments ------------------------------------------------------------------------------

def list_experiments(ws: Workspace) -> list[str]:
    """Names of the RVC experiments in the workspace (non-empty folders under experiments/)."""
    root = ws.experiments
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.iterdir()))


def experiment_exists(ws: Workspace, exp_name: str) -> bool:
    try:
        return bool(exp_name) and ws.experiment_dir(exp_name).is_dir()
    except InvalidInputError:
        return False


@dataclass
class SavedFile:
    """One file a training run saved, for the checkpoint list."""

    kind: str  # "G", "D" or "model" (small inference model)
    path: Path
    epoch: int | None
    step: int
    size: int
    mtime: float


def saved_files(ws: Workspace, exp_name: str) -> list[SavedFile]:
    """G/D checkpoints and small models (``weights/<exp>_e<E>_s<S>.pth``) of an experiment, by step.

    Epochs of G/D come from metrics.jsonl. Small models count even when the experiment folder is gone.
    """
    out: list[SavedFile] = []
    if experiment_exists(ws, exp_name):
        root = ws.experiment_dir(exp_name)
        epoch_at_step = {int(r["step"]): int(r["epoch"]) for r in read_metrics(ws, exp_name)
                         if r.get("kind") == "epoch" and "step" in r and "epoch" in r}
        for prefix in ("G", "D"):
            for step, path in list_checkpoints(root, prefix):
                st = path.stat()
                out.append(SavedFile(prefix, path, epoch_at_step.get(step), step, st.st_size, st.st_mtime))
    elif not exp_name.strip():
        return out
    pattern = re.compile(rf"^{re.escape(exp_name)}_e(\d+)_s(\d+)\.pth$")
    if ws.weights.is_dir():
        for path in ws.weights.iterdir():
            m = pattern.match(path.name)
            if m:
                st = path.stat()
                out.append(SavedFile("model", path, int(m.group(1)), int(m.group(2)), st.st_size, st.st_mtime))
    out.sort(key=lambda s: (s.step, {"G": 0, "D": 1, "model": 2}[s.kind]))
    return out


def read_metrics(ws: Workspace, exp_name: str, kind: str | None = None) -> list[dict[str, Any]]:
    """An experiment's ``metrics.jsonl`` records (for loss plots), optionally one kind ("step"/"epoch")."""
    if not experiment_exists(ws, exp_name):
        return []
    path = experiment_paths(ws, exp_name).metrics
    out = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if kind is None or rec.get("kind") == kind:
                out.append(rec)
    return out


def experiment_settings(ws: Workspace, exp_name: str) -> dict[str, Any]:
    """What an existing experiment's files say about how it was made: sr, version, f0_method (when known).

    For experiments made outside the studio's jobs (e.g. by the CLI), so a resumed run keeps them.
    """
    if not experiment_exists(ws, exp_name):
        return {}
    root = ws.experiment_dir(exp_name)
    out: dict[str, Any] = {}
    try:
        rate = int(json.loads((root / "config.json").read_text(encoding="utf-8"))["data"]["sampling_rate"])
        out["sr"] = f"{rate // 1000}k"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    found = [v for v, dims in (("v2", 768), ("v1", 256)) if (root / f"3_feature{dims}").is_dir()]
    if len(found) == 1:
        out["version"] = found[0]
    try:
        method = json.loads((root / ".cache.json").read_text(encoding="utf-8"))["f0"]["method"]
        if method:
            out["f0_method"] = str(method)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return out


# -- models and indexes -----------------------------------------------------------------------

def resolve_model(ws: Workspace, model: str) -> Path:
    """A model given as a path, or as a name (with or without .pth) in ``<workspace>/weights``."""
    model = (model or "").strip()
    if not model:
        raise InvalidInputError(msg("model.none_chosen"))
    p = Path(model)
    if p.is_file():
        return p
    for cand in (ws.weights / model, ws.weights / f"{model}.pth"):
        if cand.is_file():
            return cand
    raise InvalidInputError(msg("model.not_found", model=str(model), weights=str(ws.weights)))


def resolve_index(ws: Workspace, index: str, model_path: Path) -> str | None:
    """``"auto"`` = the model's own workspace index if there is one; ``""``/``"none"`` = no index."""
    index = (index or "").strip()
    if index.lower() in ("", "none"):
        return None
    if index.lower() == "auto":
        found = guess_index(ws, model_path)
        return str(found) if found else None
    p = Path(index)
    if not p.is_file() and (ws.indices / index).is_file():
        p = ws.indices / index
    return str(p)


def list_models(ws: Workspace) -> list[str]:
    """Model file names in ``<workspace>/weights`` (sorted)."""
    return sorted(p.name for p in ws.weights.glob("*.pth") if p.is_file())


def list_indexes(ws: Workspace) -> list[dict[str, Any]]:
    """Every index the workspace holds: ``indices/*.index`` and the experiments' upstream-named files."""
    rows = []
    for p in sorted(ws.indices.glob("*.index")) + sorted(ws.experiments.glob("*/added_IVF*_Flat_nprobe_1_*.index")):
        st = p.stat()
        rows.append({"path": str(p), "name": p.name, "size": st.st_size,
                     "modified": time.strftime("%Y-%m-%d %H:%M", time.localtime(st.st_mtime))})
    return rows


def feature_versions(ws: Workspace, experiment: str) -> list[str]:
    """The model versions ("v1"/"v2") whose features an experiment has extracted."""
    from engines.rvc.index import DIM_OF_VERSION, feature_dir

    exp_dir = ws.experiment_dir(experiment)
    return [v for v in DIM_OF_VERSION if any(feature_dir(exp_dir, v).glob("*.npy"))]


def guess_index(ws: Workspace, model_path: str | Path) -> Path | None:
    """The workspace index that belongs to a model: the one it was imported with, else by its name
    ``<exp>[_e<E>_s<S>].pth``."""
    from engines.rvc.model_import.install import paired_index

    paired = paired_index(model_path)
    if paired is not None:
        return paired
    stem = Path(model_path).stem
    exp = re.sub(r"_e\d+_s\d+$", "", stem)
    for candidate in (ws.indices / f"{exp}.index", ws.indices / f"{stem}.index"):
        if candidate.is_file():
            return candidate
    exp_dir = ws.experiments / exp
    if exp_dir.is_dir():
        found = sorted(exp_dir.glob("added_IVF*_Flat_nprobe_1_*.index"))
        if found:
            return found[-1]
    return None


def generator_files(ws: Workspace) -> list[str]:
    """Every training checkpoint G_*.pth of the workspace's experiments."""
    return [str(p) for p in sorted(ws.experiments.glob("*/G_*.pth"))]
