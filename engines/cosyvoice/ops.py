"""CosyVoice operations: upstream sync, doctor, data prep, training, averaging, assembly, synthesis.

The CosyVoice tab submits them as jobs and ``voicelab cosyvoice ...`` /
``voicelab vendor sync`` run them in the foreground, with the same params.
Job parameters reuse the engine's dataclasses, extended with what a job
needs to locate its inputs (prepared data name, model name, ...). Results
are JSON-friendly dicts with a ``summary`` and the paths produced. Nothing
here imports torch at module import time.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from engines.core.device import follow_workspace
from engines.core.errors import InvalidInputError
from engines.core.hooks import Hooks
from engines.core.jsonable import jsonable
from engines.core.ops import Command, operation
from engines.core.params import param, subset
from engines.core.settings import Workspace, safe_name
from engines.cosyvoice.params import CosyTrainParams, PrepareParams
from engines.cosyvoice.synth import SynthParams
from engines.cosyvoice.upstream import PINNED_COMMIT

MIN_PROMPT_SECONDS = 0.5  # a voice prompt shorter than this carries no usable speaker information

# -- upstream checkout ------------------------------------------------------------------------

@dataclass
class VendorSyncJob:
    source: str = param("", help="Where to fetch CosyVoice from: a git URL, a local clone/mirror or a .bundle file "
                                 "(default: settings cosyvoice_source, else GitHub)", path="repo")
    matcha_source: str = param("", help="Where to fetch its Matcha-TTS submodule from (default: settings "
                                        "matcha_source, else the GitHub URL in upstream's .gitmodules)", path="repo")
    commit: str = param(PINNED_COMMIT, help="Commit to check out (default: the pinned one)")
    dest: str = param("", path="write", help="Checkout folder (default: settings cosyvoice.repo)")


@operation("cosyvoice.vendor_sync", params=VendorSyncJob, kind="cpu", title="Sync upstream CosyVoice",
           cli=Command("vendor sync", "Clone or update upstream CosyVoice (with Matcha-TTS) at the pinned commits, "
                       "from GitHub or a local mirror/bundle"))
def vendor_sync_op(p: VendorSyncJob, hooks: Hooks, ws: Workspace) -> dict:
    from engines.cosyvoice.upstream import checkout_path
    from engines.cosyvoice.vendor import vendor_sync

    dest = Path(p.dest) if p.dest.strip() else checkout_path(ws.settings)
    res = vendor_sync(p.source.strip() or ws.settings.cosyvoice_source, dest, p.commit or PINNED_COMMIT, hooks,
                      matcha_source=p.matcha_source.strip() or ws.settings.matcha_source)
    return {"summary": res.summary(), "checkout": str(res.path), "commit": res.commit,
            "matcha_commit": res.matcha_commit, "submodules": list(res.submodules)}


@dataclass
class DoctorParams:
    model_dir: str = param("", path="model_dir", help="Also check this model dir")
    steps: list[Literal["prepare", "train", "synth"]] = param(
        default_factory=lambda: ["prepare", "train", "synth"], help="Steps to check the model dir for")
    data: str = param("", help="Prepared data to train on (its shards tell whether upstream extracts features online)")
    fresh: bool = param(False, help="Probe upstream's imports again instead of reusing this session's answer")


@operation("cosyvoice.doctor", params=DoctorParams, kind="inline", title="CosyVoice doctor",
           cli=Command("cosyvoice doctor", "Check the upstream checkout, Python modules, a model dir, onnxruntime, disk",
                       json_key="report"), render=lambda res: res["text"])
def doctor_op(p: DoctorParams, hooks: Hooks, ws: Workspace) -> dict:
    from engines.cosyvoice.doctor import doctor

    online = False
    if p.data.strip():
        from engines.cosyvoice.dataprep import prepared_lists
        from engines.cosyvoice.train_data import shards_carry_features

        online = not all(shards_carry_features(path) for path in prepared_lists(ws, p.data.strip()))
    rep = doctor(ws.settings, p.model_dir or None, disk_path=ws.root, steps=p.steps or ["prepare", "train", "synth"],
                 online_features=online, fresh=p.fresh)
    return {"report": rep.to_dict(), "text": rep.to_text(), "ok": rep.ok, "exit_code": 0 if rep.ok else 1}


# -- data preparation -------------------------------------------------------------------------

@dataclass
class PrepareJob(PrepareParams):
    dataset: str = param("", help="Dataset with clips and transcripts")
    out_name: str = param("", flag="--out",
                          help="Name of the prepared data (runtime/cosyvoice/data/<name>; default: the dataset)")


def _render_prepare(res: dict) -> str:
    r = res["report"]
    lines = [f"train: {r['train_utts']} utts -> {r['train_list']}", f"dev:   {r['dev_utts']} utts -> {r['dev_list']}",
             f"computed {r['computed']}, reused {r['reused']}; shards written {r['shards_written']}, "
             f"unchanged {r['shards_reused']}; skipped {len(r['skipped'])} ({r['seconds']:.1f} s)"]
    lines += [f"  skipped {name}: {why}" for name, why in list(r["skipped"].items())[:20]]
    return "\n".join(lines)


@operation("cosyvoice.prepare", params=PrepareJob, kind="training", title="Prepare CosyVoice training data",
           cli=Command("cosyvoice prepare", "Build CosyVoice training data (kaldi dirs, embeddings, tokens, parquet); "
                       "resumable", positional=("dataset",), json_key="report"), render=_render_prepare)
def prepare_op(p: PrepareJob, hooks: Hooks, ws: Workspace) -> dict:
    from engines.cosyvoice.dataprep import prepare_cosyvoice_data

    if not p.dataset.strip():
        raise InvalidInputError("No dataset chosen.", "Pick the dataset to prepare.")
    params = subset(p, PrepareParams)
    params.onnx_device = follow_workspace(params.onnx_device, ws)
    out_name = p.out_name.strip() or p.dataset
    rep = prepare_cosyvoice_data(ws, p.dataset, out_name, params, hooks)
    summary = (f"{rep.train_utts} train / {rep.dev_utts} dev utterance(s) for speaker '{rep.speaker}' "
               f"({rep.version}); {len(rep.skipped)} skipped")
    return {"summary": summary, "data": safe_name(out_name), "out_dir": rep.out_dir, "train_list": rep.train_list,
            "dev_list": rep.dev_list, "report": jsonable(rep.to_dict())}


# -- training ---------------------------------------------------------------------------------

@dataclass
class TrainJob(CosyTrainParams):
    data: str = param("", help="Prepared data name (runtime/cosyvoice/data/<name>) instead of --train-data/--cv-data")


def resolve_train_params(ws: Workspace, p: TrainJob) -> CosyTrainParams:
    """The engine's train params, with the data lists of a prepared data name filled in."""
    from engines.cosyvoice.dataprep import prepared_lists

    params = subset(p, CosyTrainParams)
    if p.data.strip():
        train_list, dev_list = prepared_lists(ws, p.data.strip())
        params.train_data = params.train_data or str(train_list)
        params.cv_data = params.cv_data or str(dev_list)
    return params


