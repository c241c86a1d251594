"""Conversion pipeline: upstream's segmenting/slicing, exact length, protect, rms mix, batches, CLI.

Most tests use stand-in networks (``FakeEncoder``/``FakeVoice``) with the
real framing (HuBERT: 400-sample receptive field, 320 stride; synthesizer:
one hop of samples per 10 ms frame) so the pipeline's own arithmetic is
tested quickly; the end-to-end tests use the tiny real models.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engines.core.hooks import ensure_hooks
from engines.rvc.infer import files
from engines.rvc.infer import pipeline as pl
from engines.rvc.infer import segment, steps
from engines.rvc.infer.buffers import ArrayReader, ListWriter, read_reflect
from engines.rvc.infer.pipeline import Models, StageTimes, VCOptions, run_segments
from engines.rvc.infer.steps import Windowing, linear_resize, rms_envelope, rms_gain, split_points


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class FakeEncoder:
    """HuBERT framing; channel 0 = mean |x| of each frame's 400-sample window, channel 1 = frame index."""

    def __init__(self, dim=768):
        self.dim = dim
        self.calls = []

    def extract(self, audio, version="v2", window_seconds=30.0):
        import torch

        x = np.asarray(audio, np.float32)
        n = (len(x) - 400) // 320 + 1
        self.calls.append(len(x))
        out = np.zeros((n, self.dim), np.float32)
        for f in range(n):
            out[f, 0] = np.abs(x[320 * f : 320 * f + 400]).mean()
        out[:, 1] = np.arange(n)
        return torch.from_numpy(out)


class FakeNet:
    def __init__(self, hop, f0):
        self.hop, self.f0 = hop, f0
        self.seen = []

    def infer(self, feats, lengths, *rest):
        self.seen.append((feats.clone(), int(lengths[0]), [r.clone() if r is not None else None for r in rest]))
        n = int(lengths[0])
        frames = feats[0, :n, 0] + 0.001 * feats[0, :n, 1]  # position-dependent: detects any misplacement
        return (frames.repeat_interleave(self.hop)[None, None].float(),)


