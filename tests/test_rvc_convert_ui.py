"""RVC index/convert/checkpoint jobs through the JobRunner, and the ``/convert`` API through gradio_client."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engines.core.jobs import JobRunner


def _tone(seconds: float, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 0.8 * t) > -0.4)).astype(np.float32)


def _run(runner: JobRunner, op: str, params: dict, timeout: float = 120):
    rec = runner.wait(runner.submit(op, params), timeout)
    return rec


def test_index_convert_and_checkpoint_jobs(ws, tmp_path):
    from test_rvc_convert import make_fast_hubert, make_fast_voice

    ws.settings.hubert_path = str(make_fast_hubert(tmp_path / "hubert"))
    model = make_fast_voice(ws.weights / "spk.pth", "v1", "40k", f0=True)
    feats = ws.experiment_dir("spk") / "3_feature256"
    feats.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        np.save(feats / f"{i}.npy", rng.standard_normal((60, 256)).astype(np.float32))
    runner = JobRunner(ws, light_workers=1)

    # index: the numbers the tab shows come from the job result
    rec = _run(runner, "rvc.index", {"exp_name": "spk", "version": "v1"})
    assert rec.state == "done", rec.error
    res = rec.result
    assert res["frames"] == 120 and res["n_ivf"] == 3 and res["dim"] == 256  # min(16*sqrt(120), 120//39) = 3
    assert res["file_size"] == Path(res["index"]).stat().st_size > 0
    assert Path(res["index"]) == ws.indices / "spk.index" and Path(res["upstream_index"]).is_file()
    assert "120 frames" in rec.message
    # no features of the other version: a clear failure, not a crash
    bad = _run(runner, "rvc.index", {"exp_name": "spk", "version": "v2"})
    assert bad.state == "failed" and "no v2 features" in bad.error

    # convert: a batch with one corrupt file goes on and reports it; the index is found automatically
    inputs = tmp_path / "in"
    inputs.mkdir()
    sf.write(inputs / "a.wav", _tone(0.8), 16000)
    (inputs / "b.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio")
    sf.write(inputs / "c.flac", _tone(0.6, 22050), 22050)
    rec = _run(runner, "rvc.convert", {"model": "spk", "inputs": [str(inputs)], "f0_method": "pm", "transpose": 2,
                                       "output_format": "flac", "seed": 3})
    assert rec.state == "done", rec.error
    res = rec.result
    json.dumps(res)  # the record is stored as JSON
    assert [Path(p).name for p in res["outputs"]] == ["a__spk__pm_k+2_ir0.75_pr0.33_rms0.25_seed3.flac",
                                                      "c__spk__pm_k+2_ir0.75_pr0.33_rms0.25_seed3.flac"]
    assert all(Path(p).is_file() and Path(p).parent == ws.outputs for p in res["outputs"])
    assert [Path(e["input"]).name for e in res["errors"]] == ["b.wav"] and res["errors"][0]["error"]
    assert {"hubert", "synth", "f0"} <= set(res["stage_totals"])
    assert res["report"]["index"] == str(ws.indices / "spk.index")
    assert "2/3 converted" in rec.message and "1 failed" in rec.message
    audio, sr = sf.read(res["outputs"][0])
    assert sr == 40000 and len(audio) == round(0.8 * 40000)
    # "none" really converts without an index; a batch where nothing converts fails with the file's error
    rec = _run(runner, "rvc.convert", {"model": str(model), "inputs": [str(inputs / "a.wav")], "index": "none",
                                       "f0_method": "pm", "out_dir": str(tmp_path / "o2")})
    assert rec.state == "done" and rec.result["report"]["index"] is None
    rec = _run(runner, "rvc.convert", {"model": "spk", "inputs": [str(inputs / "b.wav")], "f0_method": "pm"})
    assert rec.state == "failed" and "No file could be converted" in rec.error

    # checkpoint tools: merge (and its refusal for different architectures), extract from a G checkpoint
    from tiny_rvc import make_tiny_generator_checkpoint

    make_fast_voice(ws.weights / "other.pth", "v1", "40k", f0=True, seed=1)
    rec = _run(runner, "rvc.ckpt_merge", {"model_a": "spk", "model_b": "other.pth", "alpha": 0.3})
    assert rec.state == "done", rec.error
    assert Path(rec.result["model"]) == ws.weights / "spk+other_a0.3.pth" and rec.result["info"]["version"] == "v1"
    again = _run(runner, "rvc.ckpt_merge", {"model_a": "spk", "model_b": "other.pth", "alpha": 0.3})
    assert again.state == "failed" and "already exists" in again.error
    make_fast_voice(ws.weights / "v2.pth", "v2", "40k", f0=True)
    mismatch = _run(runner, "rvc.ckpt_merge", {"model_a": "spk", "model_b": "v2", "name": "x"})
    assert mismatch.state == "failed" and "versions differ" in mismatch.error
    g = make_tiny_generator_checkpoint(ws.experiment_dir("spk") / "G_300.pth", "v2", "40k", f0=True, epoch=3)
    rec = _run(runner, "rvc.ckpt_extract", {"checkpoint": str(g)})
    assert rec.state == "done", rec.error
    assert Path(rec.result["model"]) == ws.weights / "spk_G_300.pth" and rec.result["info"]["kind"] == "small"


@pytest.mark.slow
def test_convert_api_through_gradio_client(tmp_path):
    from browser import studio
    from gradio_client import Client, handle_file
    from test_rvc_convert import make_fast_hubert, make_fast_voice

    wsdir = tmp_path / "ws"
    (wsdir / "weights").mkdir(parents=True)
    make_fast_voice(wsdir / "weights" / "tiny.pth", "v1", "40k", f0=True)
    hubert = make_fast_hubert(tmp_path / "hubert")
    src = tmp_path / "voice.wav"
    sf.write(src, _tone(1.1), 16000)
    with studio(wsdir, env={"VOICELAB_HUBERT": str(hubert)}) as (url, _):
        client = Client(url, verbose=False)
        out, info = client.predict(handle_file(str(src)), "tiny", "", transpose=-3, f0_method="pm",
                                   output_format="wav", seed=5, api_name="/convert")
        audio, sr = sf.read(out)
        assert sr == 40000 and len(audio) == round(1.1 * 40000)
        assert info["files"][0]["ok"] and info["params"]["transpose"] == -3 and info["index"] is None
        assert "hubert" in info["stage_totals"]
        # the named behaviours and the preset come with the params model: upstream's length and fill
        out, info = client.predict(handle_file(str(src)), "tiny", "", f0_method="pm", seed=5,
                                   preset="upstream-compatible", api_name="/convert")
        assert (info["params"]["unvoiced"], info["params"]["length"]) == ("interpolate", "upstream")
        assert len(sf.read(out)[0]) == round(1.1 * 16000) * 40000 // 16000 - 800  # upstream is 20 ms short here
        # a model that does not exist: a clear error, not a crash
        with pytest.raises(Exception, match="Model not found"):
            client.predict(handle_file(str(src)), "nope", "", f0_method="pm", api_name="/convert")
