"""Previews at every save: a few fixed clips converted with the save's small model, recorded with it.

"Train, then pick the best checkpoint by ear" needs something to hear while training goes on. The
clips are the held-out end of the experiment's pieces (kept out of training, chosen once per
experiment in ``heldout.json``; a dataset too small to spare any gives its last pieces instead) plus,
when the user chose one in the Train tab, a clip of theirs (copied into the experiment so every save
converts the same file). A save's conversions go to ``previews/e<E>_s<S>/`` and one JSON line per
save to ``previews.jsonl`` (epoch, step, model, each clip's source, kind and output, parameters,
device), the record later scores attach to. In the studio a save queues an ``rvc.preview`` job in the
listening lane, so training does not wait for it; on the command line the training renders them itself.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from engines.core.atomic import write_json
from engines.core.errors import InvalidInputError
from engines.core.hooks import Hooks
from engines.core.params import param
from engines.core.settings import safe_name
from engines.rvc.train.experiment import ExperimentPaths, experiment_paths
from engines.rvc.train.params import TrainParams

PREVIEW_CLIPS = 3  # held-out (or last) pieces converted at every save
PREVIEW_SEED = 1234  # the A/B tab's fixed noise seed: a preview is the same take A/B would render
HELDOUT_FILE = "heldout.json"
PREVIEWS_FILE = "previews.jsonl"
YOURS = "yours"  # the folder (and clip kind) of the user's own preview clip


def heldout_pieces(paths: ExperimentPaths, count: int = -1) -> list[str]:
    """The pieces kept out of training, chosen once per experiment (the end of the piece order).

    ``count`` -1 holds out one piece in fifty of a dataset of 20 or more pieces (at most 8); 0 none.
    The choice is kept in ``heldout.json`` and reused while the same count is asked for.
    """
    names = paths.piece_names()
    record = paths.root / HELDOUT_FILE
    if record.is_file():
        try:
            saved = json.loads(record.read_text(encoding="utf-8"))
            if saved.get("requested") == count:
                return [n for n in saved.get("pieces", []) if n in set(names)]
        except (OSError, json.JSONDecodeError):
            pass
    n = count if count >= 0 else (min(8, max(1, round(len(names) / 50))) if len(names) >= 20 else 0)
    n = min(n, max(0, len(names) - 1))  # always leave something to train on
    chosen = names[len(names) - n:] if n else []
    if names:
        write_json(record, {"requested": count, "pieces": chosen, "of": len(names),
                            "why": "kept out of training for previews and held-out checks"})
    return chosen


@dataclass
class PreviewClip:
    name: str
    source: str
    kind: str  # "held-out" | "trained-on" | "yours"


def preview_clips(ws: Any, params: TrainParams) -> list[PreviewClip]:
    """The clips every save of this run converts: held-out (or last) pieces, then the user's clip."""
    paths = experiment_paths(ws, params.exp_name)
    held = heldout_pieces(paths, params.holdout_pieces)
    names = held[:PREVIEW_CLIPS] if held else paths.piece_names()[-PREVIEW_CLIPS:]
    clips = [PreviewClip(n, str(paths.wavs16k / f"{n}.wav"), "held-out" if held else "trained-on") for n in names
             if (paths.wavs16k / f"{n}.wav").is_file()]
    if params.preview_clip.strip():
        src = Path(params.preview_clip.strip())
        if not src.is_file():
            raise InvalidInputError(f"Preview clip not found: {src}", "Choose an audio file, or leave it empty.")
        folder = paths.root / "previews" / YOURS
        target = folder / f"{safe_name(src.stem)}{src.suffix.lower()}"
        if src.resolve() != target.resolve():
            shutil.rmtree(folder, ignore_errors=True)  # one clip of the user's at a time
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
        clips.append(PreviewClip(f"{YOURS}_{target.stem}", str(target), YOURS))
    return clips


@dataclass
class PreviewJob:
    """``rvc.preview``: convert the preview clips with one save's small model."""

    exp_name: str = param("", help="Experiment the save belongs to")
    model: str = param("", help="The save's small model (weights/<exp>_e<E>_s<S>.pth)")
    epoch: int = param(0, min=0, help="Epoch of the save")
    step: int = param(0, min=0, help="Global step of the save")
    clips: list[str] = param(default_factory=list, help="Audio files to convert (default: the run's preview clips)")
    f0_method: str = param("pm", help="Pitch method for the conversions (the training's)")
    hubert: str = param("", help="Content encoder (default: the configured hubert_base.pt)")


