"""Operations for picking the best checkpoint: ``ab.score`` / ``ab.scores`` and the blind tournament.

``voicelab rvc score <exp>`` scores saves (a listening job; the training queues it after every
save's previews); ``voicelab rvc scores <exp>`` lists them with the best save per score;
``voicelab rvc tournament start|vote|status|promote`` runs the adaptive blind tournament.
"""

from __future__ import annotations

from dataclasses import dataclass

from engines.ab.scores import ScoreParams
from engines.core.hooks import Hooks
from engines.core.ops import Command, operation
from engines.core.params import param
from engines.core.settings import Workspace, safe_name


def _render_score(res: dict) -> str:
    lines = []
    for r in res.get("scored", []):
        vals = "  ".join(f"{k} {v}" for k, v in r["scores"].items() if v is not None)
        lines.append(f"epoch {r['epoch']:>4} step {r['step']:>6}  {vals}  [{r.get('encoder') or 'no speaker score'}]")
        lines += [f"    skipped {k}: {why}" for k, why in r.get("skipped", {}).items()]
    return "\n".join(lines) or res.get("summary", "")


@operation("ab.score", params=ScoreParams, kind="listening", title="Scores of training saves",
           cli=Command("rvc score", "Objective scores of saves (speaker similarity, pitch, CER, held-out mel loss)",
                       positional=("exp_name",)), render=_render_score)
def score_op(p: ScoreParams, hooks: Hooks, ws: Workspace) -> dict:
    from engines.ab.scores import score_saves

    scored = score_saves(ws, p, hooks)
    return {"summary": f"'{p.exp_name}': {len(scored)} save(s) scored", "scored": scored}


@dataclass
class ScoresList:
    exp_name: str = param(help="Experiment whose scores to list")


def _render_scores(res: dict) -> str:
    out = _render_score({"scored": res["scores"]})
    best = "\n".join(f"best {k}: epoch {b['epoch']} ({b['value']})" for k, b in res["best"].items())
    return (out + "\n" + best).strip() or "no scores yet"


@operation("ab.scores", params=ScoresList, kind="inline", title="Scores of an experiment's saves",
           cli=Command("rvc scores", "List each save's scores and the best save per score", positional=("exp_name",)),
           render=_render_scores)
def scores_op(p: ScoresList, hooks: Hooks, ws: Workspace) -> dict:
    from engines.ab.scores import best_saves, read_scores

    records = read_scores(ws, safe_name(p.exp_name))
    return {"scores": records, "best": best_saves(records)}


@dataclass
class TournamentStart:
    exp_name: str = param(help="Experiment whose saves compete")
    models: list[str] = param(default_factory=list, path="read", help="Saves (small models) to compare (default: best by scores "
                                                          "plus the latest)")
    top: int = param(4, min=1, max=32, help="Without models: how many of the best-scored saves compete")
    clips: list[str] = param(default_factory=list, path="read", help="Source clips, in rotation (default: the preview clips)")
    target: float = param(0.95, min=0.6, max=0.999, step=0.01, help="Stop when P(leader is best) reaches this")
    accuracy: float = param(0.7, min=0.55, max=0.95, step=0.01,
                            help="How often a listener picks the truly better take (the model's assumption)")
    hubert: str = param("", path="read", help="Content encoder for saves without previews (default: the configured one)")


@operation("ab.tournament_start", params=TournamentStart, kind="listening", title="A/B: start a blind tournament",
           cli=Command("rvc tournament start", "Start an adaptive blind tournament between saves",
                       positional=("exp_name",)))
def tournament_start_op(p: TournamentStart, hooks: Hooks, ws: Workspace) -> dict:
    from engines.ab import tournament

    return tournament.start(ws, p.exp_name, p.models, p.clips, p.target, p.accuracy, p.top, hooks, p.hubert)


@dataclass
class TournamentVote:
    exp_name: str = param(help="Experiment of the tournament")
    choice: str = param("a", choices=("a", "b", "tie"), help="Which take of the waiting pair is better")
    tournament: str = param("", help="Tournament id (default: the experiment's latest)")


def _tid(ws: Workspace, exp: str, tid: str) -> str:
    from engines.ab import tournament
    from engines.core.errors import InvalidInputError

    found = tid.strip() or tournament.latest_id(ws, exp)
    if not found:
        raise InvalidInputError(f"Experiment '{exp}' has no tournament.", f"voicelab rvc tournament start {exp}")
    return found


@operation("ab.tournament_vote", params=TournamentVote, kind="inline", title="A/B: vote in a tournament",
           cli=Command("rvc tournament vote", "Vote on the waiting pair (a, b or tie)",
                       positional=("exp_name", "choice")))
def tournament_vote_op(p: TournamentVote, hooks: Hooks, ws: Workspace) -> dict:
    from engines.ab import tournament

    return tournament.vote(ws, p.exp_name, _tid(ws, p.exp_name, p.tournament), p.choice)


@dataclass
class TournamentRef:
    exp_name: str = param(help="Experiment of the tournament")
    tournament: str = param("", help="Tournament id (default: the experiment's latest)")
    force: bool = param(False, help="promote: promote the current leader of an unfinished tournament")


def _render_status(res: dict) -> str:
    rows = "\n".join(f"  {c['label']:<32} P(best) {c['p_best']:6.1%}  BT {c['strength']:+.2f}"
                     for c in sorted(res["candidates"], key=lambda c: -c["p_best"]))
    pend = res.get("pending")
    nxt = f"\nnext: A = {pend['a_audio']}\n      B = {pend['b_audio']}" if pend else ""
    return f"{res['summary']}\n{rows}{nxt}"


@operation("ab.tournament_status", params=TournamentRef, kind="inline", title="A/B: tournament status",
           cli=Command("rvc tournament status", "Where a tournament stands", positional=("exp_name",),
                       skip=("force",)), render=_render_status)
def tournament_status_op(p: TournamentRef, hooks: Hooks, ws: Workspace) -> dict:
    from engines.ab import tournament

    return tournament.status(tournament.load(ws, p.exp_name, _tid(ws, p.exp_name, p.tournament)))


@operation("ab.tournament_promote", params=TournamentRef, kind="inline", title="A/B: promote a tournament's winner",
           cli=Command("rvc tournament promote", "Copy the winner to weights/<exp>.pth with its index and scores",
                       positional=("exp_name",)))
def tournament_promote_op(p: TournamentRef, hooks: Hooks, ws: Workspace) -> dict:
    from engines.ab import tournament

    return tournament.promote(ws, p.exp_name, _tid(ws, p.exp_name, p.tournament), p.force)

