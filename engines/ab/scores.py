"""Objective scores of an experiment's saves, from the previews each save renders.

Picking a checkpoint out of dozens by ear is slow, so every save gets four numbers (one JSON line
per save in ``<exp>/scores.jsonl``):

- ``speaker_similarity``: cosine between each converted preview and the experiment's target voice
  (mean embedding of the trained-on pieces; :mod:`engines.ab.speaker`). The record names the encoder;
  scores from different encoders are never compared (:func:`best_saves` keeps to one).
- ``pitch_cents`` / ``voicing_agreement``: output f0 against the source's f0 shifted by the preview's
  transpose (:func:`engines.ab.metrics.pitch_fidelity`).
- ``cer``: character error rate of the output's Whisper transcript against the source's (the bundled
  tiny.en for English, the configured model for other languages, skipped with a reason otherwise).
- ``heldout_mel_l1``: log-mel L1 between each held-out piece (never trained on) and the save's
  conversion of it. Small models carry no posterior encoder, so this is the inference path's
  reconstruction: the voice re-speaking its own unseen audio.

Saves without previews (any model, from the A/B tab or the CLI) are converted first, with the same
clips and settings as the previews, into ``<exp>/scores/<model>/``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engines.ab import metrics
from engines.core.atomic import write_json
from engines.core.errors import InvalidInputError, MissingAssetError, VoiceLabError
from engines.core.hooks import Hooks, ensure_hooks
from engines.core.params import param
from engines.core.settings import Workspace, safe_name

SCORES_FILE = "scores.jsonl"
TRANSCRIPTS_FILE = "scores_transcripts.json"
# score -> True when higher is better
DIRECTIONS = {"speaker_similarity": True, "pitch_cents": False, "voicing_agreement": True, "cer": False,
              "heldout_mel_l1": False}
SCORE_SR = 16000


@dataclass
class ScoreParams:
    """``ab.score``: score saves (default: every save with previews not scored yet)."""

    exp_name: str = param("", help="Experiment whose saves to score")
    models: list[str] = param(default_factory=list, path="read", help="Small models to score (default: every save with previews)")
    encoder: str = param("auto", choices=("auto", "resemblyzer", "campplus"),
                         help="Speaker encoder: auto = campplus when a campplus.onnx is given, else resemblyzer")
    campplus: str = param("", path="read", help="Path to CosyVoice's campplus.onnx (speaker similarity with campplus)")
    language: str = param("en", help="Language of the clips (the bundled Whisper tiny.en covers en only)")
    asr_model: str = param("", path="read", help="Whisper model for the CER (empty = bundled tiny.en for English)")
    f0_method: str = param("pm", help="Pitch method for the pitch-fidelity score")
    redo: bool = param(False, help="Score again saves that already have scores")
    hubert: str = param("", path="read", help="Content encoder for models without previews (default: the "
                                              "configured one)")


@dataclass
class _Context:
    """What scoring several saves shares: loaded models and cached references."""

    ws: Workspace
    params: ScoreParams
    hooks: Hooks
    exp_root: Path
    encoder: Any = None
    reference: np.ndarray | None = None
    speaker_skip: str = ""
    whisper: Any = None
    asr_name: str = ""
    asr_skip: str = ""
    transcripts: dict[str, str] = field(default_factory=dict)


def _prepare(ws: Workspace, p: ScoreParams, hooks: Hooks) -> _Context:
    from engines.ab.speaker import open_encoder, reference_embedding
    from engines.rvc.train.experiment import experiment_paths
    from engines.rvc.train.previews import HELDOUT_FILE

    paths = experiment_paths(ws, p.exp_name)
    ctx = _Context(ws, p, hooks, paths.root)
    held = set()
    if (paths.root / HELDOUT_FILE).is_file():
        held = set(json.loads((paths.root / HELDOUT_FILE).read_text(encoding="utf-8")).get("pieces", []))
    trained = [paths.wavs16k / f"{n}.wav" for n in paths.piece_names() if n not in held]
    trained = [c for c in trained if c.is_file()]
    try:
        ctx.encoder = open_encoder(p.encoder, p.campplus)
        if not trained:
            raise InvalidInputError("The experiment has no trained-on pieces for the target voice.")
        ctx.reference = reference_embedding(paths.root, trained, ctx.encoder, hooks.log)
    except VoiceLabError as exc:
        ctx.speaker_skip = str(exc)
    _prepare_asr(ctx)
    cache = paths.root / TRANSCRIPTS_FILE
    if cache.is_file():
        try:
            ctx.transcripts = json.loads(cache.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            ctx.transcripts = {}
    return ctx


def _prepare_asr(ctx: _Context) -> None:
    from engines.dataset.asr import AsrParams, load_whisper

    p = ctx.params
    lang = (p.language or "en").strip().lower()
    if not p.asr_model.strip() and lang != "en":
        ctx.asr_skip = (f"no Whisper model for language '{lang}': the bundled tiny.en is English only; "
                        "give --asr-model (a multilingual CTranslate2 Whisper)")
        return
    try:
        ctx.whisper = load_whisper(AsrParams(model=p.asr_model, language=lang, beam_size=1, vad_filter=False,
                                             asr_device="cpu"), ctx.hooks)
        ctx.asr_name = p.asr_model.strip() or "tiny.en (bundled)"
    except (MissingAssetError, VoiceLabError) as exc:
        ctx.asr_skip = str(exc)


def _transcribe(ctx: _Context, audio: np.ndarray) -> str:
    """Greedy decoding at temperature 0 only: the same audio always gives the same text (no sampled fallback)."""
    segments, _ = ctx.whisper.transcribe(audio.astype(np.float32), language=(ctx.params.language or "en").strip(),
                                         beam_size=1, temperature=0.0, vad_filter=False,
                                         condition_on_previous_text=False)
    return " ".join(seg.text.strip() for seg in segments if seg.text.strip())


def _source_transcript(ctx: _Context, source: str, audio: np.ndarray) -> str:
    key = f"{ctx.asr_name}|{Path(source).resolve()}"
    if key not in ctx.transcripts:
        ctx.transcripts[key] = _transcribe(ctx, audio)
        write_json(ctx.exp_root / TRANSCRIPTS_FILE, ctx.transcripts)
    return ctx.transcripts[key]


def score_clip(ctx: _Context, clip: dict[str, Any], transpose: float) -> dict[str, Any]:
    """Every measure of one converted clip against its source."""
    from engines.ab.speaker import cosine
    from engines.core.audio import load_audio

    src, _ = load_audio(clip["source"], sr=SCORE_SR)
    out, _ = load_audio(clip["output"], sr=SCORE_SR)
    row: dict[str, Any] = {"name": clip.get("name") or Path(clip["source"]).stem, "kind": clip.get("kind", "")}
    if ctx.reference is not None:
        row["speaker_similarity"] = round(cosine(ctx.encoder.embed(out), ctx.reference), 4)
    pitch = metrics.pitch_fidelity(src, out, transpose, ctx.params.f0_method)
    row["pitch_cents"], row["voicing_agreement"] = pitch.cents, pitch.voicing_agreement
    if ctx.whisper is not None:
        ref = _source_transcript(ctx, clip["source"], src)
        hyp = _transcribe(ctx, out)
        row.update(source_text=ref, output_text=hyp, cer=metrics.character_error_rate(ref, hyp))
    if clip.get("kind") == "held-out" and transpose == 0:
        row["heldout_mel_l1"] = metrics.mel_l1(src, out)
    return row


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None and np.isfinite(r[key])]
    return round(float(np.mean(vals)), 4) if vals else None


def score_record(ctx: _Context, rec: dict[str, Any]) -> dict[str, Any]:
    """Scores of one save from its preview record (epoch, step, model, params, clips)."""
    transpose = float((rec.get("params") or {}).get("transpose", 0))
    clips = [c for c in rec.get("clips", []) if c.get("ok") and c.get("output") and Path(c["output"]).is_file()]
    rows = []
    for clip in clips:
        ctx.hooks.check_cancel()
        rows.append(score_clip(ctx, clip, transpose))
    scores = {k: _mean(rows, k) for k in DIRECTIONS}
    skipped = {}
    if ctx.speaker_skip:
        skipped["speaker_similarity"] = ctx.speaker_skip
    if ctx.asr_skip:
        skipped["cer"] = ctx.asr_skip
    if scores["heldout_mel_l1"] is None:
        skipped["heldout_mel_l1"] = ("no held-out piece among the clips (the dataset is too small to hold any "
                                     "out, or the previews use a transpose)")
    if not clips:
        skipped["all"] = "the save has no converted preview clip"
    return {"epoch": int(rec.get("epoch", 0)), "step": int(rec.get("step", 0)), "model": str(rec.get("model", "")),
            "encoder": ctx.encoder.name if ctx.reference is not None else None, "asr": ctx.asr_name or None,
            "f0_method": ctx.params.f0_method, "language": ctx.params.language, "scores": scores,
            "skipped": skipped, "clips": rows, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}


def read_scores(ws: Workspace, exp_name: str) -> list[dict[str, Any]]:
    """Every save's newest score record, in step order."""
    path = ws.experiment_dir(safe_name(exp_name)) / SCORES_FILE
    if not path.is_file():
        return []
    by_model: dict[str, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
            by_model[rec["model"]] = rec
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return sorted(by_model.values(), key=lambda r: (r.get("step", 0), r["model"]))


def best_saves(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """For each score, the best save (among records of the latest record's encoder for speaker similarity)."""
    best: dict[str, dict[str, Any]] = {}
    encoder = next((r.get("encoder") for r in reversed(records) if r.get("encoder")), None)
    for key, higher in DIRECTIONS.items():
        pool = [r for r in records if (r.get("scores") or {}).get(key) is not None
                and (key != "speaker_similarity" or r.get("encoder") == encoder)]
        if pool:
            pick = (max if higher else min)(pool, key=lambda r: r["scores"][key])
            best[key] = {"model": pick["model"], "epoch": pick["epoch"], "step": pick["step"],
                         "value": pick["scores"][key]}
    return best


def rank_saves(records: list[dict[str, Any]]) -> list[str]:
    """Models ordered best first by their mean rank over the scores they have (the tournament's seeding)."""
    if not records:
        return []
    ranks: dict[str, list[float]] = {r["model"]: [] for r in records}
    for key, higher in DIRECTIONS.items():
        have = [r for r in records if (r.get("scores") or {}).get(key) is not None]
        have.sort(key=lambda r: r["scores"][key], reverse=higher)
        for i, r in enumerate(have):
            ranks[r["model"]].append(i / max(1, len(have) - 1))
    return sorted(ranks, key=lambda m: (np.mean(ranks[m]) if ranks[m] else 1.0))


def _model_record(ws: Workspace, exp_name: str, model: Path, hooks: Hooks, hubert: str = "") -> dict[str, Any]:
    """A preview-like record for a model without previews: convert the experiment's preview clips."""
    from engines.rvc.checkpoints import model_info
    from engines.rvc.infer.convert import ConvertParams, convert_files
    from engines.rvc.train.params import TrainParams
    from engines.rvc.train.previews import PREVIEW_SEED, clip_kind, preview_clips
    from engines.rvc.train.experiment import experiment_paths

    paths = experiment_paths(ws, exp_name)
    clips = preview_clips(ws, TrainParams(exp_name=exp_name))
    if not clips:
        raise InvalidInputError(f"Experiment '{exp_name}' has no pieces to convert for scores.")
    info = model_info(model)
    params = ConvertParams(f0_method="pm", seed=PREVIEW_SEED)
    report = convert_files(ws, model, [c.source for c in clips], params, index_path=None,
                           out_dir=paths.root / "scores" / model.stem, hooks=hooks, encoder_path=hubert or None)
    return {"epoch": int(info.get("epoch") or 0), "step": int(info.get("step") or 0), "model": str(model),
            "params": {"transpose": 0}, "clips": [{"name": Path(f.input).stem, "kind": clip_kind(paths, f.input),
                                                   "source": f.input, "output": f.output, "ok": f.ok}
                                                  for f in report.files]}


def score_saves(ws: Workspace, p: ScoreParams, hooks: Hooks | None = None) -> list[dict[str, Any]]:
    """Score the chosen saves (default: all with previews and no scores); appends to scores.jsonl."""
    from engines.rvc.train.previews import read_previews

    hooks = ensure_hooks(hooks)
    safe_name(p.exp_name)
    if not ws.experiment_dir(p.exp_name).is_dir():
        raise InvalidInputError(f"Experiment '{p.exp_name}' not found.")
    previews = {str(Path(r["model"]).resolve()): r for r in read_previews(ws, p.exp_name)}
    done = {str(Path(r["model"]).resolve()) for r in read_scores(ws, p.exp_name)} if not p.redo else set()
    if p.models:
        wanted = [Path(m).expanduser().resolve() for m in p.models]
        missing = [str(m) for m in wanted if not m.is_file()]
        if missing:
            raise InvalidInputError(f"Model not found: {', '.join(missing)}")
    else:
        wanted = [Path(m) for m in previews if m not in done]
    todo = [m for m in wanted if str(m) not in done]
    if not todo:
        hooks.log("Scores: nothing new to score.")
        return []
    ctx = _prepare(ws, p, hooks)
    out = []
    for i, model in enumerate(todo):
        hooks.progress(i / len(todo), f"scoring {model.name}")
        rec = previews.get(str(model)) or _model_record(ws, p.exp_name, model, hooks.scaled(0, 0), p.hubert)
        scored = score_record(ctx, rec)
        with open(ctx.exp_root / SCORES_FILE, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(scored, ensure_ascii=False) + "\n")
        hooks.log(f"Scores of {model.name}: " + ", ".join(f"{k} {v}" for k, v in scored["scores"].items()
                                                          if v is not None))
        out.append(scored)
    hooks.progress(1.0, "scored")
    return out
