"""CosyVoice jobs: upstream sync, transcription, data prep, training, averaging + assembly, synthesis.

Each operation mirrors a ``voicelab cosyvoice ...`` command (see
``engines.cosyvoice.cli``) so the tab, the CLI and scripts do the same
thing. Job parameters reuse the engine's dataclasses, extended with what a
job needs to locate its inputs (dataset name, prepared data name, ...).
Results are JSON-friendly dicts with a ``summary`` and the paths produced.
Nothing here imports torch at module import time.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from engines.core.atomic import write_json
from engines.core.errors import InvalidInputError
from engines.core.hooks import Hooks
from engines.core.jobs import operation
from engines.core.jsonable import jsonable
from engines.core.params import param
from engines.core.settings import Workspace, safe_name
from engines.cosyvoice.dataprep import PrepareParams
from engines.cosyvoice.synth import SynthParams
from engines.cosyvoice.train import CosyTrainParams
from engines.cosyvoice.upstream import PINNED_COMMIT, UPSTREAM_URL
from engines.dataset.asr import AsrParams
from engines.rvc.ab import COSYVOICE_PENDING


def _base_values(obj: Any, cls: type) -> Any:
    """The engine dataclass ``cls`` holding the matching fields of a job's params."""
    return cls(**{f.name: getattr(obj, f.name) for f in fields(cls)})


def _workspace_device(value: str, ws: Workspace) -> str:
    """A device left at 'auto' follows the studio's device setting (as the CLI does)."""
    return ws.settings.device if value == "auto" and ws.settings.device not in ("", "auto") else value


# -- upstream checkout ------------------------------------------------------------------------

@dataclass
class VendorSyncJob:
    url: str = param(UPSTREAM_URL, help="Repository URL or local path of upstream CosyVoice")
    commit: str = param(PINNED_COMMIT, help="Commit to check out (default: the pinned one)")
    dest: str = param("", help="Checkout folder (default: settings cosyvoice.repo)")


@operation("cosyvoice.vendor_sync", params=VendorSyncJob, kind="light", title="Sync upstream CosyVoice")
def vendor_sync_op(p: VendorSyncJob, hooks: Hooks, ws: Workspace) -> dict:
    from engines.cosyvoice.upstream import checkout_path, vendor_sync

    dest = Path(p.dest) if p.dest.strip() else checkout_path(ws.settings)
    res = vendor_sync(p.url or UPSTREAM_URL, dest, p.commit or PINNED_COMMIT, hooks)
    return {"summary": f"CosyVoice {res.commit[:12]} in {res.path}", "checkout": str(res.path),
            "commit": res.commit, "submodules": list(res.submodules)}


# -- transcripts ------------------------------------------------------------------------------

@dataclass
class TranscribeJob(AsrParams):
    dataset: str = param("", help="Dataset whose clips are transcribed")


@operation("cosyvoice.transcribe", params=TranscribeJob, kind="gpu", title="Transcribe a dataset (Whisper)")
def transcribe_op(p: TranscribeJob, hooks: Hooks, ws: Workspace) -> dict:
    from engines.dataset.asr import transcribe_dataset

    if not p.dataset.strip():
        raise InvalidInputError("No dataset chosen.", "Pick the dataset to transcribe.")
    params = _base_values(p, AsrParams)
    params.asr_device = _workspace_device(params.asr_device, ws)
    rep = transcribe_dataset(ws, p.dataset, params, hooks)
    summary = (f"transcribed {rep.transcribed}, already done {rep.skipped_existing}, kept edited {rep.kept_edited}, "
               f"failed {len(rep.failed)}")
    return {"summary": summary, "dataset": p.dataset, "transcripts": rep.transcripts, "report": asdict(rep)}


# -- data preparation -------------------------------------------------------------------------

@dataclass
class PrepareJob(PrepareParams):
    dataset: str = param("", help="Dataset with clips and transcripts")
    out_name: str = param("", help="Name of the prepared data (runtime/cosyvoice/data/<name>; default: the dataset)")


@operation("cosyvoice.prepare", params=PrepareJob, kind="gpu", title="Prepare CosyVoice training data")
def prepare_op(p: PrepareJob, hooks: Hooks, ws: Workspace) -> dict:
    from engines.cosyvoice.dataprep import prepare_cosyvoice_data

    if not p.dataset.strip():
        raise InvalidInputError("No dataset chosen.", "Pick the dataset to prepare.")
    params = _base_values(p, PrepareParams)
    params.onnx_device = _workspace_device(params.onnx_device, ws)
    out_name = p.out_name.strip() or p.dataset
    rep = prepare_cosyvoice_data(ws, p.dataset, out_name, params, hooks)
    summary = (f"{rep.train_utts} train / {rep.dev_utts} dev utterance(s) for speaker '{rep.speaker}' "
               f"({rep.version}); {len(rep.skipped)} skipped")
    return {"summary": summary, "data": safe_name(out_name), "out_dir": rep.out_dir, "train_list": rep.train_list,
            "dev_list": rep.dev_list, "report": jsonable(rep.to_dict())}


