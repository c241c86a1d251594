"""An adaptive blind tournament between an experiment's saves, kept in ``<exp>/tournaments/<id>.json``.

Candidates are saves (default: the best few by scores plus the latest). Every candidate's take of
every clip is rendered once (previews are reused), then loudness-matched (ITU-R BS.1770 integrated
loudness via ``pyloudnorm``) to one level, so no pair is won by being louder. Each vote updates the
posterior of :mod:`engines.ab.ranking_model`; the next pair is the most informative one about which
save is best, on the next clip in rotation, with sides shuffled. The tournament stops when
``P(leader is best)`` reaches its target (0.95 by default); a finished one can promote its winner to
``weights/<exp>.pth`` with the index beside it and the scores and result in ``weights/<exp>.json``.
The matched takes live in ``<workspace>/ab/tournaments/<exp>/<id>/`` under random names, so the
page can play them without a file name saying which save made them.
"""

from __future__ import annotations

import json
import random
import secrets
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from engines.ab import ranking_model as rm
from engines.core.atomic import write_json
from engines.core.errors import InvalidInputError
from engines.core.hooks import Hooks, ensure_hooks
from engines.core.settings import Workspace, safe_name

TARGET = 0.95
DEFAULT_TOP = 4
MAX_PEAK = 0.97  # matched takes keep this much headroom
LEVEL_LUFS = -23.0  # the common level when every take can reach it


def tournaments_dir(ws: Workspace, exp: str) -> Path:
    return ws.experiment_dir(safe_name(exp)) / "tournaments"


def _path(ws: Workspace, exp: str, tid: str) -> Path:
    return tournaments_dir(ws, exp) / f"{safe_name(tid)}.json"


def load(ws: Workspace, exp: str, tid: str) -> dict[str, Any]:
    path = _path(ws, exp, tid)
    if not path.is_file():
        raise InvalidInputError(f"No tournament '{tid}' in experiment '{exp}'.",
                                f"Start one with: voicelab rvc tournament start {exp}")
    return json.loads(path.read_text(encoding="utf-8"))


def save(ws: Workspace, t: dict[str, Any]) -> None:
    write_json(_path(ws, t["experiment"], t["id"]), t)


def latest_id(ws: Workspace, exp: str) -> str | None:
    files = sorted(tournaments_dir(ws, exp).glob("*.json"), key=lambda p: p.stat().st_mtime)
    return files[-1].stem if files else None


# -- loudness ---------------------------------------------------------------------------------

def integrated_loudness(audio: np.ndarray, sr: int) -> float:
    """BS.1770 integrated loudness (LUFS); clips under 0.4 s use their mean square (no gating block fits)."""
    import pyloudnorm

    x = np.asarray(audio, dtype=np.float64)
    if len(x) >= int(0.4 * sr):
        value = float(pyloudnorm.Meter(sr).integrated_loudness(x))
        if np.isfinite(value):
            return value
    ms = float(np.mean(x ** 2)) if len(x) else 0.0
    return -0.691 + 10 * np.log10(ms) if ms > 0 else -120.0


def match_loudness(files: Sequence[str], out_paths: Sequence[Path]) -> tuple[float, list[float]]:
    """Write every file at one integrated loudness (the loudest level all reach without clipping).

    Returns the common level and each file's measured loudness.
    """
    import soundfile as sf

    takes = [sf.read(f, dtype="float64", always_2d=False) for f in files]
    levels = [integrated_loudness(a, sr) for a, sr in takes]
    reach = [lv + 20 * np.log10(MAX_PEAK / max(1e-9, float(np.max(np.abs(a))) if len(a) else 1.0))
             for (a, _), lv in zip(takes, levels)]
    target = min([LEVEL_LUFS, *reach])
    for (audio, sr), level, out in zip(takes, levels, out_paths):
        out.parent.mkdir(parents=True, exist_ok=True)
        gain = 10 ** ((target - level) / 20) if level > -120 else 1.0
        sf.write(str(out), (audio * gain).astype(np.float32), sr, subtype="FLOAT")
    return round(target, 2), [round(v, 2) for v in levels]


