"""TTS -> RVC without upstream: the parameters are the engines' own, and bad requests fail before any work.

The whole chain on upstream's real CosyVoice is in test_cosyvoice_upstream.py.
"""

from __future__ import annotations

import dataclasses

import pytest

from engines.chain.tts_rvc import TtsRvcParams, default_output, synth_request
from engines.core.errors import InvalidInputError
from engines.core.params import info_of
from engines.cosyvoice.synth import SynthParams
from engines.rvc.infer.convert import ConvertParams


def test_the_parameters_are_the_engines_own():
    chain = {f.name: f for f in dataclasses.fields(TtsRvcParams)}
    for cls, renamed in ((ConvertParams, {}), (SynthParams, {"seed": "tts_seed", "preset": "tts_preset"})):
        for f in dataclasses.fields(cls):
            mine = chain[renamed.get(f.name, f.name)]
            assert mine.default == f.default, f.name
            same = dataclasses.replace(info_of(mine), help=info_of(f).help)  # tts_seed says whose seed it is
            assert same == info_of(f), f.name
    assert info_of(chain["voice"]).path == "read" and info_of(chain["out"]).path == "write"
    assert info_of(chain["model_dir"]).path == "model_dir"


def test_the_cosyvoice_half_and_the_output_name(tmp_path):
    from pathlib import Path

    from engines.core.settings import Workspace

    p = TtsRvcParams(text="Hi.", mode="zero_shot", tts_seed=7, tts_preset="happy", seed=3, preset="none",
                     output_format="flac")
    s = synth_request(p)
    assert (s.text, s.mode, s.seed, s.preset) == ("Hi.", "zero_shot", 7, "happy")
    ws = Workspace(root=tmp_path / "ws")
    out = default_output(ws, "/models/CosyVoice2-0.5B", Path("weights/myvoice.pth"), p)
    assert out.parent == ws.outputs / "tts_rvc" and out.name.startswith("CosyVoice2-0.5B_zero_shot__myvoice_")
    assert out.suffix == ".flac"


def test_bad_requests_fail_before_any_work(tmp_path):
    from engines.core.ops import run_inline
    from engines.core.settings import Workspace

    ws = Workspace(root=tmp_path / "ws")
    ws.ensure()
    with pytest.raises(InvalidInputError, match="No model given"):
        run_inline("chain.tts_rvc", {"text": "Hi.", "voice": "x"}, ws)
    (ws.cosyvoice / "models" / "m").mkdir(parents=True)
    with pytest.raises(InvalidInputError, match="Model not found: nope"):
        run_inline("chain.tts_rvc", {"text": "Hi.", "tts_model": "m", "voice": "nope"}, ws)
    (ws.weights / "v.pth").write_bytes(b"0")
    with pytest.raises(InvalidInputError, match="no text to speak"):
        run_inline("chain.tts_rvc", {"text": "  ", "tts_model": "m", "voice": "v"}, ws)
    assert not (ws.outputs / "tts_rvc").exists() or not any((ws.outputs / "tts_rvc").iterdir())
