"""Speaker embeddings for scoring checkpoints: how much a conversion sounds like the target voice.

Two encoders, and a score always names the one that made it (their spaces differ, so similarities
from two encoders are never compared):

- ``resemblyzer``: the 256-d LSTM speaker encoder whose weights ship inside the ``resemblyzer`` PyPI
  package (``pretrained.pt``, 17 MB; offline). Our own small network reads that file; the package
  itself is not imported (it imports ``webrtcvad`` at import time, which we do not need).
- ``campplus``: CosyVoice's ``campplus.onnx`` (192-d), when the user has one.

The target voice is the mean embedding of the experiment's trained-on pieces, computed once per
encoder and cached in ``<exp>/speaker_embedding_<encoder>.json``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from engines.core.atomic import write_json
from engines.core.errors import InvalidInputError, MissingAssetError

ENCODERS = ("auto", "resemblyzer", "campplus")
SR = 16000
_PARTIAL = 160  # mel frames (1.6 s) per partial utterance
_STEP = 80  # frames between partials
_MAX_REFERENCE_PIECES = 48


def resemblyzer_weights() -> Path | None:
    """``pretrained.pt`` inside the installed resemblyzer package, or None."""
    spec = importlib.util.find_spec("resemblyzer")
    for base in (spec.submodule_search_locations or []) if spec else []:
        path = Path(base) / "pretrained.pt"
        if path.is_file():
            return path
    return None


class ResemblyzerEncoder:
    """3-layer LSTM over 40-band mel frames -> linear -> ReLU -> unit vector (256-d)."""

    name = "resemblyzer"

    def __init__(self, weights: Path | None = None) -> None:
        import torch

        path = weights or resemblyzer_weights()
        if path is None:
            raise MissingAssetError("resemblyzer speaker encoder (pretrained.pt)", "the Python environment",
                                    "pip install --no-deps resemblyzer==0.1.4 (scripts/setup.sh does it)", "speaker similarity scores")
        state = torch.load(str(path), map_location="cpu", weights_only=False)["model_state"]
        self.lstm = torch.nn.LSTM(40, 256, num_layers=3, batch_first=True)
        self.linear = torch.nn.Linear(256, 256)
        self.lstm.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lstm.")})
        self.linear.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("linear.")})
        self.lstm.eval()
        import librosa

        self._mel = librosa.filters.mel(sr=SR, n_fft=400, n_mels=40)

    def _frames(self, audio: np.ndarray) -> np.ndarray:
        import librosa

        x = trim_silence(audio)
        rms = float(np.sqrt(np.mean(x ** 2))) if len(x) else 0.0
        if rms > 1e-6:  # the encoder was trained on audio at about -30 dBFS
            x = x * (10 ** (-30 / 20) / rms)
        spec = np.abs(librosa.stft(x, n_fft=400, hop_length=160, win_length=400)) ** 2
        return (self._mel @ spec).T.astype(np.float32)

    def embed(self, audio_16k: np.ndarray) -> np.ndarray:
        import torch

        mel = self._frames(np.asarray(audio_16k, dtype=np.float32))
        if len(mel) < _PARTIAL:
            mel = np.pad(mel, ((0, _PARTIAL - len(mel)), (0, 0)))
        starts = range(0, len(mel) - _PARTIAL + 1, _STEP)
        batch = torch.from_numpy(np.stack([mel[s:s + _PARTIAL] for s in starts]))
        with torch.inference_mode():
            _, (hidden, _) = self.lstm(batch)
            emb = torch.relu(self.linear(hidden[-1]))
            emb = emb / emb.norm(dim=1, keepdim=True).clamp_min(1e-9)
        return unit(emb.mean(0).numpy())


class CampPlusScorer:
    """CosyVoice's campplus.onnx (192-d)."""

    name = "campplus"

    def __init__(self, path: str | Path) -> None:
        from engines.cosyvoice.onnx_models import CampPlusEncoder

        self._enc = CampPlusEncoder(path, device="cpu")

    def embed(self, audio_16k: np.ndarray) -> np.ndarray:
        return unit(np.asarray(self._enc.embed(np.asarray(audio_16k, dtype=np.float32))))


def unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(unit(a), unit(b)))


def trim_silence(audio: np.ndarray, top_db: float = 40.0) -> np.ndarray:
    """The audio without leading/trailing frames more than ``top_db`` below its loudest."""
    import librosa

    if len(audio) < 400:
        return audio
    trimmed, _ = librosa.effects.trim(audio, top_db=top_db, frame_length=400, hop_length=160)
    return trimmed if len(trimmed) >= 1600 else audio


def open_encoder(encoder: str = "auto", campplus: str = "") -> Any:
    """An encoder by name; ``auto`` = campplus.onnx when a path to one is given, else resemblyzer."""
    choice = (encoder or "auto").strip().lower()
    if choice not in ENCODERS:
        raise InvalidInputError(f"Unknown speaker encoder '{encoder}'.", f"Choose one of: {', '.join(ENCODERS)}.")
    if choice == "campplus" or (choice == "auto" and campplus.strip()):
        path = Path(campplus.strip()) if campplus.strip() else None
        if path is None or not path.is_file():
            raise MissingAssetError("campplus.onnx", str(path or "a CosyVoice model dir"),
                                    "copy campplus.onnx from a CosyVoice model dir", "speaker similarity (campplus)")
        return CampPlusScorer(path)
    return ResemblyzerEncoder()


def mean_embedding(encoder: Any, clips: Sequence[str | Path], log: Callable[[str], None] | None = None) -> np.ndarray:
    """Unit mean of the clips' embeddings (the voice of a set of clips)."""
    from engines.core.audio import load_audio

    embs = []
    for clip in clips:
        audio, _ = load_audio(clip, sr=SR)
        if len(audio) >= 1600:
            embs.append(encoder.embed(audio))
    if not embs:
        raise InvalidInputError("No clip long enough (0.1 s) for a speaker embedding.")
    if log:
        log(f"Speaker embedding ({encoder.name}) of {len(embs)} clip(s).")
    return unit(np.mean(embs, axis=0))


def reference_embedding(exp_root: Path, clips: Sequence[str | Path], encoder: Any,
                        log: Callable[[str], None] | None = None) -> np.ndarray:
    """The experiment's target voice for ``encoder``: computed once from ``clips``, then read from its cache."""
    if len(clips) > _MAX_REFERENCE_PIECES:  # evenly spaced: enough for a stable mean, quick on a CPU
        idx = np.linspace(0, len(clips) - 1, _MAX_REFERENCE_PIECES).round().astype(int)
        clips = [clips[i] for i in idx]
    names = [Path(c).name for c in clips]
    cache = exp_root / f"speaker_embedding_{encoder.name}.json"
    if cache.is_file():
        try:
            saved = json.loads(cache.read_text(encoding="utf-8"))
            if saved.get("clips") == names and saved.get("encoder") == encoder.name:
                return np.asarray(saved["embedding"], dtype=np.float64)
        except (OSError, json.JSONDecodeError, KeyError):
            pass
    emb = mean_embedding(encoder, clips, log)
    write_json(cache, {"encoder": encoder.name, "clips": names, "embedding": [round(float(v), 7) for v in emb],
                       "why": "mean speaker embedding of the trained-on pieces (speaker similarity scores)"})
    return emb
