"""Build a ready-to-use CosyVoice model dir for a fine-tuned speaker.

The new dir holds the base model's files (symlinked, or copied), the
fine-tuned ``llm.pt`` (and ``flow.pt`` when trained) with training keys
stripped, and ``spk2info.pt`` with the speaker's mean embedding stored as
``embedding``, ``llm_embedding`` and ``flow_embedding`` (tensor [1, 192]),
merged with any speakers the base already had. It is built in a temporary
sibling folder and renamed into place when complete.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from engines.core.errors import InvalidInputError, InvalidModelError
from engines.core.hooks import Hooks, ensure_hooks
from engines.core.messages import msg
from engines.cosyvoice import upstream
from engines.cosyvoice.average import strip_training_keys

REPLACED = ("llm.pt", "flow.pt", "spk2info.pt")
EMBED_DIM = 192
INFO_FILE = "voicelab_model.json"


@dataclass
class AssembleResult:
    model_dir: Path
    speakers: list[str]
    linked: list[str]
    copied: list[str]


def default_models_dir(ws: Any) -> Path:
    return Path(ws.cosyvoice) / "models"


def load_speaker_embedding(source: Any, spk_name: str | None = None) -> "Any":
    """A float32 tensor [1, 192] from a spk2embedding.pt path, a dict, or a vector.

    From a file/dict, the entry ``spk_name`` is used, or the only entry.
    """
    import torch

    data = source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InvalidInputError(f"Speaker embedding file {path} does not exist.",
                                    "Run `voicelab cosyvoice prepare` to compute spk2embedding.pt.")
        data = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(data, dict):
        if spk_name is not None and spk_name in data:
            data = data[spk_name]
        elif len(data) == 1:
            data = next(iter(data.values()))
        else:
            raise InvalidInputError(f"Speaker '{spk_name}' is not in the embedding file ({', '.join(map(str, list(data)[:5]))}...).",
                                    "Pass the speaker id used in the dataset.")
        if isinstance(data, dict) and "embedding" in data:
            data = data["embedding"]
    tensor = torch.as_tensor(data, dtype=torch.float32).reshape(1, -1)
    if tensor.shape[1] != EMBED_DIM:
        raise InvalidInputError(f"A speaker embedding must have {EMBED_DIM} values (got {tensor.shape[1]}).")
    if not torch.isfinite(tensor).all():
        raise InvalidInputError("The speaker embedding contains NaN or infinite values.")
    return tensor


def speaker_entry(embedding: Any) -> dict:
    """spk2info value: the same [1, 192] embedding for the frontend, llm and flow."""
    emb = embedding.detach().to("cpu").float().reshape(1, EMBED_DIM)
    return {"embedding": emb.clone(), "llm_embedding": emb.clone(), "flow_embedding": emb.clone()}


def _save_weights(src: Path, dst: Path) -> None:
    import torch

    try:
        state = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise InvalidModelError(f"{src} is not a readable torch checkpoint: {exc}") from exc
    if not isinstance(state, dict):
        raise InvalidModelError(f"{src} does not hold a state dict.")
    torch.save(strip_training_keys(state), dst)


def assemble_model_dir(base_model_dir: str | os.PathLike, out_dir: str | os.PathLike, llm_pt: str | os.PathLike,
                       flow_pt: str | os.PathLike | None = None, spk_name: str = "speaker",
                       spk_embedding: Any = None, link: bool = True, overwrite: bool = False,
                       embedding_key: str | None = None, hooks: Hooks | None = None) -> AssembleResult:
    """Create ``out_dir`` = base model + fine-tuned weights + ``spk2info.pt`` with ``spk_name``.

    ``spk_embedding``: path to spk2embedding.pt (entry ``embedding_key`` or
    ``spk_name``, or its only entry), a dict, or a 192-value vector.
    """
    import torch

    hooks = ensure_hooks(hooks)
    base = Path(base_model_dir).resolve()
    out = Path(out_dir)
    if upstream.detect_version(base) is None:
        upstream.model_yaml(base)  # raises with an explanation
    if not spk_name or not str(spk_name).strip():
        raise InvalidInputError("The speaker needs a name.")
    if spk_embedding is None:
        raise InvalidInputError("No speaker embedding given.", "Pass the dataset's spk2embedding.pt.")
    llm_src = Path(llm_pt)
    if not llm_src.is_file():
        raise InvalidInputError(f"llm checkpoint {llm_src} does not exist.")
    flow_src = Path(flow_pt) if flow_pt else None
    if flow_src is not None and not flow_src.is_file():
        raise InvalidInputError(f"flow checkpoint {flow_src} does not exist.")
    if out.resolve() == base:
        raise InvalidInputError("The new model dir must differ from the base model dir.")
    if out.exists() and not overwrite:
        raise InvalidInputError(f"{out} already exists.", "Choose another name or allow overwriting.")
    embedding = load_speaker_embedding(spk_embedding, embedding_key or spk_name)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    linked, copied = [], []
    try:
        entries = sorted(base.iterdir())
        for i, entry in enumerate(entries):
            hooks.check_cancel()
            if entry.name in REPLACED and (entry.name != "flow.pt" or flow_src is not None):
                continue
            target = tmp / entry.name
            if link:
                target.symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
                linked.append(entry.name)
            else:
                if entry.is_dir():
                    shutil.copytree(entry, target, symlinks=False)
                else:
                    shutil.copy2(entry, target)
                copied.append(entry.name)
            hooks.progress(0.6 * (i + 1) / max(1, len(entries)), f"{'Linked' if link else 'Copied'} {entry.name}")
        hooks.progress(0.7, msg("progress.cv_writing", name="llm.pt"))
        _save_weights(llm_src, tmp / "llm.pt")
        if flow_src is not None:
            hooks.progress(0.8, msg("progress.cv_writing", name="flow.pt"))
            _save_weights(flow_src, tmp / "flow.pt")
        spk2info: dict = {}
        base_info = base / "spk2info.pt"
        if base_info.is_file():
            spk2info = dict(torch.load(base_info, map_location="cpu", weights_only=True))
        spk2info[str(spk_name)] = speaker_entry(embedding)
        torch.save(spk2info, tmp / "spk2info.pt")
        (tmp / INFO_FILE).write_text(json.dumps({
            "base_model_dir": str(base), "version": upstream.detect_version(base), "speaker": str(spk_name),
            "llm_source": str(llm_src.resolve()), "flow_source": str(flow_src.resolve()) if flow_src else None,
            "linked": link, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        }, indent=2) + "\n")
        hooks.progress(0.95, msg("progress.cv_moving"))
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    hooks.progress(1.0, msg("progress.cv_model_ready", path=str(out)))
    return AssembleResult(out, list(spk2info.keys()), linked, copied)


def merge_speakers(model_dir: str | os.PathLike, speakers: Sequence[tuple[str, Any]]) -> list[str]:
    """Add or replace speakers (name, embedding) in an assembled model dir's spk2info.pt."""
    import torch

    from engines.core.atomic import torch_save

    path = Path(model_dir) / "spk2info.pt"
    if path.is_symlink():
        raise InvalidInputError(f"{path} is shared with the base model; assemble a new model dir instead.")
    info = dict(torch.load(path, map_location="cpu", weights_only=True)) if path.is_file() else {}
    for name, emb in speakers:
        info[str(name)] = speaker_entry(load_speaker_embedding(emb, name))
    torch_save(info, path)
    return list(info.keys())


