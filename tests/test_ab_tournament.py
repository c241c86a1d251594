"""The adaptive blind tournament: the ranking model against a simulated noisy listener, and a whole
tournament between tiny models through the ``voicelab rvc tournament`` commands (loudness-matched
takes, votes, promotion of the winner with its index and sidecar)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engines.ab import ranking_model as rm


def _all_pairs_accuracy(k: int, accuracy: float, runs: int, seed: int) -> float:
    """One vote on every pair, winner = most wins (ties broken at random)."""
    rng = np.random.default_rng(seed)
    right = 0
    for _ in range(runs):
        rank = rng.permutation(k)
        wins = np.zeros(k)
        for i in range(k):
            for j in range(i + 1, k):
                i_won = (rank[i] < rank[j]) == (rng.random() < accuracy)
                wins[i if i_won else j] += 1
        top = np.flatnonzero(wins == wins.max())
        right += int(rank[rng.choice(top)] == 0)
    return right / runs


@pytest.mark.slow
def test_simulated_listener_tournament_finds_the_true_best():
    res = rm.simulate(k=12, accuracy=0.7, target=0.95, runs=200, seed=1)
    capped = rm.simulate(k=12, accuracy=0.7, target=0.95, runs=100, seed=2, max_votes=40)
    pairs = _all_pairs_accuracy(12, 0.7, 2000, 3)
    print(f"\ntournament (stop at P(best) 95%): true best found in {res['found_best']:.1%} of {res['runs']} runs, "
          f"{res['mean_votes']:.1f} votes on average ({res['capped']} runs stopped at {250} votes)")
    print(f"same, stopped at 40 votes: found in {capped['found_best']:.1%}, {capped['mean_votes']:.1f} votes")
    print(f"all pairs once (66 votes, most wins): found in {pairs:.1%}")
    assert res["found_best"] >= 0.9
    assert capped["found_best"] > pairs  # 40 well-chosen votes beat 66 votes on every pair
    # The issue hoped for < 40 votes. To be right 90% of the time, each of the 11 others must end
    # ~100:1 behind the winner (4.6 nats); votes not involving a candidate move its odds by at most
    # ln 11 = 2.4 nats (at best they show the winner beats everyone else), each of its own losses by
    # at most ln(7/3): so ~30 losses of the others at the very least. Every pair-selection rule
    # tried needs more than twice that (~85 votes for 90%, ~105 for 95%).
    assert res["mean_votes"] < 150


def test_model_basics():
    post = rm.OrderPosterior(3, 0.8, seed=0)
    assert np.allclose(post.p_best, 1 / 3, atol=0.1)
    for _ in range(8):
        post.add(2, 0, 1.0)
        post.add(2, 1, 1.0)
    assert post.leader == 2 and post.p_best[2] > 0.95
    assert post.votes_left(0.95) == 0
    strengths, sds = rm.bt_strengths(3, [(2, 0, 1.0), (2, 1, 1.0), (0, 1, 1.0)])
    assert strengths[2] > strengths[0] > strengths[1] and (sds > 0).all()


@pytest.mark.slow
def test_tournament_between_tiny_models_through_the_cli(ws, tmp_path, capsys):
    import soundfile as sf
    from speech import espeak_wav
    from test_rvc_convert import make_fast_hubert, make_fast_voice

    from engines.ab.tournament import integrated_loudness
    from engines.cli import main

    exp = "tour"
    ws.experiment_dir(exp).mkdir(parents=True)
    models = [make_fast_voice(ws.weights / f"{exp}_e{e}_s{e * 10}.pth", "v1", "32k", f0=True, seed=e)
              for e in (1, 2, 3)]
    (ws.indices).mkdir(parents=True, exist_ok=True)
    (ws.indices / f"{exp}.index").write_bytes(b"index")
    clips = []
    for n, (text, gain) in enumerate((("One clip to compare.", 1.0), ("And a second, quieter one.", 0.2))):
        clips.append(tmp_path / f"clip{n}.wav")
        audio, sr = espeak_wav(text, "en")
        sf.write(clips[-1], audio * gain, sr)
    hubert = make_fast_hubert(tmp_path / "hubert")
    base = ["--workspace", str(ws.root)]
    assert main([*base, "rvc", "tournament", "start", exp, "--clips", *map(str, clips), "--hubert", str(hubert),
                 "--target", "0.9", "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["state"] == "open" and len(st["candidates"]) == 3 and st["candidates"][0]["label"] == "candidate 1"
    t_file = ws.experiment_dir(exp) / "tournaments" / f"{st['tournament']}.json"
    t = json.loads(t_file.read_text())
    levels = [integrated_loudness(*sf.read(p)) for row in t["takes"] for p in row]
    report = (f"takes at {t['level_lufs']} LUFS: measured {np.round(levels, 2).tolist()} "
              f"(before: {t['measured_lufs']})")
    assert max(levels) - min(levels) < 0.5
    take_owner = {p: c for c, row in enumerate(t["takes"]) for p in row}
    best = 2  # the listener always prefers the third save
    p_lead, clips_heard = [], set()
    for _ in range(60):
        pend = st["pending"]
        clips_heard.add(pend["clip"])
        a, b = take_owner[pend["a_audio"]], take_owner[pend["b_audio"]]
        assert a != b
        choice = "a" if a == best else "b" if b == best else ("a" if a < b else "b")
        assert main([*base, "rvc", "tournament", "vote", exp, choice, "--json"]) == 0
        st = json.loads(capsys.readouterr().out)
        p_lead.append(st["p_leader_best"])
        if st["state"] == "finished":
            break
    assert st["state"] == "finished" and st["winner"] == str(models[best].resolve())
    assert st["p_leader_best"] >= 0.9 and clips_heard == {0, 1}
    assert main([*base, "rvc", "tournament", "promote", exp, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    promoted = ws.weights / f"{exp}.pth"
    assert promoted.read_bytes() == models[best].read_bytes()
    assert (ws.weights / f"{exp}.index").read_bytes() == b"index"
    side = json.loads((ws.weights / f"{exp}.json").read_text())
    assert side["promoted_from"] == str(models[best].resolve()) and side["tournament"]["votes"] == len(p_lead)
    assert res["model"] == str(promoted)
    assert main([*base, "rvc", "tournament", "vote", exp, "a"]) == 1  # finished: no pair waits
    print(f"{report}\nP(leader is best) per vote: {p_lead}")
