"""CosyVoice's ONNX front-end models: campplus speaker encoder and speech tokenizer.

Both are run through onnxruntime exactly the way upstream's extraction
tools call them (input names read from the session, first output taken and
flattened). The CUDA execution provider is used when available; if it fails
to load (a common onnxruntime-gpu problem: missing cuDNN/CUDA libraries) we
fall back to the CPU provider and say so in the log instead of failing.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np

from engines.core.errors import InvalidModelError, MissingAssetError
from engines.cosyvoice.fbank import SAMPLE_RATE, campplus_features, whisper_log_mel

EMBEDDING_DIM = 192
MAX_TOKEN_SECONDS = 30.0  # upstream's speech tokenizers only take up to 30 s

DOWNLOAD_HINT = "voicelab assets download cosyvoice/CosyVoice2-0.5B"


def require_model_file(model_dir: str | Path, name: str, why: str = "") -> Path:
    """``model_dir/name`` or a MissingAssetError naming the file and the download command."""
    path = Path(model_dir) / name
    if not path.is_file():
        raise MissingAssetError(name, str(path), DOWNLOAD_HINT, why)
    return path


def open_session(path: str | Path, device: str = "auto", threads: int = 1,
                 log: Callable[[str], None] | None = None):
    """An onnxruntime session on CUDA when asked/available, else CPU (with a log line on fall-back)."""
    import onnxruntime as ort

    say = log or (lambda _line: None)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    want_cuda = device.startswith("cuda") or (
        device == "auto" and "CUDAExecutionProvider" in ort.get_available_providers()
    )
    if want_cuda:
        try:
            session = ort.InferenceSession(str(path), sess_options=opts,
                                           providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
            if "CUDAExecutionProvider" in session.get_providers():
                return session
            say(f"onnxruntime: CUDA execution provider did not load for {Path(path).name}; using CPU.")
            return session
        except Exception as exc:  # onnxruntime-gpu with broken CUDA libs raises here
            say(f"onnxruntime: CUDA execution provider failed for {Path(path).name} ({exc}); falling back to CPU.")
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise InvalidModelError(
            f"Could not load the ONNX model {path}: {exc}",
            "Check that the file is complete (re-download it) and is the CosyVoice model it is named after.",
        ) from exc


class CampPlusEncoder:
    """Speaker embeddings (192 floats) from ``campplus.onnx``."""

    def __init__(self, path: str | Path, device: str = "auto", threads: int = 1,
                 log: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self.session = open_session(path, device, threads, log)
        self.input_name = self.session.get_inputs()[0].name

    def embed(self, audio_16k: np.ndarray) -> list[float]:
        feats = campplus_features(audio_16k)
        if len(feats) == 0:
            raise ValueError("audio shorter than one 25 ms frame")
        out = self.session.run(None, {self.input_name: feats[None, :, :]})[0]
        return np.asarray(out, dtype=np.float32).reshape(-1).tolist()


class SpeechTokenizer:
    """Discrete speech tokens from ``speech_tokenizer_v{1,2,3}.onnx``."""

    def __init__(self, path: str | Path, device: str = "auto", threads: int = 1,
                 log: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self.session = open_session(path, device, threads, log)
        inputs = self.session.get_inputs()
        if len(inputs) < 2:
            raise InvalidModelError(
                f"{self.path.name} has {len(inputs)} input(s); a CosyVoice speech tokenizer has 2 (feats, feats_length).",
                "Point the model dir at a CosyVoice model folder.",
            )
        self.feats_name, self.length_name = inputs[0].name, inputs[1].name

    def tokenize(self, audio_16k: np.ndarray) -> list[int] | None:
        """Token ids, or None when the clip is longer than 30 s (upstream cannot tokenize it)."""
        if len(audio_16k) / SAMPLE_RATE > MAX_TOKEN_SECONDS:
            return None
        mel = whisper_log_mel(audio_16k, 128)
        out = self.session.run(None, {
            self.feats_name: mel[None, :, :],
            self.length_name: np.array([mel.shape[1]], dtype=np.int32),
        })[0]
        return [int(v) for v in np.asarray(out).reshape(-1)]


def expected_token_count(num_samples_16k: int) -> int:
    """Tokens a 25 Hz tokenizer (v2/v3) yields for this many 16 kHz samples."""
    return math.ceil((num_samples_16k // 160) / 4)
