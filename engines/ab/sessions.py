"""A/B listening: convert one clip with several checkpoints (or parameter sets), vote, rank.

A session is a source clip plus 2..n candidates (a model, its conversion
parameters, an optional index). Every candidate's conversion is cached by
(model sha256, parameters, index, source sha256), so reopening or extending
a session converts nothing twice. Candidates are compared pairwise; in blind
mode each pair's sides are shuffled and the labels stay hidden until the
listener votes. Votes are appended to ``experiments/<exp>/ab_votes.jsonl``
(or ``ab/<name>/ab_votes.jsonl`` for free-form comparisons) and summarised
as a ranking: wins/losses/ties, win rate (ties count half) and a
Bradley-Terry strength.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import random
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from engines.core.atomic import write_json
from engines.core.errors import InvalidInputError
from engines.core.hooks import Hooks, ensure_hooks
from engines.core.messages import msg
from engines.core.settings import safe_name

# Two CosyVoice checkpoints the CosyVoice tab hands over for listening (relative to the workspace).
COSYVOICE_PENDING = Path("ab") / "cosyvoice_pending.json"

CHOICES = ("A", "B", "tie")
DEFAULT_AB_SEED = 1234  # A/B conversions use fixed noise so a candidate always sounds the same


# ---------------------------------------------------------------------------
# checkpoints of an experiment


@dataclass
class Checkpoint:
    path: Path
    epoch: int
    step: int

    @property
    def label(self) -> str:
        return self.path.stem


_CKPT = re.compile(r"^(?P<exp>.+)_e(?P<epoch>\d+)_s(?P<step>\d+)$")


def list_checkpoints(ws: Any, experiment: str) -> list[Checkpoint]:
    """``weights/<exp>_e<E>_s<S>.pth`` of an experiment, by epoch (then step)."""
    exp = safe_name(experiment)
    found = []
    for p in ws.weights.glob(f"{exp}_e*_s*.pth"):
        m = _CKPT.match(p.stem)
        if m and m.group("exp") == exp:
            found.append(Checkpoint(p, int(m.group("epoch")), int(m.group("step"))))
    return sorted(found, key=lambda c: (c.epoch, c.step))


# ---------------------------------------------------------------------------
# sessions


@dataclass
class Candidate:
    model: str
    params: dict[str, Any] = field(default_factory=dict)  # ConvertParams fields that differ from defaults
    index: str | None = None
    label: str = ""
    output: str | None = None  # the cached conversion, once rendered

    def __post_init__(self) -> None:
        if not self.label:
            tag = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
            self.label = Path(self.model).stem + (f" [{tag}]" if tag else "")


@dataclass
class Pair:
    left: int  # candidate shown as A
    right: int  # candidate shown as B
    choice: str | None = None
    comment: str = ""


@dataclass
class ABSession:
    id: str
    source: str
    candidates: list[Candidate]
    pairs: list[Pair]
    blind: bool = True
    experiment: str | None = None
    name: str | None = None
    created: str = ""

    def view(self, pair_index: int) -> dict[str, Any]:
        """What the page shows for one pair: the two audio files, and the labels only when allowed."""
        pair = self.pairs[pair_index]
        a, b = self.candidates[pair.left], self.candidates[pair.right]
        reveal = (not self.blind) or pair.choice is not None
        return {
            "pair": pair_index,
            "A": a.output,
            "B": b.output,
            "labels": {"A": a.label, "B": b.label} if reveal else None,
            "choice": pair.choice,
            "comment": pair.comment,
        }

    def next_unvoted(self) -> int | None:
        return next((i for i, p in enumerate(self.pairs) if p.choice is None), None)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ABSession":
        d = dict(d)
        d["candidates"] = [Candidate(**c) for c in d["candidates"]]
        d["pairs"] = [Pair(**p) for p in d["pairs"]]
        return cls(**d)


def sessions_dir(ws: Any) -> Path:
    return ws.root / "ab" / "sessions"


def cache_dir(ws: Any) -> Path:
    return ws.root / "ab" / "cache"


def votes_path(ws: Any, experiment: str | None = None, name: str | None = None) -> Path:
    """Where the votes of an experiment (or of a named free-form comparison) are kept."""
    if experiment:
        return ws.experiment_dir(experiment) / "ab_votes.jsonl"
    return ws.root / "ab" / safe_name(name or "default") / "ab_votes.jsonl"


def save_session(ws: Any, session: ABSession) -> Path:
    return write_json(sessions_dir(ws) / f"{session.id}.json", session.to_dict())


def load_session(ws: Any, session_id: str) -> ABSession:
    p = sessions_dir(ws) / f"{safe_name(session_id)}.json"
    if not p.is_file():
        raise InvalidInputError(f"A/B session '{session_id}' does not exist.", "Start a new comparison.")
    return ABSession.from_dict(json.loads(p.read_text(encoding="utf-8")))


def create_session(
    ws: Any,
    source: str | Path,
    candidates: Sequence[Candidate | str | Path | tuple[Any, dict[str, Any]]],
    *,
    experiment: str | None = None,
    name: str | None = None,
    blind: bool = True,
    seed: int | None = None,
) -> ABSession:
    """A new session over every pair of ``candidates`` (checkpoint paths, (model, params) or Candidate)."""
    src = Path(source)
    if not src.is_file():
        raise InvalidInputError(f"Source clip not found: {src}", "Upload a clip or pick one from a dataset.")
    cands: list[Candidate] = []
    for c in candidates:
        if isinstance(c, Candidate):
            cands.append(c)
        elif isinstance(c, tuple):
            cands.append(Candidate(model=str(c[0]), params=dict(c[1] or {}), index=(c[2] if len(c) > 2 else None)))
        else:
            cands.append(Candidate(model=str(c)))
    if len(cands) < 2:
        raise InvalidInputError("An A/B comparison needs at least two candidates.",
                                "Pick two or more checkpoints, or one model with two parameter sets.")
    labels = [c.label for c in cands]
    if len(set(labels)) != len(labels):  # same model twice with different index etc.: make labels unique
        for i, c in enumerate(cands):
            c.label = f"{c.label} #{i + 1}"
    rng = random.Random(seed)
    pairs = []
    for i, j in itertools.combinations(range(len(cands)), 2):
        if blind and rng.random() < 0.5:
            i, j = j, i
        pairs.append(Pair(i, j))
    if blind:
        rng.shuffle(pairs)
    session = ABSession(
        id=uuid.uuid4().hex[:12], source=str(src), candidates=cands, pairs=pairs, blind=blind,
        experiment=experiment, name=name if not experiment else None, created=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    save_session(ws, session)
    return session


def _sha256(path: str | Path) -> str:
    from engines.rvc.checkpoints import file_sha256

    return file_sha256(path)


def conversion_key(model_sha: str, params: dict[str, Any], index_sha: str | None, source_sha: str) -> str:
    blob = json.dumps({"m": model_sha, "p": params, "i": index_sha, "s": source_sha}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def render_session(ws: Any, session: ABSession, hooks: Hooks | None = None, *, encoder_path: str | None = None) -> ABSession:
    """Convert the source with every candidate that has no cached output yet (one job)."""
    from engines.core.params import build, to_dict
    from engines.rvc.infer.convert import ConvertParams, load_models, vc_options
    from engines.rvc.infer.files import convert_file
    from engines.rvc.models import noise

    hooks = ensure_hooks(hooks)
    src_sha = _sha256(session.source)
    n = len(session.candidates)
    for i, cand in enumerate(session.candidates):
        hooks.check_cancel()
        values = {"seed": DEFAULT_AB_SEED, **cand.params}
        params = build(ConvertParams, values).check()
        key = conversion_key(_sha256(cand.model), to_dict(params), _sha256(cand.index) if cand.index else None, src_sha)
        target = cache_dir(ws) / f"{key}.{params.output_format}"
        if not target.is_file() and (take := _preview_take(ws, session, cand, to_dict(params))) is not None:
            from engines.core.atomic import atomic_path

            with atomic_path(target) as tmp:  # the save's preview is this very take: no second conversion
                shutil.copyfile(take, tmp)
            hooks.log(f"{cand.label}: the preview rendered at its save")
        if not target.is_file():
            hooks.progress(i / n, msg("progress.ab_converting", label=cand.label))
            models = load_models(ws, cand.model, cand.index, params, encoder_path=encoder_path)
            with noise.seeded_noise(params.seed) if params.seed >= 0 else _null():
                convert_file(models, Path(session.source), target, params.output_format, vc_options(ws, params),
                             hooks.scaled(i / n, (i + 1) / n))
        cand.output = str(target)
    save_session(ws, session)
    hooks.progress(1.0, msg("progress.ab_done"))
    return session


def _preview_take(ws: Any, session: ABSession, cand: Candidate, params: dict[str, Any]) -> Path | None:
    """The preview a training save already rendered of this source with this model and parameters."""
    if not session.experiment or cand.index:
        return None
    from engines.rvc.train.previews import read_previews

    for rec in read_previews(ws, session.experiment):
        if Path(rec["model"]) != Path(cand.model) or rec.get("params") != params:
            continue
        for clip in rec["clips"]:
            out = clip.get("output")
            if clip.get("ok") and out and Path(clip["source"]) == Path(session.source) and Path(out).is_file():
                return Path(out)
    return None


def _null() -> Any:
    import contextlib

    return contextlib.nullcontext()


# ---------------------------------------------------------------------------
# votes and ranking


def record_vote(
    ws: Any,
    experiment: str | None,
    pair: tuple[str, str],
    choice: str,
    comment: str = "",
    *,
    name: str | None = None,
    session_id: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Append one vote ("A", "B" or "tie") between the labels ``pair = (shown as A, shown as B)``."""
    if choice not in CHOICES:
        raise InvalidInputError(f"A vote must be one of {', '.join(CHOICES)} (got {choice!r}).")
    a, b = str(pair[0]), str(pair[1])
    if a == b:
        raise InvalidInputError("A vote needs two different candidates.")
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "a": a,
        "b": b,
        "choice": choice,
        "winner": a if choice == "A" else b if choice == "B" else None,
        "comment": str(comment or "").strip(),
        "session": session_id,
        **(extra or {}),
    }
    path = votes_path(ws, experiment, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:  # one short line per append: never half-written in practice
        fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
    return entry


def vote(ws: Any, session: ABSession | str, pair_index: int, choice: str, comment: str = "") -> dict[str, Any]:
    """Vote on one pair of a session; stores the vote and returns the now revealed view."""
    if isinstance(session, str):
        session = load_session(ws, session)
    if not 0 <= pair_index < len(session.pairs):
        raise InvalidInputError(f"This comparison has no pair {pair_index}.")
    pair = session.pairs[pair_index]
    a, b = session.candidates[pair.left], session.candidates[pair.right]
    record_vote(ws, session.experiment, (a.label, b.label), choice, comment, name=session.name or "default",
                session_id=session.id,
                extra={"blind": session.blind, "source": session.source, "a_model": a.model, "b_model": b.model,
                       "a_params": a.params, "b_params": b.params})
    pair.choice, pair.comment = choice, comment
    save_session(ws, session)
    return session.view(pair_index)


def read_votes(ws: Any, experiment: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
    path = votes_path(ws, experiment, name)
    if not path.is_file():
        return []
    votes = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            v = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line from a crash: skip it
        if v.get("choice") in CHOICES and v.get("a") and v.get("b"):
            votes.append(v)
    return votes


@dataclass
class RankRow:
    label: str
    games: int
    wins: int
    losses: int
    ties: int
    win_rate: float  # (wins + ties/2) / games
    strength: float  # Bradley-Terry strength, geometric mean 1


def bradley_terry(labels: Sequence[str], results: Sequence[tuple[str, str, float]], iterations: int = 200,
                  prior: float = 0.5) -> dict[str, float]:
    """Bradley-Terry strengths by the MM algorithm (Hunter 2004); a tie counts half a win each.

    ``prior`` virtual half-wins/half-losses against an average opponent keep
    strengths finite for undefeated or winless candidates.
    """
    idx = {lab: i for i, lab in enumerate(labels)}
    k = len(labels)
    if k == 0:
        return {}
    wins = [prior] * k
    games: dict[tuple[int, int], float] = {}
    for a, b, score_a in results:
        i, j = idx[a], idx[b]
        wins[i] += score_a
        wins[j] += 1 - score_a
        key = (min(i, j), max(i, j))
        games[key] = games.get(key, 0.0) + 1
    p = [1.0] * k
    for _ in range(iterations):
        new = []
        for i in range(k):
            denom = 2 * prior / (p[i] + 1.0)  # the virtual games against strength 1
            for (x, y), n in games.items():
                if i in (x, y):
                    other = y if i == x else x
                    denom += n / (p[i] + p[other])
            new.append(wins[i] / denom if denom > 0 else p[i])
        geo = 1.0
        for v in new:
            geo *= v
        geo = geo ** (1 / k)
        p = [v / geo for v in new]
    return {lab: p[idx[lab]] for lab in labels}


def ranking(ws: Any, experiment: str | None = None, name: str | None = None) -> list[RankRow]:
    """Candidates ranked by Bradley-Terry strength (ties broken by win rate, then games)."""
    votes = read_votes(ws, experiment, name)
    stats: dict[str, list[int]] = {}
    results = []
    for v in votes:
        a, b, c = v["a"], v["b"], v["choice"]
        for lab in (a, b):
            stats.setdefault(lab, [0, 0, 0])
        if c == "A":
            stats[a][0] += 1
            stats[b][1] += 1
            results.append((a, b, 1.0))
        elif c == "B":
            stats[b][0] += 1
            stats[a][1] += 1
            results.append((a, b, 0.0))
        else:
            stats[a][2] += 1
            stats[b][2] += 1
            results.append((a, b, 0.5))
    strengths = bradley_terry(list(stats), results)
    rows = []
    for lab, (w, l, t) in stats.items():
        g = w + l + t
        rows.append(RankRow(lab, g, w, l, t, (w + 0.5 * t) / g if g else 0.0, strengths.get(lab, 1.0)))
    rows.sort(key=lambda r: (-r.strength, -r.win_rate, -r.games, r.label))
    return rows


def compare_checkpoints(ws: Any, experiment: str, source: str | Path, params: dict[str, Any] | None = None,
                        *, blind: bool = True, index: str | None = None, hooks: Hooks | None = None,
                        encoder_path: str | None = None, only: Sequence[str] = ()) -> ABSession:
    """"Compare every saved checkpoint of this experiment" (or ``only`` those, by path or label): one
    session over them, rendered. ``index`` None = the experiment's index, "" = none."""
    ckpts = list_checkpoints(ws, experiment)
    if only:
        wanted = {Path(o).stem for o in only}
        missing = wanted - {c.label for c in ckpts}
        if missing:
            raise InvalidInputError(f"Experiment '{experiment}' has no saved model {', '.join(sorted(missing))}.",
                                    "Pick saves from the experiment's list (weights/<exp>_e<E>_s<S>.pth).")
        ckpts = [c for c in ckpts if c.label in wanted]
    if len(ckpts) < 2:
        raise InvalidInputError(f"Experiment '{experiment}' has {len(ckpts)} saved checkpoint(s); two are needed.",
                                "Train with 'save every N epochs' (and 'save small models') to get checkpoints.")
    if index is None:
        from engines.rvc.ops.catalog import guess_index

        found = guess_index(ws, ckpts[0].path)
        index = str(found) if found else None
    index = index or None
    cands = [Candidate(model=str(c.path), params=dict(params or {}), index=index, label=c.label) for c in ckpts]
    session = create_session(ws, source, cands, experiment=experiment, blind=blind)
    return render_session(ws, session, hooks, encoder_path=encoder_path)


def clear_cache(ws: Any) -> None:
    shutil.rmtree(cache_dir(ws), ignore_errors=True)


__all__ = [
    "ABSession", "Candidate", "Checkpoint", "RankRow", "compare_checkpoints", "create_session", "list_checkpoints",
    "load_session", "ranking", "read_votes", "record_vote", "render_session", "vote", "votes_path",
]
