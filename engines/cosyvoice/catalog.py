"""What a workspace holds for CosyVoice: experiments, their checkpoints, base and assembled model dirs.

Read-only file-system queries shared by the operations, the CLI and the CosyVoice tab.
"""

from __future__ import annotations

from pathlib import Path

from engines.core.settings import Workspace
from engines.cosyvoice.assemble import list_models
from engines.cosyvoice.average import cv_loss
from engines.cosyvoice.dataprep import default_model_dir
from engines.cosyvoice.train import list_checkpoints
from engines.cosyvoice.upstream import detect_version


def list_experiments(ws: Workspace) -> list[str]:
    """CosyVoice fine-tuning experiments (folders under cosyvoice/train/ that a run configured)."""
    root = Path(ws.cosyvoice) / "train"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and ((p / "params.json").is_file()
                                                                  or (p / "sft.yaml").is_file()))


def checkpoint_rows(ws: Workspace, exp: str) -> list[list]:
    """[model, file name, cv loss, path] of every checkpoint of an experiment."""
    if not exp:
        return []
    rows = []
    for model in ("llm", "flow"):
        for p in list_checkpoints(ws.cosyvoice_experiment_dir(exp) / model):
            loss = cv_loss(p)
            rows.append([model, p.name, "" if loss is None else round(loss, 4), str(p)])
    return rows


def all_checkpoints(ws: Workspace) -> list[tuple[str, str]]:
    """(label, path) of every epoch_N_whole.pt in the workspace's experiments."""
    out = []
    for exp in list_experiments(ws):
        for model in ("llm", "flow"):
            for p in list_checkpoints(ws.cosyvoice_experiment_dir(exp) / model):
                if p.name.endswith("_whole.pt"):
                    out.append((f"{exp}/{model}/{p.name}", str(p)))
    return out


def base_model_dirs(ws: Workspace) -> list[str]:
    """CosyVoice model folders under <assets>/cosyvoice (and the default one when present)."""
    found = []
    root = Path(ws.assets) / "cosyvoice"
    if root.is_dir():
        found = [str(p) for p in sorted(root.iterdir()) if p.is_dir() and detect_version(p) is not None]
    default = default_model_dir(ws)
    if default.is_dir() and str(default) not in found:
        found.insert(0, str(default))
    return found


def synth_model_dirs(ws: Workspace) -> list[str]:
    """Model dirs synthesis can use: the assembled ones, then the base ones."""
    return [str(p) for p in list_models(ws)] + [d for d in base_model_dirs(ws) if detect_version(d) is not None]
