"""The Convert tab in the browser: import a zip of a voice (with its index), then convert a clip with it."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

pytestmark = pytest.mark.browser


def _uploaded(page, selector: str, name: str) -> None:
    """Wait until a file box lists the uploaded file (the upload has finished)."""
    page.wait_for_function("([s, n]) => document.querySelector(s)?.innerText.includes(n)", arg=[selector, name],
                           timeout=60000)


@pytest.mark.slow
def test_import_a_zip_in_the_convert_tab_and_convert_with_it(tmp_path):
    from browser import browser_page, studio
    from test_rvc_convert import make_fast_hubert, make_fast_voice
    from test_rvc_import import make_index, make_zip

    zpath = make_zip(tmp_path / "Kiki RVC v1.zip", {
        "Kiki/kiki.pth": make_fast_voice(tmp_path / "k.pth", "v1", "40k", f0=True),
        "Kiki/added_IVF2_Flat_nprobe_1_kiki_v1.index": make_index(tmp_path, "kiki", "v1")})
    hubert = make_fast_hubert(tmp_path / "hubert")
    clip = tmp_path / "clip.wav"
    t = np.arange(16000) / 16000
    sf.write(clip, (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), 16000)
    ws = tmp_path / "ws"
    with studio(ws, env={"VOICELAB_HUBERT": str(hubert)}) as (url, _), browser_page() as page:
        page.goto(url)
        page.get_by_role("tab", name="Convert").click()
        page.locator("#vl-vc-import").get_by_text("Import a model").first.click()
        page.locator("#vl-vc-import-file input[type=file]").set_input_files(str(zpath))
        _uploaded(page, "#vl-vc-import-file", zpath.stem)
        page.locator("#vl-vc-import-run").click()
        page.wait_for_function("() => document.querySelector('#vl-vc-import-result')?.innerText.includes('kiki.pth')",
                               timeout=120000)
        assert "Imported from" in page.locator("#vl-vc-import-result").inner_text()
        # the model list now holds the voice, selected, and "auto" finds the index that came with it
        page.wait_for_function("() => document.querySelector('#vl-vc-model input')?.value === 'kiki.pth'",
                               timeout=20000)
        page.wait_for_function("() => document.querySelector('#vl-vc-index-note')?.innerText.includes('kiki.index')",
                               timeout=20000)
        page.locator("#vl-vc-files input[type=file]").set_input_files(str(clip))
        _uploaded(page, "#vl-vc-files", clip.stem)
        page.locator("#vl-vc-run").click()
        page.wait_for_function("() => document.querySelector('#vl-vc-result')?.innerText.includes('converted')",
                               timeout=120000)
        assert "✔" in page.locator("#vl-vc-result").inner_text()
        page.locator(".vl-vc-output a.download-link, .vl-vc-output audio").first.wait_for(state="attached",
                                                                                          timeout=20000)
    outputs = list((ws / "outputs").glob("clip__kiki__*.wav"))
    assert len(outputs) == 1
    audio, sr = sf.read(outputs[0])
    assert sr == 40000 and len(audio) == 40000
    report = (ws / "outputs" / f"{outputs[0].name}.json").read_text()
    assert "kiki.index" in report  # converted with the imported index


@pytest.mark.slow
def test_import_api_confines_server_paths(tmp_path):
    """Through the HTTP API: a folder outside the workspace is refused; one inside imports."""
    import time

    from browser import studio
    from gradio_client import Client
    from test_rvc_convert import make_fast_voice

    ws = tmp_path / "ws"
    inside = ws / "uploads" / "pack"
    inside.mkdir(parents=True)
    make_fast_voice(inside / "mine.pth", "v1", "40k", f0=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    make_fast_voice(outside / "theirs.pth", "v1", "40k", f0=True)
    with studio(ws) as (url, _):
        client = Client(url, verbose=False)
        with pytest.raises(Exception, match="outside the folders the studio may use"):
            client.predict(None, str(outside), "", "voices", "", "", api_name="/vc_model_import")
        job = client.predict(None, str(inside), "", "voices", "", "", api_name="/vc_model_import")
        deadline = time.time() + 60
        while (rec := client.predict(job, api_name="/job_status"))["state"] in ("queued", "running"):
            assert time.time() < deadline
            time.sleep(0.5)
        assert rec["state"] == "done", rec
    assert (ws / "weights" / "mine.pth").is_file() and not (ws / "weights" / "theirs.pth").exists()
