"""A/B listening: checkpoints listing, blind sessions, cached conversions, votes and ranking."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from engines.ab import sessions as ab
from engines.core.errors import InvalidInputError


def _touch(p):
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(p.name.encode())
    return p


def test_list_checkpoints_sorted_by_epoch(ws):
    for name in ("spk_e10_s100.pth", "spk_e2_s20.pth", "spk_e1_s10.pth", "spk.pth", "spk2_e1_s5.pth", "spk_e2_s25.pth"):
        _touch(ws.weights / name)
    ck = ab.list_checkpoints(ws, "spk")
    assert [(c.epoch, c.step) for c in ck] == [(1, 10), (2, 20), (2, 25), (10, 100)]
    assert ck[0].label == "spk_e1_s10"


def test_bradley_terry_and_ranking(ws):
    for _ in range(3):
        ab.record_vote(ws, "exp", ("e10", "e20"), "B")  # e20 beats e10
        ab.record_vote(ws, "exp", ("e30", "e10"), "A")  # e30 beats e10
    ab.record_vote(ws, "exp", ("e20", "e30"), "B")  # e30 beats e20
    ab.record_vote(ws, "exp", ("e20", "e30"), "tie", "close")
    rows = ab.ranking(ws, "exp")
    assert [r.label for r in rows] == ["e30", "e20", "e10"]
    top = rows[0]
    assert (top.wins, top.losses, top.ties, top.games) == (4, 0, 1, 5) and top.win_rate == pytest.approx(0.9)
    assert rows[2].wins == 0 and rows[2].win_rate == 0.0
    assert rows[0].strength > rows[1].strength > rows[2].strength > 0
    lines = (ws.experiment_dir("exp") / "ab_votes.jsonl").read_text().splitlines()
    assert len(lines) == 8 and json.loads(lines[-1])["comment"] == "close"
    with pytest.raises(InvalidInputError):
        ab.record_vote(ws, "exp", ("e1", "e2"), "C")
    # free-form comparisons are stored outside experiments
    ab.record_vote(ws, None, ("x", "y"), "A", name="mine")
    assert (ws.root / "ab" / "mine" / "ab_votes.jsonl").is_file()
    assert [r.label for r in ab.ranking(ws, name="mine")] == ["x", "y"]


def test_torn_vote_line_is_skipped(ws):
    ab.record_vote(ws, "exp", ("a", "b"), "A")
    with open(ab.votes_path(ws, "exp"), "a") as fh:
        fh.write('{"a": "a", "b": "b", "cho')
    assert len(ab.read_votes(ws, "exp")) == 1


def test_blind_session_flow_with_cached_conversions(ws, monkeypatch, tmp_path):
    from test_rvc_convert import fake_models

    calls = []

    def fake_load_models(ws_, model, index, params, **kw):
        calls.append(model)
        return fake_models(40000, f0=False)

    monkeypatch.setattr("engines.rvc.infer.convert.load_models", fake_load_models)
    src = tmp_path / "clip.wav"
    sf.write(src, (0.3 * np.sin(np.arange(16000) / 5)).astype(np.float32), 16000)
    models = [_touch(ws.weights / f"spk_e{e}_s{e * 10}.pth") for e in (5, 10, 15)]
    session = ab.create_session(ws, src, [str(m) for m in models], experiment="spk", blind=True, seed=3)
    assert len(session.pairs) == 3
    ab.render_session(ws, session)
    assert len(calls) == 3 and all(c.output and c.output.endswith(".wav") for c in session.candidates)
    ab.render_session(ws, ab.load_session(ws, session.id))  # everything cached: nothing converted again
    assert len(calls) == 3
    view = session.view(0)
    assert view["labels"] is None and view["A"] != view["B"]  # blind: labels hidden before the vote
    revealed = ab.vote(ws, session.id, 0, "A", "brighter")
    pair = session.pairs[0]
    assert revealed["labels"] == {"A": session.candidates[pair.left].label, "B": session.candidates[pair.right].label}
    assert ab.load_session(ws, session.id).view(0)["labels"] is not None  # stays revealed after a reload
    assert ab.load_session(ws, session.id).next_unvoted() == 1
    rows = ab.ranking(ws, "spk")
    assert rows[0].label == session.candidates[pair.left].label and rows[0].wins == 1
    with pytest.raises(InvalidInputError):
        ab.create_session(ws, src, [str(models[0])])


def test_parameter_set_candidates_get_distinct_labels(ws, tmp_path):
    src = _touch(tmp_path / "c.wav")
    m = _touch(ws.weights / "v.pth")
    s = ab.create_session(ws, src, [(m, {"transpose": 0}), (m, {"transpose": 12})], blind=False, name="t")
    assert s.candidates[0].label != s.candidates[1].label and s.view(0)["labels"] is not None
