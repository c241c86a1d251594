"""A/B operations: render a comparison session, rank by votes, and the CosyVoice hand-over.

The A/B tab creates sessions with :mod:`engines.ab.sessions` and submits
``ab.render`` to convert (or synthesise) every candidate; votes and rankings
are quick and answer at once. The CosyVoice tab hands two checkpoints over
with :func:`send_to_ab`; the A/B tab renders them with ``ab.render``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.ab import sessions as ab
from engines.ab.sessions import COSYVOICE_PENDING
from engines.core.atomic import write_json
from engines.core.errors import InvalidInputError
from engines.core.hooks import Hooks
from engines.core.ops import Command, operation
from engines.core.params import param
from engines.core.settings import Workspace


@dataclass
class ABRenderJob:
    session: str = param("", help="A/B session id to render (created by the A/B tab)")
    experiment: str = param("", help="Without a session: compare every saved checkpoint of this experiment")
    source: str = param("", path="read", help="Without a session: the source clip")
    blind: bool = param(True, help="Blind mode: shuffle sides and hide labels until the vote")
    params: str = param("", help="JSON object of ConvertParams values for every candidate")
    checkpoints: list[str] = param(default_factory=list,
                                   help="With an experiment: only these saves (paths or names; default: every save)")
    index: str = param("auto", help="With an experiment: auto = its index, none = no index, or an .index path")
    cosyvoice_pending: bool = param(False, help="Synthesise the CosyVoice comparison handed over by the CosyVoice tab")


def _session_result(session: Any) -> dict:
    return {"session": session.id, "experiment": session.experiment, "name": session.name,
            "candidates": [c.label for c in session.candidates], "pairs": len(session.pairs),
            "outputs": [c.output for c in session.candidates], "blind": session.blind}


@operation("ab.render", params=ABRenderJob, kind="listening", title="A/B: convert the clip with every candidate")
def ab_render_op(p: ABRenderJob, hooks: Hooks, ws: Workspace) -> dict:
    if p.cosyvoice_pending:
        session = render_cosyvoice_pending(ws, p.blind, hooks)
    elif p.session.strip():
        session = ab.render_session(ws, ab.load_session(ws, p.session.strip()), hooks)
    elif p.experiment.strip():
        if not p.source.strip():
            raise InvalidInputError("No source clip.", "Upload a clip or pick one from a dataset.")
        try:
            values = json.loads(p.params) if p.params.strip() else {}
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"params is not valid JSON ({exc}).") from exc
        index = None if p.index in ("", "auto") else "" if p.index == "none" else p.index
        session = ab.compare_checkpoints(ws, p.experiment.strip(), p.source.strip(), values, blind=p.blind,
                                         index=index, hooks=hooks, only=p.checkpoints)
    else:
        raise InvalidInputError("Nothing to compare.", "Give a session id, or an experiment and a source clip.")
    res = _session_result(session)
    res["summary"] = f"{len(session.candidates)} candidate(s) converted, {len(session.pairs)} pair(s) to judge"
    return res


def read_cosyvoice_pending(ws: Workspace) -> dict | None:
    """The comparison the CosyVoice tab handed over, if any."""
    path = ws.root / COSYVOICE_PENDING
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def render_cosyvoice_pending(ws: Workspace, blind: bool, hooks: Hooks) -> Any:
    """Synthesise the handed-over text with both CosyVoice checkpoints (same seed) and open a session."""
    from engines.cosyvoice.synth import compare_grid
    rec = read_cosyvoice_pending(ws)
    if not rec:
        raise InvalidInputError("No CosyVoice comparison is waiting.",
                                "In the CosyVoice tab, pick two checkpoints and send them to A/B.")
    model_dir = rec.get("model_dir") or ""
    ckpts = [(rec.get(side) or {}).get("checkpoint") for side in ("a", "b")]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = ws.root / "ab" / "cosyvoice" / stamp
    items = compare_grid(model_dir, rec.get("text", ""), rec.get("speaker") or None, out_dir,
                         speeds=[float(rec.get("speed", 1.0))], checkpoints=ckpts, seed=int(rec.get("seed", 0)),
                         mode=rec.get("mode", "sft"), hooks=hooks, checkout=ws.settings.cosyvoice_repo,
                         device=ws.settings.device)
    source = out_dir / "text.txt"
    source.write_text(rec.get("text", ""), encoding="utf-8")
    cands = [ab.Candidate(model=it.checkpoint or model_dir, label=Path(it.checkpoint).stem if it.checkpoint
                          else Path(model_dir).name, output=str(it.path)) for it in items]
    session = ab.create_session(ws, source, cands, name=f"cosyvoice_{Path(model_dir).name}", blind=blind)
    (ws.root / COSYVOICE_PENDING).replace(ws.root / "ab" / f"cosyvoice_loaded_{stamp}.json")
    return session


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


@dataclass
class RankParams:
    experiment: str = param("", help="Experiment whose checkpoints were compared")
    name: str = param("", help="A free-form comparison's name (instead of an experiment)")


def _render_rank(res: dict) -> str:
    return "\n".join(f"{i + 1:>2}. {r['label']:<40} BT {r['strength']:6.2f}  win {r['win_rate']:5.1%}  "
                     f"({r['wins']}W {r['losses']}L {r['ties']}T)" for i, r in enumerate(res["ranking"])) or "no votes yet"


@operation("ab.rank", params=RankParams, kind="inline", title="Ranking from A/B votes",
           cli=Command("rvc ab-rank", "Ranking of checkpoints from A/B votes", json_key="ranking"), render=_render_rank)
def rank_op(p: RankParams, hooks: Hooks, ws: Workspace) -> dict:
    import dataclasses

    rows = ab.ranking(ws, p.experiment or None, name=p.name or None)
    return {"ranking": [dataclasses.asdict(r) for r in rows]}
