"""Pieces that let upstream CosyVoice run: the torchaudio stand-in, the token/mel length rule,
upstream's data filter as we count it, the synthesis worker's failure paths, vendor sync's
"never delete a good checkout".

The stand-in is imported by its package path here (``engines.cosyvoice.shims.torchaudio``), so the
test process never gets a module called ``torchaudio``.
"""

from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path

import numpy as np
import pytest

from engines.core.errors import Cancelled, InvalidInputError, VoiceLabError
from engines.core.hooks import Hooks


def _shim():
    import engines.cosyvoice.shims.torchaudio as ta

    return ta


# -- torchaudio stand-in ----------------------------------------------------------------------

@pytest.mark.parametrize("orig,new", [(16000, 24000), (24000, 16000), (44100, 24000), (48000, 16000)])
def test_resample_is_band_limited_and_has_torchaudios_length(orig, new):
    import torch

    ta = _shim()
    for n in (1, 159, 641, 16001, orig + 7):
        out = ta.transforms.Resample(orig, new)(torch.zeros(2, n))
        assert out.shape == (2, math.ceil(n * new / orig))
    t_in = np.arange(orig) / orig
    sine = torch.tensor(np.sin(2 * np.pi * 440 * t_in), dtype=torch.float32)[None]
    out = ta.transforms.Resample(orig, new)(sine)[0].numpy()
    expect = np.sin(2 * np.pi * 440 * np.arange(len(out)) / new)
    interior = slice(new // 20, -new // 20)  # edges see the zero padding
    assert np.abs(out[interior] - expect[interior]).max() < 2e-3
    x = torch.randn(3, 100)
    assert torch.equal(ta.transforms.Resample(16000, 16000)(x), x)


def test_kaldi_fbank_wraps_our_kaldi_features_and_refuses_other_options():
    import torch

    from engines.cosyvoice.fbank import kaldi_fbank

    ta = _shim()
    wave = torch.randn(1, 16000) * 0.1
    feats = ta.compliance.kaldi.fbank(wave, num_mel_bins=80, dither=0, sample_frequency=16000)
    assert feats.shape == (98, 80) and feats.dtype == torch.float32
    assert np.allclose(feats.numpy(), kaldi_fbank(wave[0].double().numpy(), 80), atol=1e-5)
    with pytest.raises(NotImplementedError, match="16 kHz"):
        ta.compliance.kaldi.fbank(wave, num_mel_bins=80, sample_frequency=8000)
    with pytest.raises(NotImplementedError):
        ta.compliance.kaldi.fbank(wave, num_mel_bins=80, window_type="hamming")


def test_melspectrogram_filters_match_librosa_and_spectrogram_shapes():
    import librosa
    import torch

    ta = _shim()
    mel = ta.transforms.MelSpectrogram(sample_rate=24000, n_fft=1024, win_length=1024, hop_length=256, n_mels=100,
                                       power=1, center=True, norm=None)
    ref = librosa.filters.mel(sr=24000, n_fft=1024, n_mels=100, htk=True, norm=None)
    assert np.allclose(mel.fb.numpy().T, ref, atol=2e-5)  # float32 mel points
    x = torch.randn(2, 24000)
    out = mel(x)
    assert out.shape == (2, 100, 24000 // 256 + 1)
    spec = np.abs(librosa.stft(x[0].numpy(), n_fft=1024, hop_length=256, window="hann", center=True,
                               pad_mode="reflect"))
    assert np.allclose(out[0].numpy(), ref @ spec, rtol=1e-3, atol=1e-3)
    complex_spec = ta.transforms.Spectrogram(n_fft=512, hop_length=128, win_length=512, power=None)(torch.randn(2, 1, 4800))
    assert complex_spec.shape == (2, 1, 257, 38) and complex_spec.is_complex()


def test_load_save_info_like_torchaudio(tmp_path):
    import soundfile as sf
    import torch

    ta = _shim()
    stereo = (np.random.default_rng(0).standard_normal((1000, 2)) * 0.1).astype(np.float32)
    sf.write(tmp_path / "a.wav", stereo, 22050, subtype="FLOAT")
    wav, sr = ta.load(str(tmp_path / "a.wav"), backend="soundfile")
    assert sr == 22050 and wav.shape == (2, 1000) and wav.dtype == torch.float32
    assert np.allclose(wav.numpy().T, stereo)
    buf = io.BytesIO((tmp_path / "a.wav").read_bytes())
    assert torch.equal(ta.load(buf)[0], wav)
    ta.save(str(tmp_path / "b.wav"), wav[:1], 16000, bits_per_sample=16)
    meta = ta.info(str(tmp_path / "b.wav"))
    assert (meta.sample_rate, meta.num_frames, meta.num_channels, meta.bits_per_sample) == (16000, 1000, 1, 16)
    with pytest.raises(Exception):
        ta.load(str(tmp_path / "missing.wav"))


# -- token / mel length rule ------------------------------------------------------------------

@pytest.mark.parametrize("rate", [16000, 22050, 24000, 44100, 48000])
def test_tokens_from_padded_audio_equal_upstreams_mel_frames_over_two(rate):
    from engines.cosyvoice.features import aligned_token_audio, upstream_samples_24k

    for n16 in (640 * 50, 640 * 50 + 1, 640 * 50 + 100, 640 * 50 + 159, 640 * 50 + 160, 640 * 50 + 639):
        frames = math.ceil(n16 * rate / 16000)  # a clip of that length at its own rate
        n24 = upstream_samples_24k(frames, rate)
        mel_frames = 2 * math.ceil(n24 / 960)  # upstream: pad to 960, hop 480, centre off
        audio = aligned_token_audio(np.ones(n16, np.float32), frames, rate)
        tokens = math.ceil((len(audio) // 160) / 4)  # a 25 Hz tokenizer over whisper frames
        assert tokens * 2 == mel_frames, (rate, n16)
        assert np.all(audio[:min(n16, len(audio))] == 1) and np.all(audio[n16:] == 0)


# -- upstream's data filter -------------------------------------------------------------------

def test_drop_reason_follows_upstreams_filter_order():
    from engines.cosyvoice.data_check import drop_reason

    limits = {"max_length": 6000, "min_length": 100, "token_max_length": 200, "token_min_length": 1,
              "min_output_input_ratio": 0.0005, "max_output_input_ratio": 1}
    assert drop_reason(300, 20, 75, limits) is None
    assert "shorter than 1.00 s" in drop_reason(99, 20, 25, limits)
    assert "longer than 60.00 s" in drop_reason(6001, 20, 1500, limits)
    assert "fewer than 1 text token" in drop_reason(300, 0, 75, limits)
    assert "more than 200 text tokens" in drop_reason(300, 201, 75, limits)
    assert drop_reason(300, 20, 0, limits) == "no speech tokens"
    assert drop_reason(300, 20, None, limits) is None  # online features: tokens come later
    assert "too much text" in drop_reason(150, 180, 37, limits)


# -- synthesis worker failure paths (a stand-in AutoModel: failures only) ---------------------

FLAKY_AUTOMODEL = textwrap.dedent("""\
    import os, time
    import torch
    HERE = os.path.dirname(os.path.abspath(__file__))


    class _M:
        sample_rate = 24000

        def inference_zero_shot(self, tts_text, prompt_text, prompt_wav, stream=False, speed=1.0):
            if os.path.exists(os.path.join(HERE, 'crash')):
                os._exit(7)
            if tts_text.startswith('slow'):
                for _ in range(600):
                    time.sleep(0.1)
                    yield {'tts_speech': torch.zeros(1, 240)}
            yield {'tts_speech': torch.full((1, 2400), 0.1)}


    def AutoModel(model_dir):
        if os.path.exists(os.path.join(model_dir, 'broken')):
            raise ValueError('cosyvoice2.yaml not found!')
        return _M()
    """)


@pytest.fixture
def flaky(tmp_path):
    from engines.cosyvoice.worker import stop_worker

    checkout = tmp_path / "CosyVoice"
    for rel, text in {"cosyvoice/__init__.py": "", "cosyvoice/cli/__init__.py": "",
                      "cosyvoice/cli/cosyvoice.py": FLAKY_AUTOMODEL}.items():
        (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
        (checkout / rel).write_text(text)
    model = tmp_path / "model"
    model.mkdir()
    yield checkout, model
    stop_worker()


def _request(text: str, out: Path) -> dict:
    return {"calls": [[text, "inference_zero_shot", {"tts_text": text, "prompt_text": "p", "prompt_wav": "w"}]],
            "out": str(out), "seed": 0}


def test_worker_reports_load_failure_crash_and_restarts(flaky, tmp_path):
    from engines.cosyvoice.worker import run_request, worker_status

    checkout, model = flaky
    (model / "broken").write_text("")
    with pytest.raises(VoiceLabError) as err:
        run_request(model, checkout, _request("hi", tmp_path / "a.wav"))
    assert "CosyVoice failed while loading the model: ValueError: cosyvoice2.yaml not found!" in str(err.value)
    (model / "broken").unlink()
    res = run_request(model, checkout, _request("hi", tmp_path / "a.wav"))
    assert res["seconds"] == pytest.approx(0.1) and (tmp_path / "a.wav").is_file()

    (checkout / "cosyvoice" / "cli" / "crash").write_text("")
    with pytest.raises(VoiceLabError, match=r"stopped unexpectedly while synthesising \(exit code 7\)") as err:
        run_request(model, checkout, _request("hi", tmp_path / "b.wav"))
    assert "starts again on the next request" in str(err.value) and not (tmp_path / "b.wav").exists()
    assert [w["state"] for w in worker_status()] == ["crashed"]
    (checkout / "cosyvoice" / "cli" / "crash").unlink()
    logs: list[str] = []
    run_request(model, checkout, _request("hi", tmp_path / "b.wav"), Hooks(log=logs.append))
    assert any("Starting a new worker" in line for line in logs)
    assert [w["state"] for w in worker_status()] == ["ready"]


def test_worker_cancel_stops_between_chunks(flaky, tmp_path):
    import threading
    import time

    from engines.cosyvoice.worker import run_request, worker_status

    checkout, model = flaky
    run_request(model, checkout, _request("hi", tmp_path / "warm.wav"))  # loaded
    hooks = Hooks()
    threading.Timer(1.0, hooks.cancel_event.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        run_request(model, checkout, _request("slow text", tmp_path / "slow.wav"), hooks)
    assert time.monotonic() - started < 10 and not (tmp_path / "slow.wav").exists()
    assert [w["state"] for w in worker_status()] == ["ready"]  # the same worker serves the next request
    run_request(model, checkout, _request("hi", tmp_path / "after.wav"))


# -- vendor sync keeps a good checkout --------------------------------------------------------

def test_vendor_sync_keeps_the_checkout_when_matcha_cannot_be_fetched(tmp_path):
    from test_cosyvoice_tools import _make_upstream_repo

    from engines.cosyvoice.vendor import vendor_sync

    repo, first, _ = _make_upstream_repo(tmp_path)
    dest = tmp_path / "vendor" / "CosyVoice"
    with pytest.raises(VoiceLabError) as err:
        vendor_sync(str(repo), dest, first, Hooks(), matcha_source="https://127.0.0.1:9/Matcha-TTS.git")
    assert "the CosyVoice checkout is kept" in err.value.hint and "--matcha-source" in err.value.hint
    assert (dest / "cosyvoice" / "cli" / "cosyvoice.py").is_file() and not list(dest.parent.glob(".*partial*"))
    res = vendor_sync(str(repo), dest, first, Hooks(), matcha_source=str(tmp_path / "matcha_src"))
    assert res.commit == first and res.matcha_commit and (dest / "third_party" / "Matcha-TTS" / "matcha").is_dir()
    with pytest.raises(InvalidInputError, match="does not exist"):
        vendor_sync(str(tmp_path / "nowhere.bundle"), dest, first, Hooks())