def clip_kind(paths: ExperimentPaths, source: str) -> str:
    p = Path(source)
    if p.parent.name == YOURS:
        return YOURS
    held = set(json.loads((paths.root / HELDOUT_FILE).read_text()).get("pieces", [])) \
        if (paths.root / HELDOUT_FILE).is_file() else set()
    return "held-out" if p.stem in held else "trained-on"


def render_previews(ws: Any, job: PreviewJob, hooks: Hooks) -> dict[str, Any]:
    """Convert the clips with the save's model; append the save's record to previews.jsonl and return it."""
    from engines.core.params import to_dict
    from engines.rvc.infer.convert import ConvertParams, convert_files

    paths = experiment_paths(ws, job.exp_name)
    if not Path(job.model).is_file():
        raise InvalidInputError(f"The save's model is gone: {job.model}", "It may have been deleted; nothing to preview.")
    sources = list(job.clips) or [c.source for c in preview_clips(ws, TrainParams(exp_name=job.exp_name))]
    if not sources:
        raise InvalidInputError(f"Experiment '{job.exp_name}' has no pieces to preview.", "Preprocess it first.")
    params = ConvertParams(f0_method=job.f0_method, seed=PREVIEW_SEED)
    out_dir = paths.root / "previews" / f"e{job.epoch}_s{job.step}"
    t0 = time.perf_counter()
    report = convert_files(ws, job.model, sources, params, index_path=None, out_dir=out_dir, hooks=hooks,
                           encoder_path=job.hubert or None)
    clips = [{"name": (f"{YOURS}_{Path(f.input).stem}" if clip_kind(paths, f.input) == YOURS else Path(f.input).stem),
              "kind": clip_kind(paths, f.input), "source": f.input, "output": f.output, "ok": f.ok,
              "error": f.error, "seconds": round(f.seconds, 3), "input_seconds": round(f.input_seconds, 3)}
             for f in report.files]
    record = {"epoch": job.epoch, "step": job.step, "model": str(job.model), "params": to_dict(params),
              "device": str(ws.settings.device), "seconds": round(time.perf_counter() - t0, 3),
              "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "clips": clips}
    with open(paths.root / PREVIEWS_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    return record


def read_previews(ws: Any, exp_name: str) -> list[dict[str, Any]]:
    """Every save's preview record, oldest first (a save rendered twice keeps its newest record)."""
    path = experiment_paths(ws, exp_name).root / PREVIEWS_FILE
    if not path.is_file():
        return []
    by_step: dict[int, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
            by_step[int(rec["step"])] = rec
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue  # a line cut short by a crash
    return [by_step[s] for s in sorted(by_step)]


def previews_at_saves(ws: Any, params: TrainParams, hooks: Hooks) -> Callable[[dict[str, Any]], None] | None:
    """What a training run does at each save: queue (studio) or render (command line) the previews."""
    if not params.previews:
        return None
    clips = preview_clips(ws, params)
    if not clips:
        hooks.log("Previews: the experiment has no pieces to preview.")
        return None
    kinds = sorted({c.kind for c in clips})
    hooks.log(f"Previews at every save: {', '.join(c.name for c in clips)} ({', '.join(kinds)}).")

    def on_save(save: dict[str, Any]) -> None:
        if not save.get("small_model"):
            hooks.log("Previews need a small model at every save ('save a small model at every save').")
            return
        values = {"exp_name": params.exp_name, "model": save["small_model"], "epoch": int(save["epoch"]),
                  "step": int(save["step"]), "clips": [c.source for c in clips],
                  "f0_method": params.f0_method if params.f0 else "pm", "hubert": params.hubert_path}
        if hooks.submit is not None:
            job = hooks.submit("rvc.preview", values, f"Previews of '{params.exp_name}' at epoch {save['epoch']}")
            hooks.log(f"Previews of epoch {save['epoch']} queued in the listening lane (job {job}).")
        else:
            rec = render_previews(ws, PreviewJob(**values), Hooks(log=hooks.log, cancel_event=hooks.cancel_event))
            hooks.log(f"Previews of epoch {save['epoch']}: {sum(c['ok'] for c in rec['clips'])} clip(s).")

    return on_save
