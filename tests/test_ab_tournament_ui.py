"""The blind tournament in the A/B tab on a 390 px phone screen: pick the saves, start it, switch A/B
and vote with keys, watch the leader's probability rise, promote the winner."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


@pytest.mark.browser
@pytest.mark.slow
def test_tournament_on_a_phone_with_keys_and_promotion(tmp_path):
    from browser import browser_page, studio
    from test_ab_ui import _open_tab
    from test_rvc_convert import make_fast_hubert, make_fast_voice

    ws = tmp_path / "ws"
    exp = ws / "experiments" / "spk"
    (ws / "weights").mkdir(parents=True)
    models = [make_fast_voice(ws / "weights" / f"spk_e{e}_s{e * 10}.pth", "v1", "40k", f0=False, seed=e)
              for e in (1, 2, 3)]
    for n, freq in enumerate((180, 240)):  # two pieces: the clips in rotation
        for folder, sr in (("0_gt_wavs", 40000), ("1_16k_wavs", 16000)):
            (exp / folder).mkdir(parents=True, exist_ok=True)
            x = np.arange(sr) / sr
            sf.write(exp / folder / f"0_{n}.wav", (0.3 * np.sin(2 * np.pi * freq * x)).astype(np.float32), sr)
    hubert = make_fast_hubert(tmp_path / "hubert")
    best = str(models[1].resolve())

    with studio(ws, env={"VOICELAB_HUBERT": str(hubert)}) as (url, _), \
            browser_page(viewport={"width": 390, "height": 844}) as page:
        page.goto(url)
        _open_tab(page, "A/B Listen")
        for name in ("spk_e2_s20", "spk_e3_s30"):  # two of the three saves compete
            page.locator("#vl-tour-saves input").click()
            page.get_by_role("option", name=name, exact=True).click()
        page.locator("#vl-tour-start").scroll_into_view_if_needed()
        page.locator("#vl-tour-start").click()
        page.wait_for_selector("#vl-tour-box", timeout=120000)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 392  # nothing wider than the phone
        box = page.locator("#vl-tour-box").bounding_box()
        assert box["width"] <= 390
        # the takes stay blind: no save name in the player until the end (the picker lists what the user chose)
        assert "spk_e" not in page.locator("#vl-tour-player").inner_text()
        assert "spk_e" not in page.locator("#vl-tour-player").inner_html()
        started = json.loads(next((exp / "tournaments").glob("*.json")).read_text())
        assert sorted(Path(c["model"]).name for c in started["candidates"]) == ["spk_e2_s20.pth", "spk_e3_s30.pth"]
        owner = {p: started["candidates"][c]["model"] for c, row in enumerate(started["takes"]) for p in row}

        # A/B switch at the same position, space plays and pauses
        page.locator("#vl-tour-now").click()  # focus the page, not an input
        page.keyboard.press("b")
        assert page.evaluate("() => window.vlTour.state.side") == "b"
        assert page.locator("#vl-tour-box").get_attribute("data-side") == "b"
        page.keyboard.press("a")
        assert page.locator("#vl-tour-box").get_attribute("data-side") == "a"
        assert page.evaluate("() => document.getElementById('vl-tour-b').muted") is True
        page.keyboard.press(" ")
        page.wait_for_function("() => document.getElementById('vl-tour-box').dataset.playing === '1'")
        page.keyboard.press(" ")

        probs = []
        for _ in range(25):
            votes = int(page.locator("#vl-tour-status").get_attribute("data-votes"))
            src = {s: page.locator(f"#vl-tour-{s}").get_attribute("src") for s in ("a", "b")}
            who = {s: owner[re.sub(r"^/gradio_api/file=", "", v).replace("&amp;", "&")] for s, v in src.items()}
            key = "1" if who["a"] == best else "2" if who["b"] == best else "1"
            page.locator("#vl-tour-now").click()
            page.keyboard.press(key)
            page.wait_for_function(f"() => +document.getElementById('vl-tour-status')?.dataset.votes === {votes + 1}",
                                   timeout=30000)
            status = page.locator("#vl-tour-status")
            probs.append(float(status.get_attribute("data-p")))
            if status.get_attribute("data-state") == "finished":
                break
        print(f"P(leader is best) after each vote: {probs}")
        assert page.locator("#vl-tour-status").get_attribute("data-state") == "finished"
        assert probs[-1] >= 0.95 and probs[-1] > probs[0]
        assert "spk_e2_s20" in page.locator("#vl-tour-status").inner_text()  # revealed at the end
        page.locator("#vl-tour-promote").click()
        page.wait_for_function("() => document.querySelector('#vl-tour-result')?.innerText.includes('promoted')",
                               timeout=20000)
        # the same operations through the API
        from gradio_client import Client

        client = Client(url, verbose=False)
        st = client.predict("spk", "", api_name="/ab_tournament_status")
        assert st["state"] == "finished" and st["winner"] == best and st["votes"] == len(probs)
        assert client.predict("spk", api_name="/rvc_train_scores") == {"scores": [], "best": {}}
    assert (ws / "weights" / "spk.pth").read_bytes() == models[1].read_bytes()
    side = json.loads((ws / "weights" / "spk.json").read_text())
    assert side["promoted_from"] == best and side["tournament"]["p_best"] >= 0.95
