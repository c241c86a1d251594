"""The A/B Listen tab on a phone-sized screen: convert two checkpoints, vote blind, labels revealed, ranking."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf


def _open_tab(page, name: str) -> None:
    """Click a top-level tab; on a narrow screen it sits in the "More tabs" menu."""
    page.get_by_role("tab", name="Dataset").wait_for()
    tab = page.locator(".tab-wrapper [role=tablist]").first.get_by_role("tab", name=name)
    if tab.count():
        tab.click()
        return
    page.get_by_label("More tabs").first.click()
    page.locator(".overflow-dropdown button", has_text=name).first.click()


def _text(page, selector: str) -> str:
    return page.locator(selector).inner_text().strip()


@pytest.mark.slow
def test_blind_ab_flow_on_a_phone(tmp_path):
    from browser import browser_page, studio
    from test_rvc_convert import make_fast_hubert, make_fast_voice

    ws = tmp_path / "ws"
    (ws / "weights").mkdir(parents=True)
    for epoch, seed in ((1, 0), (2, 1)):
        make_fast_voice(ws / "weights" / f"spk_e{epoch}_s{epoch * 10}.pth", "v1", "40k", f0=False, seed=seed)
    hubert = make_fast_hubert(tmp_path / "hubert")
    src = tmp_path / "clip.wav"
    t = np.arange(12000) / 16000
    sf.write(src, (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 16000)

    with studio(ws, env={"VOICELAB_HUBERT": str(hubert)}) as (url, _), \
            browser_page(viewport={"width": 390, "height": 844}) as page:
        page.goto(url)
        _open_tab(page, "A/B Listen")
        page.locator("#vl-ab-source input[type=file]").set_input_files(str(src))
        page.locator("#vl-ab-source audio, #vl-ab-source .waveform-container").first.wait_for(state="attached")
        page.wait_for_timeout(500)
        assert page.locator("#vl-ab-ckpts input[type=checkbox]").count() == 2  # both saved checkpoints listed
        page.locator("#vl-ab-run-exp").click()
        page.wait_for_function("() => document.querySelector('#vl-ab-pair')?.innerText.includes('1 / 1')",
                               timeout=90000)
        # blind: both sides play, but nothing on the page says which checkpoint is which
        page.wait_for_function("() => ['a', 'b'].every(s => document.querySelector('#vl-ab-label-' + s)"
                               "?.innerText.trim() === s.toUpperCase())", timeout=10000)  # (once rendering settles)
        assert "spk_e" not in page.locator("#vl-ab-listen").inner_html()
        # narrow screen: the players stack (B below A) instead of squeezing side by side
        box_a = page.locator("#vl-ab-player-a").bounding_box()
        box_b = page.locator("#vl-ab-player-b").bounding_box()
        assert box_b["y"] >= box_a["y"] + box_a["height"] - 1 and box_a["width"] > 250
        assert page.locator("#vl-ab-vote-a").is_enabled()

        page.locator("#vl-ab-comment textarea").fill("warmer")
        page.locator("#vl-ab-vote-a").click()
        page.wait_for_function("() => document.querySelector('#vl-ab-label-a')?.innerText.includes('spk_e')",
                               timeout=20000)
        label_a = _text(page, "#vl-ab-label-a").split("—")[1].replace("✔", "").strip()
        label_b = _text(page, "#vl-ab-label-b").split("—")[1].strip()
        assert {label_a, label_b} == {"spk_e1_s10", "spk_e2_s20"}
        assert not page.locator("#vl-ab-vote-a").is_enabled()  # one vote per pair
        page.wait_for_function(
            "() => document.querySelector('#vl-ab-ranking')?.innerText.includes('100% (1/1)')", timeout=20000)
        table = _text(page, "#vl-ab-ranking")
        assert table.index(label_a) < table.index(label_b)  # the winner ranks first

    votes = (ws / "experiments" / "spk" / "ab_votes.jsonl").read_text().splitlines()
    assert len(votes) == 1
    vote = json.loads(votes[0])
    assert vote["winner"] == label_a and (vote["a"], vote["b"]) == (label_a, label_b)
    assert vote["comment"] == "warmer" and vote["blind"] is True
    from engines.ab import sessions as ab
    from engines.core.settings import Workspace

    rows = ab.ranking(Workspace.open(ws), "spk")
    assert [r.label for r in rows] == [label_a, label_b] and rows[0].wins == 1


def test_ab_tab_helpers(ws, tmp_path):
    """Ranking rows and targets as the tab shows them; parameter sets reduced to what differs."""
    from engines.ab import sessions as ab
    from voicelab_ui.tabs.ab import (
        ab_experiments,
        changed_params,
        param_set_labels,
        ranking_rows,
        ranking_targets,
    )

    (ws.weights / "voice_e5_s50.pth").write_bytes(b"x")
    assert "voice" in ab_experiments(ws)
    ab.record_vote(ws, "voice", ("e5", "e10"), "B")
    ab.record_vote(ws, "voice", ("e5", "e10"), "tie")
    ab.record_vote(ws, None, ("x", "y"), "A", name="models")
    assert ranking_targets(ws) == [("voice", "exp:voice"), ("models (free-form)", "ab:models")]
    rows = ranking_rows(ws, "exp:voice")
    assert [r[1] for r in rows] == ["e10", "e5"] and rows[0][2] == "75% (1.5/2)" and rows[0][3:7] == [1, 0, 1, 2]
    assert ranking_rows(ws, "ab:models")[0][1] == "x"
    assert changed_params({"transpose": 12, "index_rate": 0.75, "f0_method": "pm"}) == {"transpose": 12,
                                                                                      "f0_method": "pm"}
    assert param_set_labels("v", {"f0_method": "pm"}, {"f0_method": "pm", "transpose": 12}) == (
        "v [transpose=0]", "v [transpose=12]")


def test_cosyvoice_hand_over_becomes_a_blind_session(ws, monkeypatch):
    """The CosyVoice tab's pending comparison: both takes synthesised in one job, then judged like any pair."""
    from pathlib import Path

    from engines.ab import sessions as ab
    from engines.core.ops import run_inline
    from engines.cosyvoice import synth
    from engines.ab.ops import send_to_ab
    from engines.ab.ops import read_cosyvoice_pending

    ckpts = []
    for n in (1, 4):
        p = ws.cosyvoice / "exp" / f"epoch_{n}_whole.pt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
        ckpts.append(p)
    send_to_ab(ws, str(ws.cosyvoice / "models" / "alice"), str(ckpts[0]), str(ckpts[1]), text="Hello.",
               speaker="alice", seed=3)
    assert read_cosyvoice_pending(ws)["seed"] == 3
    seen = {}

    def fake_grid(model_dir, text, speaker, out_dir, presets=("neutral",), speeds=(1.0,), checkpoints=(None,),
                  seed=0, **kw):
        seen.update(text=text, speaker=speaker, seed=seed, checkpoints=list(checkpoints))
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        items = []
        for i, c in enumerate(checkpoints):
            path = Path(out_dir) / f"take{i}.wav"
            sf.write(path, np.full(2400, 0.1 * (i + 1), np.float32), 24000)
            items.append(synth.GridItem(c, presets[0], speeds[0], path))
        return items

    monkeypatch.setattr(synth, "compare_grid", fake_grid)
    # The stand-in grid lives in this process, so the operation runs here rather than in a job's worker.
    result = run_inline("ab.render", {"cosyvoice_pending": True, "blind": True}, ws)
    assert seen == {"text": "Hello.", "speaker": "alice", "seed": 3, "checkpoints": [str(c) for c in ckpts]}
    assert result["candidates"] == ["epoch_1_whole", "epoch_4_whole"] and result["pairs"] == 1
    assert read_cosyvoice_pending(ws) is None  # loaded once; the record is kept beside it
    session = ab.load_session(ws, result["session"])
    assert session.view(0)["labels"] is None and session.name == "cosyvoice_alice"
    revealed = ab.vote(ws, session.id, 0, "B")
    assert set(revealed["labels"].values()) == {"epoch_1_whole", "epoch_4_whole"}
    assert ab.ranking(ws, name="cosyvoice_alice")[0].label == revealed["labels"]["B"]