@operation("cosyvoice.train", params=TrainJob, kind="training", title="Fine-tune CosyVoice",
           cli=Command("cosyvoice train", "Fine-tune llm (and optionally flow) on prepared data (resumable)"),
           render=lambda res: "\n".join([*(f"{m}: {c}" for m, c in res["latest"].items()), f"metrics: {res['metrics']}"]))
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

def experiment_params(ws: Workspace, exp_name: str) -> dict:
    """The parameters of an experiment's last training run ({} when unknown)."""
    try:
        return json.loads((ws.cosyvoice_experiment_dir(exp_name) / "params.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def experiment_data_dir(ws: Workspace, exp_name: str, data: str = "") -> Path | None:
    """The prepared data folder of an experiment: given by name, or found from its training list."""
    if data.strip():
        return ws.cosyvoice / "data" / safe_name(data.strip())
    train_list = experiment_params(ws, exp_name).get("train_data") or "" if exp_name else ""
    if train_list:
        # <data>/train/parquet/data.list
        return Path(train_list).resolve().parents[2]
    return None


@dataclass
class AverageJob:
    files: list[str] = param(default_factory=list, path="read", help="Checkpoint files (default: choose from --exp/--src)")
    exp_name: str = param("", flag="--exp", help="Experiment name (runtime/cosyvoice/train/<exp>)")
    model: Literal["llm", "flow"] = param("llm", help="Which model of the experiment")
    src: str = param("", path="read", help="Folder with epoch_*_whole.pt (instead of --exp)")
    mode: Literal["last", "best"] = param("last", help="Selection when no files are given: last N or best N by cv loss")
    num: int = param(5, min=1, max=100, help="How many checkpoints to average")
    out: str = param("", path="write", help="Output .pt (default: <exp>/averaged/<model>.pt)")


def _render_average(res: dict) -> str:
    lines = [f"  {Path(s).name}" + (f"  cv loss {res['scores'][Path(s).name]:.4f}"
                                    if res["scores"].get(Path(s).name) is not None else "") for s in res["sources"]]
    return "\n".join([*lines, res["summary"]])


@operation("cosyvoice.average", params=AverageJob, kind="cpu", title="Average CosyVoice checkpoints",
           cli=Command("cosyvoice average", "Average checkpoints: last N or best N by validation loss, or given files",
                       positional=("files*",)), render=_render_average)
def average_op(p: AverageJob, hooks: Hooks, ws: Workspace) -> dict:
    from engines.cosyvoice.average import average_checkpoints

    exp = ws.cosyvoice_experiment_dir(p.exp_name) if p.exp_name.strip() else None
    sources: Any = p.files or p.src or (exp / p.model if exp is not None else None)
    if not sources:
        raise InvalidInputError("Nothing to average.", "Give checkpoint files, --src DIR or --exp NAME.")
    if not p.out and exp is None:
        raise InvalidInputError("Where should the averaged model go?", "Pass --out PATH.")
    out = Path(p.out) if p.out else exp / "averaged" / f"{p.model}.pt"
    res = average_checkpoints(sources, out, p.mode, p.num, hooks)
    return {"summary": f"averaged {len(res.sources)} checkpoint(s) -> {res.out_path}", "out": str(res.out_path),
            "sources": [str(s) for s in res.sources], "scores": res.scores}


@dataclass
class AssembleJob:
    exp_name: str = param("", flag="--exp", help="Experiment whose epochs are averaged (cosyvoice/train/<exp>)")
    name: str = param("", help="New model name (runtime/cosyvoice/models/<name>; default: the experiment)")
    speaker: str = param("", help="Speaker id to register in spk2info.pt (default: the prepared data's speaker)")
    base_model_dir: str = param("", flag="--base", help="Base model dir that was fine-tuned "
                                                        "(default: the one the experiment used)", path="model_dir")
    data: str = param("", help="Prepared data whose spk2embedding.pt holds the speaker (default: the experiment's)")
    embedding: str = param("", path="read", help="spk2embedding.pt holding the speaker's embedding (instead of --data)")
    embedding_key: str = param("", help="Entry in spk2embedding.pt (default: the speaker or the only one)")
    mode: Literal["last", "best"] = param("last", help="Average the last N epochs or the best N by cv loss")
    num: int = param(5, min=1, max=100, help="How many epochs to average")
    reuse_averaged: bool = param(False, help="Use <exp>/averaged/*.pt from `cosyvoice average` instead of averaging")
    llm: str = param("", path="read", help="Fine-tuned llm checkpoint to use as is (instead of averaging the experiment)")
    flow: str = param("", path="read", help="With --llm: fine-tuned flow checkpoint (default: the base flow.pt)")
    copy: bool = param(False, help="Copy the base files instead of symlinking them")
    overwrite: bool = param(False, help="Replace an existing model dir of that name")


def _speaker_embedding_file(ws: Workspace, p: AssembleJob) -> Path:
    if p.embedding.strip():
        return Path(p.embedding.strip())
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
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return ""


def _weights_to_assemble(ws: Workspace, p: AssembleJob) -> tuple[str, str | None] | None:
    """Explicit llm/flow files, or an earlier average of the experiment; None = average now."""
    if p.llm.strip():
        return p.llm.strip(), p.flow.strip() or None
    if p.reuse_averaged and p.exp_name.strip():
        avg = ws.cosyvoice_experiment_dir(p.exp_name) / "averaged"
        if (avg / "llm.pt").is_file():
            return str(avg / "llm.pt"), str(avg / "flow.pt") if (avg / "flow.pt").is_file() else None
    if not p.exp_name.strip():
        raise InvalidInputError("No experiment and no llm checkpoint given.",
                                "Pick the training experiment to average (--exp), or pass --llm PATH.")
    return None


@operation("cosyvoice.assemble", params=AssembleJob, kind="cpu", title="Average checkpoints and assemble a model dir",
           cli=Command("cosyvoice assemble", "Make a model dir for a fine-tuned speaker (base files + weights + "
                       "spk2info.pt)"),
           render=lambda res: f"model dir: {res['model_dir']}\nspeakers: {', '.join(res['speakers'])}")
def assemble_op(p: AssembleJob, hooks: Hooks, ws: Workspace) -> dict:
    from engines.cosyvoice.assemble import (
        assemble_from_experiment,
        assemble_model_dir,
        default_models_dir,
        load_speaker_embedding,
    )

    weights = _weights_to_assemble(ws, p)
    base = p.base_model_dir.strip() or (experiment_params(ws, p.exp_name).get("model_dir") if p.exp_name else "") or ""
    if not base:
        raise InvalidInputError(f"The base model of experiment '{p.exp_name}' is unknown.",
                                "Give the base model dir that was fine-tuned.")
    emb_file = _speaker_embedding_file(ws, p)
    speaker = p.speaker.strip() or _default_speaker(emb_file)
    if not speaker:
        raise InvalidInputError("No speaker name given.", "Type the speaker id to register in spk2info.pt.")
    embedding = load_speaker_embedding(emb_file, p.embedding_key.strip() or speaker)
    name = p.name.strip() or p.exp_name
    if weights is None:
        res = assemble_from_experiment(ws, p.exp_name, base, name, speaker, embedding, p.mode, p.num,
                                       link=not p.copy, overwrite=p.overwrite, hooks=hooks)
    else:
        res = assemble_model_dir(base, default_models_dir(ws) / safe_name(name), weights[0], weights[1],
                                 spk_name=speaker, spk_embedding=embedding, link=not p.copy, overwrite=p.overwrite,
                                 hooks=hooks)
    return {"summary": f"model dir {res.model_dir.name} with speaker(s) {', '.join(res.speakers)}",
            "model_dir": str(res.model_dir), "speakers": list(res.speakers), "speaker": speaker}


# -- synthesis --------------------------------------------------------------------------------

@dataclass
class SynthJob(SynthParams):
    model: str = param("", help="Assembled model name (runtime/cosyvoice/models/<name>) instead of model_dir")
    speeds: list[str] = param(default_factory=list, help="Compare grid: several speeds (e.g. 0.9, 1.0, 1.1)")
    presets: list[str] = param(default_factory=list, help="Compare grid: several presets")
    checkpoints: list[str] = param(default_factory=list, path="read", help="Compare grid: several checkpoints")
    out: str = param("", path="write", help="Output wav (single) or folder (grid); default under runtime/outputs/cosyvoice")


def model_dir_of(ws: Workspace, model: str, model_dir: str) -> str:
    """An assembled model's name (runtime/cosyvoice/models/<name>) or a model dir path."""
    from engines.cosyvoice.assemble import default_models_dir

    chosen = str(default_models_dir(ws) / safe_name(model)) if model.strip() else model_dir
    if not chosen:
        raise InvalidInputError("No model given.", "Choose an assembled model (--model NAME) or a model dir.")
    return chosen


def _speeds(values: list[Any]) -> list[float]:
    out = []
    for v in values:
        try:
            out.append(float(v))
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"'{v}' is not a speed.", "Give numbers between 0.5 and 2.0.") from exc
    return out


def _render_synth(res: dict) -> str:
    if "grid" in res:
        return "\n".join(json.dumps(item, ensure_ascii=False) for item in res["grid"])
    return res["audio"]


@operation("cosyvoice.synth", params=SynthJob, kind="listening", title="CosyVoice synthesis",
           cli=Command("cosyvoice synth", "Synthesise speech with a model dir (sft speaker, zero-shot or instruct)"),
           render=_render_synth)
def synth_op(p: SynthJob, hooks: Hooks, ws: Workspace) -> dict:
    from engines.cosyvoice.synth import compare_grid, load_presets, synthesize

    model_dir = model_dir_of(ws, p.model, p.model_dir)
    if p.prompt_wav:  # a corrupt, NaN-filled or truncated prompt is refused by name before upstream sees it
        from engines.core.audio import check_audio_file

        check_audio_file(p.prompt_wav, MIN_PROMPT_SECONDS, "a CosyVoice prompt")
    presets = load_presets(ws)
    checkout = ws.settings.cosyvoice_repo
    stamp = time.strftime("%Y%m%d-%H%M%S")
    speeds = _speeds(p.speeds)
    if speeds or p.presets or p.checkpoints:
        out_dir = Path(p.out) if p.out else ws.outputs / "cosyvoice" / f"grid_{Path(model_dir).name}_{stamp}"
        items = compare_grid(model_dir, p.text, p.speaker or None, out_dir, presets=p.presets or [p.preset],
                             speeds=speeds or [p.speed], checkpoints=p.checkpoints or [p.checkpoint or None],
                             seed=p.seed, mode=p.mode, prompt_wav=p.prompt_wav or None,
                             prompt_text=p.prompt_text or None, preset_texts=presets, hooks=hooks, checkout=checkout,
                             device=ws.settings.device)
        grid = [{"checkpoint": it.checkpoint, "preset": it.preset, "speed": it.speed, "audio": str(it.path)}
                for it in items]
        return {"summary": f"{len(grid)} take(s) in {out_dir}", "grid": grid, "out_dir": str(out_dir),
                "model_dir": model_dir}
    out = Path(p.out) if p.out else ws.outputs / "cosyvoice" / (
        f"{Path(model_dir).name}_{safe_name(p.speaker or p.mode)}_{stamp}.wav")
    path = synthesize(model_dir, p.text, p.speaker or None, speed=p.speed, seed=p.seed, mode=p.mode,
                      prompt_wav=p.prompt_wav or None, prompt_text=p.prompt_text or None,
                      instruct=p.instruct or None, checkpoint=p.checkpoint or None, out_path=out, hooks=hooks,
                      preset=p.preset, presets=presets, checkout=checkout, device=ws.settings.device)
    return {"summary": f"wrote {path.name}", "audio": str(path), "model_dir": model_dir}


@dataclass
class SpeakersParams:
    model: str = param("", help="Assembled model name (runtime/cosyvoice/models/<name>)")
    model_dir: str = param("", path="model_dir", help="Or a model dir path")


@operation("cosyvoice.speakers", params=SpeakersParams, kind="inline", title="Speakers of a model dir",
           cli=Command("cosyvoice speakers", "List the speaker ids in a model dir's spk2info.pt", json_key="speakers"),
           render=lambda res: "\n".join(res["speakers"]))
def speakers_op(p: SpeakersParams, hooks: Hooks, ws: Workspace) -> dict:
    from engines.cosyvoice.model_dir import list_speakers

    return {"speakers": list_speakers(model_dir_of(ws, p.model, p.model_dir))}
