"""Real upstream CosyVoice for tests: the checkout from the bundles, tiny model dirs, an espeak-ng dataset.

``upstream_checkout(root)`` runs ``voicelab vendor sync`` with the git bundles
in ``../shared/vendor/`` (pinned CosyVoice + Matcha-TTS), as an offline user
would. When they are missing the test is skipped, or fails when ``CI`` is
set (CI must exercise the real code). The model dirs come from
``tiny_cosyvoice_models`` (upstream's example yaml with shrunk sizes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT.parent / "shared" / "vendor"
BUNDLES = (VENDOR / "cosyvoice.bundle", VENDOR / "matcha-tts.bundle")

# espeak-ng sentences (1.5-3 s each: inside upstream's 1-60 s filter); one clip is cut so that its
# 16 kHz length is 100 samples past a multiple of 640, the case where offline tokens used to be
# one short of upstream's mel frames / 2.
SENTENCES = {
    "c1": "The birch canoe slid on the smooth planks.",
    "c2": "Glue the sheet to the dark blue background.",
    "c3": "Rice is often served in round bowls.",
    "c4": "The juice of lemons makes fine punch.",
}
MISALIGNED_CLIP = "c2"


def require_bundles() -> None:
    missing = [str(b) for b in BUNDLES if not b.is_file()]
    if missing:
        msg = f"upstream CosyVoice bundles missing: {', '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(msg + " (CI must run the real upstream code)")
        pytest.skip(msg)


def upstream_checkout(root: Path) -> Path:
    """The pinned upstream checkout, cloned offline from the bundles by ``voicelab vendor sync``."""
    from engines.cli import main

    require_bundles()
    dest = root / "CosyVoice"
    code = main(["--workspace", str(root / "sync-ws"), "vendor", "sync", "--source", str(BUNDLES[0]),
                 "--matcha-source", str(BUNDLES[1]), "--dest", str(dest), "--quiet"])
    assert code == 0, "vendor sync from the bundles failed"
    return dest


def espeak_dataset(ws, name: str = "alice") -> Path:
    """A studio dataset of espeak-ng clips (16 kHz) with transcripts imported from a list."""
    import soundfile as sf
    from speech import espeak_wav

    from engines.dataset.transcripts import import_transcripts

    ds = ws.dataset_dir(name)
    (ds / "clips").mkdir(parents=True)
    clips = []
    for cid, text in SENTENCES.items():
        path = ds / "clips" / f"{cid}.wav"
        audio, sr = espeak_wav(text, "en", path, sr=16000, speed=175)
        if cid == MISALIGNED_CLIP:
            audio = audio[: (len(audio) // 640) * 640 - 640 + 100]
            sf.write(path, audio, sr, subtype="PCM_16")
        clips.append({"id": cid, "file": f"clips/{cid}.wav", "duration": len(audio) / sr, "rate": sr})
    (ds / "manifest.json").write_text(json.dumps({"name": name, "clips": clips}), encoding="utf-8")
    listing = ds.parent / f"{name}.list"
    listing.write_text("".join(f"clips/{c}.wav|{t}\n" for c, t in SENTENCES.items()), encoding="utf-8")
    assert import_transcripts(ds, listing).matched == len(SENTENCES)
    return ds


def check_wav(path: str | Path, min_s: float, max_s: float) -> tuple[float, float]:
    """A non-silent 24 kHz wav of min_s..max_s seconds; returns (seconds, peak)."""
    import numpy as np
    import soundfile as sf

    audio, sr = sf.read(str(path))
    seconds, peak = len(audio) / sr, float(np.abs(audio).max())
    assert sr == 24000, sr
    assert min_s <= seconds <= max_s, (seconds, min_s, max_s)
    assert peak > 1e-3 and float(np.std(audio)) > 1e-4, "silent output"
    return seconds, peak