# -- candidates and takes -----------------------------------------------------------------------

def default_candidates(ws: Workspace, exp: str, top: int = DEFAULT_TOP) -> list[str]:
    """The best ``top`` saves by scores, plus the latest save (models by step when nothing is scored)."""
    from engines.ab.scores import rank_saves, read_scores
    from engines.rvc.ops.catalog import saved_files

    saves = [str(s.path) for s in saved_files(ws, exp) if s.kind == "model"]
    if not saves:
        raise InvalidInputError(f"Experiment '{exp}' has no saved small models.",
                                "Train with 'save a small model at every save' ticked.")
    ranked = [m for m in rank_saves(read_scores(ws, exp)) if Path(m).is_file()]
    chosen = ranked[:top] if ranked else saves[-top:]
    if saves[-1] not in chosen:
        chosen.append(saves[-1])
    return chosen


def _preview_take(ws: Workspace, exp: str, model: str, clip: str) -> str | None:
    from engines.rvc.train.previews import read_previews

    for rec in read_previews(ws, exp):
        if Path(rec["model"]).resolve() == Path(model).resolve():
            for c in rec.get("clips", []):
                if c.get("ok") and Path(c["source"]).resolve() == Path(clip).resolve() and Path(c["output"]).is_file():
                    return c["output"]
    return None


def _default_clips(ws: Workspace, exp: str) -> list[str]:
    from engines.rvc.train.params import TrainParams
    from engines.rvc.train.previews import preview_clips, read_previews

    recs = read_previews(ws, exp)
    if recs:
        return [c["source"] for c in recs[-1]["clips"] if c.get("ok")]
    return [c.source for c in preview_clips(ws, TrainParams(exp_name=exp))]


def start(ws: Workspace, exp: str, models: Sequence[str] = (), clips: Sequence[str] = (), target: float = TARGET,
          accuracy: float = rm.ACCURACY, top: int = DEFAULT_TOP, hooks: Hooks | None = None,
          hubert: str = "") -> dict[str, Any]:
    """Create a tournament: render missing takes, match their loudness, pick the first pair."""
    from engines.rvc.infer.convert import ConvertParams, convert_files
    from engines.rvc.train.previews import PREVIEW_SEED

    hooks = ensure_hooks(hooks)
    safe_name(exp)
    if not 0.5 < target < 1:
        raise InvalidInputError(f"target must be between 0.5 and 1 (got {target}).")
    chosen = [str(Path(m).expanduser().resolve()) for m in models] or default_candidates(ws, exp, top)
    chosen = list(dict.fromkeys(chosen))
    if len(chosen) < 2:
        raise InvalidInputError("A tournament needs at least two candidates.")
    for m in chosen:
        if not Path(m).is_file():
            raise InvalidInputError(f"Model not found: {m}")
    sources = [str(Path(c).resolve()) for c in clips] or _default_clips(ws, exp)
    if not sources:
        raise InvalidInputError(f"Experiment '{exp}' has no clips to compare.", "Give --clips.")
    tid = time.strftime("t%Y%m%d-%H%M%S") + f"-{random.randrange(16 ** 4):04x}"
    folder = tournaments_dir(ws, exp) / tid  # raw conversions (named after their models: never served)
    served = ws.root / "ab" / "tournaments" / safe_name(exp) / tid  # matched takes under random names (blind)
    raw: list[str] = []
    for ci, model in enumerate(chosen):
        hooks.progress(ci / len(chosen) * 0.9, f"takes of {Path(model).name}")
        missing = [s for s in sources if _preview_take(ws, exp, model, s) is None]
        converted = {}
        if missing:
            report = convert_files(ws, model, missing, ConvertParams(f0_method="pm", seed=PREVIEW_SEED),
                                   index_path=None, out_dir=folder / "raw" / f"c{ci}", hooks=hooks.scaled(0, 0),
                                   encoder_path=hubert or None)
            converted = {str(Path(f.input).resolve()): f.output for f in report.files if f.ok}
        for s in sources:
            take = _preview_take(ws, exp, model, s) or converted.get(str(Path(s).resolve()))
            if take is None:
                raise InvalidInputError(f"{Path(model).name} could not convert {s}.")
            raw.append(take)
    outs = [served / f"{secrets.token_hex(8)}.wav" for _ in range(len(chosen)) for _ in range(len(sources))]
    level, levels = match_loudness(raw, outs)
    from engines.rvc.checkpoints import model_info

    cands = []
    for m in chosen:
        info = model_info(m)
        cands.append({"model": m, "label": Path(m).stem, "epoch": info.get("epoch"), "step": info.get("step")})
    t = {"id": tid, "experiment": exp, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "target": float(target),
         "accuracy": float(accuracy), "candidates": cands, "clips": sources, "level_lufs": level,
         "takes": [[str(outs[ci * len(sources) + k]) for k in range(len(sources))] for ci in range(len(chosen))],
         "measured_lufs": [levels[ci * len(sources):(ci + 1) * len(sources)] for ci in range(len(chosen))],
         "votes": [], "pending": None, "state": "open", "winner": None}
    _advance(t)
    save(ws, t)
    hooks.progress(1.0, "tournament ready")
    return status(t)


