"""RMVPE: upstream golden (mel + network), state-dict compatibility, decoding, windowing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_hubert import make_tiny_rmvpe

from engines.core.errors import Cancelled, InvalidModelError, MissingAssetError
from engines.core.hooks import Hooks
from engines.rvc.pitch.rmvpe import (
    CENTS_BASE,
    PitchNet,
    load_rmvpe,
    salience_to_cents,
    salience_to_hz,
)

GOLDEN = Path(__file__).parent / "golden" / "rvc" / "rmvpe"
REFERENCE = Path("/work/shared/reference/rvc_reference_shapes.json")


@pytest.fixture(scope="module")
def golden():
    return load_rmvpe(GOLDEN / "rmvpe_tiny.pt"), np.load(GOLDEN / "rmvpe_tiny_io.npz")


def test_mel_matches_upstream(golden):
    model, io = golden
    mel = model.mel_spectrogram(io["audio"])
    assert tuple(mel.shape) == io["mel"].shape == (1, 128, 201)
    np.testing.assert_allclose(mel.numpy(), io["mel"], atol=1e-4, rtol=0)


def test_network_matches_upstream(golden):
    model, io = golden
    hidden = model.hidden_from_mel(torch.from_numpy(io["mel"]))
    assert tuple(hidden.shape) == io["hidden"].shape
    np.testing.assert_allclose(hidden.numpy(), io["hidden"], atol=1e-4, rtol=0)
    # end to end from audio: same salience, and infer() decodes it
    sal = model.salience(io["audio"])
    np.testing.assert_allclose(sal, io["hidden"][0], atol=1e-4, rtol=0)
    np.testing.assert_allclose(model.infer(io["audio"]), salience_to_hz(io["hidden"][0], 0.03), rtol=1e-4)


def test_full_size_state_dict_matches_released_rmvpe():
    if REFERENCE.is_file():
        expected = json.loads(REFERENCE.read_text())["rmvpe_E2E(4,1,(2,2))"]
    else:  # pragma: no cover - reference lives outside the repo on dev machines
        pytest.skip("reference shapes not available")
    with torch.device("meta"):
        net = PitchNet()
    ours = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert ours == expected["state_dict"]
    assert sum(p.numel() for p in net.parameters()) == expected["n_params"]


def _bump(centre: float, frames: int = 1, peak: float = 0.9, width: float = 1.5) -> np.ndarray:
    bins = np.arange(360)
    row = peak * np.exp(-0.5 * ((bins - centre) / width) ** 2)
    return np.tile(row, (frames, 1))


def _two_bins(first: int, a: float, b: float) -> np.ndarray:
    row = np.zeros((1, 360))
    row[0, first], row[0, first + 1] = a, b
    row[0, first + 6] = 0.3  # outside the 9-bin window around the peak: ignored
    return row


def test_decode_hand_made_salience():
    sal = np.concatenate(
        [
            _bump(100.0),  # symmetric peak on bin 100 -> exactly its cents
            _two_bins(100, 0.8, 0.4),  # weighted average of bins 100 and 101
            _bump(0.0),  # at the lowest bin: window reaches into the zero padding
            _bump(200.0, peak=0.03),  # at the threshold -> unvoiced
            np.zeros((1, 360)),  # silence -> unvoiced, no NaN
        ]
    )
    cents = salience_to_cents(sal, threshold=0.03)
    assert cents[0] == pytest.approx(CENTS_BASE + 20 * 100, abs=1e-6)
    assert cents[1] == pytest.approx(CENTS_BASE + 20 * (100 + 0.4 / 1.2), abs=1e-6)
    # lowest bin: the window's padding bins below bin 0 hold no salience, bins 0..4 count
    w = 0.9 * np.exp(-0.5 * (np.arange(5) / 1.5) ** 2)
    assert cents[2] == pytest.approx(np.sum(w * (CENTS_BASE + 20 * np.arange(5))) / w.sum(), abs=1e-6)
    assert cents[3] == 0 and cents[4] == 0
    hz = salience_to_hz(sal, threshold=0.03)
    assert hz.dtype == np.float64 and np.isfinite(hz).all()  # float64 as upstream decodes it
    assert hz[0] == pytest.approx(10 * 2 ** ((CENTS_BASE + 2000) / 1200), rel=1e-6)  # ~100 Hz * 3.17
    assert hz[2] == pytest.approx(10 * 2 ** (cents[2] / 1200), rel=1e-6)
    assert hz[3] == 0 and hz[4] == 0
    # a lower threshold makes the weak frame voiced
    assert salience_to_hz(sal, threshold=0.01)[3] > 0


def test_windowed_inference_matches_one_shot(tmp_path):
    model = load_rmvpe(make_tiny_rmvpe(tmp_path / "rmvpe.pt"))
    t = np.arange(16000 * 4) / 16000
    audio = (0.4 * np.sin(2 * np.pi * (150 + 30 * np.sin(2 * np.pi * 0.5 * t)) * t)).astype(np.float32)
    whole = model.salience(audio, window_frames=100_000)
    windowed = model.salience(audio, window_frames=96, context_frames=64)
    assert whole.shape == windowed.shape == (401, 360)
    # the GRU sees the whole sequence and 64 frames cover this U-Net's reach (30): one-pass values
    assert model.net.receptive_radius() == 30
    assert np.abs(whole - windowed).max() < 1e-5
    exact = model.salience(audio, window_frames=64, context_frames=None)
    assert np.abs(whole - exact).max() < 1e-5
    f0 = model.infer(audio)
    assert f0.shape == (len(audio) // 160 + 1,) and f0.dtype == np.float64
    assert model.infer(np.zeros(1000, np.float32)).shape == (7,)
    progress: list[float] = []
    model.infer(audio, window_frames=96, hooks=Hooks(progress=lambda f, m: progress.append(f)))
    assert progress[-1] == 1.0 and len(progress) == 5  # 401 frames in 96-frame windows
    stop = Hooks()
    stop.cancel_event.set()
    with pytest.raises(Cancelled):
        model.infer(audio, hooks=stop)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(MissingAssetError) as err:
        load_rmvpe(tmp_path / "assets" / "rmvpe" / "rmvpe.pt")
    text = str(err.value)
    assert "rmvpe.pt" in text and "assets/rmvpe/rmvpe.pt" in text and "voicelab assets download rmvpe" in text
    bad = tmp_path / "bad.pt"
    torch.save({"weight": torch.zeros(3)}, str(bad))
    with pytest.raises(InvalidModelError):
        load_rmvpe(bad)


def test_receptive_radius_bounds_the_reach_of_one_mel_frame():
    """Changing one mel frame changes the U-Net's output only within receptive_radius() frames, and
    nearly that far (so the exact context is neither too small nor wasteful)."""
    from engines.rvc.pitch.rmvpe import RMVPEConfig

    torch.manual_seed(0)
    net = PitchNet(RMVPEConfig(n_blocks=2, stages=3, bottleneck=2, width=2)).eval()
    radius = net.receptive_radius()
    frames, at = 640, 320
    mel = torch.randn(1, 128, frames)
    bumped = mel.clone()
    bumped[:, :, at] += 5.0
    with torch.no_grad():
        diff = (net.local_features(bumped) - net.local_features(mel)).abs().amax(dim=-1)[0]
    reach = torch.nonzero(diff > 0).flatten()
    assert int(reach.min()) >= at - radius and int(reach.max()) <= at + radius
    assert int(reach.max()) - at > 0.75 * radius
