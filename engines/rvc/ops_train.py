"""RVC training as background jobs: ``rvc.preprocess`` (data stages only) and ``rvc.train`` (everything).

Both take :class:`engines.rvc.train_params.TrainParams` (the same options as
``voicelab rvc preprocess|extract|train``) and call the engine the way
``engines.rvc.cli_train`` does. Before any work starts, :func:`preflight`
checks the weight files the requested stages will need (HuBERT, the pitch
method's model, the pretrained G/D), so a missing file fails the job at once
with the file, its place and the download command, instead of after a long
preprocessing run.

The small helpers below (experiments, pretrained files, asset rows,
checkpoint rows) are what the RVC Train tab shows; they read only the file
system. Nothing here imports torch at import time (``engines.rvc.train`` does,
so it is imported inside the operations).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from engines.core.errors import InvalidInputError, MissingAssetError
from engines.core.hooks import Hooks
from engines.core.jobs import operation
from engines.core.settings import Settings, Workspace, safe_name
from engines.rvc.train_params import TrainParams

DATA_STAGES = ("preprocess", "f0", "feature")


# -- what a run needs ---------------------------------------------------------------------------

def pretrained_asset_names(sr: str, version: str, f0: bool) -> tuple[str, str]:
    """Manifest names of the pretrained G/D matching a model (e.g. ``pretrained_v2/f0G40k``)."""
    folder = "pretrained_v2" if version == "v2" else "pretrained"
    prefix = "f0" if f0 else ""
    return f"{folder}/{prefix}G{sr}", f"{folder}/{prefix}D{sr}"


def pretrained_paths(settings: Settings, sr: str, version: str, f0: bool) -> tuple[Path, Path]:
    """Where the matching pretrained G/D live (or would live) under the assets folder."""
    from engines.assets.manifest import asset_path

    g, d = pretrained_asset_names(sr, version, f0)
    return asset_path(settings, g), asset_path(settings, d)


def rmvpe_location(ws: Workspace, params: TrainParams) -> Path:
    return Path(params.rmvpe_path) if params.rmvpe_path else ws.settings.resolved_rmvpe()


def preflight(ws: Workspace, params: TrainParams, stages: Sequence[str], train: bool) -> None:
    """Raise the error a run of ``stages`` (and training when ``train``) would hit for lack of a file."""
    from engines.assets.manifest import require_asset
    from engines.rvc.f0 import method_problem

    safe_name(params.exp_name)
    if "preprocess" in stages and not params.skip_preprocess and not params.dataset.strip():
        raise InvalidInputError("No dataset chosen.", "Choose a dataset (or a folder of audio), or tick 'skip preprocess'.")
    if "f0" in stages and params.f0 and not params.skip_f0:
        problem = method_problem(params.f0_method, rmvpe_location(ws, params))
        if problem is not None:
            raise problem
    if "feature" in stages and not params.skip_feature:
        if params.hubert_path:
            if not Path(params.hubert_path).exists():
                raise MissingAssetError("hubert_base.pt", params.hubert_path, "voicelab assets download hubert_base",
                                        "HuBERT content features")
        else:
            require_asset(ws.settings, "hubert_base", why="HuBERT content features")
    if train and not _has_checkpoints(ws, params.exp_name):  # a resumed run never loads the pretrained files
        for path, what in ((params.pretrained_g, "generator (G)"), (params.pretrained_d, "discriminator (D)")):
            if path and not Path(path).is_file():
                raise InvalidInputError(f"Pretrained {what} not found: {path}",
                                        "Fix the path, run `voicelab assets download ...` for it, or leave it empty "
                                        "to train from scratch.")


def _has_checkpoints(ws: Workspace, exp_name: str) -> bool:
    from engines.rvc.experiment import latest_checkpoint

    if not experiment_exists(ws, exp_name):
        return False
    root = ws.experiment_dir(exp_name)
    return latest_checkpoint(root, "G") is not None and latest_checkpoint(root, "D") is not None


# -- what an experiment holds ---------------------------------------------------------------

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
    """G/D checkpoints and small models of an experiment, by step (epochs of G/D from metrics.jsonl)."""
    from engines.rvc.experiment import list_checkpoints

    if not experiment_exists(ws, exp_name):
        return []
    root = ws.experiment_dir(exp_name)
    epoch_at_step = {int(r["step"]): int(r["epoch"]) for r in read_metrics(ws, exp_name)
                     if r.get("kind") == "epoch" and "step" in r and "epoch" in r}
    out: list[SavedFile] = []
    for prefix in ("G", "D"):
        for step, path in list_checkpoints(root, prefix):
            st = path.stat()
            out.append(SavedFile(prefix, path, epoch_at_step.get(step), step, st.st_size, st.st_mtime))
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
    """``metrics.jsonl`` records of an existing experiment (no folder is created for a new name)."""
    if not experiment_exists(ws, exp_name):
        return []
    if not (ws.experiment_dir(exp_name) / "metrics.jsonl").is_file():
        return []
    from engines.rvc.train import metrics_records

    return metrics_records(ws, exp_name, kind)


def experiment_settings(ws: Workspace, exp_name: str) -> dict[str, Any]:
    """What an existing experiment's files say about how it was made: sr, version, f0_method (when known).

    For experiments made outside the studio's jobs (e.g. by the CLI), so a resumed run keeps them.
    """
    import json

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


def _count(folder: Path, pattern: str) -> int:
    return sum(1 for _ in folder.glob(pattern)) if folder.is_dir() else 0


# -- operations -------------------------------------------------------------------------------

@operation("rvc.preprocess", params=TrainParams, kind="gpu", title="RVC: preprocess + extract pitch and features")
def preprocess_op(p: TrainParams, hooks: Hooks, ws: Workspace) -> dict:
    """Steps 1-2 of training: pieces, pitch, content features and filelist.txt (cached stages skipped)."""
    from engines.rvc.configs import parse_sr
    from engines.rvc.experiment import experiment_paths
    from engines.rvc.preprocess import preprocess_dataset
    from engines.rvc.train import prepare_experiment

    preflight(ws, p, DATA_STAGES, train=False)
    paths = experiment_paths(ws, p.exp_name)
    cached = None
    if not p.skip_preprocess:
        res = preprocess_dataset(ws, p.exp_name, p.dataset, parse_sr(p.sr)[1], n_processes=p.n_processes,
                                 force=p.force, hooks=hooks.scaled(0.0, 0.3))
        cached = res.cached
    hooks.check_cancel()
    entries = prepare_experiment(ws, p, hooks.scaled(0.3, 1.0), stages=("f0", "feature"))
    pieces = len(paths.piece_names())
    f0_files = _count(paths.f0_hz, "*.npy") if p.f0 else 0
    features = _count(paths.features(p.version), "*.npy")
    parts = [f"{pieces} pieces" + (" (cached)" if cached else " (reused)" if cached is None else "")]
    if p.f0:
        parts.append(f"{f0_files} pitch files ({p.f0_method})")
    parts.append(f"{features} {p.version} feature files")
    summary = f"'{p.exp_name}': " + ", ".join(parts) + f"; filelist.txt with {entries} entries"
    return {"summary": summary, "exp_name": p.exp_name, "exp_dir": str(paths.root), "pieces": pieces,
            "f0_files": f0_files, "feature_files": features, "filelist": str(paths.filelist),
            "filelist_entries": entries}


@operation("rvc.train", params=TrainParams, kind="gpu", title="RVC: train a voice model")
def train_op(p: TrainParams, hooks: Hooks, ws: Workspace) -> dict:
    """The whole pipeline (preprocess -> pitch -> features -> training), resuming from the latest G/D."""
    from engines.rvc.train import run_rvc_training

    preflight(ws, p, DATA_STAGES, train=True)
    res = run_rvc_training(ws, p, hooks)
    losses = {k: round(float(v), 5) for k, v in res.last_losses.items()}
    model = res.weights.name if res.weights else "no final model"
    summary = (f"'{p.exp_name}' trained to epoch {res.epochs} ({res.steps} steps, {res.seconds_per_step:.2f} s/step): "
               f"{model}, {len(res.small_models)} checkpoint model(s), {len(res.checkpoints) // 2} G/D pair(s) saved")
    if "loss_mel" in losses:
        summary += f"; last mel loss {losses['loss_mel']:.3f}"
    return {
        "summary": summary,
        "exp_name": p.exp_name,
        "exp_dir": str(res.exp_dir),
        "weights": str(res.weights) if res.weights else None,
        "small_models": [str(s) for s in res.small_models],
        "checkpoints": [str(c) for c in res.checkpoints],
        "epochs": res.epochs,
        "steps": res.steps,
        "last_losses": losses,
        "seconds_per_step": res.seconds_per_step,
        "seconds": round(res.seconds, 2),
        "metrics": str(res.metrics) if res.metrics else None,
        "resumed_from": str(res.resumed_from) if res.resumed_from else None,
    }


__all__ = ["preflight", "pretrained_asset_names", "pretrained_paths", "list_experiments", "saved_files", "SavedFile",
           "read_metrics", "experiment_settings", "preprocess_op", "train_op"]