def _votes(t: dict[str, Any]) -> list[rm.Vote]:
    return [(v["i"], v["j"], v["score_i"]) for v in t["votes"]]


def _posterior(t: dict[str, Any]) -> rm.OrderPosterior:
    return rm.OrderPosterior.from_votes(len(t["candidates"]), _votes(t), t["accuracy"], seed=len(t["votes"]))


def _advance(t: dict[str, Any], post: rm.OrderPosterior | None = None) -> None:
    """Set the next pair (or finish the tournament when the leader is sure enough)."""
    post = post or _posterior(t)
    k = len(t["candidates"])
    if post.p_best.max() >= t["target"] or (k == 2 and len(t["votes"]) >= 15):
        t["state"], t["pending"], t["winner"] = "finished", None, post.leader
        return
    counts = np.zeros((k, k))
    for v in t["votes"]:
        counts[v["i"], v["j"]] += 1
        counts[v["j"], v["i"]] += 1
    i, j = post.next_pair(counts)
    rnd = random.Random(f"{t['id']}:{len(t['votes'])}")
    a, b = (i, j) if rnd.random() < 0.5 else (j, i)
    clip = len(t["votes"]) % len(t["clips"])
    t["pending"] = {"a": a, "b": b, "clip": clip, "a_audio": t["takes"][a][clip], "b_audio": t["takes"][b][clip]}


