"""Dataset tab in the browser and through gradio_client."""

from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile as sf
from browser import browser_page, studio
from speech import espeak_wav

pytestmark = pytest.mark.browser


def _speech_with_pauses(path, sr=22050):
    parts = []
    for sentence in ("The first sentence is here.", "Then a second one follows.", "And the third ends it."):
        audio, _ = espeak_wav(sentence, "en", sr=sr)
        parts += [audio, np.zeros(sr, dtype=np.float32)]
    sf.write(path, np.concatenate(parts), sr)
    return path


def test_upload_creates_dataset_with_stats_and_players(tmp_path):
    src = _speech_with_pauses(tmp_path / "speech.wav")
    bad = tmp_path / "notes.mp3"
    bad.write_text("this is not audio")
    with studio(tmp_path / "ws") as (url, _), browser_page() as page:
        page.goto(url)
        page.get_by_role("tab", name="Dataset").wait_for()
        page.locator("#vl-ds-name input").fill("voice-a")
        page.locator("#vl-ds-files input[type=file]").set_input_files([str(src), str(bad)])
        page.wait_for_timeout(1500)  # upload finishes
        page.locator("#vl-ds-import").click()
        page.wait_for_function(
            "() => document.querySelector('#vl-job-progress .vl-progress')?.dataset.state === 'done'", timeout=120000)
        page.wait_for_function("() => document.querySelector('#vl-ds-summary')?.innerText.includes('3 clips')",
                               timeout=20000)
        assert "notes.mp3" in page.locator("#vl-ds-skipped").inner_text()
        page.locator(".vl-ds-clip a.download-link").first.wait_for(timeout=20000)
        assert page.locator(".vl-ds-clip:visible").count() == 3
        # The player's audio is served and decodable by the browser.
        src_url = page.locator(".vl-ds-clip a.download-link").first.get_attribute("href")
        assert src_url and "000001.wav" in src_url
        duration = page.evaluate(
            """async (u) => { const a = new Audio(u); await new Promise((ok, bad) => { a.onloadedmetadata = ok; a.onerror = bad; });
                            return a.duration; }""", src_url)
        assert 1.0 < duration < 4.0


def test_gradio_client_import_and_stats(tmp_path):
    from gradio_client import Client, handle_file

    src = _speech_with_pauses(tmp_path / "speech.wav")
    with studio(tmp_path / "ws") as (url, _):
        client = Client(url, verbose=False)
        job = client.predict("api-set", [handle_file(str(src))], "", 0, True, -42, 1500, 400, 15, 500, True, "rms",
                             -20, -1, False, 0.5, 20, api_name="/dataset_import")
        deadline = time.time() + 60
        while True:
            rec = client.predict(job, api_name="/job_status")
            if rec["state"] not in ("queued", "running"):
                break
            assert time.time() < deadline
            time.sleep(0.5)
        assert rec["state"] == "done", rec
        stats = client.predict("api-set", api_name="/dataset_stats")
        assert stats["clips"] == 3 and stats["rate_histogram"] == {"22050": 3}
        assert "3 clip(s) added" in client.predict(job, api_name="/job_log")