# -- training ---------------------------------------------------------------------------------

@dataclass
class TrainJob(CosyTrainParams):
    data: str = param("", help="Prepared data name (runtime/cosyvoice/data/<name>) instead of train/cv lists")


def resolve_train_params(ws: Workspace, p: TrainJob) -> CosyTrainParams:
    """The engine's train params, with the data lists of a prepared data name filled in."""
    from engines.cosyvoice.dataprep import prepared_lists

    params = _base_values(p, CosyTrainParams)
    if p.data.strip():
        train_list, dev_list = prepared_lists(ws, p.data.strip())
        params.train_data = params.train_data or str(train_list)
        params.cv_data = params.cv_data or str(dev_list)
    return params


@operation("cosyvoice.train", params=TrainJob, kind="gpu", title="Fine-tune CosyVoice")
def train_op(p: TrainJob, hooks: Hooks, ws: Workspace) -> dict:
    from engines.cosyvoice.train import train_cosyvoice

    res = train_cosyvoice(ws, resolve_train_params(ws, p), hooks)
    latest = {m: (str(c) if c else None) for m, c in res.latest.items()}
    parts = [f"{m}: {Path(c).name if c else 'no checkpoint'}" for m, c in latest.items()]
    if res.skipped:
        parts.append(f"already trained: {', '.join(res.skipped)}")
    return {"summary": "; ".join(parts) or "nothing trained", "exp_dir": str(res.exp_dir),
            "config": str(res.config_path), "metrics": str(res.metrics_path), "latest": latest,
            "checkpoints": {m: [str(c) for c in cs] for m, cs in res.checkpoints.items()},
            "skipped": list(res.skipped)}


# -- average + assemble -----------------------------------------------------------------------

@dataclass
class AssembleJob:
    exp_name: str = param("cosy_sft", help="Experiment to average (cosyvoice/train/<exp>)")
    name: str = param("", help="New model name (runtime/cosyvoice/models/<name>; default: the experiment)")
    speaker: str = param("", help="Speaker id to register in spk2info.pt (default: the prepared data's speaker)")
    base_model_dir: str = param("", help="Base model dir that was fine-tuned (default: the one the experiment used)")
    data: str = param("", help="Prepared data whose spk2embedding.pt holds the speaker (default: the experiment's)")
    mode: str = param("last", choices=("last", "best"), help="Average the last N epochs or the best N by cv loss")
    num: int = param(5, min=1, max=100, help="How many epochs to average")
    copy: bool = param(False, help="Copy the base files instead of symlinking them")
    overwrite: bool = param(True, help="Replace an existing model dir of that name")


def experiment_params(ws: Workspace, exp_name: str) -> dict:
    """The parameters of an experiment's last training run ({} when unknown)."""
    from engines.cosyvoice.train import experiment_dir

    path = experiment_dir(ws, exp_name) / "params.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def experiment_data_dir(ws: Workspace, exp_name: str, data: str = "") -> Path | None:
    """The prepared data folder of an experiment: given by name, or found from its training list."""
    if data.strip():
        return ws.cosyvoice / "data" / safe_name(data.strip())
    train_list = experiment_params(ws, exp_name).get("train_data") or ""
    if train_list:
        # <data>/train/parquet/data.list
        return Path(train_list).resolve().parents[2]
    return None


def _speaker_embedding_file(ws: Workspace, p: AssembleJob) -> Path:
    data_dir = experiment_data_dir(ws, p.exp_name, p.data)
    if data_dir is None:
        raise InvalidInputError(f"Experiment '{p.exp_name}' does not say which data it was trained on.",
                                "Choose the prepared data that holds the speaker's embedding.")
    path = data_dir / "train" / "spk2embedding.pt"
    if not path.is_file():
        raise InvalidInputError(f"{path} does not exist.", "Prepare the data (step 2) first.")
    return path