def vote(ws: Workspace, exp: str, tid: str, choice: str) -> dict[str, Any]:
    """Record a vote on the pending pair: ``a``, ``b`` or ``tie``; returns the new status."""
    t = load(ws, exp, tid)
    choice = choice.strip().lower()
    if choice not in ("a", "b", "tie"):
        raise InvalidInputError(f"Vote must be a, b or tie (got {choice!r}).")
    if t["state"] != "open" or not t["pending"]:
        raise InvalidInputError(f"Tournament '{tid}' is {t['state']}; no pair is waiting for a vote.")
    p = t["pending"]
    i, j = p["a"], p["b"]
    score = {"a": 1.0, "b": 0.0, "tie": 0.5}[choice]
    t["votes"].append({"i": i, "j": j, "score_i": score, "choice": choice, "clip": p["clip"],
                       "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
    _advance(t)
    save(ws, t)
    return status(t)


def status(t: dict[str, Any], reveal: bool = False) -> dict[str, Any]:
    """Where a tournament stands: P(leader is best), votes so far and left, the pair waiting."""
    post = _posterior(t)
    k = len(t["candidates"])
    finished = t["state"] != "open"
    lead = post.leader
    strengths, sds = rm.bt_strengths(k, _votes(t))
    show = finished or reveal
    rows = [{"label": c["label"] if show else f"candidate {n + 1}", "model": c["model"] if show else "",
             "p_best": round(float(post.p_best[n]), 4), "strength": round(float(strengths[n]), 3),
             "strength_sd": round(float(sds[n]), 3)} for n, c in enumerate(t["candidates"])]
    pending = t.get("pending")
    left = 0 if finished else post.votes_left(t["target"])
    res = {"tournament": t["id"], "experiment": t["experiment"], "state": t["state"], "votes": len(t["votes"]),
           "target": t["target"], "leader": rows[lead]["label"], "leader_model": t["candidates"][lead]["model"]
           if show else "", "p_leader_best": rows[lead]["p_best"], "votes_left": left, "candidates": rows,
           "pending": {k: pending[k] for k in ("clip", "a_audio", "b_audio")} if pending else None, "level_lufs": t["level_lufs"],
           "winner": t["candidates"][t["winner"]]["model"] if finished and t.get("winner") is not None else None,
           "promoted": t.get("promoted")}
    res["summary"] = (f"{t['state']}: leader {res['leader']} P(best) {res['p_leader_best']:.0%} after "
                      f"{res['votes']} vote(s)" + ("" if finished else f", about {left} more to reach "
                                                                      f"{t['target']:.0%}"))
    return res


def promote(ws: Workspace, exp: str, tid: str, force: bool = False) -> dict[str, Any]:
    """Copy the winner to ``weights/<exp>.pth`` (index beside it, scores and result in ``weights/<exp>.json``)."""
    from engines.ab.scores import read_scores
    from engines.rvc.ops.catalog import guess_index

    t = load(ws, exp, tid)
    if t["state"] == "open" and not force:
        raise InvalidInputError(f"Tournament '{tid}' has not finished.", "Vote until it stops, or use --force.")
    post = _posterior(t)
    winner = t["candidates"][t["winner"] if t.get("winner") is not None else post.leader]
    src = Path(winner["model"])
    if not src.is_file():
        raise InvalidInputError(f"The winner's model is gone: {src}")
    ws.weights.mkdir(parents=True, exist_ok=True)
    target = ws.weights / f"{safe_name(exp)}.pth"
    backup = None
    if target.is_file() and target.resolve() != src.resolve():
        backup = target.with_name(f"{target.stem}.before-{t['id']}.pth.bak")
        shutil.copy2(target, backup)
    shutil.copy2(src, target.with_suffix(".pth.part"))
    target.with_suffix(".pth.part").replace(target)
    index = guess_index(ws, src)
    index_copy = None
    if index is not None:
        index_copy = ws.weights / f"{safe_name(exp)}.index"
        shutil.copy2(index, index_copy)
    scores = next((r for r in read_scores(ws, exp) if Path(r["model"]).resolve() == src.resolve()), None)
    st = status(t, reveal=True)
    write_json(target.with_suffix(".json"), {
        "promoted_from": str(src), "epoch": winner.get("epoch"), "step": winner.get("step"),
        "index": str(index_copy) if index_copy else None, "scores": scores,
        "tournament": {"id": t["id"], "votes": st["votes"], "p_best": st["p_leader_best"], "target": t["target"],
                       "state": t["state"], "candidates": st["candidates"]},
        "promoted": time.strftime("%Y-%m-%dT%H:%M:%S"), "replaced_backup": str(backup) if backup else None})
    t["promoted"] = {"to": str(target), "from": str(src), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    save(ws, t)
    return {"summary": f"promoted {src.name} to {target}" + (f" with {index_copy.name}" if index_copy else ""),
            "model": str(target), "from": str(src), "index": str(index_copy) if index_copy else None,
            "sidecar": str(target.with_suffix(".json"))}
