"""Checkpoint scores: each measure on signals with a known answer, then scores of every save of a tiny
training run (the command-line training scores each save after its previews), the held-out split
kept out of training, and the ``voicelab rvc score|scores`` commands."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from engines.ab import metrics
from engines.core.ops import run_inline

SR = 16000
SENTENCES = ["The quick brown fox jumps over the lazy dog.", "She sells sea shells by the sea shore.",
             "A stitch in time saves nine, they say.", "Every morning I walk to the station."]


def tone(freq: float, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_pitch_error_of_a_pure_tone_against_itself_and_its_octave():
    same = metrics.pitch_fidelity(tone(220), tone(220), transpose=0)
    octave = metrics.pitch_fidelity(tone(220), tone(440), transpose=0)
    up = metrics.pitch_fidelity(tone(220), tone(440), transpose=12)  # an octave up is what was asked
    print(f"pitch error: same {same.cents} c, octave {octave.cents} c, transposed octave {up.cents} c")
    assert same.cents is not None and same.cents < 5 and same.voicing_agreement > 0.95
    assert abs(octave.cents - 1200) < 10
    assert up.cents < 5


def test_character_error_rate():
    assert metrics.character_error_rate("Hello, World!", "hello world") == 0
    assert metrics.character_error_rate("abcd", "abed") == 0.25
    assert metrics.character_error_rate("hello", "") == 1.0
    assert metrics.character_error_rate("", "x") is None


def test_speaker_similarity_is_higher_to_the_own_voice(tmp_path):
    from speech import espeak_wav

    from engines.ab.speaker import ResemblyzerEncoder, cosine, mean_embedding

    enc = ResemblyzerEncoder()
    sets = {}
    for voice, pitch in (("en", None), ("en-us+f3", 75)):
        clips = []
        for n, text in enumerate(SENTENCES[:3]):
            clips.append(tmp_path / f"{voice}_{n}.wav")
            espeak_wav(text, voice, clips[-1], pitch=pitch)
        sets[voice] = mean_embedding(enc, clips)
    clip, _ = espeak_wav(SENTENCES[3], "en")
    own, other = cosine(enc.embed(clip), sets["en"]), cosine(enc.embed(clip), sets["en-us+f3"])
    print(f"speaker similarity: own dataset {own:.3f}, other voice's dataset {other:.3f}")
    assert own > other + 0.1


def _fake_experiment(ws, tmp_path):
    """An experiment whose two 'saves' are an exact copy of the sources and noise."""
    from speech import espeak_wav

    root = ws.experiment_dir("sc")
    wavs = root / "1_16k_wavs"
    gt = root / "0_gt_wavs"
    wavs.mkdir(parents=True)
    gt.mkdir()
    for n, text in enumerate(SENTENCES):
        espeak_wav(text, "en", wavs / f"0_{n}.wav")
        shutil.copy(wavs / f"0_{n}.wav", gt / f"0_{n}.wav")
    (root / "heldout.json").write_text(json.dumps({"requested": 1, "pieces": ["0_3"]}))
    records = []
    rng = np.random.default_rng(0)
    for step, kind in ((10, "copy"), (20, "noise")):
        model = ws.weights / f"sc_e{step // 10}_s{step}.pth"
        model.parent.mkdir(parents=True, exist_ok=True)
        model.write_bytes(b"x")
        clips = []
        for name in ("0_2", "0_3"):
            out = tmp_path / f"{kind}_{name}.wav"
            if kind == "copy":
                shutil.copy(wavs / f"{name}.wav", out)
            else:
                sf.write(out, (0.2 * rng.standard_normal(SR * 3)).astype(np.float32), SR)
            clips.append({"name": name, "kind": "held-out" if name == "0_3" else "trained-on",
                          "source": str(wavs / f"{name}.wav"), "output": str(out), "ok": True})
        records.append({"epoch": step // 10, "step": step, "model": str(model), "params": {"transpose": 0},
                        "clips": clips})
    (root / "previews.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def test_scores_of_a_perfect_save_and_of_noise(ws, tmp_path, capsys):
    from engines.cli import main

    root = _fake_experiment(ws, tmp_path)
    res = run_inline("ab.score", {"exp_name": "sc"}, ws)
    copy, noise = sorted(res["scored"], key=lambda r: r["step"])
    print(json.dumps({"copy": copy["scores"], "noise": noise["scores"]}))
    assert copy["encoder"] == "resemblyzer" and copy["asr"].startswith("tiny.en")
    assert copy["scores"]["cer"] == 0 and noise["scores"]["cer"] >= 0.8
    assert copy["scores"]["pitch_cents"] < 1 and copy["scores"]["heldout_mel_l1"] < 1e-3
    assert noise["scores"]["heldout_mel_l1"] > copy["scores"]["heldout_mel_l1"] + 1
    assert copy["scores"]["speaker_similarity"] > 0.8 > noise["scores"]["speaker_similarity"]
    assert (root / "speaker_embedding_resemblyzer.json").is_file()  # the target voice, cached
    assert len((root / "scores.jsonl").read_text().splitlines()) == 2
    assert run_inline("ab.score", {"exp_name": "sc"}, ws)["scored"] == []  # nothing new
    # the CLI lists them with the best save per score
    assert main(["--workspace", str(ws.root), "rvc", "scores", "sc"]) == 0
    out = capsys.readouterr().out
    assert "best cer: epoch 1" in out and "best speaker_similarity: epoch 1" in out
    # another language without a model: the CER is skipped with the reason
    res = run_inline("ab.score", {"exp_name": "sc", "language": "de", "redo": True,
                                  "models": [copy["model"]]}, ws)
    assert "no Whisper model for language 'de'" in res["scored"][0]["skipped"]["cer"]
    assert res["scored"][0]["scores"]["cer"] is None


@pytest.mark.slow
def test_every_save_of_a_tiny_training_run_is_scored_and_held_out_pieces_never_train(ws, tmp_path):
    from speech import espeak_wav
    from tiny_hubert import make_tiny_hubert
    from tiny_rvc import tiny_config

    from engines.rvc.train.previews import read_previews

    data = tmp_path / "voice"
    data.mkdir()
    for n, text in enumerate(SENTENCES):
        espeak_wav(text + " " + text, "en", data / f"{n}.wav", sr=22050)
    params = dict(exp_name="run", dataset=str(data), sr="32k", version="v2", f0=True, f0_method="pm", total_epoch=4,
                  batch_size=1, save_every_epoch=2, save_every_weights=True, keep_latest_only=True,
                  hubert_path=str(make_tiny_hubert(tmp_path / "hubert")), n_processes=1, loader_workers=0,
                  log_interval=1, segment_size=640, model_config=tiny_config("v2", "32k"), add_mute=False,
                  holdout_pieces=2)
    res = run_inline("rvc.train", params, ws)
    root = ws.experiment_dir("run")
    held = json.loads((root / "heldout.json").read_text())["pieces"]
    assert len(held) == 2
    trained = [line.split("|")[0] for line in (root / "filelist.txt").read_text().splitlines()]
    assert trained and not any(any(f"/{h}.wav" in t or f"/{h}.npy" in t for h in held) for t in trained)
    assert all(h not in line for h in held for line in (root / "filelist.txt").read_text().splitlines())
    saves = res["small_models"]
    assert len(saves) == 2
    scores = run_inline("ab.scores", {"exp_name": "run"}, ws)
    assert sorted(r["model"] for r in scores["scores"]) == sorted(saves)
    assert len(read_previews(ws, "run")) == 2
    for rec in scores["scores"]:
        s = rec["scores"]
        print(f"epoch {rec['epoch']}: {s}")
        assert s["speaker_similarity"] is not None and s["pitch_cents"] is not None
        assert s["heldout_mel_l1"] is not None and s["cer"] is not None
        assert {c["kind"] for c in rec["clips"]} == {"held-out"}
    assert set(scores["best"]) == {"speaker_similarity", "pitch_cents", "voicing_agreement", "cer", "heldout_mel_l1"}


def test_train_tab_plots_scores_and_stars_the_best_save_in_the_table_and_the_legend(ws):
    from voicelab_ui.tabs.rvc_train.helpers import best_markdown, saved_rows, score_frame

    ws.experiment_dir("ui").mkdir(parents=True)
    ws.weights.mkdir(parents=True, exist_ok=True)
    recs = []
    for epoch, sim, cents, cer, mel in ((1, 0.5, 80.0, 0.6, 3.0), (2, 0.8, 20.0, 0.2, 2.0), (3, 0.7, 40.0, 0.1, 2.5)):
        model = ws.weights / f"ui_e{epoch}_s{epoch * 10}.pth"
        model.write_bytes(b"0")
        recs.append({"epoch": epoch, "step": epoch * 10, "model": str(model), "encoder": "resemblyzer",
                     "scores": {"speaker_similarity": sim, "pitch_cents": cents, "voicing_agreement": 0.9, "cer": cer,
                                "heldout_mel_l1": mel}})
    (ws.experiment_dir("ui") / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    rows = {r[1]: r[6:] for r in saved_rows(ws, "ui")}
    assert rows["ui_e2_s20.pth"] == ["0.8 ★", "20 ★", "0.2", "2 ★"] and rows["ui_e3_s30.pth"][2] == "0.1 ★"
    frame = score_frame(ws, "ui")
    assert set(frame["series"]) == {"speaker sim (★ epoch 2)", "pitch err (cents) (★ epoch 2)", "CER (★ epoch 3)",
                                    "held-out mel L1 (★ epoch 2)"}  # the legend marks each score's best save
    sim = frame[frame["series"] == "speaker sim (★ epoch 2)"].set_index("epoch")["score"]
    cents = frame[frame["series"] == "pitch err (cents) (★ epoch 2)"].set_index("epoch")["score"]
    assert sim[2] == 1.0 and sim[1] == 0.0 and cents[2] == 1.0 and cents[1] == 0.0  # 1 = best, whatever the unit
    assert "CER: **epoch 3**" in best_markdown(ws, "ui")


def test_campplus_scores_name_their_encoder_and_are_not_mixed_with_resemblyzer(ws, tmp_path):
    from tiny_cosyvoice_onnx import build_campplus

    from engines.ab.scores import best_saves, read_scores

    _fake_experiment(ws, tmp_path)
    onnx = build_campplus(tmp_path / "campplus.onnx")
    res = run_inline("ab.score", {"exp_name": "sc", "campplus": str(onnx), "language": "de"}, ws)
    assert {r["encoder"] for r in res["scored"]} == {"campplus"}
    assert (ws.experiment_dir("sc") / "speaker_embedding_campplus.json").is_file()
    records = read_scores(ws, "sc")
    copy = next(r for r in records if r["step"] == 10)
    # a later resemblyzer record of the noise save: the best speaker similarity keeps to one encoder
    noise = dict(next(r for r in records if r["step"] == 20), encoder="resemblyzer")
    noise["scores"] = dict(noise["scores"], speaker_similarity=0.99)
    best = best_saves([copy, noise])
    assert best["speaker_similarity"]["step"] == 20 and best["speaker_similarity"]["value"] == 0.99
    assert best_saves([noise, copy])["speaker_similarity"]["step"] == 10  # campplus latest: only campplus counts


def test_the_preview_job_queues_the_scores_of_its_save(ws, tmp_path):
    from test_rvc_convert import make_fast_hubert, make_fast_voice

    from engines.core.hooks import Hooks

    _fake_experiment(ws, tmp_path)
    model = make_fast_voice(ws.weights / "sc_e3_s30.pth", "v1", "32k", f0=True)
    submitted = []
    hooks = Hooks(submit=lambda op, params, title="": submitted.append((op, params)) or "job1")
    src = str(ws.experiment_dir("sc") / "1_16k_wavs" / "0_3.wav")
    res = run_inline("rvc.preview", {"exp_name": "sc", "model": str(model), "epoch": 3, "step": 30, "clips": [src],
                                     "f0_method": "pm", "hubert": str(make_fast_hubert(tmp_path / "hubert"))}, ws, hooks)
    assert res["outputs"] and submitted == [("ab.score", {"exp_name": "sc", "models": [str(model)]})]
    submitted.clear()
    run_inline("rvc.preview", {"exp_name": "sc", "model": str(model), "epoch": 3, "step": 30, "clips": [src],
                               "f0_method": "pm", "hubert": str(tmp_path / "hubert"), "scores": False}, ws, hooks)
    assert submitted == []


def test_a_model_without_previews_is_converted_then_scored_from_the_cli(ws, tmp_path, capsys):
    from test_rvc_convert import make_fast_hubert, make_fast_voice

    from engines.cli import main

    _fake_experiment(ws, tmp_path)
    model = make_fast_voice(tmp_path / "community.pth", "v1", "32k", f0=True)
    hubert = make_fast_hubert(tmp_path / "hubert")
    assert main(["--workspace", str(ws.root), "rvc", "score", "sc", "--models", str(model), "--hubert", str(hubert),
                 "--language", "de", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)["scored"][0]
    assert rec["model"] == str(model.resolve()) and rec["encoder"] == "resemblyzer"
    assert [c["kind"] for c in rec["clips"]] and rec["scores"]["pitch_cents"] is not None
    assert (ws.experiment_dir("sc") / "scores" / "community").is_dir()  # its conversions, beside the experiment