class FakeVoice:
    def __init__(self, sr=40000, f0=True, version="v2"):
        self.sample_rate, self.f0, self.version = sr, f0, version
        self.net = FakeNet(sr // 100, f0)
        self.n_speakers = 1
        self.sha256 = "fake"
        self.info = "fake"


def fake_models(sr=40000, f0=False, version="v2"):
    import torch

    return Models(voice=FakeVoice(sr, f0, version), encoder=FakeEncoder(768 if version == "v2" else 256),
                  device=torch.device("cpu"))


def _tone(seconds, sr=16000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    env = (np.sin(2 * np.pi * 0.7 * t) > -0.3).astype(np.float32)  # bursts with quiet gaps
    return (0.3 * env * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


# ---------------------------------------------------------------- building blocks


@pytest.mark.parametrize("n, pad", [(5, 3), (5, 12), (2, 7), (40, 39)])
def test_reflect_padding_matches_numpy(n, pad):
    x = np.arange(n, dtype=np.float64) * 1.5
    ref = np.pad(x, pad, mode="reflect")
    got = read_reflect(ArrayReader(x), -pad, n + pad)
    assert np.array_equal(got, ref)


def _upstream_split(audio, win):
    """The cut-point search as upstream (2026 main) computes it: a whole-array moving sum of |x|."""
    window = 160
    t_query, t_center, t_max = 16000 * win.x_query, 16000 * win.x_center, 16000 * win.x_max
    audio_pad = np.pad(audio, (window // 2, window // 2), mode="reflect")
    opt_ts = []
    if audio_pad.shape[0] > t_max:
        audio_sum = np.zeros_like(audio)
        for i in range(window):
            audio_sum += np.abs(audio_pad[i : i - window])
        for t in range(t_center, audio.shape[0], t_center):
            seg = audio_sum[t - t_query : t + t_query]
            opt_ts.append(t - t_query + np.where(seg == seg.min())[0][0])
    return opt_ts


def test_split_points_match_upstream_search():
    win = Windowing(x_pad=1, x_query=1, x_center=2, x_max=3)  # small windows: same code path, fast
    audio = steps.highpass(_tone(9.3))
    assert split_points(ArrayReader(audio), win) == _upstream_split(audio, win)
    assert len(split_points(ArrayReader(audio), win)) == 4
    assert split_points(ArrayReader(audio[: 16000 * 2]), win) == []
    assert Windowing() == Windowing(1, 6, 38, 41)  # upstream's fp32 constants


def test_coarse_pitch_and_transpose():
    from engines.rvc.pitch.f0 import f0_to_coarse, shift_f0

    f0 = np.array([0, 50, 100, 440, 1100, 2000], np.float32)
    c = f0_to_coarse(shift_f0(f0, 0))
    assert c[0] == 1 and c[1] == 1 and c[4] == 255 and c[5] == 255 and 1 < c[2] < c[3] < 255
    up = shift_f0(f0, 12)
    assert np.allclose(up, f0 * 2) and up.dtype == np.float32
    assert shift_f0(f0.astype(np.float64), 12).dtype == np.float64  # upstream transposes in float64


def _librosa_rms(y, frame_length, hop_length):
    """librosa.feature.rms(center=True, pad_mode="constant") written out (checked against librosa itself;
    importing librosa costs ~10 s of numba start-up, so the test uses this transcription)."""
    y = np.pad(y, frame_length // 2)
    n = 1 + (len(y) - frame_length) // hop_length
    frames = np.stack([y[i * hop_length : i * hop_length + frame_length] for i in range(n)])
    return np.sqrt(np.mean(np.abs(frames) ** 2, axis=1))


def test_rms_envelope_matches_librosa_and_torch_interpolate():
    import torch
    import torch.nn.functional as F

    x = _tone(3.3).astype(np.float64)
    env = rms_envelope(ArrayReader(x), 16000)
    ref = _librosa_rms(x, 16000, 8000)
    assert env.shape == ref.shape == (1 + len(x) // 8000,)
    assert np.allclose(env, ref, rtol=1e-9)
    env40 = rms_envelope(ArrayReader(x), 40000)
    assert np.allclose(env40, _librosa_rms(x, 40000, 20000), rtol=1e-9)
    up = linear_resize(env, 1234, 0, 1234)
    ref_up = F.interpolate(torch.from_numpy(env)[None, None], size=1234, mode="linear").squeeze().numpy()
    assert np.allclose(up, ref_up, rtol=1e-9)
    assert np.allclose(linear_resize(env, 1234, 100, 300), up[100:300])


def test_rms_mix_formula_by_hand():
    env_in = np.array([0.5, 0.5])
    env_out = np.array([0.1, 0.1])
    # rate 0: follow the input's loudness entirely -> gain in/out = 5
    assert np.allclose(rms_gain(env_in, env_out, 10, 0.0, 0, 10), 5.0)
    assert np.allclose(rms_gain(env_in, env_out, 10, 1.0, 0, 10), 1.0)
    assert np.allclose(rms_gain(env_in, env_out, 10, 0.25, 0, 10), 0.5**0.75 * 0.1**-0.75)
    # silent output is floored at 1e-6
    assert np.allclose(rms_gain(env_in, np.zeros(2), 4, 0.5, 0, 4), 0.5**0.5 * 1e-6**-0.5)


def test_level_gain():
    assert steps.level_gain(0.5, True) == pytest.approx(1.98)
    assert steps.level_gain(0.5, False) == 1.0
    assert steps.level_gain(2.0, False) == pytest.approx(0.495)
    assert steps.level_gain(0.0, True) == 1.0


# ---------------------------------------------------------------- segmenting and length


class RecordingSink(ListWriter):
    pass


@pytest.mark.parametrize("seconds", [0.31, 2.0, 9.77])
@pytest.mark.parametrize("sr", [32000, 40000, 48000])
def test_output_length_exact_and_upstream_samples_kept(seconds, sr):
    win = Windowing(x_pad=1, x_query=1, x_center=3, x_max=4)
    audio = steps.highpass(_tone(seconds, seed=int(seconds * 100)))
    opts_exact = VCOptions(windowing=win, rms_mix_rate=1.0, normalize=False)
    opts_up = VCOptions(windowing=win, rms_mix_rate=1.0, normalize=False, length="upstream")
    exact, upstream = RecordingSink(), RecordingSink()
    run_segments(fake_models(sr), ArrayReader(audio), exact, opts_exact, StageTimes(), ensure_hooks(None), True)
    run_segments(fake_models(sr), ArrayReader(audio), upstream, opts_up, StageTimes(), ensure_hooks(None), True)
    assert exact.n == round(len(audio) * sr / 16000)  # exact length
    assert upstream.n < exact.n  # upstream is short ...
    assert len(exact.parts) == len(upstream.parts)
    for ours, theirs in zip(exact.parts, upstream.parts):  # ... but every sample it emits is ours, in place
        assert len(theirs) <= len(ours)
        assert np.array_equal(ours[: len(theirs)], theirs)


def test_segments_are_upstreams_and_hubert_sees_whole_segments():
    win = Windowing(x_pad=1, x_query=1, x_center=3, x_max=4)
    audio = steps.highpass(_tone(10.0))
    models = fake_models(40000, f0=False)
    run_segments(models, ArrayReader(audio), ListWriter(), VCOptions(windowing=win), StageTimes(),
                 ensure_hooks(None), True)
    cuts = [t // 160 * 160 for t in _upstream_split(audio, win)]
    starts = [0] + cuts
    expected = [t + 32000 + 160 - s for s, t in zip(starts, cuts)] + [len(audio) + 32000 - cuts[-1]]
    assert models.encoder.calls == expected


def test_protect_and_retrieval_blend_by_hand():
    import faiss
    import torch

    from engines.rvc.index import LoadedIndex

    models = fake_models(40000, f0=True)
    big = np.zeros((4, 768), np.float32)
    big[:, 0] = 7.0  # every index vector has channel 0 = 7
    index = faiss.IndexFlatL2(768)
    index.add(big)
    models.index = LoadedIndex(Path("x"), index, big, 768)
    audio = _tone(1.0).astype(np.float64)
    enc = models.encoder.extract(audio)[None]
    frames = enc.shape[1] * 2
    pitchf = torch.zeros(1, frames)
    pitchf[0, ::2] = 200.0  # every other frame voiced
    pitch = torch.ones(1, frames, dtype=torch.long)
    opts = VCOptions(index_rate=0.5, protect=0.2)
    segment.vc_segment(models, audio, pitch, pitchf, opts, StageTimes())
    feats, n, (p, pf, sid) = models.voice.net.seen[-1]
    orig = enc.repeat_interleave(2, dim=1)[0, :n, 0].numpy()
    blended = 0.5 * 7.0 + 0.5 * orig
    mask = np.where(pitchf[0, :n].numpy() > 0, 1.0, 0.2)
    assert np.allclose(feats[0, :n, 0].numpy(), blended * mask + orig * (1 - mask), atol=1e-5)
    # protect 0.5 switches protection off: pure blend
    segment.vc_segment(models, audio, pitch, pitchf, VCOptions(index_rate=0.5, protect=0.5), StageTimes())
    assert np.allclose(models.voice.net.seen[-1][0][0, :n, 0].numpy(), blended, atol=1e-5)
    # index_rate 0: features untouched
    segment.vc_segment(models, audio, pitch, pitchf, VCOptions(index_rate=0.0, protect=0.5), StageTimes())
    assert np.allclose(models.voice.net.seen[-1][0][0, :n, 0].numpy(), orig, atol=1e-6)


def test_f0_goes_in_shifted_and_sliced(monkeypatch):
    seen = {}

    def fake_f0(audio, method, **kw):
        seen["len"] = len(audio)
        return np.full(len(audio) // 160 + 1, 100.0, np.float32)

    monkeypatch.setattr("engines.rvc.pitch.f0.extract_f0", fake_f0)
    models = fake_models(40000, f0=True)
    audio = steps.highpass(_tone(2.0))
    run_segments(models, ArrayReader(audio), ListWriter(), VCOptions(transpose=12, protect=0.5), StageTimes(),
                 ensure_hooks(None), True)
    assert seen["len"] == len(audio) + 32000  # f0 of the whole padded signal
    _, n, (pitch, pitchf, sid) = models.voice.net.seen[-1]
    assert torch_allclose(pitchf, 200.0) and pitch.shape == pitchf.shape and pitch.shape[1] == n


def torch_allclose(t, value):
    return bool(np.allclose(t.numpy(), value))


def test_streamed_path_matches_in_memory(tmp_path, monkeypatch):
    """The bounded-memory path (temp files, blocks) gives the in-memory result for a no-f0 model."""
    win = Windowing(x_pad=1, x_query=1, x_center=3, x_max=4)
    x = _tone(20.0)
    src = tmp_path / "in.wav"
    sf.write(src, x, 16000, subtype="FLOAT")
    models = fake_models(40000, f0=False)
    mem = files.convert_file(models, src, tmp_path / "a.wav", "wav", VCOptions(windowing=win, stream_above_seconds=1e9))
    streamed = files.convert_file(models, src, tmp_path / "b.wav", "wav",
                               VCOptions(windowing=win, stream_above_seconds=5, block_seconds=7))
    assert streamed.streamed and not mem.streamed
    a, sra = sf.read(tmp_path / "a.wav")
    b, srb = sf.read(tmp_path / "b.wav")
    assert sra == srb == 40000 and len(a) == len(b) == 20 * 40000
    assert np.max(np.abs(a - b)) <= 2 / 32768  # PCM_16 rounding only
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temp files removed
    assert {"decode", "filter", "hubert", "synth", "post", "write"} <= set(streamed.times)


def test_resample_and_normalize(tmp_path):
    models = fake_models(40000, f0=False)
    x = _tone(1.5)
    out, sr = pl.convert_array(models, x, VCOptions(resample_sr=22050))
    assert sr == 22050 and len(out) == round(len(x) * 22050 / 16000)
    assert np.abs(out).max() == pytest.approx(0.99, abs=1e-6)
    raw, _ = pl.convert_array(models, x, VCOptions(normalize=False))
    assert np.abs(raw).max() < 0.9


@pytest.mark.parametrize("name", ["v2_48k_f01", "v1_40k_f00"])
def test_chunked_decoder_equals_one_pass(name):
    """The bounded-memory decoder gives net.infer's waveform (same noise draws, same order)."""
    import torch

    from engines.rvc.models import noise
    from engines.rvc.models.synthesizer import build_synthesizer

    ck = torch.load(Path(__file__).parent / "golden" / "rvc" / "synth" / f"{name}.pth", map_location="cpu")
    net = build_synthesizer(ck["config"], ck["version"], bool(ck["f0"]), with_posterior=False).eval()
    net.load_state_dict({k: v.float() for k, v in ck["weight"].items()}, strict=False)
    net.remove_weight_norm()  # as loading for inference does
    torch.manual_seed(0)
    t = 110
    dim = 768 if ck["version"] == "v2" else 256
    phone, lengths, sid = torch.randn(1, t, dim), torch.tensor([t]), torch.tensor([1])
    pitchf = torch.rand(1, t) * 300 + 80
    pitchf[:, 30:45] = 0
    pitch = torch.randint(1, 255, (1, t))
    f0 = bool(ck["f0"])
    args = (phone, lengths, pitch, pitchf, sid) if f0 else (phone, lengths, sid)
    with torch.inference_mode():
        with noise.seeded_noise(5):
            ref = net.infer(*args)[0][0, 0].numpy()
        with noise.seeded_noise(5):
            got = segment.synthesize_chunked(net, phone, lengths, pitch if f0 else None, pitchf if f0 else None, sid, 30, 16)
    assert got.shape == ref.shape
    hop = len(ref) // t
    edge = 20 * hop  # the first/last 20 frames lie in the margins the pipeline cuts off
    assert np.max(np.abs(got[edge:-edge] - ref[edge:-edge])) < 1e-5


def test_batch_continues_past_a_corrupt_file(ws, monkeypatch, tmp_path):
    from engines.rvc.infer import convert

    monkeypatch.setattr(convert, "load_models", lambda *a, **k: fake_models(40000, f0=False))
    folder = tmp_path / "in"
    folder.mkdir()
    sf.write(folder / "a.wav", _tone(1.2), 16000)
    (folder / "b.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage")
    sf.write(folder / "c.flac", _tone(0.7, sr=22050), 22050)
    params = convert.ConvertParams(transpose=3, f0_method="pm", index_rate=0.5, output_format="flac")
    report = convert.convert_files(ws, tmp_path / "voice.pth", [folder], params)
    assert [Path(f.input).name for f in report.files] == ["a.wav", "b.wav", "c.flac"]
    assert [f.ok for f in report.files] == [True, False, True]
    bad = report.files[1]
    assert bad.error and bad.output is None
    good = report.files[0]
    out = Path(good.output)
    assert out.parent == ws.outputs and out.suffix == ".flac"
    assert out.name == "a__voice__pm_k+3_ir0.5_pr0.33_rms0.25.flac"
    audio, sr = sf.read(out)
    assert sr == 40000 and len(audio) == round(1.2 * 16000) * 40000 // 16000
    side = json.loads(Path(good.sidecar).read_text())
    assert side["params"]["transpose"] == 3 and side["input"].endswith("a.wav") and "hubert" in side["times"]
    c_audio, _ = sf.read(report.files[2].output)
    n_src = sf.info(folder / "c.flac").frames
    assert len(c_audio) == round(n_src * 40000 / 22050)  # exact to the source's own duration
    assert report.summary().startswith("2/3 converted")


def test_params_validation():
    from engines.core.errors import InvalidInputError
    from engines.rvc.infer.convert import ConvertParams

    with pytest.raises(InvalidInputError):
        ConvertParams(transpose=25).check()
    with pytest.raises(InvalidInputError):
        ConvertParams(resample_sr=8000).check()
    with pytest.raises(InvalidInputError):
        ConvertParams(protect=0.6).check()
    assert ConvertParams(resample_sr=44100).check().name_tag().endswith("44100Hz")


# ---------------------------------------------------------------- end to end with real (tiny) networks


def make_fast_voice(path, version="v1", sr="32k", f0=False, seed=0):
    """An upstream-format small model of the real architecture, made as cheap as it can be.

    Same classes and key layout as real models; one resblock kernel, two
    dilations, 32 upsample channels, so an hour of audio decodes in seconds.
    """
    import torch

    from engines.rvc.models.configs import parse_sr, small_model_config
    from engines.rvc.models.synthesizer import build_synthesizer

    cfg = list(small_model_config(version, sr))
    names = ["spec_channels", "segment_size", "inter_channels", "hidden_channels", "filter_channels", "n_heads",
             "n_layers", "kernel_size", "p_dropout", "resblock", "resblock_kernel_sizes", "resblock_dilation_sizes",
             "upsample_rates", "upsample_initial_channel", "upsample_kernel_sizes", "spk_embed_dim", "gin_channels", "sr"]
    d = dict(zip(names, cfg))
    d.update(inter_channels=4, hidden_channels=4, filter_channels=8, n_heads=2, n_layers=1, resblock="2",
             resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]], upsample_initial_channel=32,
             spk_embed_dim=2, gin_channels=4)
    cfg = [d[n] for n in names]
    torch.manual_seed(seed)
    net = build_synthesizer(cfg, version, f0, with_posterior=False)
    weight = {k: v.detach().half() for k, v in net.state_dict().items()}
    torch.save({"weight": weight, "config": cfg, "info": "test", "sr": parse_sr(sr)[0], "f0": int(f0),
                "version": version}, path)
    return Path(path)


def make_fast_hubert(path):
    from tiny_hubert import make_tiny_hubert

    return make_tiny_hubert(path, hidden=32, layers=1, conv_dim=8, heads=2, ffn=32, final_dim=256)


def test_cli_convert_end_to_end_tiny_models(ws, tmp_path, capsys):
    from engines.cli import build_parser

    model = make_fast_voice(ws.weights / "tiny.pth", "v1", "40k", f0=True)
    hubert = make_fast_hubert(tmp_path / "hubert")
    src = tmp_path / "voice.wav"
    sf.write(src, _tone(2.3), 16000)
    parser = build_parser()
    args = parser.parse_args(["rvc", "convert", str(src), "--model", "tiny", "--hubert", str(hubert), "--f0-method", "pm",
                              "--transpose", "-5", "--output-format", "flac", "--seed", "7", "--json"])
    assert args.func(args, ws) == 0
    rep = json.loads(capsys.readouterr().out)
    f = rep["files"][0]
    assert f["ok"] and f["sample_rate"] == 40000
    audio, sr = sf.read(f["output"])
    assert sr == 40000 and len(audio) == round(len(_tone(2.3)) * 40000 / 16000)
    assert 0.98 < np.abs(audio).max() <= 0.99 + 1e-4
    assert {"f0", "hubert", "synth"} <= set(f["times"])
    # same seed, same parameters -> the same samples (noise goes through the seeded generator)
    args2 = parser.parse_args(["rvc", "convert", str(src), "--model", str(model), "--hubert", str(hubert), "--f0-method",
                               "pm", "--transpose", "-5", "--seed", "7", "--out-dir", str(tmp_path / "o2"), "--quiet"])
    assert args2.func(args2, ws) == 0
    again, _ = sf.read(next((tmp_path / "o2").glob("*.wav")))
    assert np.max(np.abs(again - audio)) < 2e-4  # flac vs wav, both 16-bit
    # an index of the wrong version is refused with a clear message
    from engines.rvc.index import IndexParams, build_index

    feats = ws.experiment_dir("other") / "3_feature768"
    feats.mkdir(parents=True)
    np.save(feats / "a.npy", np.random.default_rng(0).standard_normal((80, 768)).astype(np.float32))
    idx = build_index(ws, "other", IndexParams(version="v2"))
    bad = parser.parse_args(["rvc", "convert", str(src), "--model", "tiny", "--hubert", str(hubert), "--f0-method", "pm",
                             "--index", str(idx.workspace_index_path), "--quiet"])
    from engines.core.errors import InvalidModelError

    with pytest.raises(InvalidModelError, match=r"\(RVC v2\) but the model is RVC v1"):
        bad.func(bad, ws)


# The hour-long run uses vectorised stand-ins for the two networks (HuBERT framing, one hop of
# samples per 10 ms frame): at real-network cost an hour takes minutes, and what this test is
# about is the streaming machinery around them (decode, filter, split, blocks, temp files,
# rms mix, encode), which is identical. The real tiny networks go through the same streamed
# path in test_streamed_path_with_real_tiny_models.
HOUR_CHILD = textwrap.dedent('''
    import json, sys
    import numpy as np
    import torch
    from engines.rvc.infer import files, pipeline as pl

    class Encoder:
        def extract(self, audio, version="v1", window_seconds=30.0):
            x = torch.from_numpy(np.abs(np.asarray(audio, np.float32)))
            n = (x.numel() - 400) // 320 + 1
            frames = x[: n * 320].view(n, 320).mean(dim=1)
            return frames[:, None].expand(n, 256).contiguous()

    class Net:
        def infer(self, feats, lengths, sid):
            n = int(lengths[0])
            return (feats[0, :n, 0].repeat_interleave(320)[None, None],)

    class Voice:
        sample_rate, f0, version, n_speakers, net = 32000, False, "v1", 1, Net()

    models = pl.Models(Voice(), Encoder(), None, torch.device("cpu"))
    res = files.convert_file(models, sys.argv[1], sys.argv[2], "flac", pl.VCOptions())
    # VmHWM, not ru_maxrss: Linux carries the parent's high-water mark across fork+exec into ru_maxrss
    hwm = [int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
    print(json.dumps({"streamed": res.streamed, "samples": res.output_samples, "rss": hwm}))
''')


@pytest.mark.slow
def test_hour_long_input_bounded_memory(tmp_path):
    """An hour of audio converts through temp files with peak RSS far below the audio's in-memory size."""
    sr_in = 8000
    src = tmp_path / "hour.flac"
    with sf.SoundFile(str(src), "w", samplerate=sr_in, channels=1, format="FLAC", subtype="PCM_16") as fh:
        minute = np.zeros(sr_in * 60, np.float32)
        t = np.arange(sr_in * 5) / sr_in
        minute[: sr_in * 5] = 0.3 * np.sin(2 * np.pi * 300 * t)  # 5 s of tone per minute, the rest silence
        for _ in range(60):
            fh.write(minute)
    out_path = tmp_path / "out" / "hour_out.flac"
    out_path.parent.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", HOUR_CHILD, str(src), str(out_path)],
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["streamed"]
    info = sf.info(out_path)
    assert info.samplerate == 32000 and info.frames == res["samples"] == 3600 * 32000  # exact length
    # in memory, the 16 kHz float64 filtered signal alone would be 460 MB and the 32 kHz output 460 MB more
    assert res["rss"] < 500 * 2**20, res["rss"] / 2**20
    assert [p.name for p in out_path.parent.iterdir()] == ["hour_out.flac"]  # temp files removed


@pytest.mark.slow
def test_streamed_path_with_real_tiny_models(ws, tmp_path):
    """The bounded-memory path with the real (tiny) networks: exact length, sane level, temp files gone."""
    import dataclasses

    from engines.rvc.infer.convert import ConvertParams, convert_files, vc_options

    model = make_fast_voice(tmp_path / "fast.pth", "v1", "48k", f0=True)
    hubert = make_fast_hubert(tmp_path / "hubert")
    src = tmp_path / "long.wav"
    sf.write(src, _tone(24.0), 16000)
    params = ConvertParams(f0_method="pm", index_rate=0.0, seed=3)
    opts = dataclasses.replace(vc_options(ws, params), stream_above_seconds=10, block_seconds=9,
                               windowing=Windowing(1, 2, 8, 9))
    rep = convert_files(ws, model, [src], params, encoder_path=hubert, options=opts)
    f = rep.files[0]
    assert f.ok and f.streamed, f.error
    audio, sr = sf.read(f.output)
    assert sr == 48000 and len(audio) == 24 * 48000
    assert 0.98 < np.abs(audio).max() < 0.995 and np.isfinite(audio).all()
    assert not [p for p in ws.outputs.iterdir() if p.name.startswith(".")]


def test_cli_names_every_missing_weight_before_loading_and_takes_rmvpe(ws, tmp_path, capsys, monkeypatch):
    from engines.cli import main
    from engines.rvc.infer import convert

    make_fast_voice(ws.weights / "tiny.pth", "v1", "40k", f0=True)
    src = tmp_path / "voice.wav"
    sf.write(src, _tone(1.0), 16000)
    base = ["--workspace", str(ws.root), "rvc", "convert", str(src), "--model", "tiny", "--f0-method", "rmvpe"]
    loaded = []
    real_get_encoder = convert.get_encoder
    monkeypatch.setattr(convert, "get_encoder", lambda *a: loaded.append(a) or real_get_encoder(*a))
    assert main([*base, "--hubert", str(tmp_path / "no" / "hubert_base.pt"), "--rmvpe", str(tmp_path / "no.pt")]) == 1
    err = capsys.readouterr().err
    for word in ("hubert_base.pt", "--hubert", "VOICELAB_HUBERT", "rmvpe.pt", "--rmvpe", "VOICELAB_RMVPE",
                 "voicelab assets download hubert_base", "voicelab assets download rmvpe"):
        assert word in err, (word, err)
    assert loaded == []  # nothing was loaded before the error
    # --rmvpe PATH is used as given
    hubert = make_fast_hubert(tmp_path / "hubert")
    rmvpe = Path(__file__).parent / "golden" / "rvc" / "rmvpe" / "rmvpe_tiny.pt"
    assert main([*base, "--hubert", str(hubert), "--rmvpe", str(rmvpe), "--quiet", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["files"][0]["ok"] and rep["params"]["f0_method"] == "rmvpe"
    # a file that is not the official rmvpe.pt is used with a warning, the very one `assets check` gives
    assert len(rep["warnings"]) == 1 and "not the official rmvpe file" in rep["warnings"][0]
    monkeypatch.setenv("VOICELAB_RMVPE", str(rmvpe))
    assert main(["--workspace", str(ws.root), "assets", "check", "rmvpe", "--json"]) == 0
    check = json.loads(capsys.readouterr().out)
    assert check["assets"][0]["status"] == "wrong-size" and check["assets"][0]["usable"]
    assert check["assets"][0]["warning"] == rep["warnings"][0]
    assert check["features"]["rvc.f0.rmvpe"] == {"ready": True, "missing": []}


CPU_MEMORY_CHILD = textwrap.dedent('''
    import json, sys
    from engines.core import cpu_memory
    ok = cpu_memory.configure()
    import os, torch

    def rss():
        return [int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmRSS")][0]

    first = torch.ones(2_500_000)
    del first  # a freed 10 MB buffer: glibc's adaptive threshold would now keep such ones in its heap
    before = rss()
    big, small = [], []
    for _ in range(16):  # 160 MB of activations with small long-lived tensors between them
        big.append(torch.ones(2_500_000))
        small.append(torch.ones(1000))
    held = rss() - before
    del big
    print(json.dumps({"ok": ok, "thp": os.environ.get("THP_MEM_ALLOC_ENABLE"), "held": held,
                      "kept_after_free": rss() - before}))
''')


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_cpu_memory_settings_return_freed_activations_to_the_system():
    def run(env_extra):
        env = {k: v for k, v in os.environ.items() if k not in ("THP_MEM_ALLOC_ENABLE", "VOICELAB_CPU_MEMORY")}
        out = subprocess.run([sys.executable, "-c", CPU_MEMORY_CHILD], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parents[1], env={**env, **env_extra})
        return json.loads(out.stdout.strip().splitlines()[-1])

    on = run({})
    assert on["ok"] and on["thp"] == "1"
    assert on["held"] > 150 * 2**20 and on["kept_after_free"] < 20 * 2**20  # freed buffers leave the process
    off = run({"VOICELAB_CPU_MEMORY": "off"})
    assert not off["ok"] and off["thp"] is None  # the system's defaults stay


def test_too_short_input_says_its_length_and_the_minimum():
    from engines.core.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match=r"10 samples at 16 kHz .* at least 19"):
        pl.convert_array(fake_models(40000), np.full(10, 0.1, np.float32), VCOptions())
    out, sr = pl.convert_array(fake_models(40000), np.full(19, 0.1, np.float32), VCOptions())
    assert sr == 40000 and len(out) == round(19 * 40000 / 16000)
