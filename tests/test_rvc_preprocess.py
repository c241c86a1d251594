"""RVC preprocessing: piece cutting, normalisation, outputs, the stage cache and pitch extraction stage."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import soundfile as sf

from engines.core.hooks import Hooks
from engines.rvc.train import preprocess as pp
from engines.rvc.train.experiment import StageCache, experiment_paths


def test_split_pieces_cuts_3_7_s_every_3_4_s_and_keeps_the_remainder():
    sr = 1000
    audio = np.arange(10_000, dtype=np.float32)  # 10 s
    pieces = pp.split_pieces(audio, sr)
    # starts at 0, 3.4, 6.8 s; 6.8 s leaves 3.2 s <= 4.0 s -> last piece
    assert [len(p) for p in pieces] == [3700, 3700, 3200]
    assert [int(p[0]) for p in pieces] == [0, 3400, 6800]
    assert pieces[-1][-1] == audio[-1]
    # a region shorter than per+overlap stays whole
    assert [len(p) for p in pp.split_pieces(audio[:3900], sr)] == [3900]
    # 4.1 s: one full piece, remainder from 3.4 s
    assert [len(p) for p in pp.split_pieces(audio[:4100], sr)] == [3700, 700]


def test_normalize_piece_formula_and_rejections():
    x = np.array([0.5, -1.6, 0.2, 0.0], dtype=np.float32)
    peak = 1.6
    expected = x / peak * (0.9 * 0.75) + 0.25 * x
    np.testing.assert_allclose(pp.normalize_piece(x), expected, rtol=1e-6)
    assert pp.normalize_piece(np.array([0.1, 2.6], dtype=np.float32)) is None  # peak > 2.5
    assert pp.normalize_piece(np.zeros(10, dtype=np.float32)) is None
    assert pp.normalize_piece(np.array([np.nan, 0.1], dtype=np.float32)) is None
    assert pp.normalize_piece(np.array([0.1, 2.5], dtype=np.float32)) is not None  # 2.5 itself is kept


def test_highpass_removes_dc_and_keeps_speech_band():
    sr = 16000
    t = np.arange(sr * 2) / sr
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    out = pp.highpass(tone + 0.5, sr)
    tail = out[sr:]  # after the filter settled
    assert abs(float(tail.mean())) < 1e-3
    assert abs(np.abs(tail).max() - 1.0) < 0.05


@pytest.fixture
def speech_dataset(tmp_path):
    from speech import espeak_wav

    folder = tmp_path / "voice"
    folder.mkdir()
    espeak_wav("The quick brown fox jumps over the lazy dog. Then it runs far away into the forest.",
               "en", folder / "a.wav", sr=22050)
    espeak_wav("Pack my box with five dozen liquor jugs.", "en+f3", folder / "b.wav", sr=16000)
    return folder


def test_preprocess_outputs_cache_and_force(ws, speech_dataset):
    logs: list[str] = []
    hooks = Hooks(log=logs.append)
    res = pp.preprocess_dataset(ws, "exp1", str(speech_dataset), 32000, n_processes=1, hooks=hooks)
    paths = experiment_paths(ws, "exp1")
    names = paths.piece_names()
    assert res.pieces == len(names) > 0 and not res.cached
    assert {n.split("_")[0] for n in names} == {"0", "1"}  # <file index>_<piece>
    for n in names:
        gt, gsr = sf.read(paths.gt_wavs / f"{n}.wav", dtype="float32")
        k16, ksr = sf.read(paths.wavs16k / f"{n}.wav", dtype="float32")
        assert (gsr, ksr) == (32000, 16000)
        assert sf.info(str(paths.gt_wavs / f"{n}.wav")).subtype == "FLOAT"
        assert len(gt) <= int(4.0 * 32000) + 1
        assert abs(len(k16) - len(gt) / 2) <= 2
        # normalised: peak = 0.675 + 0.25 * original peak, so between 0.675 and 0.675 + 0.625
        assert 0.67 <= np.abs(gt).max() <= 1.3
    # the long sentence (> 4 s) was cut into several 3.7 s pieces
    first = sorted(n for n in names if n.startswith("0_"))
    if len(first) > 1:
        assert len(sf.read(paths.gt_wavs / f"{first[0]}.wav")[0]) == int(3.7 * 32000)

    logs.clear()
    again = pp.preprocess_dataset(ws, "exp1", str(speech_dataset), 32000, n_processes=1, hooks=hooks)
    assert again.cached and again.pieces == res.pieces
    assert any("skipped" in line for line in logs)

    # a changed file (mtime) invalidates the cache
    f = speech_dataset / "b.wav"
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    changed = pp.preprocess_dataset(ws, "exp1", str(speech_dataset), 32000, n_processes=1)
    assert not changed.cached

    # force redoes it, here with 2 worker processes: same pieces, same audio
    before = {n: sf.read(paths.gt_wavs / f"{n}.wav")[0] for n in paths.piece_names()}
    forced = pp.preprocess_dataset(ws, "exp1", str(speech_dataset), 32000, n_processes=2, force=True)
    assert not forced.cached
    after = {n: sf.read(paths.gt_wavs / f"{n}.wav")[0] for n in paths.piece_names()}
    assert before.keys() == after.keys()
    for n in before:
        np.testing.assert_array_equal(before[n], after[n])
    assert not (paths.root / ".staging_preprocess").exists()


def test_preprocess_cancel_keeps_previous_pieces(ws, speech_dataset):
    pp.preprocess_dataset(ws, "exp2", str(speech_dataset), 32000, n_processes=1)
    paths = experiment_paths(ws, "exp2")
    names = paths.piece_names()
    hooks = Hooks()
    hooks.cancel_event.set()
    from engines.core.errors import Cancelled

    with pytest.raises(Cancelled):
        pp.preprocess_dataset(ws, "exp2", str(speech_dataset), 32000, n_processes=1, force=True, hooks=hooks)
    assert paths.piece_names() == names
    assert StageCache(paths).is_fresh("preprocess", StageCache(paths).get("preprocess")["key"])


def test_pitch_stage_writes_upstream_files_and_caches(ws, speech_dataset):
    from engines.rvc.pitch.f0 import f0_to_coarse
    from engines.rvc.train.features import extract_pitch

    pp.preprocess_dataset(ws, "exp3", str(speech_dataset), 40000, n_processes=1)
    paths = experiment_paths(ws, "exp3")
    res = extract_pitch(paths, "pm", n_processes=1)
    assert res.done == len(paths.piece_names()) and not res.cached
    for n in paths.piece_names():
        hz = np.load(paths.f0_hz / f"{n}.wav.npy")
        coarse = np.load(paths.f0_coarse / f"{n}.wav.npy")
        n16 = sf.info(str(paths.wavs16k / f"{n}.wav")).frames
        assert abs(len(hz) - n16 // 160) <= 1
        np.testing.assert_array_equal(coarse, f0_to_coarse(hz))
        assert coarse.min() >= 1 and coarse.max() <= 255
    assert any((np.load(paths.f0_hz / f"{n}.wav.npy") > 60).any() for n in paths.piece_names())
    logs: list[str] = []
    cached = extract_pitch(paths, "pm", n_processes=1, hooks=Hooks(log=logs.append))
    assert cached.cached and any("skipped" in line for line in logs)
    first = {n: np.load(paths.f0_hz / f"{n}.wav.npy") for n in paths.piece_names()}
    forced = extract_pitch(paths, "pm", n_processes=2, force=True)  # two worker processes
    assert not forced.cached and forced.done == len(first)
    for n, hz in first.items():
        np.testing.assert_array_equal(np.load(paths.f0_hz / f"{n}.wav.npy"), hz)
    redone = extract_pitch(paths, "harvest", n_processes=1)  # another method is another key
    assert not redone.cached


def test_cli_preprocess_and_extract_flags(ws, speech_dataset, capsys):
    from engines.cli import build_parser, main

    assert main(["--workspace", str(ws.root), "rvc", "preprocess", "--exp-name", "cli", "--dataset",
                 str(speech_dataset), "--sr", "48k", "--n-processes", "1"]) == 0
    assert "pieces in" in capsys.readouterr().out
    paths = experiment_paths(ws, "cli")
    assert sf.info(str(paths.gt_wavs / f"{paths.piece_names()[0]}.wav")).samplerate == 48000
    # the seed workflow's flags parse into TrainParams
    args = build_parser().parse_args([
        "rvc", "train", "--dataset", "d", "--exp-name", "e", "--sr", "40k", "--version", "v1", "--f0-method", "harvest",
        "--total-epoch", "7", "--batch-size", "3", "--save-every-epoch", "2", "--no-save-every-weights",
        "--pretrained-g", "g.pth", "--pretrained-d", "d.pth", "--skip-preprocess", "--skip-f0", "--skip-feature",
        "--gpus", "0-1"])
    from engines.core.params import from_namespace
    from engines.rvc.train.params import TrainParams

    p = from_namespace(TrainParams, args)
    assert (p.exp_name, p.sr, p.version, p.f0_method, p.total_epoch, p.batch_size, p.save_every_epoch) == (
        "e", "40k", "v1", "harvest", 7, 3, 2)
    assert not p.save_every_weights and p.skip_preprocess and p.skip_f0 and p.skip_feature
    assert (p.pretrained_g, p.pretrained_d, p.gpus) == ("g.pth", "d.pth", "0-1")