def _default_speaker(embedding_file: Path) -> str:
    """The speaker recorded by the data preparation next to the embeddings."""
    try:
        report = json.loads((embedding_file.parents[1] / "prepare.json").read_text(encoding="utf-8"))
        return str(report["report"]["speaker"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""


@operation("cosyvoice.assemble", params=AssembleJob, kind="light", title="Average checkpoints and assemble a model dir")
def assemble_op(p: AssembleJob, hooks: Hooks, ws: Workspace) -> dict:
    from engines.cosyvoice.assemble import (
        assemble_from_experiment,
        load_speaker_embedding,
    )

    if not p.exp_name.strip():
        raise InvalidInputError("No experiment chosen.", "Pick the training experiment to average.")
    base = p.base_model_dir.strip() or experiment_params(ws, p.exp_name).get("model_dir") or ""
    if not base:
        raise InvalidInputError(f"The base model of experiment '{p.exp_name}' is unknown.",
                                "Give the base model dir that was fine-tuned.")
    emb_file = _speaker_embedding_file(ws, p)
    speaker = p.speaker.strip() or _default_speaker(emb_file)
    if not speaker:
        raise InvalidInputError("No speaker name given.", "Type the speaker id to register in spk2info.pt.")
    embedding = load_speaker_embedding(emb_file, speaker)
    name = p.name.strip() or p.exp_name
    res = assemble_from_experiment(ws, p.exp_name, base, name, speaker, embedding, p.mode, p.num,
                                   link=not p.copy, overwrite=p.overwrite, hooks=hooks)
    return {"summary": f"model dir {res.model_dir.name} with speaker(s) {', '.join(res.speakers)}",
            "model_dir": str(res.model_dir), "speakers": list(res.speakers), "speaker": speaker}


# -- synthesis --------------------------------------------------------------------------------

@dataclass
class SynthJob(SynthParams):
    model: str = param("", help="Assembled model name (runtime/cosyvoice/models/<name>) instead of model_dir")
    speeds: list[str] = param(default_factory=list, help="Compare grid: several speeds (e.g. 0.9, 1.0, 1.1)")
    presets: list[str] = param(default_factory=list, help="Compare grid: several presets")
    checkpoints: list[str] = param(default_factory=list, help="Compare grid: several checkpoints")
    out: str = param("", help="Output wav (single) or folder (grid); default under runtime/outputs/cosyvoice")


def _speeds(values: list[Any]) -> list[float]:
    out = []
    for v in values:
        try:
            out.append(float(v))
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"'{v}' is not a speed.", "Give numbers between 0.5 and 2.0.") from exc
    return out


@operation("cosyvoice.synth", params=SynthJob, kind="gpu", title="CosyVoice synthesis")
def synth_op(p: SynthJob, hooks: Hooks, ws: Workspace) -> dict:
    from engines.cosyvoice.assemble import default_models_dir
    from engines.cosyvoice.synth import compare_grid, load_presets, synthesize

    model_dir = str(default_models_dir(ws) / safe_name(p.model)) if p.model.strip() else p.model_dir
    if not model_dir:
        raise InvalidInputError("No model given.", "Choose an assembled model or a model dir.")
    presets = load_presets(ws)
    checkout = ws.settings.cosyvoice_repo
    stamp = time.strftime("%Y%m%d-%H%M%S")
    speeds = _speeds(p.speeds)
    if speeds or p.presets or p.checkpoints:
        out_dir = Path(p.out) if p.out else ws.outputs / "cosyvoice" / f"grid_{Path(model_dir).name}_{stamp}"
        items = compare_grid(model_dir, p.text, p.speaker or None, out_dir, presets=p.presets or [p.preset],
                             speeds=speeds or [p.speed], checkpoints=p.checkpoints or [p.checkpoint or None],
                             seed=p.seed, mode=p.mode, prompt_wav=p.prompt_wav or None,
                             prompt_text=p.prompt_text or None, preset_texts=presets, hooks=hooks, checkout=checkout)
        grid = [{"checkpoint": it.checkpoint, "preset": it.preset, "speed": it.speed, "audio": str(it.path)}
                for it in items]
        return {"summary": f"{len(grid)} take(s) in {out_dir}", "grid": grid, "out_dir": str(out_dir),
                "model_dir": model_dir}
    out = Path(p.out) if p.out else ws.outputs / "cosyvoice" / (
        f"{Path(model_dir).name}_{safe_name(p.speaker or p.mode)}_{stamp}.wav")
    path = synthesize(model_dir, p.text, p.speaker or None, speed=p.speed, seed=p.seed, mode=p.mode,
                      prompt_wav=p.prompt_wav or None, prompt_text=p.prompt_text or None,
                      instruct=p.instruct or None, checkpoint=p.checkpoint or None, out_path=out, hooks=hooks,
                      preset=p.preset, presets=presets, checkout=checkout)
    return {"summary": f"wrote {path.name}", "audio": str(path), "model_dir": model_dir}


# -- hand-over to the A/B tab -----------------------------------------------------------------

def send_to_ab(ws: Workspace, model_dir: str, checkpoint_a: str, checkpoint_b: str, text: str = "",
               speaker: str = "", mode: str = "sft", seed: int = 0, speed: float = 1.0) -> Path:
    """Write ``<workspace>/ab/cosyvoice_pending.json`` for the A/B tab to pre-fill a comparison.

    ``checkpoint_*`` are epoch_N_whole.pt paths (or "" for the model dir's own weights).
    """
    if not model_dir:
        raise InvalidInputError("No model chosen.", "Pick the model dir both checkpoints belong to.")
    if not checkpoint_a and not checkpoint_b:
        raise InvalidInputError("No checkpoints chosen.", "Pick two checkpoints (A and B) to compare.")
    for c in (checkpoint_a, checkpoint_b):
        if c and not Path(c).is_file():
            raise InvalidInputError(f"Checkpoint {c} does not exist.")
    record = {"kind": "cosyvoice", "model_dir": str(model_dir), "a": {"checkpoint": checkpoint_a or None},
              "b": {"checkpoint": checkpoint_b or None}, "text": text, "speaker": speaker, "mode": mode,
              "seed": int(seed), "speed": float(speed), "created": time.time()}
    return write_json(ws.root / COSYVOICE_PENDING, record)