def list_models(ws: Any) -> list[Path]:
    """Assembled model dirs under ``<workspace>/cosyvoice/models`` (those with a cosyvoice*.yaml)."""
    root = default_models_dir(ws)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and upstream.detect_version(p) is not None)


def assemble_from_experiment(ws: Any, exp_name: str, base_model_dir: str | os.PathLike, name: str, spk_name: str,
                             spk_embedding: Any, mode: str = "last", num: int = 5, link: bool = True,
                             overwrite: bool = False, hooks: Hooks | None = None) -> AssembleResult:
    """Average each trained model of an experiment (llm, and flow when trained), then assemble.

    The averages go to ``<exp>/averaged/{llm,flow}.pt``; the model dir to
    ``<workspace>/cosyvoice/models/<name>``.
    """
    from engines.core.settings import safe_name
    from engines.cosyvoice.average import average_checkpoints, epoch_checkpoints

    hooks = ensure_hooks(hooks)
    exp = ws.cosyvoice_experiment_dir(exp_name)
    averaged: dict[str, Path] = {}
    models = [m for m in ("llm", "flow") if epoch_checkpoints(exp / m)]
    if "llm" not in models:
        raise InvalidInputError(f"Experiment '{exp_name}' has no finished llm epochs.", "Train the llm first.")
    for i, model in enumerate(models):
        stage = hooks.scaled(0.5 * i / len(models), 0.5 * (i + 1) / len(models))
        averaged[model] = average_checkpoints(exp / model, exp / "averaged" / f"{model}.pt", mode, num, stage).out_path
    return assemble_model_dir(base_model_dir, default_models_dir(ws) / safe_name(name), averaged["llm"],
                              averaged.get("flow"), spk_name=spk_name, spk_embedding=spk_embedding, link=link,
                              overwrite=overwrite, hooks=hooks.scaled(0.5, 1.0))
